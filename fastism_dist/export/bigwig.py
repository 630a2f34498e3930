"""Per-position importance as a bigWig track on the genome.

Each scored position of a sequence with genomic coordinates becomes one base of the track.
Where windows overlap, a base takes the value from the window whose centre is nearest to it
(ties: the sequence that comes first in the store), because a position near a window's centre
is scored with the most context on both sides.

Chunks of sequences are read one at a time; their positions are spilled to one temporary file
per chromosome, and each chromosome is sorted and written in turn, so memory holds one chunk
or one chromosome's scored positions, never the store.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from fastism_dist.analysis import choose_output, genomic_coordinate, importance, mean_centred
from fastism_dist.errors import FastISMError
from fastism_dist.export.names import CHROM_SIZES, SCORES
from fastism_dist.export.stream import (
    as_text,
    atomic_file,
    one_value_per_mutation,
    open_store,
    require_coordinates,
    seq_chunks,
)
from fastism_dist.store import (BASE, CHROM, END, PAD_LEFT, PAD_RIGHT, POS, REF_BASE, SEQ, START,
                                read_params)

POSITION_RECORD = np.dtype([("coord", "<i8"), ("distance", "<i8"), ("seq", "<i8"), ("value", "<f4")])
"""One scored position: 0-based coordinate, twice its distance from its window's centre, the
sequence's index in the store, the score."""


@dataclass(frozen=True)
class BigWigTrack:
    """What :func:`export_bigwig` wrote.

    Attributes
    ----------
    path : str
    chrom_sizes : dict of str to int
        The header, in file order (chromosomes with at least one value).
    sizes_from : str
        Where the sizes came from: the genome's ``.fai``, the store, or the largest coordinate
        scored on each chromosome.
    n_positions : int
        Bases with a value.
    """

    path: str
    chrom_sizes: dict
    sizes_from: str
    n_positions: int


def reference_base_scores(centred, letters, bases):
    """The mean-centred contribution of the reference letter at each position.

    Parameters
    ----------
    centred : ndarray of shape (B, L, C)
    letters : ndarray of str, shape (B, L)
    bases : ndarray of str, shape (C,)

    Returns
    -------
    ndarray of float32, shape (B, L)
        NaN where the letter is none of ``bases`` (N, padding).
    """
    is_ref = as_text(letters)[..., None] == as_text(bases)
    picked = np.take_along_axis(centred, is_ref.argmax(-1)[..., None], axis=-1)[..., 0]
    return np.where(is_ref.any(-1), picked, np.nan).astype(np.float32)


def position_scores(part, output, score="l2", task=None):
    """One score per position of a chunk of sequences.

    Parameters
    ----------
    part : xarray.Dataset
        One chunk of a store.
    output : str
    score : {"l2", "ref"}
        ``l2``: the L2 norm over bases (and any tasks left) of the change from the reference
        (:func:`fastism_dist.analysis.importance`); ``ref``: the mean-centred contribution of the
        reference base, which needs a single task.
    task : int, str or dict, optional

    Returns
    -------
    ndarray of float32, shape (B, L)
    """
    if score == "l2":
        return np.asarray(importance(part, output, task).transpose(SEQ, POS).values, np.float32)
    centred = one_value_per_mutation(mean_centred(part, output), task)
    centred = centred.transpose(SEQ, POS, BASE).values
    return reference_base_scores(centred, part[REF_BASE].values, part[BASE].values)


def centre_distances(part):
    """Twice the distance of each position from its window's centre, (B, L) int64."""
    length = (part[END].values - part[START].values).astype(np.int64)
    for pad in (PAD_LEFT, PAD_RIGHT):  # a window clipped at a chromosome end
        if pad in part.variables:
            length = length + part[pad].values.astype(np.int64)
    pos = part[POS].values.astype(np.int64)
    return np.abs(2 * pos[None, :] - (length[:, None] - 1))


