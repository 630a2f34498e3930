"""Rules for the convolution variants, TimeDistributed and identity Reshape / Permute.

Geometry is checked against real layers by brute force (which outputs an impulse at each input
position changes), each rule's window computation against the layer's own output on every
window, and FastISM against the explicit naive ISM of ``oracle.py`` on small models.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from fastism_dist import FastISM
from fastism_dist.core import rules
from fastism_dist.core.conv_rules import (ConvTransposeRule, DepthwiseConvRule, GroupedConvRule,
                                          SeparableConvRule)
from fastism_dist.core.layer_rules import ConvRule
from fastism_dist.core.rules import LOCAL, POSITION_WISE, STOP, Window, rule_for

import toy_models
import toy_models_extra
from oracle import assert_close, explicit_ism, random_one_hot

IN_LENGTH, IN_CHANNELS = 17, 6

# (Keras layer class, keyword arguments): kernel / stride / dilation / padding settings.
CONV_CASES = [
    ("Conv1D", dict(filters=8, kernel_size=3, padding="same", groups=2)),
    ("Conv1D", dict(filters=6, kernel_size=4, strides=2, groups=3)),
    ("Conv1D", dict(filters=4, kernel_size=3, dilation_rate=3, padding="causal", groups=2)),
    ("Conv1D", dict(filters=6, kernel_size=5, strides=3, padding="same", groups=6)),
    ("DepthwiseConv1D", dict(kernel_size=3, padding="same")),
    ("DepthwiseConv1D", dict(kernel_size=4, strides=2, depth_multiplier=2)),
    ("DepthwiseConv1D", dict(kernel_size=3, dilation_rate=2, padding="same")),
    ("DepthwiseConv1D", dict(kernel_size=3, strides=2, dilation_rate=2, padding="same",
                             depth_multiplier=2)),
    ("DepthwiseConv1D", dict(kernel_size=5, strides=3, padding="same", use_bias=False)),
    ("SeparableConv1D", dict(filters=5, kernel_size=3, padding="same")),
    ("SeparableConv1D", dict(filters=4, kernel_size=4, strides=2, depth_multiplier=2)),
    ("SeparableConv1D", dict(filters=3, kernel_size=3, dilation_rate=3, padding="same")),
    ("SeparableConv1D", dict(filters=4, kernel_size=3, strides=2, dilation_rate=2,
                             use_bias=False)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=5, padding="same")),
    ("Conv1DTranspose", dict(filters=2, kernel_size=6, padding="same")),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3, dilation_rate=2, padding="same")),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4, strides=2, padding="same")),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=2, strides=3)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=5, strides=3, padding="same")),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4, strides=2, output_padding=1)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4, strides=3, padding="same",
                             output_padding=2)),
]
RULE_CLASSES = {"DepthwiseConv1D": DepthwiseConvRule, "SeparableConv1D": SeparableConvRule,
                "Conv1DTranspose": ConvTransposeRule, "Conv1D": GroupedConvRule}


def _case_id(case):
    name, kwargs = case
    return name + "-" + "-".join(f"{k[:4]}{v}" for k, v in kwargs.items())


def make_layer(name, kwargs, activation=None):
    import keras

    keras.utils.set_random_seed(len(kwargs) * 31 + kwargs["kernel_size"])
    return getattr(keras.layers, name)(**kwargs, activation=activation)


def layer_rule(layer, in_shapes, out_shapes):
    """The registry's rule for one call of a real Keras layer."""
    node = SimpleNamespace(op=layer, arg_ids=tuple(range(len(in_shapes))), arguments=None)
    return rule_for(node, in_shapes, out_shapes)


def built_rule(name, kwargs, activation=None):
    """(layer, rule, x (1, L, C), y (1, L_out, F)) for a layer built on a random input."""
    layer = make_layer(name, kwargs, activation)
    x = np.random.default_rng(0).normal(size=(1, IN_LENGTH, IN_CHANNELS)).astype(np.float32)
    y = np.asarray(layer(x))
    return layer, layer_rule(layer, [x.shape[1:]], [y.shape[1:]]), x, y


