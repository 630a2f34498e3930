"""The input stage: sequences from FASTA, BED + genome, VCF + genome, or a one-hot ``.npy``.

``open_sequences(path, ...)`` indexes its input once and returns a :class:`SequenceSource`: a
small, picklable description (paths and per-record metadata, never the one-hot arrays) that a
Dask worker uses to read just its own chunk with ``source.read(indices)``.

Shapes, channels-last like Keras: ``N`` sequences in the source, ``B`` sequences read at once,
``L`` sequence length, ``C`` alphabet size.

Letters
-------
Letters of the alphabet map to their channel, in upper or lower case. ``N`` and the IUPAC
ambiguity codes ``R Y K M S W B D H V`` (those not in the alphabet) become all-zero rows, as do
positions padded in by ``resize`` or off a chromosome end. Spaces, tabs and line breaks inside a
FASTA record are ignored. Any other character is an :class:`~fastism_dist.errors.InputError`
naming the file, the record and the 1-based position.

Formats
-------
- FASTA (``.fa``, ``.fasta``, ``.fna``, ``.fas``, plain or gzipped): one sequence per record,
  named by the first word of its header. Record offsets are indexed at open (the letters are
  checked then too). A gzip file made of many small members (``bgzip`` output) is read by seeking
  to the member that holds a record; a gzip file with large members is decompressed once into a
  cache file (``$FASTISM_DIST_CACHE_DIR``, default ``<tmp>/fastism_dist_cache``; a worker that
  lacks it rebuilds it). A header such as ``chr1:100-200(+)`` (``bedtools getfasta`` output) whose
  span matches the record length gives the genomic coordinates.
- BED + genome FASTA (read with ``pyfaidx``): each interval centred and resized to ``length``;
  ``-`` strand windows are reverse-complemented; windows off a chromosome end padded with N.
- VCF / BCF + genome (parsed with ``pysam``): a ``length`` window of the reference centred on
  each variant (the variant's first REF base at position ``length // 2``), one sequence per ALT
  allele, REF checked against the genome, exact duplicates dropped, symbolic ALTs skipped.
- ``.npy``: a float or integer one-hot array of shape ``(N, L, C)``, memory-mapped.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
import shutil
import tempfile
import threading
import warnings

import numpy as np

from fastism_dist.errors import InputError

__all__ = [
    "ALPHABET",
    "IUPAC_ZERO",
    "SequenceSource",
    "SequenceWarning",
    "open_sequences",
    "one_hot",
    "decode",
    "reverse_complement",
    "genomic_position",
]

ALPHABET = "ACGT"
"""The default alphabet: channel ``c`` of a one-hot row is ``ALPHABET[c]``."""

IUPAC_ZERO = "NRYKMSWBDHV"
"""Letters read as all-zero rows (unless they are in the alphabet)."""

_COMPLEMENT = dict(zip("ACGTURYKMSWBDHVN", "TGCAAYRMKSWVHDBN"))
_WHITESPACE = b" \t\r\n"
_STRANDS = (".", "+", "-")
_FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
_BLOCK = 1 << 24  # bytes read at a time while indexing a FASTA
_MAX_MEMBER = 16 << 20  # gzip members larger than this are decompressed into a cache file
_CACHE_LOCK = threading.Lock()
_COORD_RE = re.compile(r"(?:^|::)([^:\s]+):(\d+)-(\d+)(?:\(([+\-.])\))?$")


class SequenceWarning(UserWarning):
    """Records skipped, dropped, padded or renamed while opening sequences."""


# ----------------------------------------------------------------------------------------------
# letters


@functools.lru_cache(maxsize=32)
def _tables(alphabet):
    """Byte -> code table (255: invalid, C: all-zero row) and the (C + 1, C) one-hot rows."""
    if not isinstance(alphabet, str) or not alphabet:
        raise InputError(f"alphabet must be a non-empty string of letters, got {alphabet!r}")
    letters = alphabet.upper()
    if not (letters.isascii() and letters.isalpha()) or len(set(letters)) != len(letters):
        raise InputError(f"alphabet must be distinct ASCII letters, got {alphabet!r}")
    if len(letters) > 254:
        raise InputError(f"alphabet has {len(letters)} letters; at most 254 are supported")
    c = len(letters)
    table = np.full(256, 255, dtype=np.uint8)
    for ch in IUPAC_ZERO:
        if ch not in letters:
            table[ord(ch)] = table[ord(ch.lower())] = c
    for i, ch in enumerate(letters):
        table[ord(ch)] = table[ord(ch.lower())] = i
    rows = np.zeros((c + 1, c), dtype=np.float32)
    rows[np.arange(c), np.arange(c)] = 1.0
    return table, rows


def _alphabet(alphabet):
    _tables(alphabet)
    return alphabet.upper()


def _codes(data, alphabet):
    """Codes of the bytes ``data`` and the 0-based index of the first invalid byte (or -1)."""
    table, _ = _tables(alphabet)
    codes = table[np.frombuffer(data, dtype=np.uint8)]
    bad = np.flatnonzero(codes == 255)
    return codes, (int(bad[0]) if bad.size else -1)


def _show(ch):
    return repr(chr(ch)) if isinstance(ch, int) else repr(ch)


def _bad_letter_text(ch, alphabet):
    return (
        f"invalid character {_show(ch)} (allowed: {alphabet} in any case, and N or the IUPAC "
        f"codes {IUPAC_ZERO[1:]}, which are read as all-zero rows)"
    )


def one_hot(seq, alphabet=ALPHABET):
    """One-hot encode a sequence.

    Parameters
    ----------
    seq : str
        The letters. Lower case is accepted; ``N`` and the IUPAC codes ``RYKMSWBDHV`` that are not
        in the alphabet give all-zero rows.
    alphabet : str, optional
        Channel letters, ``C = len(alphabet)``. Default is ``"ACGT"``.

    Returns
    -------
    ndarray of shape (L, C)
        float32, one row per letter.

    Raises
    ------
    InputError
        For any other character, naming its 1-based position.
    """
    if isinstance(seq, (bytes, bytearray)):
        data = bytes(seq)
    else:
        try:
            data = str(seq).encode("ascii")
        except UnicodeEncodeError as err:
            raise InputError(
                f"sequence position {err.start + 1}: {_bad_letter_text(str(seq)[err.start], _alphabet(alphabet))}"
            ) from None
    codes, bad = _codes(data, alphabet)
    if bad >= 0:
        raise InputError(f"sequence position {bad + 1}: {_bad_letter_text(data[bad], _alphabet(alphabet))}")
    return _tables(alphabet)[1][codes]


def decode(onehot, alphabet=ALPHABET):
    """Letters of a one-hot array: the letter of each row's largest channel, ``N`` for a zero row.

    Parameters
    ----------
    onehot : array_like of shape (L, C) or (B, L, C)
        One-hot rows.
    alphabet : str, optional
        Channel letters. Default is ``"ACGT"``.

    Returns
    -------
    str or list of str
        One string for a ``(L, C)`` input, a list of ``B`` strings for ``(B, L, C)``.
    """
    letters = _alphabet(alphabet)
    x = np.asarray(onehot)
    if x.ndim == 3:
        return [decode(row, letters) for row in x]
    if x.ndim != 2 or x.shape[1] != len(letters):
        raise InputError(f"decode expects shape (L, {len(letters)}) or (B, L, {len(letters)}), got {x.shape}")
    chars = np.array(list(letters) + ["N"])
    idx = np.where(np.any(x != 0, axis=1), np.argmax(x, axis=1), len(letters))
    return "".join(chars[idx].tolist())


@functools.lru_cache(maxsize=32)
def _complement_perm(alphabet):
    """Channel permutation taking a base to its complement, or None if the alphabet lacks one."""
    letters = _alphabet(alphabet)
    perm = []
    for ch in letters:
        if ch == "A":
            comp = "T" if "T" in letters else "U"
        else:
            comp = _COMPLEMENT.get(ch)
        if comp is None or comp not in letters:
            return None
        perm.append(letters.index(comp))
    return np.array(perm)


def reverse_complement(x, alphabet=ALPHABET):
    """Reverse complement of one-hot sequences.

    Parameters
    ----------
    x : ndarray of shape (..., L, C)
        One-hot rows; all-zero rows stay all-zero.
    alphabet : str, optional
        Channel letters; must be closed under complement (``ACGT`` in any order, or ``ACGU``).
        Default is ``"ACGT"``.

    Returns
    -------
    ndarray of shape (..., L, C)
        For ``ACGT`` this is ``x[..., ::-1, ::-1]``.
    """
    perm = _complement_perm(alphabet)
    if perm is None:
        raise InputError(f"alphabet {alphabet!r} has no complement for every letter; cannot reverse-complement")
    return np.asarray(x)[..., ::-1, :][..., perm]


def _fit(x, length):
    """Centre-crop or pad (with all-zero rows) ``x`` of shape (n, C) to (length, C)."""
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


def _fit_offset(n, length):
    """Record position of window position 0 under ``_fit`` (negative: padded on the left)."""
    return (n - length) // 2 if n >= length else -((length - n) // 2)


# ----------------------------------------------------------------------------------------------
# the source


class SequenceSource:
    """N sequences of length L, read lazily by index.

    Cheap to pickle: it holds paths and small per-record metadata, never the one-hot arrays,
    so it can be sent to Dask workers, each of which reads only the records it is given.
    Safe to read from several threads at once.

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
        One per sequence: FASTA names; ``chrom:start-end(strand)`` of the window for BED;
        ``chrom:pos:ref>alt`` for VCF (``pos`` 1-based, as in the VCF); ``seq<i>`` for ``.npy``.
        Made unique with a ``#k`` suffix where the input repeats one (with a warning).
    genome : str or None
        The genome FASTA of a BED or VCF source.
    skipped : list of dict
        VCF records not turned into sequences: ``{"line", "record", "reason"}`` each.
    """

    kind = "?"

    def __init__(self, path, length, alphabet, ids):
        self.path = path
        self.length = int(length)
        self.alphabet = alphabet
        self.ids = _unique_ids(ids, path)
        self.genome = None
        self.skipped = []
        n = len(self.ids)
        self._chrom_names = [""]
        self._chrom_code = np.zeros(n, dtype=np.int32)
        self._start = np.full(n, -1, dtype=np.int64)
        self._strand = np.zeros(n, dtype=np.int8)
        self._pad_left = np.zeros(n, dtype=np.int32)
        self._pad_right = np.zeros(n, dtype=np.int32)
        self._init_handles()

    # pickling: drop open handles and locks, recreate them on the other side
    def _init_handles(self):
        self._h_lock = threading.Lock()
        self._h_genome = None

    def __getstate__(self):
        return {k: _pack(v) for k, v in self.__dict__.items() if not k.startswith("_h_")}

    def __setstate__(self, state):
        self.__dict__.update({k: _unpack(v) for k, v in state.items()})
        self._init_handles()

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
        out_shape = (len(idx), self.length, self.channels)
        if len(idx) == 0:
            return np.zeros(out_shape, dtype=np.float32)
        uniq, inverse = np.unique(idx, return_inverse=True)
        block = self._read_sorted(uniq)
        if len(uniq) == len(idx) and np.array_equal(uniq, idx):
            return block
        return block[inverse.reshape(-1)]

    def _indices(self, indices):
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
        raise NotImplementedError

    def coords(self):
        """Per-sequence genomic coordinates of the windows.

        Returns
        -------
        dict of str to ndarray of shape (N,)
            ``chrom`` (object str, ``""`` when unknown), ``start`` and ``end`` (int64, the 0-based
            half-open genomic interval of the window, ``-1`` when unknown; a window running off a
            chromosome end keeps its nominal coordinates, which may lie outside the chromosome),
            ``strand`` (``"+"``, ``"-"`` or ``"."``), and ``pad_left`` / ``pad_right`` (int64, the
            number of padded all-zero rows at the start and end of the sequence as returned by
            :meth:`read`, in sequence order).
        """
        known = self._chrom_code > 0
        chrom = np.array(self._chrom_names, dtype=object)[self._chrom_code]
        return {
            "chrom": chrom,
            "start": np.where(known, self._start, -1).astype(np.int64),
            "end": np.where(known, self._start + self.length, -1).astype(np.int64),
            "strand": np.array(_STRANDS, dtype=object)[self._strand],
            "pad_left": self._pad_left.astype(np.int64),
            "pad_right": self._pad_right.astype(np.int64),
        }

    def variants(self):
        """Per-sequence variant alleles (VCF sources only).

        Returns
        -------
        dict of str to ndarray of shape (N,), or None
            ``variant_pos`` (int64, 0-based position of the variant's first REF base in the
            window, ``L // 2``), ``ref`` and ``alt`` (object str, upper case), ``vcf_id`` (the VCF
            ID column, ``"."`` when missing). None for other kinds.
        """
        return None

    def _set_coords(self, chrom_names, chrom_code, start, strand, pad_left, pad_right):
        self._chrom_names = [""] + list(chrom_names)
        self._chrom_code = np.asarray(chrom_code, dtype=np.int32) + 1  # 0: unknown
        self._start = np.asarray(start, dtype=np.int64)
        self._strand = np.asarray(strand, dtype=np.int8)
        self._pad_left = np.asarray(pad_left, dtype=np.int32)
        self._pad_right = np.asarray(pad_right, dtype=np.int32)


class _Packed:
    """A compressed per-record array or id list inside a pickled source."""

    __slots__ = ("kind", "dtype", "shape", "data")

    def __init__(self, kind, dtype, shape, data):
        self.kind, self.dtype, self.shape, self.data = kind, dtype, shape, data

    def __getstate__(self):
        return (self.kind, self.dtype, self.shape, self.data)

    def __setstate__(self, state):
        self.kind, self.dtype, self.shape, self.data = state


def _pack(value):
    """Shrink large per-record metadata for pickling (constant arrays, deltas, zlib)."""
    import zlib

    if isinstance(value, np.ndarray) and value.dtype.kind in "iub" and value.size > 256:
        if (value == value.flat[0]).all():
            return _Packed("const", value.dtype.str, value.shape, value.flat[0].item())
        delta = np.diff(value.reshape(-1).astype(np.int64), prepend=0)
        return _Packed("delta", value.dtype.str, value.shape, zlib.compress(delta.tobytes(), 1))
    if isinstance(value, list) and len(value) > 256 and all(type(v) is str and "\n" not in v for v in value):
        return _Packed("lines", None, None, zlib.compress("\n".join(value).encode("utf-8"), 1))
    return value


def _unpack(value):
    import zlib

    if not isinstance(value, _Packed):
        return value
    if value.kind == "const":
        return np.full(value.shape, value.data, dtype=value.dtype)
    if value.kind == "delta":
        delta = np.frombuffer(zlib.decompress(value.data), dtype=np.int64)
        return np.cumsum(delta).astype(value.dtype).reshape(value.shape)
    return zlib.decompress(value.data).decode("utf-8").split("\n")


def _unique_ids(ids, path):
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
        stacklevel=3,
    )
    return out


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
        0-based genomic coordinate: ``start + pos`` on ``+`` / ``.``, ``end - 1 - pos`` on ``-``;
        ``-1`` where the coordinates are unknown or the position is padding off a chromosome end.
    """
    seq_index = np.asarray(seq_index)
    pos = np.asarray(pos)
    start = np.asarray(coords["start"])[seq_index]
    end = np.asarray(coords["end"])[seq_index]
    minus = np.asarray(coords["strand"], dtype=object)[seq_index] == "-"
    out = np.where(minus, end - 1 - pos, start + pos).astype(np.int64)
    unknown = np.asarray(coords["chrom"], dtype=object)[seq_index] == ""
    if "pad_left" in coords:
        length = end - start
        left = np.asarray(coords["pad_left"])[seq_index]
        right = np.asarray(coords["pad_right"])[seq_index]
        unknown = unknown | (pos < left) | (pos >= length - right)
    out = np.where(unknown, -1, out)
    return int(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------------------------
# opening


def open_sequences(path, genome=None, length=None, resize=False, skip_mismatches=False, alphabet=ALPHABET):
    """Index an input file of sequences for lazy reading.

    Parameters
    ----------
    path : str or path-like
        FASTA (``.fa``, ``.fasta``, ``.fna``, ``.fas``, optionally ``.gz``), BED (``.bed[.gz]``),
        VCF (``.vcf[.gz]``, ``.bcf``) or one-hot ``.npy`` of shape ``(N, L, C)``. Other names are
        recognised by their first bytes.
    genome : str or path-like, optional
        Genome FASTA (with or without a ``.fai`` index), required for BED and VCF.
        Default is None.
    length : int, optional
        Sequence length ``L``. Required for BED and VCF (the window size). For FASTA and ``.npy``
        the default None means "all records must have the same length"; a record of another
        length is an error unless ``resize``.
    resize : bool, optional
        Centre-crop longer FASTA / ``.npy`` records to ``length`` and pad shorter ones with
        all-zero rows (more on the right for an odd difference). Default is False.
    skip_mismatches : bool, optional
        For VCF: skip (with a warning, listed in ``source.skipped``) records whose REF does not
        match the genome, instead of raising. Default is False.
    alphabet : str, optional
        Channel letters. Default is ``"ACGT"``.

    Returns
    -------
    SequenceSource

    Raises
    ------
    InputError
        Naming the file, record (or line) and position of the first problem.
    """
    path = os.fspath(path)
    alphabet = _alphabet(alphabet)
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise InputError(f"length must be a positive integer, got {length!r}")
        length = int(length)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    kind = _detect_kind(path)
    if kind in ("bed", "vcf"):
        if genome is None:
            raise InputError(f"{path}: a {kind.upper()} input needs genome= (a genome FASTA)")
        if length is None:
            raise InputError(f"{path}: a {kind.upper()} input needs length= (the window size)")
        genome = os.fspath(genome)
        if not os.path.isfile(genome):
            raise InputError(f"{genome}: no such genome FASTA")
        if kind == "bed":
            return _open_bed(path, genome, length, alphabet)
        return _open_vcf(path, genome, length, skip_mismatches, alphabet)
    if genome is not None:
        warnings.warn(f"{path}: genome= is only used for BED and VCF inputs; ignored", SequenceWarning, stacklevel=2)
    if kind == "npy":
        return NpySource(path, length, resize, alphabet)
    return FastaSource(path, length, resize, alphabet)


def _is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _is_bgzf(path):
    """True for a gzip file in the BGZF layout (``bgzip`` output): an extra field ``BC``."""
    with open(path, "rb") as f:
        head = f.read(18)
    return len(head) == 18 and bool(head[3] & 4) and head[12:14] == b"BC"


def _open_text(path):
    """Text lines of a plain or gzipped file."""
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline=None)
    return open(path, encoding="utf-8", errors="replace", newline=None)


