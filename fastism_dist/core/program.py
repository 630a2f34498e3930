"""The static part of the fast path: which cached tensors to keep and the index tables that read them.

No TensorFlow here. From a ``Plan`` the ``Program`` decides, per node of the mutation pass, how
each input is read: the node's own recomputed window (``direct``), a window gathered from the
padded reference cache with the recomputed part overlaid (a ``WindowRead`` with its (P, width)
row tables), a tensor whose window has grown to all of it, padded and sliced without the cache
(a ``PaddedRead``), the whole reference tensor (``ref``) or the whole recomputed tensor
(``full``). A local layer whose input and output a mutation changes all of is called as the
layer itself on the whole input (``whole``), as naive ISM calls it.
It also plans the exact shortcuts:

* *incremental convolution*: a convolution is linear before its activation, so
  ``conv(x_mut) = conv(x_ref) + conv(x_mut - x_ref)``, and the change is non-zero only on the
  input's recomputed window (``w_in`` positions). The changed outputs are the cached reference
  pre-activation plus ``sum_i K[tap(j, i)] . change[i]``: (w_in, C_in) x (C_in, k * C_out) per
  mutation, static shifted adds of the products into the stride-1 frame of the window and one
  gather of the ``W_out`` outputs from it, instead of a convolution over the affected outputs.
  It is used where it is cheaper (w_in < W_out). On a Conv1D reading the sequence input (w_in is
  the substitution width) it is the *first-layer lookup*;
* *incremental dense*: a Dense after a channels-last Flatten is linear before its activation, so
  ``W x_mut = W x_ref + W[window rows] (x_mut - x_ref)[window]``. Positions sharing the window
  form a group; a call holds one group (the window's rows), or several neighbouring groups
  whose windows fit in a union window of twice the width, so that every call is full even for
  one sequence (``DenseGroups.calls``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastism_dist.core.graph import shape_floats
from fastism_dist.core.layer_rules import ConvRule, DenseRule, FlattenRule
from fastism_dist.core.plan import FULL, MERGE, POSITION_WISE, REF, WIN
from fastism_dist.core.rules import rule_class_for, working_floats

MIN_POSITIONS_PER_DENSE_GROUP = 4


@dataclass(frozen=True)
class CacheKey:
    """A cached reference tensor, padded by (left, right) positions filled with ``value``.

    ``tensor < 0`` stands for the pre-activation output of node ``-1 - tensor``.
    """

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


@dataclass(frozen=True)
class PaddedRead:
    """A read of tensor ``tensor`` recomputed whole (its window spans it): the (M, length, C)
    tensor padded by (left, right) entries of ``value``, then entries [begin, begin + width).

    The same for every position, so no index tables and no reference: one pad and a slice.
    """

    tensor: int
    left: int
    right: int
    value: float
    begin: int
    width: int


class Program:
    """Reads, index tables and shortcuts of the mutation pass for one plan.

    Attributes
    ----------
    keys : dict CacheKey -> padded length of a cached tensor (flattened to rows per sequence)
    full_refs : set of tensor ids cached whole
    reads : dict (node index | "out", argument position) -> WindowRead | PaddedRead | "direct"
        | "ref" | "full"
    incremental : dict node index -> (P, W_out) entry of each output of an incrementally
        computed Conv1D in the stride-1 frame of its input's window (``ConvRule.frame_index``)
    pre_activation : dict node index -> WindowRead of the node's cached pre-activation output
    dense : dict node index -> (tensor id, WindowRead of its reference window)
    elided : set of node indices not computed (only an incremental dense reads them)
    tables : dict node index -> {name: (P, width, ...)} constant tables of the node's rule
    whole : set of indices of local nodes called as the layer itself: a mutation changes all of
        their input and output (``Rule.whole_by_layer``)
    groups : DenseGroups of the incremental-dense windows, or None
    """

    def __init__(self, plan, substitutions, first_layer_lookup=True, incremental_conv=True,
                 incremental_dense=True):
        self.plan = plan
        self.graph = plan.graph
        self.substitutions = substitutions.astype(np.float32)
        self.keys, self.full_refs, self.reads = {}, set(), {}
        self.incremental, self.pre_activation, self.dense = {}, {}, {}
        self.elided, self.tables, self.whole = set(), {}, set()
        self.groups = None
        consumers, producer = self.graph.consumers(), self.graph.producer()
        for node_plan in plan.nodes:
            if node_plan.state == REF:
                continue
            if self._plan_incremental_conv(node_plan, first_layer_lookup, incremental_conv):
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
        if self.dense:
            self.groups = DenseGroups.of(self.plan, self.dense)

    # -- reads ---------------------------------------------------------------------------------

    def _plan_reads(self, node_plan):
        node, rule = node_plan.node, node_plan.rule
        out = self.plan.tensors[node.out_ids[0]]
        if self._by_layer_on_whole(node_plan):
            self.whole.add(node.index)
            self.reads[(node.index, 0)] = "direct"
            return
        for i, tid in enumerate(node.arg_ids):
            if node_plan.state == FULL:
                read = self._full_read(tid)
            elif rule.role == POSITION_WISE:
                read = "direct"
            elif rule.role == MERGE:
                read = self._window_read(tid, out.start, out.width)
            else:
                start, width = rule.needed(out.start, out.width)
                read = self._window_read(tid, start, width, max(rule.pad_left, 0),
                                         max(rule.pad_right, 0), rule.pad_value)
            self.reads[(node.index, i)] = read
        if node_plan.state == WIN and rule.role not in (POSITION_WISE, MERGE):
            in_length = self.graph.shapes[node.arg_ids[0]][0]
            self.tables[node.index] = rule.tables(in_length, out.start, out.width)

    def _by_layer_on_whole(self, node_plan):
        """A local node whose one input and output are recomputed whole, which its rule lets
        the layer compute itself."""
        node, rule = node_plan.node, node_plan.rule
        if node_plan.state != WIN or rule.role in (POSITION_WISE, MERGE) or len(node.arg_ids) != 1:
            return False
        tensors = [self.plan.tensors[t] for t in (node.arg_ids[0], node.out_ids[0])]
        return all(_recomputed_whole(t) for t in tensors) and rule.whole_by_layer()

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
        if not reference_only and _recomputed_whole(tensor) and len(np.unique(start)) == 1:
            return PaddedRead(tid, left, right, float(value), int(start[0]) + left, width)
        key = CacheKey(tid, left, right, float(value))
        padded_length = self.graph.shapes[tid][0] + left + right
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

    def _key_used(self, key):
        reads = list(self.reads.values()) + [r for _, r in self.dense.values()]
        reads += list(self.pre_activation.values())
        return any(isinstance(r, WindowRead) and r.key == key for r in reads)

    def _pre_activation_key(self, node):
        key = CacheKey(-1 - node.index)
        self.keys[key] = None
        return key

    # -- incremental convolution -------------------------------------------------------------

    def _plan_incremental_conv(self, node_plan, first_layer_lookup, incremental_conv):
        node, rule = node_plan.node, node_plan.rule
        if not (node_plan.state == WIN and isinstance(rule, ConvRule)):
            return False
        tid = node.arg_ids[0]
        source, out = self.plan.tensors[tid], self.plan.tensors[node.out_ids[0]]
        if source.state != WIN:
            return False
        if tid == self.plan.seq_id:
            if not first_layer_lookup:
                return False
        elif not (incremental_conv and source.width < out.width):
            return False
        self.incremental[node.index] = rule.frame_index(out.start, out.width, source.start,
                                                         source.width)
        self.reads[("change", node.index)] = self._window_read(tid, source.start, source.width,
                                                               reference_only=True)
        rows = (out.start[:, None] + np.arange(out.width)[None, :]).astype(np.int32)
        self.pre_activation[node.index] = WindowRead(self._pre_activation_key(node), out.length,
                                                     rows, None)
        return True

    # -- incremental dense ---------------------------------------------------------------------

    def _plan_incremental_dense(self, node_plan, consumers, producer):
        """Dense(Flatten(t)) with t windowed: update from the window's rows only."""
        node = node_plan.node
        if (rule_class_for(node.op) is not DenseRule or node_plan.state != FULL
                or len(node.arg_ids) != 1):
            return False
        flat_node = producer.get(node.arg_ids[0])
        if flat_node is None:
            return False
        flat_rule = self.plan.nodes[flat_node.index].rule
        if not (isinstance(flat_rule, FlattenRule) and flat_rule.row_major):
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

    # -- cost ----------------------------------------------------------------------------------

    def bytes_per_mutation(self):
        """Float32 bytes one mutation occupies in the mutation pass if nothing were freed.

        Every tensor the pass computes counts once (its window, or all of it), every window
        read once more (the gathered rows and the overlay; a padded read once), each
        incremental convolution its products, shifted parts and frame, and each layer computed
        in full what it holds inside (attention scores): an upper bound on what a call holds,
        since the pass frees a tensor once its readers have run.
        """
        total, seen = 0, set()
        for node_plan in self.plan.nodes:
            node = node_plan.node
            if node_plan.state == REF or node.index in self.elided:
                continue
            for tid in node.out_ids:
                if tid not in seen:
                    seen.add(tid)
                    total += self._tensor_floats(tid)
            if node_plan.state == FULL:
                total += working_floats(node, [self.graph.shapes[t] for t in node.arg_ids],
                                        [self.graph.shapes[t] for t in node.out_ids])
        for read in list(self.reads.values()) + list(self.pre_activation.values()):
            if isinstance(read, WindowRead) and read.rows is not None:
                total += 2 * read.rows.shape[1] * self.graph.shapes[self._read_tensor(read)][-1]
            elif isinstance(read, PaddedRead):
                total += read.width * self.graph.shapes[read.tensor][-1]
        for index in self.incremental:
            total += self._incremental_floats(index)
        for index in self._shifted_products_nodes():
            node, rule = self.graph.nodes[index], self.plan.nodes[index].rule
            out = self.plan.tensors[node.out_ids[0]]
            filters = self.graph.shapes[node.out_ids[0]][-1]
            total += rule.needed(0, out.width)[1] * rule.kernel * filters
        return 4 * total

    def _shifted_products_nodes(self):
        """Windowed convolutions computed by ``shifted_products_conv`` (their products count)."""
        return [n.node.index for n in self.plan.nodes
                if n.state == WIN and getattr(n.rule, "shifted_products", False)
                and n.node.index not in self.incremental and n.node.index not in self.whole]

    def _tensor_floats(self, tid):
        tensor, shape = self.plan.tensors[tid], self.graph.shapes[tid]
        if tensor.state == WIN:
            return tensor.width * shape_floats(shape[1:])
        return shape_floats(shape)

    def _read_tensor(self, read):
        tensor = read.key.tensor
        return tensor if tensor >= 0 else self.graph.nodes[-1 - tensor].out_ids[0]

    def _incremental_floats(self, index):
        """Floats per mutation of an incremental convolution's products, parts and frame."""
        node, rule = self.graph.nodes[index], self.plan.nodes[index].rule
        width = self.plan.tensors[node.arg_ids[0]].width
        filters = self.graph.shapes[node.out_ids[0]][-1]
        frame = rule.frame_width(width) + 1
        return (width * rule.kernel + (min(width, rule.kernel) + 1) * frame) * filters


