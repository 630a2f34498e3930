"""Scoring many sequences on a Dask cluster into a Zarr store.

- ``engine``: ``score``, the entry point.
- ``run``: ``plan_run`` and ``RunPlan``, the run description built once on the client.
- ``cluster``: ``ClusterChoice`` and ``connect`` (local, CUDA, existing scheduler, client).
- ``client``: the submission loop and its results; ``summary``: ``ScoreSummary``.
- ``plugin``: ``ISMWorkerPlugin`` (model and executor per worker) and the task function.
- ``sink``: ``ChunkSink``, which reduces each batch on the worker and writes the chunk.
- ``variants``: VCF ALT outputs; ``inputs``, ``model``, ``names``, ``hashes``, ``settings``:
  what ``plan_run`` checks and records.
"""

from fastism_dist.distributed.client import chunk_key, execute, run_chunks
from fastism_dist.distributed.cluster import ClusterChoice, connect, dashboard_link
from fastism_dist.distributed.engine import score
from fastism_dist.distributed.model import EXECUTORS, executor_class
from fastism_dist.distributed.plugin import ISMWorkerPlugin, configure_tensorflow, score_chunk
from fastism_dist.distributed.progress import ChunkProgress
from fastism_dist.distributed.run import RunPlan, plan_run, write_template
from fastism_dist.distributed.settings import DEFAULT_RETRIES, auto_chunk_size
from fastism_dist.distributed.sink import ChunkSink, count_mutations, reference_letters
from fastism_dist.distributed.summary import RunTotals, ScoreSummary
from fastism_dist.distributed.variants import AltAlleles, apply_variants, count_indels

__all__ = [
    "AltAlleles",
    "ChunkProgress",
    "ChunkSink",
    "ClusterChoice",
    "DEFAULT_RETRIES",
    "EXECUTORS",
    "ISMWorkerPlugin",
    "RunPlan",
    "RunTotals",
    "ScoreSummary",
    "apply_variants",
    "auto_chunk_size",
    "chunk_key",
    "configure_tensorflow",
    "connect",
    "count_indels",
    "count_mutations",
    "dashboard_link",
    "executor_class",
    "execute",
    "plan_run",
    "reference_letters",
    "run_chunks",
    "score",
    "score_chunk",
    "write_template",
]
