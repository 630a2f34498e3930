"""The built-in rules for Keras layers: position-wise, local (windows), merges and known stops.

Each class names the Keras classes it accepts (exact type) and owns its preconditions,
geometry, padding, constant tables, window computation and multiply-add count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fastism_dist.core.rules import (Merge, PositionWise, Stop, Window, builtin,
                                     channels_last_axis, clip_interval, layer_config,
                                     rule_class_for, same_padding)

_LAYERS = "keras.layers:"
#: ConvRule.shifted_products where input channels >= this many times the filters.
FEW_FILTERS_RATIO = 4


def _layers(*names):
    return tuple(_LAYERS + name for name in names)


def _single(value):
    """An int from an int or a one-element list (Keras 1-D configs store both)."""
    return int(value[0] if isinstance(value, (list, tuple)) else value)


# --------------------------------------------------------------------------- position-wise


@builtin
@dataclass(frozen=True)
class Elementwise(PositionWise):
    """Activations, dropout and noise layers (identity at inference)."""

    accepts: ClassVar[tuple] = _layers(
        "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")


@builtin
@dataclass(frozen=True)
class ChannelAxis(PositionWise):
    """Softmax, BatchNormalization, LayerNormalization: position-wise over the channel axis only."""

    accepts: ClassVar[tuple] = _layers("Softmax", "BatchNormalization", "LayerNormalization")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if channels_last_axis(config.get("axis", -1)):
            return cls()
        return Stop(reason=f"works over axis {config.get('axis')}, not channels alone")


@builtin
@dataclass(frozen=True)
class PReLURule(PositionWise):
    accepts: ClassVar[tuple] = _layers("PReLU")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if 1 in (config.get("shared_axes") or []):
            return cls()
        return Stop(reason="alpha differs per position (shared_axes lacks axis 1)")


@builtin
@dataclass(frozen=True)
class DenseRule(PositionWise):
    """Dense on (length, channels) is applied per position; on flat input it mixes them all."""

    accepts: ClassVar[tuple] = _layers("Dense")
    stop_reason: ClassVar[str] = "Dense on flattened input mixes all positions"

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        positions = int(np.prod(in_shapes[0][:-1])) if len(in_shapes[0]) > 1 else 1
        return positions * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])

    @staticmethod
    def linear_part(layer, x):
        """W x + b of the reference (B, F) flat input, before the activation; float32."""
        import keras

        y = keras.ops.matmul(keras.ops.cast(x, "float32"), keras.ops.cast(layer.kernel, "float32"))
        return y + keras.ops.cast(layer.bias, "float32") if layer.use_bias else y


# --------------------------------------------------------------------------- local


@builtin
@dataclass(frozen=True)
class ConvRule(Window):
    """Conv1D (channels_last, ungrouped): valid convolution of the padded window.

    With few filters (``shifted_products``: at most a quarter as many as input channels, as in
    profile heads) the window is computed as one matrix product of every input entry with
    every tap and ``kernel`` shifted adds (``shifted_products_conv``): a convolution with few
    output channels makes narrow matrix products, slow on CPUs and slowest under XLA.
    """

    accepts: ClassVar[tuple] = _layers("Conv1D")
    shifted_products: bool = False

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if config.get("data_format", "channels_last") != "channels_last":
            return Stop(reason="channels_first convolution")
        if config.get("groups", 1) != 1:
            return Stop(reason="grouped convolution")
        kernel, stride = _single(config["kernel_size"]), _single(config["strides"])
        dilation = _single(config["dilation_rate"])
        span = dilation * (kernel - 1) + 1
        if config["padding"] == "valid":
            left = right = 0
        elif config["padding"] == "causal":
            left, right = span - 1, 0
        else:
            left, right = same_padding(in_shapes[0][0], span, stride)
        few_filters = FEW_FILTERS_RATIO * out_shapes[0][-1] <= in_shapes[0][-1]
        return cls(kernel=kernel, dilation=dilation, stride=stride, pad_left=left, pad_right=right,
                   shifted_products=few_filters)

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        kernel = layer.kernel.shape
        return int(out_shapes[0][0]) * int(kernel[0]) * int(kernel[1]) * int(kernel[2])

    def apply(self, node, graph, inputs, tables):
        import keras

        layer = node.op
        window = keras.ops.cast(inputs[0], layer.compute_dtype)
        kernel = keras.ops.cast(layer.kernel, window.dtype)
        if self.shifted_products:
            y = shifted_products_conv(window, kernel, self.dilation, self.stride)
        else:
            y = keras.ops.conv(window, kernel, strides=self.stride, padding="valid",
                               dilation_rate=self.dilation)
        if layer.use_bias:
            y = y + keras.ops.cast(layer.bias, y.dtype)
        return [layer.activation(y)]

    def whole_by_layer(self):
        return not self.shifted_products

    def linear_part(self, layer, x):
        """The convolution of the reference (B, L, C) before its activation, in float32."""
        import keras

        x = keras.ops.cast(x, "float32")
        x = keras.ops.pad(x, [[0, 0], [max(self.pad_left, 0), max(self.pad_right, 0)], [0, 0]])
        y = keras.ops.conv(x, keras.ops.cast(layer.kernel, "float32"), strides=self.stride,
                           padding="valid", dilation_rate=self.dilation)
        return y + keras.ops.cast(layer.bias, "float32") if layer.use_bias else y

    def frame_width(self, in_width):
        """Width ``W_c = in_width + dilation * (kernel - 1)`` of the frame of every stride-1
        output of the kernel that reads an input window of ``in_width`` positions."""
        return in_width + self.dilation * (self.kernel - 1)

    def frame_index(self, out_start, out_width, in_start, in_width):
        """(P, out_width) int32 frame entry of each output of the window.

        Frame entry ``u`` of an input window starting at ``in_start`` is the stride-1
        output whose reversed tap ``r`` (tap ``kernel - 1 - r``) reads window entry
        ``u - dilation * r``; output ``j`` of the layer is frame entry
        ``stride * j - pad_left - in_start + dilation * (kernel - 1)``. Outputs reading no
        entry of the input window get ``W_c`` (a zero row appended to the frame).
        """
        j = out_start[:, None] + np.arange(out_width)[None, :]
        frame = self.stride * j - self.pad_left - in_start[:, None] + self.dilation * (self.kernel - 1)
        size = self.frame_width(in_width)
        return np.where((frame >= 0) & (frame < size), frame, size).astype(np.int32)


def shifted_products_conv(window, kernel, dilation=1, stride=1):
    """Valid convolution of ``window`` (M, n, C) by ``kernel`` (k, C, F), as (M * n, C) x
    (C, k * F) products of every entry with every tap, then ``k`` shifted, strided adds.

    Returns (M, W, F), W = (n - dilation * (k - 1) - 1) // stride + 1.
    """
    import keras

    taps, channels, filters = kernel.shape
    n = window.shape[1]
    width = (n - dilation * (taps - 1) - 1) // stride + 1
    flat = keras.ops.reshape(keras.ops.transpose(kernel, [1, 0, 2]), [channels, taps * filters])
    products = keras.ops.reshape(keras.ops.matmul(window, flat), [-1, n, taps, filters])
    total = None
    for t in range(taps):
        part = products[:, dilation * t:dilation * t + stride * (width - 1) + 1:stride, t]
        total = part if total is None else total + part
    return total


def _pool_geometry(config, in_shapes):
    size = _single(config["pool_size"])
    stride = _single(config.get("strides") or size)
    if config["padding"] == "valid":
        return size, stride, 0, 0
    return (size, stride) + same_padding(in_shapes[0][0], size, stride)


def _channels_last(config, what):
    if config.get("data_format", "channels_last") != "channels_last":
        return Stop(reason=f"channels_first {what}")
    return None


@builtin
@dataclass(frozen=True)
class MaxPoolRule(Window):
    accepts: ClassVar[tuple] = _layers("MaxPooling1D")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        refusal = _channels_last(config, "pooling")
        if refusal:
            return refusal
        size, stride, left, right = _pool_geometry(config, in_shapes)
        return cls(kernel=size, stride=stride, pad_left=left, pad_right=right, pad_value=-np.inf)

    def apply(self, node, graph, inputs, tables):
        import keras

        return [keras.ops.max_pool(inputs[0], self.kernel, self.stride, padding="valid")]


@builtin
@dataclass(frozen=True)
class AvgPoolRule(Window):
    """AveragePooling1D; with 'same' padding an edge output averages only real entries."""

    accepts: ClassVar[tuple] = _layers("AveragePooling1D")
    same: bool = False

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        refusal = _channels_last(config, "pooling")
        if refusal:
            return refusal
        size, stride, left, right = _pool_geometry(config, in_shapes)
        return cls(kernel=size, stride=stride, pad_left=left, pad_right=right,
                   same=config["padding"] != "valid")

    def valid_counts(self, in_length, out_length):
        """(out_length,) how many window entries of each output fall inside the input."""
        j = np.arange(out_length)[:, None]
        pos = self.stride * j - self.pad_left + self.dilation * np.arange(self.kernel)[None, :]
        return ((pos >= 0) & (pos < in_length)).sum(axis=1).astype(np.float32)

    def tables(self, in_length, out_start, out_width):
        if not self.same:
            return {}
        out_length = self.expected_length(in_length)
        counts = self.valid_counts(in_length, out_length)
        return {"counts": counts[out_start[:, None] + np.arange(out_width)[None, :]][..., None]}

    def apply(self, node, graph, inputs, tables):
        import keras

        pooled = keras.ops.average_pool(inputs[0], self.kernel, self.stride, padding="valid")
        if self.same:
            pooled = pooled * keras.ops.cast(float(self.kernel) / tables["counts"], pooled.dtype)
        return [pooled]


@builtin
@dataclass(frozen=True)
class CropRule(Window):
    accepts: ClassVar[tuple] = _layers("Cropping1D")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        left, right = config["cropping"]
        return cls(pad_left=-int(left), pad_right=-int(right))

    def apply(self, node, graph, inputs, tables):
        return [inputs[0]]


@builtin
@dataclass(frozen=True)
class ZeroPadRule(Window):
    accepts: ClassVar[tuple] = _layers("ZeroPadding1D")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        refusal = _channels_last(config, "padding")
        if refusal:
            return refusal
        left, right = config["padding"]
        return cls(pad_left=int(left), pad_right=int(right))

    def apply(self, node, graph, inputs, tables):
        return [inputs[0]]


@builtin
@dataclass(frozen=True)
class UpSampleRule(Window):
    """UpSampling1D: output[j] = input[j // size]; windows aligned to multiples of ``size``."""

    accepts: ClassVar[tuple] = _layers("UpSampling1D")
    size: int = 1

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        return cls(size=int(config["size"]))

    @property
    def align(self):
        return self.size

    def expected_length(self, in_length):
        return in_length * self.size

    def affected(self, lo, hi, out_length):
        return clip_interval(lo * self.size, hi * self.size, lo < hi, out_length)

    def needed(self, start, width):
        return start // self.size, width // self.size

    def apply(self, node, graph, inputs, tables):
        import keras

        return [keras.ops.repeat(inputs[0], self.size, axis=1)]


# --------------------------------------------------------------------------- merges


@builtin
@dataclass(frozen=True)
class MergeLayers(Merge):
    accepts: ClassVar[tuple] = _layers("Add", "Subtract", "Multiply", "Average", "Maximum",
                                       "Minimum")


@builtin
@dataclass(frozen=True)
class ConcatenateRule(Merge):
    accepts: ClassVar[tuple] = _layers("Concatenate")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if not channels_last_axis(config.get("axis", -1)):
            return Stop(reason="concatenation along the length axis")
        return super().from_config(config, in_shapes, out_shapes)


# --------------------------------------------------------------------------- known stops


@builtin
@dataclass(frozen=True)
class FlattenRule(Stop):
    """Flatten: a stop; channels_last flattening keeps each position's channels contiguous."""

    accepts: ClassVar[tuple] = _layers("Flatten")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        order = config.get("data_format") or "channels_last"
        return cls(reason="flattens all positions", row_major=order == "channels_last")

    row_major: bool = False


@builtin
@dataclass(frozen=True)
class GlobalPoolRule(Stop):
    accepts: ClassVar[tuple] = _layers("GlobalAveragePooling1D", "GlobalMaxPooling1D")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        return cls(reason="pools all positions")


@builtin
@dataclass(frozen=True)
class ReshapeRule(Window):
    """Reshape: the identity where the output shape is the input's (L, C), else a stop.

    A reshape keeps the row-major order of the entries, so an unchanged (L, C) shape leaves
    every entry in place; any other shape moves channels between positions.
    """

    accepts: ClassVar[tuple] = _layers("Reshape")
    stop_reason: ClassVar[str] = "reshapes across positions (output is not (length, channels))"

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if tuple(out_shapes[0]) != tuple(in_shapes[0]):
            return Stop(reason=f"reshapes across positions ({tuple(in_shapes[0])} to "
                               f"{tuple(out_shapes[0])})")
        return cls()

    def apply(self, node, graph, inputs, tables):
        return [inputs[0]]


@builtin
@dataclass(frozen=True)
class AttentionRule(Stop):
    accepts: ClassVar[tuple] = _layers("MultiHeadAttention")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        return cls(reason="attention mixes all positions")

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        config = layer.get_config()
        heads, key_dim = config["num_heads"], config["key_dim"]
        value_dim = config.get("value_dim") or key_dim
        query, value = in_shapes[0], in_shapes[1]
        key = in_shapes[2] if len(in_shapes) > 2 else value
        lq, lk = query[0], key[0]
        projections = lq * query[-1] * heads * key_dim + lk * key[-1] * heads * key_dim
        projections += value[0] * value[-1] * heads * value_dim
        attention = heads * lq * lk * (key_dim + value_dim)
        return int(projections + attention + lq * heads * value_dim * out_shapes[0][-1])

    @staticmethod
    def working_floats(layer, in_shapes, out_shapes):
        """(heads, L_q, L_k) scores and softmax, projected query/key/value and heads' outputs."""
        config, key = layer.get_config(), in_shapes[2] if len(in_shapes) > 2 else in_shapes[1]
        depth = max(config["key_dim"], config.get("value_dim") or config["key_dim"])
        lq, lk = in_shapes[0][0] or 1, key[0] or 1
        return int(config["num_heads"] * (2 * lq * lk + 2 * (lq + lk) * depth))


# --------------------------------------------------------------------------- more position-wise


@builtin
@dataclass(frozen=True)
class PermuteRule(Window):
    """Permute((1, 2)) is the identity; any other order moves the length axis: a stop."""

    accepts: ClassVar[tuple] = _layers("Permute")
    stop_reason: ClassVar[str] = "permutes the length axis"

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if tuple(config["dims"]) != (1, 2):
            return Stop(reason=f"permutes the length axis (dims {tuple(config['dims'])})")
        return cls()

    def apply(self, node, graph, inputs, tables):
        return [inputs[0]]


def _row_wise_refusal(layer):
    """None if ``layer`` maps each row of a (batch, C) input alone, else why it may not.

    Element-wise layers, Dense (x W + b) and PReLU (its alpha never spans the batch axis) are
    row-wise on any (batch, C) input; Softmax and the normalisations are where their axis is
    the channel axis of a rank-2 input. Other layers, user rules included, are not trusted.
    """
    rule_class = rule_class_for(layer)
    name = type(layer).__name__
    if rule_class in (Elementwise, DenseRule, PReLURule):
        return None
    if rule_class is ChannelAxis:
        axis = layer_config(layer).get("axis", -1)
        return None if channels_last_axis(axis, rank=2) else f"wraps {name} over axis {axis}"
    return f"wraps {name}, not a layer known to act on each position's channels alone"


@builtin
@dataclass(frozen=True)
class TimeDistributedRule(PositionWise):
    """TimeDistributed(layer) on (L, C): position-wise when the wrapped layer is row-wise.

    TimeDistributed calls the wrapped layer on input[:, i], shape (batch, C), for each position
    i and stacks the results, so output[:, i] is that layer of input[:, i] alone; output[b, i]
    depends on input[b, i] only when the layer maps each row of its input alone.
    """

    accepts: ClassVar[tuple] = _layers("TimeDistributed")

    @classmethod
    def from_node(cls, node, in_shapes, out_shapes):
        refusal = _row_wise_refusal(node.op.layer)
        return Stop(reason=refusal) if refusal else cls()

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        """The wrapped layer's count on (L, C), where its rule has one (Dense: L * C * units)."""
        inner_class = rule_class_for(layer.layer)
        return 0 if inner_class is None else inner_class.naive_macs(layer.layer, in_shapes,
                                                                    out_shapes)
