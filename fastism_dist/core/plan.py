"""Per-layer spatial rules and the mutation plan: which window of every tensor a mutation changes.

No TensorFlow here: rules are built from layer configs and static shapes, and the interval
arithmetic runs on NumPy arrays with one entry per mutated position (``P`` positions).

Intervals are half-open ``[lo, hi)`` along the length axis. A rule maps the affected interval of
its input to the affected interval of its output (a superset is always safe) and tells which input
window a given output window needs (this must be exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSITION_WISE, LOCAL, MERGE, STOP = "position-wise", "local", "merge", "stop"

# Tensor states in the mutation pass.
REF = "ref"    # does not depend on the mutation: the cached reference value
WIN = "win"    # only a window [start, start + width) is recomputed; the rest is the reference
FULL = "full"  # recomputed over the whole tensor


@dataclass(frozen=True)
class Rule:
    role: str
    reason: str = ""


@dataclass(frozen=True)
class PositionWise(Rule):
    """output[i] depends on input[i] only; the layer is called on windows directly."""

    role: str = POSITION_WISE


@dataclass(frozen=True)
class Merge(Rule):
    """Several inputs aligned along length; the layer is called on aligned windows."""

    role: str = MERGE


@dataclass(frozen=True)
class Stop(Rule):
    role: str = STOP


@dataclass(frozen=True)
class StridedWindow(Rule):
    """output[j] reads input[stride*j - pad_left + dilation*i] for i < kernel (padding outside).

    ``op`` names how the window is reduced: "conv", "max", "avg", "avg_same" or "identity".
    ``pad_left`` / ``pad_right`` may be negative (cropping).
    """

    role: str = LOCAL
    op: str = "identity"
    kernel: int = 1
    dilation: int = 1
    stride: int = 1
    pad_left: int = 0
    pad_right: int = 0
    pad_value: float = 0.0

    @property
    def span(self):
        """Input positions one output reads: dilation * (kernel - 1) + 1."""
        return self.dilation * (self.kernel - 1) + 1

    def affected(self, lo, hi, out_length):
        """Output interval touched by a change of input[lo:hi] (vectorised; empty stays empty)."""
        first = -((-(lo + self.pad_left - self.span + 1)) // self.stride)
        last = (hi - 1 + self.pad_left) // self.stride
        return _clip(first, last + 1, lo < hi, out_length)

    def needed(self, start, width):
        """Input window (start, width) computing output window [start, start + width)."""
        return self.stride * start - self.pad_left, self.stride * (width - 1) + self.span

    def valid_counts(self, in_length, out_length):
        """Per output position, how many window entries fall inside the input (for 'avg_same')."""
        j = np.arange(out_length)[:, None]
        pos = self.stride * j - self.pad_left + self.dilation * np.arange(self.kernel)[None, :]
        return ((pos >= 0) & (pos < in_length)).sum(axis=1).astype(np.float32)


@dataclass(frozen=True)
class UpSample(Rule):
    """output[j] = input[j // size]; output windows are aligned to multiples of ``size``."""

    role: str = LOCAL
    size: int = 1

    def affected(self, lo, hi, out_length):
        return _clip(lo * self.size, hi * self.size, lo < hi, out_length)


def _clip(lo, hi, nonempty, length):
    lo = np.clip(lo, 0, length)
    hi = np.clip(hi, 0, length)
    keep = nonempty & (lo < hi)
    return np.where(keep, lo, 0), np.where(keep, hi, 0)


# ---------------------------------------------------------------------------------------------
# Rule registry: Keras class name -> factory(config, in_shapes, out_shapes) -> Rule
# ---------------------------------------------------------------------------------------------

_ELEMENTWISE = {
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "Masking",
}
_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}


def _channels_last_axis(axis, rank=3):
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def _activation_rule(config, in_shapes, out_shapes):
    return PositionWise()


def _softmax_rule(config, in_shapes, out_shapes):
    if _channels_last_axis(config.get("axis", -1)):
        return PositionWise()
    return Stop(reason="softmax over the length axis")


def _batch_norm_rule(config, in_shapes, out_shapes):
    if _channels_last_axis(config.get("axis", -1)):
        return PositionWise()
    return Stop(reason=f"normalises over axis {config.get('axis')}")


def _layer_norm_rule(config, in_shapes, out_shapes):
    if _channels_last_axis(config.get("axis", -1)):
        return PositionWise()
    return Stop(reason=f"normalises over axes {config.get('axis')}")


def _prelu_rule(config, in_shapes, out_shapes):
    if 1 in (config.get("shared_axes") or []):
        return PositionWise()
    return Stop(reason="alpha differs per position (shared_axes lacks axis 1)")


def _conv_rule(config, in_shapes, out_shapes):
    if config.get("data_format", "channels_last") != "channels_last":
        return Stop(reason="channels_first convolution")
    if config.get("groups", 1) != 1:
        return Stop(reason="grouped convolution")
    kernel, = config["kernel_size"]
    stride, = config["strides"]
    dilation, = config["dilation_rate"]
    span = dilation * (kernel - 1) + 1
    in_length = in_shapes[0][0]
    padding = config["padding"]
    if padding == "valid":
        pad_left = pad_right = 0
    elif padding == "causal":
        pad_left, pad_right = span - 1, 0
    else:
        pad_left, pad_right = _same_padding(in_length, span, stride)
    return StridedWindow(op="conv", kernel=kernel, dilation=dilation, stride=stride,
                         pad_left=pad_left, pad_right=pad_right)