def brute_changed(layer, x, y):
    """(L,) list of the sets of output positions an impulse at each input position changes."""
    impulses = np.repeat(x, x.shape[1], axis=0)
    impulses[np.arange(x.shape[1]), np.arange(x.shape[1])] += 1.0
    changed = np.abs(np.asarray(layer(impulses)) - y).max(axis=-1) > 1e-5
    return [set(np.flatnonzero(row).tolist()) for row in changed]


def _interval(positions):
    return (min(positions), max(positions) + 1) if positions else (0, 0)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_geometry_matches_brute_force(case):
    """affected() is exactly the outputs an input interval changes (covering, with dilation)."""
    layer, rule, x, y = built_rule(*case)
    assert rule.role == LOCAL and type(rule) is RULE_CLASSES[case[0]]
    assert not isinstance(rule, ConvRule)  # the incremental convolution assumes no groups
    assert rule.expected_length(IN_LENGTH) == y.shape[1]
    changed = brute_changed(layer, x, y)
    for lo in range(IN_LENGTH):
        for width in (1, 3):
            hi = min(lo + width, IN_LENGTH)
            touched = set().union(*changed[lo:hi])
            got = rule.affected(np.array([lo]), np.array([hi]), y.shape[1])
            got = (int(got[0][0]), int(got[1][0]))
            if case[1].get("dilation_rate", 1) == 1:
                assert got == _interval(touched), (lo, hi)
            else:  # dilation gaps: a covering interval is exact enough
                assert touched <= set(range(*got)), (lo, hi)


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_apply_reproduces_every_output_window(case):
    """apply() on the padded input window that needed() names gives the layer's own outputs."""
    import keras

    layer, rule, x, y = built_rule(*case, activation="tanh")
    out_length = y.shape[1]
    left, right = max(rule.pad_left, 0), max(rule.pad_right, 0)
    padded = np.pad(x[0], [(left, right), (0, 0)], constant_values=rule.pad_value)
    for width in sorted({1, 2, 5, out_length}):
        if width > out_length:
            continue
        starts = np.arange(out_length - width + 1)
        in_start, in_width = rule.needed(starts, width)
        rows = in_start[:, None] + np.arange(in_width)[None, :] + left
        assert rows.min() >= 0 and rows.max() < len(padded), "window outside the padding"
        tables = {k: keras.ops.convert_to_tensor(v)
                  for k, v in rule.tables(IN_LENGTH, starts, width).items()}
        got = rule.apply(SimpleNamespace(op=layer), None, [padded[rows]], tables)[0]
        want = np.stack([y[0, a:a + width] for a in starts])
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_transpose_crop_is_tensorflows_same_padding():
    """'same' crops (span - stride) // 2 outputs on the left when the output is L * stride."""
    config = {"kernel_size": (7,), "strides": (2,), "dilation_rate": (1,), "padding": "same",
              "output_padding": None, "data_format": "channels_last"}
    rule = ConvTransposeRule.from_config(config, [(10, 4)], [(20, 3)])
    assert (rule.crop, rule.expected_length(10)) == (2, 20)
    # output j reads input i at tap j + 2 - 2i: outputs [1, 5) read inputs -1 (padding) to 3
    start, width = rule.needed(np.array([0, 1, 7]), 4)
    assert start.tolist() == [-2, -1, 2] and width == 5
    config = dict(config, padding="valid")
    rule = ConvTransposeRule.from_config(config, [(10, 4)], [(25, 3)])
    assert (rule.crop, rule.expected_length(10)) == (0, 25)


# --------------------------------------------------------------------------- MACs and stops


def _macs(layer, in_shape):
    """Multiply-adds the registry counts for one call of ``layer`` on (1,) + in_shape."""
    out_shape = tuple(layer(np.zeros((1,) + in_shape, np.float32)).shape[1:])
    node = SimpleNamespace(op=layer, arg_ids=(0,), arguments=None)
    return rules.naive_macs(node, [in_shape], [out_shape])