class PositionSpill:
    """Scored positions kept on disk, one file of :data:`POSITION_RECORD` per chromosome."""

    def __init__(self, folder):
        self.folder = folder
        self.files = {}
        self.largest = {}

    def add(self, chrom, records):
        """Append ``records`` of chromosome ``chrom``."""
        name = self.files.setdefault(chrom, os.path.join(self.folder, f"{len(self.files)}.bin"))
        with open(name, "ab") as fh:
            fh.write(records.tobytes())
        top = int(records["coord"].max()) + 1
        self.largest[chrom] = max(top, self.largest.get(chrom, 0))

    def read(self, chrom):
        """Every record of ``chrom``, in the order added."""
        return np.fromfile(self.files[chrom], dtype=POSITION_RECORD)

    def spill_chunk(self, part, first_seq, scores):
        """Spill the scored positions of one chunk that lie on the genome.

        ``scores`` is (B, L); positions without a coordinate or with a NaN score are dropped.
        """
        coords = genomic_coordinate(part).transpose(SEQ, POS).values
        seq_idx, pos_idx = np.nonzero((coords >= 0) & ~np.isnan(scores))
        records = np.empty(seq_idx.size, POSITION_RECORD)
        records["coord"] = coords[seq_idx, pos_idx]
        records["distance"] = centre_distances(part)[seq_idx, pos_idx]
        records["seq"] = first_seq + seq_idx
        records["value"] = scores[seq_idx, pos_idx]
        chroms = as_text(part[CHROM].values)[seq_idx]
        for chrom in np.unique(chroms):
            self.add(str(chrom), records[chroms == chrom])


def nearest_centre(records):
    """One value per coordinate: the record nearest its window's centre (ties: lowest seq).

    Returns
    -------
    coords : ndarray of int64, sorted
    values : ndarray of float32
    """
    ordered = records[np.lexsort((records["seq"], records["distance"], records["coord"]))]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered["coord"][1:] != ordered["coord"][:-1]
    return ordered["coord"][first], ordered["value"][first]


def consecutive_runs(coords):
    """(first, stop) index pairs of the runs of consecutive coordinates in sorted ``coords``."""
    breaks = np.flatnonzero(np.diff(coords) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(coords)]])
    return list(zip(starts.tolist(), stops.tolist()))


