"""The bundled demo: score 64 sequences with a small motif CNN, open the store, plot one.

The model and sequences in ``fastism_dist/data/`` were made by ``data/make_demo.py`` (see
``data/README.md``): a CNN with input (200, 4) and three sigmoid outputs (``motifs``: AP-1,
HNF4A, CTCF present) trained on random sequences with JASPAR motif instances planted in them,
and held-back sequences whose planted motifs are listed in ``demo_truth.tsv``. The task names
are beside the model, in ``demo_model.tasks.json``.
"""

from __future__ import annotations

import csv
import json
import os
from typing import NamedTuple

import numpy as np

from fastism_dist.analysis import (importance, open_results, plot_ism, save_png, task_dims,
                                   top_window_start)
from fastism_dist.core import FastISM
from fastism_dist.distributed import score
from fastism_dist.errors import FastISMError
from fastism_dist.io import open_sequences
from fastism_dist.store import SEQ

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MODEL_FILE = "demo_model.keras"
SEQUENCES_FILE = "demo_sequences.fa"
TRUTH_FILE = "demo_truth.tsv"
TASKS_FILE = "demo_model.tasks.json"
OUTPUT = "motifs"
TASKS = ("AP-1", "HNF4A", "CTCF")
STORE_NAME = "demo.zarr"

__all__ = ["demo_files", "demo_task_names", "read_truth", "ism_importance", "top_window_hits",
           "run_demo", "DemoResult"]


class DemoFiles(NamedTuple):
    """Paths of the bundled demo files."""

    model: str
    sequences: str
    truth: str


class Site(NamedTuple):
    """One planted motif instance: positions ``start..end`` (0-based, half-open) of sequence ``name``."""

    name: str
    motif: str
    start: int
    end: int
    strand: str


class DemoResult(NamedTuple):
    """What :func:`run_demo` wrote."""

    store: str
    png: str
    seq: str


def demo_files():
    """The bundled model, sequences and truth table.

    Returns
    -------
    DemoFiles
    """
    files = DemoFiles(*(os.path.join(DATA_DIR, f) for f in (MODEL_FILE, SEQUENCES_FILE, TRUTH_FILE)))
    for path in files:
        if not os.path.exists(path):
            raise FastISMError(f"demo file missing: {path} (reinstall fastism_dist, or run data/make_demo.py)")
    return files


def demo_task_names():
    """Output name -> names of its tasks, from ``demo_model.tasks.json`` beside the model.

    Returns
    -------
    dict of str to list of str
        ``{"motifs": ["AP-1", "HNF4A", "CTCF"]}``.
    """
    with open(os.path.join(DATA_DIR, TASKS_FILE)) as fh:
        return {str(k): [str(t) for t in v] for k, v in json.load(fh).items()}


def read_truth(path=None):
    """The planted motifs: list of :class:`Site`, from ``demo_truth.tsv`` by default."""
    path = path or demo_files().truth
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [Site(r["name"], r["motif"], int(r["start"]), int(r["end"]), r["strand"]) for r in rows]


def ism_importance(model, x, batch_size=1024):
    """In-process fast ISM of ``x`` and the L2 importance of each position.

    Parameters
    ----------
    model : keras.Model or str
        A model with one output of shape (T,), e.g. the demo model.
    x : ndarray of shape (B, L, C)
        One-hot sequences.
    batch_size : int
        Mutations per model call. Default is 1024.

    Returns
    -------
    ref : ndarray of shape (B, T)
        Reference outputs.
    importance : ndarray of shape (B, L)
        ``sqrt(sum over substitutions and tasks of (mut - ref)**2)``.
    """
    res = FastISM(model, check=False, batch_size=batch_size)(x)
    ref = np.asarray(res.ref[0], dtype=np.float64)
    mut = np.asarray(res.mut[0], dtype=np.float64)  # (B, L, S, T)
    d = mut - ref[:, None, None]
    imp = np.sqrt((d * d).reshape(d.shape[0], d.shape[1], -1).sum(-1))
    return ref, imp


def top_window_hits(model=None, sequences=None, truth=None, window=15):
    """Whether the top-importance window of each motif-carrying sequence overlaps a planted motif.

    Parameters
    ----------
    model, sequences, truth : str, optional
        Default is the bundled demo files.
    window : int
        Width of the window with the largest summed importance. Default is 15.

    Returns
    -------
    dict of str to bool
        Sequence name -> overlap, for every sequence with at least one planted motif.
    """
    files = demo_files() if None in (model, sequences, truth) else None
    model = model or files.model
    source = open_sequences(sequences or files.sequences)
    sites = read_truth(truth or files.truth)
    x = source.read(slice(None))
    _, imp = ism_importance(model, x)
    starts = top_window_start(imp, window)
    by_name = {}
    for site in sites:
        by_name.setdefault(site.name, []).append(site)
    hits = {}
    for i, name in enumerate(source.ids):
        if name not in by_name:
            continue
        lo, hi = int(starts[i]), int(starts[i]) + window
        hits[name] = any(lo < s.end and s.start < hi for s in by_name[name])
    return hits


def run_demo(out_dir, workers=2, progress=True, overwrite=True, log_file=None):
    """Score the demo sequences on a local Dask cluster and plot the strongest one.

    Parameters
    ----------
    out_dir : str
        Directory for ``demo.zarr`` and the PNG (created if missing).
    workers : int
        Local Dask workers. Default is 2.
    progress : bool
        Print where things are, the dashboard link and a progress bar. Default is True.
    overwrite : bool
        Replace an existing ``demo.zarr``. Default is True.
    log_file : str, optional
        Where the cluster's log lines go (see ``score``). Default is the terminal.

    Returns
    -------
    DemoResult
        ``store`` (the Zarr path), ``png`` (``out_dir/<seq>.png``) and ``seq`` (the sequence
        plotted: the one with the largest single-position importance).
    """
    files = demo_files()
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FastISMError(f"{out_dir} exists and is not a directory; the demo writes "
                           f"{STORE_NAME} and a PNG into a directory")
    os.makedirs(out_dir, exist_ok=True)
    store = os.path.join(out_dir, STORE_NAME)
    score(files.model, files.sequences, store, workers=workers, progress=progress,
          overwrite=overwrite, log_file=log_file)
    ds = open_results(store)
    task_dim = task_dims(ds[OUTPUT])[0]
    ds = ds.assign_coords({task_dim: demo_task_names()[OUTPUT]})  # where the store has indices
    peak = importance(ds, OUTPUT).max("pos").compute()
    seq = str(peak[SEQ].values[int(np.nanargmax(peak.values))])
    fig = plot_ism(ds, seq, output=OUTPUT, window=None)
    png = save_png(fig, os.path.join(out_dir, f"{seq}.png"))
    if progress:
        print(f"store: {store}", flush=True)
        print(f"plot of {seq}: {png}", flush=True)
        print(f"open it with: fastism_dist.open_results({store!r}); tasks of {OUTPUT!r}: "
              f"{', '.join(demo_task_names()[OUTPUT])}", flush=True)
    return DemoResult(store, png, seq)
