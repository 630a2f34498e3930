"""The inputs of a multi-input model besides the sequence, one row per sequence.

A model with several inputs (a sequence and, say, a cell-type vector) is scored with the other
inputs held fixed per sequence: row ``i`` of each goes with sequence ``i`` of the input file.
They come from a ``.npy`` file (a model with one other input), a ``.npz`` file keyed by input
name, or in Python from arrays. Files travel to the workers by path and are read there; arrays
travel inside the run description.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

import numpy as np

from fastism_dist.distributed.hashes import file_fingerprint
from fastism_dist.errors import InputError, ModelError


#: Other-inputs files this process loaded, (path, names, fingerprint) -> arrays, oldest first:
#: at most ``_KEEP_LOADED`` (runs sharing a cluster each keep theirs).
_LOADED = {}
_KEEP_LOADED = 2
_LOADED_LOCK = threading.Lock()


@dataclass(frozen=True)
class OtherInputs:
    """A model's non-sequence inputs for every sequence of a run.

    Attributes
    ----------
    names : tuple of str
        The model's inputs besides the sequence, in the model's order.
    path : str or None
        The ``.npy`` / ``.npz`` file they are read from (None: ``arrays`` holds them).
    arrays : tuple of ndarray or None
        In-memory values, one (N, *shape_k) array per name.
    fingerprint : str
        What identifies their content (file fingerprint or SHA-256 of the arrays).
    """

    names: tuple
    path: str | None
    arrays: tuple | None
    fingerprint: str

    def read(self, rows):
        """The other inputs of sequences ``rows`` (a slice): list of (n, *shape_k) arrays.

        A file is loaded once per process (a ``.npz`` is decompressed whole) and kept for the
        run's later reads, after checking that it is still the file the run was planned on.

        Raises
        ------
        InputError
            The file changed since the run was planned.
        """
        arrays = self.arrays if self.arrays is not None else self._file_arrays()
        return [np.asarray(a[rows]) for a in arrays]

    def _file_arrays(self):
        key = (self.path, self.names, self.fingerprint)
        with _LOADED_LOCK:
            if key not in _LOADED:
                if file_fingerprint(self.path) != self.fingerprint:
                    raise InputError(f"--other-inputs {self.path} changed since the run was "
                                     "planned; rerun the command (a resume refuses a changed "
                                     "file)")
                while len(_LOADED) >= _KEEP_LOADED:
                    _LOADED.pop(next(iter(_LOADED)))
                _LOADED[key] = _load(self.path, self.names)
            return _LOADED[key]

    def params(self):
        """What the store's parameters record of them."""
        return {"other_inputs": list(self.names), "other_inputs_content": self.fingerprint}


def plan_other_inputs(keras_model, seq, other_inputs, n_sequences):
    """Check a model's other inputs on the client; None for a single-input model.

    Parameters
    ----------
    keras_model : keras.Model
    seq : SequenceInput
        The sequence input (its index is excluded).
    other_inputs : str, ndarray, list or dict of ndarray, or None
        A ``.npy`` / ``.npz`` path, or arrays (a dict keyed by input name, or a list in the
        model's input order without the sequence).
    n_sequences : int
        N, the rows each array must have.

    Returns
    -------
    OtherInputs or None

    Raises
    ------
    ModelError
        Other inputs missing for a multi-input model, or given for a single-input one.
    InputError
        A missing key, a wrong shape or row count, or values that are not finite.
    """
    names = tuple(t.name for i, t in enumerate(keras_model.inputs) if i != seq.index)
    if not names:
        if other_inputs is not None:
            raise ModelError("--other-inputs given, but the model's only input is the sequence")
        return None
    if other_inputs is None:
        raise ModelError(f"the model has inputs {list(names)} besides the sequence "
                         f"{seq.name!r}: give them with --other-inputs (other_inputs=)")
    path = os.path.abspath(os.fspath(other_inputs)) if _is_path(other_inputs) else None
    what = f"--other-inputs {other_inputs}" if path else "other_inputs"
    arrays = _load(path, names) if path else _arrays(other_inputs, names)
    shapes = {t.name: tuple(t.shape[1:]) for t in keras_model.inputs}
    for name, array in zip(names, arrays):
        _check_array(what, name, array, shapes[name], n_sequences)
    if path:
        return OtherInputs(names, path, None, file_fingerprint(path))
    arrays = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)
    return OtherInputs(names, None, arrays, f"sha256:{_arrays_sha256(arrays)}")


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def _load(path, names):
    """The arrays of ``names`` in the ``.npy`` / ``.npz`` file at ``path`` (memory-mapped .npy)."""
    if not os.path.isfile(path):
        raise InputError(f"--other-inputs: file not found: {path}")
    try:
        if path.endswith(".npy"):
            if len(names) != 1:
                raise InputError(f"--other-inputs {path}: the model has {len(names)} other "
                                 f"inputs {list(names)}; give a .npz file keyed by these names")
            return [np.load(path, mmap_mode="r", allow_pickle=False)]
        with np.load(path, allow_pickle=False) as archive:
            missing = [n for n in names if n not in archive.files]
            if missing:
                raise InputError(f"--other-inputs {path}: no array named {missing[0]!r} (it has "
                                 f"{archive.files}; the model's other inputs are {list(names)})")
            return [archive[n] for n in names]
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"--other-inputs {path}: cannot read it ({err})") from None


def _arrays(other_inputs, names):
    """In-memory other inputs as a list in the order of ``names``."""
    if isinstance(other_inputs, dict):
        missing = [n for n in names if n not in other_inputs]
        if missing:
            raise InputError(f"other_inputs has no entry {missing[0]!r}; the model's other "
                             f"inputs are {list(names)}")
        return [np.asarray(other_inputs[n]) for n in names]
    values = list(other_inputs) if isinstance(other_inputs, (list, tuple)) else [other_inputs]
    if len(values) != len(names):
        raise InputError(f"other_inputs has {len(values)} array(s); the model's other inputs "
                         f"are {list(names)}")
    return [np.asarray(v) for v in values]


def _check_array(what, name, array, shape, n_sequences):
    """Raise ``InputError`` unless ``array`` is (n_sequences, *shape) with finite numbers."""
    expected = (n_sequences, *shape)
    fits = array.ndim == len(expected) and all(
        e is None or e == a for e, a in zip(expected, array.shape))
    if not fits:
        shown = ", ".join("?" if e is None else str(e) for e in expected)
        raise InputError(f"{what}: input {name!r} has shape {tuple(array.shape)}, expected "
                         f"({shown}): one row per sequence")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise InputError(f"{what}: input {name!r} holds {array.dtype} values, not numbers")
    bad = ~np.isfinite(np.asarray(array, dtype=np.float64))
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InputError(f"{what}: input {name!r} has a NaN or infinite value in row {row}")


def _arrays_sha256(arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
