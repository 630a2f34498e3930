"""Smoke tests of the benchmark scripts (benchmarks/): each runs on tiny settings and writes its
JSON and markdown with the expected columns. No timing is asserted.

Every script runs as its users run it, ``python -m benchmarks.<name>`` from the repository
root, in a subprocess (so TensorFlow state never leaks between them). The original-fastISM and
DeepSHAP rows need their own virtual environments (``benchmarks/make_fastism_venv.sh
[--shap]``) and are skipped where those are not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_script(module, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_results(folder, name):
    data = json.loads((folder / f"{name}.json").read_text())
    markdown = (folder / f"{name}.md").read_text()
    assert "Machine: CPU:" in markdown
    assert data["meta"]["machine"]["cores"] >= 1
    return data, markdown


def header_cells(markdown):
    header = next(line for line in markdown.splitlines() if line.startswith("| "))
    return [cell.strip() for cell in header.strip("|").split("|")]


def test_table1_in_process(tmp_path):
    run_script("table1", "--tiny", "--models", "basset,bpnet", "--lengths", "48",
               "--methods", "naive,fast,gradxinput,ig", "--n-seqs", "2", "--repeats", "1",
               "--no-isolate", "--out", tmp_path)
    data, markdown = read_results(tmp_path, "table1")
    for column in ("model", "seq_len", "method", "s_per_100", "speedup", "bound", "frac_bound",
                   "peak_rss_mb", "peak_delta_mb"):
        assert column in data["columns"]
    assert {"s / 100 seqs", "speedup vs naive", "FLOP bound", "% of bound",
            "peak RSS MB"} <= set(header_cells(markdown))
    rows = data["rows"]
    assert [(r["model"], r["method"]) for r in rows] == [
        (m, method) for m in ("basset", "bpnet") for method in ("naive", "fast", "gradxinput", "ig")]
    for row in rows:
        assert "error" not in row, row
        assert row["s_per_100"] > 0 and row["n_seqs"] == 2 and row["seq_len"] == 48
        assert row["speedup"] > 0
    by_method = {(r["model"], r["method"]): r for r in rows}
    assert by_method["basset", "naive"]["speedup"] == pytest.approx(1.0)
    assert by_method["basset", "fast"]["n_mutations"] == 2 * 48 * 3
    assert by_method["bpnet", "ig"]["s_per_100_all_outputs"] > by_method["bpnet", "ig"]["s_per_100"]
    assert markdown.count("\n| basset |") == 4


def test_recount_bounds_keeps_the_timings(tmp_path):
    run_script("table1", "--tiny", "--models", "bpnet", "--lengths", "40", "--methods",
               "naive,fast", "--n-seqs", "1", "--repeats", "1", "--no-isolate", "--out", tmp_path)
    path = tmp_path / "table1.json"
    data = json.loads(path.read_text())
    fresh = [dict(row) for row in data["rows"]]
    for row in data["rows"]:  # a file counted the way an older version counted
        row.update(bound=99.0, frac_bound=0.01, naive_flops=1.0)
    path.write_text(json.dumps(data))
    run_script("recount_bounds", path)
    recounted, markdown = read_results(tmp_path, "table1")
    for old, new in zip(fresh, recounted["rows"]):
        for key in ("s_per_100", "speedup", "bound", "frac_bound", "naive_flops", "fast_flops"):
            assert new[key] == pytest.approx(old[key]), key
    assert recounted["meta"]["timed"] == data["meta"]["written"]
    assert "FLOP bounds recounted on" in markdown and "| 99.0 |" not in markdown
    proc = subprocess.run([sys.executable, "-m", "benchmarks.recount_bounds",
                           str(tmp_path / "none.json")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "no such result file" in proc.stderr


def test_table1_isolated_and_fast_options(tmp_path):
    run_script("table1", "--tiny", "--models", "basset", "--lengths", "32", "--methods", "fast",
               "--n-seqs", "2", "--repeats", "1", "--fast-option", "xla=False",
               "--out", tmp_path, "--name", "iso")
    data, _ = read_results(tmp_path, "iso")
    (row,) = data["rows"]
    assert "error" not in row, row
    assert row["peak_rss_mb"] > 0 and "xla=False" in row["note"]
    assert data["meta"]["settings"]["fast_options"] == {"xla": False}


@pytest.mark.skipif(not (REPO / "benchmarks/venv-fastism/bin/python").exists(),
                    reason="original fastISM venv not built (benchmarks/make_fastism_venv.sh)")
def test_table1_original(tmp_path):
    run_script("table1", "--tiny", "--models", "bpnet", "--lengths", "32",
               "--methods", "original", "--original-n-seqs", "2", "--repeats", "1",
               "--original-venv", REPO / "benchmarks/venv-fastism", "--no-isolate",
               "--out", tmp_path)
    data, _ = read_results(tmp_path, "table1")
    (original,) = data["rows"]
    assert "error" not in original, original
    assert original["ref_max_abs_diff"] < 1e-4 and original["ism_max_abs_diff"] < 1e-4


@pytest.mark.skipif(not (REPO / "benchmarks/venv-shap/bin/python").exists(),
                    reason="shap venv not built (benchmarks/make_fastism_venv.sh --shap)")
def test_table1_deepshap(tmp_path):
    run_script("table1", "--tiny", "--models", "bpnet", "--lengths", "32",
               "--methods", "deepshap", "--n-seqs", "2", "--repeats", "1", "--out", tmp_path)
    data, _ = read_results(tmp_path, "table1")
    assert "error" not in data["rows"][0], data["rows"][0]


def test_long_range(tmp_path):
    run_script("long_range", "--tiny", "--seq-len", "128", "--window", "16", "--n-attention",
               "1", "--n-seqs", "2", "--repeats", "1", "--no-isolate", "--out", tmp_path)
    data, markdown = read_results(tmp_path, "long_range")
    assert {"time in stop layers", "ideal speedup", "speedup vs naive"} <= set(header_cells(markdown))
    naive, fast = data["rows"]
    assert (naive["method"], fast["method"]) == ("naive", "fast")
    for row in (naive, fast):
        assert "error" not in row and "FAILED" not in row["note"], row
        assert row["s_per_100"] > 0 and row["stop_share"] > 0 and row["ideal_speedup"] > 0
    assert data["meta"]["settings"]["start"] == 56
    assert "mha1" in naive["analysis"]["stop_layers"]


def test_vary_params(tmp_path):
    run_script("vary_params", "--lengths", "32,64", "--filters", "4", "--blocks", "1,2",
               "--kernels", "", "--base", "seq_len=32", "--base", "filters=4",
               "--base", "n_blocks=1", "--base", "kernel=3", "--pool", "2",
               "--n-seqs", "2", "--repeats", "1", "--out", tmp_path)
    data, markdown = read_results(tmp_path, "vary_params")
    assert [(r["param"], r[r["param"]]) for r in data["rows"]] == [
        ("seq_len", 32), ("seq_len", 64), ("filters", 4), ("n_blocks", 1), ("n_blocks", 2)]
    for row in data["rows"]:
        assert "error" not in row, row
        assert row["naive_s_per_100"] > 0 and row["fast_s_per_100"] > 0 and row["speedup"] > 0
    assert {"naive s / 100", "fast s / 100", "speedup", "FLOP bound"} <= set(header_cells(markdown))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "vary_params.png").stat().st_size > 0


def test_scaling_tables_from_rounds():
    """The scaling report's per-round ratios and markdown, on rates made up for the test (the
    script itself starts clusters, which the other suites already exercise)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.scaling import markdown, round_ratios

    per_round = [{"in-process (cold)": 40.0, "in-process (warm)": 50.0, "engine, 1 worker": 45.0,
                  "in-process (warm), 2 processes at once": 100.0, "engine, 2 workers": 81.0},
                 {"in-process (cold)": 40.0, "in-process (warm)": 60.0, "engine, 1 worker": 60.0,
                  "in-process (warm), 2 processes at once": 90.0, "engine, 2 workers": 90.0}]
    ratios = round_ratios(per_round)
    assert ratios == {
        "engine, 1 worker / in-process (warm)": pytest.approx([0.9, 1.0]),
        "engine, 2 workers / engine, 1 worker": pytest.approx([1.8, 1.5]),
        "engine, 2 workers / in-process (warm), 2 processes at once": pytest.approx([0.81, 1.0])}

    def row(setting, workers, rate, **extra):
        return dict({"setting": setting, "workers": workers, "mutations_per_s": rate,
                     "scoring_s": 1.0, "setup_s": 2.0, "wall_s": 3.0, "peak_rss_mb": [500.0],
                     "steady_mutations_per_s_per_worker": rate / max(workers, 1),
                     "steady_ism_fraction_of_time": 0.98, "per_worker_chunks": [4] * workers},
                    **extra)

    nan = float("nan")
    rows = [row("in-process (cold)", 0, 40.0), row("in-process (warm)", 0, 60.0),
            row("engine, 1 worker", 1, 60.0),
            row("in-process (warm), 2 processes at once", 0, 100.0, processes=2, setup_s=nan,
                wall_s=nan, peak_rss_mb=[nan]),
            row("engine, 2 workers", 2, 90.0)]
    text = markdown({"rows": rows, "machine": "test", "n_sequences": 8, "length": 100,
                     "method": "fast", "chunk_size": 4, "model_params": 10, "rounds": 2,
                     "repeats": 1, "engine_overhead_pct": -33.3, "engine_overhead_vs_warm_pct": 0.0,
                     "load_average_1_5_15": [0.1, 0.1, 0.1], "per_round_ratios": ratios})
    ceiling = next(line for line in text.splitlines() if "processes at once |" in line)
    assert "| – | – |" in ceiling and "1.67×" in ceiling and "nan" not in ceiling
    assert "engine, 2 workers reach 90% of 2 independent warm in-process runs" in text
    assert "- engine, 2 workers / engine, 1 worker: 1.80, 1.50" in text
