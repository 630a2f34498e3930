"""Ensembles of models on real LocalClusters and real Zarr stores: keep and mean equal a naive
ensemble (mutate, call every model, average); directories and globs; mismatched models refused;
resume after an interrupted run or a killed worker gives bit-identical stores.

Three tiny CNNs (L = 20) and five sequences; most tests share the session's 2-worker cluster.
"""

import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zarr
from conftest import WrappedSource, random_letters, write_fasta
from oracle import explicit_ism

from fastism_dist import open_results
from fastism_dist.distributed import score
from fastism_dist.errors import FastISMError, ModelError, StoreMismatchError
from fastism_dist.io import open_sequences
from fastism_dist.store import SCRATCH, done_mask

pytestmark = pytest.mark.cluster
L_ENS = 20
N_SEQ = 5
TOL = 1e-5
CLI = os.path.join(os.path.dirname(sys.executable), "fastism-dist")


def _cnn(seed, length=L_ENS):
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((length, 4))
    h = layers.Conv1D(4, 5, padding="same", activation="relu")(inp)
    h = layers.Flatten()(layers.MaxPooling1D(2)(h))
    return keras.Model(inp, layers.Dense(2, name="y")(h))


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    """A folder of three models (m0..m2.keras), a FASTA of five 20 bp sequences, its one-hot."""
    work = tmp_path_factory.mktemp("ensemble")
    models = work / "models"
    models.mkdir()
    for k in range(3):
        _cnn(10 + k).save(models / f"m{k}.keras")
    (models / "notes.txt").write_text("not a model")
    fasta = write_fasta(work / "in.fa", random_letters(N_SEQ, L_ENS, seed=4))
    x = open_sequences(fasta, length=L_ENS).read(slice(None))
    return {"work": work, "models": models, "fasta": fasta, "x": np.asarray(x, np.float32)}


@pytest.fixture(scope="module")
def naive(ens):
    """Per model, the explicit ISM (ref (B, 2), mut (B, L, 4, 2)) of the sequences."""
    import keras

    out = []
    for k in range(3):
        model = keras.models.load_model(ens["models"] / f"m{k}.keras")
        ref, mut = explicit_ism(model, ens["x"])
        out.append((ref[0], mut[0]))
    return out


def _files(ens):
    return [str(ens["models"] / f"m{k}.keras") for k in range(3)]


def _arrays(path):
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {name: group[name][...] for name in group.array_keys()}


def _assert_identical(a, b):
    got, want = _arrays(a), _arrays(b)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_keep_and_mean_equal_a_naive_ensemble(ens, naive, client, tmp_path):
    keep = tmp_path / "keep.zarr"
    score(_files(ens), ens["fasta"], str(keep), client=client, ensemble="keep", chunk_size=2,
          group_size=2, method="naive", progress=False)
    ds = open_results(str(keep))
    assert ds["y"].dims == ("seq", "model", "pos", "base", "y_dim_0")
    assert list(ds["model"].values) == ["m0.keras", "m1.keras", "m2.keras"]
    assert sorted(ds.attrs["model_sha256s"]) == ["m0.keras", "m1.keras", "m2.keras"]
    assert ds.attrs["ensemble"] == "keep" and SCRATCH not in os.listdir(keep)
    for k, (ref, mut) in enumerate(naive):
        np.testing.assert_allclose(ds["y"].values[:, k], mut, rtol=0, atol=TOL)
        np.testing.assert_allclose(ds["y_ref"].values[:, k], ref, rtol=0, atol=TOL)

    mean = tmp_path / "mean.zarr"
    summary = score(str(ens["models"]), ens["fasta"], str(mean), client=client, chunk_size=2,
                    group_size=2, method="naive", progress=False)
    assert summary.chunks_run == 3 and summary.mutations == 3 * N_SEQ * L_ENS * 3
    ds = open_results(str(mean))
    assert ds["y"].dims == ("seq", "pos", "base", "y_dim_0") and ds.attrs["ensemble"] == "mean"
    np.testing.assert_allclose(ds["y"].values, np.mean([m for _, m in naive], axis=0), atol=TOL)
    np.testing.assert_allclose(ds["y_ref"].values, np.mean([r for r, _ in naive], axis=0), atol=TOL)
    assert ds["done"].values.tolist() == [1, 1, 1] and SCRATCH not in os.listdir(mean)

    glob_out = tmp_path / "glob.zarr"  # the same models by a glob, in other group sizes
    score(str(ens["models"] / "m*.keras"), ens["fasta"], str(glob_out), client=client,
          chunk_size=2, group_size=2, method="naive", progress=False)
    _assert_identical(glob_out, mean)


