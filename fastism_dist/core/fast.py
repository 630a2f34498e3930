"""FastISM: a cached reference pass plus windowed recomputation, batched over many mutations.

The plan (``plan.py``) says for every tensor whether a mutation leaves it at the reference,
changes only a constant-width window, or changes it all; the program (``program.py``) holds the
index tables that read windows from the reference cache and the two exact shortcuts
(incremental convolution, incremental dense); the emitter (``emit.py``) runs both as TensorFlow
functions. Every layer's own arithmetic lives in its rule (``layer_rules.py``).
"""

from __future__ import annotations

import time

import numpy as np

from fastism_dist.core.check import self_check
from fastism_dist.core.emit import Emitter
from fastism_dist.core.executor import ISMExecutor, budget_batch_size
from fastism_dist.core.graph import read_graph
from fastism_dist.core.mutations import validate_other_inputs, validate_sequences
from fastism_dist.core.plan import make_plan
from fastism_dist.core.program import Program
from fastism_dist.errors import MutationSpecError

AUTO_XLA_MIN_BATCHES = 24
XLA_TIMING_REPEATS = 5
MAX_BATCH_SIZE = 512


class FastISM(ISMExecutor):
    """Exact fast ISM; same constructor and call as ``NaiveISM`` (see ``ISMExecutor``).

    With ``check=True`` (the default) the constructor runs ``self_check``: the fast path against
    naive ISM on random sequences, raising ``CheckError`` if they differ.

    Extra parameters
    ----------------
    first_layer_lookup : bool
        Compute a Conv1D on the sequence input from kernel rows times the substitution's change
        instead of convolving. Default is True.
    incremental_conv : bool
        Compute other Conv1D layers from the convolution of their input's change where that is
        cheaper than convolving the affected window. Default is True.
    incremental_dense : bool
        Update a Dense after Flatten from the changed rows only. Default is True.
    xla : bool or "auto"
        Compile the mutation pass with XLA (``jit_compile=True``). "auto" decides once: in
        ``warm_up`` / ``decide_xla`` if called, else when the executor has run
        ``AUTO_XLA_MIN_BATCHES`` batches (over one or several calls, so repeated calls on one
        or two sequences are tuned too), by timing repeated calls of one shape with and
        without XLA; ``xla_timings`` keeps the times. Default is "auto".
    """

    method = "fast"

    def __init__(self, model, start=0, end=None, substitutions=None, seq_input=0, check=True,
                 batch_size=None, safe_mode=True, skip_identity=True, compute_dtype="float32",
                 first_layer_lookup=True, incremental_conv=True, incremental_dense=True,
                 xla="auto"):
        if xla not in (True, False, "auto"):
            raise MutationSpecError(f"xla must be True, False or 'auto', got {xla!r}")
        self.xla = xla
        self.options = {"first_layer_lookup": bool(first_layer_lookup),
                        "incremental_conv": bool(incremental_conv),
                        "incremental_dense": bool(incremental_dense)}
        super().__init__(model, start=start, end=end, substitutions=substitutions,
                         seq_input=seq_input, batch_size=batch_size, safe_mode=safe_mode,
                         skip_identity=skip_identity, compute_dtype=compute_dtype)
        if check:
            self_check(self)

    def _prepare(self):
        self.graph = read_graph(self.model)
        seq_id = self.graph.input_ids[self.seq.index]
        self.plan = make_plan(self.graph, seq_id, self.spec.positions, self.spec.width)
        self.program = Program(self.plan, self.spec.substitutions, **self.options)
        self._reference_fn, self._mutation_fns = Emitter(self.program).compile()
        self._cache = None
        self.xla_timings = None
        self._batches_seen = 0

    def _default_batch_size(self):
        # bytes_per_mutation is an upper bound of what a call holds
        return budget_batch_size(self.program.bytes_per_mutation(), MAX_BATCH_SIZE, smallest=16)

    def _batches(self, triples, position_indices):
        """Full calls of mutations sorted by their incremental-dense window group, if any.

        The group passed on with each call is (anchor group, merged): see ``DenseGroups.calls``.
        """
        groups = self.program.groups
        if groups is None:
            yield from super()._batches(triples, position_indices)
            return
        group = groups.of_position[np.asarray(position_indices)[triples[:, 1]]]
        order = np.argsort(group, kind="stable")
        triples, group = triples[order], group[order]
        for anchor, merged, rows in groups.calls(group, self.batch_size):
            yield (int(anchor), merged), triples[rows]

    def _reference(self, x, others):
        inputs = [x if o is None else o for o in others]
        outputs, cache = self._reference_fn(inputs)
        self._cache = cache
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def _begin(self, triples, position_indices):
        self._batches_seen += -(-len(triples) // self.batch_size)
        if self.xla == "auto" and self._batches_seen >= AUTO_XLA_MIN_BATCHES:
            self._settle_xla(triples, position_indices)

    def _mutants(self, b, p, s, group):
        return self._call_mutation(self.xla is True, b, p, s, group)

    def warm_up(self, x, other_inputs=None, max_mutations=None):
        """``ISMExecutor.warm_up``, then with ``xla="auto"`` the XLA decision on ``x``
        (``decide_xla``), so that the calls that follow neither trace, compile nor tune."""
        super().warm_up(x, other_inputs, max_mutations)
        if self.xla == "auto":  # the cache holds the reference of x now
            self._decide_on(validate_sequences(x, self.seq))

    def decide_xla(self, x, other_inputs=None):
        """Settle ``xla="auto"`` now on the mutations of ``x`` (B, L, C): see ``_settle_xla``.

        Returns
        -------
        bool or "auto"
            The choice; still "auto" only if ``x`` has no mutation to time.
        """
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        self._reference(x, others)
        return self._decide_on(x)

    def _decide_on(self, x):
        """``_settle_xla`` on all mutations of ``x`` (B, L, C), whose reference is cached."""
        positions = np.arange(self.spec.n_positions)
        self._settle_xla(self._plan_mutations(x, positions), positions)
        return self.xla

    def _settle_xla(self, triples, position_indices):
        """Time the fullest call of ``triples`` (N, 3), the same rows ``XLA_TIMING_REPEATS``
        times without XLA and with it, alternately (after one call each to trace and compile),
        and keep XLA if its best time is under 0.9 of the plain one. Repeated calls of one
        shape: the choice does not depend on a run's first, odd-sized or cold calls, nor on
        another process (a second worker warming up) being busy during one of the timings.
        With XLA chosen, the call variants the timing did not use (calls that span several
        dense window groups) are compiled too, so that no later call compiles."""
        calls = self._call_variants(triples, position_indices)
        if not calls:
            return
        group, rows = max(calls, key=lambda call: len(call[1]))
        b, p, s = self._padded(rows, position_indices)
        for xla in (False, True):
            self._call_mutation(xla, b, p, s, group)
        best = {False: np.inf, True: np.inf}
        for _ in range(XLA_TIMING_REPEATS):  # interleaved: a busy spell slows both alike
            for xla in (False, True):
                best[xla] = min(best[xla], self._timed_call(xla, b, p, s, group))
        self.xla = bool(best[True] < 0.9 * best[False])
        self.xla_timings = {"plain_s": best[False], "xla_s": best[True], "rows": len(rows)}
        if self.xla:  # compile every kind of call now (the timed one is already compiled)
            for variant_group, variant_rows in calls:
                self._call_mutation(True, *self._padded(variant_rows, position_indices),
                                    variant_group)

    def _call_variants(self, triples, position_indices):
        """The fullest call of each kind (merged over dense window groups or not) in
        ``triples``: a list of (group, rows), empty if there is no mutation."""
        fullest = {}
        for group, rows in self._batches(triples, position_indices):
            kind = bool(group[1]) if group is not None else False
            if kind not in fullest or len(rows) > len(fullest[kind][1]):
                fullest[kind] = (group, rows)
        return list(fullest.values())

    def _timed_call(self, xla, b, p, s, group):
        started = time.perf_counter()
        self._call_mutation(xla, b, p, s, group)
        return time.perf_counter() - started

    def _call_mutation(self, xla, b, p, s, group):
        """One call; with XLA every call is padded to ``batch_size`` rows (one compilation)."""
        anchor, merged = group if group is not None else (0, False)
        anchor = np.asarray(anchor, dtype=np.int32)  # a tensor argument: no retrace per group
        n = len(b)
        if xla and n < self.batch_size:
            b, p, s = (np.concatenate([a, np.repeat(a[:1], self.batch_size - n)]) for a in (b, p, s))
        outs = self._mutation_fns[bool(xla)](self._cache, b, p, s, anchor, bool(merged))
        return [np.asarray(o, dtype=np.float32)[:n] for o in outs]
