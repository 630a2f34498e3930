"""Sequence inputs: the alphabet codec and one reader per file format.

``open_sequences(path, ...)`` indexes its input once and returns a :class:`SequenceSource`: a
small, picklable description (paths and per-record metadata, never the one-hot arrays) that a
Dask worker uses to read just its own chunk with ``source.read(indices)``.

Formats
-------
- FASTA (``.fa``, ``.fasta``, ``.fna``, ``.fas``; plain, gzip or bgzip): one sequence per record,
  named by the first word of its header; every letter is checked at open. Records are read
  through an htslib index (pysam); a file that cannot be read by position in place (plain gzip,
  repeated names, spaces inside records, uneven lines) is rewritten once into a cache file
  (``$FASTISM_DIST_CACHE_DIR``, default ``<tmp>/fastism_dist_cache``). A header such as
  ``chr1:100-200(+)`` (``bedtools getfasta`` output) whose span matches the record length gives
  the genomic coordinates.
- BED + genome FASTA (plain or bgzip, read by position with pysam): each interval centred and
  resized to ``length``; ``-`` strand windows reverse-complemented; windows off a chromosome end
  padded with N.
- VCF / BCF + genome (parsed with pysam): a ``length`` window of the reference centred on each
  variant (the variant's first REF base at position ``length // 2``), one sequence per ALT
  allele, REF checked against the genome, exact duplicates dropped, symbolic ALTs skipped.
- ``.npy``: a float or integer one-hot array of shape ``(N, L, C)``, memory-mapped.

Letters of the alphabet map to their channel in either case; ``N`` and the IUPAC codes become
all-zero rows (as do padded positions); any other character is an
:class:`~fastism_dist.errors.InputError` naming the file, the record and the 1-based position.
"""

from fastism_dist.io.alphabet import ALPHABET, IUPAC_ZERO, decode, one_hot, reverse_complement
from fastism_dist.io.opener import open_sequences
from fastism_dist.io.source import SequenceSource, SequenceWarning, genomic_position, readers, register_reader

__all__ = [
    "ALPHABET",
    "IUPAC_ZERO",
    "SequenceSource",
    "SequenceWarning",
    "decode",
    "genomic_position",
    "one_hot",
    "open_sequences",
    "readers",
    "register_reader",
    "reverse_complement",
]
