"""Distributed ISM: score many sequences on a Dask cluster into a Zarr store.

``score`` writes the store template, plans the chunks of sequences from the store's own
chunking, then submits one task per unfinished chunk. The run's ``ISMWorkerPlugin`` travels once
to every worker with the model path and the sequence source (where the sequences are, never
arrays); it loads the model and builds the ISM executor once per worker. A task carries only its
chunk index and row range: the worker reads its own rows, runs ISM, writes its chunk's region of
the store and then marks the chunk done. A rerun with the same parameters skips done chunks.

Before writing, the worker applies the run's ``reduce.OutputPlan`` (``--tasks``, ``--reduce``)
to its chunk, so only the reduced arrays travel to the store; for a VCF input it also makes one
batched model call on the windows with each ALT allele in place (``o_alt``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
from distributed import WorkerPlugin

from fastism_dist.store import layout as zstore
from fastism_dist.errors import FastISMError, InputError, ModelError, StoreMismatchError

PLUGIN_NAME = "fastism-model"
METHODS = {"fast": ("fastism_dist.core.fast", "FastISM"), "naive": ("fastism_dist.core.naive", "NaiveISM")}
DEFAULT_RETRIES = 3
# automatic chunk size: about AUTO_CHUNK_MUTATIONS mutations per task (executors batch better
# with more), at least AUTO_MIN_CHUNKS chunks (load balance), at most AUTO_CHUNK_BYTES of outputs
AUTO_CHUNK_MUTATIONS = 32768
AUTO_MIN_CHUNKS = 8
AUTO_CHUNK_BYTES = 32 * 2**20
MAX_AUTO_CHUNK = 256
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
MAX_SKIPPED_LISTED = 1000  # skipped VCF records listed in the store's attrs


def executor_class(method):
    """The ISM executor class registered under ``method`` ("fast" or "naive")."""
    if method not in METHODS:
        raise FastISMError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    module, name = METHODS[method]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise FastISMError(f"method {method!r} is not available: {err}") from None


# --------------------------------------------------------------------------- worker side


class ISMWorkerPlugin(WorkerPlugin):
    """Holds one loaded model and its ISM executor per worker, reused by every task.

    ``__init__`` keeps only cheap, picklable settings; ``setup`` (on the worker) loads the model
    and builds the executor; ``teardown`` drops them. Each run registers its own instance, named
    ``fastism-model-<run id>``, so two runs on one cluster never replace each other's model.

    Parameters
    ----------
    model : str or bytes
        Path of a ``.keras`` / ``.h5`` file every worker can read, or the bytes of a ``.keras``
        file (models passed in memory).
    method : {"fast", "naive"}
    start, end : int
        Mutated positions (half-open).
    batch_size : int, optional
        Mutations per model call.
    safe_mode : bool
        Keras safe mode when loading the model.
    source : SequenceSource
        Where this run's sequences are (cheap to pickle: paths and per-record metadata).
    store : str
        The run's Zarr store.
    outputs : list of str
        Model outputs to store.
    bases : list of str
        Letters of the substitutions (for ``ref_base``).
    run_id : str
    output_plan : OutputPlan, optional
        Task choice and reducers applied to each chunk before it is written (``reduce.py``).
        Default stores the outputs as computed.
    alt : bool
        Also store each sequence's output with its VCF ALT allele (``source.variants()``).
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, model, method, start, end, batch_size=None, safe_mode=True,
                 source=None, store=None, outputs=None, bases=None, run_id=None,
                 output_plan=None, alt=False):
        self.model = model
        self.output_plan = output_plan
        self.alt = bool(alt)
        self.source = source
        self.store = store
        self.outputs = outputs
        self.bases = bases
        self.method = method
        self.start = start
        self.end = end
        self.batch_size = batch_size
        self.safe_mode = safe_mode
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.name = f"{PLUGIN_NAME}-{self.run_id}"
        self.executor = None
        self._lock = None
        self._predict = None
        self._variants = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["executor"] = None
        state["_lock"] = None
        state["_predict"] = None
        state["_variants"] = None
        return state

    def setup(self, worker=None):
        threads = int(getattr(getattr(worker, "state", None), "nthreads", 0) or 1)
        configure_tensorflow(threads)
        cls = executor_class(self.method)
        if isinstance(self.model, bytes):
            with tempfile.TemporaryDirectory(prefix="fastism-model-") as tmp:
                path = os.path.join(tmp, "model.keras")
                with open(path, "wb") as fh:
                    fh.write(self.model)
                self.executor = self._build(cls, path)
        else:
            self.executor = self._build(cls, self.model)
        self._lock = threading.Lock()

    def _build(self, cls, path):
        return cls(path, start=self.start, end=self.end, batch_size=self.batch_size,
                   safe_mode=self.safe_mode)

    def teardown(self, worker=None):
        self.executor = None
        self._predict = None
        self._variants = None

    def _call_model(self, x):
        """The executor's model on ``x`` (B, L, C): list of float32 arrays, one per output."""
        if self._predict is None:
            import tensorflow as tf

            model = self.executor.model

            @tf.function(reduce_retracing=True)
            def predict(inputs):
                return model(inputs, training=False)

            self._predict = predict
        from keras import tree

        return [np.asarray(o, dtype=np.float32) for o in tree.flatten(self._predict(x))]

    def _alt_outputs(self, x, rows, names, ref):
        """Outputs of the chunk's sequences with their VCF ALT allele; NaN where not applicable.

        One batched model call on the windows of the SNVs and same-length MNVs; indels (and
        any allele that does not fit in the window) stay NaN. The output plan is applied as to
        the mutants, against ``ref`` (the raw reference outputs).
        """
        if self._variants is None:  # per-sequence alleles of the whole source, read once
            self._variants = self.source.variants()
        x_alt, ok = apply_variants(x, self._variants, rows, self.source.alphabet)
        plan = self.output_plan
        out = {}
        raw = self._call_model(x_alt[ok]) if ok.any() else None
        for k, name in enumerate(names):
            if name not in ref:
                continue
            shape = plan.shapes[name] if plan is not None else tuple(ref[name].shape[1:])
            values = np.full((len(x),) + tuple(shape), np.nan, dtype=np.float32)
            if raw is not None:
                got = raw[k]
                if plan is not None:
                    got = plan.apply_one(name, ref[name][ok], got)
                values[ok] = got
            out[name] = values
        return out

    def run_chunk(self, chunk_index, rows):
        """Read rows ``rows`` (a slice) of the source, run ISM and write chunk ``chunk_index``."""
        source, outputs, bases = self.source, self.outputs, self.bases
        if self.executor is None:
            raise RuntimeError(f"{self.name}: the model is not loaded on this worker")
        t0 = time.perf_counter()
        x = np.asarray(source.read(np.arange(rows.start, rows.stop)), dtype=np.float32)
        with self._lock:  # executors keep per-call state: one ISM at a time per worker
            t_ism = time.perf_counter()
            res = self.executor(x)
            t_ism = time.perf_counter() - t_ism
            names = self.executor.output_names
            raw_ref = {n: res.ref[k] for k, n in enumerate(names) if n in outputs}
            alt = self._alt_outputs(x, rows, names, raw_ref) if self.alt else None
        ref, mut = {}, {}
        for k, n in enumerate(names):
            if n not in outputs:
                continue
            if self.output_plan is None:
                ref[n], mut[n] = res.ref[k], res.mut[k]
            else:
                ref[n], mut[n], _ = self.output_plan.apply(n, res.ref[k], res.mut[k])
        del res
        spec = self.executor.spec
        window = x[:, spec.start:spec.end]
        zstore.write_chunk(self.store, chunk_index, ref, mut, reference_letters(window, bases), alt)
        return {
            "chunk": chunk_index,
            "sequences": int(len(x)),
            "mutations": count_mutations(window, spec.substitutions[:, 0]),
            "ism_s": t_ism,
            "seconds": time.perf_counter() - t0,
        }


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


