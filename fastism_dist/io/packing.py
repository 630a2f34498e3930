"""Compact pickling of per-record metadata (ids, lengths, coordinates) sent to workers."""

from __future__ import annotations

import zlib

import numpy as np

_SMALL = 256  # values with at most this many entries are pickled as they are


class Packed:
    """A compressed per-record array or id list inside a pickled source."""

    __slots__ = ("kind", "dtype", "shape", "data")

    def __init__(self, kind, dtype, shape, data):
        self.kind, self.dtype, self.shape, self.data = kind, dtype, shape, data

    def __getstate__(self):
        return (self.kind, self.dtype, self.shape, self.data)

    def __setstate__(self, state):
        self.kind, self.dtype, self.shape, self.data = state


def pack(value):
    """Shrink a large integer array (constant, or zlib-compressed deltas) or list of str.

    A tuple is packed item by item; anything else is returned as it is. :func:`unpack` undoes
    this exactly.
    """
    if isinstance(value, tuple):
        return tuple(pack(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iub" and value.size > _SMALL:
        if (value == value.flat[0]).all():
            return Packed("const", value.dtype.str, value.shape, value.flat[0].item())
        delta = np.diff(value.reshape(-1).astype(np.int64), prepend=0)
        return Packed("delta", value.dtype.str, value.shape, zlib.compress(delta.tobytes(), 1))
    if isinstance(value, list) and len(value) > _SMALL and all(type(v) is str and "\n" not in v for v in value):
        return Packed("lines", None, None, zlib.compress("\n".join(value).encode("utf-8"), 1))
    return value


def unpack(value):
    """The value :func:`pack` was given."""
    if isinstance(value, tuple):
        return tuple(unpack(v) for v in value)
    if not isinstance(value, Packed):
        return value
    if value.kind == "const":
        return np.full(value.shape, value.data, dtype=value.dtype)
    if value.kind == "delta":
        delta = np.frombuffer(zlib.decompress(value.data), dtype=np.int64)
        return np.cumsum(delta).astype(value.dtype).reshape(value.shape)
    return zlib.decompress(value.data).decode("utf-8").split("\n")
