"""The interface every ISM executor (naive, fast) shares, its result and the default sink.

Shapes, channels-last like Keras: ``B`` sequences, ``L`` length, ``C`` alphabet,
``W`` mutated positions, ``S`` substitutions, ``w`` substitution width, ``M`` mutations per call.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastism_dist.core.model import find_sequence_input, load_model, output_names, with_compute_dtype
from fastism_dist.core.mutations import (changed_mutations, make_mutation_spec,
                                         validate_other_inputs, validate_sequences)
from fastism_dist.errors import MutationSpecError

DEFAULT_BATCH_SIZE = 256
#: What one model call's tensors may hold, by the executors' own count, when they choose
#: their default batch size.
MEMORY_BUDGET_BYTES = 1 << 30


def budget_batch_size(bytes_per_mutation, largest, smallest=1):
    """Mutations per call that keep ``bytes_per_mutation`` each within ``MEMORY_BUDGET_BYTES``:
    a multiple of 16 from 16 up, between ``smallest`` and ``largest``."""
    size = MEMORY_BUDGET_BYTES // max(int(bytes_per_mutation), 1)
    return int(np.clip(size // 16 * 16 if size >= 16 else size, smallest, largest))


class ISMResult(NamedTuple):
    """Outputs of an ISM run.

    ref : list of ndarray, one per model output k, each of shape (B, *out_k)
    mut : list of ndarray, one per model output k, each of shape (B, W, S, *out_k);
        ``mut[k][b, p, s]`` is output k with the window at position ``start + p`` replaced by
        substitution ``s``.
    """

    ref: list
    mut: list


class ResultSink:
    """The default sink: fills the ``ISMResult`` arrays.

    An executor calls ``begin(ref, shape)`` once with the reference outputs (list of
    (B, *out_k)) and ``shape = (B, W, S)``, then ``add(b, p, s, outputs)`` per computed batch:
    ``b``, ``p``, ``s`` (M,) sequence, position (index into the W mutated positions) and
    substitution indices, ``outputs`` a list of (M, *out_k) float32 arrays. Mutations never
    passed to ``add`` are identity edits, whose output is the reference. ``finish()`` returns
    what the executor call returns.
    """

    def begin(self, ref, shape):
        self.ref = ref
        self.mut = [np.broadcast_to(r[:, None, None], tuple(shape) + r.shape[1:]).copy()
                    for r in ref]

    def add(self, b, p, s, outputs):
        for mut, out in zip(self.mut, outputs):
            mut[b, p, s] = out

    def finish(self):
        return ISMResult(self.ref, self.mut)


class DiscardSink:
    """A sink that keeps nothing (for warm-up calls)."""

    def begin(self, ref, shape):
        pass

    def add(self, b, p, s, outputs):
        pass

    def finish(self):
        return None


def padded_size(n, batch_size, smallest=16, steps_per_octave=4):
    """Rows a call of ``n`` mutations is padded to: the smallest bucket holding ``n``, at most
    ``batch_size``. Buckets grow by 2 ** (1 / steps_per_octave), rounded up to multiples of 8
    (16, 24, 32, 40, 48, 64, 80, 96, 120, ...), so a run traces few shapes and pads little.
    """
    size = smallest
    while size < n:
        size = int(-(-size * 2 ** (1 / steps_per_octave) // 8) * 8)
    return min(size, batch_size)


class ISMExecutor:
    """Shared front end of the ISM executors.

    Subclasses implement ``_prepare()`` (once, after the spec is known),
    ``_reference(x, others)`` returning the reference outputs and keeping whatever they cache, and
    ``_mutants(b, p, s, group)`` computing outputs for ``M`` mutations: sequence index ``b``,
    position index ``p`` (into ``spec.positions``) and substitution index ``s``, each (M,) int32;
    ``group`` is what ``_batches`` yields with the call (None by default; executors that
    batch by group use it).

    Parameters
    ----------
    model : keras.Model or str
        The model, or a path to a ``.keras`` / ``.h5`` file.
    start, end : int
        Mutate window starts ``start..end`` (half-open). Default is the whole sequence.
    substitutions : ndarray of shape (S, C) or (S, w, C), optional
        Replacement vectors. Default is the C one-hot bases.
    seq_input : int or str
        Index or name of the sequence input. Default is 0.
    check : bool
        ``FastISM`` compares itself with naive ISM on random inputs when built; naive ISM is the
        reference and ignores it. Default is True.
    batch_size : int, optional
        Mutations per model call. Default: what fits ``MEMORY_BUDGET_BYTES`` by the executor's
        own count of what one mutation holds, at most 256 for naive ISM and 512 for FastISM.
    safe_mode : bool
        Keras safe mode when loading a model file. Default is True.
    skip_identity : bool
        Copy the reference output for substitutions equal to the reference instead of computing
        them. Default is True.
    compute_dtype : {"float32", "float16", "bfloat16"}
        Precision of the model's computation (half precision is meant for GPUs; see
        ``with_compute_dtype`` for the tolerance). Results are returned as float32.
        Default is "float32".
    """

    method = None

    def __init__(self, model, start=0, end=None, substitutions=None, seq_input=0, check=True,
                 batch_size=None, safe_mode=True, skip_identity=True, compute_dtype="float32"):
        self.compute_dtype = compute_dtype
        self.model = with_compute_dtype(load_model(model, safe_mode=safe_mode), compute_dtype)
        self.skip_identity = bool(skip_identity)
        self.seq = find_sequence_input(self.model, seq_input)
        self.spec = make_mutation_spec(self.seq.length, self.seq.channels, start, end, substitutions)
        self.output_names = output_names(self.model)
        if batch_size is not None and int(batch_size) < 1:
            raise MutationSpecError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size) if batch_size else None
        self._prepare()
        self.batch_size = self.batch_size or self._default_batch_size()

    def _prepare(self):
        pass

    def _default_batch_size(self):
        return DEFAULT_BATCH_SIZE

    def _begin(self, triples, position_indices):
        """Called before the mutation batches of one run, with its (N, 3) mutations."""

    def __call__(self, x, other_inputs=None, sink=None):
        """Run ISM on ``x`` of shape (B, L, C).

        Each computed batch goes to ``sink`` (see ``ResultSink``) as soon as it is ready, so a
        caller that reduces or writes per batch never holds the full (B, W, S, *out) arrays.
        Returns ``sink.finish()``: by default an ``ISMResult``.
        """
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        return self._run(x, others, np.arange(self.spec.n_positions), sink)

    def warm_up(self, x, other_inputs=None, max_mutations=None):
        """Run ISM on ``x`` (B, L, C) at a few positions spread over the sequence, keeping
        nothing, so that later calls find their TensorFlow functions traced.

        Parameters
        ----------
        x : ndarray of shape (B, L, C)
            Sequences like those that will be scored (B sets the traced cache shapes).
        other_inputs : list or dict, optional
            A multi-input model's other inputs for ``x``.
        max_mutations : int, optional
            About how many mutations to run. Default is four full calls.
        """
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        budget = max_mutations or 4 * self.batch_size
        per_position = len(x) * len(self.spec.substitutions)
        n = int(np.clip(budget // per_position, 1, self.spec.n_positions))
        positions = np.unique(np.linspace(0, self.spec.n_positions - 1, n).round().astype(int))
        self._run(x, others, positions, DiscardSink())

    def run_positions(self, x, position_indices, other_inputs=None, sink=None):
        """ISM of ``x`` (B, L, C) at some of the mutated positions only.

        ``position_indices`` (W',) index ``spec.positions``, in any order, possibly none (then
        only the reference is computed); ``sink.add`` gets positions as indices into it.
        """
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        indices = np.asarray(position_indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.spec.n_positions):
            raise MutationSpecError(f"position indices must lie in 0..{self.spec.n_positions - 1}")
        return self._run(x, others, indices, sink)

    def _run(self, x, others, position_indices, sink=None):
        """ISM over the given indices into ``spec.positions`` (W = len(position_indices))."""
        sink = ResultSink() if sink is None else sink
        ref = [np.asarray(r) for r in self._reference(x, others)]
        triples = self._plan_mutations(x, position_indices)
        sink.begin(ref, (len(x), len(position_indices), len(self.spec.substitutions)))
        if len(triples) == 0:
            return sink.finish()
        self._begin(triples, position_indices)
        for group, batch in self._batches(triples, position_indices):
            outs = self._mutants(*self._padded(batch, position_indices), group)
            sink.add(batch[:, 0], batch[:, 1], batch[:, 2],
                     [np.asarray(out)[:len(batch)] for out in outs])
        return sink.finish()

    def _plan_mutations(self, x, position_indices):
        """(N, 3) int array of (b, local position, s) mutations that are not identity edits."""
        subs = self.spec.substitutions
        if not self.skip_identity:
            shape = (len(x), len(position_indices), len(subs))
            return np.argwhere(np.ones(shape, dtype=bool)).astype(np.int32)
        return changed_mutations(x, self.spec.positions[position_indices], subs)

    def _batches(self, triples, position_indices):
        """(group, rows) pairs: the (N, 3) mutations in calls of at most ``batch_size`` rows."""
        for lo in range(0, len(triples), self.batch_size):
            yield None, triples[lo:lo + self.batch_size]

    def _padded(self, batch, position_indices):
        """Pad a batch to a fixed bucket size (few traced shapes); p becomes a spec index."""
        pad = padded_size(len(batch), self.batch_size) - len(batch)
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[:1], pad, axis=0)])
        b = batch[:, 0].astype(np.int32)
        p = np.asarray(position_indices, dtype=np.int32)[batch[:, 1]]
        s = batch[:, 2].astype(np.int32)
        return b, p, s

    def _reference(self, x, others):
        raise NotImplementedError

    def _mutants(self, b, p, s, group):
        raise NotImplementedError
