"""Windows that grow to the whole tensor, and convolutions with few filters.

Once a mutation has changed all of a tensor (a dilated stack spreads it), its readers take it
padded without the reference cache (``PaddedRead``), and a local layer whose input and output are
both changed whole is called as the layer itself (``Program.whole``). A Conv1D with few filters
(profile heads) computes its window as shifted products (``shifted_products_conv``). Each is
checked against Keras and against the explicit naive ISM of ``oracle.py``.
"""

import numpy as np
import pytest

from fastism_dist import FastISM
from fastism_dist.core.layer_rules import ConvRule, shifted_products_conv
from fastism_dist.core.program import PaddedRead

from oracle import assert_close, explicit_ism, random_one_hot

LENGTH = 24


@pytest.mark.parametrize("kernel,dilation,stride", [(1, 1, 1), (3, 1, 1), (5, 2, 1), (4, 1, 2),
                                                    (3, 3, 1), (3, 1, 3), (7, 1, 1)])
def test_shifted_products_equal_a_valid_convolution(kernel, dilation, stride):
    import keras

    rng = np.random.default_rng(kernel + 10 * dilation + 100 * stride)
    window = rng.normal(size=(3, 30, 12)).astype(np.float32)
    weights = rng.normal(size=(kernel, 12, 2)).astype(np.float32)
    want = keras.ops.conv(window, weights, strides=stride, padding="valid",
                          dilation_rate=dilation)
    got = shifted_products_conv(keras.ops.convert_to_tensor(window),
                                keras.ops.convert_to_tensor(weights), dilation, stride)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_few_filters_choose_shifted_products():
    config = {"kernel_size": (5,), "strides": (1,), "dilation_rate": (1,), "padding": "same"}
    assert ConvRule.from_config(config, [(LENGTH, 16)], [(LENGTH, 4)]).shifted_products
    assert not ConvRule.from_config(config, [(LENGTH, 16)], [(LENGTH, 5)]).shifted_products
    assert not ConvRule.from_config(config, [(LENGTH, 4)], [(LENGTH, 16)]).shifted_products


def profile_model(length=LENGTH, profile_padding="same", profile_stride=1):
    """A small BPNet: a dilated residual stack whose windows reach the whole sequence, a
    few-filter profile head on it, a strided few-filter conv, and a pooled counts head.

    in (L, 4) -> C(16, 5) -> 4 x [C(16, 3, dilation 2, 4, 8, 16) + residual]
      -> profile C(2, 7) | C(3, 5, stride) -> F -> D(2) | GAP -> D(1)
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((length, 4))
    h = layers.Conv1D(16, 5, padding="same", activation="relu")(inp)
    for i in range(1, 5):
        conv = layers.Conv1D(16, 3, padding="same", dilation_rate=2 ** i, activation="relu",
                             name=f"dil{i}")(h)
        h = layers.Add()([conv, h])
    profile = layers.Conv1D(2, 7, padding=profile_padding, name="profile")(h)
    strided = layers.Conv1D(3, 5, strides=profile_stride, activation="tanh")(h)
    flat = layers.Dense(2, name="flat")(layers.Flatten()(strided))
    counts = layers.Dense(1, name="counts")(layers.GlobalAveragePooling1D()(h))
    return keras.Model(inp, [profile, flat, counts])


def _reads(ism, kind):
    return [key for key, read in ism.program.reads.items() if isinstance(read, kind)]


@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("padding,stride", [("same", 1), ("valid", 2)])
def test_whole_windows_and_few_filter_heads_equal_naive(padding, stride, xla):
    model = profile_model(profile_padding=padding, profile_stride=stride)
    ism = FastISM(model, check=False, batch_size=40, xla=xla)
    names = {ism.graph.nodes[i].name for i in ism.program.whole}
    assert names == {"dil4"}  # its input and output are changed whole
    assert _reads(ism, PaddedRead)  # the heads read the stack's output without the cache
    shifted = {n.node.name for n in ism.plan.nodes if getattr(n.rule, "shifted_products", 0)}
    assert "profile" in shifted
    x = random_one_hot(3, LENGTH, seed=4)
    want = explicit_ism(model, x)
    got = ism(x)
    assert_close(got.ref, want[0])
    assert_close(got.mut, want[1])


def test_edge_positions_only_stay_exact():
    """Mutating the first and last positions only: the windows are whole at both ends."""
    model = profile_model()
    x = random_one_hot(2, LENGTH, seed=8)
    for start, end in ((0, 2), (LENGTH - 2, LENGTH)):
        want = explicit_ism(model, x, start=start, end=end)
        got = FastISM(model, start=start, end=end, check=True, xla=False)(x)
        assert_close(got.mut, want[1])


def test_self_check_accepts_the_whole_window_plan():
    FastISM(profile_model(), check=True)