def read_fai(genome):
    """Chromosome lengths of a genome FASTA, from its ``.fai`` (built with pysam if missing).

    Parameters
    ----------
    genome : str
        The FASTA, or its ``.fai`` itself.

    Returns
    -------
    sizes : dict of str to int, in the genome's order
    source : str
        The file read.
    """
    genome = os.fspath(genome)
    fai = genome if genome.endswith(".fai") else genome + ".fai"
    if not os.path.exists(fai):
        if not os.path.exists(genome):
            raise FastISMError(f"genome not found: {genome}")
        import pysam

        with pysam.FastaFile(genome) as fasta:
            return dict(zip(fasta.references, fasta.lengths)), f"{genome} (index built by pysam)"
    sizes = {}
    with open(fai) as fh:
        for number, line in enumerate(fh, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[1].isdigit():
                raise FastISMError(f"{fai} line {number}: expected NAME<TAB>LENGTH..., got {line.strip()!r}")
            sizes[fields[0]] = int(fields[1])
    return sizes, fai


def stored_chrom_sizes(ds, path):
    """``{chrom: length}`` from the store's attributes or parameters, or None."""
    sizes = ds.attrs.get(CHROM_SIZES) or read_params(path).get(CHROM_SIZES)
    if isinstance(sizes, str):
        sizes = json.loads(sizes)
    if not sizes:
        return None
    pairs = sizes.items() if isinstance(sizes, dict) else sizes
    return {str(chrom): int(length) for chrom, length in pairs}


def choose_chrom_sizes(largest, genome, stored):
    """The header's chromosome sizes and where they came from.

    Parameters
    ----------
    largest : dict of str to int
        Per chromosome with data, one past the largest coordinate scored.
    genome : str or None
        A genome FASTA (or ``.fai``): its sizes win.
    stored : dict or None
        Sizes the store carries, used when no genome is given.

    Returns
    -------
    sizes : dict of str to int
        Chromosomes with data only, in the source's order (by name for the largest coordinate).
    source : str
    """
    if genome is not None:
        known, source = read_fai(genome)
        source = f"genome index {source}"
    elif stored is not None:
        known, source = stored, f"the store's {CHROM_SIZES!r}"
    else:
        return {c: largest[c] for c in sorted(largest)}, "the largest coordinate scored on each chromosome"
    for chrom, top in largest.items():
        if chrom not in known:
            raise FastISMError(f"chromosome {chrom!r} of the store is not in {source}")
        if top > known[chrom]:
            raise FastISMError(f"position {top - 1} on {chrom!r} lies past its length "
                               f"{known[chrom]} in {source}: is it the genome the store was scored on?")
    return {c: n for c, n in known.items() if c in largest}, source


def export_bigwig(store, out, output=None, task=None, score="l2", genome=None, progress=True):
    """Write a per-position importance track of one output as a bigWig file.

    Parameters
    ----------
    store : str or os.PathLike
        A store with genomic coordinates (a BED, VCF or coordinate-FASTA run).
    out : str or os.PathLike
        The ``.bw`` file (replaced if it exists).
    output : str, optional
        Default is the store's only output.
    task : int, str or dict, optional
        Choose a task first (see :func:`fastism_dist.analysis.select_task`).
    score : {"l2", "ref"}
        ``l2`` (default): L2 norm over bases and tasks left of the change from the reference.
        ``ref``: mean-centred contribution of the reference base (one task needed).
    genome : str, optional
        The genome FASTA (or its ``.fai``) for the header's chromosome sizes. Without it the
        store's ``chrom_sizes`` are used if it has them, else the largest coordinate scored.
    progress : bool
        Show a progress bar. Default is True.

    Returns
    -------
    BigWigTrack
        Overlapping windows: each base takes the value of the window whose centre is nearest
        (ties: the earlier sequence); reverse-strand windows are mapped back to the genome;
        padded positions, N (for ``ref``) and sequences not yet scored are left out.
    """
    if score not in SCORES:
        raise FastISMError(f"score must be one of {list(SCORES)}, got {score!r}")
    _pybigwig()
    path, ds = open_store(store)
    output = choose_output(ds, output)
    require_coordinates(ds, path, "bigWig export")
    if score == "ref":
        one_value_per_mutation(ds[output].isel({SEQ: slice(0, 1)}), task)
    with tempfile.TemporaryDirectory(prefix="fastism_bigwig_") as folder:
        spill = PositionSpill(folder)
        for rows in seq_chunks(path, progress, desc=f"bigwig {output}"):
            part = ds.isel({SEQ: rows})
            spill.spill_chunk(part, rows.start, position_scores(part, output, score, task))
        if not spill.files:
            raise FastISMError(f"store {path}: no scored position of {output!r} lies on the genome")
        sizes, source = choose_chrom_sizes(spill.largest, genome, stored_chrom_sizes(ds, path))
        with atomic_file(out) as partial:
            n_positions = _write_track(partial, sizes, spill)
    return BigWigTrack(os.path.abspath(os.fspath(out)), sizes, source, n_positions)


def _pybigwig():
    """The pyBigWig module, or a one-line error saying to install it."""
    try:
        import pyBigWig
    except ImportError:
        raise FastISMError("bigWig export needs the pyBigWig package: pip install pyBigWig") from None
    return pyBigWig


def _write_track(file, sizes, spill):
    """Write every chromosome of ``sizes`` from ``spill`` into a new bigWig; returns the bases written."""
    track = _pybigwig().open(file, "w")
    n_positions = 0
    try:
        track.addHeader(list(sizes.items()))
        for chrom in sizes:
            coords, values = nearest_centre(spill.read(chrom))
            for first, stop in consecutive_runs(coords):
                track.addEntries(chrom, int(coords[first]), values=values[first:stop].astype(np.float64),
                                 span=1, step=1)
            n_positions += len(coords)
    finally:
        track.close()
    return n_positions
