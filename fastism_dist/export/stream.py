"""What every export shares: opening a store, walking its chunks of sequences, atomic files.

Every export reads a store one chunk of sequences at a time (the store's own Zarr chunks along
``seq``), so its memory holds one chunk, never the whole store.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import numpy as np
from tqdm import tqdm

from fastism_dist.analysis import select_task, task_dims
from fastism_dist.errors import FastISMError
from fastism_dist.store import (
    CHROM,
    START,
    STRING_DTYPE,
    chunk_plan,
    done_mask,
    open_results,
    store_path,
    store_state,
)

_NOT_A_STORE = {
    "absent": "does not exist",
    "incomplete": "is an unfinished store template (rerun the score command to recreate it)",
    "zarr": "is a Zarr store not written by fastism_dist",
    "other": "is not a Zarr store",
}


def open_store(store):
    """The store at ``store`` as a lazy Dataset.

    Parameters
    ----------
    store : str or os.PathLike
        A store written by ``fastism_dist.score`` (local path or fsspec URL).

    Returns
    -------
    path : str
        The store's absolute path (or URL).
    ds : xarray.Dataset
        Dask-backed; nothing is loaded.
    """
    path = store_path(store)
    state = store_state(path)
    if state != "store":
        raise FastISMError(f"store {path} {_NOT_A_STORE[state]}")
    return path, open_results(path)


def seq_chunks(path, progress=True, desc=None):
    """The ``seq`` rows of each chunk of the store, in order, behind an optional tqdm bar.

    Parameters
    ----------
    path : str
        The store.
    progress : bool
        Show a tqdm bar (one step per chunk) on stderr. Default is True.
    desc : str, optional
        The bar's label.

    Returns
    -------
    iterable of slice
    """
    slices = [rows for _, rows in chunk_plan(path)]
    return tqdm(slices, desc=desc, unit="chunk", disable=not progress)


def as_text(values):
    """``values`` (str, object or StringDType array) as a NumPy StringDType array."""
    return np.asarray(values).astype(STRING_DTYPE)


def require_done(path, what):
    """Raise unless every chunk of the store is complete (``what`` names the export)."""
    done = done_mask(path)
    if not done.all():
        raise FastISMError(
            f"store {path} is not complete ({int(done.sum())} of {done.size} chunks done): "
            f"finish the run (rerun the same score command) before {what}")


def require_coordinates(ds, path, what):
    """Raise unless the store knows the genomic window of its sequences."""
    if CHROM not in ds.variables or START not in ds.variables:
        raise FastISMError(
            f"store {path} has no genomic coordinates ({CHROM!r}, {START!r}): {what} needs a "
            "run on BED or VCF input with a genome, or FASTA headers such as chr1:100-200(+)")


def one_value_per_mutation(da, task=None, sum_tasks=False):
    """Choose or add the output's tasks so that one value is left per (seq, pos, base).

    Parameters
    ----------
    da : DataArray of shape (seq, pos, base, *o_dims)
    task : int, str or dict, optional
        Chosen as :func:`fastism_dist.analysis.select_task` chooses.
    sum_tasks : bool
        Add up every task dimension left. Default is False.

    Returns
    -------
    DataArray of shape (seq, pos, base)
    """
    if task is not None and sum_tasks:
        raise FastISMError("give either a task (--task) or sum_tasks (--sum-tasks), not both")
    da = select_task(da, task)
    left = task_dims(da)
    if sum_tasks:
        return da.sum(left, skipna=False)
    if left:
        sizes = ", ".join(f"{dim}={da.sizes[dim]}" for dim in left)
        raise FastISMError(
            f"output {da.name!r} has several values per mutation ({sizes}): choose one with --task "
            "(task=) or add them with --sum-tasks (sum_tasks=True)")
    return da


@contextlib.contextmanager
def atomic_file(path):
    """Write a file under a temporary name beside ``path``; rename it to ``path`` on success.

    Yields the temporary path. On an error the temporary file is removed and ``path`` is left as
    it was, so a reader never sees half a file.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
