"""The worker's sink: one chunk's ISM batches reduced as they arrive, then written to the store.

An executor call ``executor(x, sink=ChunkSink(...))`` hands the sink the reference outputs
once, then each computed batch of mutations. The sink applies the run's output plan (task
choice, reducers) to every batch and scatters it into arrays of the stored size, so a worker
never holds the full (B, W, S, *out) outputs of a chunk: its memory is one batch plus what is
stored. ``finish`` (the executor's last call, while the worker's model is still held) computes
any ALT outputs; ``write`` then writes the chunk with the reference letters and marks it done,
so the task can write while the worker's next task already runs ISM.
"""

from __future__ import annotations

import time

import numpy as np
from distributed import secede
from distributed.threadpoolexecutor import ThreadPoolExecutor, thread_state


class ChunkSink:
    """Stores one chunk's ISM results as the run's output plan says.

    Parameters
    ----------
    output_plan : OutputPlan
        Which outputs are stored and how each is reduced (``apply_one``).
    output_names : list of str
        The executor's model outputs, in the order it passes them.
    writer : object or None
        Has ``write_chunk(chunk_index, ref, mut, ref_base=None, alt=None)``; None for a sink
        whose arrays are read by the caller instead of written.
    chunk_index : int
    dtype : str
        Stored dtype of the arrays kept. Default is float32.
    ref_base : ndarray of str, shape (B, W), optional
        Reference letter at each mutated position.
    alt : callable, optional
        ``alt(ref) -> dict`` of (B, *stored) ALT outputs, given the raw reference outputs
        ``ref`` (dict of (B, *out)); called once in ``finish``.

    Attributes
    ----------
    ref : dict of str to ndarray of shape (B, *stored)
    mut : dict of str to ndarray of shape (B, W, S, *stored)
    alt_outputs : dict of str to ndarray of shape (B, *stored) or None
        From ``finish``, when ``alt`` is given.
    n_sequences : int
        B, from ``begin``.
    mutations : int
        Mutations computed (passed to ``add``); the others are identity edits.
    write_s : float
        Seconds spent in ``write``.
    """

    def __init__(self, output_plan, output_names, writer, chunk_index, dtype="float32",
                 ref_base=None, alt=None):
        self.output_plan = output_plan
        stored = set(output_plan.outputs)
        self.index = {name: k for k, name in enumerate(output_names) if name in stored}
        self.writer = writer
        self.chunk_index = int(chunk_index)
        self.dtype = np.dtype(dtype)
        self.ref_base = ref_base
        self.alt = alt
        self.raw_ref, self.ref, self.mut = {}, {}, {}
        self.alt_outputs = None
        self.n_sequences = 0
        self.mutations = 0
        self.write_s = 0.0

    def begin(self, ref, shape):
        """Keep the reference outputs; fill every mutant with the reference's stored value.

        Parameters
        ----------
        ref : list of ndarray, each (B, *out_k)
            Reference outputs, one per model output.
        shape : tuple of int
            (B, W, S).
        """
        shape = tuple(int(d) for d in shape)
        self.n_sequences = shape[0]
        for name in self.output_plan.outputs:
            raw = np.asarray(ref[self.index[name]])
            reduced = self.output_plan.apply(name, raw, raw[:, None, None])
            self.raw_ref[name] = raw
            self.ref[name] = reduced.ref
            mut = np.empty(shape + tuple(reduced.mut.shape[3:]), dtype=self.dtype)
            mut[...] = reduced.mut  # an identity edit's output is the reference
            self.mut[name] = mut

    def add(self, b, p, s, outputs):
        """Reduce one batch of M mutations and put it in place.

        Parameters
        ----------
        b, p, s : ndarray of int, shape (M,)
            Sequence, position index (into the W positions) and substitution index.
        outputs : list of ndarray, each (M, *out_k)
            The mutants' outputs, one per model output.
        """
        for name, mut in self.mut.items():
            out = outputs[self.index[name]]
            mut[b, p, s] = self.output_plan.apply_one(name, self.raw_ref[name][b], out)
        self.mutations += len(b)

    def finish(self):
        """Compute the ALT outputs, if any: the last use of the model for this chunk.

        Returns
        -------
        dict
            ``sequences`` and ``mutations`` of this chunk.
        """
        if self.alt is not None:
            self.alt_outputs = self.alt(self.raw_ref)
        return {"sequences": self.n_sequences, "mutations": self.mutations}

    def write(self):
        """Write the chunk (after ``finish``) and mark it done.

        Returns
        -------
        float
            Seconds spent writing, also kept as ``write_s``.
        """
        t0 = time.perf_counter()
        self.writer.write_chunk(self.chunk_index, self.ref, self.mut, self.ref_base,
                                self.alt_outputs)
        self.write_s = time.perf_counter() - t0
        return self.write_s


def reference_letters(window, bases):
    """The letter of each one-hot row; ``N`` where a row is not one-hot.

    Parameters
    ----------
    window : ndarray of shape (B, W, C)
    bases : sequence of str, length C

    Returns
    -------
    ndarray of str (object), shape (B, W)
    """
    window = np.asarray(window)
    onehot = ((np.sum(window == 1, axis=-1) == 1)
              & (np.sum(window == 0, axis=-1) == window.shape[-1] - 1))
    letters = np.asarray(list(bases) + ["N"], dtype=object)
    return letters[np.where(onehot, np.argmax(window, axis=-1), len(bases))]


def count_mutations(window, substitutions):
    """Number of (sequence, position, substitution) triples that change the sequence.

    Parameters
    ----------
    window : ndarray of shape (B, W, C)
    substitutions : ndarray of shape (S, C)

    Returns
    -------
    int
    """
    same = np.all(window[:, :, None, :] == substitutions[None, None], axis=-1)
    return int(same.size - same.sum())


def leave_thread_pool():
    """Let the worker start its next task while this one finishes (dask's ``secede``).

    Nothing happens outside a thread of a worker's own thread pool (a worker built with
    another executor), where the task simply keeps its thread.
    """
    if isinstance(getattr(thread_state, "executor", None), ThreadPoolExecutor):
        secede()
