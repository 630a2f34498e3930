"""Ensembles of models on the client: which files, checked alike, and what identifies them.

``score`` takes an ensemble as a list of model files, a directory (every ``.keras`` / ``.h5``
file in it) or a glob; the models are used in file-name order. Every model must take the same
input and give outputs of the same names and shapes as the first. ``EnsembleSpec`` travels to
the workers inside the ``RunPlan``; its ``params()`` join the store's parameters.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

from fastism_dist.core import find_sequence_input, load_model, output_names
from fastism_dist.distributed.hashes import file_sha256
from fastism_dist.distributed.model import output_shapes
from fastism_dist.errors import FastISMError, ModelError, StoreMismatchError
from fastism_dist.store import ENSEMBLE_MODES, read_params

MODEL_SUFFIXES = (".keras", ".h5")
GLOB_CHARS = "*?["
#: Models per (chunk, group) task when ``group_size`` is not given.
DEFAULT_GROUP_SIZE = 8
DEFAULT_MODE = "mean"


@dataclass(frozen=True)
class EnsembleSpec:
    """The models of an ensemble run, in file-name order.

    Attributes
    ----------
    paths : tuple of str
        Absolute paths every worker can read.
    names : tuple of str
        File names (the ``model`` labels of a ``keep`` store).
    sha256s : tuple of str
        SHA-256 of each file.
    mode : {"mean", "keep"}
    group_size : int
        Models per task (the last group may be smaller).
    """

    paths: tuple
    names: tuple
    sha256s: tuple
    mode: str
    group_size: int

    @property
    def n_models(self):
        return len(self.paths)

    @property
    def n_groups(self):
        return -(-self.n_models // self.group_size)

    @property
    def sha256(self):
        """One digest of the whole ensemble: the SHA-256 of its names and files' digests."""
        text = "\n".join(f"{n} {h}" for n, h in zip(self.names, self.sha256s))
        return hashlib.sha256(text.encode()).hexdigest()

    def group(self, index):
        """Paths of the models of group ``index``."""
        return self.paths[index * self.group_size:(index + 1) * self.group_size]

    def params(self):
        """The ensemble's keys of the store's parameters."""
        return {"models": list(self.names), "model_sha256s": list(self.sha256s),
                "ensemble": self.mode, "group_size": int(self.group_size)}

    def attrs(self):
        """The ensemble's store attributes."""
        return {"ensemble": self.mode, "ensemble_models": list(self.names),
                "model_sha256s": dict(zip(self.names, self.sha256s)),
                "ensemble_group_size": int(self.group_size)}


def model_files(model):
    """The files of an ensemble ``model`` (list, directory or glob), or None for one model.

    Returns
    -------
    list of str or None
        Absolute paths sorted by file name; None for one model (a file, an in-memory model, or
        a directory without model files, which loading then refuses as a directory).

    Raises
    ------
    ModelError
        No model files found, a list entry that is not a file path, or two files of one name.
    """
    if isinstance(model, (list, tuple)):
        if not model or not all(isinstance(m, (str, os.PathLike)) for m in model):
            raise ModelError("an ensemble is a non-empty list of model file paths")
        paths = [os.fspath(m) for m in model]
    elif not isinstance(model, (str, os.PathLike)):
        return None
    elif os.path.isdir(model):  # without model files in it: the one-model "is a directory"
        paths = [os.path.join(model, f) for f in os.listdir(model) if f.endswith(MODEL_SUFFIXES)]
        if not paths:
            return None
    elif any(c in os.fspath(model) for c in GLOB_CHARS) and not os.path.exists(model):
        paths = [p for p in glob.glob(os.fspath(model)) if os.path.isfile(p)]
        if not paths:
            raise ModelError(f"{os.fspath(model)}: no model files match this pattern")
    else:
        return None
    return _sorted_unique(paths)


def _sorted_unique(paths):
    paths = sorted((os.path.abspath(p) for p in paths), key=lambda p: (os.path.basename(p), p))
    names = [os.path.basename(p) for p in paths]
    for a, b in zip(names, names[1:]):
        if a == b:
            raise ModelError(f"two models of the ensemble are both named {a}; file names label "
                             "the models and must differ")
    return paths


