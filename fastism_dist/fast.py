"""FastISM: cached reference pass plus windowed recomputation, batched over many mutations.

The plan (``plan.py``) says for every tensor whether a mutation leaves it at the reference
(``REF``), changes only a constant-width window (``WIN``) or changes it all (``FULL``). This
module turns the plan into two TensorFlow programs:

* the **reference pass**: the model on the ``B`` reference sequences, keeping every cached tensor
  the mutation pass reads (padded the way the reading layer pads, flattened to (B * Lp, C));
* the **mutation pass**: for ``M`` mutations (sequence b, position p, substitution s) at once,
  gathers each layer's input window from the cache by precomputed index tables, overlays the
  recomputed window of the layer before, applies the layer's own weights with valid padding, and
  continues; from the first stop layer on it runs the model's layers on whole tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastism_dist.graph import read_graph
from fastism_dist.plan import FULL, MERGE, POSITION_WISE, REF, WIN, StridedWindow, UpSample, make_plan
from fastism_dist.spec import ISMExecutor


@dataclass(frozen=True)
class CacheKey:
    """A cached reference tensor, padded by (left, right) positions filled with ``value``."""

    tensor: int
    left: int = 0
    right: int = 0
    value: float = 0.0


@dataclass
class WindowRead:
    """How to read window [start[p], start[p] + width) of a tensor for each position p.

    rows : (P, width) int32 row of each entry in the padded cache (per sequence)
    rel : (P, width) int32 index into the recomputed window of a WIN tensor, -1 where the
        entry comes from the cache instead; None for a REF tensor
    direct : the read is exactly the tensor's recomputed window (no gather)
    """

    key: CacheKey
    padded_length: int
    rows: np.ndarray | None
    rel: np.ndarray | None
    direct: bool = False


class FastISM(ISMExecutor):
    """Exact fast ISM; same constructor and call as ``NaiveISM`` (see ``spec.ISMExecutor``)."""

    method = "fast"

    def _prepare(self):
        self.graph = read_graph(self.model)
        seq_id = self.graph.input_ids[self.seq.index]
        self.plan = make_plan(self.graph, seq_id, self.spec.positions, self.spec.width)
        self._program = _Program(self.plan, self.spec.substitutions)
        self._reference_fn, self._mutation_fn = self._program.compile()
        self._cache = None

    def _reference(self, x, others):
        inputs = [x if o is None else o for o in others]
        outputs, cache = self._reference_fn(inputs)
        self._cache = cache
        return [np.asarray(o) for o in outputs]

    def _mutants(self, b, p, s):
        outs = self._mutation_fn(self._cache, b, p, s)
        return [np.asarray(o) for o in outs]


class _Program:
    """The static part of the fast path: reads, index tables and the order of computation."""

    def __init__(self, plan, substitutions):
        self.plan = plan
        self.graph = plan.graph
        self.substitutions = substitutions.astype(np.float32)
        self.keys = {}      # CacheKey -> padded length of a flattened, padded cached tensor
        self.full_refs = set()  # ids of tensors cached whole, read as rows of sequences
        self.reads = {}     # (node index or "out", arg position) -> WindowRead | "direct" | "full" | "ref"
        for node_plan in plan.nodes:
            if node_plan.state != REF:
                self._plan_reads(node_plan)
        for i, tid in enumerate(self.graph.output_ids):
            self.reads[("out", i)] = self._full_read(tid)
        self._counts = {}

    # -- reads ---------------------------------------------------------------------------------

    def _plan_reads(self, node_plan):
        node, rule = node_plan.node, node_plan.rule
        out = self.plan.tensors[node.out_ids[0]]
        for i, tid in enumerate(node.arg_ids):
            if node_plan.state == FULL:
                self.reads[(node.index, i)] = self._full_read(tid)
            elif rule.role == POSITION_WISE:
                self.reads[(node.index, i)] = "direct"
            elif rule.role == MERGE:
                self.reads[(node.index, i)] = self._window_read(tid, out.start, out.width)
            elif isinstance(rule, UpSample):
                self.reads[(node.index, i)] = self._window_read(
                    tid, out.start // rule.size, out.width // rule.size)
            else:
                start, width = rule.needed(out.start, out.width)
                self.reads[(node.index, i)] = self._window_read(
                    tid, start, width, max(rule.pad_left, 0), max(rule.pad_right, 0), rule.pad_value)

    def _full_read(self, tid):
        tensor = self.plan.tensors[tid]
        if tensor.state == FULL:
            return "full"
        if tensor.state == REF:
            self.full_refs.add(tid)
            return "ref"
        return self._window_read(tid, np.zeros_like(tensor.start), tensor.length)

    def _window_read(self, tid, start, width, left=0, right=0, value=0.0):
        tensor = self.plan.tensors[tid]
        if tensor.state == WIN and width == tensor.width and np.array_equal(start, tensor.start):
            return WindowRead(CacheKey(tid), 0, None, None, direct=True)
        key = CacheKey(tid, left, right, float(value))
        length = self.graph.shapes[tid][0]
        padded_length = length + left + right
        self.keys[key] = padded_length
        offsets = start[:, None] + np.arange(width)[None, :]
        rows = (offsets + left).astype(np.int32)
        if rows.min() < 0 or rows.max() >= padded_length:
            raise AssertionError(f"window outside padded tensor {tid}: plan error")
        rel = None
        if tensor.state == WIN:
            rel = offsets - tensor.start[:, None]
            rel = np.where((rel >= 0) & (rel < tensor.width), rel, -1).astype(np.int32)
        return WindowRead(key, padded_length, rows, rel)

    # -- TensorFlow programs -------------------------------------------------------------------

    def compile(self):
        import tensorflow as tf

        self._constants = self._make_constants(tf)

        @tf.function(reduce_retracing=True)
        def reference(inputs):
            return self._reference_pass(tf, inputs)

        @tf.function(reduce_retracing=True)
        def mutation(cache, b, p, s):
            return self._mutation_pass(tf, cache, b, p, s)

        return reference, mutation

    def _make_constants(self, tf):
        consts = {"subs": tf.constant(self.substitutions)}
        for name, read in self.reads.items():
            if isinstance(read, WindowRead) and not read.direct:
                consts[("rows", name)] = tf.constant(read.rows)
                if read.rel is not None:
                    consts[("rel", name)] = tf.constant(read.rel)
        for node_plan in self.plan.nodes:
            rule = node_plan.rule
            if node_plan.state == WIN and isinstance(rule, StridedWindow) and rule.op == "avg_same":
                node = node_plan.node
                in_length = self.graph.shapes[node.arg_ids[0]][0]
                out = self.plan.tensors[node.out_ids[0]]
                counts = rule.valid_counts(in_length, out.length)
                table = counts[out.start[:, None] + np.arange(out.width)[None, :]]
                consts[("counts", node.index)] = tf.constant(table[..., None])
        return consts

    def _reference_pass(self, tf, inputs):
        keep = set(self.graph.output_ids) | self.full_refs | {key.tensor for key in self.keys}
        values = self.graph.run(inputs, keep=keep)
        cache = {f"full_t{tid}": values[tid] for tid in self.full_refs}
        for key in self.keys:
            ref = values[key.tensor]
            if key.left or key.right:
                ref = tf.pad(ref, [[0, 0], [key.left, key.right], [0, 0]], constant_values=key.value)
            cache[_key_name(key)] = tf.reshape(ref, [-1, ref.shape[-1]])
        return [values[t] for t in self.graph.output_ids], cache

    def _mutation_pass(self, tf, cache, b, p, s):
        values = {self.plan.seq_id: tf.gather(self._constants["subs"], s)}
        for node_plan in self.plan.nodes:
            if node_plan.state == REF:
                continue
            node = node_plan.node
            args = {tid: self._read(tf, (node.index, i), tid, values, cache, b, p)
                    for i, tid in enumerate(node.arg_ids)}
            if node_plan.state == WIN and node_plan.rule.role not in (POSITION_WISE, MERGE):
                outs = [self._apply_local(tf, node_plan, args[node.arg_ids[0]], p)]
            else:
                outs = self.graph.call(node, args)
            values.update(zip(node.out_ids, outs))
        return [self._read(tf, ("out", i), tid, values, cache, b, p)
                for i, tid in enumerate(self.graph.output_ids)]

    def _read(self, tf, name, tid, values, cache, b, p):
        read = self.reads[name]
        if read in ("direct", "full"):
            return values[tid]
        if read == "ref":
            return tf.gather(cache[f"full_t{tid}"], b)
        if read.direct:
            return values[tid]
        rows = tf.gather(self._constants[("rows", name)], p) + b[:, None] * read.padded_length
        window = tf.gather(cache[_key_name(read.key)], rows)
        if read.rel is None:
            return window
        rel = tf.gather(self._constants[("rel", name)], p)
        recomputed = tf.gather(values[tid], tf.maximum(rel, 0), batch_dims=1)
        return tf.where((rel >= 0)[..., None], recomputed, window)

    def _apply_local(self, tf, node_plan, window, p):
        import keras

        rule, layer = node_plan.rule, node_plan.node.op
        if isinstance(rule, UpSample):
            return keras.ops.repeat(window, rule.size, axis=1)
        if rule.op == "identity":
            return window
        if rule.op == "conv":
            kernel = keras.ops.cast(layer.kernel, window.dtype)
            y = keras.ops.conv(window, kernel, strides=rule.stride, padding="valid",
                               dilation_rate=rule.dilation)
            if layer.use_bias:
                y = y + keras.ops.cast(layer.bias, y.dtype)
            return layer.activation(y)
        if rule.op == "max":
            return keras.ops.max_pool(window, rule.kernel, rule.stride, padding="valid")
        pooled = keras.ops.average_pool(window, rule.kernel, rule.stride, padding="valid")
        if rule.op == "avg_same":
            counts = tf.gather(self._constants[("counts", node_plan.node.index)], p)
            pooled = pooled * float(rule.kernel) / counts
        return pooled


def _key_name(key):
    return f"t{key.tensor}_l{key.left}_r{key.right}_v{key.value}"