def _client_tensorflow():
    """The client only reads the model: let it take GPU memory as needed, not all of it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)


def reference_letters(window, bases):
    """(n, W) letters of one-hot rows of ``window`` (n, W, C); ``N`` where a row is not one-hot."""
    window = np.asarray(window)
    onehot = (np.sum(window == 1, axis=-1) == 1) & (np.sum(window == 0, axis=-1) == window.shape[-1] - 1)
    letters = np.asarray(list(bases) + ["N"], dtype=object)
    return letters[np.where(onehot, np.argmax(window, axis=-1), len(bases))]


def apply_variants(x, variants, rows, alphabet):
    """The windows of ``x`` with each sequence's VCF ALT allele in place of its REF allele.

    Parameters
    ----------
    x : ndarray of shape (B, L, C)
        The sequences ``rows`` of the source, as read.
    variants : dict
        ``source.variants()``: per sequence ``variant_pos``, ``ref``, ``alt`` (N of them).
    rows : slice
        Which sequences of the source ``x`` holds.
    alphabet : str

    Returns
    -------
    x_alt : ndarray of shape (B, L, C)
        A copy of ``x`` with ALT written over REF at ``variant_pos`` where ``ok``.
    ok : ndarray of bool, shape (B,)
        True for SNVs and same-length MNVs that fit in the window; False for indels (REF and
        ALT of different lengths), whose ALT output is not computed.
    """
    from fastism_dist.io.sequences import one_hot

    x_alt = np.array(x, dtype=np.float32, copy=True)
    pos = np.asarray(variants["variant_pos"])[rows]
    refs = np.asarray(variants["ref"], dtype=object)[rows]
    alts = np.asarray(variants["alt"], dtype=object)[rows]
    ok = np.zeros(len(x), dtype=bool)
    for i, (p, r, a) in enumerate(zip(pos.tolist(), refs.tolist(), alts.tolist())):
        if len(r) != len(a) or not a or p < 0 or p + len(a) > x.shape[1]:
            continue
        x_alt[i, p:p + len(a)] = one_hot(a, alphabet)
        ok[i] = True
    return x_alt, ok


def count_indels(variants):
    """Number of variants whose REF and ALT differ in length (their ALT output is NaN)."""
    return sum(len(r) != len(a) for r, a in zip(variants["ref"], variants["alt"]))


def count_mutations(window, substitutions):
    """Number of (sequence, position, substitution) triples that change the sequence.

    window : (n, W, C); substitutions : (S, C).
    """
    same = np.all(window[:, :, None, :] == substitutions[None, None], axis=-1)
    return int(same.size - same.sum())


def score_chunk(plugin_name, chunk_index, rows):
    """The task: chunk ``chunk_index`` (sequences ``rows``) of the run of plugin ``plugin_name``.

    The plugin (sent once per worker, and again to any worker that replaces a lost one) holds
    the sequence source, the store and the executor, so a task is just a chunk index and a row
    range.
    """
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(f"worker {worker.address} has no plugin {plugin_name!r}")
    out = plugin.run_chunk(chunk_index, rows)
    out["worker"] = worker.address
    return out


# --------------------------------------------------------------------------- client side


@dataclass
class ScoreSummary:
    """What ``score`` did: counts, timings and each worker's share of the chunks it ran.

    ``compute_s`` is the scoring phase (first task submitted to last result), after the model
    was loaded on the workers (``setup_s``); ``wall_s`` is the whole call.
    """

    store: str
    n_sequences: int
    n_chunks: int
    chunks_run: int
    chunks_skipped: int
    mutations: int
    wall_s: float
    compute_s: float
    n_workers: int = 0
    setup_s: float = 0.0
    chunk_size: int = 0
    dashboard_link: str | None = None
    per_worker: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)  # per chunk: worker, mutations, ism_s, seconds

    @property
    def mutations_per_s(self):
        return self.mutations / self.compute_s if self.compute_s > 0 else float("nan")

    def __str__(self):
        lines = [
            f"store       {self.store}",
            f"sequences   {self.n_sequences} in {self.n_chunks} chunks of {self.chunk_size} "
            f"({self.chunks_run} computed, {self.chunks_skipped} already done)",
            f"mutations   {self.mutations:,} computed",
            f"wall time   {self.wall_s:.1f} s ({self.setup_s:.1f} s loading the model on "
            f"{self.n_workers} worker(s), {self.compute_s:.1f} s scoring)",
            f"throughput  {self.mutations_per_s:,.0f} mutations/s",
        ]
        total = sum(w["chunks"] for w in self.per_worker.values()) or 1
        for address, share in sorted(self.per_worker.items()):
            lines.append(f"  worker {address}: {share['chunks']} chunks "
                         f"({100 * share['chunks'] / total:.0f}%), {share['mutations']:,} mutations")
        return "\n".join(lines)


def score(model, input, out, workers=None, threads_per_worker=1, gpus=False, scheduler=None,
          chunk_size=None, batch_size=None, start=0, end=None, method="fast", genome=None,
          outputs=None, dtype="float32", overwrite=False, safe_mode=True, security=None,
          client=None, progress=True, retries=DEFAULT_RETRIES, resize=False,
          skip_mismatches=False, alphabet="ACGT", tasks=None, reduce=None):
    """Saturation mutagenesis of every sequence in ``input`` on a Dask cluster, into ``out``.

    For a VCF input the store also holds, per sequence, each output with the ALT allele in
    place of REF (``o_alt``; NaN for indels) and the alleles (``variant_pos``, ``ref_allele``,
    ``alt_allele``).

    Parameters
    ----------
    model : keras.Model or str
        The model, or a path to a ``.keras`` / ``.h5`` file (that every worker can read).
    input : str or SequenceSource
        FASTA, BED / VCF (with ``genome``) or ``.npy`` (N, L, C) file, or an opened source.
    out : str
        The Zarr store (local directory or fsspec URL every worker can reach).
    workers : int, optional
        Local workers (processes). Default is one per CPU core (``threads_per_worker`` each),
        or one per GPU with ``gpus``. Ignored with ``scheduler`` or ``client``.
    threads_per_worker : int
        Threads (and TensorFlow intra/inter-op threads) per local worker. Default is 1.
    gpus : bool
        Start a ``dask_cuda.LocalCUDACluster``, one worker per GPU. Default is False.
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:port``, ``tls://...``).
    chunk_size : int, optional
        Sequences per chunk (one task, one Zarr chunk). Default is the store's on resume, else
        ``auto_chunk_size``: about 32k mutations per task, at least 8 chunks, at most 32 MiB of
        outputs per chunk.
    batch_size : int, optional
        Mutations per model call. Default is the executor's (256).
    start, end : int
        Mutated positions, half-open. Default is the whole sequence.
    method : {"fast", "naive"}
        Default is "fast".
    genome : str, optional
        Genome FASTA for BED / VCF inputs.
    outputs : list of str or str, optional
        Model outputs to store (names or indices, or one comma-separated string). Default is all.
    tasks : int, str or list, optional
        Keep only these entries of the last axis of every stored output: indices, or task names
        where the output's layer (or the model) has a ``task_names`` attribute. Default is all.
    reduce : str or dict, optional
        Reducers applied on the workers before writing, e.g. ``"profile=jsd"`` or
        ``{"profile": "bins:10"}`` (see ``fastism_dist.outputs.reduce``). Default stores the outputs
        as computed.
    dtype : {"float32", "float16"}
        Stored dtype. Default is float32.
    overwrite : bool
        Replace an existing store written with other parameters. Default is False.
    safe_mode : bool
        Keras safe mode when loading the model (False allows Lambda layers). Default is True.
    security : distributed.Security, optional
        TLS settings for a ``tls://`` scheduler.
    client : distributed.Client, optional
        Use this client (and its cluster); it is left open.
    progress : bool
        Print the dashboard link, a progress bar and the summary. Default is True.
    retries : int
        Extra attempts per chunk after an error. Default is 3. Chunks on a lost worker are
        rescheduled by Dask.
    resize, skip_mismatches, alphabet
        Passed to ``open_sequences``.

    Returns
    -------
    ScoreSummary
    """
    t_wall = time.perf_counter()
    run = plan_run(model, input, out, chunk_size=chunk_size, batch_size=batch_size, start=start,
                   end=end, method=method, genome=genome, outputs=outputs, dtype=dtype,
                   overwrite=overwrite, safe_mode=safe_mode, resize=resize,
                   skip_mismatches=skip_mismatches, alphabet=alphabet, tasks=tasks,
                   reduce=reduce)
    _check_settings(workers, threads_per_worker, retries)
    if run.resume:
        n_chunks = len(zstore.done_mask(run.out))
        if zstore.done_mask(run.out).all():
            if progress:
                print(f"{run.out}: all {n_chunks} chunks already done; nothing to compute",
                      flush=True)
            return ScoreSummary(run.out, run.n_sequences, n_chunks, 0, n_chunks, 0,
                                time.perf_counter() - t_wall, 0.0, chunk_size=run.chunk_size)
    if client is not None:
        where = "the given client"
    else:
        where = scheduler or ("LocalCUDACluster" if gpus else "LocalCluster")
    try:
        with _connect(workers, threads_per_worker, gpus, scheduler, security, client) as cli:
            summary = _execute(cli, run, retries, progress, where)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            done = zstore.done_mask(run.out)
            print(f"interrupted: {int(done.sum())} of {len(done)} chunks done in {run.out}; "
                  "rerun the same command to resume", file=sys.stderr, flush=True)
        raise
    summary.wall_s = time.perf_counter() - t_wall
    if progress:
        print(summary, flush=True)
    return summary


@dataclass
class RunPlan:
    """Everything a run needs, validated on the client before any cluster starts."""

    out: str
    source: object
    n_sequences: int
    positions: np.ndarray
    start: int
    end: int
    bases: list
    outputs: dict  # name -> shape of one sequence's output as stored (after any reducer)
    params: dict
    model_sha256: str
    model_ref: object  # path or .keras bytes, for the workers
    method: str
    batch_size: int | None
    safe_mode: bool
    chunk_size: int = 1
    dtype: str = "float32"
    state: str = "absent"
    resume: bool = False
    output_plan: object = None  # reduce.OutputPlan: task choice, reducers, stored dims
    alt: bool = False  # VCF input: also store each output with the ALT allele
    attrs: dict = field(default_factory=dict)  # extra store attributes


def plan_run(model, input, out, chunk_size=None, batch_size=None, start=0, end=None,
             method="fast", genome=None, outputs=None, dtype="float32", overwrite=False,
             safe_mode=True, resize=False, skip_mismatches=False, alphabet="ACGT", tasks=None,
             reduce=None):
    """Validate a run and compare it with an existing store; touches nothing. Returns a RunPlan.

    Raises ``FastISMError`` subclasses for bad settings, models, inputs, and (without
    ``overwrite``) an existing store written with other parameters.
    """
    out = zstore._fspath(out)
    for name, value in (("chunk_size", chunk_size), ("batch_size", batch_size)):
        if value is not None:
            _positive(name, value)
    if dtype not in zstore.DTYPES:
        raise FastISMError(f"dtype must be one of {list(zstore.DTYPES)}, got {dtype!r}")
    if method not in METHODS:
        raise FastISMError(f"method must be one of {sorted(METHODS)}, got {method!r}")

    from fastism_dist.outputs.reduce import plan_outputs
    from fastism_dist.core.spec import find_sequence_input, load_model, make_mutation_spec, output_names

    if not _is_keras_model(model):
        _client_tensorflow()
    keras_model = load_model(model, safe_mode=safe_mode)
    seq = find_sequence_input(keras_model, 0)
    if len(keras_model.inputs) != 1:
        raise ModelError(f"score needs a model whose only input is the sequence; this one has "
                         f"{len(keras_model.inputs)} inputs")
    spec = make_mutation_spec(seq.length, seq.channels, start, end)
    shapes = _output_shapes(keras_model, seq)
    names = output_names(keras_model)
    selected = _select_outputs(names, outputs)
    oplan = plan_outputs({k: shapes[k] for k in selected}, tasks=tasks, reduce=reduce,
                         task_names=task_names(keras_model, selected))
    _check_dim_names(oplan.dims)
    source = _open_source(input, genome, seq.length, resize, skip_mismatches, alphabet)
    n = len(source)
    if n == 0:
        raise InputError(f"{_describe(input)}: no sequences to score")
    bases = [str(b) for b in source.alphabet]
    if len(bases) != seq.channels:
        raise InputError(f"the alphabet {''.join(bases)!r} has {len(bases)} letters but the model "
                         f"input has {seq.channels} channels")
    if getattr(source, "length", seq.length) != seq.length:
        raise InputError(f"{_describe(input)}: sequences have length {source.length}, the model "
                         f"expects {seq.length}")
    variants = _source_variants(source)
    alt = variants is not None
    attrs = {}
    skipped = list(getattr(source, "skipped", None) or [])
    if skipped:  # VCF records not scored (symbolic, REF mismatch with --skip-mismatches, ...)
        attrs["skipped_records"] = skipped[:MAX_SKIPPED_LISTED]
        attrs["n_skipped_records"] = len(skipped)
    if alt:
        _check_alt_names(selected)
        attrs["alt_note"] = _alt_note(variants, selected)
        n_indels = count_indels(variants)
        if n_indels:
            from fastism_dist.io.sequences import SequenceWarning

            warnings.warn(f"{_describe(input)}: {n_indels} of {n} variant(s) are indels (REF and "
                          "ALT of different lengths); their ALT outputs (<output>_alt) are stored "
                          "as NaN", SequenceWarning, stacklevel=3)

    state = zstore.store_state(out)
    if state == "other":
        raise StoreMismatchError(f"{out} exists and is not a Zarr store; refusing to write there")
    if state == "zarr" and not overwrite:
        raise StoreMismatchError(f"{out} is a Zarr store not written by fastism_dist; use "
                                 "--overwrite (overwrite=True) to replace it")
    resume = state == "store" and not overwrite
    if chunk_size is None and resume:
        chunk_size = int(zstore._open_group(out).attrs["chunk_size"])
    if chunk_size is None:
        chunk_size = auto_chunk_size(n, spec.n_positions, len(spec.substitutions),
                                     list(oplan.shapes.values()), dtype)
    model_sha = model_sha256(model, keras_model)
    params = {
        "model_sha256": model_sha,
        "input": _input_name(input),
        "input_sha256": _input_sha256(input),
        "genome": None if genome is None else os.path.basename(os.fspath(genome)),
        "n_sequences": n,
        "sequence_ids_sha256": _ids_sha256(source.ids),
        "sequence_length": seq.length,
        "alphabet": "".join(bases),
        "resize": bool(resize),
        "skip_mismatches": bool(skip_mismatches),
        "start": spec.start,
        "end": spec.end,
        "method": method,
        "outputs": selected,
        **oplan.params(),
        "alt": True if alt else None,
        "dtype": dtype,
        "chunk_size": int(chunk_size),
    }
    if resume:
        zstore.check_params(out, params)
    return RunPlan(
        out=out, source=source, n_sequences=n, positions=spec.positions, start=spec.start,
        end=spec.end, bases=bases, outputs=oplan.shapes, params=params,
        model_sha256=model_sha, model_ref=_model_for_workers(model, keras_model), method=method,
        batch_size=batch_size, safe_mode=safe_mode, chunk_size=int(chunk_size), dtype=dtype,
        state=state, resume=resume, output_plan=oplan, alt=alt, attrs=attrs,
    )


def _execute(cli, run, retries, progress, where):
    """On a connected client: write the template (new store), register the plugin, run chunks."""
    link = _dashboard_link(cli)
    n_workers = len(cli.scheduler_info(n_workers=-1)["workers"])
    if progress:
        print(f"fastism-dist: scoring {run.n_sequences} sequences on {n_workers} worker(s) "
              f"({where})", flush=True)
        print(f"dashboard: {link or 'not available (install bokeh)'}", flush=True)
    if not run.resume:
        zstore.create_template(
            run.out, ids=list(run.source.ids), positions=run.positions, bases=run.bases,
            outputs=run.outputs, params=run.params, model_sha256=run.model_sha256,
            chunk_size=run.chunk_size, coords=_source_coords(run.source), dtype=run.dtype,
            overwrite=run.state != "absent", dims=run.output_plan.dims if run.output_plan else None,
            alt=run.alt, attrs=run.attrs,
        )
    plan = zstore.chunk_plan(run.out)
    done = zstore.done_mask(run.out)
    pending = [(i, rows) for i, rows in plan if not done[i]]
    run_id = uuid.uuid4().hex[:12]
    plugin = ISMWorkerPlugin(run.model_ref, run.method, run.start, run.end, run.batch_size,
                             run.safe_mode, source=run.source, store=run.out,
                             outputs=list(run.outputs), bases=run.bases, run_id=run_id,
                             output_plan=run.output_plan, alt=run.alt)
    t_setup = time.perf_counter()
    cli.register_plugin(plugin)  # loads the model and builds the executor on every worker
    setup_s = time.perf_counter() - t_setup
    try:
        results, compute_s = _run_tasks(cli, plugin.name, run.out, pending, retries, run_id,
                                        len(plan), progress)
    finally:
        with contextlib.suppress(Exception):
            cli.unregister_worker_plugin(plugin.name)

    per_worker = {}
    for r in results:
        share = per_worker.setdefault(r["worker"], {"chunks": 0, "mutations": 0, "sequences": 0})
        share["chunks"] += 1
        share["mutations"] += r["mutations"]
        share["sequences"] += r["sequences"]
    return ScoreSummary(
        store=run.out, n_sequences=run.n_sequences, n_chunks=len(plan), chunks_run=len(results),
        chunks_skipped=len(plan) - len(pending), mutations=sum(r["mutations"] for r in results),
        wall_s=0.0, compute_s=compute_s, n_workers=n_workers, setup_s=setup_s,
        dashboard_link=link, per_worker=per_worker, tasks=results, chunk_size=run.chunk_size,
    )


def _run_tasks(cli, plugin_name, out, pending, retries, run_id, total, progress):
    """Submit one task per pending chunk; wait with a progress bar; return results and seconds."""
    from distributed import as_completed

    t0 = time.perf_counter()
    futures = [
        cli.submit(score_chunk, plugin_name, i, rows, key=f"fastism-chunk-{run_id}-{i}", retries=retries, pure=False)
        for i, rows in pending
    ]
    widget = _progress_widget(cli, futures) if progress and _in_notebook() else None
    bar = ProgressBar(total, total - len(pending), enabled=progress and widget is None)
    results = []
    try:
        for future in as_completed(futures, loop=cli.loop):
            if future.status == "error":
                err = future.exception()
                _cancel(cli, futures)
                if isinstance(err, FastISMError):
                    raise err
                raise FastISMError(
                    f"chunk {future.key.rsplit('-', 1)[-1]} failed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); completed chunks are kept, "
                    "rerun the same command to resume"
                ) from err
            results.append(future.result())
            bar.update(len(results), sum(r["mutations"] for r in results), time.perf_counter() - t0)
    except KeyboardInterrupt:
        _cancel(cli, futures)
        bar.close()
        raise
    bar.close()
    return results, time.perf_counter() - t0


def _in_notebook():
    """True inside a Jupyter kernel that can show widgets."""
    import importlib.util

    from distributed.utils import is_kernel

    return bool(is_kernel()) and importlib.util.find_spec("ipywidgets") is not None


def _progress_widget(cli, futures):
    """A live ``distributed`` progress widget in Jupyter.

    It listens on the client's own event loop (a separate thread), because ``score`` blocks the
    kernel's loop while it waits.
    """
    from distributed.diagnostics.progressbar import ProgressWidget
    from IPython.display import display

    widget = ProgressWidget(futures, scheduler=cli.scheduler.address, complete=True)
    display(widget.widget)
    cli.loop.add_callback(widget.listen)
    return widget


def _cancel(cli, futures):
    with contextlib.suppress(Exception):
        cli.cancel(futures)


class ProgressBar:
    """A text progress bar on stderr: redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, total, already=0, enabled=True, stream=None, width=30):
        self.total = total
        self.already = already
        self.enabled = enabled and total > already
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        if self.enabled:
            self.update(0, 0, 0.0)

    def update(self, n, mutations, elapsed):
        if not self.enabled:
            return
        done = self.already + n
        frac = done / self.total if self.total else 1.0
        rate = mutations / elapsed if elapsed > 0 else 0.0
        fill = int(round(self.width * frac))
        line = (f"[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} chunks "
                f"{100 * frac:3.0f}%  {rate:,.0f} mutations/s  {elapsed:5.1f} s")
        if self.tty:
            self.stream.write("\r" + line)
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False


