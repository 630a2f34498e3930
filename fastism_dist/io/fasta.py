"""FASTA input: one sequence per record, plain, gzip or bgzip.

At open every record is streamed once with pysam (htslib's FASTA parser) to check its letters
and take its name (the first word of the header) and length. Records are then read on demand by
name through an htslib index (:class:`~fastism_dist.io.genome.IndexedFasta`) of the file itself
(plain or bgzip). A file htslib cannot read by position in place (plain gzip, repeated names,
spaces inside records, lines of uneven length) is rewritten once into a cache file, one record
per line named by its index, and read from there; a worker that lacks the cache file rebuilds it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import NamedTuple

import numpy as np

from fastism_dist.errors import InputError
from fastism_dist.io.alphabet import WHITESPACE, bad_letter_text, invalid_pattern, letter_codes, one_hot_rows
from fastism_dist.io.files import atomic_output, cache_path, compression, file_stamp, head_bytes
from fastism_dist.io.genome import IndexedFasta, build_index, index_fasta
from fastism_dist.io.source import STRANDS, SequenceSource, centre_fit, fit_offset, register_reader

# a bedtools getfasta header: chrom:start-end, optionally (strand), optionally after name::
_COORD_RE = re.compile(r"(?:^|::)([^:\s]+):(\d+)-(\d+)(?:\(([+\-.])\))?$")
_WHITESPACE_RE = re.compile(f"[{re.escape(WHITESPACE)}]")
_COPY_LOCK = threading.Lock()


class FastaRecords(NamedTuple):
    """What one pass over a FASTA file found."""

    names: list
    """First word of each header, in file order (may repeat)."""
    lengths: np.ndarray
    """int64 (N,): letters per record, whitespace excluded."""
    spaced: bool
    """True if some record has spaces or tabs inside its lines."""


def scan_fasta(path, alphabet, out=None):
    """Check every record of a FASTA file once, in order.

    Parameters
    ----------
    path : str
        A plain, gzip or bgzip FASTA file.
    alphabet : str
        Channel letters.
    out : file, optional
        Text file to write each record to as ``>i`` and one line of letters (``i`` its 0-based
        index), whitespace removed.

    Returns
    -------
    FastaRecords

    Raises
    ------
    InputError
        Naming the file, the record (name and 1-based number) and the 1-based position of the
        first character that is no letter, or the first empty record.
    """
    import pysam

    _check_first_header(path)
    invalid = invalid_pattern(alphabet)
    names, lengths, spaced = [], [], False
    verbosity = pysam.set_verbosity(0)
    try:
        with pysam.FastxFile(path) as stream:
            records = iter(stream)
            while True:
                where = f"{path}: record #{len(names) + 1}"
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (ValueError, OSError, UnicodeDecodeError) as err:
                    why = " ".join(str(err).split())
                    raise InputError(f"{where}: cannot read as FASTA ({why})") from None
                name, seq = record.name or "", record.sequence or ""
                where = f"{path}: record {name!r} (#{len(names) + 1})"
                letters = _checked_letters(seq, record.quality, invalid, alphabet, where)
                spaced = spaced or len(letters) != len(seq)
                if out is not None:
                    out.write(f">{len(names)}\n{letters}\n")
                names.append(name)
                lengths.append(len(letters))
    finally:
        pysam.set_verbosity(verbosity)
    return FastaRecords(names, np.array(lengths, dtype=np.int64), spaced)


def _check_first_header(path):
    text = head_bytes(path).lstrip(WHITESPACE.encode())
    if text and not text.startswith(b">"):
        raise InputError(f"{path}: not a FASTA file (text before the first '>' header)")


def _checked_letters(seq, quality, invalid, alphabet, where):
    """The letters of a record with whitespace removed; raises at the first bad character."""
    if quality is not None:  # htslib read a '+' line as the start of FASTQ quality values
        seq += "+"
    bad = invalid.search(seq)
    if bad is not None:
        position = len(_WHITESPACE_RE.sub("", seq[: bad.start()])) + 1
        raise InputError(f"{where} position {position}: {bad_letter_text(bad.group(), alphabet)}")
    letters = _WHITESPACE_RE.sub("", seq) if _WHITESPACE_RE.search(seq) else seq
    if not letters:
        raise InputError(f"{where} is empty")
    return letters


def _copy_ready(copy):
    return os.path.exists(copy) and os.path.exists(copy + ".fai")


def write_fasta_copy(path, alphabet, copy):
    """Rewrite a FASTA file as ``copy`` (one line per record, named by its index) with its index.

    Returns
    -------
    FastaRecords
        As :func:`scan_fasta` found them while writing.
    """
    with atomic_output(copy) as tmp:
        with open(tmp, "w", encoding="ascii", newline="\n") as out:
            records = scan_fasta(path, alphabet, out)
        if not records.names:
            raise InputError(f"{path}: holds no sequences")
        with atomic_output(copy + ".fai") as tmp_fai:
            if not build_index(tmp, tmp_fai):
                raise InputError(f"{path}: cannot index the copy written to {copy}")
    return records


@register_reader
class FastaSource(SequenceSource):
    """Sequences from a plain, gzip or bgzip FASTA file; see :func:`~fastism_dist.io.open_sequences`.

    Records are read through an index of the file itself (``_mode == "indexed"``) or of its
    rewritten copy in the cache folder (``"copy"``, the copy's path in ``_copy``).
    """

    kind = "fasta"
    suffixes = (".fa", ".fasta", ".fna", ".fas")

    @classmethod
    def sniff(cls, head, genome):
        return head.lstrip(WHITESPACE.encode()).startswith(b">")

    @classmethod
    def open(cls, path, *, genome, length, resize, skip_mismatches, alphabet):
        packed = compression(path)
        if packed not in (None, "gzip", "bgzf"):
            raise InputError(f"{path}: the file is {packed}-compressed; decompress it, or compress it with bgzip")
        stamp = file_stamp(path)
        copy = cache_path(path, ".fa", stamp)
        if packed == "gzip" and not _copy_ready(copy):
            records = write_fasta_copy(path, alphabet, copy)
        else:
            records = scan_fasta(path, alphabet)
        if not records.names:
            raise InputError(f"{path}: holds no sequences")
        length = _common_length(path, records, length, resize)
        src = cls(path, length, alphabet, records.names)
        src._lengths = records.lengths
        src._stamp = stamp
        src._attach_reader(records, copied=packed == "gzip")
        src._parse_header_coords(records.names)
        return src

    def _attach_reader(self, records, copied):
        """Read through an index of the file itself where htslib can, else through a copy.

        Parameters
        ----------
        records : FastaRecords
            What the scan found.
        copied : bool
            True if the scan already wrote the cache copy.
        """
        copy = cache_path(self.path, ".fa", self._stamp)
        if not copied:
            fasta = self._index_in_place(records)
            if fasta is not None:
                self._mode, self._copy, self._fasta = "indexed", None, fasta
                return
            if not _copy_ready(copy):
                write_fasta_copy(self.path, self.alphabet, copy)
        self._mode, self._copy = "copy", copy
        self._fasta = IndexedFasta(copy, copy + ".fai", None, beside=True, what="cached FASTA copy")

    def _index_in_place(self, records):
        """An index of the file itself, or None where htslib would not read the records as scanned."""
        if records.spaced or len(set(records.names)) != len(records.names):
            return None  # htslib counts spaces as letters and keeps only the first of a name
        fasta = index_fasta(self.path, beside=False)
        scanned = list(zip(records.names, records.lengths.tolist()))
        if fasta is None or list(fasta.lengths().items()) != scanned:
            return None
        return fasta

    def _parse_header_coords(self, names):
        chroms, code, start, strand, pad_left, pad_right = {}, [], [], [], [], []
        for name, n in zip(names, self._lengths.tolist()):
            offset = fit_offset(n, self.length)
            left = max(0, -offset)
            pad_left.append(left)
            pad_right.append(max(0, self.length - left - n))
            m = _COORD_RE.search(name)
            if m is None or int(m.group(3)) - int(m.group(2)) != n:
                code.append(-1)
                start.append(-1)
                strand.append(0)
                continue
            s, e, st = int(m.group(2)), int(m.group(3)), m.group(4) or "."
            code.append(chroms.setdefault(m.group(1), len(chroms)))
            start.append(e - offset - self.length if st == "-" else s + offset)
            strand.append(STRANDS.index(st))
        self._set_coords(list(chroms), code, start, strand, pad_left, pad_right)

    def _reader(self):
        """The indexed file to read records from, rebuilding a missing cache copy."""
        if self._mode == "indexed":
            if file_stamp(self.path)[0] != self._stamp[0]:
                raise InputError(f"{self.path}: the file changed since it was opened")
            return self._fasta
        with _COPY_LOCK:
            if not _copy_ready(self._copy):
                if file_stamp(self.path) != self._stamp:
                    raise InputError(f"{self.path}: the file changed since it was opened")
                write_fasta_copy(self.path, self.alphabet, self._copy)
        return self._fasta

    def _read_sorted(self, idx):
        fasta = self._reader()
        out = np.empty((len(idx), self.length, self.channels), dtype=np.float32)
        rows = one_hot_rows(self.alphabet)
        for j, i in enumerate(idx.tolist()):
            where = f"{self.path}: record {self.ids[i]!r} (#{i + 1})"
            name = self.ids[i] if self._mode == "indexed" else str(i)
            try:
                data = fasta.fetch(name).encode("ascii", "replace")
            except (KeyError, UnicodeDecodeError):
                raise InputError(f"{where} cannot be read; the file changed since it was opened") from None
            if len(data) != self._lengths[i]:
                raise InputError(f"{where} changed since the file was opened")
            codes, bad = letter_codes(data, self.alphabet)
            if bad >= 0:
                raise InputError(f"{where} position {bad + 1}: {bad_letter_text(data[bad], self.alphabet)}")
            out[j] = centre_fit(rows[codes], self.length)
        return out


def _common_length(path, records, length, resize):
    """The sequence length ``L``, checking the record lengths against it."""
    names, lengths = records.names, records.lengths
    if length is None:
        bad = np.flatnonzero(lengths != lengths[0])
        if bad.size and not resize:
            i = int(bad[0])
            raise InputError(
                f"{path}: record {names[i]!r} (#{i + 1}) has length {lengths[i]} but record "
                f"{names[0]!r} has length {lengths[0]}; sequences must all have the same length "
                f"(or give length= with resize=True to centre-crop / pad them; --resize on the "
                "command line)"
            )
        if bad.size:
            raise InputError(f"{path}: records have different lengths; resize=True needs length=")
        return int(lengths[0])
    if not resize:
        bad = np.flatnonzero(lengths != length)
        if bad.size:
            i = int(bad[0])
            raise InputError(
                f"{path}: record {names[i]!r} (#{i + 1}) has length {lengths[i]}, expected "
                f"{length} (--resize, resize=True in Python, centre-crops or pads with N)"
            )
    return length