def _same_padding(in_length, span, stride):
    """(left, right) padding of TensorFlow's 'same' mode."""
    out_length = -(-in_length // stride)
    total = max((out_length - 1) * stride + span - in_length, 0)
    return total // 2, total - total // 2


def _pool_rule(kind):
    def rule(config, in_shapes, out_shapes):
        if config.get("data_format", "channels_last") != "channels_last":
            return Stop(reason="channels_first pooling")
        size = config["pool_size"]
        size = size[0] if isinstance(size, (list, tuple)) else size
        stride = config.get("strides") or size
        stride = stride[0] if isinstance(stride, (list, tuple)) else stride
        in_length = in_shapes[0][0]
        if config["padding"] == "valid":
            return StridedWindow(op=kind, kernel=size, stride=stride)
        pad_left, pad_right = _same_padding(in_length, size, stride)
        op = "avg_same" if kind == "avg" else kind
        pad_value = -np.inf if kind == "max" else 0.0
        return StridedWindow(op=op, kernel=size, stride=stride, pad_left=pad_left,
                             pad_right=pad_right, pad_value=pad_value)
    return rule


def _crop_rule(config, in_shapes, out_shapes):
    left, right = config["cropping"]
    return StridedWindow(op="identity", pad_left=-left, pad_right=-right)


def _zero_pad_rule(config, in_shapes, out_shapes):
    if config.get("data_format", "channels_last") != "channels_last":
        return Stop(reason="channels_first padding")
    left, right = config["padding"]
    return StridedWindow(op="identity", pad_left=left, pad_right=right)


def _upsample_rule(config, in_shapes, out_shapes):
    return UpSample(size=int(config["size"]))


def _merge_rule(config, in_shapes, out_shapes):
    lengths = {shape[0] for shape in in_shapes}
    if len(lengths) != 1:
        return Stop(reason="inputs of different lengths (broadcast along length)")
    return Merge()


def _concat_rule(config, in_shapes, out_shapes):
    if not _channels_last_axis(config.get("axis", -1)):
        return Stop(reason="concatenation along the length axis")
    return _merge_rule(config, in_shapes, out_shapes)


RULES = {
    "Activation": _activation_rule,
    "Softmax": _softmax_rule,
    "PReLU": _prelu_rule,
    "BatchNormalization": _batch_norm_rule,
    "LayerNormalization": _layer_norm_rule,
    "Dense": _activation_rule,
    "Conv1D": _conv_rule,
    "MaxPooling1D": _pool_rule("max"),
    "AveragePooling1D": _pool_rule("avg"),
    "Cropping1D": _crop_rule,
    "ZeroPadding1D": _zero_pad_rule,
    "UpSampling1D": _upsample_rule,
    "Concatenate": _concat_rule,
    **{name: _activation_rule for name in _ELEMENTWISE},
    **{name: _merge_rule for name in _MERGES},
}

_STOP_REASONS = {
    "Flatten": "flattens all positions",
    "Dense": "Dense on flattened input mixes all positions",
    "Reshape": "reshapes across positions",
    "GlobalAveragePooling1D": "pools all positions",
    "GlobalMaxPooling1D": "pools all positions",
    "MultiHeadAttention": "attention mixes all positions",
}


def rule_for(class_name, config, in_shapes, out_shapes):
    """The spatial rule of one layer call; unknown layers and unexpected shapes are ``Stop``.

    in_shapes, out_shapes : static shapes without the batch axis.
    """
    factory = RULES.get(class_name)
    if factory is None:
        return Stop(reason=_STOP_REASONS.get(class_name, "not a layer the planner knows"))
    if not in_shapes or any(len(s) != 2 or s[0] is None for s in in_shapes + out_shapes):
        return Stop(reason=_STOP_REASONS.get(class_name, "input or output is not (length, channels)"))
    try:
        rule = factory(config, in_shapes, out_shapes)
    except (KeyError, TypeError, ValueError) as err:
        return Stop(reason=f"unrecognised config ({err})")
    return _checked(rule, in_shapes, out_shapes)


def _checked(rule, in_shapes, out_shapes):
    """Stop unless the rule predicts the layer's real output length."""
    in_length, out_length = in_shapes[0][0], out_shapes[0][0]
    if isinstance(rule, (PositionWise, Merge)):
        expected = in_length
    elif isinstance(rule, StridedWindow):
        total = in_length + rule.pad_left + rule.pad_right
        expected = (total - rule.span) // rule.stride + 1
    elif isinstance(rule, UpSample):
        expected = in_length * rule.size
    else:
        return rule
    if expected != out_length:
        return Stop(reason=f"output length {out_length} differs from the rule's {expected}")
    return rule


# ---------------------------------------------------------------------------------------------
# The mutation plan
# ---------------------------------------------------------------------------------------------

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


@dataclass
class Plan:
    """The plan of a graph for one mutation spec (``P`` positions of width ``w``)."""

    graph: object
    seq_id: int
    tensors: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)

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


def _node_config(node):
    try:
        return node.op.get_config()
    except (NotImplementedError, TypeError, AttributeError):
        return {}


def node_rule(graph, node):
    """The ``Rule`` of a graph node (unknown operations are ``Stop``)."""
    in_shapes = [graph.shapes[t] for t in node.arg_ids]
    out_shapes = [graph.shapes[t] for t in node.out_ids]
    return rule_for(node.class_name, _node_config(node), in_shapes, out_shapes)


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
        lo, hi = _clip(lo, hi, lo < hi, out_length)
        align = 1
    else:
        lo, hi = rule.affected(windowed[0].lo, windowed[0].hi, out_length)
        align = rule.size if isinstance(rule, UpSample) else 1
    start, width = _window(lo, hi, out_length, align)
    if width == 0:
        return REF, [TensorPlan(REF)]
    return WIN, [TensorPlan(WIN, out_length, lo, hi, start, width)]
