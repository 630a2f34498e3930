"""fastism-dist inspect / plot / demo as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

from fastism_dist.cli import main
from fastism_dist.models import basset

import toy_models


@pytest.fixture(scope="module")
def basset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "basset.keras"
    basset(seq_len=1000, seed=0).save(path)
    return str(path)


def test_inspect_prints_plan_and_bound(basset_file, capsys):
    assert main(["inspect", basset_file]) == 0
    out = capsys.readouterr().out
    assert "first-layer lookup" in out and "incremental dense" in out
    assert "theoretical speedup 33.5x" in out  # the incremental convolutions counted
    assert "acceleration stops at flatten" in out


def test_inspect_json(basset_file, capsys):
    assert main(["inspect", basset_file, "--json", "--start", "400", "--end", "600"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positions"] == 200 and report["bound"] > 10


def test_inspect_lambda_model_needs_unsafe(tmp_path, capsys):
    path = tmp_path / "lambda.keras"
    toy_models.reverse_complement_lambda().save(path)
    assert main(["inspect", str(path)]) == 2
    assert "safe mode" in capsys.readouterr().err
    assert main(["inspect", str(path), "--unsafe-model"]) == 0
    assert "acceleration stops at lambda" in capsys.readouterr().out


def test_inspect_bad_input(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none.keras")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model file not found") and err.count("\n") == 1
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    assert main(["inspect", str(bad)]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_plot_missing_store(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "absent.zarr"), "--seq", "a", "--png", str(tmp_path / "a.png")]) == 2
    assert "store not found" in capsys.readouterr().err


@pytest.mark.cluster
def test_demo_then_plot(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "fastism_dist.cli", "demo", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "demo.zarr").is_dir()
    assert any(name.endswith(".png") for name in os.listdir(out))
    png = tmp_path / "seq0003.png"
    assert main(["plot", str(out / "demo.zarr"), "--seq", "seq0003", "--png", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["plot", str(out / "demo.zarr"), "--seq", "nope", "--png", str(png)]) == 2


@pytest.mark.cluster
def test_score_multi_input_model(tmp_path):
    """--seq-input names the sequence input, --other-inputs (.npz keyed by input name) gives
    the others, one row per sequence; the store matches explicit ISM with those inputs."""
    import keras
    import numpy as np

    from fastism_dist import open_results
    from oracle import explicit_ism, random_one_hot

    keras.utils.set_random_seed(7)
    L = keras.layers
    dna = keras.Input((20, 4), name="dna")
    cell = keras.Input((3,), name="cell")
    h = L.Flatten()(L.Conv1D(4, 5, activation="relu")(dna))
    model = keras.Model([cell, dna], L.Dense(2, name="y")(L.Concatenate()([h, L.Dense(4)(cell)])))
    model_path = str(tmp_path / "two_inputs.keras")
    model.save(model_path)
    x = random_one_hot(4, 20, seed=8)
    other = np.random.default_rng(9).normal(size=(4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "other.npz", cell=other)
    out = tmp_path / "out.zarr"
    run = subprocess.run([sys.executable, "-m", "fastism_dist.cli", "score", model_path,
                          str(tmp_path / "x.npy"), "--out", str(out), "--seq-input", "dna",
                          "--other-inputs", str(tmp_path / "other.npz"), "--workers", "1",
                          "--method", "naive", "--quiet"], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert run.returncode == 0, run.stderr
    ref, mut = explicit_ism(model, x, other_inputs=[other], seq_index=1)
    ds = open_results(str(out))
    np.testing.assert_allclose(ds["y"].values, mut[0], atol=1e-5)
    np.testing.assert_allclose(ds["y_ref"].values, ref[0], atol=1e-5)
