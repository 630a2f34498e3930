"""The sequence source every reader returns, and the registry that picks a reader for a file.

A :class:`SequenceSource` is a small, picklable description of ``N`` sequences of length ``L``
(paths and per-record metadata, never the one-hot arrays) that a Dask worker uses to read just
its own chunk with ``source.read(indices)``.

Each file format has a reader: a subclass of :class:`SequenceSource` registered with
:func:`register_reader`, with the classmethods ``can_open(path, genome)`` (by the file's name or,
for a name no reader claims, its first bytes) and ``open(path, ...)``. :func:`open_sequences`
asks the registered readers in order and opens the file with the first that accepts it.

Shapes, channels-last like Keras: ``N`` sequences in the source, ``B`` sequences read at once,
``L`` sequence length, ``C`` alphabet size.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fastism_dist.io.files import head_bytes, strip_compression_suffix
from fastism_dist.io.packing import pack, unpack

__all__ = ["SequenceSource", "SequenceWarning", "genomic_position", "register_reader", "readers"]

STRANDS = (".", "+", "-")
"""Strand letters, indexed by the strand codes a source stores."""

_READERS = []


class SequenceWarning(UserWarning):
    """Records skipped, dropped, padded or renamed while opening sequences."""


def register_reader(reader):
    """Class decorator: add a :class:`SequenceSource` subclass to the readers tried by
    :func:`open_sequences`, after those registered before it."""
    _READERS.append(reader)
    return reader


def readers():
    """The registered reader classes, in the order they are tried."""
    return tuple(_READERS)


def _claimed_suffixes():
    return tuple(suffix for reader in _READERS for suffix in reader.suffixes)


class SequenceSource:
    """N sequences of length L, read lazily by index.

    Cheap to pickle: it holds paths and small per-record metadata, never the one-hot arrays,
    so it can be sent to Dask workers, each of which reads only the records it is given.
    Safe to read from several threads at once. Attributes whose names start with ``_h_``
    (open files, locks) are not pickled; :meth:`_init_handles` recreates them.

    Attributes
    ----------
    path : str
        The input file.
    kind : str
        ``"fasta"``, ``"bed"``, ``"vcf"`` or ``"npy"``.
    length : int
        ``L``, the length of every sequence returned by :meth:`read`.
    alphabet : str
        Channel letters, ``C = len(alphabet)``.
    ids : list of str
        One per sequence: FASTA names; ``chrom:start-end(strand)`` of the window for BED
        (clipped to the chromosome);
        ``chrom:pos:ref>alt`` for VCF (``pos`` 1-based, as in the VCF); ``seq<i>`` for ``.npy``.
        Made unique with a ``#k`` suffix where the input repeats one (with a warning).
    genome : str or None
        The genome FASTA of a BED or VCF source.
    skipped : list of dict
        VCF records not turned into sequences: ``{"line", "record", "reason"}`` each.
    """

    kind = "?"
    suffixes = ()
    """File name endings (before any ``.gz``) this reader claims."""
    needs_genome = False
    """True for readers of genome windows, which need ``genome=`` and ``length=``."""

    def __init__(self, path, length, alphabet, ids):
        self.path = path
        self.length = int(length)
        self.alphabet = alphabet
        self.ids = unique_ids(ids, path)
        self.genome = None
        self.skipped = []
        self._coords = None
        self._init_handles()

    # --- choosing a reader -------------------------------------------------------------------

    @classmethod
    def can_open(cls, path, genome=None):
        """Whether this reader reads ``path``.

        Parameters
        ----------
        path : str
            An existing file.
        genome : str, optional
            The genome FASTA given with it, if any.

        Returns
        -------
        bool
            True if the name ends with one of :attr:`suffixes` (optionally followed by ``.gz``);
            for a name that no registered reader claims, whether :meth:`sniff` accepts the
            file's first bytes.
        """
        name = strip_compression_suffix(os.fspath(path))
        if name.endswith(cls.suffixes):
            return True
        if name.endswith(_claimed_suffixes()):
            return False
        return cls.sniff(head_bytes(path), genome)

    @classmethod
    def sniff(cls, head, genome):
        """Whether the file's first (decompressed) bytes ``head`` look like this format."""
        return False

    @classmethod
    def open(cls, path, *, genome, length, resize, skip_mismatches, alphabet):
        """Index ``path`` and return the source; see :func:`~fastism_dist.io.open_sequences`."""
        raise NotImplementedError

    # --- pickling -------------------------------------------------------------------------------

    def _init_handles(self):
        """Create the unpickled state (``_h_`` attributes); called at init and after unpickling."""

    def __getstate__(self):
        return {k: pack(v) for k, v in self.__dict__.items() if not k.startswith("_h_")}

    def __setstate__(self, state):
        self.__dict__.update({k: unpack(v) for k, v in state.items()})
        self._init_handles()

    # --- reading --------------------------------------------------------------------------------

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return (
            f"<{type(self).__name__} kind={self.kind!r} n={len(self)} length={self.length} "
            f"alphabet={self.alphabet!r} path={self.path!r}>"
        )

    @property
    def channels(self):
        """``C``, the number of letters in the alphabet."""
        return len(self.alphabet)

    def read(self, indices):
        """One-hot sequences, reading only the requested records.

        Parameters
        ----------
        indices : int, slice or array_like of int or bool
            Which sequences, in the order wanted (repeats allowed, negative indices count from
            the end). An int reads one sequence and still returns a batch of one.

        Returns
        -------
        ndarray of shape (B, L, C)
            float32 one-hot rows; all-zero rows for N, IUPAC codes and padding.
        """
        idx = self._indices(indices)
        if len(idx) == 0:
            return np.zeros((0, self.length, self.channels), dtype=np.float32)
        uniq, inverse = np.unique(idx, return_inverse=True)
        block = self._read_sorted(uniq)
        if len(uniq) == len(idx) and np.array_equal(uniq, idx):
            return block
        return block[inverse.reshape(-1)]

    def _indices(self, indices):
        """``indices`` as a 1-d int64 array of non-negative sequence indices."""
        n = len(self)
        if isinstance(indices, slice):
            return np.arange(n)[indices]
        idx = np.asarray(indices)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} sequences")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"sequence indices must be integers, got dtype {idx.dtype}")
        idx = idx.reshape(-1).astype(np.int64)
        if idx.min() < -n or idx.max() >= n:
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"sequence index {bad} out of range for {n} sequences in {self.path}")
        return np.where(idx < 0, idx + n, idx)

    def _read_sorted(self, idx):
        """The ``(B, L, C)`` float32 sequences of the sorted, distinct indices ``idx``."""
        raise NotImplementedError

    # --- metadata -------------------------------------------------------------------------------

    def coords(self):
        """Per-sequence genomic coordinates of the windows.

        Returns
        -------
        dict of str to ndarray of shape (N,), or None
            ``chrom`` (object str, ``""`` when unknown), ``start`` and ``end`` (int64, the 0-based
            half-open genomic interval the sequence's genome bases come from, ``-1`` when unknown),
            ``strand`` (``"+"``, ``"-"`` or ``"."``), and ``pad_left`` / ``pad_right`` (int64, the
            number of padded all-zero rows at the start and end of the sequence as returned by
            :meth:`read`, in sequence order). A window that runs off a chromosome end is clipped
            to it: ``end - start + pad_left + pad_right`` is the sequence length L. None for a
            source without coordinates.
        """
        if self._coords is None:
            return None
        names, code, start, strand, pad_left, pad_right = self._coords
        known = code > 0
        minus = strand == STRANDS.index("-")
        before = np.where(minus, pad_right, pad_left)  # padding in genome order
        after = np.where(minus, pad_left, pad_right)
        return {
            "chrom": np.array(names, dtype=object)[code],
            "start": np.where(known, start + before, -1).astype(np.int64),
            "end": np.where(known, start + self.length - after, -1).astype(np.int64),
            "strand": np.array(STRANDS, dtype=object)[strand],
            "pad_left": pad_left.astype(np.int64),
            "pad_right": pad_right.astype(np.int64),
        }

    def variants(self):
        """Per-sequence variant alleles.

        Returns
        -------
        dict of str to ndarray of shape (N,), or None
            ``variant_pos`` (int64, 0-based position of the variant's first REF base in the
            window, ``L // 2``), ``ref`` and ``alt`` (object str, upper case), ``vcf_id`` (the VCF
            ID column, ``"."`` when missing). None for a source without variants (all but VCF).
        """
        return None

    def _set_coords(self, chrom_names, chrom_code, start, strand, pad_left, pad_right):
        """Store the coordinates :meth:`coords` returns.

        Parameters
        ----------
        chrom_names : list of str
            The chromosomes.
        chrom_code : array_like of int, shape (N,)
            Index into ``chrom_names`` per sequence, -1 where unknown.
        start : array_like of int, shape (N,)
            0-based genomic start of each window.
        strand : array_like of int, shape (N,)
            Index into :data:`STRANDS`.
        pad_left, pad_right : array_like of int, shape (N,)
            All-zero rows at the start and end of each sequence as read.
        """
        self._coords = (
            [""] + list(chrom_names),
            np.asarray(chrom_code, dtype=np.int32) + 1,  # 0: unknown
            np.asarray(start, dtype=np.int64),
            np.asarray(strand, dtype=np.int8),
            np.asarray(pad_left, dtype=np.int32),
            np.asarray(pad_right, dtype=np.int32),
        )


