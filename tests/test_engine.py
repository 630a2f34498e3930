"""The distributed engine on real LocalClusters (worker processes): results equal in-process ISM.

Tiny models (24 bp), a dozen sequences at most. Most tests share one 2-worker cluster; the
tests about the number of workers or about killing a worker start their own.
"""

import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

from conftest import LENGTH, WrappedSource, random_letters, write_fasta
from fastism_dist import NaiveISM, open_results
from fastism_dist.distributed import auto_chunk_size, executor_class, score
from fastism_dist.errors import FastISMError, InputError, ModelError, StoreMismatchError
from fastism_dist.io import open_sequences
from fastism_dist.outputs import bin_sums, get_reducer
from fastism_dist.store import done_mask

pytestmark = pytest.mark.cluster
TOL = 1e-6


def expected(model_path, x, method="naive", **kwargs):
    """In-process ISM of ``x`` with the same executor the workers use."""
    return executor_class(method)(model_path, **kwargs)(x)


def read_x(path):
    return open_sequences(path, length=LENGTH).read(slice(None))


def assert_store_equals(out, model_path, x, method="naive", names=("y",), start=0, end=None):
    res = expected(model_path, x, method, start=start, end=end)
    ds = open_results(out)
    assert ds["done"].values.tolist() == [1] * ds.sizes["chunk"]
    for k, name in enumerate(names):
        np.testing.assert_allclose(ds[name].values, res.mut[k], rtol=0, atol=TOL)
        np.testing.assert_allclose(ds[f"{name}_ref"].values, res.ref[k], rtol=0, atol=TOL)
    return ds


class SlowSource(WrappedSource):
    """A sequence source whose reads take ``delay`` seconds (so a run can be interrupted)."""

    def __init__(self, source, delay):
        super().__init__(source)
        self.delay = delay

    def before_read(self, indices):
        time.sleep(self.delay)


class FailingSource(WrappedSource):
    """A source whose read of sequence ``bad`` raises ``InputError`` (like a corrupt record)."""

    def __init__(self, source, bad):
        super().__init__(source)
        self.bad = bad

    def before_read(self, indices):
        if self.bad in np.asarray(indices):
            raise InputError(f"{self.path}: record #{self.bad + 1} is corrupt")


@pytest.mark.parametrize("workers,n,chunk_size,method",
                         [(1, 10, 4, "naive"), (2, 10, 3, "fast"), (3, 2, 1, "naive")])