def test_naive_macs():
    import keras

    L = keras.layers
    assert _macs(L.Conv1D(8, 3, padding="same", groups=2), (10, 6)) == 10 * 3 * 3 * 8
    assert _macs(L.DepthwiseConv1D(3, depth_multiplier=2), (10, 6)) == 8 * 3 * 6 * 2
    assert _macs(L.SeparableConv1D(5, 3, strides=2, padding="same", depth_multiplier=2),
                 (10, 6)) == 5 * (3 * 6 * 2 + 12 * 5)
    assert _macs(L.Conv1DTranspose(3, 4, strides=2), (10, 6)) == 10 * 4 * 6 * 3
    assert _macs(L.TimeDistributed(L.Dense(5)), (10, 6)) == 10 * 6 * 5
    assert _macs(L.TimeDistributed(L.Activation("relu")), (10, 6)) == 0


def _roles():
    import keras

    L = keras.layers

    class Doubler(L.Layer):
        def call(self, x):
            return 2.0 * x

    rules.register_rule(Doubler, rules.PositionWise)  # a user rule: trusted on (L, C) only
    seq = [(10, 4)]
    return [
        (L.Conv1D(4, 3, padding="same", groups=2), seq, seq, LOCAL, ""),
        (L.Conv1D(4, 3, padding="same"), seq, seq, LOCAL, ""),
        (L.Conv1D(4, 3, padding="same", groups=2, data_format="channels_first"), seq, seq,
         STOP, "channels_first"),
        (L.DepthwiseConv1D(3, padding="same", data_format="channels_first"), seq, seq, STOP,
         "channels_first"),
        (L.SeparableConv1D(4, 3, padding="same", data_format="channels_first"), seq, seq, STOP,
         "channels_first"),
        (L.Conv1DTranspose(4, 3, padding="same", data_format="channels_first"), seq, seq, STOP,
         "channels_first"),
        (L.TimeDistributed(L.Dense(5)), seq, [(10, 5)], POSITION_WISE, ""),
        (L.TimeDistributed(L.BatchNormalization()), seq, seq, POSITION_WISE, ""),
        (L.TimeDistributed(L.LayerNormalization(axis=1)), seq, seq, POSITION_WISE, ""),
        (L.TimeDistributed(L.PReLU()), seq, seq, POSITION_WISE, ""),
        (L.TimeDistributed(L.Dropout(0.5)), seq, seq, POSITION_WISE, ""),
        (L.TimeDistributed(L.Softmax(axis=0)), seq, seq, STOP, "over axis 0"),
        (L.TimeDistributed(L.Lambda(lambda t: t)), seq, seq, STOP, "wraps Lambda"),
        (L.TimeDistributed(Doubler()), seq, seq, STOP, "wraps Doubler"),
        (L.TimeDistributed(L.Dense(5)), [(10, 3, 4)], [(10, 3, 5)], STOP, "not (length"),
        (L.Reshape((10, 4)), seq, seq, LOCAL, ""),
        (L.Reshape((-1, 4)), seq, seq, LOCAL, ""),
        (L.Reshape((5, 8)), seq, [(5, 8)], STOP, "reshapes across positions"),
        (L.Reshape((40,)), seq, [(40,)], STOP, "reshapes across positions"),
        (L.Reshape((10, 2, 2)), seq, [(10, 2, 2)], STOP, "reshapes across positions"),
        (L.Permute((1, 2)), seq, seq, LOCAL, ""),
        (L.Permute((2, 1)), [(4, 4)], [(4, 4)], STOP, "permutes the length axis"),
    ]


def test_roles_and_stop_reasons():
    for layer, in_shapes, out_shapes, role, reason in _roles():
        got = layer_rule(layer, in_shapes, out_shapes)
        assert got.role == role, (layer, got)
        assert reason in got.reason, (layer, got.reason)
        assert got.role != STOP or got.reason, layer


def test_conv1d_dispatch_keeps_ungrouped_convolutions_incremental():
    import keras

    seq = [(10, 4)]
    ungrouped = layer_rule(keras.layers.Conv1D(4, 3, padding="same"), seq, seq)
    grouped = layer_rule(keras.layers.Conv1D(4, 3, padding="same", groups=2), seq, seq)
    assert type(ungrouped) is ConvRule and type(grouped) is GroupedConvRule
    assert isinstance(grouped, Window) and (grouped.pad_left, grouped.pad_right) == (1, 1)


