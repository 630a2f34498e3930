"""The notebooks in ``notebooks/`` run top to bottom, and are committed without outputs.

Each notebook is copied to a temporary folder and executed there with ``nbclient`` on a kernel
of this interpreter, with ``FASTISM_NOTEBOOK_TINY=1`` (tiny inputs) and its files written under
the test's temporary folder (``FASTISM_NOTEBOOK_DIR``). A failing cell fails the test with the
cell's traceback; then the outputs every notebook promises are checked (dashboard links, figures,
the resumed run, the benchmark plots with and without result files).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_quickstart.ipynb", "02_scale_out.ipynb", "03_benchmarks.ipynb")
MAX_COMMITTED_OUTPUT_BYTES = 4096  # per notebook: strip outputs before committing
KERNEL = "fastism-notebook-test"
CELL_TIMEOUT = 600


# ---------------------------------------------------------------------------------- committed


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    size = len(json.dumps(outputs))
    assert size <= MAX_COMMITTED_OUTPUT_BYTES, (
        f"{name} carries {size} bytes of outputs; strip them before committing "
        "(e.g. jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)")
    assert not any("image/png" in o.get("data", {}) for o in outputs), f"{name} carries images"
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"


# ---------------------------------------------------------------------------------- executed


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A kernel spec running this interpreter, found first through ``JUPYTER_PATH``."""
    pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (the test extra)")
    path = tmp_path_factory.mktemp("jupyter")
    spec = path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fastism_dist tests", "language": "python"}))
    return path


def execute(name, tmp_path, monkeypatch, kernel_dir, env=None):
    """Run notebook ``name`` in a copy under ``tmp_path``; return the executed notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOK_DIR / name, work / name)
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(
        [str(kernel_dir)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("FASTISM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("FASTISM_NOTEBOOK_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for key in ("FASTISM_SCHEDULER", "FASTISM_BENCHMARK_RESULTS", "FASTISM_NOTEBOOK_SLURM"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(work / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    return nb


def outputs(nb):
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def text(nb):
    """Everything the notebook printed or displayed as text."""
    parts = []
    for o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            parts += [str(o.data.get(k, "")) for k in ("text/plain", "text/html")]
    return "\n".join(parts)


def n_figures(nb):
    return sum("image/png" in o.get("data", {}) for o in outputs(nb))


def n_widgets(nb):
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs(nb))


@pytest.mark.cluster
@pytest.mark.slow
def test_quickstart(tmp_path, monkeypatch, kernel_dir):
    nb = execute("01_quickstart.ipynb", tmp_path, monkeypatch, kernel_dir)
    out = text(nb)
    assert "dashboard: http://127.0.0.1:" in out and "/status" in out
    assert "computed 4 of 4 chunks: 4,800 mutations" in out
    assert "nothing has been read yet" in out
    assert n_figures(nb) >= 2  # the ISM map of one sequence and the region's importance
    pytest.importorskip("ipywidgets")
    assert n_widgets(nb) >= 2  # the live progress bar of score and distributed.progress
    files = tmp_path / "files"
    assert (files / "quickstart.zarr").is_dir() and (files / "region.zarr").is_dir()
    assert (files / "region.png").stat().st_size > 0
    assert (files / "modisco" / "attr.npz").is_file() and (files / "region.bw").is_file()
    assert "sizes from the store's 'chrom_sizes'" in out, out[-2000:]


@pytest.mark.cluster
@pytest.mark.slow
def test_scale_out(tmp_path, monkeypatch, kernel_dir):
    nb = execute("02_scale_out.ipynb", tmp_path, monkeypatch, kernel_dir)
    out = text(nb)
    assert "started `dask scheduler" in out and "started `dask worker" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert "rerun:" in out and "already done, of 16" in out
    assert "file://" in out
    assert "stopped scheduler" in out and "stopped workers" in out
    assert "dask-jobqueue" in out


@pytest.mark.slow
def test_benchmarks_without_results(tmp_path, monkeypatch, kernel_dir):
    empty = tmp_path / "results"
    empty.mkdir()
    nb = execute("03_benchmarks.ipynb", tmp_path, monkeypatch, kernel_dir,
                 env={"FASTISM_BENCHMARK_RESULTS": str(empty)})
    out = text(nb)
    assert "no benchmark results" in out and "no scaling results" in out
    assert "factorized_basset" in out  # the FLOP bound table
    assert n_figures(nb) == 2  # bounds (Table 1) and the Fig. S1 sweeps


def _fake_results(path):
    """Result files shaped like benchmarks/table1.py's and benchmarks/scaling.py's."""
    path.mkdir()
    rows = []
    for model, bound in (("basset", 16.6), ("factorized_basset", 31.9), ("bpnet", 2.7)):
        for length in (1000, 2000):
            rows.append({"model": model, "seq_len": length, "method": "naive", "n_seqs": 10,
                         "s_per_100": 100.0, "speedup": 1.0, "bound": 1.0})
            rows.append({"model": model, "seq_len": length, "method": "fast", "n_seqs": 10,
                         "s_per_100": 1000.0 / bound, "speedup": bound / 10, "bound": bound})
    (path / "table1.json").write_text(json.dumps({
        "meta": {"machine": {"cpu": "test CPU", "cores": 2}, "settings": {}},
        "columns": ["model", "seq_len", "method", "s_per_100", "speedup", "bound"], "rows": rows}))
    (path / "scaling.json").write_text(json.dumps({
        "machine": "test machine", "n_sequences": 8, "length": 100, "method": "fast",
        "chunk_size": 2, "engine_overhead_pct": 5.0,
        "rows": [{"setting": "in-process", "workers": 0, "mutations_per_s": 1000.0},
                 {"setting": "engine, 1 worker", "workers": 1, "mutations_per_s": 950.0},
                 {"setting": "engine, 2 workers", "workers": 2, "mutations_per_s": 1800.0}]}))
    return path


@pytest.mark.slow
def test_benchmarks_with_results(tmp_path, monkeypatch, kernel_dir):
    results = _fake_results(tmp_path / "results")
    nb = execute("03_benchmarks.ipynb", tmp_path, monkeypatch, kernel_dir,
                 env={"FASTISM_BENCHMARK_RESULTS": str(results)})
    out = text(nb)
    assert "scaling, table1" in out
    assert "no Table 1 results" not in out and "no scaling results" not in out
    assert "test CPU" in out and "engine overhead with one worker: 5.0%" in out
    assert n_figures(nb) == 3  # measured vs bound, Fig. S1 sweeps, scaling
