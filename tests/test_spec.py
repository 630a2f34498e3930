"""Bad input gets a clear ValueError naming the problem; models load from .keras and .h5."""

import numpy as np
import pytest

from fastism_dist import FastISM, NaiveISM
from fastism_dist.errors import FastISMError, InputError, ModelError, MutationSpecError

import toy_models
from oracle import assert_close, explicit_ism, random_one_hot


@pytest.fixture(scope="module")
def model():
    return toy_models.conv_flatten_dense()


@pytest.mark.parametrize("executor", [FastISM, NaiveISM])
def test_bad_x(model, executor):
    ism = executor(model, check=False)
    with pytest.raises(InputError, match="3-D"):
        ism(np.zeros((31, 4)))
    with pytest.raises(InputError, match=r"expects \(batch, 31, 4\)"):
        ism(np.zeros((2, 30, 4)))
    with pytest.raises(InputError, match=r"expects \(batch, 31, 4\)"):
        ism(np.zeros((2, 31, 5)))
    with pytest.raises(InputError, match="NaN"):
        ism(np.full((1, 31, 4), np.nan))


@pytest.mark.parametrize("start,end", [(-1, None), (0, 32), (5, 5), (10, 3), (31, None)])
def test_bad_start_end(model, start, end):
    with pytest.raises(MutationSpecError, match="out of range"):
        FastISM(model, start=start, end=end, check=False)


def test_bad_substitutions(model):
    with pytest.raises(MutationSpecError, match="substitutions must have shape"):
        FastISM(model, substitutions=np.zeros((3, 5)), check=False)
    with pytest.raises(MutationSpecError, match="out of range"):
        FastISM(model, substitutions=np.zeros((2, 40, 4)), check=False)


def test_model_without_sequence_input():
    import keras

    inp = keras.Input((10,))
    flat = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(ModelError, match=r"\(batch, length, channels\)"):
        FastISM(flat, check=False)
    with pytest.raises(ModelError, match="no input named"):
        FastISM(toy_models.conv_flatten_dense(), seq_input="nope", check=False)


def test_errors_are_value_errors():
    assert issubclass(FastISMError, ValueError)


def test_missing_other_inputs():
    model = toy_models.two_inputs_dense_join()
    ism = FastISM(model, seq_input="seq", check=False)
    with pytest.raises(InputError, match="other_inputs"):
        ism(random_one_hot(1, 26))


def test_load_keras_and_h5(tmp_path):
    model = toy_models.randomize_batch_norm(toy_models.mini_basset())
    x = random_one_hot(2, 60, seed=2)
    want = explicit_ism(model, x)
    for name in ("m.keras", "m.h5"):
        path = tmp_path / name
        model.save(path)
        got = FastISM(str(path), check=True)(x)
        assert_close(got.ref + got.mut, want[0] + want[1])


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        FastISM(str(tmp_path / "absent.keras"))


def test_lambda_model_needs_unsafe_mode(tmp_path):
    model = toy_models.reverse_complement_lambda()
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelError, match="safe mode"):
        FastISM(str(path))
    FastISM(str(path), safe_mode=False, check=True)


def test_padded_size_buckets():
    from fastism_dist.core import padded_size

    assert [padded_size(n, 1024) for n in (1, 17, 25, 33, 100, 288, 1000)] == [16, 24, 32, 40, 120, 320, 1024]
    assert padded_size(5, 7) == 7 and padded_size(1024, 1024) == 1024
    sizes = set()
    for n in range(1, 1025):
        size = padded_size(n, 1024)
        sizes.add(size)
        assert n <= size <= 1024 and (size <= 64 or size <= 1.25 * n or size == 1024)
    assert len(sizes) <= 30


def test_legacy_tf_keras_h5_file():
    """A model saved by tf-keras (Keras 2) loads with identical predictions and exact ISM."""
    import os

    data = os.path.join(os.path.dirname(__file__), "data")
    saved = np.load(os.path.join(data, "tiny_tf_keras.npz"))
    path = os.path.join(data, "tiny_tf_keras.h5")
    ism = FastISM(path, check=True)
    got = ism(saved["x"])
    np.testing.assert_allclose(got.ref[0], saved["y"], rtol=1e-5, atol=1e-6)
    want = explicit_ism(ism.model, saved["x"])
    assert_close(got.ref + got.mut, want[0] + want[1])