def _detect_kind(path):
    name = path.lower()
    for suffix in (".gz", ".bgz", ".bgzf"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith(_FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(".bed"):
        return "bed"
    if name.endswith((".vcf", ".bcf")):
        return "vcf"
    if name.endswith(".npy"):
        return "npy"
    # unknown name: look at the first bytes
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as f:
            try:
                head = f.read(16)
            except (OSError, EOFError):
                head = b""
    if head.startswith(b">"):
        return "fasta"
    if head.startswith(b"##fileformat=VCF") or head.startswith(b"BCF"):
        return "vcf"
    raise InputError(
        f"{path}: unknown input format; expected FASTA (.fa/.fasta/.fna/.fas[.gz]), BED (.bed) "
        f"or VCF (.vcf[.gz]/.bcf) with a genome, or one-hot .npy"
    )


# ----------------------------------------------------------------------------------------------
# FASTA


def _file_blocks(f):
    while True:
        block = f.read(_BLOCK)
        if not block:
            return
        yield block


def _gzip_blocks(path, raw, members):
    """Decompressed blocks of a (multi-member) gzip file; appends ``(compressed, uncompressed)``
    start offsets of each member to ``members``."""
    import zlib

    comp = 0  # compressed offset of buf[0]
    uoff = 0
    buf = b""
    d = None
    while True:
        if not buf:
            buf = raw.read(1 << 20)
            if not buf:
                break
        if d is None:
            if buf[:1] == b"\x00":  # zero padding after the last member
                rest = buf + raw.read()
                if rest.strip(b"\x00"):
                    raise InputError(f"{path}: unexpected data after the end of the gzip stream")
                break
            if len(buf) >= 2 and buf[:2] != b"\x1f\x8b":
                raise InputError(f"{path}: unexpected data after the end of the gzip stream")
            d = zlib.decompressobj(31)
            members.append((comp, uoff))
        try:
            out = d.decompress(buf)
        except zlib.error as err:
            raise InputError(f"{path}: corrupt gzip data ({err})") from None
        rest = d.unused_data if d.eof else d.unconsumed_tail
        comp += len(buf) - len(rest)
        buf = rest
        if out:
            uoff += len(out)
            yield out
        if d.eof:
            d = None
    if d is not None:
        raise InputError(f"{path}: truncated gzip file")


class _FastaIndex:
    """Record names, byte spans and lengths from one pass over an (uncompressed) FASTA stream."""

    _HEADER = re.compile(rb"^>([^\n]*)(?:\n|\Z)", re.MULTILINE)

    def __init__(self, path, alphabet):
        self.path = path
        self.alphabet = alphabet
        table, _ = _tables(alphabet)
        ok = bytes(b for b in range(256) if table[b] != 255) + _WHITESPACE
        self._bad = re.compile(b"[^" + re.escape(ok) + b"]")
        self.names, self.starts, self.ends, self.lengths = [], [], [], []
        self.total = 0

    def scan(self, blocks):
        carry = b""
        base = 0  # absolute offset of work[0]
        eof = False
        while not eof:
            block = next(blocks, b"")
            eof = not block
            buf = carry + block
            if not eof:
                cut = buf.rfind(b"\n") + 1
                if cut == 0:
                    carry = buf
                    continue
                work, carry = buf[:cut], buf[cut:]
            else:
                work, carry = buf, b""
            pos = 0
            for m in self._HEADER.finditer(work):
                self._sequence(work[pos : m.start()])
                if self.names:
                    self.ends.append(base + m.start())
                words = m.group(1).split()
                self.names.append(words[0].decode("utf-8", "replace") if words else "")
                self.starts.append(base + m.end())
                self.lengths.append(0)
                pos = m.end()
            self._sequence(work[pos:])
            base += len(work)
        if self.names:
            self.ends.append(base)
        self.total = base

    def _sequence(self, part):
        if not part:
            return
        if not self.names:
            if part.strip():
                raise InputError(f"{self.path}: not a FASTA file (text before the first '>' header)")
            return
        m = self._bad.search(part)
        if m is not None:
            before = part[: m.start()].translate(None, _WHITESPACE)
            i = len(self.names) - 1
            raise InputError(
                f"{self.path}: record {self.names[i]!r} (#{i + 1}) position "
                f"{self.lengths[i] + len(before) + 1}: {_bad_letter_text(part[m.start()], self.alphabet)}"
            )
        self.lengths[-1] += len(part) - sum(part.count(w) for w in (b"\n", b"\r", b" ", b"\t"))


class FastaSource(SequenceSource):
    """Sequences from a plain or gzipped FASTA file; see :func:`open_sequences`."""

    kind = "fasta"

    def __init__(self, path, length, resize, alphabet):
        index = _FastaIndex(path, alphabet)
        members = []
        gz = _is_gzip(path)
        with open(path, "rb") as raw:
            index.scan(_gzip_blocks(path, raw, members) if gz else _file_blocks(raw))
        if not index.names:
            raise InputError(f"{path}: holds no sequences")
        lengths = np.array(index.lengths, dtype=np.int64)
        for i, n in enumerate(lengths):
            if n == 0:
                raise InputError(f"{path}: record {index.names[i]!r} (#{i + 1}) is empty")
        if length is None:
            bad = np.flatnonzero(lengths != lengths[0])
            if bad.size and not resize:
                i = int(bad[0])
                raise InputError(
                    f"{path}: record {index.names[i]!r} (#{i + 1}) has length {lengths[i]} but record "
                    f"{index.names[0]!r} has length {lengths[0]}; sequences must all have the same length "
                    f"(or give length= with resize=True to centre-crop / pad them)"
                )
            if bad.size:
                raise InputError(f"{path}: records have different lengths; resize=True needs length=")
            length = int(lengths[0])
        elif not resize:
            bad = np.flatnonzero(lengths != length)
            if bad.size:
                i = int(bad[0])
                raise InputError(
                    f"{path}: record {index.names[i]!r} (#{i + 1}) has length {lengths[i]}, expected "
                    f"{length} (resize=True centre-crops or pads with N)"
                )
        super().__init__(path, length, alphabet, index.names)
        self._size = os.path.getsize(path)
        self._starts = np.array(index.starts, dtype=np.int64)
        self._spans = np.array(index.ends, dtype=np.int64) - self._starts
        self._lengths = lengths
        self._total = index.total
        self._mode = "plain"
        self._member_comp = self._member_skip = None
        self._cache = None
        if gz:
            mu = np.array([u for _, u in members] + [index.total], dtype=np.int64)
            if np.diff(mu).max() <= _MAX_MEMBER:
                self._mode = "gzip"
                mc = np.array([c for c, _ in members], dtype=np.int64)
                k = np.searchsorted(mu[:-1], self._starts, side="right") - 1
                self._member_comp = mc[k]
                self._member_skip = self._starts - mu[k]
            else:
                self._mode = "gzip-cache"
                st = os.stat(path)
                key = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
                self._cache = os.path.join(_cache_dir(), hashlib.sha256(key).hexdigest()[:24] + ".fa")
                self._ensure_cache()
        self._parse_header_coords(index.names)

    def _parse_header_coords(self, names):
        chroms, code, start, strand, pad_l, pad_r = {}, [], [], [], [], []
        for name, n in zip(names, self._lengths):
            off = _fit_offset(int(n), self.length)
            left = max(0, -off)
            right = max(0, self.length - left - int(n))
            pad_l.append(left)
            pad_r.append(right)
            m = _COORD_RE.search(name)
            if m is None or int(m.group(3)) - int(m.group(2)) != n:
                code.append(-1)
                start.append(-1)
                strand.append(0)
                continue
            s, e, st = int(m.group(2)), int(m.group(3)), m.group(4) or "."
            code.append(chroms.setdefault(m.group(1), len(chroms)))
            start.append(e - off - self.length if st == "-" else s + off)
            strand.append(_STRANDS.index(st))
        self._set_coords(list(chroms), code, start, strand, pad_l, pad_r)

    def _ensure_cache(self):
        if os.path.exists(self._cache) and os.path.getsize(self._cache) == self._total:
            return
        with _CACHE_LOCK:
            if os.path.exists(self._cache) and os.path.getsize(self._cache) == self._total:
                return
            tmp = f"{self._cache}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with gzip.open(self.path, "rb") as src, open(tmp, "wb") as dst:
                    while True:
                        block = src.read(_BLOCK)
                        if not block:
                            break
                        dst.write(block)
                os.replace(tmp, self._cache)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)

    def _runs(self, idx):
        """Split sorted indices into runs of consecutive records."""
        cuts = np.flatnonzero(np.diff(idx) != 1) + 1
        return np.split(idx, cuts)

    def _read_bytes(self, idx):
        """Yield (record index, raw bytes of its sequence lines) for sorted indices."""
        if os.path.getsize(self.path) != self._size:
            raise InputError(f"{self.path}: the file changed since it was opened")
        if self._mode == "gzip":
            with open(self.path, "rb") as raw:
                for run in self._runs(idx):
                    i0, i1 = int(run[0]), int(run[-1])
                    raw.seek(int(self._member_comp[i0]))
                    with gzip.GzipFile(fileobj=raw, mode="rb") as g:
                        g.read(int(self._member_skip[i0]))
                        data = g.read(int(self._starts[i1] + self._spans[i1] - self._starts[i0]))
                    yield from self._split(run, data)
            return
        target = self.path
        if self._mode == "gzip-cache":
            self._ensure_cache()
            target = self._cache
        with open(target, "rb") as f:
            for run in self._runs(idx):
                i0, i1 = int(run[0]), int(run[-1])
                f.seek(int(self._starts[i0]))
                data = f.read(int(self._starts[i1] + self._spans[i1] - self._starts[i0]))
                yield from self._split(run, data)

    def _split(self, run, data):
        base = self._starts[run[0]]
        for i in run:
            s = int(self._starts[i] - base)
            yield int(i), data[s : s + int(self._spans[i])]

    def _read_sorted(self, idx):
        out = np.empty((len(idx), self.length, self.channels), dtype=np.float32)
        rows = _tables(self.alphabet)[1]
        for j, (i, data) in enumerate(self._read_bytes(idx)):
            letters = data.translate(None, _WHITESPACE)
            if len(letters) != self._lengths[i]:
                raise InputError(
                    f"{self.path}: record {self.ids[i]!r} (#{i + 1}) changed since the file was opened"
                )
            codes, bad = _codes(letters, self.alphabet)
            if bad >= 0:
                raise InputError(
                    f"{self.path}: record {self.ids[i]!r} (#{i + 1}) position {bad + 1}: "
                    f"{_bad_letter_text(letters[bad], self.alphabet)}"
                )
            out[j] = _fit(rows[codes], self.length)
        return out


def _cache_dir():
    d = os.environ.get("FASTISM_DIST_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "fastism_dist_cache")
    os.makedirs(d, exist_ok=True)
    return d


# ----------------------------------------------------------------------------------------------
# .npy


class NpySource(SequenceSource):
    """One-hot sequences from a ``.npy`` array of shape (N, L, C), memory-mapped."""

    kind = "npy"

    def __init__(self, path, length, resize, alphabet):
        arr = self._load(path)
        c = len(alphabet)
        if arr.ndim != 3 or arr.shape[2] != c:
            raise InputError(f"{path}: expected a one-hot array of shape (N, L, {c}), got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"{path}: expected a numeric one-hot array, got dtype {arr.dtype}")
        if arr.shape[0] == 0:
            raise InputError(f"{path}: holds no sequences")
        if arr.shape[1] == 0:
            raise InputError(f"{path}: sequences have length 0")
        n0 = int(arr.shape[1])
        if length is None:
            length = n0
        elif length != n0 and not resize:
            raise InputError(
                f"{path}: sequences have length {n0}, expected {length} (resize=True centre-crops or pads with N)"
            )
        super().__init__(path, length, alphabet, [f"seq{i}" for i in range(arr.shape[0])])
        self._shape = tuple(int(s) for s in arr.shape)
        off = _fit_offset(n0, length)
        left = max(0, -off)
        n = len(self)
        self._set_coords([], np.full(n, -1), np.full(n, -1), np.zeros(n), np.full(n, left),
                         np.full(n, max(0, length - left - n0)))

    @staticmethod
    def _load(path):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: cannot read as a .npy array ({err})") from None

    def _read_sorted(self, idx):
        arr = self._load(self.path)
        if tuple(arr.shape) != self._shape:
            raise InputError(f"{self.path}: the file changed since it was opened (shape {arr.shape})")
        x = np.asarray(arr[idx], dtype=np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            j, p, _ = np.argwhere(~finite)[0]
            raise InputError(f"{self.path}: sequence #{int(idx[j]) + 1} position {p + 1}: non-finite value")
        if x.shape[1] != self.length:
            x = np.stack([_fit(row, self.length) for row in x])
        return x


# ----------------------------------------------------------------------------------------------
# genome windows (BED, VCF)


def _faidx(genome, indexname=None):
    """A ``pyfaidx.Faidx`` of the genome; builds the ``.fai`` in the cache directory if the
    genome's own directory is not writable."""
    import pyfaidx

    def make(name):
        return pyfaidx.Faidx(genome, indexname=name, as_raw=True)

    try:
        try:
            return make(indexname)
        except OSError as err:  # pyfaidx reports an unwritable .fai folder as a plain IOError
            if indexname is not None or not (isinstance(err, PermissionError) or "writable" in str(err)):
                raise
            key = hashlib.sha256(os.path.abspath(genome).encode()).hexdigest()[:24]
            return make(os.path.join(_cache_dir(), key + ".fai"))
    except InputError:
        raise
    except Exception as err:  # pyfaidx raises many kinds for bad genomes
        msg = " ".join(str(err).split())
        raise InputError(f"{genome}: cannot read the genome FASTA ({type(err).__name__}: {msg})") from None


class GenomeWindowSource(SequenceSource):
    """Windows of a genome FASTA (from a BED or VCF); see :func:`open_sequences`."""

    def __init__(self, kind, path, genome, length, alphabet, ids, fa):
        self.kind = kind
        super().__init__(path, length, alphabet, ids)
        self.genome = genome
        self._genome_index = fa.indexname
        self._variant = None

    def _locate(self, fa, chrom_names, code, start, strand):
        """Fill coordinates; padding from the chromosome lengths."""
        clen = np.array([fa.index[c].rlen for c in chrom_names], dtype=np.int64)[code]
        start = np.asarray(start, dtype=np.int64)
        before = np.clip(-start, 0, self.length)
        after = np.clip(start + self.length - clen, 0, self.length)
        strand = np.asarray(strand, dtype=np.int8)
        minus = strand == 2
        self._set_coords(chrom_names, code, start, strand, np.where(minus, after, before),
                         np.where(minus, before, after))
        padded = np.flatnonzero((before > 0) | (after > 0))
        if padded.size:
            warnings.warn(
                f"{self.path}: {padded.size} window(s) run off a chromosome end and are padded with "
                f"N (all-zero) rows, e.g. {self.ids[padded[0]]!r}; see coords()['pad_left'/'pad_right']",
                SequenceWarning,
                stacklevel=4,
            )
        if minus.any() and _complement_perm(self.alphabet) is None:
            raise InputError(f"{self.path}: '-' strand windows need an alphabet with complements, got {self.alphabet!r}")

    def _fa(self):
        with self._h_lock:
            if self._h_genome is None:
                if not os.path.isfile(self.genome):
                    raise InputError(f"{self.genome}: no such genome FASTA")
                self._h_genome = _faidx(self.genome, self._genome_index)
            return self._h_genome

    def _read_sorted(self, idx):
        fa = self._fa()
        length = self.length
        out = np.zeros((len(idx), length, self.channels), dtype=np.float32)
        rows = _tables(self.alphabet)[1]
        for j, i in enumerate(idx):
            chrom = self._chrom_names[self._chrom_code[i]]
            ws = int(self._start[i])
            clen = fa.index[chrom].rlen
            s, e = max(ws, 0), min(ws + length, clen)
            if e > s:
                data = fa.fetch(chrom, s + 1, e).encode("ascii", "replace")
                codes, bad = _codes(data, self.alphabet)
                if bad >= 0:
                    raise InputError(
                        f"{self.genome}: {chrom} position {s + bad + 1} (window of sequence {self.ids[i]!r}): "
                        f"{_bad_letter_text(data[bad], self.alphabet)}"
                    )
                out[j, s - ws : e - ws] = rows[codes]
            if self._strand[i] == 2:
                out[j] = reverse_complement(out[j], self.alphabet)
        return out

    def variants(self):
        if self._variant is None:
            return None
        pos, ref, alt, vid = self._variant
        return {
            "variant_pos": np.full(len(self), pos, dtype=np.int64),
            "ref": np.array(ref, dtype=object),
            "alt": np.array(alt, dtype=object),
            "vcf_id": np.array(vid, dtype=object),
        }


def _open_bed(path, genome, length, alphabet):
    fa = _faidx(genome)
    chroms, code, start, strand, ids = {}, [], [], [], []
    with _open_text(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            where = f"{path}: line {ln}"
            if len(cols) < 3:
                raise InputError(f"{where}: expected at least 3 columns (chrom, start, end), got {len(cols)}")
            chrom = cols[0]
            try:
                s, e = int(cols[1]), int(cols[2])
            except ValueError:
                raise InputError(f"{where}: start and end must be integers, got {cols[1]!r} and {cols[2]!r}") from None
            if s < 0 or e < s:
                raise InputError(f"{where}: bad interval {s}-{e} (need 0 <= start <= end)")
            st = cols[5].strip() if len(cols) > 5 else "."
            if st not in _STRANDS:
                raise InputError(f"{where}: strand must be '+', '-' or '.', got {st!r}")
            if chrom not in fa.index:
                raise InputError(f"{where}: chromosome {chrom!r} is not in the genome {genome}")
            if e > fa.index[chrom].rlen:
                raise InputError(f"{where}: interval {chrom}:{s}-{e} ends past the chromosome end ({fa.index[chrom].rlen})")
            ws = (s + e) // 2 - length // 2
            code.append(chroms.setdefault(chrom, len(chroms)))
            start.append(ws)
            strand.append(_STRANDS.index(st))
            ids.append(f"{chrom}:{ws}-{ws + length}({st})")
    if not ids:
        raise InputError(f"{path}: holds no sequences")
    src = GenomeWindowSource("bed", path, genome, length, alphabet, ids, fa)
    src._locate(fa, list(chroms), code, start, strand)
    return src


def _vcf_header_lines(path):
    """Number of header lines of a text VCF (None for BCF)."""
    with open(path, "rb") as f:
        head = f.read(3)
    if head == b"BCF":
        return None
    n = 0
    try:
        with _open_text(path) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                n += 1
    except (OSError, EOFError):
        return None
    return n


_ALLELE_RE = re.compile(r"^[ACGTN]+$")


def _open_vcf(path, genome, length, skip_mismatches, alphabet):
    import pysam

    fa = _faidx(genome)
    header = _vcf_header_lines(path)
    chroms, code, ids, refs, alts, vids, starts = {}, [], [], [], [], [], []
    skipped = []
    seen = set()
    counts = {"symbolic": 0, "duplicate": 0, "mismatch": 0}
    first = {}
    verbosity = pysam.set_verbosity(0)
    plain = None
    try:
        target = path
        if _is_gzip(path) and not _is_bgzf(path):
            # htslib reads only bgzip-compressed VCF; the file is parsed once here, so a temporary
            # uncompressed copy is enough
            fd, plain = tempfile.mkstemp(suffix=".vcf", dir=_cache_dir())
            with os.fdopen(fd, "wb") as dst, gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, dst, _BLOCK)
            target = plain
        try:
            vf = pysam.VariantFile(target)
        except (ValueError, OSError, NotImplementedError) as err:
            raise InputError(f"{path}: cannot read as VCF/BCF ({' '.join(str(err).split())})") from None
        with vf:
            k = 0
            it = iter(vf)
            while True:
                where = f"{path}: line {header + k + 1}" if header is not None else f"{path}: record #{k + 1}"
                try:
                    rec = next(it)
                except StopIteration:
                    break
                except (ValueError, OSError) as err:
                    raise InputError(f"{where}: cannot parse the VCF record ({' '.join(str(err).split())})") from None
                k += 1
                line = header + k if header is not None else None
                chrom, pos = rec.chrom, int(rec.pos)
                ref = (rec.ref or "").upper()
                if chrom not in fa.index:
                    raise InputError(f"{where}: chromosome {chrom!r} is not in the genome {genome}")
                found = fa.fetch(chrom, pos, pos + len(ref) - 1).upper() if ref else ""
                vid = rec.id or "."

                def skip(reason, what, rid):
                    counts[what] += 1
                    first.setdefault(what, f"line {line}: {rid}" if line else rid)
                    skipped.append({"line": line, "record": rid, "reason": reason})

                for alt in rec.alts or (".",):
                    alt_u = alt.upper()
                    rid = f"{chrom}:{pos}:{ref}>{alt_u}"
                    if not _ALLELE_RE.match(alt_u) or not _ALLELE_RE.match(ref or "-"):
                        skip(f"symbolic, structural or non-ACGTN allele ({ref!r} > {alt!r})", "symbolic", rid)
                        continue
                    if found != ref:
                        if not skip_mismatches:
                            raise InputError(
                                f"{where}: record {rid}: REF {ref!r} does not match the genome {genome} "
                                f"({found!r} at {chrom}:{pos}); skip_mismatches=True skips such records"
                            )
                        skip(f"REF {ref!r} does not match the genome ({found!r})", "mismatch", rid)
                        continue
                    key = (chrom, pos, ref, alt_u)
                    if key in seen:
                        skip("exact duplicate of an earlier record", "duplicate", rid)
                        continue
                    seen.add(key)
                    code.append(chroms.setdefault(chrom, len(chroms)))
                    ids.append(rid)
                    refs.append(ref)
                    alts.append(alt_u)
                    vids.append(vid)
                    starts.append(pos - 1 - length // 2)  # the variant sits at window position length // 2
    finally:
        pysam.set_verbosity(verbosity)
        if plain is not None:
            os.remove(plain)
    texts = {
        "symbolic": "skipped {n} symbolic, structural, missing or non-ACGTN allele(s)",
        "mismatch": "skipped {n} record(s) whose REF does not match the genome",
        "duplicate": "dropped {n} exact duplicate record(s)",
    }
    for what, text in texts.items():
        if counts[what]:
            warnings.warn(
                f"{path}: {text.format(n=counts[what])} (first: {first[what]}); see source.skipped",
                SequenceWarning,
                stacklevel=3,
            )
    if not ids:
        extra = f" ({len(skipped)} skipped)" if skipped else ""
        raise InputError(f"{path}: holds no sequences{extra}")
    src = GenomeWindowSource("vcf", path, genome, length, alphabet, ids, fa)
    src.skipped = skipped
    src._variant = (length // 2, refs, alts, vids)
    src._locate(fa, list(chroms), code, starts, np.ones(len(ids), dtype=np.int8))
    return src
