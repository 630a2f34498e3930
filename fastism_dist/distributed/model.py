"""The model of a run as the client sees it: its executor, identity, outputs and task names."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np

from fastism_dist.core import FastISM, NaiveISM, output_names
from fastism_dist.distributed.hashes import file_sha256, keras_model_sha256
from fastism_dist.errors import FastISMError

#: The ISM executor class of each ``method``.
EXECUTORS = {"fast": FastISM, "naive": NaiveISM}
MODEL_FILE_NAME = "model.keras"


def executor_class(method):
    """The ISM executor class registered under ``method`` ("fast" or "naive")."""
    if method not in EXECUTORS:
        raise FastISMError(f"method must be one of {sorted(EXECUTORS)}, got {method!r}")
    return EXECUTORS[method]


def is_model_file(model):
    """True for a path (or the bytes of a ``.keras`` file), False for an in-memory model."""
    return isinstance(model, (str, bytes, os.PathLike))


def model_sha256(model, keras_model):
    """SHA-256 of the model file, or of an in-memory model's config and weights."""
    if is_model_file(model):
        return file_sha256(os.fspath(model))
    return keras_model_sha256(keras_model)


def model_for_workers(model, keras_model):
    """What the workers load: an absolute path, or the bytes of a ``.keras`` file of an
    in-memory model."""
    if is_model_file(model):
        return os.path.abspath(os.fspath(model))
    with tempfile.TemporaryDirectory(prefix="fastism-model-") as tmp:
        path = os.path.join(tmp, MODEL_FILE_NAME)
        keras_model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


@contextlib.contextmanager
def model_file(model_ref):
    """A path to the model of ``model_ref`` (a path, or ``.keras`` bytes written to a temporary
    file for the duration)."""
    if not isinstance(model_ref, bytes):
        yield model_ref
        return
    with tempfile.TemporaryDirectory(prefix="fastism-model-") as tmp:
        path = os.path.join(tmp, MODEL_FILE_NAME)
        with open(path, "wb") as fh:
            fh.write(model_ref)
        yield path


def client_tensorflow():
    """TensorFlow for the client, which only reads the model: GPU memory taken as needed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # TF already initialised in this process
            tf.config.experimental.set_memory_growth(gpu, True)


def output_shapes(keras_model, seq):
    """Output name -> shape of one sequence's output, running the model only if needed.

    Parameters
    ----------
    keras_model : keras.Model
    seq : SequenceInput
        The model's sequence input (length L, channels C).

    Returns
    -------
    dict of str to tuple of int
    """
    shapes = [tuple(t.shape[1:]) for t in keras_model.outputs]
    if any(d is None for s in shapes for d in s):
        from keras import tree

        zeros = [np.zeros((1, *(d or 1 for d in t.shape[1:])), np.float32)
                 for t in keras_model.inputs]
        outputs = keras_model(zeros if len(zeros) > 1 else zeros[0], training=False)
        shapes = [tuple(np.shape(o)[1:]) for o in tree.flatten(outputs)]
    names = output_names(keras_model)
    return {n: tuple(int(d) for d in s) for n, s in zip(names, shapes)}


def task_names(keras_model, outputs, model_path=None):
    """Output name -> names of its tasks (its last axis), where the model says them.

    From a ``<model file stem>.tasks.json`` beside the model file (a JSON object output ->
    list of names, as the bundled demo model has), else a ``task_names`` attribute of the model
    (a dict output -> list of names) or of the layer that makes an output (a list). Keras does
    not save such attributes in ``.keras`` files unless the layer's config carries them.

    Parameters
    ----------
    keras_model : keras.Model
    outputs : list of str
        The outputs asked about.
    model_path : str, optional
        The model's file, whose ``.tasks.json`` sidecar is read if present.

    Returns
    -------
    dict of str to list of str
    """
    found = _sidecar_task_names(model_path, outputs)
    on_model = getattr(keras_model, "task_names", None)
    if isinstance(on_model, dict):
        found.update({str(k): list(v) for k, v in on_model.items()
                      if str(k) in outputs and str(k) not in found})
    for name, tensor in zip(output_names(keras_model), keras_model.outputs):
        if name not in outputs or name in found:
            continue
        layer = getattr(getattr(tensor, "_keras_history", None), "operation", None)
        names = getattr(layer, "task_names", None)
        if names is not None and not isinstance(names, (str, dict)):
            found[name] = [str(t) for t in names]
    return found


def _sidecar_task_names(model_path, outputs):
    """{output: [task names]} from ``<stem>.tasks.json`` beside ``model_path``, else {}."""
    if model_path is None:
        return {}
    sidecar = os.path.splitext(os.fspath(model_path))[0] + ".tasks.json"
    if not os.path.isfile(sidecar):
        return {}
    try:
        with open(sidecar) as fh:
            names = json.load(fh)
    except (OSError, ValueError) as err:
        raise FastISMError(f"{sidecar}: cannot read task names: {err}") from None
    if not isinstance(names, dict) or not all(isinstance(v, list) for v in names.values()):
        raise FastISMError(f"{sidecar}: expected a JSON object mapping output names to lists of "
                           "task names")
    return {str(k): [str(t) for t in v] for k, v in names.items() if str(k) in outputs}
