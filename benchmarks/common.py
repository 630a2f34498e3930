"""Shared plumbing of the benchmark scripts: machine description, timing, peak memory,
isolated runs in fresh subprocesses, and result files (JSON + markdown).

Run a benchmark from the repository root, e.g. ``python -m benchmarks.table1 --help`` (or
``python benchmarks/table1.py``). Nothing here imports TensorFlow at module level, so the same
helpers work inside the original fastISM's tf-keras virtual environment.

Timing: every measurement is one warm-up call (tracing, graph building, first-touch memory),
then ``repeats`` timed calls; the best (minimum) is reported, as ``timeit`` does, since on a
shared machine the noise only ever adds time.

Memory: ``peak_rss_mb`` is the process's resident-set high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``): with ``--isolate`` (the default) every
(model, method) runs in its own fresh Python process, so it is the peak of TensorFlow + the
model + that method alone. ``peak_delta_mb`` is what the method adds on top of the loaded model:
the maximum RSS sampled every 2 ms by a background thread during the warm-up and timed calls,
minus the RSS just before them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

#: Marker of the line a worker subprocess prints its JSON result on.
RESULT_MARKER = "@@BENCHMARK-RESULT@@ "

# Keep TensorFlow's C++ start-up chatter out of the logs (set before TF is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------

def _cpuinfo(key):
    """The first ``key`` line's value in /proc/cpuinfo, or None (no such file or line)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model():
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpu_vector_extensions():
    """The widest x86 vector extension the CPU has ("AVX-512 with BF16", "AVX2", ...), or None.

    Two hosts of one CPU family (the same ``model name``) can differ here, and with it the speed
    of every convolution kernel, so results name it.
    """
    flags = (_cpuinfo("flags") or "").split()
    if "avx512f" in flags:
        return "AVX-512 with BF16" if "avx512_bf16" in flags else "AVX-512"
    for flag, name in (("avx2", "AVX2"), ("avx", "AVX")):
        if flag in flags:
            return name
    return None


def _ram_gb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _nvidia_smi_gpus():
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def machine_info(tensorflow=True):
    """Describe this machine: CPU, cores, RAM, GPUs, Python and (optionally) TF/Keras versions.

    Parameters
    ----------
    tensorflow : bool
        Import TensorFlow and Keras to report their versions and the GPUs TF sees. Default is
        True.

    Returns
    -------
    dict
    """
    info = {
        "cpu": _cpu_model(),
        "cpu_vector": _cpu_vector_extensions(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nvidia_smi": _nvidia_smi_gpus(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    if tensorflow:
        import keras
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["keras"] = keras.__version__
        info["tf_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def machine_line(info):
    """One markdown line describing ``machine_info()``."""
    gpus = info.get("nvidia_smi") or info.get("tf_gpus") or []
    vector = f", {info['cpu_vector']}" if info.get("cpu_vector") else ""
    parts = [f"CPU: {info['cpu']}{vector} ({info['cores']} cores)"]
    if info.get("ram_gb"):
        parts.append(f"RAM: {info['ram_gb']} GB")
    parts.append(f"GPU: {', '.join(gpus) if gpus else 'none'}")
    parts.append(f"Python {info['python']}")
    if "tensorflow" in info:
        parts.append(f"TensorFlow {info['tensorflow']}, Keras {info['keras']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Time and memory
# ---------------------------------------------------------------------------------------------

def current_rss_mb():
    """Resident set size of this process now, in MB (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_rss_mb():
    """The process's resident-set high-water mark so far, in MB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class RssSampler:
    """Context manager sampling this process's RSS every ``interval`` seconds in a thread.

    Attributes (after the block): ``start_mb`` the RSS on entry, ``peak_mb`` the highest sample,
    ``delta_mb`` = peak - start.
    """

    def __init__(self, interval=0.002):
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start_mb = self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())
        return False

    @property
    def delta_mb(self):
        return self.peak_mb - self.start_mb


def best_of(run, repeats=3, warmup=None):
    """Time ``run()``: one warm-up call, then ``repeats`` timed calls; report the best.

    Parameters
    ----------
    run : callable
        The work to time, called with no arguments.
    repeats : int
        Number of timed calls (at least 1). Default is 3.
    warmup : callable, optional
        Called once before the timed calls instead of ``run`` (e.g. the same work on one
        sequence, enough to trace every function). Default is ``run`` itself.

    Returns
    -------
    dict
        ``seconds`` (best), ``times`` (every timed call), ``cpu_seconds`` (the least process CPU
        time of a timed call, all threads: insensitive to other jobs on a shared machine),
        ``warmup_s``, ``peak_delta_mb``.
    """
    repeats = max(1, int(repeats))
    with RssSampler() as mem:
        t0 = time.perf_counter()
        (warmup or run)()
        warmup_s = time.perf_counter() - t0
        times, cpu_times = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    return {"seconds": min(times), "times": times, "cpu_seconds": min(cpu_times),
            "warmup_s": warmup_s, "peak_delta_mb": mem.delta_mb}


# ---------------------------------------------------------------------------------------------
# Isolated runs
# ---------------------------------------------------------------------------------------------

def run_isolated(target, kwargs, timeout=None, python=None, env=None, script=None):
    """Call ``target(**kwargs)`` in a fresh Python process and return its dict result.

    The child is ``python -m benchmarks.common --call TARGET --kwargs JSON`` started in the
    repository root (or ``python SCRIPT JSON`` if ``script`` is given, e.g. for the original
    fastISM runner in its own virtual environment). It prints the result as JSON on a line
    starting with ``RESULT_MARKER``; its ``peak_rss_mb`` is then the peak of that process alone.

    Parameters
    ----------
    target : str
        ``"module:function"``, e.g. ``"benchmarks.table1:measure"``.
    kwargs : dict
        JSON-serialisable keyword arguments.
    timeout : float, optional
        Seconds before the child is killed. Default is no limit.
    python : str, optional
        Interpreter. Default is ``sys.executable``.
    env : dict, optional
        Extra environment variables.
    script : str, optional
        Run this script with the JSON kwargs as its only argument instead of ``--call``.

    Returns
    -------
    dict
        The child's result, or ``{"error": message}`` if it failed.
    """
    python = python or sys.executable
    payload = json.dumps(kwargs)
    if script is None:
        cmd = [python, "-m", "benchmarks.common", "--call", target, "--kwargs", payload]
    else:
        cmd = [python, str(script), payload]
    child_env = dict(os.environ, **(env or {}))
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=child_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
    return {"error": f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}",
            "stderr_tail": "\n".join(tail[-15:])}


def print_result(result):
    """Print a worker's result on the marker line ``run_isolated`` reads."""
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result), flush=True)


