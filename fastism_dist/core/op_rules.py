"""Rules for bare Keras operations (``keras.ops.add(h, c)``, ``keras.ops.relu(h)``, ...).

An operation node is accelerated only when the planner can prove it local: an element-wise
operation whose constant operands are the same at every position (they broadcast along the
length axis), or that combines graph tensors of one length position by position. Anything else,
e.g. adding a positional embedding of shape (L, C), is a stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fastism_dist.core.rules import Merge, PositionWise, Stop, builtin, channels_last_axis

_NN = "keras.src.ops.nn:"
_NUMPY = "keras.src.ops.numpy:"
_CORE = "keras.src.ops.core:"

UNARY = tuple(_NN + n for n in (
    "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "Silu", "Gelu", "Elu", "Selu",
    "LeakyRelu", "HardSigmoid", "HardSilu", "Celu")) + tuple(_NUMPY + n for n in (
        "Abs", "Absolute", "Exp", "Log", "Log1p", "Sqrt", "Square", "Negative", "Tanh", "Sign",
        "Clip")) + (_CORE + "Cast",)
BINARY = tuple(_NUMPY + n for n in (
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power"))


@dataclass(frozen=True)
class OpPositionWise(PositionWise):
    """An element-wise operation on one graph tensor (constants broadcast along length)."""


@dataclass(frozen=True)
class OpMerge(Merge):
    """An element-wise operation on several graph tensors of one length."""


def _leaves(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def _constants(node):
    """The call's operands that are not graph tensors."""
    symbolic = {id(t) for t in node.arguments.keras_tensors}
    values = list(node.arguments.args) + list(node.arguments.kwargs.values())
    return [v for v in _leaves(values) if id(v) not in symbolic]


def _varies_along_length(constant):
    """True unless the constant is the same at every position of a (batch, L, C) tensor."""
    if constant is None or isinstance(constant, (bool, int, float, str, np.dtype, type)):
        return False
    shape = getattr(constant, "shape", None)
    if shape is None:
        return not np.isscalar(constant)
    shape = tuple(shape)
    if len(shape) > 3:
        return True
    padded = (1,) * (3 - len(shape)) + shape
    return padded[0] != 1 or padded[1] != 1


@builtin
@dataclass(frozen=True)
class ElementwiseOp(PositionWise):
    """Element-wise Keras operations: position-wise or a merge, if their constants allow."""

    accepts: ClassVar[tuple] = UNARY + BINARY

    @classmethod
    def from_node(cls, node, in_shapes, out_shapes):
        if any(_varies_along_length(c) for c in _constants(node)):
            return Stop(reason="an operand varies along the length axis")
        if len(node.arg_ids) == 1:
            return OpPositionWise()
        return OpMerge.from_config({}, in_shapes, out_shapes)


@builtin
@dataclass(frozen=True)
class SoftmaxOp(PositionWise):
    accepts: ClassVar[tuple] = (_NN + "Softmax", _NN + "LogSoftmax")

    @classmethod
    def from_node(cls, node, in_shapes, out_shapes):
        if channels_last_axis(getattr(node.op, "axis", None)) and not _constants(node):
            return OpPositionWise()
        return Stop(reason="softmax over more than the channel axis")


@builtin
@dataclass(frozen=True)
class ConcatenateOp(Merge):
    accepts: ClassVar[tuple] = (_NUMPY + "Concatenate",)

    @classmethod
    def from_node(cls, node, in_shapes, out_shapes):
        if not channels_last_axis(getattr(node.op, "axis", None)):
            return Stop(reason="concatenation along the length axis")
        if any(not isinstance(c, int) for c in _constants(node)):
            return Stop(reason="concatenates a constant")
        return OpMerge.from_config({}, in_shapes, out_shapes)
