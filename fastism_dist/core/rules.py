"""Layer rules: everything the planner knows about one kind of layer, and the registry of them.

A rule class says which Keras classes it accepts (checked by exact type, never by name: Keras 3
operations such as ``keras.ops.add`` and user layers can share a layer's name), how it is built
from the layer's config and static shapes (returning ``Stop`` where a precondition fails), which
output interval a change of its input touches (``affected``), which input window computing an
output window needs (``needed``), how it pads, its constant tables, how it computes an output
window (``apply``) and its multiply-add count.

Nothing here needs TensorFlow except ``apply``, which imports Keras when it runs. Intervals are
half-open ``[lo, hi)`` along the length axis, vectorised over ``P`` mutated positions.

Anything unregistered is a stop: computed in full from there on, slower but never wrong. Users
add rules for their own layer classes with ``register_rule(MyLayer, MyRule)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

POSITION_WISE, LOCAL, MERGE, STOP = "position-wise", "local", "merge", "stop"


@dataclass(frozen=True)
class Rule:
    """Base class. ``accepts`` lists Keras classes as "module:Name" strings (resolved lazily)."""

    role: ClassVar[str] = STOP
    accepts: ClassVar[tuple] = ()
    reason: str = ""

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        """The rule of one call. in_shapes, out_shapes: static shapes without the batch axis."""
        return cls()

    @classmethod
    def from_node(cls, node, in_shapes, out_shapes):
        """The rule of a graph node; rules that read the call's arguments override this."""
        return cls.from_config(layer_config(node.op), in_shapes, out_shapes)

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        """Multiply-adds of one call on one sequence (layers without matrix work: 0)."""
        return 0

    @staticmethod
    def working_floats(layer, in_shapes, out_shapes):
        """Floats one call on one sequence holds inside the layer besides its outputs (the
        scores of attention; 0 for most layers)."""
        return 0

    def expected_length(self, in_length):
        """The output length the rule predicts (checked against the layer's real one)."""
        return in_length

    def apply(self, node, graph, inputs, tables):
        """Output windows (list) from input windows; position-wise and merge layers run as is."""
        return graph.call(node, dict(zip(node.arg_ids, inputs)))

    def whole_by_layer(self):
        """Whether, for a local layer whose whole input and output a mutation changes, the
        pass calls the layer itself on the whole input (exactly the layer's output, and as fast
        as the layer is) rather than ``apply`` on the padded input. False where ``apply`` is
        the faster of the two."""
        return True


@dataclass(frozen=True)
class Stop(Rule):
    """Mixes positions (or is not understood): computed in full from here on."""


@dataclass(frozen=True)
class PositionWise(Rule):
    """output[i] depends on input[i] only; the layer is called on windows directly."""

    role: ClassVar[str] = POSITION_WISE


@dataclass(frozen=True)
class Merge(Rule):
    """Several inputs of one length, aligned position by position; called on aligned windows."""

    role: ClassVar[str] = MERGE

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if len({shape[0] for shape in in_shapes}) != 1:
            return Stop(reason="inputs of different lengths (broadcast along length)")
        return cls()


