"""The mutation plan: which window of every tensor a mutation changes.

No TensorFlow here: the plan is built from the graph's static shapes and each node's rule
(``rules.py``), with interval arithmetic on NumPy arrays holding one entry per mutated position
(``P`` positions). Every tensor is in one of three states in the mutation pass:

* ``REF``: does not depend on the mutation, the cached reference value;
* ``WIN``: only a constant-width window ``[start, start + width)`` is recomputed, the rest is the
  reference;
* ``FULL``: recomputed over the whole tensor (from the first stop layer on a path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastism_dist.core import conv_rules, layer_rules, op_rules  # noqa: F401 - register the built-in rules
from fastism_dist.core.rules import MERGE, POSITION_WISE, STOP, Rule, clip_interval, rule_for

REF = "ref"
WIN = "win"
FULL = "full"


@dataclass
class TensorPlan:
    """How one tensor looks in the mutation pass.

    For ``WIN`` tensors: ``lo``, ``hi`` (P,) the affected interval per position, ``start`` (P,)
    the recomputed window's start and ``width`` its constant width.
    """

    state: str
    length: int | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    start: np.ndarray | None = None
    width: int = 0


@dataclass
class NodePlan:
    node: object
    rule: Rule
    state: str

    @property
    def class_name(self):
        return type(self.node.op).__name__


@dataclass
class Plan:
    """The plan of a graph for one mutation spec (``P`` positions of width ``w``)."""

    graph: object
    seq_id: int
    tensors: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)

    def summary(self):
        """(node name, class name, state) per node, in order; state is "ref", "full" or
        "win<width>" (the node's first output)."""
        rows = []
        for node_plan in self.nodes:
            tensor = self.tensors[node_plan.node.out_ids[0]]
            width = f"{tensor.width}" if tensor.state == WIN else ""
            rows.append((node_plan.node.name, node_plan.class_name, tensor.state + width))
        return rows

    def stop_nodes(self):
        """Nodes where acceleration stops: recomputed in full though their input was windowed."""
        return [n for n in self.nodes if n.state == FULL and any(
            self.tensors[t].state == WIN for t in n.node.arg_ids)]


def _window(lo, hi, length, align=1):
    """Constant window width covering every non-empty [lo, hi), and per-position starts."""
    nonempty = lo < hi
    if not nonempty.any():
        return np.zeros_like(lo), 0
    width = int((hi - lo)[nonempty].max())
    width = min(-(-width // align) * align, length)
    start = np.where(nonempty, np.minimum(lo, length - width), 0)
    return start - start % align, width


def node_rule(graph, node):
    """The ``Rule`` of a graph node (unknown operations are ``Stop``)."""
    in_shapes = [graph.shapes[t] for t in node.arg_ids]
    out_shapes = [graph.shapes[t] for t in node.out_ids]
    return rule_for(node, in_shapes, out_shapes)


def make_plan(graph, seq_id, positions, width):
    """Plan the mutation pass for windows [p, p + width) at every p in ``positions`` (P,)."""
    positions = np.asarray(positions, dtype=np.int64)
    plan = Plan(graph, seq_id)
    for tid in graph.input_ids:
        plan.tensors[tid] = TensorPlan(REF)
    seq_length = graph.shapes[seq_id][0]
    plan.tensors[seq_id] = TensorPlan(WIN, seq_length, positions, positions + width, positions, width)
    for node in graph.nodes:
        rule = node_rule(graph, node)
        state, outs = _plan_node(plan, node, rule)
        plan.nodes.append(NodePlan(node, rule, state))
        for tid, tensor_plan in zip(node.out_ids, outs):
            plan.tensors[tid] = tensor_plan
    return plan


def _plan_node(plan, node, rule):
    ins = [plan.tensors[t] for t in node.arg_ids]
    n_out = len(node.out_ids)
    if all(t.state == REF for t in ins):
        return REF, [TensorPlan(REF)] * n_out
    if rule.role == STOP or any(t.state == FULL for t in ins) or n_out != 1:
        return FULL, [TensorPlan(FULL)] * n_out
    out_length = plan.graph.shapes[node.out_ids[0]][0]
    windowed = [t for t in ins if t.state == WIN]
    if rule.role == POSITION_WISE:
        src = windowed[0]
        return WIN, [TensorPlan(WIN, out_length, src.lo, src.hi, src.start, src.width)]
    if rule.role == MERGE:
        lo = np.min([np.where(t.lo < t.hi, t.lo, out_length) for t in windowed], axis=0)
        hi = np.max([t.hi for t in windowed], axis=0)
        lo, hi = clip_interval(lo, hi, lo < hi, out_length)
        align = 1
    else:
        lo, hi = rule.affected(windowed[0].lo, windowed[0].hi, out_length)
        align = rule.align
    start, width = _window(lo, hi, out_length, align)
    if width == 0:
        return REF, [TensorPlan(REF)]
    return WIN, [TensorPlan(WIN, out_length, lo, hi, start, width)]
