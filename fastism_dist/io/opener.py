"""``open_sequences``: pick the reader for a file and open it."""

from __future__ import annotations

import os
import warnings

import numpy as np

from fastism_dist.errors import InputError
# importing a format module registers its reader
from fastism_dist.io import bed, fasta, npy, vcf  # noqa: F401
from fastism_dist.io.alphabet import ALPHABET, check_alphabet
from fastism_dist.io.files import require_file
from fastism_dist.io.source import SequenceWarning, readers

__all__ = ["open_sequences"]

_INPUT = "file"
_INPUT_KINDS = "FASTA, BED, VCF or .npy file"


def open_sequences(path, genome=None, length=None, resize=False, skip_mismatches=False, alphabet=ALPHABET):
    """Index an input file of sequences for lazy reading.

    Parameters
    ----------
    path : str or path-like
        FASTA (``.fa``, ``.fasta``, ``.fna``, ``.fas``; plain, gzip or bgzip), BED
        (``.bed[.gz]``), VCF (``.vcf[.gz]``, ``.bcf``) or one-hot ``.npy`` of shape ``(N, L, C)``.
        Other names are recognised by their first bytes.
    genome : str or path-like, optional
        Genome FASTA, plain or bgzip (with or without its ``.fai`` / ``.gzi`` index), required
        for BED and VCF. Default is None.
    length : int, optional
        Sequence length ``L``. Required for BED and VCF (the window size). For FASTA and ``.npy``
        the default None means "all records must have the same length"; a record of another
        length is an error unless ``resize``.
    resize : bool, optional
        Centre-crop longer FASTA / ``.npy`` records to ``length`` and pad shorter ones with
        all-zero rows (more on the right for an odd difference). Default is False.
    skip_mismatches : bool, optional
        For VCF: skip (with a warning, listed in ``source.skipped``) records whose REF does not
        match the genome or that lie past their chromosome's end, instead of raising. Default
        is False.
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
    alphabet = check_alphabet(alphabet)
    length = _checked_length(length)
    require_file(path, _INPUT, _INPUT_KINDS)
    reader = _reader_for(path, genome)
    if reader.needs_genome:
        kind = reader.kind.upper()
        if genome is None:
            raise InputError(f"{path}: a {kind} input needs genome= (a genome FASTA: --genome "
                             "on the command line)")
        if length is None:
            raise InputError(f"{path}: a {kind} input needs length= (the window size)")
        genome = os.fspath(genome)
        require_file(genome, "genome FASTA", "genome FASTA file")
    elif genome is not None:
        warnings.warn(f"{path}: a genome (--genome, genome=) is only used for BED and VCF "
                      "inputs; ignored", SequenceWarning,
                      stacklevel=2)
        genome = None
    return reader.open(path, genome=genome, length=length, resize=resize, skip_mismatches=skip_mismatches,
                       alphabet=alphabet)


def _checked_length(length):
    if length is None:
        return None
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise InputError(f"length must be a positive integer, got {length!r}")
    return int(length)


def _reader_for(path, genome):
    """The first registered reader that accepts ``path``."""
    for reader in readers():
        if reader.can_open(path, genome):
            return reader
    raise InputError(
        f"{path}: unknown input format; expected FASTA (.fa/.fasta/.fna/.fas[.gz]), BED (.bed) "
        f"or VCF (.vcf[.gz]/.bcf) with a genome, or one-hot .npy"
    )