@contextlib.contextmanager
def _connect(workers, threads_per_worker, gpus, scheduler, security, client):
    """A client on the chosen cluster; closes what it started."""
    import dask
    from distributed import Client

    if client is not None:
        yield client
        return
    if scheduler is not None:
        try:
            cli = Client(scheduler, security=security, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise FastISMError(f"cannot connect to scheduler {scheduler}: {err}") from None
        try:
            try:
                cli.wait_for_workers(1, timeout=120)
            except TimeoutError:
                raise FastISMError(f"scheduler {scheduler} has no workers (waited 120 s)") from None
            yield cli
        finally:
            cli.close()
        return

    env = dict(WORKER_ENV, OMP_NUM_THREADS=str(threads_per_worker))
    if not gpus:  # CPU workers: several processes must not each claim every GPU's memory
        env["CUDA_VISIBLE_DEVICES"] = ""
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        if gpus:
            cluster = _cuda_cluster(workers, threads_per_worker)
        else:
            from distributed import LocalCluster

            n = workers or max(1, (os.cpu_count() or 1) // threads_per_worker)
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker,
                                   processes=True, dashboard_address="127.0.0.1:0",
                                   host="127.0.0.1", env=env)
    try:
        cli = Client(cluster, set_as_default=False)
        try:
            yield cli
        finally:
            cli.close()
    finally:
        cluster.close()


def _cuda_cluster(workers, threads_per_worker):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise FastISMError("--gpus needs dask-cuda: pip install 'fastism_dist[gpu]'") from None
    try:
        return LocalCUDACluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                dashboard_address="127.0.0.1:0", host="127.0.0.1")
    except Exception as err:  # noqa: BLE001 - pynvml raises NVMLError_* (not ImportError)
        raise FastISMError(f"--gpus: no usable NVIDIA GPU ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else 'no detail'}); "
                           "run without --gpus") from None


