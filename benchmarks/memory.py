"""Peak memory of a distributed worker: full profiles stored vs ``--reduce profile=jsd``.

A BPNet-like model of 1 kb with a (1000, 2) profile head (``fastism_dist.models.bpnet`` with one
task of two strands) scores the same random sequences with ``fastism_dist.score`` on a fresh
one-worker ``LocalCluster`` (one thread, default chunking) per setting:

* ``model loaded``: the run's worker plugin registered (model loaded, executor built and
  self-checked), no chunk scored: the floor under both runs;
* ``full profiles``: every mutant's (1000, 2) profile stored;
* ``profile=jsd``: each mutant's profile reduced on the worker to its Jensen-Shannon distance
  from the reference profile, per track, as its batch arrives.

The worker's peak resident memory is its ``ru_maxrss`` (``resource.getrusage``) read on the
worker after the run; each setting starts a new worker process, so no peak carries over.
Results go to ``benchmarks/results/memory.json`` and ``memory.md``.

Run from the repository root::

    python -m benchmarks.memory            # 12 sequences of 1000 bp
    python -m benchmarks.memory --n 16
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info, write_results

LENGTH = 1000
SETTINGS = (("model loaded", None, False), ("full profiles", None, True),
            ("profile=jsd", "profile=jsd", True))
COLUMNS = [
    ("setting", "setting", ""),
    ("chunk_size", "sequences per chunk", ""),
    ("stored_mb_per_chunk", "stored MB per chunk", ".1f"),
    ("peak_rss_mb", "peak worker RSS MB", ".0f"),
    ("over_loaded_mb", "above model loaded MB", ".0f"),
    ("scoring_s", "scoring s", ".1f"),
    ("mutations_per_s", "mutations/s", ",.0f"),
]


def write_inputs(directory, n, seed=0):
    """``n`` random 1 kb sequences in a FASTA file."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("ACGT"))
    path = Path(directory) / "sequences.fa"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f">seq{i}\n{''.join(letters[rng.integers(0, 4, LENGTH)])}\n")
    return str(path)


def worker_peak_rss_mb(client):
    """ru_maxrss of the one worker of ``client``, in MB."""
    (usage,) = client.run(resource.getrusage, resource.RUSAGE_SELF).values()
    return usage.ru_maxrss / 1024


def one_worker_cluster():
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        return LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                            dashboard_address="127.0.0.1:0", host="127.0.0.1",
                            env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                                 "OMP_NUM_THREADS": "1"})


def measure(model_path, fasta, directory, setting, reduce, score_chunks):
    """One setting on a fresh one-worker cluster: peak worker RSS and what was stored."""
    from distributed import Client

    from fastism_dist.distributed import ISMWorkerPlugin, plan_run, score, write_template

    out = str(Path(directory) / f"{setting.replace(' ', '_').replace('=', '_')}.zarr")
    shutil.rmtree(out, ignore_errors=True)
    cluster = one_worker_cluster()
    try:
        with Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(1)
            row = {"setting": setting, "reduce": reduce}
            if score_chunks:
                summary = score(model_path, fasta, out, client=client, reduce=reduce,
                                progress=False)
                row.update(chunk_size=summary.chunk_size, scoring_s=summary.compute_s,
                           mutations_per_s=summary.mutations_per_s, mutations=summary.mutations)
                row["stored_mb_per_chunk"] = stored_mb_per_chunk(out, summary.chunk_size)
            else:
                run = plan_run(model_path, fasta, out)
                write_template(run)
                plugin = ISMWorkerPlugin(run)
                client.register_plugin(plugin)
                client.unregister_worker_plugin(plugin.name)
            row["peak_rss_mb"] = worker_peak_rss_mb(client)
    finally:
        cluster.close()
        shutil.rmtree(out, ignore_errors=True)
    return row


def stored_mb_per_chunk(out, chunk_size):
    """MB of the mutant outputs of one chunk as stored (every ``o`` variable)."""
    from fastism_dist import open_results

    ds = open_results(out)
    total = 0
    for name in ds.attrs["outputs"]:
        var = ds[name]
        total += var.dtype.itemsize * chunk_size * var[0].size
    return total / 2**20


def lscpu_model():
    """``lscpu``'s model name (None where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="sequences (default: 12)")
    parser.add_argument("--out", default=str(RESULTS_DIR),
                        help="directory of memory.json / memory.md (default: benchmarks/results)")
    args = parser.parse_args(argv)
    from fastism_dist.models import bpnet

    tmp = tempfile.mkdtemp(prefix="fastism-memory-")
    t0 = time.perf_counter()
    try:
        model = bpnet(seq_len=LENGTH, n_tasks=1, strands=2, seed=0)
        model_path = str(Path(tmp) / "bpnet_1kb.keras")
        model.save(model_path)
        fasta = write_inputs(tmp, args.n)
        rows = []
        for setting, reduce, score_chunks in SETTINGS:
            rows.append(measure(model_path, fasta, tmp, setting, reduce, score_chunks))
            print(f"{setting}: peak worker RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor = rows[0]["peak_rss_mb"]
    for row in rows[1:]:
        row["over_loaded_mb"] = row["peak_rss_mb"] - floor
    full, reduced = rows[1]["peak_rss_mb"], rows[2]["peak_rss_mb"]
    info = machine_info()
    info["lscpu_model_name"] = lscpu_model()
    meta = {
        "machine": info,
        "settings": {"n_sequences": args.n, "length": LENGTH, "model": "bpnet(seq_len=1000, "
                     "n_tasks=1, strands=2, seed=0)", "outputs": "profile (1000, 2), counts (1,)",
                     "workers": 1, "threads_per_worker": 1, "method": "fast",
                     "chunk_size": "automatic"},
        "jsd_at_or_below_full": reduced <= full,
        "jsd_minus_full_mb": reduced - full,
        "wall_s": time.perf_counter() - t0,
    }
    notes = [
        f"lscpu model name: {info['lscpu_model_name']}; {info['cores']} cores; "
        f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} at the end (a shared "
        "machine).",
        f"profile=jsd peaks at {reduced:.0f} MB, full profiles at {full:.0f} MB "
        f"({reduced - full:+.0f} MB). Scoring adds {rows[2]['over_loaded_mb']:.0f} / "
        f"{rows[1]['over_loaded_mb']:.0f} MB over the loaded model (the executor's batches); "
        "each batch is reduced as it arrives, so the reduced run holds only its stored "
        f"{rows[2]['stored_mb_per_chunk']:.1f} MB per chunk, where full profiles hold "
        f"{rows[1]['stored_mb_per_chunk']:.1f} MB.",
        "Each setting is a fresh worker process; its peak is ru_maxrss read on the worker after "
        "the run. 'model loaded' registers the run's plugin (model, executor, self-check) and "
        "scores nothing.",
    ]
    json_path, md_path = write_results("memory", rows, COLUMNS, meta, out_dir=args.out,
                                       title="Peak worker memory: full profiles vs profile=jsd",
                                       notes=notes)
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
