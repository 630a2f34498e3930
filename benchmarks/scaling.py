"""Distributed overhead and scaling: in-process ISM vs ``fastism_dist.score`` on 1 and 2 workers.

The same small Basset-like model and the same random sequences are scored

* in process: one ``FastISM`` (or ``NaiveISM``) call on all sequences, TensorFlow limited to one
  thread (the same footing as one single-threaded worker);
* in 2, ... processes at once: that many independent warm in-process runs, started together,
  each on all the sequences (the most this machine gives that many busy processes);
* by the engine on a ``LocalCluster`` of 1, 2, ... single-threaded worker processes, into a Zarr
  store (reading the sequences from a FASTA file, writing every chunk, marking it done).

Reported per setting: mutations/s of the scoring phase (the engine's tasks, after the model is
loaded on the workers), the wall time with cluster start and model loading, the engine overhead
against in-process ISM (``in-process rate / 1-worker rate - 1``), the speedup over 1 worker and
each worker's peak resident memory. Results go to ``benchmarks/results/scaling.json`` and
``benchmarks/results/scaling.md``.

Run from the repository root::

    python benchmarks/scaling.py                 # 128 sequences of 400 bp, workers 1 and 2
    python benchmarks/scaling.py --n 128 --workers 1 2 4 --method naive
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import local_client  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_model(length, seed=0):
    """A small Basset: 3 conv/BN/relu/pool blocks, 2 dense layers, 16 sigmoid outputs."""
    try:
        from fastism_dist.models import basset, randomize_batch_norm

        model = basset(seq_len=length, n_outputs=16, filters=(64, 48, 48), kernels=(19, 11, 7),
                       pools=(3, 4, 4), dense=(128, 128), seed=seed)
        return randomize_batch_norm(model, seed)
    except ImportError:  # the reference builders are optional here
        import keras

        keras.utils.set_random_seed(seed)
        L = keras.layers
        inp = keras.Input((length, 4), name="sequence")
        h = inp
        for filters, kernel, pool in ((64, 19, 3), (48, 11, 4), (48, 7, 4)):
            h = L.Conv1D(filters, kernel, padding="same")(h)
            h = L.Activation("relu")(L.BatchNormalization()(h))
            h = L.MaxPooling1D(pool)(h)
        h = L.Flatten()(h)
        for units in (128, 128):
            h = L.Activation("relu")(L.BatchNormalization()(L.Dense(units)(h)))
        return keras.Model(inp, L.Dense(16, activation="sigmoid", name="output")(h))


def write_inputs(directory, n, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("ACGT"))
    path = Path(directory) / "sequences.fa"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f">seq{i}\n{''.join(letters[rng.integers(0, 4, length)])}\n")
    return str(path)


def in_process(model_path, fasta, method, batch_size, repeats, chunk_size=None):
    """Mutations/s of executor calls on all sequences (one TF thread), best of ``repeats``.

    ``cold``: a new executor each time, its first pass (tracing included, as a worker pays once);
    ``warm``: a second pass on the same executor (steady state). With ``chunk_size`` a pass is
    one call per chunk of that many sequences, the engine's tasks' work; else one call.
    """
    import resource

    from fastism_dist.distributed import executor_class
    from fastism_dist.io import open_sequences

    x = open_sequences(fasta).read(slice(None))
    best = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        ism = executor_class(method)(model_path, batch_size=batch_size)
        build_s = time.perf_counter() - t0
        for kind in ("cold", "warm"):
            seconds = _pass_seconds(ism, x, chunk_size)
            if kind not in best or seconds < best[kind][0]:
                best[kind] = (seconds, build_s)
    mutations = _mutations(ism, x)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [{"setting": f"in-process ({kind})", "workers": 0, "mutations": mutations,
             "scoring_s": seconds, "setup_s": build_s, "wall_s": build_s + seconds,
             "mutations_per_s": mutations / seconds, "peak_rss_mb": [rss]}
            for kind, (seconds, build_s) in best.items()]


def _warm_pass_seconds(model_path, fasta, method, batch_size, chunk_size, barrier, queue):
    """In a fresh process: one untimed pass, then wait for the others and time a second pass."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from fastism_dist.distributed import executor_class
    from fastism_dist.io import open_sequences

    x = open_sequences(fasta).read(slice(None))
    ism = executor_class(method)(model_path, batch_size=batch_size)
    _pass_seconds(ism, x, chunk_size)
    barrier.wait()
    queue.put((_pass_seconds(ism, x, chunk_size), _mutations(ism, x)))


