"""NaiveISM: build every mutant sequence and call the model on it, in batches. The ground truth."""

from __future__ import annotations

import numpy as np

from fastism_dist.core.executor import ISMExecutor


class NaiveISM(ISMExecutor):
    """Naive ISM: one full forward pass per mutant, ``batch_size`` mutants per model call.

    Same constructor and call as ``FastISM`` (see ``ISMExecutor``); ``check`` is ignored since
    naive ISM is the reference itself. This is the ground truth the self-check compares with.
    """

    method = "naive"

    def _prepare(self):
        import tensorflow as tf

        model = self.model

        @tf.function(reduce_retracing=True)
        def predict(inputs):
            return model(inputs, training=False)

        self._predict = predict

    def _call_model(self, seqs, others_rows):
        """Model outputs as a list of arrays for seqs (N, L, C) and the matching other inputs."""
        inputs = [seqs if o is None else o for o in others_rows]
        from keras import tree

        outs = self._predict(inputs[0] if len(inputs) == 1 else inputs)
        return [np.asarray(o, dtype=np.float32) for o in tree.flatten(outs)]

    def _reference(self, x, others):
        self._x = x
        self._others = others
        chunks = []
        for lo in range(0, len(x), self.batch_size):
            rows = slice(lo, lo + self.batch_size)
            chunks.append(self._call_model(x[rows], [None if o is None else o[rows] for o in others]))
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def _mutants(self, b, p, s, group):
        width = self.spec.width
        mutants = self._x[b].copy()
        starts = self.spec.positions[p]
        offsets = starts[:, None] + np.arange(width)[None, :]  # (M, w)
        mutants[np.arange(len(b))[:, None], offsets] = self.spec.substitutions[s]
        return self._call_model(mutants, [None if o is None else o[b] for o in self._others])
