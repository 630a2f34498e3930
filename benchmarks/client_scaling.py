"""The client side at many chunks: CPU time per chunk of the client and of the scheduler.

A tiny model (L = 8, three mutated positions) scores N one-sequence chunks, so the run is all
bookkeeping: planning, the template, submitting N tasks, counting N results. The scheduler and
two single-threaded workers are separate ``dask scheduler`` / ``dask worker`` processes (as on
a real cluster), so the client process's CPU time is the client's own; the scheduler's CPU time
is read from its process. If the client did work quadratic in the number of chunks, its CPU
time per chunk would grow with N; here it is measured at each N side by side.

Results go to ``benchmarks/results/client_scaling.json`` and ``.md``. Run from the repository
root::

    python benchmarks/client_scaling.py                  # N = 10,000 and 100,000
    python benchmarks/client_scaling.py --n 1000 5000     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, machine_line  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LENGTH, POSITIONS = 8, 3
DASK = os.path.join(os.path.dirname(sys.executable), "dask")


def tiny_model(path):
    """# in (8, 4) -> C(2, 3) -> F -> D(1): a model whose ISM costs next to nothing"""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((LENGTH, 4))
    hidden = keras.layers.Flatten()(keras.layers.Conv1D(2, 3, activation="relu")(inp))
    keras.Model(inp, keras.layers.Dense(1, name="y")(hidden)).save(path)
    return path


def one_hot(n, seed=0):
    """(n, L, 4) random one-hot sequences."""
    letters = np.random.default_rng(seed).integers(0, 4, (n, LENGTH))
    return np.eye(4, dtype=np.float32)[letters]


class Cluster:
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes."""

    def __init__(self, folder, workers):
        self.folder, self.procs = folder, []
        scheduler_file = os.path.join(folder, "scheduler.json")
        env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--dashboard-address", ":0", "--scheduler-file", scheduler_file], env)
        deadline = time.monotonic() + 120
        while not os.path.exists(scheduler_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        with open(scheduler_file) as fh:
            self.address = json.load(fh)["address"]
        for _ in range(workers):
            self._start([DASK, "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                         "--no-nanny", "--memory-limit", "0"], env)
        self.scheduler_pid = self.procs[0].pid

    def _start(self, cmd, env):
        log = open(os.path.join(self.folder, f"proc{len(self.procs)}.log"), "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=env))

    def scheduler_cpu_s(self):
        import psutil

        times = psutil.Process(self.scheduler_pid).cpu_times()
        return times.user + times.system

    def close(self):
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def measure(n, cluster, model, folder):
    """Score n one-sequence chunks; client and scheduler CPU seconds and wall seconds."""
    from distributed import Client

    from fastism_dist.distributed import score

    npy = os.path.join(folder, f"x{n}.npy")
    np.save(npy, one_hot(n, seed=n))
    out = os.path.join(folder, f"out{n}.zarr")
    with Client(cluster.address, timeout="60s") as client:
        client.wait_for_workers(len(cluster.procs) - 1, timeout=120)
        sched0, cpu0, wall0 = cluster.scheduler_cpu_s(), time.process_time(), time.perf_counter()
        summary = score(model, npy, out, client=client, chunk_size=1, start=0, end=POSITIONS,
                        method="naive", progress=False)
        wall = time.perf_counter() - wall0
        client_s, sched_s = time.process_time() - cpu0, cluster.scheduler_cpu_s() - sched0
    shutil.rmtree(out)
    assert summary.chunks_run == n
    return {"n_chunks": n, "wall_s": wall, "client_cpu_s": client_s, "scheduler_cpu_s": sched_s,
            "client_ms_per_chunk": 1e3 * client_s / n, "scheduler_ms_per_chunk": 1e3 * sched_s / n,
            "chunks_per_s": n / wall, "compute_s": summary.compute_s, "setup_s": summary.setup_s}


def markdown(result):
    lines = [
        "# Client and scheduler cost per chunk",
        "",
        machine_line(result["machine"]),
        "",
        f"Tiny model (L = {LENGTH}, {POSITIONS} mutated positions, naive ISM), one sequence per "
        f"chunk, {result['workers']} single-threaded `dask worker` processes and a `dask "
        "scheduler` process; CPU seconds of the client process and of the scheduler process over "
        "the whole `score` call (planning, template, tasks, results).",
        "",
        "| chunks | wall s | chunks/s | client CPU s | client ms/chunk | scheduler CPU s | "
        "scheduler ms/chunk |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['n_chunks']:,} | {row['wall_s']:.1f} | {row['chunks_per_s']:.0f} | "
                     f"{row['client_cpu_s']:.1f} | {row['client_ms_per_chunk']:.3f} | "
                     f"{row['scheduler_cpu_s']:.1f} | {row['scheduler_ms_per_chunk']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "client_scaling"))
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="fastism-client-scaling-")
    cluster = Cluster(folder, args.workers)
    try:
        model = tiny_model(os.path.join(folder, "tiny.keras"))
        rows = []
        for n in args.n:
            rows.append(measure(n, cluster, model, folder))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)
    result = {"machine": machine_info(), "workers": args.workers, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
