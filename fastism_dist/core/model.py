"""Loading a model and finding what fastism_dist needs in it: its sequence input and outputs."""

from __future__ import annotations

import inspect
import json
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass

from fastism_dist.errors import ModelError

ANY_VALUE = object()  # stands for every value of a key that never has an effect

# Config keys tf-keras (Keras 2) writes that some Keras 3 layers do not take, with the values that
# mean what the Keras 3 layer does anyway. Only these are dropped when a legacy .h5 file is loaded.
LEGACY_KEYS_WITHOUT_EFFECT = {
    "groups": (1,),  # one group is the ordinary (transposed, depthwise, separable) convolution
    "time_major": (False,),  # Keras 3 recurrent layers take (batch, time, ...) inputs
    "noise_shape": (None,),  # SpatialDropout derives its per-channel noise shape itself
    "trainable": (True,),
    "kernel_initializer": ANY_VALUE,  # the weights are read from the file
    "kernel_regularizer": (None,),
    "kernel_constraint": (None,),
    "query_shape": (None,),  # MultiHeadAttention learns its shapes from its first call
    "key_shape": (None,),
    "value_shape": (None,),
    "softmax_robust_masking": (False,),
    "rng_type": ("stateful",),  # random augmentation layers are the identity at inference
}

# Keys Keras's own legacy loader converts before a layer sees them.
CONVERTED_BY_KERAS = frozenset({"batch_input_shape", "input_shape", "input_dim"})


def load_model(model, safe_mode=True):
    """Return a ``keras.Model`` from a model or a ``.keras`` / ``.h5`` path.

    ``safe_mode=False`` allows deserialising Lambda layers (only for files you trust). A legacy
    ``.h5`` file whose layer configs hold a key the Keras 3 layer does not take loads when the
    key's value has no effect (e.g. ``groups: 1`` on a Conv2DTranspose saved by tf-keras); a
    warning names each dropped key. Any other such key raises ``ModelError`` naming layer and key.
    """
    import keras

    if isinstance(model, keras.Model):
        return model
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory; expected a .keras or .h5 model file")
    if path.endswith(".h5") or path.endswith(".hdf5"):
        return _load_legacy_h5(path, safe_mode)
    return _keras_load_model(path, safe_mode)


def _keras_load_model(path, safe_mode, custom_objects=None):
    """``keras.models.load_model`` (uncompiled), its failures turned into ``ModelError``."""
    import keras

    try:
        return keras.models.load_model(path, custom_objects=custom_objects, compile=False,
                                       safe_mode=safe_mode)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelError(
                f"{path}: the model has a Lambda layer, which Keras will not load in safe mode; "
                "load it only if you trust the file (unsafe_model / --unsafe-model)"
            ) from None
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None
    except (OSError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"{path}: cannot load the model (damaged file?): {text}") from None


def _load_legacy_h5(path, safe_mode):
    """Load an ``.h5`` model, dropping the config keys without effect that Keras 3 rejects."""
    dropped = _legacy_keys_to_drop(path, _read_model_config(path))
    if not dropped:
        return _keras_load_model(path, safe_mode)
    loaders = {class_name: _LayerWithoutKeys(class_name, {key for _, key, _ in found})
               for class_name, found in dropped.items()}
    model = _keras_load_model(path, safe_mode, custom_objects=loaders)
    notes = "; ".join(f"layer {name!r} ({class_name}) {key}={value!r}"
                      for class_name, found in dropped.items() for name, key, value in found)
    warnings.warn(f"{path}: dropped tf-keras config keys that Keras 3 does not take and that "
                  f"have no effect: {notes}", UserWarning, stacklevel=3)
    return model


