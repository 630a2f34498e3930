"""BED input: a window of the genome centred on each interval.

Each interval is centred and resized to the window length ``L``; ``-`` strand windows are
reverse-complemented; windows off a chromosome end are padded with N (all-zero) rows.
"""

from __future__ import annotations

from fastism_dist.errors import InputError
from fastism_dist.io.files import open_text
from fastism_dist.io.genome import GenomeWindowSource, open_genome
from fastism_dist.io.source import STRANDS, register_reader

_SKIPPED_LINES = ("#", "track", "browser")


def _columns(line):
    return line.split("\t") if "\t" in line else line.split()


@register_reader
class BedSource(GenomeWindowSource):
    """Genome windows centred on the intervals of a BED file."""

    kind = "bed"
    suffixes = (".bed",)

    @classmethod
    def sniff(cls, head, genome):
        """A file given with a genome whose first interval line is ``chrom start end ...``."""
        if genome is None:
            return False
        for line in head.decode("utf-8", "replace").splitlines():
            if line.strip() and not line.startswith(_SKIPPED_LINES):
                cols = _columns(line)
                return len(cols) >= 3 and cols[1].isdigit() and cols[2].isdigit()
        return False

    @classmethod
    def open(cls, path, *, genome, length, resize, skip_mismatches, alphabet):
        fasta = open_genome(genome)
        lengths = fasta.lengths()
        chroms, code, start, strand, ids = {}, [], [], [], []
        with open_text(path) as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip() or line.startswith(_SKIPPED_LINES):
                    continue
                chrom, s, e, st = _interval(line, f"{path}: line {number}", genome, lengths)
                window_start = (s + e) // 2 - length // 2
                code.append(chroms.setdefault(chrom, len(chroms)))
                start.append(window_start)
                strand.append(STRANDS.index(st))
                span = max(window_start, 0), min(window_start + length, lengths[chrom])
                ids.append(f"{chrom}:{span[0]}-{span[1]}({st})")  # the genome bases it holds
        if not ids:
            raise InputError(f"{path}: holds no sequences")
        src = cls(path, fasta, length, alphabet, ids)
        src._locate(list(chroms), code, start, strand)
        return src


def _interval(line, where, genome, lengths):
    """``(chrom, start, end, strand)`` of a BED line, checked against the genome."""
    cols = _columns(line)
    if len(cols) < 3:
        raise InputError(f"{where}: expected at least 3 columns (chrom, start, end), got {len(cols)}")
    chrom = cols[0]
    try:
        s, e = int(cols[1]), int(cols[2])
    except ValueError:
        raise InputError(f"{where}: start and end must be integers, got {cols[1]!r} and {cols[2]!r}") from None
    if s < 0 or e < s:
        raise InputError(f"{where}: bad interval {s}-{e} (need 0 <= start <= end)")
    strand = cols[5].strip() if len(cols) > 5 else "."
    if strand not in STRANDS:
        raise InputError(f"{where}: strand must be '+', '-' or '.', got {strand!r}")
    if chrom not in lengths:
        raise InputError(f"{where}: chromosome {chrom!r} is not in the genome {genome}")
    if e > lengths[chrom]:
        raise InputError(f"{where}: interval {chrom}:{s}-{e} ends past the chromosome end ({lengths[chrom]})")
    return chrom, s, e, strand
