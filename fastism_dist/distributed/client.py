"""The client side of a run on a connected cluster: template, plugin, chunk tasks, results.

Every pending chunk becomes one task, submitted together (``client.map``); results are counted
as they complete, in constant time each, so a run of many small chunks costs the client time
linear in the number of chunks.
"""

from __future__ import annotations

import contextlib
import time

from distributed import as_completed

from fastism_dist.distributed.cluster import dashboard_link, n_workers
from fastism_dist.distributed.ensemble_client import run_ensemble
from fastism_dist.distributed.plugin import ISMWorkerPlugin, score_chunk
from fastism_dist.distributed.progress import ChunkProgress
from fastism_dist.distributed.run import discard_unstarted, publish, write_template
from fastism_dist.distributed.settings import CLEANUP_ERRORS
from fastism_dist.distributed.summary import RunTotals, ScoreSummary
from fastism_dist.errors import FastISMError
from fastism_dist.store import chunk_plan, create_scratch, done_mask

CHUNK_KEY_PREFIX = "fastism-chunk"


def chunk_key(run_id, chunk_index):
    """The task key of chunk ``chunk_index`` of run ``run_id``."""
    return f"{CHUNK_KEY_PREFIX}-{run_id}-{chunk_index}"


def execute(cli, run, where, retries, progress=True):
    """Score the run's pending chunks on a connected client.

    Writes the template of a new store, registers the run's plugin (which loads the model on
    every worker), runs one task per chunk not yet done and unregisters the plugin. A run
    replacing a store swaps its new one in at the end, once every chunk is done.

    Parameters
    ----------
    cli : distributed.Client
    run : RunPlan
    where : str
        The cluster in words (for the first printed line).
    retries : int
        Extra attempts per chunk after an error.
    progress : bool
        Print what runs where, the dashboard link and a progress bar. Default is True.

    Returns
    -------
    ScoreSummary
        With ``wall_s`` left at 0 for the caller to fill.
    """
    link = dashboard_link(cli)
    workers = n_workers(cli)
    if progress:
        print(f"fastism-dist: scoring {run.n_sequences} sequences on {workers} worker(s) "
              f"({where})", flush=True)
        print(f"dashboard: {link or 'not available (install bokeh)'}", flush=True)
    if not run.resume and not run.staged:
        write_template(run)
    try:
        plan, pending, totals, compute_s, setup_s = _score_pending(cli, run, retries, progress)
        publish(run)
    except BaseException:  # an error or Ctrl-C: a replacing run's empty new store goes
        with contextlib.suppress(OSError):
            discard_unstarted(run)
        raise
    return ScoreSummary(
        store=run.out, n_sequences=run.n_sequences, n_chunks=len(plan),
        chunks_run=totals.chunks, chunks_skipped=len(plan) - len(pending),
        mutations=totals.mutations, wall_s=0.0, compute_s=compute_s, n_workers=workers,
        setup_s=setup_s, dashboard_link=link, per_worker=totals.per_worker, tasks=totals.tasks,
        chunk_size=run.chunk_size,
    )


def _score_pending(cli, run, retries, progress):
    """Register the run's plugin, score every chunk of ``run.target`` not done, unregister.

    Returns
    -------
    plan, pending : list of (int, slice)
        All chunks of the store, and those scored now.
    totals : RunTotals
    compute_s, setup_s : float
        Seconds scoring, and registering the plugin (loading the model on every worker).
    """
    if run.ensemble is not None:  # the (chunk, group) flags the plugin's writer opens
        create_scratch(run.target)
    plan = chunk_plan(run.target)
    done = done_mask(run.target)
    pending = [(i, rows) for i, rows in plan if not done[i]]
    plugin = ISMWorkerPlugin(run)
    t_setup = time.perf_counter()
    cli.register_plugin(plugin)  # loads the model and builds the executor on every worker
    setup_s = time.perf_counter() - t_setup
    try:
        if run.ensemble is not None:
            totals, compute_s = run_ensemble(cli, run, plugin.name, pending, retries,
                                             total=len(plan), progress=progress)
        else:
            totals, compute_s = run_chunks(cli, plugin.name, run.run_id, pending, retries,
                                           total=len(plan), progress=progress)
    finally:
        with contextlib.suppress(*CLEANUP_ERRORS):
            cli.unregister_worker_plugin(plugin.name)
    return plan, pending, totals, compute_s, setup_s


def run_chunks(cli, plugin_name, run_id, pending, retries, total, progress=True):
    """Submit one task per pending chunk and wait for them all.

    Parameters
    ----------
    cli : distributed.Client
    plugin_name : str
        The run's registered ``ISMWorkerPlugin``.
    run_id : str
    pending : list of (int, slice)
        Chunk index and sequence rows of each chunk to compute.
    retries : int
    total : int
        All chunks of the store (for the progress bar).
    progress : bool
        Default is True.

    Returns
    -------
    totals : RunTotals
    seconds : float
        From the first submission to the last result.

    Raises
    ------
    FastISMError
        The first failed chunk's own ``FastISMError``, or one naming the chunk; the other tasks
        are cancelled, completed chunks stay done.
    """
    t0 = time.perf_counter()
    futures = cli.map(score_chunk, [i for i, _ in pending], [rows for _, rows in pending],
                      key=[chunk_key(run_id, i) for i, _ in pending], retries=retries,
                      pure=False, plugin_name=plugin_name) if pending else []
    bar = ChunkProgress(cli, futures, total, total - len(pending), enabled=progress)
    totals = RunTotals()
    try:
        for future in as_completed(futures, loop=cli.loop):
            if future.status == "error":
                raise _chunk_error(future)
            result = future.result()
            totals.add(result)
            bar.update(result["mutations"])
    except BaseException:  # an error or Ctrl-C: stop the other tasks, then re-raise
        with contextlib.suppress(*CLEANUP_ERRORS):
            cli.cancel(futures)
        raise
    finally:
        bar.close()
    return totals, time.perf_counter() - t0


def _chunk_error(future):
    """The error to raise for a failed chunk task."""
    err = future.exception()
    if isinstance(err, FastISMError):
        return err
    first_line = str(err).splitlines()[0] if str(err) else ""
    chunk = future.key.rsplit("-", 1)[-1]
    error = FastISMError(f"chunk {chunk} failed ({type(err).__name__}: {first_line}); completed "
                         "chunks are kept, rerun the same command to resume")
    error.__cause__ = err
    return error