@dataclass(frozen=True)
class Window(Rule):
    """output[j] reads input[stride*j - pad_left + dilation*i] for i < kernel (padding outside).

    ``pad_left`` / ``pad_right`` may be negative (cropping); padded entries hold ``pad_value``.
    """

    role: ClassVar[str] = LOCAL
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

    @property
    def align(self):
        """Output windows start at multiples of this."""
        return 1

    def expected_length(self, in_length):
        return (in_length + self.pad_left + self.pad_right - self.span) // self.stride + 1

    def affected(self, lo, hi, out_length):
        """Output interval touched by a change of input[lo:hi] (empty stays empty)."""
        first = -((-(lo + self.pad_left - self.span + 1)) // self.stride)
        last = (hi - 1 + self.pad_left) // self.stride
        return clip_interval(first, last + 1, lo < hi, out_length)

    def needed(self, start, width):
        """Input window (start, width) that computes output window [start, start + width)."""
        return self.stride * start - self.pad_left, self.stride * (width - 1) + self.span

    def tables(self, in_length, out_start, out_width):
        """Constant tables ``apply`` reads, each (P, out_width, ...), keyed by name."""
        return {}

    def inside_fraction(self, in_length, out_length):
        """Fraction of the (output, tap) pairs of the whole layer that read the input rather
        than its padding: a convolution of the whole tensor skips the others."""
        taps = np.arange(self.kernel) * self.dilation
        reads = np.arange(out_length)[:, None] * self.stride - self.pad_left + taps[None, :]
        return float(((reads >= 0) & (reads < in_length)).mean()) if reads.size else 1.0


def clip_interval(lo, hi, nonempty, length):
    """[lo, hi) clipped to [0, length); (0, 0) where empty."""
    lo = np.clip(lo, 0, length)
    hi = np.clip(hi, 0, length)
    keep = nonempty & (lo < hi)
    return np.where(keep, lo, 0), np.where(keep, hi, 0)


def same_padding(in_length, span, stride):
    """(left, right) padding of TensorFlow's 'same' mode."""
    out_length = -(-in_length // stride)
    total = max((out_length - 1) * stride + span - in_length, 0)
    return total // 2, total - total // 2


def channels_last_axis(axis, rank=3):
    """True when ``axis`` (int or list) is the channel axis alone."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def layer_config(op):
    """``op.get_config()``, or {} for operations without one."""
    try:
        return op.get_config()
    except (NotImplementedError, TypeError, AttributeError):
        return {}


# --------------------------------------------------------------------------- the registry

_BUILTIN_RULES = []
_USER_RULES = {}
_resolved = None


def builtin(rule_class):
    """Class decorator: a rule shipped with fastism_dist (its ``accepts`` resolved lazily)."""
    _BUILTIN_RULES.append(rule_class)
    return rule_class


def register_rule(layer_class, rule_class):
    """Use ``rule_class`` (a ``Rule`` subclass) for layers of exactly ``layer_class``.

    Overrides a built-in rule for that class. The rule must be exact: fastism_dist trusts it.
    """
    if not (isinstance(rule_class, type) and issubclass(rule_class, Rule)):
        raise TypeError(f"rule_class must be a Rule subclass, got {rule_class!r}")
    _USER_RULES[layer_class] = rule_class


def _resolve(path):
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # an operation this Keras version does not have
        return None


def _builtin_table():
    global _resolved
    if _resolved is None:
        table = {}
        for rule_class in _BUILTIN_RULES:
            for path in rule_class.accepts:
                layer_class = _resolve(path)
                if layer_class is not None:
                    table[layer_class] = rule_class
        _resolved = table
    return _resolved


def rule_class_for(op):
    """The rule class registered for exactly ``type(op)``, or None."""
    kind = type(op)
    return _USER_RULES.get(kind) or _builtin_table().get(kind)


def rule_for(node, in_shapes, out_shapes):
    """The ``Rule`` of one graph node; unknown operations and unexpected shapes are ``Stop``."""
    rule_class = rule_class_for(node.op)
    if rule_class is None:
        return Stop(reason="not a layer the planner knows")
    if rule_class.role != STOP and not _sequence_shapes(in_shapes, out_shapes):
        return Stop(reason=getattr(rule_class, "stop_reason", "")
                    or "input or output is not (length, channels)")
    try:
        rule = rule_class.from_node(node, in_shapes, out_shapes)
    except (KeyError, TypeError, ValueError) as err:
        return Stop(reason=f"unrecognised config ({err})")
    if rule.role != STOP and rule.expected_length(in_shapes[0][0]) != out_shapes[0][0]:
        return Stop(reason=f"output length {out_shapes[0][0]} differs from the rule's "
                           f"{rule.expected_length(in_shapes[0][0])}")
    return rule


def _sequence_shapes(in_shapes, out_shapes):
    shapes = list(in_shapes) + list(out_shapes)
    return bool(in_shapes) and all(len(s) == 2 and s[0] is not None for s in shapes)


def naive_macs(node, in_shapes, out_shapes):
    """Multiply-adds of one call of ``node`` on one sequence, from its rule class (else 0),
    counting every output with every tap (``Window.inside_fraction`` is the share of them that
    read the input rather than padding)."""
    return _class_count("naive_macs", node, in_shapes, out_shapes)


def working_floats(node, in_shapes, out_shapes):
    """``Rule.working_floats`` of one call of ``node``, from its rule class (else 0)."""
    return _class_count("working_floats", node, in_shapes, out_shapes)


def _class_count(method, node, in_shapes, out_shapes):
    """The int a rule class's static ``method`` counts for one call of ``node`` (else 0)."""
    rule_class = rule_class_for(node.op)
    return 0 if rule_class is None else int(getattr(rule_class, method)(node.op, in_shapes,
                                                                          out_shapes))