def unique_ids(ids, path):
    """``ids`` as str, later copies of a repeated id renamed ``id#2``, ``id#3``, ... (warned)."""
    ids = [str(i) for i in ids]
    if len(set(ids)) == len(ids):
        return ids
    seen = {}
    out = []
    first = None
    for i in ids:
        k = seen.get(i, 0) + 1
        seen[i] = k
        if k > 1:
            first = first or i
            out.append(f"{i}#{k}")
        else:
            out.append(i)
    warnings.warn(
        f"{path}: sequence ids repeat (e.g. {first!r}); later copies are renamed with a #2, #3, ... suffix",
        SequenceWarning,
        stacklevel=5,
    )
    return out


def centre_fit(x, length):
    """Centre-crop or pad (with all-zero rows) ``x`` of shape (n, C) to (length, C).

    A pad of odd size puts the extra row on the right.
    """
    n = x.shape[0]
    if n == length:
        return x
    if n > length:
        off = (n - length) // 2
        return x[off : off + length]
    out = np.zeros((length,) + x.shape[1:], dtype=x.dtype)
    left = (length - n) // 2
    out[left : left + n] = x
    return out


def fit_offset(n, length):
    """Record position of window position 0 under :func:`centre_fit` (negative: left padding)."""
    return (n - length) // 2 if n >= length else -((length - n) // 2)


