"""The TensorFlow side of the fast path: a ``Program`` turned into two ``tf.function`` s.

* the **reference pass**: the model on the ``B`` reference sequences, keeping every cached
  tensor the mutation pass reads (padded the way the reading layer pads, flattened to
  (B * Lp, C) rows);
* the **mutation pass** ``(cache, b, p, s, anchor, merged)``: for ``M`` mutations (sequence b,
  position index p, substitution s; each (M,) int32) of one call (its incremental-dense window
  group ``anchor``, ``merged`` when it spans several groups), gathers each node's input
  window from the cache by the program's index tables, overlays the recomputed window of the
  node before, lets the node's rule compute its output window, and continues; from the first
  stop on it runs the model's layers on whole tensors.
"""

from __future__ import annotations

from fastism_dist.core.layer_rules import DenseRule
from fastism_dist.core.plan import MERGE, POSITION_WISE, REF, WIN
from fastism_dist.core.program import PaddedRead, WindowRead


class Emitter:
    """Builds and runs the TensorFlow programs of one ``Program``."""

    def __init__(self, program):
        self.program = program
        self.plan = program.plan
        self.graph = program.graph

    def compile(self):
        """(reference, {xla: mutation}) tf.functions."""
        import tensorflow as tf

        self._constants = self._make_constants(tf)
        reference = tf.function(self._reference_pass, reduce_retracing=True)
        mutation = {False: tf.function(self._mutation_pass, reduce_retracing=True),
                    True: tf.function(self._mutation_pass, reduce_retracing=True,
                                      jit_compile=True)}
        return reference, mutation

    def _make_constants(self, tf):
        program = self.program
        reads = list(program.reads.items())
        reads += [(("dense", n), r) for n, (_, r) in program.dense.items()]
        reads += [(("pre", n), r) for n, r in program.pre_activation.items()]
        consts = {"subs": tf.constant(program.substitutions)}
        for name, read in reads:
            if isinstance(read, WindowRead) and read.rows is not None:
                consts[("rows", name)] = tf.constant(read.rows)
                if read.rel is not None:
                    consts[("rel", name)] = tf.constant(read.rel)
        for index, frame in program.incremental.items():
            consts[("frame", index)] = tf.constant(frame)
        groups = program.groups
        for k, index in enumerate(groups.nodes if groups else []):
            consts[("dense_start", index)] = tf.constant(groups.starts[:, k])
            consts[("union_start", index)] = tf.constant(groups.union_starts[k])
            consts[("position_start", index)] = tf.constant(groups.position_starts[k])
        for index, tables in program.tables.items():
            for table_name, table in tables.items():
                consts[("table", index, table_name)] = tf.constant(table)
        return consts

    # -- reference pass ------------------------------------------------------------------------

    def _reference_pass(self, inputs):
        import tensorflow as tf

        program = self.program
        keep = set(self.graph.output_ids) | program.full_refs
        keep |= {k.tensor for k in program.keys if k.tensor >= 0}
        keep |= {self.graph.nodes[n].arg_ids[0] for n in program.pre_activation}
        values = self.graph.run(inputs, keep=keep)
        cache = {f"full_t{tid}": values[tid] for tid in program.full_refs}
        for key in program.keys:
            if key.tensor < 0:
                node = self.graph.nodes[-1 - key.tensor]
                ref = self._linear_part(node, values[node.arg_ids[0]])
            else:
                ref = values[key.tensor]
                if key.left or key.right:
                    ref = tf.pad(ref, [[0, 0], [key.left, key.right], [0, 0]],
                                 constant_values=key.value)
            cache[key.name] = tf.reshape(ref, [-1, ref.shape[-1]])
        for index in program.incremental:
            layer = self.graph.nodes[index].op
            cache[f"kernel_n{index}"] = reversed_kernel(tf.cast(layer.kernel, tf.float32))
        return [values[t] for t in self.graph.output_ids], cache

    def _linear_part(self, node, x):
        """An incremental Conv1D's or Dense's reference output before its activation."""
        import tensorflow as tf

        if node.index in self.program.incremental:
            return self.plan.nodes[node.index].rule.linear_part(node.op, x)
        return DenseRule.linear_part(node.op, tf.reshape(x, [tf.shape(x)[0], -1]))

    # -- mutation pass -------------------------------------------------------------------------

    def _mutation_pass(self, cache, b, p, s, anchor, merged):
        import tensorflow as tf

        program = self.program
        values = {self.plan.seq_id: tf.gather(self._constants["subs"], s)}
        for node_plan in self.plan.nodes:
            node = node_plan.node
            if node_plan.state == REF or node.index in program.elided:
                continue
            if node.index in program.incremental:
                outs = [self._incremental_conv(node_plan, values, cache, b, p)]
            elif node.index in program.dense:
                outs = [self._incremental_dense(node_plan, values, cache, b, p, anchor, merged)]
            else:
                inputs = [self._read((node.index, i), tid, values, cache, b, p)
                          for i, tid in enumerate(node.arg_ids)]
                outs = self._apply(node_plan, inputs, p)
            values.update(zip(node.out_ids, outs))
        return [self._read(("out", i), tid, values, cache, b, p)
                for i, tid in enumerate(self.graph.output_ids)]

    def _apply(self, node_plan, inputs, p):
        import tensorflow as tf

        node, rule = node_plan.node, node_plan.rule
        if (node_plan.state != WIN or rule.role in (POSITION_WISE, MERGE)
                or node.index in self.program.whole):
            return self.graph.call(node, dict(zip(node.arg_ids, inputs)))
        tables = {name: tf.gather(self._constants[("table", node.index, name)], p)
                  for name in self.program.tables.get(node.index, {})}
        return rule.apply(node, self.graph, inputs, tables)

    def _gather_rows(self, name, read, cache, b, p):
        import tensorflow as tf

        rows = tf.gather(self._constants[("rows", name)], p) + b[:, None] * read.padded_length
        return tf.gather(cache[read.key.name], rows)

    def _read(self, name, tid, values, cache, b, p):
        import tensorflow as tf

        read = self.program.reads[name]
        if read in ("direct", "full"):
            return values[tid]
        if read == "ref":
            return tf.gather(cache[f"full_t{tid}"], b)
        if isinstance(read, PaddedRead):
            whole = values[tid]
            if read.left or read.right:
                whole = tf.pad(whole, [[0, 0], [read.left, read.right], [0, 0]],
                               constant_values=read.value)
            return whole[:, read.begin:read.begin + read.width]
        if read.direct:
            return values[tid]
        window = self._gather_rows(name, read, cache, b, p)
        if read.rel is None:
            return window
        rel = tf.gather(self._constants[("rel", name)], p)
        recomputed = tf.cast(tf.gather(values[tid], tf.maximum(rel, 0), batch_dims=1), window.dtype)
        return tf.where((rel >= 0)[..., None], recomputed, window)

    def _incremental_conv(self, node_plan, values, cache, b, p):
        """Reference pre-activation + the convolution of the input's change, then activation.

        The change (M, w, C) times the reversed kernel (cached by the reference pass),
        (M * w, C) x (C, k * F), gives every
        product of a window entry and a tap; static shifted adds sum them into the stride-1
        frame (M, W_c, F) (``ConvRule.frame_index``), and one gather per mutation picks the
        layer's W_out outputs from it (stride, padding and window edges live in that table).
        """
        import tensorflow as tf

        node = node_plan.node
        layer = node.op
        name = ("change", node.index)
        reference = self._gather_rows(name, self.program.reads[name], cache, b, p)  # (M, w, C)
        change = tf.cast(values[node.arg_ids[0]], tf.float32) - tf.cast(reference, tf.float32)
        frame = delta_frame(change, cache[f"kernel_n{node.index}"], node_plan.rule.kernel,
                            node_plan.rule.dilation)                              # (M, W_c + 1, F)
        index = tf.gather(self._constants[("frame", node.index)], p)              # (M, W_out)
        delta = tf.gather(frame, index, batch_dims=1)                             # (M, W_out, F)
        read = self.program.pre_activation[node.index]
        reference = self._gather_rows(("pre", node.index), read, cache, b, p)
        return layer.activation(tf.cast(reference, tf.float32) + delta)

    def _incremental_dense(self, node_plan, values, cache, b, p, anchor, merged):
        """W x_mut + bias = cached (W x_ref + bias) + W[window rows] (x_mut - x_ref)[window].

        A merged call spans several window groups: each mutation's change is placed at its
        offset inside the union window of the call's first group, which selects the rows.
        """
        import keras
        import tensorflow as tf

        node = node_plan.node
        layer = node.op
        tid, read = self.program.dense[node.index]
        width, channels = self.plan.tensors[tid].width, self.graph.shapes[tid][1]
        reference_window = self._gather_rows(("dense", node.index), read, cache, b, p)
        change = tf.cast(values[tid], tf.float32) - tf.cast(reference_window, tf.float32)
        if merged:
            union = int(self.program.groups.union[self.program.groups.nodes.index(node.index)])
            start = tf.gather(self._constants[("union_start", node.index)], anchor)
            shift = tf.gather(self._constants[("position_start", node.index)], p) - start
            offset = tf.range(union)[None, :] - shift[:, None]                    # (M, U)
            inside = (offset >= 0) & (offset < width)
            change = tf.gather(change, tf.clip_by_value(offset, 0, width - 1), batch_dims=1)
            change = tf.where(inside[..., None], change, 0.0)
            width = union
        else:
            start = tf.gather(self._constants[("dense_start", node.index)], anchor)
        kernel = keras.ops.cast(layer.kernel, change.dtype)
        units = kernel.shape[1]
        # a gather, not a slice: XLA compiles a slice once per start value, a gather once
        rows = tf.gather(tf.reshape(kernel, [-1, channels, units]), start + tf.range(width))
        rows = tf.reshape(rows, [width * channels, units])
        delta = tf.matmul(tf.reshape(change, [tf.shape(change)[0], -1]), rows)
        reference = tf.gather(cache[self.program.pre_activation[node.index].key.name], b)
        return layer.activation(tf.cast(reference, tf.float32) + delta)


