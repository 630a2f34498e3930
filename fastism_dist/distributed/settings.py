"""Defaults of a distributed run and the check of its numeric settings."""

from __future__ import annotations

import dask
import numpy as np

from fastism_dist.errors import FastISMError

#: Extra attempts per chunk after an error.
DEFAULT_RETRIES = 3
#: Environment of every worker process started here (TensorFlow's C++ start-up log hidden).
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
#: How often local clusters run dask's statistical profiler and memory and system monitors.
#: distributed ships 10 ms, 100 ms and 500 ms; where workers fill every core, the time those
#: take comes straight out of ISM, and a scoring run needs none of them that often.
LOCAL_MONITORING = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}
#: What cleaning up after a failed or interrupted run may raise (a closing client, a lost
#: scheduler); suppressed, never allowed to hide the error that ended the run.
CLEANUP_ERRORS = (OSError, RuntimeError, TimeoutError, ValueError)
#: Skipped VCF records listed in the store's attributes (all are counted).
MAX_SKIPPED_LISTED = 1000

# Automatic chunk size: about AUTO_CHUNK_MUTATIONS mutations per task (executors batch better
# with more), at least AUTO_MIN_CHUNKS chunks (load balance), at most AUTO_CHUNK_BYTES of stored
# outputs per chunk, and at most MAX_AUTO_CHUNK sequences.
AUTO_CHUNK_MUTATIONS = 32768
AUTO_MIN_CHUNKS = 8
AUTO_CHUNK_BYTES = 32 * 2**20
MAX_AUTO_CHUNK = 256


def check_count(name, value, minimum=1):
    """Raise ``FastISMError`` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise FastISMError(f"{name} must be {what}, got {value!r}")


def local_cluster_config():
    """Dask config to set while a local cluster starts: worker processes started with *spawn*
    (never fork after TensorFlow is imported), and each ``LOCAL_MONITORING`` setting the
    user's dask config leaves at distributed's default (a value set in a dask config file, a
    ``DASK_*`` variable or ``dask.config.set`` wins).

    Returns
    -------
    dict of str to str
    """
    shipped = dask.config.merge(*dask.config.defaults)
    config = {key: value for key, value in LOCAL_MONITORING.items()
              if dask.config.get(key, None) == dask.config.get(key, None, config=shipped)}
    config["distributed.worker.multiprocessing-method"] = "spawn"
    return config


def auto_chunk_size(n_sequences, n_positions, n_substitutions, shapes, dtype="float32"):
    """Sequences per chunk: ~32k mutations per task, >= 8 chunks, <= 32 MiB of stored outputs.

    Parameters
    ----------
    n_sequences : int
        N, the sequences of the run.
    n_positions, n_substitutions : int
        W and S.
    shapes : list of tuple of int
        Per-sequence stored shape of each output (after any reducer).
    dtype : str
        Stored dtype. Default is float32.

    Returns
    -------
    int
    """
    per_sequence_mutations = max(n_positions * n_substitutions, 1)
    per_sequence_bytes = (sum(per_sequence_mutations * int(np.prod(s)) for s in shapes)
                          * np.dtype(dtype).itemsize)
    size = min(-(-AUTO_CHUNK_MUTATIONS // per_sequence_mutations),
               -(-n_sequences // AUTO_MIN_CHUNKS),
               AUTO_CHUNK_BYTES // max(per_sequence_bytes, 1),
               MAX_AUTO_CHUNK)
    return max(1, int(size))
