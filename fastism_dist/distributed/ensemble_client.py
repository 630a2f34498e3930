"""The client side of an ensemble run: one task per (chunk, model group), one per chunk to finish.

The (chunk, group) tasks not yet done are submitted group by group (all chunks of group 0,
then group 1, ...), so a worker, which holds one group's models at a time, loads each group
about once. Each chunk not yet done gets a finishing task that depends on its pending group
tasks. When every chunk is done the store's scratch group is removed.
"""

from __future__ import annotations

import contextlib
import time

from distributed import as_completed

from fastism_dist.distributed.ensemble_worker import finish_chunk, score_group
from fastism_dist.distributed.progress import ChunkProgress
from fastism_dist.distributed.settings import CLEANUP_ERRORS
from fastism_dist.distributed.summary import RunTotals
from fastism_dist.errors import FastISMError
from fastism_dist.store import group_done_mask, remove_scratch

GROUP_KEY_PREFIX = "fastism-group"
FINISH_KEY_PREFIX = "fastism-chunk"


def group_key(run_id, chunk_index, group_index):
    """The task key of chunk ``chunk_index`` and model group ``group_index`` of run ``run_id``."""
    return f"{GROUP_KEY_PREFIX}-{run_id}-{chunk_index}-{group_index}"


def run_ensemble(cli, run, plugin_name, pending, retries, total, progress=True):
    """Score the pending chunks of an ensemble run and remove its scratch arrays at the end.

    Parameters
    ----------
    cli : distributed.Client
    run : RunPlan
        With ``run.ensemble`` set.
    plugin_name : str
    pending : list of (int, slice)
        The chunks not done.
    retries : int
    total : int
        All chunks of the store (for the progress bar).
    progress : bool

    Returns
    -------
    totals : RunTotals
        ``chunks`` counts finished chunks; the per-worker shares count (chunk, group) tasks.
    seconds : float

    Raises
    ------
    FastISMError
        The first failed task's own error, or one naming its chunk (and group).
    """
    t0 = time.perf_counter()
    flags = group_done_mask(run.target)
    groups, finishes = _submit(cli, run, plugin_name, pending, flags, retries)
    bar = ChunkProgress(cli, finishes, total, total - len(pending), enabled=progress)
    totals, finished = RunTotals(), 0
    try:
        for future in as_completed(groups + finishes, loop=cli.loop):
            if future.status == "error":
                raise _task_error(future)
            result = future.result()
            if "group" in result:
                totals.add(result)
            else:
                finished += 1
                bar.update(result["mutations"])
    except BaseException:  # an error or Ctrl-C: stop the other tasks, then re-raise
        with contextlib.suppress(*CLEANUP_ERRORS):
            cli.cancel(groups + finishes)
        raise
    finally:
        bar.close()
    remove_scratch(run.target, run.store_id)
    totals.chunks = finished
    return totals, time.perf_counter() - t0


def _submit(cli, run, plugin_name, pending, flags, retries):
    """Submit the pending (chunk, group) tasks group-major, then one finishing task per chunk."""
    by_chunk = {i: [] for i, _ in pending}
    groups = []
    for g in range(run.ensemble.n_groups):
        for i, rows in pending:
            if flags is not None and flags[i, g]:
                continue
            future = cli.submit(score_group, i, rows, g, plugin_name, retries=retries,
                                pure=False, key=group_key(run.run_id, i, g))
            by_chunk[i].append(future)
            groups.append(future)
    finishes = [cli.submit(finish_chunk, i, rows, plugin_name, *by_chunk[i], retries=retries,
                           pure=False, key=f"{FINISH_KEY_PREFIX}-{run.run_id}-{i}")
                for i, rows in pending]
    return groups, finishes


def _task_error(future):
    """The error to raise for a failed (chunk, group) or finishing task."""
    err = future.exception()
    if isinstance(err, FastISMError):
        return err
    parts = future.key.split("-")
    what = (f"chunk {parts[-2]} (model group {parts[-1]})" if future.key.startswith(GROUP_KEY_PREFIX)
            else f"chunk {parts[-1]}")
    first_line = str(err).splitlines()[0] if str(err) else ""
    error = FastISMError(f"{what} failed ({type(err).__name__}: {first_line}); completed chunks "
                         "and model groups are kept, rerun the same command to resume")
    error.__cause__ = err
    return error