def _dashboard_link(cli):
    try:
        if not cli.scheduler_info().get("services", {}).get("dashboard"):
            return None
        return cli.dashboard_link
    except Exception:  # noqa: BLE001
        return None


def auto_chunk_size(n, n_positions, n_substitutions, shapes, dtype="float32"):
    """Sequences per chunk: ~32k mutations per task, >= 8 chunks, <= 32 MiB of outputs."""
    per_seq_mutations = max(n_positions * n_substitutions, 1)
    per_seq_bytes = sum(per_seq_mutations * int(np.prod(s)) for s in shapes) * np.dtype(dtype).itemsize
    size = min(math.ceil(AUTO_CHUNK_MUTATIONS / per_seq_mutations),
               math.ceil(n / AUTO_MIN_CHUNKS),
               AUTO_CHUNK_BYTES // max(per_seq_bytes, 1),
               MAX_AUTO_CHUNK)
    return max(1, int(size))


def _positive(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise FastISMError(f"{name} must be a positive integer, got {value!r}")


def _check_settings(workers, threads_per_worker, retries):
    if workers is not None:
        _positive("workers", workers)
    _positive("threads_per_worker", threads_per_worker)
    if not isinstance(retries, (int, np.integer)) or isinstance(retries, bool) or retries < 0:
        raise FastISMError(f"retries must be a non-negative integer, got {retries!r}")


def _output_shapes(model, seq):
    """Output name -> shape of one sequence's output, running the model only if needed."""
    from fastism_dist.core.spec import output_names

    names = output_names(model)
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    if any(d is None for s in shapes for d in s):
        from keras import tree

        outs = tree.flatten(model(np.zeros((1, seq.length, seq.channels), np.float32),
                                  training=False))
        shapes = [tuple(np.shape(o)[1:]) for o in outs]
    return {n: tuple(int(d) for d in s) for n, s in zip(names, shapes)}


def _select_outputs(names, outputs):
    reserved = {zstore.SEQ, zstore.POS, zstore.BASE, zstore.CHUNK, zstore.DONE, zstore.REF_BASE,
                *zstore.PER_SEQ_COORDS}
    if len(set(names)) != len(names):
        raise ModelError(f"the model's output names are not unique: {names}")
    if outputs is None:
        selected = list(names)
    else:
        if isinstance(outputs, (str, int, np.integer)):
            outputs = [o.strip() for o in str(outputs).split(",") if o.strip()]
        selected = list(dict.fromkeys(_output_by_index(names, o) for o in outputs))
        unknown = [o for o in selected if o not in names]
        if unknown or not selected:
            raise ModelError(f"unknown output(s) {unknown or outputs}; the model's outputs are {names}")
    for name in selected:
        clash = {name} & reserved or {name} & {zstore.ref_name(m) for m in names}
        if clash:
            raise ModelError(f"model output {name!r} clashes with a store variable name; "
                             "rename the output layer")
    return selected


def _check_dim_names(dims):
    """Stored dimension names must not be variable names (e.g. output ``p_bin`` beside
    ``--reduce p=bins:N``)."""
    variables = {zstore.SEQ, zstore.POS, zstore.BASE, zstore.CHUNK, zstore.DONE, zstore.REF_BASE,
                 *zstore.PER_SEQ_COORDS}
    for name in dims:
        variables |= {name, zstore.ref_name(name), zstore.alt_name(name)}
    for name, ds in dims.items():
        for d in ds:
            if d.name in variables:
                raise ModelError(f"dimension {d.name!r} of output {name!r} clashes with a store "
                                 "variable name; rename the output layer")


def _output_by_index(names, output):
    """``output`` itself, or the name of output number ``output`` (an int or digits)."""
    if isinstance(output, str) and output in names:
        return output
    text = str(output)
    if not isinstance(output, bool) and text.isdigit() and int(text) < len(names):
        return names[int(text)]
    return output


def _check_alt_names(selected):
    for name in selected:
        if zstore.alt_name(name) in selected:
            raise ModelError(f"model output {zstore.alt_name(name)!r} clashes with the ALT output "
                             f"of {name!r} stored for VCF inputs; rename the output layer")


def _alt_note(variants, selected):
    n_indels = count_indels(variants)
    names = ", ".join(zstore.alt_name(o) for o in selected)
    note = (f"{names}: the model output with the VCF ALT allele written over REF at variant_pos "
            "(SNVs and same-length MNVs), reduced like the mutants")
    if n_indels:
        note += (f"; {n_indels} indel(s) (REF and ALT of different lengths) are NaN: an indel "
                 "changes the window length, which a fixed-length model cannot score exactly")
    return note


def task_names(model, outputs):
    """Output name -> names of its tasks (its last axis), where the model says them.

    From a ``task_names`` attribute of the model (a dict output -> list of names) or of the
    layer that makes an output (a list). Keras does not save such attributes in ``.keras``
    files unless the layer's config carries them.
    """
    from fastism_dist.core.spec import output_names

    found = {}
    on_model = getattr(model, "task_names", None)
    if isinstance(on_model, dict):
        found.update({str(k): list(v) for k, v in on_model.items() if str(k) in outputs})
    for name, tensor in zip(output_names(model), model.outputs):
        if name not in outputs or name in found:
            continue
        layer = getattr(getattr(tensor, "_keras_history", None), "operation", None)
        names = getattr(layer, "task_names", None)
        if names is not None and not isinstance(names, (str, dict)):
            found[name] = [str(t) for t in names]
    return found


def _source_variants(source):
    variants = getattr(source, "variants", None)
    if variants is None:
        return None
    try:
        return variants() if callable(variants) else variants
    except Exception:  # noqa: BLE001 - variants are optional metadata
        return None


def _open_source(input, genome, length, resize, skip_mismatches, alphabet):
    if hasattr(input, "read") and hasattr(input, "ids"):
        return input
    path = zstore._fspath(input)
    if "://" not in path and not os.path.exists(path):
        raise InputError(f"input file not found: {path}")
    from fastism_dist.io.sequences import open_sequences

    if genome is not None:
        genome = zstore._fspath(genome)
    return open_sequences(path, genome=genome, length=length, resize=resize,
                          skip_mismatches=skip_mismatches, alphabet=alphabet)


def _describe(input):
    if hasattr(input, "read"):
        return str(getattr(input, "path", None) or type(input).__name__)
    return os.fspath(input)


def _input_name(input):
    path = getattr(input, "path", None) if hasattr(input, "read") else input
    return None if path is None else os.path.basename(os.fspath(path))


def _input_sha256(input):
    path = getattr(input, "path", None) if hasattr(input, "read") else input
    if path is None:
        return None
    path = os.fspath(path)
    if "://" in path or not os.path.isfile(path):
        return None
    return file_sha256(path)


def _ids_sha256(ids):
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode())
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def model_sha256(model, keras_model):
    """SHA-256 of the model file, or of an in-memory model's config and weights."""
    if not _is_keras_model(model):
        return file_sha256(os.fspath(model))
    h = hashlib.sha256(json.dumps(keras_model.get_config(), sort_keys=True, default=str).encode())
    for w in keras_model.weights:
        h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    return h.hexdigest()


def _is_keras_model(model):
    return not isinstance(model, (str, bytes, os.PathLike))


def _model_for_workers(model, keras_model):
    """An absolute model path, or the bytes of a ``.keras`` file for an in-memory model."""
    if not _is_keras_model(model):
        return os.path.abspath(os.fspath(model))
    with tempfile.TemporaryDirectory(prefix="fastism-model-") as tmp:
        path = os.path.join(tmp, "model.keras")
        keras_model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def _source_coords(source):
    """Per-sequence coordinates for the store: genomic windows, padding and VCF alleles."""
    coords = getattr(source, "coords", None)
    try:
        coords = dict((coords() if callable(coords) else coords) or {})
    except Exception:  # noqa: BLE001 - coordinates are optional metadata
        coords = {}
    variants = _source_variants(source)
    if variants is not None:
        coords.update(variant_pos=variants["variant_pos"], ref_allele=variants["ref"],
                      alt_allele=variants["alt"], variant_id=variants.get("vcf_id"))
    return coords or None