def _call_main(argv=None):
    import argparse
    import importlib

    parser = argparse.ArgumentParser(description="run one benchmark measurement (internal)")
    parser.add_argument("--call", required=True, help="module:function")
    parser.add_argument("--kwargs", default="{}", help="JSON keyword arguments")
    args = parser.parse_args(argv)
    module, func = args.call.split(":")
    result = getattr(importlib.import_module(module), func)(**json.loads(args.kwargs))
    print_result(result)


# ---------------------------------------------------------------------------------------------
# Inputs and options
# ---------------------------------------------------------------------------------------------

def random_onehot(n, length, channels=4, seed=0):
    """``n`` random one-hot sequences, float32 array of shape (n, length, channels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.eye(channels, dtype=np.float32)[rng.integers(0, channels, size=(n, length))]


def parse_options(items):
    """``["key=value", ...]`` -> dict; values parsed as JSON when they can be (``true``, ``3``,
    ``"x"``), Python-style ``True``/``False``/``None`` too, else kept as strings."""
    options = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        literal = {"True": True, "False": False, "None": None}.get(value, value)
        if literal is value:
            try:
                literal = json.loads(value)
            except json.JSONDecodeError:
                literal = value
        options[key.strip()] = literal
    return options


def csv_list(text, cast=str):
    """``"a,b,c"`` -> ``[cast(a), cast(b), cast(c)]``."""
    return [cast(item.strip()) for item in str(text).split(",") if item.strip()]


# ---------------------------------------------------------------------------------------------
# FLOP bound (from fastism_dist.core.report, once it exists)
# ---------------------------------------------------------------------------------------------

def flop_bound(model, start=0, end=None):
    """``{"naive_flops", "fast_flops", "bound"}`` from ``fastism_dist.core.report.plan_report``, or
    ``{}`` when that module is not available (the FLOP-bound column is then left empty)."""
    try:
        from fastism_dist.core.report import plan_report
    except ImportError:
        return {}
    try:
        report = plan_report(model, start=start, end=end)
    except Exception as err:  # a report failure must not lose the timings
        return {"bound_error": f"{type(err).__name__}: {err}"}
    return {"naive_flops": float(report.naive_flops), "fast_flops": float(report.fast_flops),
            "bound": float(report.bound)}


# ---------------------------------------------------------------------------------------------
# Result files
# ---------------------------------------------------------------------------------------------

def _fmt(value, fmt):
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    try:
        return format(value, fmt) if fmt else str(value)
    except (TypeError, ValueError):
        return str(value)


def markdown_table(rows, columns):
    """A markdown table; ``columns`` is a list of ``(key, header, format_spec)``."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def write_results(name, rows, columns, meta, out_dir=None, title=None, notes=()):
    """Write ``<out_dir>/<name>.json`` (meta + rows) and ``<name>.md`` (machine header, table,
    notes). ``meta`` must hold ``machine`` (from ``machine_info``) and the run's settings.

    Returns
    -------
    (Path, Path)
        The JSON and markdown paths.
    """
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    meta = dict(meta, written=time.strftime("%Y-%m-%d %H:%M:%S"))
    with open(json_path, "w") as fh:
        json.dump({"meta": meta, "columns": [k for k, _, _ in columns], "rows": rows}, fh,
                  indent=1, default=str)
    text = [f"# {title or name}", "", f"Machine: {machine_line(meta['machine'])}", "",
            f"Settings: `{json.dumps(meta.get('settings', {}), default=str)}`", "",
            markdown_table(rows, columns), ""]
    text += [f"- {note}" for note in notes]
    with open(md_path, "w") as fh:
        fh.write("\n".join(text).rstrip() + "\n")
    return json_path, md_path


if __name__ == "__main__":
    _call_main()


@contextlib.contextmanager
def local_client(workers):
    """A client of a fresh ``LocalCluster`` of ``workers`` single-threaded worker processes
    (spawned, GPUs hidden, one OpenMP thread, monitoring as light as the engine's own local
    clusters), waited for; both closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    from fastism_dist.distributed.settings import WORKER_ENV, local_cluster_config

    with dask.config.set(local_cluster_config()):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", host="127.0.0.1",
                               env=dict(WORKER_ENV, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1"))
    try:
        with Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(workers)
            yield client
    finally:
        cluster.close()
