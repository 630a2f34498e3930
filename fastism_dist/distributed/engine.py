"""``score``: saturation mutagenesis of many sequences on a Dask cluster, into a Zarr store.

``score`` plans the run once (``plan_run``: settings, model, sequences and any existing store
checked before a cluster starts), connects to the chosen cluster, writes the store template,
registers the run's worker plugin and submits one task per unfinished chunk. A rerun with the
same parameters skips the chunks already done.
"""

from __future__ import annotations

import sys
import time

from fastism_dist.distributed.client import execute
from fastism_dist.distributed.cluster import ClusterChoice, connect
from fastism_dist.distributed.interrupt import redeliver_lost_interrupts
from fastism_dist.distributed.run import plan_run
from fastism_dist.distributed.settings import DEFAULT_RETRIES, check_count
from fastism_dist.distributed.summary import ScoreSummary
from fastism_dist.errors import FastISMError
from fastism_dist.store import done_mask, remove_scratch, store_state


def score(model, input, out, workers=None, threads_per_worker=1, gpus=False, scheduler=None, *,
          security=None, client=None, progress=True, retries=DEFAULT_RETRIES, log_file=None,
          **run_options):
    """Saturation mutagenesis of every sequence in ``input`` on a Dask cluster, into ``out``.

    For a VCF input the store also holds, per sequence, each output with the ALT allele in
    place of REF (``o_alt``; NaN for indels) and the alleles (``variant_pos``, ``ref_allele``,
    ``alt_allele``).

    Parameters
    ----------
    model : keras.Model, str or list of str
        The model, or a path to a ``.keras`` / ``.h5`` file (that every worker can read); or an
        ensemble: a list of model files, a directory of them or a glob (used in file-name
        order; ``ensemble="mean"`` (default) or ``"keep"``, ``group_size`` models per task).
    input : str or SequenceSource
        FASTA, BED / VCF (with ``genome``) or ``.npy`` (N, L, C) file, or an opened source.
    out : str
        The Zarr store (local directory or fsspec URL every worker can reach).
    workers, threads_per_worker, gpus, scheduler, security, client
        The cluster: see ``ClusterChoice``. Default is a local cluster of one single-threaded
        worker process per CPU core.
    progress : bool
        Print the dashboard link, a progress bar and the summary. Default is True.
    retries : int
        Extra attempts per chunk after an error. Default is 3. Chunks on a lost worker are
        rescheduled by Dask.
    log_file : str, optional
        Where the cluster's log lines and the local workers' stderr go (see ``ClusterChoice``);
        an error or interruption once the cluster is up names it. Default is the terminal.
    **run_options
        What to compute and store, passed to ``plan_run``: ``chunk_size``, ``read_chunk``,
        ``batch_size``, ``start``, ``end``, ``method``, ``genome``, ``outputs``, ``tasks``,
        ``reduce``, ``dtype``, ``overwrite``, ``safe_mode``, ``resize``, ``skip_mismatches``,
        ``alphabet``, ``seq_input`` and ``other_inputs`` (multi-input models), ``rc`` and
        ``shifts`` (average over the reverse complement and shifts; see README), ``ensemble``
        and ``group_size`` (a list, directory or glob of models), ``xla`` (method "fast":
        "on", "off" or "auto"; see ``plan_run``).

    Returns
    -------
    ScoreSummary
    """
    t_wall = time.perf_counter()
    cluster = ClusterChoice(workers, threads_per_worker, gpus, scheduler, security, client,
                            log_file)
    check_count("retries", retries, minimum=0)
    run = plan_run(model, input, out, **run_options)
    if run.resume:
        done = done_mask(run.out)
        if done.all():
            if run.ensemble is not None:  # killed after its last chunk, before the clean-up
                remove_scratch(run.out, run.store_id)
            if progress:
                print(f"{run.out}: all {len(done)} chunks already done; nothing to compute",
                      flush=True)
            return ScoreSummary(run.out, run.n_sequences, len(done), 0, len(done), 0,
                                time.perf_counter() - t_wall, 0.0, chunk_size=run.chunk_size)
    try:
        with redeliver_lost_interrupts(), connect(cluster) as cli:
            summary = execute(cli, run, cluster.where, retries, progress)
    except KeyboardInterrupt:
        _say_interrupted(run.target, log_file)  # a replacing run writes beside the old store
        raise
    except FastISMError as err:
        if log_file is not None and err.args:
            err.args = (f"{err.args[0]} (log: {log_file})", *err.args[1:])
        raise
    summary.wall_s = time.perf_counter() - t_wall
    if progress:
        print(summary, flush=True)
    return summary


def _say_interrupted(out, log_file=None):
    """Tell how far an interrupted run got, in one line on stderr."""
    log = "" if log_file is None else f" (log: {log_file})"
    if store_state(out) != "store":
        print(f"interrupted before {out} was written{log}", file=sys.stderr, flush=True)
        return
    done = done_mask(out)
    print(f"interrupted: {int(done.sum())} of {len(done)} chunks done in {out}; "
          f"rerun the same command to resume{log}", file=sys.stderr, flush=True)
