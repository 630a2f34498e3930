"""One-hot ``.npy`` input: an array of shape (N, L, C), memory-mapped."""

from __future__ import annotations

import numpy as np

from fastism_dist.errors import InputError
from fastism_dist.io.source import SequenceSource, centre_fit, fit_offset, register_reader


@register_reader
class NpySource(SequenceSource):
    """One-hot sequences from a ``.npy`` array of shape (N, L, C), memory-mapped."""

    kind = "npy"
    suffixes = (".npy",)

    @classmethod
    def sniff(cls, head, genome):
        return head.startswith(b"\x93NUMPY")

    @classmethod
    def open(cls, path, *, genome, length, resize, skip_mismatches, alphabet):
        arr = _load(path)
        channels = len(alphabet)
        if arr.ndim != 3 or arr.shape[2] != channels:
            raise InputError(
                f"{path}: expected a one-hot array of shape (N, L, {channels}), got shape {arr.shape}"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"{path}: expected a numeric one-hot array, got dtype {arr.dtype}")
        if arr.shape[0] == 0:
            raise InputError(f"{path}: holds no sequences")
        if arr.shape[1] == 0:
            raise InputError(f"{path}: sequences have length 0")
        stored = int(arr.shape[1])
        if length is None:
            length = stored
        elif length != stored and not resize:
            raise InputError(
                f"{path}: sequences have length {stored}, expected {length} (resize=True centre-crops or pads with N)"
            )
        n = int(arr.shape[0])
        src = cls(path, length, alphabet, [f"seq{i}" for i in range(n)])
        src._shape = tuple(int(s) for s in arr.shape)
        left = max(0, -fit_offset(stored, length))
        right = max(0, length - left - stored)
        src._set_coords([], np.full(n, -1), np.full(n, -1), np.zeros(n), np.full(n, left), np.full(n, right))
        return src

    def _read_sorted(self, idx):
        arr = _load(self.path)
        if tuple(arr.shape) != self._shape:
            raise InputError(f"{self.path}: the file changed since it was opened (shape {arr.shape})")
        x = np.asarray(arr[idx], dtype=np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            j, p, _ = np.argwhere(~finite)[0]
            raise InputError(f"{self.path}: sequence #{int(idx[j]) + 1} position {p + 1}: non-finite value")
        if x.shape[1] != self.length:
            x = np.stack([centre_fit(row, self.length) for row in x])
        return x


def _load(path):
    """The array in ``path``, memory-mapped."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: cannot read as a .npy array ({err})") from None
