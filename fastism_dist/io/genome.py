"""Random access to FASTA files with pysam (htslib ``faidx``), and windows of a genome.

:class:`IndexedFasta` reads a plain or ``bgzip``-compressed FASTA by name and position through
its ``.fai`` (and, for bgzip, ``.gzi``) index, building a missing or outdated index first: next to
the file where wanted and possible, otherwise in the cache folder. :class:`GenomeWindowSource`
is the base of the BED and VCF readers: sequences that are windows of a genome FASTA.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import numpy as np

from fastism_dist.errors import InputError
from fastism_dist.io.alphabet import (bad_letter_text, complement_permutation, letter_codes, one_hot_rows,
                                      reverse_complement)
from fastism_dist.io.files import atomic_output, cache_path, compression, is_fresh, require_file
from fastism_dist.io.source import SequenceSource, SequenceWarning

_INDEX_LOCK = threading.Lock()


def build_index(fasta, fai, gzi=None):
    """Write the htslib index of a FASTA file; False if htslib cannot index it.

    Parameters
    ----------
    fasta : str
        A plain or bgzip-compressed FASTA file.
    fai : str
        Where to write the ``.fai`` index.
    gzi : str, optional
        Where to write the ``.gzi`` index of a bgzip file.

    Returns
    -------
    bool
        True once both files are written; each appears complete or not at all.
    """
    import pysam

    args = ["--fai-idx", None] + (["--gzi-idx", None] if gzi else [])
    verbosity = pysam.set_verbosity(0)  # htslib would print its own error lines to stderr
    try:
        with contextlib.ExitStack() as stack:
            args[1] = stack.enter_context(atomic_output(fai))
            if gzi:
                args[3] = stack.enter_context(atomic_output(gzi))
            try:
                pysam.faidx(fasta, *args)
            except pysam.utils.SamtoolsError:
                raise _NotIndexable from None
    except _NotIndexable:
        return False
    finally:
        pysam.set_verbosity(verbosity)
    return True


class _NotIndexable(Exception):
    """htslib refused to index a FASTA file (it logs the reason, silenced here)."""


def index_fasta(path, beside, what="FASTA file"):
    """An :class:`IndexedFasta` of ``path``, building its index if needed.

    Parameters
    ----------
    path : str
        A plain or bgzip-compressed FASTA file.
    beside : bool
        Build a missing index next to the file (as ``samtools faidx`` does) if its folder is
        writable; otherwise, and when False, in the cache folder.
    what : str, optional
        What the file is, for error messages.

    Returns
    -------
    IndexedFasta or None
        None if htslib cannot index the file (see :func:`build_index`).
    """
    bgzf = compression(path) == "bgzf"
    own = (path + ".fai", path + ".gzi" if bgzf else None)
    if _fresh_index(path, *own):
        return IndexedFasta(path, *own, beside=beside, what=what)
    if beside and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        target = own
    else:
        fai = cache_path(path, ".fai")
        target = (fai, fai[: -len(".fai")] + ".gzi" if bgzf else None)
    with _INDEX_LOCK:
        if not _fresh_index(path, *target) and not build_index(path, *target):
            return None
    return IndexedFasta(path, *target, beside=beside, what=what)


def _fresh_index(path, fai, gzi):
    return is_fresh(fai, path) and (gzi is None or is_fresh(gzi, path))


class IndexedFasta:
    """A FASTA file read by name and position through its htslib index.

    Picklable (paths only): the file is opened where it is used, and a worker that lacks the
    index builds it again. Safe to use from several threads.

    Parameters
    ----------
    path : str
        A plain or bgzip-compressed FASTA file.
    fai, gzi : str
        Its ``.fai`` index and, for bgzip, ``.gzi`` index (None for plain files).
    beside : bool
        Where to rebuild a missing index (see :func:`index_fasta`).
    what : str
        What the file is, for error messages.
    """

    def __init__(self, path, fai, gzi, beside, what):
        self.path, self.fai, self.gzi, self.beside, self.what = path, fai, gzi, beside, what
        self._init_handle()

    def _init_handle(self):
        self._lock = threading.Lock()
        self._handle = None
        self._lengths = None

    def __getstate__(self):
        return (self.path, self.fai, self.gzi, self.beside, self.what)

    def __setstate__(self, state):
        self.path, self.fai, self.gzi, self.beside, self.what = state
        self._init_handle()

    def _open(self):
        """The pysam handle; call with the lock held."""
        import pysam

        if self._handle is None:
            require_file(self.path, self.what)
            if not os.path.exists(self.fai) or (self.gzi is not None and not os.path.exists(self.gzi)):
                rebuilt = index_fasta(self.path, self.beside, self.what)
                if rebuilt is None:
                    raise InputError(f"{self.path}: cannot index the {self.what} again (changed since it was opened?)")
                self.fai, self.gzi = rebuilt.fai, rebuilt.gzi
            try:
                self._handle = pysam.FastaFile(self.path, filepath_index=self.fai,
                                               filepath_index_compressed=self.gzi)
            except (OSError, ValueError) as err:
                why = " ".join(str(err).split())
                raise InputError(f"{self.path}: cannot open the {self.what} ({why})") from None
        return self._handle

    def lengths(self):
        """dict of sequence name to length, in file order."""
        with self._lock:
            if self._lengths is None:
                handle = self._open()
                self._lengths = dict(zip(handle.references, handle.lengths))
            return self._lengths

    def fetch(self, name, start=None, end=None):
        """Letters ``start .. end - 1`` (0-based) of sequence ``name``; all of it by default.

        Raises
        ------
        KeyError
            If there is no sequence ``name``.
        UnicodeDecodeError
            If the letters are not ASCII.
        """
        with self._lock:
            return self._open().fetch(reference=name, start=start, end=end)


def open_genome(genome):
    """The :class:`IndexedFasta` of a genome, with a one-line :class:`InputError` saying how to
    fix a genome that cannot be read by position."""
    require_file(genome, "genome FASTA")
    packed = compression(genome)
    if packed == "gzip":
        plain = genome[: -len(".gz")] if genome.lower().endswith(".gz") else genome
        raise InputError(
            f"{genome}: the genome is gzip-compressed but not with bgzip, so it cannot be read by "
            f"position; recompress it with bgzip (gunzip -c {genome} | bgzip > {plain}.bgz) or decompress it"
        )
    if packed is not None and packed != "bgzf":
        raise InputError(f"{genome}: the genome is {packed}-compressed; decompress it, or recompress it with bgzip")
    fasta = index_fasta(genome, beside=True, what="genome FASTA")
    if fasta is None:
        fix = "; if it is compressed, decompress it and recompress it with bgzip" if packed else ""
        raise InputError(
            f"{genome}: cannot index the genome FASTA (every sequence needs a '>' header line, and all its "
            f"lines but the last the same length; `samtools faidx {genome}` names the first problem){fix}"
        )
    if not fasta.lengths():
        raise InputError(f"{genome}: the genome FASTA holds no sequences")
    return fasta


class GenomeWindowSource(SequenceSource):
    """Windows of a genome FASTA; the base of the BED and VCF readers.

    Parameters
    ----------
    path : str
        The BED or VCF file.
    fasta : IndexedFasta
        The genome.
    length : int
        ``L``, the window length.
    alphabet : str
        Channel letters.
    ids : list of str
        One per window.
    """

    needs_genome = True

    def chrom_sizes(self):
        """``{chrom: length}`` of the chromosomes the windows lie on, in the genome's order."""
        used = set(self._coords[0][1:]) if self._coords is not None else set()
        return {c: int(n) for c, n in self._genome.lengths().items() if c in used}

    def __init__(self, path, fasta, length, alphabet, ids):
        super().__init__(path, length, alphabet, ids)
        self.genome = fasta.path
        self._genome = fasta

    def _locate(self, chrom_names, code, start, strand):
        """Store the windows' coordinates, with padding where they run off a chromosome end.

        Parameters
        ----------
        chrom_names : list of str
            The chromosomes of the windows.
        code : array_like of int, shape (N,)
            Index into ``chrom_names`` per window.
        start : array_like of int, shape (N,)
            0-based genomic start of each window (may be negative).
        strand : array_like of int, shape (N,)
            Index into ``STRANDS`` (2: ``-``, read reverse-complemented).
        """
        lengths = self._genome.lengths()
        chrom_length = np.array([lengths[c] for c in chrom_names], dtype=np.int64)[code]
        start = np.asarray(start, dtype=np.int64)
        before = np.clip(-start, 0, self.length)
        after = np.clip(start + self.length - chrom_length, 0, self.length)
        strand = np.asarray(strand, dtype=np.int8)
        minus = strand == 2
        pad_left, pad_right = np.where(minus, after, before), np.where(minus, before, after)
        self._set_coords(chrom_names, code, start, strand, pad_left, pad_right)
        padded = np.flatnonzero((before > 0) | (after > 0))
        if padded.size:
            warnings.warn(
                f"{self.path}: {padded.size} window(s) run off a chromosome end and are padded with "
                f"N (all-zero) rows, e.g. {self.ids[padded[0]]!r}; see coords()['pad_left'/'pad_right']",
                SequenceWarning,
                stacklevel=4,
            )
        if minus.any() and complement_permutation(self.alphabet) is None:
            raise InputError(
                f"{self.path}: '-' strand windows need an alphabet with complements, got {self.alphabet!r}"
            )

    def _read_sorted(self, idx):
        lengths = self._genome.lengths()
        names, code, starts, strands, _, _ = self._coords
        out = np.zeros((len(idx), self.length, self.channels), dtype=np.float32)
        rows = one_hot_rows(self.alphabet)
        for j, i in enumerate(idx):
            chrom, window_start = names[code[i]], int(starts[i])
            s, e = max(window_start, 0), min(window_start + self.length, lengths[chrom])
            if e > s:
                codes = self._genome_codes(chrom, s, e, i)
                out[j, s - window_start : e - window_start] = rows[codes]
            if strands[i] == 2:
                out[j] = reverse_complement(out[j], self.alphabet)
        return out

    def _genome_codes(self, chrom, start, end, i):
        """Letter codes of genome bases ``start .. end - 1`` of ``chrom``, for sequence ``i``."""
        where = f"{self.genome}: {chrom}"
        try:
            data = self._genome.fetch(chrom, start, end).encode("ascii", "replace")
        except UnicodeDecodeError:
            window = f"window of sequence {self.ids[i]!r}"
            raise InputError(f"{where}:{start + 1}-{end} ({window}): non-ASCII bytes") from None
        codes, bad = letter_codes(data, self.alphabet)
        if bad >= 0:
            raise InputError(
                f"{where} position {start + bad + 1} (window of sequence {self.ids[i]!r}): "
                f"{bad_letter_text(data[bad], self.alphabet)}"
            )
        return codes