# --------------------------------------------------------------------------- FastISM


def _fast_vs_explicit(model, x, **kwargs):
    want = explicit_ism(model, x)
    ism = FastISM(model, check=True, batch_size=97, **kwargs)
    got = ism(x)
    assert_close(got.ref, want[0])
    assert_close(got.mut, want[1])
    return ism


def _windowed_states(ism, class_name):
    return [state for _, cls, state in ism.plan.summary() if cls == class_name]


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_fast_ism_equals_explicit_ism(case):
    name, kwargs = case
    model = toy_models_extra.around(lambda: make_layer(name, kwargs, activation="relu"))
    ism = _fast_vs_explicit(model, random_one_hot(2, 20, seed=3))
    states = _windowed_states(ism, name)
    assert states[-1].startswith("win"), ism.plan.summary()


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[7], CONV_CASES[10],
                                  CONV_CASES[20]], ids=_case_id)
def test_layer_reading_the_sequence_itself(case):
    name, kwargs = case
    model = toy_models_extra.around(lambda: make_layer(name, kwargs), conv_before=False)
    ism = _fast_vs_explicit(model, random_one_hot(2, 20, seed=4))
    assert _windowed_states(ism, name)[0].startswith("win")


# The plan of every model in toy_models_extra, node by node in graph order ("Class:state").
PINNED_PLANS = {
    "legnet_blocks": "Conv1D:win5 Conv1D:win9 BatchNormalization:win9 Activation:win9 Conv1D:win9 Add:win9 Conv1D:win6 GlobalAveragePooling1D:full Dense:full",
    "depthwise_separable": "Conv1D:win3 DepthwiseConv1D:win7 Activation:win7 SeparableConv1D:win11 DepthwiseConv1D:win7 SeparableConv1D:win4 Flatten:full Dense:full",
    "bpnet_transpose": "Conv1D:win9 Conv1D:win13 Add:win13 Conv1D:win21 Add:win21 GlobalAveragePooling1D:full Dense:full Conv1DTranspose:win31",
    "strided_transpose": "Conv1D:win2 Conv1DTranspose:win6 Conv1DTranspose:win18 Flatten:full Dense:full",
    "time_distributed": "Conv1D:win3 TimeDistributed:win3 TimeDistributed:win3 TimeDistributed:win3 Conv1D:win5 Flatten:full Dense:full",
    "identity_reshapes": "Conv1D:win3 Reshape:win3 Permute:win3 Reshape:win3 Conv1D:win5 Flatten:full Dense:full",
}


@pytest.mark.parametrize("build", toy_models_extra.HAND_WRITTEN, ids=lambda f: f.__name__)
def test_toy_model_plan_is_pinned_and_exact(build):
    model = toy_models.randomize_batch_norm(build())
    length = model.inputs[0].shape[1]
    ism = _fast_vs_explicit(model, random_one_hot(2, length, seed=5))
    got = " ".join(f"{cls}:{state}" for _, cls, state in ism.plan.summary())
    assert got == PINNED_PLANS[build.__name__]


def test_grouped_convolutions_are_not_incremental():
    """Only the ungrouped Conv1D layers of the LegNet blocks take the incremental path."""
    ism = FastISM(toy_models_extra.legnet_blocks(), check=False)
    grouped = {n.node.index for n in ism.plan.nodes if isinstance(n.rule, GroupedConvRule)}
    assert len(grouped) == 2
    assert ism.program.incremental and not grouped & set(ism.program.incremental)


@pytest.mark.parametrize("build", [toy_models_extra.bpnet_transpose,
                                   toy_models_extra.depthwise_separable])
def test_without_shortcuts(build):
    model = build()
    length = model.inputs[0].shape[1]
    _fast_vs_explicit(model, random_one_hot(2, length, seed=6), first_layer_lookup=False,
                      incremental_conv=False, incremental_dense=False)


def test_half_precision():
    model = toy_models_extra.strided_transpose()
    x = random_one_hot(2, 30, seed=7)
    want = explicit_ism(model, x)
    got = FastISM(model, check=True, compute_dtype="float16", batch_size=256)(x)
    assert_close(got.ref + got.mut, want[0] + want[1], tol=1e-2)
