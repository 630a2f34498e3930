"""The Zarr store: schema, chunk-aligned region writes, the done mask, parameter checks."""

import json
import threading
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
    assert group["y"].metadata.zarr_format == 3 and group["y"].compressors


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
