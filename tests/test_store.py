"""The Zarr store: schema, chunk-aligned region writes, the done mask, parameter checks."""

import json
import os
import shutil
import threading
import time
import warnings

import numpy as np
import pytest
import zarr

from fastism_dist import store
from fastism_dist.errors import StoreMismatchError

N, W, S = 5, 4, 4


def _template(path, chunk_size=2, dtype="float32", coords=None, params=None):
    return store.create_template(
        path, ids=[f"s{i}" for i in range(N)], positions=np.arange(3, 3 + W), bases=list("ACGT"),
        outputs={"y": (3,), "profile": (6, 2)}, params=params or {"start": 3, "end": 7},
        model_sha256="abc123", chunk_size=chunk_size, coords=coords, dtype=dtype,
    )


def _chunk_data(n, value):
    ref = {"y": np.full((n, 3), value), "profile": np.full((n, 6, 2), value)}
    mut = {"y": np.full((n, W, S, 3), value), "profile": np.full((n, W, S, 6, 2), value)}
    return ref, mut


def test_template_schema(tmp_path):
    path = str(tmp_path / "s.zarr")
    coords = {"chrom": np.array(["chr1"] * N, dtype=object), "start": np.arange(N) * 10,
              "end": np.arange(N) * 10 + 24, "strand": np.array(["."] * N, dtype=object)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _template(path, coords=coords)
        ds = store.open_results(path)
    assert set(ds.data_vars) == {"y", "y_ref", "profile", "profile_ref", "done"}
    assert ds["y"].dims == ("seq", "pos", "base", "y_dim_0")
    assert ds["profile"].dims == ("seq", "pos", "base", "profile_dim_0", "profile_dim_1")
    assert ds["y_ref"].dims == ("seq", "y_dim_0")
    assert ds["done"].dims == ("chunk",) and ds.sizes["chunk"] == 3
    assert list(ds["seq"].values) == [f"s{i}" for i in range(N)]
    assert list(ds["pos"].values) == [3, 4, 5, 6]
    assert list(ds["base"].values) == list("ACGT")
    assert ds["ref_base"].dims == ("seq", "pos")
    assert list(ds["chrom"].values) == ["chr1"] * N and list(ds["start"].values) == [0, 10, 20, 30, 40]
    assert "strand" not in ds.coords  # unknown everywhere: left out
    assert ds.attrs["model_sha256"] == "abc123"
    assert json.loads(ds.attrs["params"]) == {"start": 3, "end": 7}
    assert ds.attrs["outputs"] == ["y", "profile"] and ds.attrs["chunk_size"] == 2
    assert "fastism_dist_version" in ds.attrs
    assert ds["y"].dtype == np.float32 and np.isnan(ds["y"].values).all()
    assert (ds["done"].values == 0).all()
    # lazily loaded, chunked along seq only
    assert ds["y"].chunks[0] == (2, 2, 1) and ds["y"].chunks[1] == (W,)
    group = zarr.open_group(path)
    assert group["y"].chunks == (2, W, S, 3) and group["done"].chunks == (1,)
    assert group["y"].metadata.zarr_format == 3
    for var in ("y", "y_ref", "profile", "profile_ref"):  # the cheap Zstd level
        (codec,) = group[var].compressors
        assert isinstance(codec, zarr.codecs.ZstdCodec) and codec.level == 1


def test_write_chunk_region_and_done(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    ref, mut = _chunk_data(1, 7.0)
    store.write_chunk(path, 2, ref, mut, ref_base=np.full((1, W), "G", dtype=object))
    ds = store.open_results(path)
    assert list(ds["done"].values) == [0, 0, 1]
    assert (ds["y"].values[4] == 7).all() and np.isnan(ds["y"].values[:4]).all()
    assert (ds["profile_ref"].values[4] == 7).all()
    assert list(ds["ref_base"].values[4]) == ["G"] * W
    assert list(store.done_mask(path)) == [False, False, True]


def test_float16_store(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), dtype="float16")
    ref, mut = _chunk_data(2, 0.5)
    store.write_chunk(path, 0, ref, mut)
    ds = store.open_results(path)
    assert ds["y"].dtype == np.float16 and ds["y"].values[0, 0, 0, 0] == 0.5


def test_chunk_plan_from_store(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    plan = store.chunk_plan(path)
    assert plan == [(0, slice(0, 2)), (1, slice(2, 4)), (2, slice(4, 5))]


def test_misaligned_region_is_refused(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    ref, mut = _chunk_data(2, 1.0)
    for region in (slice(1, 3), slice(3, 5), slice(0, 3)):
        n = len(range(*region.indices(N)))
        ref, mut = _chunk_data(n, 1.0)
        with pytest.raises(ValueError, match="not aligned"):
            store.write_region(path, region, ref, mut)
    assert np.isnan(store.open_results(path)["y"].values).all()  # nothing written
    ref, mut = _chunk_data(1, 1.0)
    store.write_region(path, slice(4, 5), ref, mut)  # the short last chunk is aligned


def test_inconsistent_store_chunking_is_refused(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    group = zarr.open_group(path, mode="r+")
    old = group["y_ref"]
    group.create_array("y_ref", shape=old.shape, chunks=(3, 3), dtype=old.dtype, overwrite=True,
                       dimension_names=("seq", "y_dim_0"))
    with pytest.raises(ValueError, match="chunks"):
        store.chunk_plan(path)
    ref, mut = _chunk_data(2, 1.0)
    with pytest.raises(ValueError):
        store.write_chunk(path, 0, ref, mut)


def test_concurrent_chunk_writers_lose_nothing(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=1)
    errors = []

    def write(i):
        try:
            ref, mut = _chunk_data(1, float(i + 1))
            store.write_chunk(path, i, ref, mut)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ds = store.open_results(path)
    assert ds["done"].values.tolist() == [1] * N
    for i in range(N):
        assert (ds["y"].values[i] == i + 1).all()


def test_wrong_shapes_are_refused(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    ref, mut = _chunk_data(2, 1.0)
    mut["y"] = mut["y"][:, :2]
    with pytest.raises(ValueError, match="shape"):
        store.write_chunk(path, 0, ref, mut)
    assert not store.done_mask(path).any()


def test_check_params(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), params={"model_sha256": "a", "start": 3, "end": 7})
    store.check_params(path, {"model_sha256": "a", "start": 3, "end": 7})
    with pytest.raises(StoreMismatchError, match="end=7") as info:
        store.check_params(path, {"model_sha256": "a", "start": 3, "end": 8})
    assert info.value.parameter == "end"
    with pytest.raises(StoreMismatchError) as info:
        store.check_params(path, {"model_sha256": "b", "start": 4, "end": 8})
    assert info.value.parameter == "model_sha256"
    with pytest.raises(StoreMismatchError) as info:
        store.check_params(path, {"model_sha256": "a", "start": 3, "end": 7, "dtype": "float16"})
    assert info.value.parameter == "dtype"


def test_store_state(tmp_path):
    assert store.store_state(tmp_path / "nothing") == "absent"
    (tmp_path / "file.txt").write_text("x")
    assert store.store_state(tmp_path / "file.txt") == "other"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "data.csv").write_text("x")
    assert store.store_state(tmp_path / "dir") == "other"
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    assert store.store_state(tmp_path / "plain.zarr") == "zarr"
    assert store.store_state(_template(str(tmp_path / "s.zarr"))) == "store"


def test_existing_store_needs_overwrite(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    with pytest.raises(Exception):
        _template(path)
    store.create_template(path, ids=["a"], positions=[0], bases=list("ACGT"), outputs={"y": ()},
                          params={}, model_sha256="x", chunk_size=1, overwrite=True)
    assert store.open_results(path).sizes["seq"] == 1


def test_reducer_dims_labels_and_alt_variables(tmp_path):
    """Reduced outputs get their dims' names and labels; VCF runs add o_alt and allele coords."""
    path = str(tmp_path / "s.zarr")
    dims = {"profile": (("profile_bin", 2, np.array([0, 4])), ("profile_dim_1", 2, np.array(["a", "b"], dtype=object))),
            "y": (("y_dim_0", 3, None),)}
    coords = {"variant_pos": np.full(N, 12), "ref_allele": np.array(["A"] * N, dtype=object),
              "alt_allele": np.array(["G", "T", "C", "AC", "G"], dtype=object),
              "variant_id": np.array(["."] * N, dtype=object),
              "pad_left": np.zeros(N, dtype=np.int64), "pad_right": np.zeros(N, dtype=np.int64)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.create_template(path, ids=[f"s{i}" for i in range(N)], positions=np.arange(W),
                              bases=list("ACGT"), outputs={"y": (3,), "profile": (2, 2)},
                              params={}, model_sha256="x", chunk_size=2, dims=dims, alt=True,
                              coords=coords, attrs={"alt_note": "indels are NaN"})
        ds = store.open_results(path)
    assert ds["profile"].dims == ("seq", "pos", "base", "profile_bin", "profile_dim_1")
    assert ds["profile_alt"].dims == ("seq", "profile_bin", "profile_dim_1")
    assert list(ds["profile_bin"].values) == [0, 4] and list(ds["profile_dim_1"].values) == ["a", "b"]
    assert "y_dim_0" not in ds.coords
    assert list(ds["alt_allele"].values) == ["G", "T", "C", "AC", "G"]
    assert list(ds["variant_pos"].values) == [12] * N
    assert "variant_id" not in ds.coords and "pad_left" not in ds.coords  # all missing / unpadded
    assert ds.attrs["alt"] is True and ds.attrs["alt_note"] == "indels are NaN"

    ref = {"y": np.ones((2, 3)), "profile": np.ones((2, 2, 2))}
    mut = {"y": np.ones((2, W, S, 3)), "profile": np.ones((2, W, S, 2, 2))}
    with pytest.raises(ValueError, match="no ALT data"):
        store.write_chunk(path, 0, ref, mut)
    alt = {"y": np.full((2, 3), 5.0), "profile": np.full((2, 2, 2), np.nan)}
    store.write_chunk(path, 0, ref, mut, alt=alt)
    ds = store.open_results(path)
    assert (ds["y_alt"].values[:2] == 5).all() and np.isnan(ds["y_alt"].values[2:]).all()
    assert list(store.done_mask(path)) == [True, False, False]


def test_padding_coords_kept_when_padded(tmp_path):
    coords = {"chrom": np.array(["chr1"] * N, dtype=object), "start": np.array([-3, 0, 10, 20, 30]),
              "end": np.array([-3, 0, 10, 20, 30]) + W, "strand": np.array(["+"] * N, dtype=object),
              "pad_left": np.array([3, 0, 0, 0, 0]), "pad_right": np.zeros(N, dtype=np.int64)}
    path = _template(str(tmp_path / "s.zarr"), coords=coords)
    ds = store.open_results(path)
    assert list(ds["pad_left"].values) == [3, 0, 0, 0, 0] and "pad_right" in ds.coords
    assert list(ds["start"].values) == [-3, 0, 10, 20, 30]


def test_bad_dims_are_refused(tmp_path):
    kwargs = {"ids": ["a"], "positions": [0], "bases": list("ACGT"), "outputs": {"y": (2,)},
              "params": {}, "model_sha256": "x", "chunk_size": 1}
    with pytest.raises(ValueError, match="sizes"):
        store.create_template(str(tmp_path / "a.zarr"), dims={"y": (("y_dim_0", 3, None),)}, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        store.create_template(str(tmp_path / "b.zarr"), dims={"y": (("t", 2, [1]),)}, **kwargs)
    with pytest.raises(ValueError, match="clashes"):
        store.create_template(str(tmp_path / "c.zarr"), dims={"y": (("chunk", 2, [0, 1]),)}, **kwargs)


def test_one_writer_writes_every_chunk(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    writer = store.open_writer(path)
    assert writer.n_chunks == 3 and writer.outputs == ["y", "profile"]
    assert [writer.chunk_rows(i) for i in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    for i in (2, 0, 1):
        rows = writer.chunk_rows(i)
        ref, mut = _chunk_data(rows.stop - rows.start, float(10 + i))
        writer.write_chunk(i, ref, mut, ref_base=np.full((rows.stop - rows.start, W), "ACGT"[i]))
    ds = store.open_results(path)
    assert ds["done"].values.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(ds["y"].values[:, 0, 0, 0], [10, 10, 11, 11, 12])
    np.testing.assert_array_equal(ds["profile_ref"].values[:, 5, 1], [10, 10, 11, 11, 12])
    assert ds["ref_base"].values[:, 0].tolist() == ["A", "A", "C", "C", "G"]
    with pytest.raises(ValueError, match="chunk 3 out of range: the store has 3 chunks"):
        writer.chunk_rows(3)


def test_one_writer_shared_by_threads(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=1)
    writer = store.open_writer(path)
    errors = []

    def write(i):
        try:
            writer.write_chunk(i, *_chunk_data(1, float(i + 1)))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ds = store.open_results(path)
    assert ds["done"].values.tolist() == [1] * N
    np.testing.assert_array_equal(ds["profile"].values[:, 3, 2, 4, 1], np.arange(1, N + 1))


def test_a_bad_value_writes_nothing(tmp_path):
    """Every value is checked before the first is written: no half-written chunk."""
    path = _template(str(tmp_path / "s.zarr"))
    ref, mut = _chunk_data(2, 1.0)
    mut["profile"] = mut["profile"][:, :, :, :5]  # checked after y, y_ref
    with pytest.raises(ValueError, match=r"'profile': got shape \(2, 4, 4, 5, 2\), expected \(2, 4, 4, 6, 2\)"):
        store.open_writer(path).write_chunk(0, ref, mut)
    ds = store.open_results(path)
    assert np.isnan(ds["y"].values).all() and np.isnan(ds["y_ref"].values).all()
    assert not store.done_mask(path).any()
    with pytest.raises(ValueError, match="no data for output 'profile'"):
        store.write_chunk(path, 0, {"y": ref["y"]}, {"y": mut["y"]})
    with pytest.raises(ValueError, match="the store has no o_alt variables"):
        store.write_chunk(path, 0, *_chunk_data(2, 1.0), alt={"y": ref["y"]})


def test_write_region_into_an_open_group(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    group = store.open_group(path, "r+")
    store.write_region(group, slice(2, 4), *_chunk_data(2, 3.0))
    ds = store.open_results(path)
    assert (ds["y"].values[2:4] == 3).all() and np.isnan(ds["y"].values[[0, 1, 4]]).all()
    assert not store.done_mask(path).any()  # a region write sets no done flag


def test_open_writer_refuses_inconsistent_chunking(tmp_path):
    path = _template(str(tmp_path / "s.zarr"), chunk_size=2)
    group = zarr.open_group(path, mode="r+")
    group.create_array("done", shape=(2,), chunks=(1,), dtype="int8", overwrite=True,
                       dimension_names=("chunk",))
    with pytest.raises(ValueError, match="'done' has shape"):
        store.open_writer(path)


def test_check_params_on_what_is_not_a_store(tmp_path):
    with pytest.raises(StoreMismatchError, match="does not exist") as info:
        store.check_params(tmp_path / "nothing.zarr", {})
    assert info.value.parameter is None
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreMismatchError, match="is a Zarr store not written by fastism_dist"):
        store.check_params(tmp_path / "plain.zarr", {})


def test_paths_and_urls(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    assert store.store_path(f"file://{path}") == path
    assert store.store_path("s3://bucket/run.zarr") == "s3://bucket/run.zarr"
    assert store.store_state(f"file://{path}") == "store"
    assert store.read_chunk_size(path) == 2 and store.read_params(path) == {"start": 3, "end": 7}


def test_a_template_appears_whole_and_leaves_nothing_beside_it(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    assert store.store_state(path) == "store" and os.listdir(tmp_path) == ["s.zarr"]
    store.write_chunk(path, 0, *_chunk_data(2, 1.0))
    store.create_template(path, ids=["a"], positions=[0], bases=list("ACGT"), outputs={"y": ()},
                          params={}, model_sha256="x", chunk_size=1, overwrite=True, run_id="r2")
    assert os.listdir(tmp_path) == ["s.zarr"]
    assert store.stored_run_id(path) == "r2" and not store.done_mask(path).any()
    with pytest.raises(StoreMismatchError, match="already exists"):
        _template(path)


def test_a_template_missing_an_array_is_incomplete(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    shutil.rmtree(os.path.join(path, "done"))
    assert store.store_state(path) == "incomplete"
    with pytest.raises(StoreMismatchError, match="template was never completed"):
        store.check_params(path, {"start": 3, "end": 7})
    path = _template(str(tmp_path / "t.zarr"))
    shutil.rmtree(os.path.join(path, "profile_ref"))
    assert store.store_state(path) == "incomplete"


def _files(path):
    return {os.path.relpath(os.path.join(root, name), path): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(path) for name in names}


def test_a_writer_refuses_a_store_replaced_under_it(tmp_path):
    path = store.create_template(str(tmp_path / "s.zarr"), ids=[f"s{i}" for i in range(N)],
                                 positions=np.arange(W), bases=list("ACGT"),
                                 outputs={"y": (3,), "profile": (6, 2)}, params={},
                                 model_sha256="x", chunk_size=2, run_id="first")
    writer = store.open_writer(path)
    assert writer.run_id == "first"
    writer.write_chunk(0, *_chunk_data(2, 1.0))
    new = _template(str(tmp_path / "new.zarr"))  # no run id
    store.replace_store(new, path)
    before = _files(path)
    with pytest.raises(store.StoreReplacedError, match=r"s\.zarr was replaced by another run "
                       r"while run first was writing it .*; chunk 1 was not written"):
        writer.write_chunk(1, *_chunk_data(2, 2.0))
    assert _files(path) == before and sorted(os.listdir(tmp_path)) == ["s.zarr"]
    shutil.rmtree(path)
    with pytest.raises(store.StoreReplacedError, match="chunk 2 was not written"):
        writer.write_chunk(2, *_chunk_data(1, 2.0))
    assert not os.path.exists(path)


def test_a_writer_for_another_run_writes_nothing(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    with pytest.raises(store.StoreReplacedError, match="replaced by another run while run other"):
        store.open_writer(path, run_id="other").write_chunk(0, *_chunk_data(2, 1.0))
    assert not store.done_mask(path).any()
    store.create_template(path, ids=["a"], positions=[0], bases=list("ACGT"), outputs={"y": ()},
                          params={}, model_sha256="x", chunk_size=1, overwrite=True, run_id="b")
    with pytest.raises(store.StoreReplacedError, match=r"\(now run b\) while run other"):
        store.open_writer(path, run_id="other").write_chunk(0, {"y": np.ones(1)}, {"y": np.ones((1, 1, 4))})


def test_replacing_waits_for_the_chunk_being_written(tmp_path):
    path = _template(str(tmp_path / "s.zarr"))
    new = _template(str(tmp_path / "new.zarr"))
    writing, release = threading.Event(), threading.Event()

    def write():
        with store.owned(path, None):
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    assert writing.wait(10)
    replacer = threading.Thread(target=store.replace_store, args=(new, path))
    replacer.start()
    time.sleep(0.3)
    assert replacer.is_alive() and os.path.isdir(new)  # waiting for the write in progress
    release.set()
    writer.join(10)
    replacer.join(10)
    assert not replacer.is_alive() and sorted(os.listdir(tmp_path)) == ["s.zarr"]