def reversed_kernel(kernel):
    """A (k, C, F) Conv1D kernel as the (C, k * F) matrix of its taps in reverse order."""
    import tensorflow as tf

    taps, channels, filters = kernel.shape
    return tf.reshape(tf.transpose(tf.reverse(kernel, [0]), [1, 0, 2]), [channels, taps * filters])


def delta_frame(change, flat_kernel, taps, dilation):
    """The stride-1 'full' convolution of a window's change, with a zero row appended.

    Parameters
    ----------
    change : tf.Tensor of shape (M, w, C)
        The input's change on its window, float32.
    flat_kernel : tf.Tensor of shape (C, k * F)
        ``reversed_kernel`` of the (k, C, F) kernel.
    taps, dilation : int
        Kernel size ``k`` and dilation.

    Returns
    -------
    tf.Tensor of shape (M, W_c + 1, F), W_c = w + dilation * (k - 1)
        Entry ``u < W_c`` is ``sum_r kernel[k - 1 - r] . change[u - dilation * r]`` over the
        reversed taps ``r`` whose entry lies in the window; entry ``W_c`` is zero.
    """
    import tensorflow as tf

    channels, width = change.shape[2], change.shape[1]
    filters = flat_kernel.shape[1] // taps
    products = tf.matmul(tf.reshape(change, [-1, channels]), flat_kernel)
    products = tf.reshape(products, [-1, width, taps, filters])      # (M, w, k, F), reversed taps
    span = dilation * (taps - 1)
    if width <= taps:
        parts = [tf.pad(_dilate(products[:, i], dilation), [[0, 0], [i, width - 1 - i], [0, 0]])
                 for i in range(width)]
    else:
        parts = [tf.pad(products[:, :, r], [[0, 0], [dilation * r, span - dilation * r], [0, 0]])
                 for r in range(taps)]
    return tf.pad(tf.add_n(parts), [[0, 0], [0, 1], [0, 0]])


def _dilate(taps, dilation):
    """(M, k, F) -> (M, dilation * (k - 1) + 1, F): the taps ``dilation`` entries apart."""
    import tensorflow as tf

    if dilation == 1:
        return taps
    k, filters = taps.shape[1], taps.shape[2]
    spread = tf.pad(taps[:, :, None], [[0, 0], [0, 0], [0, dilation - 1], [0, 0]])
    return tf.reshape(spread, [-1, k * dilation, filters])[:, :dilation * (k - 1) + 1]
