"""The worker side of an ensemble run: one group's models loaded at a time, (chunk, group)
tasks and the task that finishes a chunk.

A worker holds the executors of one model group (``group_size`` models) and keeps them while
its tasks are of that group; the client submits the tasks group by group, so a worker loads
each group about once. A (chunk, group) task reads the chunk's sequences, runs each model of
the group in file-name order into a ``ChunkSink`` (one model's reduced outputs at a time) and
writes the group's outputs (``keep``) or their float64 sum (``mean``) with the store's
``EnsembleWriter``, outside the worker's thread pool like a single model's task (see
``plugin``). A task whose (chunk, group) is already flagged done writes nothing.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
from distributed import get_worker

from fastism_dist.distributed.model import executor_class
from fastism_dist.distributed.sink import ChunkSink, leave_thread_pool, reference_letters
from fastism_dist.store import open_ensemble_writer, ref_name


class EnsembleScorer:
    """Scores (chunk, group) tasks of an ensemble run on one worker.

    Parameters
    ----------
    run : RunPlan
        With ``run.ensemble`` set.
    lock : threading.Lock
        Held while an executor runs (executors keep per-call state).
    write_slots : threading.BoundedSemaphore, optional
        Held while a task writes (see the plugin). Default is one slot.
    """

    def __init__(self, run, lock, write_slots=None):
        self.run = run
        self.lock = lock
        self.write_slots = write_slots or threading.BoundedSemaphore(1)
        self.writer = open_ensemble_writer(run.target, run.store_id)
        self._group = None
        self._executors = []

    def executors(self, group_index):
        """The executors of group ``group_index``, loading them (and dropping the previous
        group's) when the worker held another group."""
        if self._group != group_index:
            self._executors, self._group = [], None
            gc.collect()
            run = self.run
            self._executors = [executor_class(run.method)(path, **run.executor_options())
                               for path in run.ensemble.group(group_index)]
            self._group = group_index
        return self._executors

    def read(self, rows):
        """The chunk's sequences, (B, L, C) float32."""
        return np.asarray(self.run.source.read(np.arange(rows.start, rows.stop)),
                          dtype=np.float32)

    def run_group(self, chunk_index, rows, group_index, before_write=None):
        """Score chunk ``chunk_index`` (sequences ``rows``) with the models of one group;
        ``before_write`` as in ``ISMWorkerPlugin.run_chunk``.

        Returns
        -------
        dict
            ``chunk``, ``group``, ``sequences``, ``mutations`` (over the group's models),
            ``ism_s``, ``seconds`` and ``skipped`` (already done: nothing written).
        """
        t0 = time.perf_counter()
        if self.writer.is_done(chunk_index, group_index):
            return _result(chunk_index, group_index, rows, 0, 0.0, t0, skipped=True)
        with self.lock:
            executors = self.executors(group_index)
            x = self.read(rows)
            t_ism = time.perf_counter()
            values, mutations = self._group_values(executors, x, chunk_index)
            t_ism = time.perf_counter() - t_ism
        with self.write_slots:
            if before_write is not None:
                before_write()
            self.writer.write_group(chunk_index, group_index, values)
        return _result(chunk_index, group_index, rows, mutations, t_ism, t0)

    def _group_values(self, executors, x, chunk_index):
        """Each stored variable over the group's models: stacked (keep) or summed (mean)."""
        values, mutations = {}, 0
        for k, executor in enumerate(executors):
            sink = ChunkSink(self.run.output_plan, executor.output_names, None, chunk_index)
            mutations += executor(x, sink=sink)["mutations"]  # kept in the sink, not written
            for name in self.run.output_plan.outputs:
                for var, value in ((name, sink.mut[name]), (ref_name(name), sink.ref[name])):
                    _combine(values, var, value, k, len(executors), self.run.ensemble.mode)
        return values, mutations

    def finish(self, chunk_index, rows, results):
        """Finish chunk ``chunk_index`` once all its groups are done (see ``EnsembleWriter``).

        Returns
        -------
        dict
            ``chunk``, ``sequences``, ``mutations`` of this run's group tasks of the chunk.
        """
        t0 = time.perf_counter()
        mutations = sum(int(r["mutations"]) for r in results)
        if not self.writer.is_done(chunk_index):
            spec = self.run.spec
            x = self.read(rows)
            self.writer.finish(chunk_index,
                               reference_letters(x[:, spec.start:spec.end], self.run.bases))
        return {"chunk": int(chunk_index), "sequences": rows.stop - rows.start,
                "mutations": mutations, "seconds": time.perf_counter() - t0}


def _combine(values, var, value, k, n, mode):
    """Put model ``k`` (of ``n`` in the group) of ``var`` into ``values``.

    ``keep``: ``values[var]`` (B, n, *rest) float32, model ``k`` at ``[:, k]``; ``mean``: the
    float64 running sum, added in model order.
    """
    value = np.asarray(value)
    if mode == "keep":
        if k == 0:
            values[var] = np.empty((value.shape[0], n) + value.shape[1:], dtype=np.float32)
        values[var][:, k] = value
    elif k == 0:
        values[var] = value.astype(np.float64)
    else:
        values[var] += value


def _result(chunk_index, group_index, rows, mutations, ism_s, t0, skipped=False):
    return {"chunk": int(chunk_index), "group": int(group_index),
            "sequences": rows.stop - rows.start, "mutations": int(mutations), "ism_s": ism_s,
            "seconds": time.perf_counter() - t0, "skipped": skipped}


def _plugin(plugin_name):
    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None or getattr(plugin, "ensemble", None) is None:
        raise RuntimeError(f"worker {worker.address} has no ensemble plugin {plugin_name!r}")
    return worker, plugin


def score_group(chunk_index, rows, group_index, plugin_name):
    """The task of chunk ``chunk_index`` (sequences ``rows``) and model group ``group_index``."""
    worker, plugin = _plugin(plugin_name)
    out = plugin.ensemble.run_group(chunk_index, rows, group_index,
                                    before_write=leave_thread_pool)
    out["worker"] = worker.address
    return out


def finish_chunk(chunk_index, rows, plugin_name, *group_results):
    """The task that finishes chunk ``chunk_index`` after its (chunk, group) tasks."""
    worker, plugin = _plugin(plugin_name)
    out = plugin.ensemble.finish(chunk_index, rows, group_results)
    out["worker"] = worker.address
    return out
