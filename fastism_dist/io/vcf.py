"""VCF / BCF input: a window of the genome centred on each variant, one sequence per ALT allele.

Records are parsed with pysam (htslib). The variant's first REF base sits at window position
``L // 2``; REF is checked against the genome; exact duplicates are dropped and symbolic or
structural ALTs skipped (each with a warning, and listed in ``source.skipped``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
import warnings

import numpy as np

from fastism_dist.errors import InputError
from fastism_dist.io.files import cache_dir, compression, head_bytes, open_text
from fastism_dist.io.genome import GenomeWindowSource, open_genome
from fastism_dist.io.source import SequenceWarning, register_reader

_ALLELE_RE = re.compile(r"^[ACGTN]+$")
_COPY_BLOCK = 1 << 24
_SKIP_TEXTS = {
    "symbolic": "skipped {n} symbolic, structural, missing or non-ACGTN allele(s)",
    "mismatch": "skipped {n} record(s) whose REF does not match the genome",
    "outside": "skipped {n} record(s) past the end of their chromosome",
    "duplicate": "dropped {n} exact duplicate record(s)",
}


@register_reader
class VcfSource(GenomeWindowSource):
    """Genome windows centred on the variants of a VCF or BCF file, one per ALT allele."""

    kind = "vcf"
    suffixes = (".vcf", ".bcf")

    @classmethod
    def sniff(cls, head, genome):
        return head.startswith((b"##fileformat=VCF", b"BCF"))

    @classmethod
    def open(cls, path, *, genome, length, resize, skip_mismatches, alphabet):
        fasta = open_genome(genome)
        windows = _Windows(path, fasta, length, skip_mismatches)
        for where, line, record in _records(path):
            windows.add(where, line, record)
        windows.warn_skipped()
        if not windows.ids:
            extra = f" ({len(windows.skipped)} skipped)" if windows.skipped else ""
            raise InputError(f"{path}: holds no sequences{extra}")
        src = cls(path, fasta, length, alphabet, windows.ids)
        src.skipped = windows.skipped
        src._variant = (length // 2, windows.refs, windows.alts, windows.vcf_ids)
        plus = np.ones(len(windows.ids), dtype=np.int8)
        src._locate(list(windows.chroms), windows.code, windows.starts, plus)
        return src

    def variants(self):
        pos, ref, alt, vcf_id = self._variant
        return {
            "variant_pos": np.full(len(self), pos, dtype=np.int64),
            "ref": np.array(ref, dtype=object),
            "alt": np.array(alt, dtype=object),
            "vcf_id": np.array(vcf_id, dtype=object),
        }


def _records(path):
    """Yield ``(where, line, record)`` for each record of a VCF / BCF file.

    ``where`` names the file and line (``record #k`` for BCF), ``line`` is the 1-based line
    number (None for BCF), ``record`` the ``pysam.VariantRecord``.
    """
    import pysam

    header = _header_lines(path)
    verbosity = pysam.set_verbosity(0)
    try:
        with _htslib_readable(path) as target:
            try:
                vf = pysam.VariantFile(target)
            except (ValueError, OSError, NotImplementedError) as err:
                raise InputError(f"{path}: cannot read as VCF/BCF ({' '.join(str(err).split())})") from None
            with vf:
                it = iter(vf)
                k = 0
                while True:
                    where = f"{path}: line {header + k + 1}" if header is not None else f"{path}: record #{k + 1}"
                    try:
                        record = next(it)
                    except StopIteration:
                        return
                    except (ValueError, OSError) as err:
                        why = " ".join(str(err).split())
                        raise InputError(f"{where}: cannot parse the VCF record ({why})") from None
                    k += 1
                    yield where, (header + k if header is not None else None), record
    finally:
        pysam.set_verbosity(verbosity)


def _header_lines(path):
    """Number of header lines of a text VCF (None for BCF)."""
    if head_bytes(path, 3) == b"BCF":
        return None
    n = 0
    try:
        with open_text(path) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                n += 1
    except (OSError, EOFError):
        return None
    return n


@contextlib.contextmanager
def _htslib_readable(path):
    """``path``, or for a plain (non-bgzip) gzip VCF a temporary uncompressed copy of it.

    htslib reads gzip only in the bgzip layout; the file is parsed once, so a temporary copy
    (removed afterwards) is enough.
    """
    if compression(path) != "gzip":
        yield path
        return
    fd, plain = tempfile.mkstemp(suffix=".vcf", dir=cache_dir())
    try:
        with os.fdopen(fd, "wb") as dst, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, dst, _COPY_BLOCK)
        yield plain
    finally:
        os.remove(plain)


class _Windows:
    """The windows, alleles and skipped records collected from the VCF records."""

    def __init__(self, path, fasta, length, skip_mismatches):
        self.path, self.fasta, self.genome, self.lengths = path, fasta, fasta.path, fasta.lengths()
        self.length, self.skip_mismatches = length, skip_mismatches
        self.chroms, self.code, self.starts = {}, [], []
        self.ids, self.refs, self.alts, self.vcf_ids = [], [], [], []
        self.skipped, self.counts, self.first = [], dict.fromkeys(_SKIP_TEXTS, 0), {}
        self._seen = set()

    def add(self, where, line, record):
        """Add one window per ALT allele of ``record`` (or note why it is skipped)."""
        chrom, pos = record.chrom, int(record.pos)
        ref = (record.ref or "").upper()
        if chrom not in self.lengths:
            raise InputError(f"{where}: chromosome {chrom!r} is not in the genome {self.genome}")
        past_end = pos + max(len(ref), 1) - 1 > self.lengths[chrom]
        found = None
        for alt in record.alts or (".",):
            alt = alt.upper()
            rid = f"{chrom}:{pos}:{ref}>{alt}"
            if not _ALLELE_RE.match(alt) or not _ALLELE_RE.match(ref or "-"):
                self._skip(line, rid, f"symbolic, structural or non-ACGTN allele ({ref!r} > {alt!r})", "symbolic")
                continue
            if past_end:
                self._past_end(where, line, rid, chrom, pos, ref)
                continue
            if found is None:
                found = self._fasta_ref(chrom, pos, ref)
            if found != ref:
                self._mismatch(where, line, rid, chrom, pos, ref, found)
                continue
            key = (chrom, pos, ref, alt)
            if key in self._seen:
                self._skip(line, rid, "exact duplicate of an earlier record", "duplicate")
                continue
            self._seen.add(key)
            self.code.append(self.chroms.setdefault(chrom, len(self.chroms)))
            self.ids.append(rid)
            self.refs.append(ref)
            self.alts.append(alt)
            self.vcf_ids.append(record.id or ".")
            self.starts.append(pos - 1 - self.length // 2)  # the variant sits at window position L // 2

    def _fasta_ref(self, chrom, pos, ref):
        return self.fasta.fetch(chrom, pos - 1, pos - 1 + len(ref)).upper() if ref else ""

    def _past_end(self, where, line, rid, chrom, pos, ref):
        span = f"{chrom}:{pos}-{pos + len(ref) - 1}" if len(ref) > 1 else f"{chrom}:{pos}"
        text = f"{span} is past the end of {chrom}, which has length {self.lengths[chrom]}"
        if not self.skip_mismatches:
            raise InputError(
                f"{where}: record {rid}: {text} in the genome {self.genome} (a VCF for another assembly?); "
                "--skip-mismatches (skip_mismatches=True in Python) skips such records"
            )
        self._skip(line, rid, text, "outside")

    def _mismatch(self, where, line, rid, chrom, pos, ref, found):
        if not self.skip_mismatches:
            raise InputError(
                f"{where}: record {rid}: REF {ref!r} does not match the genome {self.genome} "
                f"({found!r} at {chrom}:{pos}); --skip-mismatches (skip_mismatches=True in Python) "
                "skips such records"
            )
        self._skip(line, rid, f"REF {ref!r} does not match the genome ({found!r})", "mismatch")

    def _skip(self, line, rid, reason, category):
        self.counts[category] += 1
        self.first.setdefault(category, f"line {line}: {rid}" if line else rid)
        self.skipped.append({"line": line, "record": rid, "reason": reason})

    def warn_skipped(self):
        """One :class:`SequenceWarning` per kind of skipped record."""
        for category, text in _SKIP_TEXTS.items():
            if self.counts[category]:
                warnings.warn(
                    f"{self.path}: {text.format(n=self.counts[category])} (first: {self.first[category]}); "
                    "see source.skipped",
                    SequenceWarning,
                    stacklevel=4,
                )