def _read_model_config(path):
    """The ``model_config`` JSON attribute of a legacy ``.h5`` file, as a dict."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as err:
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None
    if config is None:
        raise ModelError(f"{path}: not a Keras model file (no model_config attribute)")
    return json.loads(config.decode("utf-8") if hasattr(config, "decode") else config)


def _legacy_keys_to_drop(path, model_config):
    """``{class name: [(layer name, key, value), ...]}`` of the keys to drop before loading.

    Raises ``ModelError`` for a key the Keras 3 layer does not take whose value has an effect.
    """
    dropped = {}
    for entry in _layer_entries(model_config):
        class_name, config = entry["class_name"], entry["config"]
        for key in _rejected_keys(class_name, config):
            value, name = config[key], config.get("name", entry.get("name"))
            if not _without_effect(key, value):
                raise ModelError(
                    f"{path}: layer {name!r} ({class_name}) has config key {key!r} = {value!r}, "
                    f"which Keras 3's {class_name} does not take; {_droppable(key)}"
                )
            dropped.setdefault(class_name, []).append((name, key, value))
    return dropped


def _layer_entries(model_config):
    """Every layer's ``{"class_name", "config"}`` entry, nested models' layers included."""
    config = model_config.get("config")
    layers = config if isinstance(config, list) else (config or {}).get("layers", [])
    for entry in layers:
        inner = entry.get("config")
        if isinstance(inner, list) or (isinstance(inner, dict) and "layers" in inner):
            yield from _layer_entries(entry)
        elif isinstance(inner, dict):
            yield entry


def _rejected_keys(class_name, config):
    """The keys of ``config`` that the Keras 3 layer ``class_name`` refuses to be built with.

    A key the constructors do not name may still be read from ``**kwargs``, so each such key is
    tried on the layer built from the named keys alone. Unknown classes (custom layers), input
    layers, Lambda layers (building one would deserialise code), models, and configs that do not
    build without those keys are left to Keras.
    """
    import keras

    layer_class = getattr(keras.layers, class_name, None)
    left_to_keras = (keras.layers.InputLayer, keras.layers.Lambda, keras.Model)
    if (not inspect.isclass(layer_class) or not issubclass(layer_class, keras.layers.Layer)
            or issubclass(layer_class, left_to_keras)):
        return []
    named = _constructor_keys(layer_class) | CONVERTED_BY_KERAS
    unnamed = [key for key in config if key not in named]
    base = {key: value for key, value in config.items() if key not in unnamed}
    if not unnamed or not _builds(layer_class, base):
        return []
    return [key for key in unnamed if not _builds(layer_class, {**base, key: config[key]})]


def _constructor_keys(layer_class):
    """Keyword names the constructors of ``layer_class`` take, following ``**kwargs`` upwards."""
    import keras

    names = set()
    for cls in layer_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names.update(p.name for p in parameters
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if cls is keras.layers.Layer or all(p.kind != p.VAR_KEYWORD for p in parameters):
            break
    return names


def _builds(layer_class, config):
    """Whether ``layer_class.from_config(config)`` succeeds (its warnings silenced)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer_class.from_config(dict(config))
    except (TypeError, ValueError):
        return False
    return True


def _without_effect(key, value):
    """Whether ``key: value`` means what the Keras 3 layer does without the key."""
    neutral = LEGACY_KEYS_WITHOUT_EFFECT.get(key, ())
    return neutral is ANY_VALUE or any(type(value) is type(v) and value == v for v in neutral)


def _droppable(key):
    """The end of the refusal's message: where ``key`` could have been dropped."""
    neutral = LEGACY_KEYS_WITHOUT_EFFECT.get(key)
    if neutral is None:
        return "no value of it is known to have no effect, so the model cannot be rebuilt"
    return f"it is dropped only where it is {' or '.join(repr(v) for v in neutral)}"


class _LayerWithoutKeys:
    """Stands in for a Keras layer class in ``custom_objects``: builds it without some keys."""

    def __init__(self, class_name, keys):
        import keras

        self.layer_class = getattr(keras.layers, class_name)
        self.keys = frozenset(keys)

    def from_config(self, config):
        return self.layer_class.from_config({k: v for k, v in config.items() if k not in self.keys})


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


