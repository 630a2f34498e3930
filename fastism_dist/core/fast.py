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

Two exact shortcuts go beyond that (each has a switch):

* *first-layer lookup*: a Conv1D reading the sequence directly changes its pre-activation output
  by ``sum_i K[i] . (sub - ref)[tap i]``, so the cached reference pre-activation plus a few
  kernel-row products replace the convolution;
* *incremental dense*: a Dense after Flatten is linear before its activation, so
  ``W x_mut = W x_ref + W[window rows] (x_mut - x_ref)[window]``; mutations are batched so that
  all mutations of a call share the window and therefore the weight rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fastism_dist.errors import MutationSpecError
from fastism_dist.core.graph import read_graph
from fastism_dist.core.plan import (FULL, MERGE, POSITION_WISE, REF, WIN, StridedWindow, UpSample,
                               make_plan)
from fastism_dist.core.spec import ISMExecutor

MEMORY_BUDGET_BYTES = 1 << 30
MIN_POSITIONS_PER_DENSE_GROUP = 4
AUTO_XLA_MIN_BATCHES = 24


@dataclass(frozen=True)
class CacheKey:
    """A cached reference tensor, padded by (left, right) positions filled with ``value``."""

    tensor: int
    left: int = 0
    right: int = 0
    value: float = 0.0

    @property
    def name(self):
        return f"t{self.tensor}_l{self.left}_r{self.right}_v{self.value}"


@dataclass
class WindowRead:
    """How to read window [start[p], start[p] + width) of a tensor for each position p.

    rows : (P, width) int32 row of each entry in the padded cache (per sequence)
    rel : (P, width) int32 index into the recomputed window of a WIN tensor, -1 where the
        entry comes from the cache instead; None to read the reference only
    direct : the read is exactly the tensor's recomputed window (no gather)
    """

    key: CacheKey
    padded_length: int
    rows: np.ndarray | None
    rel: np.ndarray | None
    direct: bool = False


