"""One-hot ``.npy`` input: an array of shape (N, L, C), memory-mapped.

Every value is checked when the file is opened (in blocks of about 16 MiB), so a bad array is an
error before any work starts: finite, between 0 and 1, at most 1 in all per position (one-hot,
all-zero ``N`` rows, or soft encodings such as 0.25 each; not integer tokens).
"""

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
        check_one_hot_like(arr, path)
        stored = int(arr.shape[1])
        if length is None:
            length = stored
        elif length != stored and not resize:
            raise InputError(
                f"{path}: sequences have length {stored}, expected {length} "
                "(--resize, resize=True in Python, centre-crops or pads with N)"
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


BLOCK_VALUES = 2**22
#: How far the channels of one position may sum above 1 (rounding of soft encodings).
SUM_TOLERANCE = 1e-3


def check_one_hot_like(arr, path):
    """Raise ``InputError`` naming the first sequence and position that no one-hot array has.

    Parameters
    ----------
    arr : ndarray of shape (N, L, C)
        Memory-mapped; read block by block.
    path : str
        For the message.
    """
    n, length, channels = arr.shape
    rows = max(1, BLOCK_VALUES // max(1, length * channels))
    for lo in range(0, n, rows):
        block = np.asarray(arr[lo:lo + rows], dtype=np.float32)
        problem = _first_problem(block)
        if problem is not None:
            j, p, what = problem
            raise InputError(f"{path}: sequence #{lo + j + 1} position {p + 1}: {what}")


def _first_problem(block):
    """``(row, position, what)`` of the first bad position of a (B, L, C) block, or None."""
    finite = np.isfinite(block)
    in_range = (block >= 0) & (block <= 1)
    sums = np.where(finite, block, 0).sum(axis=-1)
    bad = ~finite.all(axis=-1) | ~in_range.all(axis=-1) | (sums > 1 + SUM_TOLERANCE)
    if not bad.any():
        return None
    j, p = (int(i) for i in np.argwhere(bad)[0])
    values = block[j, p]
    if not finite[j, p].all():
        return j, p, "non-finite value"
    if not in_range[j, p].all():
        value = float(values[~in_range[j, p]][0])
        return j, p, (f"value {value:g} is not one-hot (expected values between 0 and 1, "
                      "e.g. not integer tokens)")
    return j, p, f"channels sum to {float(sums[j, p]):g}, not one-hot (at most 1 per position)"


def _load(path):
    """The array in ``path``, memory-mapped."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: cannot read as a .npy array ({err})") from None
