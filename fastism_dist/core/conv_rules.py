"""Rules for the convolution variants: grouped Conv1D, DepthwiseConv1D, SeparableConv1D and
Conv1DTranspose.

Grouped, depthwise and separable convolutions have the Conv1D geometry (a ``Window``: output[j]
reads input[stride*j - pad_left + dilation*t] for t < kernel); each computes an output window by
running the layer's own Keras operation with valid padding on the padded input window, then the
layer's bias and activation. None of them is a ``ConvRule``: the program's incremental
convolution multiplies the input's change by an ungrouped (kernel, C_in, C_out) kernel.

The transposed convolution scatters instead of gathering (``ConvTransposeRule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fastism_dist.core.layer_rules import ConvRule, _layers, _single
from fastism_dist.core.rules import Stop, Window, builtin, clip_interval, same_padding


def conv_geometry(config, in_length, allow_causal=False):
    """(kernel, dilation, stride, pad_left, pad_right) of a 1-D convolution's config, or a Stop.

    Parameters
    ----------
    config : dict
        The layer's ``get_config()``.
    in_length : int
        Length L of the layer's input.
    allow_causal : bool
        Whether 'causal' padding (left only) is a padding of this layer.
    """
    if config.get("data_format", "channels_last") != "channels_last":
        return Stop(reason="channels_first convolution")
    padding = config["padding"]
    if padding not in ("valid", "same") and not (allow_causal and padding == "causal"):
        return Stop(reason=f"padding {padding!r} is not 'valid' or 'same'")
    kernel, stride = _single(config["kernel_size"]), _single(config["strides"])
    dilation = _single(config["dilation_rate"])
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        left, right = 0, 0
    elif padding == "causal":
        left, right = span - 1, 0
    else:
        left, right = same_padding(in_length, span, stride)
    return kernel, dilation, stride, left, right


def _bias_and_activation(layer, y):
    """The layer's bias (if any) and activation on its convolution ``y`` (M, W, F)."""
    import keras

    if layer.use_bias:
        y = y + keras.ops.cast(layer.bias, y.dtype)
    return layer.activation(y) if layer.activation is not None else y


def _in_compute_dtype(layer, window, *weights):
    """The window and ``weights`` cast to the layer's compute dtype."""
    import keras

    window = keras.ops.cast(window, layer.compute_dtype)
    return [window] + [keras.ops.cast(w, window.dtype) for w in weights]


class _ConvWindow(Window):
    """A Window built from a convolution's config (shared constructor)."""

    allow_causal: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        geometry = conv_geometry(config, in_shapes[0][0], cls.allow_causal)
        if isinstance(geometry, Stop):
            return geometry
        kernel, dilation, stride, left, right = geometry
        return cls(kernel=kernel, dilation=dilation, stride=stride, pad_left=left, pad_right=right)


@dataclass(frozen=True)
class GroupedConvRule(_ConvWindow):
    """Conv1D with ``groups > 1``: kernel (k, C_in / groups, C_out), output group g reads input
    group g; computed by ``keras.ops.conv`` with the grouped kernel, as the layer does."""

    allow_causal: ClassVar[bool] = True

    def apply(self, node, graph, inputs, tables):
        """(M, W, C_out) output window from the (M, stride*(W-1) + span, C_in) padded window."""
        import keras

        layer = node.op
        window, kernel = _in_compute_dtype(layer, inputs[0], layer.kernel)
        y = keras.ops.conv(window, kernel, strides=self.stride, padding="valid",
                           dilation_rate=self.dilation)
        return [_bias_and_activation(layer, y)]


@builtin
@dataclass(frozen=True)
class Conv1DRule(Window):
    """Conv1D: ``ConvRule`` when ungrouped, ``GroupedConvRule`` when ``groups > 1``.

    This module imports layer_rules, so this registration comes after ``ConvRule``'s and the
    registry maps Conv1D here.
    """

    accepts: ClassVar[tuple] = _layers("Conv1D")

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if config.get("groups", 1) == 1:
            return ConvRule.from_config(config, in_shapes, out_shapes)
        return GroupedConvRule.from_config(config, in_shapes, out_shapes)

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        """L_out * k * (C_in / groups) * C_out: the kernel's shape already holds the groups."""
        return ConvRule.naive_macs(layer, in_shapes, out_shapes)


@builtin
@dataclass(frozen=True)
class DepthwiseConvRule(_ConvWindow):
    """DepthwiseConv1D: channel c feeds outputs c * depth_multiplier + m, kernel (k, C, m)."""

    accepts: ClassVar[tuple] = _layers("DepthwiseConv1D")

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        kernel, channels, multiplier = layer.kernel.shape
        return int(out_shapes[0][0]) * int(kernel) * int(channels) * int(multiplier)

    def apply(self, node, graph, inputs, tables):
        """(M, W, C * m) output window from the (M, stride*(W-1) + span, C) padded window."""
        import keras

        layer = node.op
        window, kernel = _in_compute_dtype(layer, inputs[0], layer.kernel)
        y = keras.ops.depthwise_conv(window, kernel, strides=self.stride, padding="valid",
                                     dilation_rate=self.dilation)
        return [_bias_and_activation(layer, y)]


