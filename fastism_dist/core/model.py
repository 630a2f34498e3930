"""Loading a model and finding what fastism_dist needs in it: its sequence input and outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastism_dist.errors import ModelError

def load_model(model, safe_mode=True):
    """Return a ``keras.Model`` from a model or a ``.keras`` / ``.h5`` path.

    ``safe_mode=False`` allows deserialising Lambda layers (only for files you trust).
    """
    import keras

    if isinstance(model, keras.Model):
        return model
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    try:
        if path.endswith(".h5") or path.endswith(".hdf5"):
            return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
        return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelError(
                f"{path}: the model has a Lambda layer, which Keras will not load in safe mode; "
                "load it only if you trust the file (unsafe_model / --unsafe-model)"
            ) from None
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None
    except (OSError, TypeError) as err:
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None


COMPUTE_POLICIES = {"float32": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def with_compute_dtype(model, compute_dtype):
    """A copy of ``model`` computing in float16 / bfloat16 (weights kept in float32).

    Half precision is for GPUs: expect relative differences from float32 of about 1e-3
    (float16) to 1e-2 (bfloat16) of the output scale.
    """
    if compute_dtype not in COMPUTE_POLICIES:
        raise ModelError(f"compute_dtype must be one of {sorted(COMPUTE_POLICIES)}, got {compute_dtype!r}")
    policy = COMPUTE_POLICIES[compute_dtype]
    if policy is None:
        return model
    import keras

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as err:  # noqa: BLE001 - any failure means the model cannot be recast
        raise ModelError(f"cannot run model {model.name!r} in {compute_dtype}: {err}") from None
    return copy


@dataclass(frozen=True)
class SequenceInput:
    """Which model input holds the one-hot sequence and its shape (L, C)."""

    index: int
    name: str
    length: int
    channels: int


def find_sequence_input(model, seq_input=0):
    """Locate the sequence input by index or name; it must be (batch, length, channels)."""
    inputs = list(model.inputs)
    names = [t.name for t in inputs]
    if isinstance(seq_input, str):
        if seq_input not in names:
            raise ModelError(f"model has no input named {seq_input!r}; its inputs are {names}")
        index = names.index(seq_input)
    else:
        index = int(seq_input)
        if not 0 <= index < len(inputs):
            raise ModelError(f"seq_input={seq_input} but the model has {len(inputs)} input(s) {names}")
    shape = tuple(inputs[index].shape)
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(
            f"model input {names[index]!r} has shape {shape}: fastism_dist needs a "
            "(batch, length, channels) sequence input with fixed length and channels"
        )
    return SequenceInput(index, names[index], int(shape[1]), int(shape[2]))


def output_names(model):
    """One name per model output, in the order the model returns them."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model.outputs):
        names = [t._keras_history.operation.name for t in model.outputs]
    return names


