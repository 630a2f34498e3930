"""The worker side: one loaded model and executor per worker, and the task that scores a chunk.

The run's ``ISMWorkerPlugin`` travels once to every worker with the run's ``RunPlan`` (model
path or bytes, sequence source, store, output plan: never arrays of data). Its ``setup`` loads
the model, builds the executor, warms it up (traces its functions on random sequences shaped
like the run's chunks) and opens the store writer once per worker. A task carries only
its chunk index and row range: the worker reads its own rows, runs ISM into a ``ChunkSink``
(which reduces each batch as it arrives), then writes the chunk and so marks it done.

A task writes outside the worker's thread pool (dask's ``secede``), so the worker's next task
runs ISM while this one writes: the store write is off the critical path. Each worker has as
many write slots as threads; a task waits for a slot before it leaves the pool, so a slow store
holds back the next ISM instead of piling chunks up in memory. A task still returns only once
its chunk is written and marked done.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from functools import partial

import numpy as np
from distributed import WorkerPlugin, get_worker

from fastism_dist.core import AveragedISM
from fastism_dist.distributed.ensemble_worker import EnsembleScorer
from fastism_dist.distributed.model import executor_class, model_file
from fastism_dist.distributed.settings import WORKER_ENV
from fastism_dist.distributed.sink import ChunkSink, leave_thread_pool, reference_letters
from fastism_dist.distributed.variants import AltAlleles
from fastism_dist.store import n_chunks, open_writer

PLUGIN_NAME = "fastism-model"


class ISMWorkerPlugin(WorkerPlugin):
    """Holds one loaded model and its ISM executor per worker, reused by every task of a run.

    Only the run description is pickled; ``setup`` (on the worker) loads the model, builds the
    executor and opens the store; ``teardown`` drops them. Each run registers its own instance,
    named ``fastism-model-<run id>``, so two runs on one cluster never replace each other's
    model.

    Parameters
    ----------
    run : RunPlan
        The run, as planned on the client.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, run):
        self.run = run
        self.name = f"{PLUGIN_NAME}-{run.run_id}"
        self._clear()

    def _clear(self):
        self.executor = None
        self.writer = None
        self.alt_alleles = None
        self.ensemble = None
        self._lock = None
        self._write_slots = None
        self._predict = None

    def __getstate__(self):
        return {"run": self.run, "name": self.name}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._clear()

    def setup(self, worker=None):
        run = self.run
        threads = int(getattr(getattr(worker, "state", None), "nthreads", 0) or 1)
        configure_tensorflow(threads)
        self._lock = threading.Lock()
        self._write_slots = threading.BoundedSemaphore(threads)
        if run.ensemble is not None:  # models are loaded group by group, by the tasks
            self.ensemble = EnsembleScorer(run, self._lock, self._write_slots)
            return
        with model_file(run.model_ref) as path:
            self.executor = build_executor(run, path)
        self._warm_up()
        self.writer = open_writer(run.target, run.store_id)
        if run.alt:
            self.alt_alleles = AltAlleles(self._call_model, self.executor.output_names,
                                          run.source.variants(), run.source.alphabet,
                                          run.output_plan)

    def _warm_up(self):
        """Trace the executor's functions before the first task: ISM at a few positions of
        random one-hot sequences (the source is not read: it may be slow), in batches of a
        chunk's sequences and of the last, shorter chunk's: the shapes the tasks will use."""
        run = self.run
        n = min(run.chunk_size, run.n_sequences)
        last = run.n_sequences - (n_chunks(run.n_sequences, run.chunk_size) - 1) * run.chunk_size
        seq = self.executor.seq
        letters = np.random.default_rng(0).integers(0, seq.channels, (n, seq.length))
        x = np.eye(seq.channels, dtype=np.float32)[letters]
        others = None if self.run.other_inputs is None else self.run.other_inputs.read(slice(0, n))
        for size in sorted({n, last}, reverse=True):
            self.executor.warm_up(x[:size], None if others is None else [o[:size] for o in others])

    def teardown(self, worker=None):
        self._clear()

    def _call_model(self, x):
        """The executor's model on ``x`` (n, L, C): list of (n, *out_k) float32 arrays; averaged
        over the views like the mutants where the run averages."""
        if isinstance(self.executor, AveragedISM):
            return self.executor.predict(x)
        if self._predict is None:
            import tensorflow as tf

            model = self.executor.model

            @tf.function(reduce_retracing=True)
            def predict(inputs):
                return model(inputs, training=False)

            self._predict = predict
        from keras import tree

        return [np.asarray(o, dtype=np.float32) for o in tree.flatten(self._predict(x))]

    def run_chunk(self, chunk_index, rows, before_write=None):
        """Read sequences ``rows`` (a slice) of the source, run ISM and write chunk ``chunk_index``.

        ``before_write`` (optional) is called once the chunk is computed and a write slot is
        free, just before writing: the task passes ``leave_thread_pool``.

        Returns
        -------
        dict
            ``chunk``, ``sequences``, ``mutations``, ``ism_s`` (ISM and ALT outputs),
            ``write_s``, ``seconds`` (the whole task), ``xla`` (``xla_choice``) and
            ``timeline``: wall-clock times (``time.time()``) of the task's start, the start
            and end of its ISM, the start of its write and its end.
        """
        if self.executor is None:
            raise RuntimeError(f"{self.name}: the model is not loaded on this worker")
        run, spec = self.run, self.executor.spec
        t0, started = time.perf_counter(), time.time()
        x = np.asarray(run.source.read(np.arange(rows.start, rows.stop)), dtype=np.float32)
        others = None if run.other_inputs is None else run.other_inputs.read(rows)
        alt = None if self.alt_alleles is None else partial(self.alt_alleles.outputs, x, rows)
        sink = ChunkSink(run.output_plan, self.executor.output_names, self.writer, chunk_index,
                         dtype=run.dtype, alt=alt,
                         ref_base=reference_letters(x[:, spec.start:spec.end], run.bases))
        with self._lock:  # executors keep per-call state: one ISM at a time per worker
            t_ism, ism_started = time.perf_counter(), time.time()
            counts = self.executor(x, other_inputs=others, sink=sink)
            t_ism, ism_done = time.perf_counter() - t_ism, time.time()
        with self._write_slots:
            if before_write is not None:
                before_write()
            write_started = time.time()
            sink.write()
        return {"chunk": int(chunk_index), "sequences": counts["sequences"],
                "mutations": counts["mutations"], "ism_s": t_ism, "write_s": sink.write_s,
                "seconds": time.perf_counter() - t0, "xla": xla_choice(self.executor),
                "timeline": (started, ism_started, ism_done, write_started, time.time())}