def test_store_equals_in_process(tmp_path, tiny_model_path, workers, n, chunk_size, method):
    """1, 2, 3 workers; N not a multiple of the chunk size; N smaller than the workers."""
    seqs = random_letters(n, LENGTH, seed=workers)
    fasta = write_fasta(tmp_path / "in.fa", seqs)
    out = str(tmp_path / "out.zarr")
    summary = score(tiny_model_path, fasta, out, workers=workers, chunk_size=chunk_size,
                    method=method, progress=False)
    assert summary.n_sequences == n and summary.chunks_run == -(-n // chunk_size)
    assert summary.mutations == n * LENGTH * 3
    assert summary.n_workers == workers
    x = read_x(fasta)
    ds = assert_store_equals(out, tiny_model_path, x, method=method)
    assert list(ds["seq"].values) == [f"s{i}" for i in range(n)]
    assert ["".join(row) for row in ds["ref_base"].values] == seqs
    assert list(ds["pos"].values) == list(range(LENGTH))


def test_worker_killed_mid_run(tmp_path, tiny_model_path):
    from distributed import Client, LocalCluster

    fasta = write_fasta(tmp_path / "in.fa", random_letters(12, LENGTH, seed=5))
    out = str(tmp_path / "out.zarr")
    source = SlowSource(open_sequences(fasta, length=LENGTH), delay=0.4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cl, Client(cl) as cli:
        done_at_kill, summary = score_killing_a_worker(
            cli, tiny_model_path, source, out, chunk_size=1, method="naive")
    assert done_at_kill < 12
    assert summary.chunks_run == 12
    assert_store_equals(out, tiny_model_path, read_x(fasta))


def score_killing_a_worker(cli, model_path, source, out, settle_s=0.0, **kwargs):
    """Run ``score`` in a thread; once a chunk is done (and ``settle_s`` later) SIGKILL one of
    the client's workers. Returns (chunks done at the kill, the run's summary)."""
    result = {}

    def run():
        try:
            result["summary"] = score(model_path, source, out, client=cli, progress=False,
                                      **kwargs)
        except BaseException as err:  # reported by the main thread
            result["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    done_at_kill = _wait_for_done(out, 1, thread)
    time.sleep(settle_s)
    pid = next(iter(cli.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    return done_at_kill, result["summary"]


def _wait_for_done(out, at_least, thread, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout and thread.is_alive():
        try:
            done = int(done_mask(out).sum())
        except Exception:  # the template is not written yet
            done = 0
        if done >= at_least:
            return done
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} chunk(s) done in {timeout} s")


def test_resume_computes_only_missing_chunks(tmp_path, tiny_model_path, tiny_fasta, cluster):
    out = str(tmp_path / "out.zarr")
    addr = cluster.scheduler_address
    first = score(tiny_model_path, tiny_fasta, out, scheduler=addr, chunk_size=3, method="naive",
                  progress=False)
    assert first.chunks_run == 4
    again = score(tiny_model_path, tiny_fasta, out, scheduler=addr, method="naive", progress=False)
    assert again.chunks_run == 0 and again.chunks_skipped == 4
    # forget chunks 1 and 3 (and spoil their data): only they are recomputed
    import zarr

    group = zarr.open_group(out, mode="r+", use_consolidated=False)
    group["done"][1] = 0
    group["done"][3] = 0
    group["y"][3:6] = 0.0
    resumed = score(tiny_model_path, tiny_fasta, out, scheduler=addr, method="naive",
                    progress=False)
    assert resumed.chunks_run == 2 and resumed.chunks_skipped == 2
    assert_store_equals(out, tiny_model_path, read_x(tiny_fasta))


def _snapshot(path):
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                files[os.path.relpath(full, path)] = fh.read()
    return files


def test_different_params_need_overwrite(tmp_path, tiny_model_path, tiny_fasta, cluster):
    out = str(tmp_path / "out.zarr")
    addr = cluster.scheduler_address
    score(tiny_model_path, tiny_fasta, out, scheduler=addr, chunk_size=5, end=10,
          method="naive", progress=False)
    before = _snapshot(out)
    with pytest.raises(StoreMismatchError, match="end=10") as info:
        score(tiny_model_path, tiny_fasta, out, scheduler=addr, chunk_size=5, end=12,
              method="naive", progress=False)
    assert info.value.parameter == "end"
    with pytest.raises(StoreMismatchError) as info:
        score(tiny_model_path, tiny_fasta, out, scheduler=addr, chunk_size=2, end=10,
              method="naive", progress=False)
    assert info.value.parameter == "chunk_size"
    assert _snapshot(out) == before
    summary = score(tiny_model_path, tiny_fasta, out, scheduler=addr, chunk_size=5, end=12,
                    method="naive", overwrite=True, progress=False)
    assert summary.chunks_run == 2
    ds = assert_store_equals(out, tiny_model_path, read_x(tiny_fasta), end=12)
    assert ds.sizes["pos"] == 12


def test_start_end(tmp_path, tiny_model_path, tiny_fasta, cluster):
    out = str(tmp_path / "out.zarr")
    score(tiny_model_path, tiny_fasta, out, scheduler=cluster.scheduler_address, start=5, end=9,
          chunk_size=4, progress=False)
    ds = assert_store_equals(out, tiny_model_path, read_x(tiny_fasta), method="fast", start=5, end=9)
    assert list(ds["pos"].values) == [5, 6, 7, 8]
    assert ds["y"].shape == (10, 4, 4, 2)


def test_multi_output_model(tmp_path, two_output_model_path, tiny_fasta, client):
    out = str(tmp_path / "out.zarr")
    score(two_output_model_path, tiny_fasta, out, client=client, chunk_size=4, progress=False)
    ds = assert_store_equals(out, two_output_model_path, read_x(tiny_fasta), method="fast",
                             names=("profile", "counts"))
    assert ds.attrs["outputs"] == ["profile", "counts"]
    assert ds["profile"].dims == ("seq", "pos", "base", "profile_dim_0", "profile_dim_1")
    assert ds["counts_ref"].dims == ("seq", "counts_dim_0")
    # a subset of the outputs, stored as float16
    sub = str(tmp_path / "sub.zarr")
    score(two_output_model_path, tiny_fasta, sub, client=client, outputs="counts",
          dtype="float16", method="naive", progress=False)
    ds = open_results(sub)
    assert set(ds.data_vars) == {"counts", "counts_ref", "done"}
    assert ds["counts"].dtype == np.float16
    want = expected(two_output_model_path, read_x(tiny_fasta)).mut[1]
    np.testing.assert_allclose(ds["counts"].values, want.astype(np.float16), atol=1e-3)


def test_two_runs_on_one_cluster_at_once(tmp_path, tiny_model_path, two_output_model_path,
                                         tiny_fasta, cluster):
    addr = cluster.scheduler_address
    jobs = {"a": (tiny_model_path, ("y",)), "b": (two_output_model_path, ("profile", "counts"))}
    errors = []

    def run(name, model):
        try:
            score(model, tiny_fasta, str(tmp_path / f"{name}.zarr"), scheduler=addr, chunk_size=1,
                  method="naive", progress=False)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k, m)) for k, (m, _) in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    x = read_x(tiny_fasta)
    for name, (model, names) in jobs.items():
        assert_store_equals(str(tmp_path / f"{name}.zarr"), model, x, names=names)


def test_in_memory_model_and_npy_input(tmp_path, tiny_npy, client):
    import keras

    model = keras.models.load_model(_tiny_model(tmp_path), compile=False)
    out = str(tmp_path / "out.zarr")
    score(model, tiny_npy, out, client=client, chunk_size=6, method="naive", progress=False)
    x = np.load(tiny_npy)
    ds = assert_store_equals(out, model, x)
    assert ds["seq"].values[0] == "seq0"


def _tiny_model(tmp_path):
    import keras

    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    model = keras.Model(inp, L.Dense(1, name="y")(L.Flatten()(L.Conv1D(2, 3)(inp))))
    path = str(tmp_path / "m.keras")
    model.save(path)
    return path


def test_bad_inputs_fail_before_any_cluster(tmp_path, tiny_model_path, lambda_model_path):
    out = str(tmp_path / "out.zarr")
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(InputError):
        score(tiny_model_path, str(empty), out, progress=False)
    np.save(tmp_path / "empty.npy", np.zeros((0, LENGTH, 4), np.float32))
    with pytest.raises(InputError, match="no sequences"):
        score(tiny_model_path, str(tmp_path / "empty.npy"), out, progress=False)
    with pytest.raises(InputError, match="not found|no such file"):
        score(tiny_model_path, str(tmp_path / "missing.fa"), out, progress=False)
    fasta = write_fasta(tmp_path / "in.fa", random_letters(2, LENGTH))
    with pytest.raises(ModelError, match="safe mode"):
        score(lambda_model_path, fasta, out, progress=False)
    with pytest.raises(ModelError, match="unknown output"):
        score(tiny_model_path, fasta, out, outputs="nope", progress=False)
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "keep.txt").write_text("precious")
    with pytest.raises(StoreMismatchError, match="not a Zarr store"):
        score(tiny_model_path, fasta, str(tmp_path / "notastore"), overwrite=True, progress=False)
    assert (tmp_path / "notastore" / "keep.txt").read_text() == "precious"
    assert not os.path.exists(out)


def test_lambda_model_with_unsafe_mode(tmp_path, lambda_model_path, tiny_fasta, client):
    out = str(tmp_path / "out.zarr")
    score(lambda_model_path, tiny_fasta, out, client=client, safe_mode=False, method="naive",
          progress=False)
    ds = open_results(out)
    want = NaiveISM(lambda_model_path, safe_mode=False)(read_x(tiny_fasta))
    np.testing.assert_allclose(ds["y"].values, want.mut[0], atol=TOL)


def test_failing_chunk_is_a_clear_error(tmp_path, tiny_model_path, tiny_fasta, client):
    out = str(tmp_path / "out.zarr")
    source = FailingSource(open_sequences(tiny_fasta, length=LENGTH), bad=7)
    with pytest.raises(InputError, match="record #8 is corrupt"):
        score(tiny_model_path, source, out, client=client, chunk_size=2, method="naive",
              retries=1, progress=False)
    done = done_mask(out)
    assert not done[3]  # the chunk of sequence 7


def test_many_small_chunks(tmp_path, tiny_model_path, cluster):
    """300 one-sequence chunks: every chunk runs once, the totals add up, the store is exact."""
    n = 300
    fasta = write_fasta(tmp_path / "in.fa", random_letters(n, LENGTH, seed=13))
    out = str(tmp_path / "out.zarr")
    summary = score(tiny_model_path, fasta, out, scheduler=cluster.scheduler_address,
                    chunk_size=1, method="naive", progress=False)
    assert summary.n_chunks == summary.chunks_run == n and summary.chunks_skipped == 0
    assert summary.mutations == n * LENGTH * 3
    assert sorted(t["chunk"] for t in summary.tasks) == list(range(n))
    assert sum(w["chunks"] for w in summary.per_worker.values()) == n
    assert sum(w["sequences"] for w in summary.per_worker.values()) == n
    assert sum(w["mutations"] for w in summary.per_worker.values()) == summary.mutations
    assert set(summary.per_worker) == {t["worker"] for t in summary.tasks}
    assert_store_equals(out, tiny_model_path, read_x(fasta))


@pytest.mark.parametrize("xla", ["off", "on"])
def test_xla_choice_fixed_for_every_worker(tmp_path, tiny_model_path, tiny_fasta, client, xla):
    out = str(tmp_path / "out.zarr")
    summary = score(tiny_model_path, tiny_fasta, out, client=client, chunk_size=3, xla=xla,
                    progress=False)
    assert {t["xla"] for t in summary.tasks} == {xla == "on"}
    assert {w["xla"] for w in summary.per_worker.values()} == {xla == "on"}
    assert_store_equals(out, tiny_model_path, read_x(tiny_fasta))


def test_xla_setting_is_checked(tmp_path, tiny_model_path, tiny_fasta):
    out = str(tmp_path / "out.zarr")
    with pytest.raises(FastISMError, match="xla must be 'auto', 'on' or 'off'"):
        score(tiny_model_path, tiny_fasta, out, xla="yes", progress=False)
    with pytest.raises(FastISMError, match="only method 'fast'"):
        score(tiny_model_path, tiny_fasta, out, xla=False, method="naive", progress=False)
    assert not os.path.exists(out)


def test_progress_bar_and_summary(tmp_path, tiny_model_path, tiny_fasta, client, capsys):
    out = str(tmp_path / "out.zarr")
    score(tiny_model_path, tiny_fasta, out, client=client, chunk_size=3, method="naive")
    printed = capsys.readouterr()
    assert re.search(r"4/4 \[.*chunk/s, [\d,]+ mutations/s\]", printed.err), printed.err
    assert "on 2 worker(s) (the given client)" in printed.out
    assert "4 chunks of 3 (4 computed, 0 already done)" in printed.out
    assert "mutations   720 computed" in printed.out


def test_unknown_keyword_is_refused(tmp_path, tiny_model_path, tiny_fasta):
    with pytest.raises(TypeError, match="chunksize"):
        score(tiny_model_path, tiny_fasta, str(tmp_path / "out.zarr"), chunksize=2)


def test_auto_chunk_size():
    assert auto_chunk_size(128, 400, 4, [(16,)]) == 16          # ~32k mutations per task
    assert auto_chunk_size(10, 24, 4, [(2,)]) == 2               # at least 8 chunks
    assert auto_chunk_size(10**5, 1000, 4, [(1000, 2), (2,)]) == 1   # <= 32 MiB per chunk
    assert auto_chunk_size(1, 10, 4, [()]) == 1


# ---- reducers and task choice on the workers -------------------------------------------------------

BPNET_LENGTH = 64


@pytest.fixture(scope="module")
def bpnet_path(tmp_path_factory):
    """Tiny BPNet: conv1 k25 -> 3 residual dilated convs -> profile (64, 4) and counts (2,)."""
    from fastism_dist.models import bpnet

    path = str(tmp_path_factory.mktemp("bpnet") / "bpnet.keras")
    bpnet(seq_len=BPNET_LENGTH, filters=4, n_dilated=3, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def bpnet_fasta(tmp_path_factory):
    path = tmp_path_factory.mktemp("bpnet_in") / "in.fa"
    return write_fasta(path, random_letters(3, BPNET_LENGTH, seed=9))


@pytest.mark.parametrize("spec", ["profile=jsd", "profile=total"])
def test_reduce_on_workers(tmp_path, bpnet_path, bpnet_fasta, client, spec):
    out = str(tmp_path / "out.zarr")
    score(bpnet_path, bpnet_fasta, out, client=client, chunk_size=2, reduce=spec, progress=False)
    x = open_sequences(bpnet_fasta, length=BPNET_LENGTH).read(slice(None))
    res = expected(bpnet_path, x, "fast")
    want = get_reducer(spec.split("=")[1])(res.ref[0], res.mut[0], output="profile")
    ds = open_results(out)
    assert ds["profile"].dims == ("seq", "pos", "base", "profile_dim_1")
    assert ds["profile"].shape == (3, BPNET_LENGTH, 4, 4)
    unreduced = 3 * BPNET_LENGTH * 4 * BPNET_LENGTH * 4 * 4  # bytes of (seq, pos, base, 64, 4)
    assert ds["profile"].nbytes * BPNET_LENGTH == unreduced
    np.testing.assert_allclose(ds["profile"].values, want.mut, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ds["profile_ref"].values, want.ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ds["counts"].values, res.mut[1], atol=1e-5)  # kept as computed
    params = json.loads(ds.attrs["params"])
    assert params["reduce"] == {"profile": spec.split("=")[1]} and params["tasks"] is None
    # the reducer is part of the run's parameters: another one on this store is a mismatch
    other = "profile=total" if spec.endswith("jsd") else "profile=jsd"
    with pytest.raises(StoreMismatchError) as info:
        score(bpnet_path, bpnet_fasta, out, client=client, reduce=other, progress=False)
    assert info.value.parameter == "reduce"


def test_tasks_by_name_and_bins(tmp_path, bpnet_path, bpnet_fasta, client):
    import keras

    model = keras.models.load_model(bpnet_path, compile=False)
    model.get_layer("profile").task_names = ["a+", "a-", "b+", "b-"]
    out = str(tmp_path / "out.zarr")
    score(model, bpnet_fasta, out, client=client, outputs="profile", tasks="b-,0",
          reduce="profile=bins:16", method="naive", progress=False)
    ds = open_results(out)
    assert ds["profile"].dims == ("seq", "pos", "base", "profile_bin", "profile_dim_1")
    assert list(ds["profile_dim_1"].values) == ["b-", "a+"]
    assert list(ds["profile_bin"].values) == [0, 16, 32, 48]
    x = open_sequences(bpnet_fasta, length=BPNET_LENGTH).read(slice(None))
    res = expected(bpnet_path, x, "naive")
    np.testing.assert_allclose(ds["profile"].values, bin_sums(res.mut[0][..., [3, 0]], 16),
                               rtol=1e-5, atol=1e-4)
    assert set(ds.data_vars) == {"profile", "profile_ref", "done"}


def test_bad_reduce_and_tasks_fail_before_any_cluster(tmp_path, bpnet_path, bpnet_fasta):
    out = str(tmp_path / "out.zarr")
    nowhere = "tcp://127.0.0.1:9"  # never contacted: the settings are checked first
    cases = [
        ({"reduce": "counts=jsd"}, "'counts' has shape"),
        ({"reduce": "profile=foo"}, "unknown reducer 'foo'"),
        ({"reduce": "nope=total"}, "names output 'nope'"),
        ({"tasks": "x"}, "output 'profile': task 'x' is not an index"),
        ({"tasks": "3"}, "output 'counts': task index 3 out of range"),
    ]
    for kwargs, message in cases:
        with pytest.raises(FastISMError, match=message) as err:
            score(bpnet_path, bpnet_fasta, out, scheduler=nowhere, progress=False, **kwargs)
        assert "\n" not in str(err.value)
    assert not os.path.exists(out)


def test_sharded_store_one_file_per_task(tmp_path, tiny_model_path, client):
    """--read-chunk: each task writes one shard file holding chunks of read_chunk sequences;
    the values equal in-process ISM, xarray reads the small chunks, and a resume with another
    read_chunk is refused."""
    fasta = write_fasta(tmp_path / "ten.fa", random_letters(10, LENGTH, seed=21))
    out = str(tmp_path / "sharded.zarr")
    score(tiny_model_path, fasta, out, client=client, chunk_size=4, read_chunk=2,
          method="naive", progress=False)
    ds = assert_store_equals(out, tiny_model_path, read_x(fasta))
    assert ds["y"].chunks[0] == (2, 2, 2, 2, 2) and ds["y"].encoding["shards"][0] == 4
    assert sorted(os.listdir(os.path.join(out, "y", "c"))) == ["0", "1", "2"]  # one per task
    assert json.loads(ds.attrs["params"])["read_chunk"] == 2
    with pytest.raises(StoreMismatchError, match="read_chunk"):
        score(tiny_model_path, fasta, out, client=client, read_chunk=1, method="naive",
              progress=False)
    with pytest.raises(FastISMError, match="--read-chunk 3 must divide --chunk-size 4"):
        score(tiny_model_path, fasta, str(tmp_path / "bad.zarr"), client=client, chunk_size=4,
              read_chunk=3, progress=False)
