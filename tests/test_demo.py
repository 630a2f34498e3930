"""The bundled demo: its files, the model finding the planted motifs, and ``run_demo``."""

import json
import os

import numpy as np
import pytest

from fastism_dist import demo
from fastism_dist.analysis import importance, open_results
from fastism_dist.core import output_names
from fastism_dist.io import open_sequences


def test_demo_files_are_bundled_and_small():
    files = demo.demo_files()
    assert os.path.getsize(files.model) < 2 * 2**20
    with open(files.sequences) as fh:
        names = [line[1:].strip() for line in fh if line.startswith(">")]
    assert len(names) == 64 and names[0] == "seq0000" and names[42] == "seq0042"
    sites = demo.read_truth()
    assert sites and {s.motif for s in sites} == set(demo.TASKS)
    assert all(s.name in names and 0 <= s.start < s.end <= 200 and s.strand in "+-" for s in sites)


def test_demo_model_shapes():
    import keras

    model = keras.models.load_model(demo.demo_files().model, compile=False)
    assert tuple(model.inputs[0].shape) == (None, 200, 4)
    assert tuple(model.outputs[0].shape) == (None, 3)
    assert output_names(model) == [demo.OUTPUT]


def test_top_ism_window_overlaps_planted_motif():
    """ISM finds the planted motifs: the 15 bp window of largest summed L2 importance overlaps
    a planted motif in at least 90% of the held-back sequences that carry one, and the bundled
    ``demo_metrics.json`` reports the rate this computation gives."""
    hits = demo.top_window_hits(window=15)
    carriers = {s.name for s in demo.read_truth()}
    assert set(hits) == carriers and len(hits) >= 30
    rate = np.mean(list(hits.values()))
    assert rate >= 0.9, f"top window overlaps a planted motif in only {rate:.0%} of {len(hits)} sequences"
    with open(os.path.join(demo.DATA_DIR, "demo_metrics.json")) as fh:
        metrics = json.load(fh)
    assert metrics["demo_sequences_with_motif"] == len(hits)
    assert metrics["demo_motif_recovery_15bp"] == pytest.approx(rate, abs=0.5 / len(hits))


def test_ism_importance_is_consistent_with_model():
    import keras

    files = demo.demo_files()
    model = keras.models.load_model(files.model, compile=False)
    x = open_sequences(files.sequences).read([0, 1])
    ref, imp = demo.ism_importance(model, x)
    np.testing.assert_allclose(ref, model.predict_on_batch(x), rtol=1e-4, atol=1e-5)
    assert imp.shape == (2, 200) and np.all(imp >= 0)


@pytest.mark.cluster
def test_run_demo_writes_store_and_png(tmp_path):
    from PIL import Image

    result = demo.run_demo(tmp_path, workers=1, progress=False)
    assert result.store == str(tmp_path / "demo.zarr")
    ds = open_results(result.store)
    assert ds.sizes["seq"] == 64 and ds.sizes["pos"] == 200
    assert ds["done"].values.all()
    assert result.png == str(tmp_path / f"{result.seq}.png")
    with Image.open(result.png) as img:
        assert np.asarray(img.convert("L"), dtype=float).var() > 0
    # the store agrees with in-process ISM of the plotted sequence
    i = [str(s) for s in ds["seq"].values].index(result.seq)
    x = open_sequences(demo.demo_files().sequences).read([i])
    _, imp = demo.ism_importance(demo.demo_files().model, x)
    np.testing.assert_allclose(importance(ds, demo.OUTPUT).isel(seq=i).values, imp[0], rtol=1e-3, atol=1e-5)


def test_task_names_beside_the_model():
    import keras

    names = demo.demo_task_names()
    assert names == {demo.OUTPUT: list(demo.TASKS)}
    model = keras.models.load_model(demo.demo_files().model, compile=False)
    assert tuple(model.outputs[0].shape) == (None, len(names[demo.OUTPUT]))


@pytest.mark.cluster
def test_cli_chooses_and_plots_demo_tasks_by_name(tmp_path):
    import subprocess
    import sys

    from fastism_dist.cli import main

    fasta = tmp_path / "two.fa"
    with open(demo.demo_files().sequences) as fh:
        records = fh.read().split(">")[1:3]  # seq0000 and seq0001
    fasta.write_text("".join(">" + r for r in records))
    out = tmp_path / "tasks.zarr"
    run = subprocess.run([sys.executable, "-m", "fastism_dist.cli", "score", demo.demo_files().model,
                          str(fasta), "--out", str(out), "--tasks", "AP-1,CTCF", "--workers", "1",
                          "--quiet"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert run.returncode == 0, run.stderr
    ds = open_results(str(out))
    assert [str(t) for t in ds[demo.OUTPUT].coords[ds[demo.OUTPUT].dims[-1]].values] == ["AP-1", "CTCF"]
    assert main(["plot", str(out), "--seq", "seq0001", "--task", "CTCF",
                 "--png", str(tmp_path / "ctcf.png")]) == 0