def genomic_position(coords, seq_index, pos):
    """Genomic coordinate of window position ``pos`` of sequence ``seq_index``, strand-aware.

    Parameters
    ----------
    coords : dict
        As returned by :meth:`SequenceSource.coords`.
    seq_index : int or array_like of int
        Sequence index (broadcast against ``pos``).
    pos : int or array_like of int
        0-based position in the sequence as read (after reverse complement for ``-`` strand).

    Returns
    -------
    int or ndarray of int64
        0-based genomic coordinate: ``start + i`` on ``+`` / ``.``, ``end - 1 - i`` on ``-``,
        where ``i = pos - pad_left`` counts genome bases; ``-1`` where the coordinates are
        unknown or the position is padding off a chromosome end.
    """
    seq_index = np.asarray(seq_index)
    start = np.asarray(coords["start"])[seq_index]
    end = np.asarray(coords["end"])[seq_index]
    left = np.asarray(coords.get("pad_left", np.zeros_like(coords["start"])))[seq_index]
    i = np.asarray(pos) - left
    minus = np.asarray(coords["strand"], dtype=object)[seq_index] == "-"
    out = np.where(minus, end - 1 - i, start + i).astype(np.int64)
    unknown = np.asarray(coords["chrom"], dtype=object)[seq_index] == ""
    out = np.where(unknown | (i < 0) | (i >= end - start), -1, out)
    return int(out) if out.ndim == 0 else out