def _pass_seconds(ism, x, chunk_size=None):
    """Seconds of one executor call per chunk of ``chunk_size`` sequences of ``x`` (None: one
    call on all of them)."""
    step = chunk_size or len(x)
    t0 = time.perf_counter()
    for lo in range(0, len(x), step):
        ism(x[lo:lo + step])
    return time.perf_counter() - t0


def _mutations(ism, x):
    """Mutations an ISM pass of ``ism`` over ``x`` (B, L, C) computes."""
    from fastism_dist.distributed import count_mutations

    return count_mutations(x[:, ism.spec.start:ism.spec.end], ism.spec.substitutions[:, 0])


def concurrent_in_process(model_path, fasta, method, batch_size, chunk_size, processes):
    """Mutations/s of ``processes`` independent warm in-process runs at once (each on all the
    sequences, one TF thread): what the machine itself allows that many busy processes, with
    no Dask, no store and no shared work. Returns the row."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    children = [context.Process(target=_warm_pass_seconds,
                                args=(model_path, fasta, method, batch_size, chunk_size,
                                      barrier, queue))
                for _ in range(processes)]
    for child in children:
        child.start()
    results = [queue.get() for _ in children]
    for child in children:
        child.join()
    seconds = max(s for s, _ in results)
    mutations = sum(m for _, m in results)
    return {"setting": f"in-process (warm), {processes} processes at once", "workers": 0,
            "processes": processes, "mutations": mutations, "scoring_s": seconds,
            "setup_s": float("nan"), "wall_s": float("nan"),
            "mutations_per_s": mutations / seconds, "peak_rss_mb": [float("nan")]}


def steady_state(tasks):
    """Mutations/s per worker and the share of that time in ISM, after each worker's first task.

    A task writes while its worker's next task runs ISM, so a worker's steady window runs from
    the end of its first task's ISM to the end of its last task (``timeline`` of each result).
    """
    by_worker = {}
    for task in tasks:
        by_worker.setdefault(task["worker"], []).append(task)
    mutations = window = ism = 0.0
    for own in by_worker.values():
        own.sort(key=lambda t: t["timeline"][0])
        if len(own) < 2:
            continue
        mutations += sum(t["mutations"] for t in own[1:])
        ism += sum(t["ism_s"] for t in own[1:])
        window += max(t["timeline"][4] for t in own) - own[0]["timeline"][2]
    if not window:
        return float("nan"), float("nan")
    return mutations / window, ism / window


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine(model_path, fasta, workers, method, chunk_size, batch_size, directory, repeats):
    """Score into a fresh store on a fresh LocalCluster of ``workers`` single-threaded workers.

    Best of ``repeats`` runs on the same cluster (each run loads the model again).
    """
    from fastism_dist.distributed import score

    out = str(Path(directory) / f"scaling-{workers}.zarr")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with local_client(workers) as client:
        start_s = time.perf_counter() - t0
        summary = None
        for _ in range(repeats):
            run = score(model_path, fasta, out, client=client, method=method,
                        chunk_size=chunk_size, batch_size=batch_size, overwrite=True,
                        progress=False)
            if summary is None or run.compute_s < summary.compute_s:
                summary = run
        rss = sorted(client.run(_peak_rss_mb).values())
    steady_rate, ism_share = steady_state(summary.tasks)
    return {"setting": f"engine, {workers} worker{'s' if workers > 1 else ''}", "workers": workers,
            "mutations": summary.mutations, "scoring_s": summary.compute_s,
            "setup_s": summary.setup_s, "cluster_start_s": start_s,
            "wall_s": start_s + summary.wall_s, "mutations_per_s": summary.mutations_per_s,
            "chunks": summary.n_chunks, "chunk_size": summary.chunk_size, "peak_rss_mb": rss,
            "per_worker_chunks": sorted(w["chunks"] for w in summary.per_worker.values()),
            "per_worker_xla": [w.get("xla") for _, w in sorted(summary.per_worker.items())],
            "steady_mutations_per_s_per_worker": steady_rate,
            "steady_ism_fraction_of_time": ism_share}


def markdown(result):
    rows = result["rows"]
    base = rows[0]["mutations_per_s"]  # in-process, cold
    one = next((r["mutations_per_s"] for r in rows if r["workers"] == 1), None)
    lines = [
        f"Scaling on {result['machine']} — {result['n_sequences']} sequences × "
        f"{result['length']} bp, {result['method']} ISM, chunks of {result['chunk_size']}, "
        f"small Basset ({result['model_params']:,} parameters)",
        "",
        "| setting | mutations/s | scoring s | model load s | wall s | vs in-process (cold) | "
        "speedup vs 1 worker | peak RSS per worker (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rel = f"{100 * (r['mutations_per_s'] / base - 1):+.1f}%"
        parallel = r["workers"] or r.get("processes")
        speed = f"{r['mutations_per_s'] / one:.2f}×" if one and parallel else ""
        if r["workers"]:
            rss = ", ".join(f"{m:.0f}" for m in r["peak_rss_mb"])
        else:
            rss = "" if r.get("processes") else f"({r['peak_rss_mb'][0]:.0f}, one process)"
        lines.append(f"| {r['setting']} | {r['mutations_per_s']:,.0f} | {r['scoring_s']:.1f} | "
                     f"{_seconds(r['setup_s'])} | {_seconds(r['wall_s'])} | {rel} | {speed} | "
                     f"{rss} |")
    for r in rows:
        if r["workers"]:
            lines.append("")
            lines.append(
                f"{r['setting']}: steady state (tasks after each worker's first) "
                f"{r['steady_mutations_per_s_per_worker']:,.0f} mutations/s per worker, "
                f"{100 * r['steady_ism_fraction_of_time']:.0f}% of the time in ISM (the rest: "
                f"reading sequences, starting tasks; each write overlaps the next task's ISM); "
                f"chunks per worker "
                f"{r['per_worker_chunks']}; XLA chosen per worker {r.get('per_worker_xla')}.")
    for r in rows:
        if not r.get("processes"):
            continue
        engine_row = next((e for e in rows if e["workers"] == r["processes"]), None)
        if engine_row:
            lines += ["", f"{engine_row['setting']} reach "
                      f"{100 * engine_row['mutations_per_s'] / r['mutations_per_s']:.0f}% of "
                      f"{r['processes']} independent warm in-process runs at once (no Dask, no "
                      "store: what this machine allows that many busy processes)."]
    ratios = result.get("per_round_ratios") or {}
    if ratios:
        lines += ["", "Measured side by side within each round:", ""]
        lines += [f"- {name}: {', '.join(f'{v:.2f}' for v in values)}"
                  for name, values in ratios.items()]
    lines += ["", f"Engine overhead with 1 worker (scoring phase, in-process rate / 1-worker rate − 1): "
              f"{result['engine_overhead_pct']:.1f}% against a cold in-process call (tracing included, "
              f"as each worker pays once), {result['engine_overhead_vs_warm_pct']:.1f}% against a warm "
              "one. Best of "
              f"{result['rounds']} rounds of {result['repeats']} runs, the settings taking turns; load average during the run "
              f"{', '.join(str(v) for v in result['load_average_1_5_15'])} (a shared machine)."]
    return "\n".join(lines) + "\n"


def _seconds(value):
    return "–" if value != value else f"{value:.1f}"  # NaN: not measured for this row


def measure_rounds(model_path, fasta, args, directory):
    """In-process and engine rows, best of ``args.rounds`` rounds that each measure every
    setting in turn, so that a slow spell of a shared machine hits all settings alike."""
    best, per_round = {}, []
    for round_index in range(args.rounds):
        rows = in_process(model_path, fasta, args.method, args.batch_size, args.repeats,
                          args.chunk_size)
        for workers in args.workers:
            if workers > 1:
                rows.append(concurrent_in_process(model_path, fasta, args.method,
                                                  args.batch_size, args.chunk_size, workers))
            rows.append(engine(model_path, fasta, workers, args.method, args.chunk_size,
                               args.batch_size, directory, args.repeats))
        for row in rows:
            print(f"round {round_index + 1}, {row['setting']}: {row['mutations_per_s']:,.0f} "
                  "mutations/s", flush=True)
            kept = best.get(row["setting"])
            if kept is None or row["mutations_per_s"] > kept["mutations_per_s"]:
                best[row["setting"]] = row
        per_round.append({row["setting"]: row["mutations_per_s"] for row in rows})
    return list(best.values()), per_round


def round_ratios(per_round):
    """Per round, the ratios measured side by side in that round: the 1-worker engine against
    warm in-process ISM, N workers against 1, and N workers against N processes at once.

    Returns
    -------
    dict of str to list of float
    """
    ratios = {}
    for rates in per_round:
        one = rates.get("engine, 1 worker")
        for setting, rate in rates.items():
            if setting == "engine, 1 worker" and "in-process (warm)" in rates:
                ratios.setdefault("engine, 1 worker / in-process (warm)", []).append(
                    rate / rates["in-process (warm)"])
            elif setting.startswith("engine, ") and one:
                workers = setting.split()[1]
                ratios.setdefault(f"{setting} / engine, 1 worker", []).append(rate / one)
                together = f"in-process (warm), {workers} processes at once"
                if together in rates:
                    ratios.setdefault(f"{setting} / {together}", []).append(
                        rate / rates[together])
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="sequences (default: 128)")
    parser.add_argument("--length", type=int, default=400, help="sequence length (default: 400)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="engine worker counts (default: 1 2)")
    parser.add_argument("--method", choices=["fast", "naive"], default="fast")
    parser.add_argument("--chunk-size", type=int, default=16,
                        help="sequences per task, and per in-process call (default: 16)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per setting in a round (default: 2)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of all settings; the best of all is kept (default: 2)")
    parser.add_argument("--out", default=str(RESULTS_DIR),
                        help="directory of scaling.json / scaling.md (default: benchmarks/results)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # like one single-threaded worker
    tf.config.threading.set_inter_op_parallelism_threads(1)

    tmp = tempfile.mkdtemp(prefix="fastism-scaling-")
    try:
        model = build_model(args.length)
        model_path = str(Path(tmp) / "basset_small.keras")
        model.save(model_path)
        fasta = write_inputs(tmp, args.n, args.length)
        rows, per_round = measure_rounds(model_path, fasta, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    one = next((r for r in rows if r["workers"] == 1), None)
    load = os.getloadavg()
    result = {
        "load_average_1_5_15": [round(v, 2) for v in load],
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, Python {platform.python_version()}",
        "n_sequences": args.n, "length": args.length, "method": args.method,
        "chunk_size": next((r["chunk_size"] for r in rows if r["workers"]), args.chunk_size),
        "repeats": args.repeats, "rounds": args.rounds, "model_params": int(model.count_params()),
        "engine_overhead_pct": (100 * (rows[0]["mutations_per_s"] / one["mutations_per_s"] - 1)
                                if one else None),
        "engine_overhead_vs_warm_pct": (
            100 * (rows[1]["mutations_per_s"] / one["mutations_per_s"] - 1) if one else None),
        "rows": rows,
        "per_round_mutations_per_s": per_round,
        "per_round_ratios": round_ratios(per_round),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / "scaling.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
