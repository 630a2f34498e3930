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
from fastism_dist.core.executor import ISMExecutor
from fastism_dist.core.graph import read_graph
from fastism_dist.core.plan import make_plan
from fastism_dist.core.program import Program
from fastism_dist.errors import MutationSpecError

MEMORY_BUDGET_BYTES = 1 << 30
AUTO_XLA_MIN_BATCHES = 24
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
        Compile the mutation pass with XLA (``jit_compile=True``). "auto" times calls with and
        without XLA once the executor has run ``AUTO_XLA_MIN_BATCHES`` batches (over one or
        several calls, so repeated calls on one or two sequences are tuned too) and keeps the
        faster. Default is "auto".
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
        self._tuning = None
        self._batches_seen = 0

    def _default_batch_size(self):
        per_mutation = max(self.program.bytes_per_mutation(), 1)
        size = MEMORY_BUDGET_BYTES // per_mutation  # an upper bound of what a call holds
        return int(np.clip(size // 16 * 16, 16, MAX_BATCH_SIZE))

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

    def _begin(self, n_batches):
        self._batches_seen += n_batches
        if self.xla == "auto" and self._tuning is None and self._batches_seen >= AUTO_XLA_MIN_BATCHES:
            self._tuning = []

    def _mutants(self, b, p, s, group):
        if self._tuning is None:
            return self._call_mutation(self.xla is True, b, p, s, group)
        return self._tune_xla(b, p, s, group)

    def _call_mutation(self, xla, b, p, s, group):
        """One call; with XLA every call is padded to ``batch_size`` rows (one compilation)."""
        anchor, merged = group if group is not None else (0, False)
        anchor = np.asarray(anchor, dtype=np.int32)  # a tensor argument: no retrace per group
        n = len(b)
        if xla and n < self.batch_size:
            b, p, s = (np.concatenate([a, np.repeat(a[:1], self.batch_size - n)]) for a in (b, p, s))
        outs = self._mutation_fns[bool(xla)](self._cache, b, p, s, anchor, bool(merged))
        return [np.asarray(o, dtype=np.float32)[:n] for o in outs]

    def _tune_xla(self, b, p, s, group):
        """Calls 0-1 without XLA (trace, then timed), 2-3 with (compile, then timed); then keep
        XLA if its time per row is under 0.9 of the plain one."""
        use_xla = len(self._tuning) >= 2
        started = time.perf_counter()
        outs = self._call_mutation(use_xla, b, p, s, group)
        rows = max(len(b), self.batch_size) if use_xla else len(b)  # XLA calls are padded
        self._tuning.append((time.perf_counter() - started) / rows)
        if len(self._tuning) == 4:
            self.xla = self._tuning[3] < 0.9 * self._tuning[1]
            self._tuning = None
        return outs
