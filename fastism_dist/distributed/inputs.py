"""A run's sequences: the source opened on the client, what identifies it, its store coordinates."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastism_dist.distributed.hashes import file_fingerprint, strings_sha256
from fastism_dist.errors import InputError
from fastism_dist.io import open_sequences
from fastism_dist.store import store_path


def open_source(input, genome=None, length=None, resize=False, skip_mismatches=False,
                alphabet="ACGT"):
    """``input`` itself if it is an opened source (has ``read`` and ``ids``), else the file opened.

    Parameters
    ----------
    input : str or SequenceSource
    genome : str, optional
        Genome FASTA of a BED / VCF input.
    length : int
        L, the model's input length.
    resize, skip_mismatches, alphabet
        Passed to ``open_sequences``.

    Returns
    -------
    SequenceSource
    """
    if is_source(input):
        return input
    path = store_path(input)
    if "://" not in path and not os.path.exists(path):
        raise InputError(f"input file not found: {path}")
    if genome is not None:
        genome = store_path(genome)
    return open_sequences(path, genome=genome, length=length, resize=resize,
                          skip_mismatches=skip_mismatches, alphabet=alphabet)


def is_source(input):
    """True for an opened sequence source rather than a path."""
    return hasattr(input, "read") and hasattr(input, "ids")


def describe(input):
    """``input`` in messages: its path, or the type of a source without one."""
    if is_source(input):
        return str(getattr(input, "path", None) or type(input).__name__)
    return os.fspath(input)


def _input_path(input):
    path = getattr(input, "path", None) if is_source(input) else input
    return None if path is None else os.fspath(path)


def local_fingerprint(path):
    """``file_fingerprint`` of a local file; None for a URL, a missing file or no path."""
    if path is None:
        return None
    path = store_path(path)
    if "://" in path or not os.path.isfile(path):
        return None
    return file_fingerprint(path)


def index_fingerprint(genome):
    """The fingerprints of a genome's ``.fai`` (and bgzip ``.gzi``) index beside it, if any.

    Returns
    -------
    str or None
        ``"fai=<fingerprint>"``, with ``" gzi=<fingerprint>"`` for a bgzip genome; None when
        there is no index beside the genome (it is then read through one in the cache folder).
    """
    if genome is None:
        return None
    parts = []
    for suffix in (".fai", ".gzi"):
        found = local_fingerprint(os.fspath(genome) + suffix)
        if found is not None:
            parts.append(f"{suffix[1:]}={found}")
    return " ".join(parts) or None


@dataclass(frozen=True)
class InputDescription:
    """What identifies a run's sequences in its parameters (compared on resume).

    Attributes
    ----------
    name : str or None
        Base name of the input file.
    content : str or None
        ``file_fingerprint`` of the input file, where it is a local file.
    genome : str or None
        Base name of the genome FASTA.
    genome_content : str or None
        ``file_fingerprint`` of the genome FASTA.
    genome_index : str or None
        Fingerprints of the genome's index files beside it (``index_fingerprint``).
    n_sequences : int
    ids_sha256 : str
        Of the sequence ids in order.
    length : int
        L.
    alphabet : str
    resize, skip_mismatches : bool
    """

    name: str | None
    content: str | None
    genome: str | None
    genome_content: str | None
    genome_index: str | None
    n_sequences: int
    ids_sha256: str
    length: int
    alphabet: str
    resize: bool
    skip_mismatches: bool

    @classmethod
    def of(cls, input, source, genome=None, resize=False, skip_mismatches=False):
        """The description of ``source``, opened from ``input`` (a path or the source itself)."""
        path = _input_path(input)
        return cls(
            name=None if path is None else os.path.basename(path),
            content=local_fingerprint(path),
            genome=None if genome is None else os.path.basename(os.fspath(genome)),
            genome_content=local_fingerprint(genome),
            genome_index=index_fingerprint(None if genome is None else store_path(genome)),
            n_sequences=len(source),
            ids_sha256=strings_sha256(source.ids),
            length=int(source.length),
            alphabet="".join(str(b) for b in source.alphabet),
            resize=bool(resize),
            skip_mismatches=bool(skip_mismatches),
        )

    def params(self):
        """The description as the keys of the run's stored parameters."""
        return {
            "input": self.name,
            "input_content": self.content,
            "genome": self.genome,
            "genome_content": self.genome_content,
            "genome_index_content": self.genome_index,
            "n_sequences": self.n_sequences,
            "sequence_ids_sha256": self.ids_sha256,
            "sequence_length": self.length,
            "alphabet": self.alphabet,
            "resize": self.resize,
            "skip_mismatches": self.skip_mismatches,
        }


def check_source(source, input, length, channels):
    """Raise ``InputError`` for an empty source or one that does not fit the model's input."""
    n = len(source)
    if n == 0:
        raise InputError(f"{describe(input)}: no sequences to score")
    bases = [str(b) for b in source.alphabet]
    if len(bases) != channels:
        raise InputError(f"the alphabet {''.join(bases)!r} has {len(bases)} letters but the model "
                         f"input has {channels} channels")
    if source.length != length:
        raise InputError(f"{describe(input)}: sequences have length {source.length}, the model "
                         f"expects {length}")


def store_coords(source):
    """Per-sequence coordinates for the store: genomic windows, padding and VCF alleles.

    Returns
    -------
    dict of str to ndarray of shape (N,), or None
    """
    coords = dict(source.coords() or {})
    variants = source.variants()
    if variants is not None:
        coords.update(variant_pos=variants["variant_pos"], ref_allele=variants["ref"],
                      alt_allele=variants["alt"], variant_id=variants.get("vcf_id"))
    return coords or None