def build_executor(run, path):
    """The run's ISM executor on the model file ``path``: ``AveragedISM`` around the run's
    method where it averages over the reverse complement or shifts."""
    options = run.executor_options()
    if not run.averaged:
        return executor_class(run.method)(path, **options)
    return AveragedISM(path, rc=run.rc, shifts=run.shifts, executor=executor_class(run.method),
                       bases="".join(run.bases), **options)


def xla_choice(executor):
    """Whether the executor's mutation pass runs with XLA: True, False, "auto" (not decided
    yet) or None (an executor without the choice: naive ISM)."""
    if isinstance(executor, AveragedISM):  # one executor per strand, built alike
        executor = next(e for e in executor.executors.values() if e is not None)
    return getattr(executor, "xla", None)


def configure_tensorflow(threads):
    """TF intra/inter-op threads = the worker's threads; memory growth on any visible GPU."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TF already initialised in this process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)


def score_chunk(chunk_index, rows, plugin_name):
    """The task: chunk ``chunk_index`` (sequences ``rows``) of the run of plugin ``plugin_name``.

    The plugin (sent once per worker, and again to any worker that replaces a lost one) holds
    the run, the executor and the store writer, so a task is just a chunk index and a row range.
    """
    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(f"worker {worker.address} has no plugin {plugin_name!r}")
    out = plugin.run_chunk(chunk_index, rows, before_write=leave_thread_pool)
    out["worker"] = worker.address
    return out
