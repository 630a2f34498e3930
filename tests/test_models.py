"""The reference architectures of ``fastism_dist.models``: shapes, FLOPs, seeding, save/load,
and naive ISM on tiny versions of each against an explicit mutate-and-predict loop."""

import subprocess
import sys

import numpy as np
import pytest

from oracle import explicit_ism, random_one_hot

from fastism_dist.models import (
    REFERENCE_MODELS,
    basset,
    bpnet,
    build,
    factorized_basset,
    long_range,
    randomize_batch_norm,
)

# Tiny versions of every reference model (same graphs, small sizes).
TINY = {
    # in -> [C -> BN -> relu -> P] x3 -> flatten -> [D -> BN -> relu -> drop] x2 -> D
    "basset": dict(seq_len=64, n_outputs=3, filters=(8, 6, 5), kernels=(5, 3, 3),
                   pools=(2, 2, 2), dense=(16, 8)),
    # in -> [C -> BN -> relu] x3 -> P -> [C -> BN -> relu] x2 -> P -> C -> BN -> relu -> P
    #    -> dense head
    "factorized_basset": dict(seq_len=64, n_outputs=3, pools=(2, 2, 2), dense=(16, 8),
                              blocks=(((4, 3), (6, 3), (8, 5)), ((6, 5), (6, 3)), ((5, 3),))),
    # in -> C -> [dilC -> add] x3 -> (profile C) and (GAP -> counts D)
    "bpnet": dict(seq_len=64, filters=8, n_dilated=3, first_kernel=7, profile_kernel=5),
    # in -> C -> [C -> BN -> gelu -> P] x2 -> MHA -> add -> LN -> D -> D -> add -> LN
    #    -> (tracks D) and (GAP -> pooled D)
    "long_range": dict(seq_len=64, filters=16, n_conv_blocks=2, n_attention=1, heads=2,
                       key_dim=4, n_outputs=3, pooled_head=True),
}

TINY_SHAPES = {
    "basset": [(3,)],
    "factorized_basset": [(3,)],
    "bpnet": [(64, 4), (2,)],
    "long_range": [(16, 3), (3,)],
}


@pytest.fixture(scope="module")
def tiny_models():
    models = {}
    for i, (name, kwargs) in enumerate(TINY.items()):
        models[name] = randomize_batch_norm(build(name, seed=10 + i, **kwargs), seed=i)
    return models


def as_list(outputs):
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o) for o in outputs]


def conv_dense_macs(model):
    """Multiply-adds per sequence of each Conv1D (out_len * k * c_in * filters) and each Dense
    on flat input (in * out), from the layer configs and shapes: {layer name: count}."""
    from keras import layers

    macs = {}
    for layer in model.layers:
        if isinstance(layer, layers.Conv1D):
            out_len = layer.output.shape[1]
            c_in = layer.input.shape[-1]
            macs[layer.name] = out_len * layer.kernel_size[0] * c_in * layer.filters
        elif isinstance(layer, layers.Dense):
            macs[layer.name] = layer.input.shape[-1] * layer.units
    return macs


# ---------------------------------------------------------------- building


def test_import_does_not_import_tensorflow():
    code = ("import sys, fastism_dist.models; "
            "sys.exit(int('tensorflow' in sys.modules or 'keras' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_registry():
    assert set(REFERENCE_MODELS) == {"basset", "factorized_basset", "bpnet", "long_range"}
    assert REFERENCE_MODELS["bpnet"] is bpnet
    from fastism_dist.errors import ModelError

    with pytest.raises(ModelError, match="unknown reference model"):
        build("resnet")


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_shapes(tiny_models, name):
    model = tiny_models[name]
    assert model.inputs[0].name == "sequence"
    assert tuple(model.inputs[0].shape) == (None, 64, 4)
    assert [tuple(o.shape)[1:] for o in model.outputs] == TINY_SHAPES[name]
    outs = as_list(model(random_one_hot(2, 64), training=False))
    assert [o.shape for o in outs] == [(2, *s) for s in TINY_SHAPES[name]]
    assert all(np.all(np.isfinite(o)) for o in outs)


def test_default_shapes():
    assert tuple(basset().output.shape) == (None, 164)
    assert tuple(factorized_basset(seq_len=2000).output.shape) == (None, 164)
    model = bpnet(seq_len=2000)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 2000, 4), (None, 2)]
    assert tuple(long_range().output.shape) == (None, 128, 8)