@builtin
@dataclass(frozen=True)
class SeparableConvRule(_ConvWindow):
    """SeparableConv1D: a depthwise convolution (k, C, m), then a pointwise one (1, C * m, F)."""

    accepts: ClassVar[tuple] = _layers("SeparableConv1D")

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        kernel, channels, multiplier = layer.depthwise_kernel.shape
        filters = layer.pointwise_kernel.shape[-1]
        depthwise = int(kernel) * int(channels) * int(multiplier)
        return int(out_shapes[0][0]) * (depthwise + int(channels) * int(multiplier) * int(filters))

    def apply(self, node, graph, inputs, tables):
        """(M, W, F) output window from the (M, stride*(W-1) + span, C) padded window."""
        import keras

        layer = node.op
        window, depthwise, pointwise = _in_compute_dtype(
            layer, inputs[0], layer.depthwise_kernel, layer.pointwise_kernel)
        y = keras.ops.separable_conv(window, depthwise, pointwise, strides=self.stride,
                                     padding="valid", dilation_rate=self.dilation)
        return [_bias_and_activation(layer, y)]


# --------------------------------------------------------------------------- transposed


def transpose_tail(config, span, stride):
    """``tail`` with output length ``(L_in - 1) * stride + tail`` (Keras' output length rule)."""
    extra = config.get("output_padding")
    extra = None if extra is None else _single(extra)
    if config["padding"] == "valid":
        return span + (max(span, stride) - span if extra is None else extra)
    return stride if extra is None else span % 2 + extra


@builtin
@dataclass(frozen=True)
class ConvTransposeRule(Window):
    """Conv1DTranspose: input[i] adds ``K[t] . input[i]`` to output[stride*i + dilation*t - crop].

    ``crop`` is how many outputs the transposed convolution cuts on the left: 0 for 'valid',
    TensorFlow's left 'same' padding of the convolution it transposes for 'same'. An output
    window [a, a + W) reads the input window from ceil((a + crop - span + 1) / stride), of width
    (W + span - 2) // stride + 1 whatever the phase of a; ``apply`` transposes that window with
    valid padding and picks the wanted outputs through the table "rows". ``pad_left`` and
    ``pad_right`` are how far these input windows reach past the ends of the input.
    """

    accepts: ClassVar[tuple] = _layers("Conv1DTranspose")
    crop: int = 0
    tail: int = 1

    @classmethod
    def from_config(cls, config, in_shapes, out_shapes):
        if config.get("data_format", "channels_last") != "channels_last":
            return Stop(reason="channels_first transposed convolution")
        if config["padding"] not in ("valid", "same"):
            return Stop(reason=f"padding {config['padding']!r} is not 'valid' or 'same'")
        kernel, stride = _single(config["kernel_size"]), _single(config["strides"])
        dilation = _single(config["dilation_rate"])
        span = dilation * (kernel - 1) + 1
        in_length = in_shapes[0][0]
        tail = transpose_tail(config, span, stride)
        out_length = (in_length - 1) * stride + tail
        crop = 0
        if config["padding"] == "same":
            crop = max((in_length - 1) * stride + span - out_length, 0) // 2
        left = max(0, (span - 1 - crop) // stride)
        right = max(0, -(-(out_length + crop - 1) // stride) + 1 - in_length)
        return cls(kernel=kernel, dilation=dilation, stride=stride, pad_left=left,
                   pad_right=right, crop=crop, tail=tail)

    @staticmethod
    def naive_macs(layer, in_shapes, out_shapes):
        """Every input position meets every tap: L_in * k * C_in * F."""
        kernel, filters, channels = layer.kernel.shape
        return int(in_shapes[0][0]) * int(kernel) * int(channels) * int(filters)

    def expected_length(self, in_length):
        return (in_length - 1) * self.stride + self.tail

    def inside_fraction(self, in_length, out_length):
        """1: the transposed convolution meets every input with every tap, cropping after."""
        return 1.0

    def affected(self, lo, hi, out_length):
        first = lo * self.stride - self.crop
        last = (hi - 1) * self.stride - self.crop + self.span
        return clip_interval(first, last, lo < hi, out_length)

    def needed(self, start, width):
        first = -((-(start + self.crop - self.span + 1)) // self.stride)
        return first, (width + self.span - 2) // self.stride + 1

    def tables(self, in_length, out_start, out_width):
        """{"rows": (P, W, 1)} index of each wanted output in the transposed input window."""
        in_start, _ = self.needed(out_start, out_width)
        rows = (out_start[:, None] + np.arange(out_width)[None, :] + self.crop
                - self.stride * in_start[:, None])
        return {"rows": rows[..., None].astype(np.int32)}

    def apply(self, node, graph, inputs, tables):
        """(M, W, F) output window from the (M, n, C) input window and the (M, W, 1) rows."""
        import keras

        layer = node.op
        window, kernel = _in_compute_dtype(layer, inputs[0], layer.kernel)
        full = keras.ops.conv_transpose(window, kernel, strides=self.stride, padding="valid",
                                        dilation_rate=self.dilation)
        y = keras.ops.take_along_axis(full, keras.ops.cast(tables["rows"], "int32"), axis=1)
        return [_bias_and_activation(layer, y)]