class FastISM(ISMExecutor):
    """Exact fast ISM; same constructor and call as ``NaiveISM`` (see ``spec.ISMExecutor``).

    Extra parameters
    ----------------
    first_layer_lookup : bool
        Replace a linear first Conv1D by kernel-row lookups. Default is True.
    incremental_dense : bool
        Update a Dense after Flatten from the changed rows only. Default is True.
    xla : bool or "auto"
        Compile the mutation pass with XLA (``jit_compile=True``). "auto" times a batch with
        and without XLA during the first run long enough to pay for it (at least
        ``AUTO_XLA_MIN_BATCHES`` batches) and keeps the faster. Default is "auto".
    """

    method = "fast"

    def __init__(self, model, start=0, end=None, substitutions=None, seq_input=0, check=True,
                 batch_size=None, safe_mode=True, skip_identity=True, compute_dtype="float32",
                 first_layer_lookup=True, incremental_dense=True, xla="auto"):
        if xla not in (True, False, "auto"):
            raise MutationSpecError(f"xla must be True, False or 'auto', got {xla!r}")
        self.xla = xla
        self.options = {"first_layer_lookup": bool(first_layer_lookup),
                        "incremental_dense": bool(incremental_dense)}
        super().__init__(model, start=start, end=end, substitutions=substitutions,
                         seq_input=seq_input, check=check, batch_size=batch_size,
                         safe_mode=safe_mode, skip_identity=skip_identity,
                         compute_dtype=compute_dtype)

    def _prepare(self):
        self.graph = read_graph(self.model)
        seq_id = self.graph.input_ids[self.seq.index]
        self.plan = make_plan(self.graph, seq_id, self.spec.positions, self.spec.width)
        self.program = _Program(self.plan, self.spec.substitutions, **self.options)
        self._reference_fn, self._mutation_fns = self.program.compile()
        self._cache = None
        self._tuning = None

    def _default_batch_size(self):
        per_mutation = max(self.program.bytes_per_mutation(), 1)
        size = MEMORY_BUDGET_BYTES // (4 * per_mutation)
        return int(np.clip(size // 16 * 16, 16, 1024))

    def _batches(self, triples, position_indices):
        """Mutations sharing an incremental-dense window go together; else plain chunks."""
        groups = self.program.position_groups
        if groups is None:
            yield from super()._batches(triples, position_indices)
            return
        group = groups[np.asarray(position_indices)[triples[:, 1]]]
        order = np.argsort(group, kind="stable")
        triples, group = triples[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for part in np.split(triples, bounds):
            for lo in range(0, len(part), self.batch_size):
                yield part[lo:lo + self.batch_size]

    def _reference(self, x, others):
        inputs = [x if o is None else o for o in others]
        outputs, cache = self._reference_fn(inputs)
        self._cache = cache
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def _begin(self, n_batches):
        if self.xla == "auto" and n_batches >= AUTO_XLA_MIN_BATCHES:
            self._tuning = []

    def _mutants(self, b, p, s):
        if self._tuning is None:
            return self._call_mutation(self.xla is True, b, p, s)
        return self._tune_xla(b, p, s)

    def _call_mutation(self, xla, b, p, s):
        outs = self._mutation_fns[bool(xla)](self._cache, b, p, s)
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def _tune_xla(self, b, p, s):
        """Calls 0-1 without XLA (trace, then timed), 2-3 with (compile, then timed); then pick."""
        step = len(self._tuning)
        use_xla = step >= 2
        started = time.perf_counter()
        outs = self._call_mutation(use_xla, b, p, s)
        self._tuning.append(time.perf_counter() - started)
        if len(self._tuning) == 4:
            self.xla = self._tuning[3] < 0.9 * self._tuning[1]
            self._tuning = None
        return outs


class _Program:
    """The static part of the fast path: reads, index tables and the order of computation."""

    def __init__(self, plan, substitutions, first_layer_lookup=True, incremental_dense=True):
        self.plan = plan
        self.graph = plan.graph
        self.substitutions = substitutions.astype(np.float32)
        self.keys = {}          # CacheKey -> padded length of a cached tensor, flattened to rows
        self.full_refs = set()  # ids of tensors cached whole, read as rows of sequences
        self.pre_activation = {}  # node index -> WindowRead of its cached pre-activation output
        self.reads = {}         # (node index or "out", arg position) -> WindowRead | str
        self.lookup = {}        # node index -> (P, W, w) kernel tap table, -1 where none
        self.dense = {}         # node index -> (tensor id, WindowRead of its reference window)
        self.elided = set()     # node indices not computed (their only reader is incremental)
        self.position_groups = None
        consumers, producer = self.graph.consumers(), self.graph.producer()
        for node_plan in plan.nodes:
            if node_plan.state == REF:
                continue
            if first_layer_lookup and self._plan_lookup(node_plan):
                continue
            if incremental_dense and self._plan_incremental_dense(node_plan, consumers, producer):
                continue
            self._plan_reads(node_plan)
        for index in self.elided:
            for i, _ in enumerate(self.graph.nodes[index].arg_ids):
                del self.reads[(index, i)]
        self.keys = {key: n for key, n in self.keys.items() if self._key_used(key)}
        for i, tid in enumerate(self.graph.output_ids):
            self.reads[("out", i)] = self._full_read(tid)
        self._set_position_groups()

    # -- reads ---------------------------------------------------------------------------------

    def _plan_reads(self, node_plan):
        node, rule = node_plan.node, node_plan.rule
        out = self.plan.tensors[node.out_ids[0]]
        for i, tid in enumerate(node.arg_ids):
            if node_plan.state == FULL:
                read = self._full_read(tid)
            elif rule.role == POSITION_WISE:
                read = "direct"
            elif rule.role == MERGE:
                read = self._window_read(tid, out.start, out.width)
            elif isinstance(rule, UpSample):
                read = self._window_read(tid, out.start // rule.size, out.width // rule.size)
            else:
                start, width = rule.needed(out.start, out.width)
                read = self._window_read(tid, start, width, max(rule.pad_left, 0),
                                         max(rule.pad_right, 0), rule.pad_value)
            self.reads[(node.index, i)] = read

    def _full_read(self, tid):
        tensor = self.plan.tensors[tid]
        if tensor.state == FULL:
            return "full"
        if tensor.state == REF:
            self.full_refs.add(tid)
            return "ref"
        return self._window_read(tid, np.zeros_like(tensor.start), tensor.length)

    def _window_read(self, tid, start, width, left=0, right=0, value=0.0, reference_only=False):
        tensor = self.plan.tensors[tid]
        if (not reference_only and tensor.state == WIN and width == tensor.width
                and np.array_equal(start, tensor.start)):
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
        if tensor.state == WIN and not reference_only:
            rel = offsets - tensor.start[:, None]
            rel = np.where((rel >= 0) & (rel < tensor.width), rel, -1).astype(np.int32)
        return WindowRead(key, padded_length, rows, rel)

    # -- first-layer lookup --------------------------------------------------------------------

    def _plan_lookup(self, node_plan):
        """Conv1D on the sequence input: (P, W, w) table of the kernel tap each entry uses."""
        node, rule = node_plan.node, node_plan.rule
        if not (node_plan.state == WIN and isinstance(rule, StridedWindow) and rule.op == "conv"
                and node.arg_ids == (self.plan.seq_id,)):
            return False
        out = self.plan.tensors[node.out_ids[0]]
        seq = self.plan.tensors[self.plan.seq_id]
        j = out.start[:, None, None] + np.arange(out.width)[None, :, None]     # output position
        pos = seq.start[:, None, None] + np.arange(seq.width)[None, None, :]  # mutated position
        offset = pos - (rule.stride * j - rule.pad_left)
        tap = np.where((offset >= 0) & (offset % rule.dilation == 0)
                       & (offset // rule.dilation < rule.kernel), offset // rule.dilation, -1)
        self.lookup[node.index] = tap.astype(np.int32)
        self.reads[("seq_ref",)] = self._window_read(self.plan.seq_id, seq.start, seq.width,
                                                     reference_only=True)
        key = self._pre_activation_key(node)
        rows = (out.start[:, None] + np.arange(out.width)[None, :]).astype(np.int32)
        self.pre_activation[node.index] = WindowRead(key, out.length, rows, None)
        return True

    def _pre_activation_key(self, node):
        """Cache key of a node's reference output before its activation."""
        key = CacheKey(-1 - node.index)
        self.keys[key] = None
        return key

    # -- incremental dense ---------------------------------------------------------------------

    def _key_used(self, key):
        reads = list(self.reads.values()) + [r for _, r in self.dense.values()]
        reads += list(self.pre_activation.values())
        return any(isinstance(r, WindowRead) and r.key == key for r in reads)

    def _plan_incremental_dense(self, node_plan, consumers, producer):
        """Dense(Flatten(t)) with t windowed: update from the window's rows only."""
        node = node_plan.node
        if node.class_name != "Dense" or node_plan.state != FULL or len(node.arg_ids) != 1:
            return False
        flat_node = producer.get(node.arg_ids[0])
        if flat_node is None or flat_node.class_name != "Flatten":
            return False
        tid = flat_node.arg_ids[0]
        tensor = self.plan.tensors[tid]
        if tensor.state != WIN or len(self.graph.shapes[tid]) != 2:
            return False
        if len(np.unique(tensor.start)) * MIN_POSITIONS_PER_DENSE_GROUP > len(tensor.start):
            return False
        if 2 * tensor.width > tensor.length:
            return False
        read = self._window_read(tid, tensor.start, tensor.width, reference_only=True)
        self.dense[node.index] = (tid, read)
        self.pre_activation[node.index] = WindowRead(self._pre_activation_key(node), 1, None, None)
        flat_readers = consumers.get(flat_node.out_ids[0], [])
        if (all(reader.index in self.dense for reader in flat_readers)
                and flat_node.out_ids[0] not in self.graph.output_ids):
            self.elided.add(flat_node.index)
        return True

    def _set_position_groups(self):
        """(P,) group id per position: equal ids share every incremental-dense window."""
        if not self.dense:
            return
        starts = np.stack([self.plan.tensors[tid].start for tid, _ in self.dense.values()], axis=1)
        _, self.position_groups = np.unique(starts, axis=0, return_inverse=True)
        self.position_groups = self.position_groups.reshape(-1)

    # -- cost ----------------------------------------------------------------------------------

    def bytes_per_mutation(self):
        """Rough float32 bytes one mutation occupies in the mutation pass (for the batch size)."""
        total = 0
        for node_plan in self.plan.nodes:
            if node_plan.state == REF:
                continue
            for tid in node_plan.node.out_ids + node_plan.node.arg_ids:
                tensor = self.plan.tensors[tid]
                shape = self.graph.shapes[tid]
                per_position = int(np.prod([d or 1 for d in shape[1:]])) if shape else 1
                if tensor.state == WIN:
                    total += tensor.width * per_position
                else:
                    total += per_position * (shape[0] or 1 if shape else 1)
        return 4 * total

    # -- TensorFlow programs -------------------------------------------------------------------

    def compile(self):
        import tensorflow as tf

        self._constants = self._make_constants(tf)

        @tf.function(reduce_retracing=True)
        def reference(inputs):
            return self._reference_pass(tf, inputs)

        def mutation_pass(cache, b, p, s):
            return self._mutation_pass(tf, cache, b, p, s)

        mutation = {False: tf.function(mutation_pass, reduce_retracing=True),
                    True: tf.function(mutation_pass, reduce_retracing=True, jit_compile=True)}
        return reference, mutation

    def _make_constants(self, tf):
        consts = {"subs": tf.constant(self.substitutions)}
        for name, read in list(self.reads.items()) + [(("dense", n), r) for n, (_, r) in self.dense.items()] \
                + [(("pre", n), r) for n, r in self.pre_activation.items()]:
            if isinstance(read, WindowRead) and read.rows is not None:
                consts[("rows", name)] = tf.constant(read.rows)
                if read.rel is not None:
                    consts[("rel", name)] = tf.constant(read.rel)
        for index, tap in self.lookup.items():
            consts[("tap", index)] = tf.constant(tap)
        for node_index, (tid, _) in self.dense.items():
            consts[("dense_start", node_index)] = tf.constant(self.plan.tensors[tid].start.astype(np.int32))
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
        keep = set(self.graph.output_ids) | self.full_refs | {k.tensor for k in self.keys if k.tensor >= 0}
        keep |= {self.graph.nodes[n].arg_ids[0] for n in self.pre_activation}
        values = self.graph.run(inputs, keep=keep)
        cache = {f"full_t{tid}": values[tid] for tid in self.full_refs}
        for key in self.keys:
            if key.tensor < 0:
                node = self.graph.nodes[-1 - key.tensor]
                ref = self._linear_part(tf, node, values[node.arg_ids[0]])
            else:
                ref = values[key.tensor]
                if key.left or key.right:
                    ref = tf.pad(ref, [[0, 0], [key.left, key.right], [0, 0]], constant_values=key.value)
            cache[key.name] = tf.reshape(ref, [-1, ref.shape[-1]])
        return [values[t] for t in self.graph.output_ids], cache

    def _linear_part(self, tf, node, x):
        """A Conv1D's / Dense's output before its activation, on the whole reference tensor."""
        import keras

        layer = node.op
        x = tf.cast(x, tf.float32)
        kernel = keras.ops.cast(layer.kernel, tf.float32)
        if node.index in self.lookup:
            rule = self.plan.nodes[node.index].rule
            x = tf.pad(x, [[0, 0], [max(rule.pad_left, 0), max(rule.pad_right, 0)], [0, 0]])
            y = keras.ops.conv(x, kernel, strides=rule.stride, padding="valid",
                               dilation_rate=rule.dilation)
        else:
            y = tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), kernel)
        if layer.use_bias:
            y = y + keras.ops.cast(layer.bias, tf.float32)
        return y

    def _mutation_pass(self, tf, cache, b, p, s):
        values = {self.plan.seq_id: tf.gather(self._constants["subs"], s)}
        for node_plan in self.plan.nodes:
            node = node_plan.node
            if node_plan.state == REF or node.index in self.elided:
                continue
            if node.index in self.lookup:
                outs = [self._lookup(tf, node_plan, cache, b, p, s)]
            elif node.index in self.dense:
                outs = [self._incremental_dense(tf, node_plan, values, cache, b, p)]
            else:
                args = {tid: self._read(tf, (node.index, i), tid, values, cache, b, p)
                        for i, tid in enumerate(node.arg_ids)}
                if node_plan.state == WIN and node_plan.rule.role not in (POSITION_WISE, MERGE):
                    outs = [self._apply_local(tf, node_plan, args[node.arg_ids[0]], p)]
                else:
                    outs = self.graph.call(node, args)
            values.update(zip(node.out_ids, outs))
        return [self._read(tf, ("out", i), tid, values, cache, b, p)
                for i, tid in enumerate(self.graph.output_ids)]

    def _gather_rows(self, tf, name, read, cache, b, p):
        rows = tf.gather(self._constants[("rows", name)], p) + b[:, None] * read.padded_length
        return tf.gather(cache[read.key.name], rows)

    def _read(self, tf, name, tid, values, cache, b, p):
        read = self.reads[name]
        if read in ("direct", "full"):
            return values[tid]
        if read == "ref":
            return tf.gather(cache[f"full_t{tid}"], b)
        if read.direct:
            return values[tid]
        window = self._gather_rows(tf, name, read, cache, b, p)
        if read.rel is None:
            return window
        rel = tf.gather(self._constants[("rel", name)], p)
        recomputed = tf.gather(values[tid], tf.maximum(rel, 0), batch_dims=1)
        recomputed = tf.cast(recomputed, window.dtype)
        return tf.where((rel >= 0)[..., None], recomputed, window)

    def _lookup(self, tf, node_plan, cache, b, p, s):
        """First-layer lookup: reference pre-activation + kernel rows times the input change."""
        import keras

        node = node_plan.node
        layer = node.op
        seq_read = self._seq_reference_window(tf, cache, b, p)            # (M, w, C)
        change = tf.gather(self._constants["subs"], s) - tf.cast(seq_read, tf.float32)
        kernel = keras.ops.cast(layer.kernel, change.dtype)                # (k, C, F)
        per_tap = tf.einsum("mwc,kcf->mwkf", change, kernel)               # (M, w, k, F)
        tap = tf.gather(self._constants[("tap", node.index)], p)           # (M, W, w)
        taps = per_tap.shape[2]
        flat = tf.reshape(per_tap, [tf.shape(per_tap)[0], -1, per_tap.shape[-1]])
        index = tf.maximum(tap, 0) + taps * tf.range(tap.shape[-1])[None, None, :]
        picked = tf.gather(flat, index, batch_dims=1)                      # (M, W, w, F)
        delta = tf.reduce_sum(tf.where((tap >= 0)[..., None], picked, 0.0), axis=2)
        read = self.pre_activation[node.index]
        reference = self._gather_rows(tf, ("pre", node.index), read, cache, b, p)
        return layer.activation(tf.cast(reference, tf.float32) + delta)

    def _seq_reference_window(self, tf, cache, b, p):
        """Reference values of the mutated window (M, w, C), from the cached input."""
        name = ("seq_ref",)
        return self._gather_rows(tf, name, self.reads[name], cache, b, p)

    def _incremental_dense(self, tf, node_plan, values, cache, b, p):
        """W x_mut + bias = cached (W x_ref + bias) + W[window rows] (x_mut - x_ref)[window]."""
        import keras

        node = node_plan.node
        layer = node.op
        tid, read = self.dense[node.index]
        tensor = self.plan.tensors[tid]
        reference_window = self._gather_rows(tf, ("dense", node.index), read, cache, b, p)
        change = tf.cast(values[tid], tf.float32) - tf.cast(reference_window, tf.float32)
        channels = self.graph.shapes[tid][1]
        start = tf.gather(self._constants[("dense_start", node.index)], p[0])
        kernel = keras.ops.cast(layer.kernel, change.dtype)
        rows = tf.slice(kernel, [start * channels, 0], [tensor.width * channels, kernel.shape[1]])
        delta = tf.matmul(tf.reshape(change, [tf.shape(change)[0], -1]), rows)
        reference = tf.gather(cache[self.pre_activation[node.index].key.name], b)
        return layer.activation(tf.cast(reference, tf.float32) + delta)

    def _apply_local(self, tf, node_plan, window, p):
        import keras

        rule, layer = node_plan.rule, node_plan.node.op
        if isinstance(rule, UpSample):
            return keras.ops.repeat(window, rule.size, axis=1)
        if rule.op == "identity":
            return window
        if rule.op == "conv":
            window = keras.ops.cast(window, layer.compute_dtype)
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