def test_models_that_take_another_input_are_refused(ens, tmp_path):
    """One line naming the file, exit code 2, an existing store untouched (through the CLI)."""
    bad = tmp_path / "bad"
    shutil.copytree(ens["models"], bad)
    _cnn(3, length=24).save(bad / "m1.keras")
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    done = subprocess.run([CLI, "score", str(bad), ens["fasta"], "--out", str(out), "--quiet",
                           "--workers", "1"], capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert f"{bad / 'm1.keras'}: takes input (batch, 24, 4) but m0.keras takes (batch, 20, 4)" \
        in errors[0]
    assert os.listdir(out) == ["keep.txt"]
    with pytest.raises(ModelError, match="is a directory"):
        score(str(tmp_path), ens["fasta"], str(tmp_path / "o.zarr"))
    with pytest.raises(FastISMError, match="ensemble / group_size need several models"):
        score(_files(ens)[0], ens["fasta"], str(tmp_path / "o.zarr"), ensemble="keep")


def test_a_changed_model_file_is_refused_on_resume(ens, client, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ens["models"], models)
    out = tmp_path / "out.zarr"
    args = dict(client=client, chunk_size=3, method="naive", progress=False)
    score(str(models), ens["fasta"], str(out), **args)
    before = _arrays(out)
    _cnn(99).save(models / "m2.keras")
    with pytest.raises(StoreMismatchError, match=r"m2\.keras of sha256 .* now has sha256") as info:
        score(str(models), ens["fasta"], str(out), **args)
    assert info.value.parameter == "model_sha256s" and "\n" not in str(info.value)
    with pytest.raises(StoreMismatchError, match=r"models \[m0.keras, m1.keras, m2.keras\] but "
                                                 r"this run has \[m0.keras, m1.keras\]"):
        score(sorted(str(p) for p in models.glob("m*.keras"))[:2], ens["fasta"], str(out), **args)
    with pytest.raises(StoreMismatchError, match="ensemble=mean but this run has ensemble=keep"):
        score(str(ens["models"]), ens["fasta"], str(out), ensemble="keep", **args)
    _assert_same(before, _arrays(out))


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class _Source(WrappedSource):
    """A sequence source that fails on reading sequence ``bad`` or sleeps ``delay`` per read."""

    def __init__(self, path, bad=None, delay=0.0):
        super().__init__(open_sequences(path, length=L_ENS))
        self.bad, self.delay = bad, delay

    def before_read(self, indices):
        time.sleep(self.delay)
        if self.bad is not None and self.bad in np.asarray(indices):
            raise RuntimeError(f"sequence {self.bad} could not be read")


def test_an_interrupted_run_resumes_bit_identically(ens, client, tmp_path):
    """``mean``: the group partials of the failed run are kept and the chunks finished."""
    args = dict(client=client, chunk_size=1, group_size=1, method="naive", progress=False)
    clean = tmp_path / "clean.zarr"
    score(_files(ens), _Source(ens["fasta"]), str(clean), **args)
    out = tmp_path / "out.zarr"
    with pytest.raises(FastISMError, match=r"chunk 3 \(model group \d\) failed"):
        score(_files(ens), _Source(ens["fasta"], bad=3), str(out), retries=0, **args)
    assert not done_mask(str(out))[3] and SCRATCH in os.listdir(out)
    summary = score(_files(ens), _Source(ens["fasta"]), str(out), **args)
    assert summary.chunks_skipped >= 0 and done_mask(str(out)).all()
    assert SCRATCH not in os.listdir(out)
    _assert_identical(out, clean)


def test_a_killed_worker_leaves_a_bit_identical_store(ens, cluster, tmp_path):
    """``keep``: the killed worker's tasks run elsewhere; the store equals a clean run's."""
    from distributed import Client

    args = dict(chunk_size=1, group_size=1, method="naive", progress=False, ensemble="keep")
    clean = tmp_path / "clean.zarr"
    out = tmp_path / "out.zarr"
    with Client(cluster, set_as_default=False) as cli:
        score(_files(ens), _Source(ens["fasta"]), str(clean), client=cli, **args)
        result = {}

        def run():
            try:
                result["summary"] = score(_files(ens), _Source(ens["fasta"], delay=0.3), str(out),
                                          client=cli, **args)
            except BaseException as err:  # reported by the main thread
                result["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        _wait_for_groups(out, 2, thread)
        assert not done_mask(str(out)).all()  # killed while the run goes
        pid = next(iter(cli.run(os.getpid).values()))
        os.kill(pid, 9)
        thread.join(timeout=240)
        assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    _assert_identical(out, clean)


def _wait_for_groups(out, at_least, thread, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout and thread.is_alive():
        try:
            flags = zarr.open_group(str(out / SCRATCH), mode="r")["group_done"][...]
            if int(flags.sum()) >= at_least:
                return
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} model group(s) done in {timeout} s")


def test_keep_sizes_its_chunks_for_every_model(tmp_path):
    """The automatic chunk size keeps a chunk's stored outputs under 32 MiB with all the models
    of a ``keep`` store side by side, as ``mean`` does with one."""
    import keras

    from fastism_dist.distributed import plan_run

    keras.utils.set_random_seed(4)
    inp = keras.Input((24, 4))
    wide = keras.Model(inp, keras.layers.Conv1D(64, 3, padding="same", name="y")(inp))
    folder = tmp_path / "models"
    folder.mkdir()
    wide.save(folder / "m0.keras")
    for k in range(1, 8):
        shutil.copy(folder / "m0.keras", folder / f"m{k}.keras")
    fasta = write_fasta(tmp_path / "in.fa", random_letters(100, 24, seed=5))
    per_sequence = 24 * 4 * 24 * 64 * 4  # (pos, base, length, filters) float32
    plans = {mode: plan_run(str(folder), fasta, str(tmp_path / f"{mode}.zarr"), ensemble=mode)
             for mode in ("mean", "keep")}
    assert plans["mean"].chunk_size * per_sequence <= 32 * 2**20
    assert plans["keep"].chunk_size * 8 * per_sequence <= 32 * 2**20
    assert plans["keep"].chunk_size < plans["mean"].chunk_size
