"""Legacy .h5 files saved by tf-keras load under Keras 3 where a rejected config key has no effect.

tiny_tf_keras_bpnet.h5 (written by tests/data/make_tf_keras_bpnet_h5.py) is a BPNet-like model
whose Conv2DTranspose profile head carries tf-keras's ``groups: 1``, which Keras 3 rejects.
"""

import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest
from oracle import assert_close, explicit_ism

from fastism_dist.core import FastISM, load_model
from fastism_dist.errors import ModelError

DATA = os.path.join(os.path.dirname(__file__), "data")
BPNET_H5 = os.path.join(DATA, "tiny_tf_keras_bpnet.h5")
DROPPED = r"dropped tf-keras config keys .* layer 'conv2d_transpose' \(Conv2DTranspose\) groups=1"


def saved_predictions():
    saved = np.load(os.path.join(DATA, "tiny_tf_keras_bpnet.npz"))
    return saved["x"], [saved["profile"], saved["counts"]]


def copy_with_layer_config(tmp_path, layer_name, **changes):
    """A copy of the BPNet .h5 whose layer ``layer_name`` has ``changes`` in its config."""
    path = tmp_path / "edited.h5"
    shutil.copy(BPNET_H5, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        [layer] = [e for e in config["config"]["layers"] if e["config"]["name"] == layer_name]
        layer["config"].update(changes)
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
    return str(path)


def test_tf_keras_bpnet_loads_in_safe_mode_with_its_predictions():
    import keras

    x, want = saved_predictions()
    with pytest.warns(UserWarning, match=DROPPED) as caught:
        model = load_model(BPNET_H5, safe_mode=True)
    [message] = [str(w.message) for w in caught if "dropped" in str(w.message)]
    assert message.count("=") == 1, message
    assert type(model.get_layer("conv2d_transpose")) is keras.layers.Conv2DTranspose
    got = model.predict(x, verbose=0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_fast_ism_on_tf_keras_bpnet_equals_explicit_ism():
    x, want = saved_predictions()
    with pytest.warns(UserWarning, match=DROPPED):
        ism = FastISM(BPNET_H5, check=True)
    got = ism(x)
    for g, w in zip(got.ref, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    ref, mut = explicit_ism(ism.model, x)
    assert_close(got.ref + got.mut, ref + mut)


def test_file_without_rejected_keys_loads_with_nothing_dropped():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(os.path.join(DATA, "tiny_tf_keras.h5"))
    assert not [w for w in caught if "dropped" in str(w.message)]


def test_groups_other_than_one_is_refused(tmp_path):
    path = copy_with_layer_config(tmp_path, "conv2d_transpose", groups=2)
    with pytest.raises(ModelError) as err:
        load_model(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(path)
    assert "layer 'conv2d_transpose' (Conv2DTranspose) has config key 'groups' = 2" in message
    assert "dropped only where it is 1" in message


def test_unknown_key_is_refused_naming_layer_and_key(tmp_path):
    path = copy_with_layer_config(tmp_path, "counts", output_scaling=0.5)
    with pytest.raises(ModelError) as err:
        FastISM(path)
    message = str(err.value)
    assert "\n" not in message
    assert "layer 'counts' (Dense) has config key 'output_scaling' = 0.5" in message
    assert "Keras 3's Dense does not take" in message


def test_every_dropped_key_is_reported(tmp_path):
    path = copy_with_layer_config(tmp_path, "counts", groups=1)
    x, want = saved_predictions()
    with pytest.warns(UserWarning, match=DROPPED) as caught:
        model = load_model(path)
    [message] = [str(w.message) for w in caught if "dropped" in str(w.message)]
    assert "layer 'counts' (Dense) groups=1" in message
    for g, w in zip(model.predict(x, verbose=0), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_lambda_h5_still_needs_unsafe_mode(tmp_path):
    import toy_models

    path = str(tmp_path / "lambda.h5")
    toy_models.reverse_complement_lambda().save(path)
    with pytest.raises(ModelError, match="safe mode"):
        load_model(path)
    load_model(path, safe_mode=False)


def test_damaged_or_directory_model_files_are_one_line_errors(tmp_path, tiny_model_path):
    """A bit-flipped .keras file and a directory are ModelErrors, in Python as on the CLI."""
    from fastism_dist.core import load_model
    from fastism_dist.errors import ModelError

    data = bytearray(open(tiny_model_path, "rb").read())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(bytes(data))
    for bad, message in ((damaged, "cannot load the model"), (tmp_path, "is a directory")):
        with pytest.raises(ModelError, match=message) as err:
            load_model(str(bad))
        assert "\n" not in str(err.value)
