"""NaiveISM: build every mutant sequence and call the model on it, in batches. The ground truth."""

from __future__ import annotations

import numpy as np

from fastism_dist.core.executor import DEFAULT_BATCH_SIZE, ISMExecutor, budget_batch_size
from fastism_dist.core.graph import read_graph, shape_floats
from fastism_dist.core.rules import working_floats
from fastism_dist.errors import ModelError


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

    def _default_batch_size(self):
        """256 mutants per call, fewer where the forward pass of one mutant holds more than
        1/256 of the memory budget at its peak (attention scores of long inputs)."""
        try:
            return budget_batch_size(4 * peak_floats(read_graph(self.model)), DEFAULT_BATCH_SIZE)
        except ModelError:
            return DEFAULT_BATCH_SIZE

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


def peak_floats(graph):
    """The most float32 values a forward pass on one sequence holds at once.

    Walks the nodes in order: at each, the tensors alive (made, and read again later or a
    model output), the node's outputs and what the layer holds inside (``Rule.working_floats``).
    """
    last_use, keep = graph.last_use(), set(graph.output_ids)
    live = {tid: shape_floats(graph.shapes[tid]) for tid in graph.input_ids}
    peak = sum(live.values())
    for node in graph.nodes:
        in_shapes = [graph.shapes[t] for t in node.arg_ids]
        out_shapes = [graph.shapes[t] for t in node.out_ids]
        made = {tid: shape_floats(shape) for tid, shape in zip(node.out_ids, out_shapes)}
        held = sum(live.values()) + sum(made.values())
        peak = max(peak, held + working_floats(node, in_shapes, out_shapes))
        live.update(made)
        for tid in set(node.arg_ids):
            if last_use[tid] == node.index and tid not in keep:
                live.pop(tid, None)
    return peak