def test_basset_1kb_multiply_adds_per_layer():
    macs = conv_dense_macs(basset(seq_len=1000))
    assert macs == {
        "conv1": 22_800_000,   # 1000 * 19 * 4 * 300
        "conv2": 219_780_000,  # 333 * 11 * 300 * 200
        "conv3": 23_240_000,   # 83 * 7 * 200 * 200
        "dense1": 4_000_000,   # (20 * 200) * 1000
        "dense2": 1_000_000,
        "output": 164_000,
    }
    assert round(sum(macs.values()) / 1e6) == 271


def test_basset_2kb_multiply_adds():
    assert round(sum(conv_dense_macs(basset(seq_len=2000)).values()) / 1e6) == 541


def test_factorized_basset_layers():
    model = factorized_basset(seq_len=1000)
    convs = [(l.name, l.filters, l.kernel_size[0]) for l in model.layers
             if l.__class__.__name__ == "Conv1D"]
    assert convs == [("conv1a", 48, 3), ("conv1b", 64, 3), ("conv1c", 100, 3),
                     ("conv1d", 150, 7), ("conv1e", 300, 7), ("conv2a", 200, 7),
                     ("conv2b", 200, 3), ("conv2c", 200, 3), ("conv3a", 200, 7)]
    assert model.get_layer("flatten").output.shape[-1] == 20 * 200


def test_bpnet_structure():
    model = bpnet(seq_len=128, filters=8)
    assert model.output_names == ["profile", "counts"]
    assert tuple(model.get_layer("profile").output.shape) == (None, 128, 4)
    assert [model.get_layer(f"dil_conv{i}").dilation_rate[0] for i in range(1, 10)] == [
        2 ** i for i in range(1, 10)]
    assert model.get_layer("profile").__class__.__name__ == "Conv1D"


def test_seed_is_deterministic():
    kwargs = TINY["long_range"]
    a = long_range(seed=5, **kwargs).get_weights()
    b = long_range(seed=5, **kwargs).get_weights()
    c = long_range(seed=6, **kwargs).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_randomize_batch_norm():
    model = basset(seed=0, **TINY["basset"])
    bn = model.get_layer("conv1_bn")
    assert np.all(np.asarray(bn.moving_variance) == 1)
    randomize_batch_norm(model, seed=3)
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    assert np.all(mean != 0) and np.all((var >= 0.5) & (var <= 2))
    other = randomize_batch_norm(basset(seed=0, **TINY["basset"]), seed=3)
    assert np.array_equal(np.asarray(other.get_layer("conv1_bn").moving_mean), mean)


@pytest.mark.parametrize("builder, kwargs", [
    (basset, dict(filters=(8, 8), kernels=(3, 3, 3), pools=(2, 2, 2))),
    (basset, dict(seq_len=16, pools=(3, 4, 4))),
    (basset, dict(kernels=(0, 3, 3))),
    (factorized_basset, dict(pools=(3, 4))),
    (bpnet, dict(n_dilated=-1)),
    (long_range, dict(seq_len=8, n_conv_blocks=4)),
])
def test_bad_arguments(builder, kwargs):
    with pytest.raises(ValueError):
        builder(**kwargs)


# ---------------------------------------------------------------- save / load and ISM


@pytest.mark.parametrize("name", sorted(TINY))
def test_keras_round_trip(tiny_models, name, tmp_path):
    import keras

    model = tiny_models[name]
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.output_names == model.output_names
    x = random_one_hot(3, 64, seed=1)
    for a, b in zip(as_list(model(x, training=False)), as_list(loaded(x, training=False))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(TINY))
def test_naive_ism_matches_explicit_loop(tiny_models, name):
    from fastism_dist import NaiveISM

    model = tiny_models[name]
    x = random_one_hot(2, 64, seed=2)
    res = NaiveISM(model, check=False)(x)
    _, expected = explicit_ism(model, x)
    ref = as_list(model(x, training=False))
    for k, (got, want) in enumerate(zip(res.mut, expected)):
        assert got.shape == want.shape == (2, 64, 4, *TINY_SHAPES[name][k])
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(res.ref[k], ref[k], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(TINY))
def test_fast_ism_matches_naive(tiny_models, name):
    from fastism_dist import FastISM, NaiveISM

    model = tiny_models[name]
    x = random_one_hot(2, 64, seed=3)
    fast = FastISM(model, check=False)(x)
    naive = NaiveISM(model, check=False)(x)
    for k, (got, want) in enumerate(zip(fast.mut, naive.mut)):
        scale = max(1.0, float(np.abs(want).max()))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(fast.ref[k], naive.ref[k], rtol=0, atol=1e-5 * scale)