def _recomputed_whole(tensor):
    """A windowed tensor whose window is all of it (the same at every position)."""
    return tensor.state == WIN and tensor.width == tensor.length and not np.any(tensor.start)


@dataclass
class DenseGroups:
    """Positions grouped by their incremental-dense windows, and calls built from the groups.

    Attributes (D incremental Dense layers, G groups, P positions)
    ----------
    nodes : list of the D node indices
    of_position : (P,) group id of each position
    starts : (G, D) int32 window start of each group, groups sorted by start
    width, union, length : (D,) window width, union window width (<= 2 * width) and the length
        of the Dense layer's flattened input
    position_starts : (D, P) int32 window start of each position
    union_starts : (D, G) int32 start of the union window of a call anchored at each group
    """

    nodes: list
    of_position: np.ndarray
    starts: np.ndarray
    width: np.ndarray
    union: np.ndarray
    length: np.ndarray
    position_starts: np.ndarray
    union_starts: np.ndarray

    @classmethod
    def of(cls, plan, dense):
        tensors = [plan.tensors[tid] for tid, _ in dense.values()]
        position_starts = np.stack([t.start for t in tensors]).astype(np.int32)
        starts, of_position = np.unique(position_starts.T, axis=0, return_inverse=True)
        width = np.array([t.width for t in tensors])
        length = np.array([t.length for t in tensors])
        union = np.minimum(2 * width, length)
        union_starts = np.minimum(starts, length - union).T.astype(np.int32)
        return cls(list(dense), of_position.reshape(-1), starts.astype(np.int32), width, union,
                   length, position_starts, union_starts)

    def calls(self, groups, batch_size):
        """Split mutations sorted by ``groups`` (N,) into calls of at most ``batch_size``.

        A call is full unless the next group's window no longer fits in the union window of the
        call's first group. Yields (anchor group, merged, slice): ``merged`` is True when the
        call spans several groups (and must use the union window).
        """
        bounds = np.flatnonzero(np.diff(groups)) + 1
        begins, ends = np.r_[0, bounds], np.r_[bounds, len(groups)]
        call_start, anchor, merged = 0, None, False
        for begin, end in zip(begins, ends):
            group = groups[begin]
            if anchor is not None and not self._fits(anchor, group):
                yield anchor, merged, slice(call_start, begin)
                anchor = None
            if anchor is None:
                call_start, anchor, merged = begin, group, False
            else:
                merged = True
            while end - call_start >= batch_size:
                yield anchor, merged, slice(call_start, call_start + batch_size)
                call_start, anchor, merged = call_start + batch_size, group, False
        if anchor is not None and call_start < len(groups):
            yield anchor, merged, slice(call_start, len(groups))

    def _fits(self, anchor, group):
        shift = self.starts[group] - self.starts[anchor]
        return bool(np.all((shift >= 0) & (shift <= self.union - self.width)))