def check_options(ensemble, group_size, members):
    """Raise ``FastISMError`` for an ``ensemble`` / ``group_size`` that does not apply or fit."""
    if members is None:
        if ensemble is not None or group_size is not None:
            raise FastISMError("ensemble / group_size need several models: a list of model "
                               "files, a directory of them or a glob")
        return
    if ensemble is not None and ensemble not in ENSEMBLE_MODES:
        raise FastISMError(f"ensemble must be one of {list(ENSEMBLE_MODES)}, got {ensemble!r}")
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                   or group_size < 1):
        raise FastISMError(f"group_size must be a positive integer, got {group_size!r}")


def _signature(keras_model):
    """(input (length, channels), number of inputs, {output: shape}) of a model."""
    seq = find_sequence_input(keras_model, 0)
    return (seq.length, seq.channels), len(keras_model.inputs), output_shapes(keras_model, seq)


def plan_ensemble(paths, first_model, mode, group_size, safe_mode=True):
    """Check that every model of ``paths`` takes the first one's input and gives its outputs.

    Parameters
    ----------
    paths : list of str
        The ensemble's files, in order (``model_files``).
    first_model : keras.Model
        The model of ``paths[0]``, already loaded.
    mode : {"mean", "keep"} or None
        Default is "mean".
    group_size : int or None
        Default is ``min(DEFAULT_GROUP_SIZE, len(paths))``.
    safe_mode : bool

    Returns
    -------
    EnsembleSpec

    Raises
    ------
    ModelError
        One line naming the first model whose input or outputs differ.
    """
    first = _signature(first_model)
    first_names = output_names(first_model)
    for path in paths[1:]:
        model = load_model(path, safe_mode=safe_mode)
        _compare(path, paths[0], first, _signature(model), first_names, output_names(model))
    return EnsembleSpec(
        paths=tuple(paths), names=tuple(os.path.basename(p) for p in paths),
        sha256s=tuple(file_sha256(p) for p in paths), mode=mode or DEFAULT_MODE,
        group_size=int(min(group_size or DEFAULT_GROUP_SIZE, len(paths))))


def _compare(path, first_path, first, other, first_names, names):
    (shape, n_inputs, outs), (o_shape, o_inputs, o_outs) = first, other
    if o_inputs != n_inputs or o_shape != shape:
        raise ModelError(f"{path}: takes input {_inputs(o_shape, o_inputs)} but "
                         f"{os.path.basename(first_path)} takes {_inputs(shape, n_inputs)}; "
                         "every model of an ensemble must take the same input")
    if names != first_names or o_outs != outs:
        raise ModelError(f"{path}: gives outputs {o_outs} but {os.path.basename(first_path)} "
                         f"gives {outs}; every model of an ensemble must give the same outputs")


def _inputs(shape, n_inputs):
    text = f"(batch, {shape[0]}, {shape[1]})"
    return text if n_inputs == 1 else f"{text} and {n_inputs - 1} other input(s)"


def check_ensemble_params(out, spec):
    """Raise ``StoreMismatchError`` naming the first model that differs from the store's.

    Compares the model list, then each model's SHA-256, then the mode and group size; a
    single-model store against an ensemble run says so.
    """
    stored = read_params(out)
    hint = "use --overwrite (overwrite=True) to replace it, or choose another --out"
    if "models" not in stored:
        raise StoreMismatchError(f"{out} was written by a single model but this run is an "
                                 f"ensemble of {spec.n_models}; {hint}", parameter="models")
    if stored["models"] != list(spec.names):
        raise StoreMismatchError(f"{out} was written with models {_names(stored['models'])} but "
                                 f"this run has {_names(spec.names)}; {hint}", parameter="models")
    for name, old, new in zip(spec.names, stored.get("model_sha256s", []), spec.sha256s):
        if old != new:
            raise StoreMismatchError(f"{out} was written with {name} of sha256 {old[:12]}... but "
                                     f"{name} now has sha256 {new[:12]}... (the file changed); "
                                     f"{hint}", parameter="model_sha256s")
    for key in ("ensemble", "group_size"):
        if stored.get(key) != spec.params()[key]:
            raise StoreMismatchError(f"{out} was written with {key}={stored.get(key)} but this "
                                     f"run has {key}={spec.params()[key]}; {hint}", parameter=key)


def _names(names):
    text = ", ".join(names)
    return f"[{text if len(text) <= 120 else text[:117] + '...'}]"
