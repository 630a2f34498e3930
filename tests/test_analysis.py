"""fastism_dist.analysis on small Datasets built by hand in the store's schema, and on real stores."""

import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import fastism_dist
import fastism_dist.analysis as an
from fastism_dist import store
from fastism_dist.errors import FastISMError

BASES = ["A", "C", "G", "T"]


def make_dataset(n_seq=3, n_pos=8, n_task=2, chunk=2, dtype="float32", coords=True, seed=0,
                 pos0=0, extra_output=False):
    """A store-like Dataset: output ``y`` (seq, pos, base, y_dim_0), ``y_ref`` (seq, y_dim_0).

    Sequence 0 is on chr1:100-108 (+), sequence 1 on chr1:200-208 (-), sequence 2 unknown.
    Mutating to the reference base gives exactly the reference output.
    """
    rng = np.random.default_rng(seed)
    ref_idx = rng.integers(0, 4, size=(n_seq, n_pos))
    ref = rng.normal(size=(n_seq, n_task)).astype(dtype)
    mut = rng.normal(size=(n_seq, n_pos, 4, n_task)).astype(dtype)
    for s in range(n_seq):
        for p in range(n_pos):
            mut[s, p, ref_idx[s, p]] = ref[s]
    ids = np.asarray([f"s{i}" for i in range(n_seq)], dtype=object)
    data = {
        "y": (("seq", "pos", "base", "y_dim_0"), da.from_array(mut, chunks=(chunk, n_pos, 4, n_task))),
        "y_ref": (("seq", "y_dim_0"), da.from_array(ref, chunks=(chunk, n_task))),
    }
    if extra_output:
        data["z"] = (("seq", "pos", "base"), da.from_array(mut[..., 0], chunks=(chunk, n_pos, 4)))
        data["z_ref"] = (("seq",), da.from_array(ref[:, 0], chunks=(chunk,)))
    c = {
        "seq": ids,
        "pos": np.arange(pos0, pos0 + n_pos),
        "base": np.asarray(BASES, dtype=object),
        "ref_base": (("seq", "pos"), np.asarray(BASES, dtype=object)[ref_idx]),
    }
    if coords:
        chrom = ["chr1", "chr1", ""] + ["chr2"] * (n_seq - 3)
        start = [100, 200, -1] + [1000 * i for i in range(3, n_seq)]
        strand = ["+", "-", "."] + ["+"] * (n_seq - 3)
        c["chrom"] = ("seq", np.asarray(chrom[:n_seq], dtype=object))
        c["start"] = ("seq", np.asarray(start[:n_seq]))
        c["end"] = ("seq", np.where(np.asarray(start[:n_seq]) >= 0, np.asarray(start[:n_seq]) + n_pos, -1))
        c["strand"] = ("seq", np.asarray(strand[:n_seq], dtype=object))
    outputs = ["y", "z"] if extra_output else ["y"]
    ds = xr.Dataset(data, coords=c, attrs={"outputs": outputs, "chunk_size": chunk})
    return ds, mut, ref, ref_idx


def is_lazy(x):
    return isinstance(x.data, da.Array)


def test_delta_is_lazy_and_right():
    ds, mut, ref, ref_idx = make_dataset()
    d = an.delta(ds, "y")
    assert is_lazy(d)
    assert d.dims == ("seq", "pos", "base", "y_dim_0")
    np.testing.assert_allclose(d.values, mut - ref[:, None, None], rtol=1e-6)
    # the reference base is exactly zero
    taken = np.take_along_axis(d.values, ref_idx[:, :, None, None], axis=2)
    assert np.all(taken == 0)


def test_default_output_and_errors():
    ds, *_ = make_dataset()
    assert an.delta(ds).name == "y_delta"
    two, *_ = make_dataset(extra_output=True)
    with pytest.raises(FastISMError, match="several outputs"):
        an.delta(two)
    with pytest.raises(FastISMError, match="no output named 'nope'"):
        an.delta(two, "nope")
    assert an.output_names(two) == ["y", "z"]
    no_attrs = two.copy()
    no_attrs.attrs = {}
    assert sorted(an.output_names(no_attrs)) == ["y", "z"]


def test_mean_centred_sums_to_zero_over_bases():
    ds, mut, ref, _ = make_dataset()
    mc = an.mean_centred(ds, "y")
    assert is_lazy(mc)
    d = mut - ref[:, None, None]
    np.testing.assert_allclose(mc.values, d - d.mean(axis=2, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mc.sum("base").values, 0, atol=1e-5)


def test_importance_all_tasks_and_one_task():
    ds, mut, ref, _ = make_dataset()
    d = (mut - ref[:, None, None]).astype(np.float64)
    imp = an.importance(ds, "y")
    assert is_lazy(imp) and imp.dims == ("seq", "pos")
    np.testing.assert_allclose(imp.values, np.sqrt((d ** 2).sum(axis=(2, 3))), rtol=1e-5)
    one = an.importance(ds, "y", task=1)
    np.testing.assert_allclose(one.values, np.sqrt((d[..., 1] ** 2).sum(axis=2)), rtol=1e-5)
    same = an.importance(ds, "y", task={"y_dim_0": 1})
    np.testing.assert_allclose(same.values, one.values)
    with pytest.raises(FastISMError, match="out of range"):
        an.importance(ds, "y", task=5)
    with pytest.raises(FastISMError, match="no dimension 'tracks'"):
        an.importance(ds, "y", task={"tracks": 0})
    with pytest.raises(FastISMError, match="has no labels"):
        an.importance(ds, "y", task="CTCF")


def test_task_by_label():
    ds, *_ = make_dataset()
    ds = ds.assign_coords(y_dim_0=["AP-1", "CTCF"])
    by_name = an.importance(ds, "y", task="CTCF").values
    np.testing.assert_allclose(by_name, an.importance(ds, "y", task=1).values)
    with pytest.raises(FastISMError, match="no task 'HNF4A'"):
        an.importance(ds, "y", task="HNF4A")


def test_float16_store_is_upcast():
    ds, *_ = make_dataset(dtype="float16")
    d = an.delta(ds, "y")
    assert d.dtype == np.float32
    assert np.isfinite(an.importance(ds, "y").values).all()


def test_unscored_sequences_stay_nan():
    ds, *_ = make_dataset()
    ds["y"] = ds["y"].where(ds["seq"] != "s2")
    imp = an.importance(ds, "y").values
    assert np.isnan(imp[2]).all() and np.isfinite(imp[:2]).all()
    top = an.top_positions(ds, "y", k=3).compute()
    assert np.isnan(top["importance"].values[2]).all()


def test_top_positions():
    ds, *_ = make_dataset(pos0=10)
    top = an.top_positions(ds, "y", k=3)
    assert is_lazy(top["position"]) and is_lazy(top["importance"])
    top = top.compute()
    imp = an.importance(ds, "y").values
    order = np.argsort(-imp, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(top["position"].values, order + 10)
    np.testing.assert_allclose(top["importance"].values, np.take_along_axis(imp, order, axis=1))
    assert list(top["rank"].values) == [0, 1, 2]
    with pytest.raises(FastISMError, match="k must be between"):
        an.top_positions(ds, "y", k=0)


def test_top_window_matches_brute_force():
    ds, *_ = make_dataset(n_pos=12, pos0=5)
    win = an.top_window(ds, "y", width=4)
    assert is_lazy(win["window_start"])
    win = win.compute()
    imp = an.importance(ds, "y").values
    for s in range(imp.shape[0]):
        sums = [imp[s, i:i + 4].sum() for i in range(12 - 4 + 1)]
        best = int(np.argmax(sums))
        assert win["window_start"].values[s] == best + 5
        assert win["window_end"].values[s] == best + 9
        assert win["importance"].values[s] == pytest.approx(sums[best], rel=1e-6)


def test_window_sums_and_start():
    v = np.array([[0.0, 1, 5, 1, 0, 0], [3, 0, 0, 0, 0, 2]])
    np.testing.assert_allclose(an.window_sums(v, 2), [[1, 6, 6, 1, 0], [3, 0, 0, 0, 2]])
    np.testing.assert_array_equal(an.top_window_start(v, 3), [1, 0])


def test_genomic_coordinate_strand_aware_and_lazy():
    ds, *_ = make_dataset(n_pos=8)
    gc = an.genomic_coordinate(ds)
    assert is_lazy(gc) and gc.dims == ("seq", "pos")
    values = gc.values
    np.testing.assert_array_equal(values[0], 100 + np.arange(8))
    np.testing.assert_array_equal(values[1], 207 - np.arange(8))
    np.testing.assert_array_equal(values[2], -1)
    bare, *_ = make_dataset(coords=False)
    gc = an.genomic_coordinate(bare)
    assert is_lazy(gc) and (gc.values == -1).all()


def test_accessor_delegates():
    ds, *_ = make_dataset()
    xr.testing.assert_allclose(ds.ism.importance("y").compute(), an.importance(ds, "y").compute())
    xr.testing.assert_allclose(ds.ism.delta("y", task=0).compute(), an.delta(ds, "y", task=0).compute())
    xr.testing.assert_allclose(ds.ism.mean_centred("y").compute(), an.mean_centred(ds, "y").compute())
    xr.testing.assert_equal(ds.ism.genomic_coordinate().compute(), an.genomic_coordinate(ds).compute())
    xr.testing.assert_equal(ds.ism.top_positions("y", 2).compute(), an.top_positions(ds, "y", 2).compute())
    xr.testing.assert_equal(ds.ism.top_window("y", 3).compute(), an.top_window(ds, "y", 3).compute())
    assert ds.ism.outputs == ["y"]


def test_zarr_round_trip_stays_lazy(tmp_path):
    import warnings

    ds, *_ = make_dataset()
    path = tmp_path / "s.zarr"
    enc = {k: {"dtype": "float32"} for k in ("y", "y_ref")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, encoding=enc, zarr_format=3, consolidated=True)
        opened = xr.open_zarr(path)
    imp = an.importance(opened, "y")
    gc = an.genomic_coordinate(opened)
    assert is_lazy(imp) and is_lazy(gc)
    np.testing.assert_allclose(imp.values, an.importance(ds, "y").values, rtol=1e-6)
    np.testing.assert_array_equal(gc.values, an.genomic_coordinate(ds).values)


def _store_with_one_chunk(path):
    """A real store: output ``y`` (3 tasks) of 3 sequences, chunk 0 (sequences 0, 1) written."""
    store.create_template(path, ids=["a", "b", "c"], positions=np.arange(5), bases=list("ACGT"),
                          outputs={"y": (3,)}, params={}, model_sha256="x", chunk_size=2)
    rng = np.random.default_rng(3)
    ref = {"y": rng.normal(size=(2, 3))}
    mut = {"y": rng.normal(size=(2, 5, 4, 3))}
    store.write_chunk(path, 0, ref, mut)
    return ref["y"], mut["y"]


def test_open_results_gives_the_accessor_on_a_real_store(tmp_path):
    path = str(tmp_path / "s.zarr")
    ref, mut = _store_with_one_chunk(path)
    ds = fastism_dist.open_results(path)
    assert fastism_dist.open_results is an.open_results
    imp = ds.ism.importance().compute()
    want = np.sqrt(((mut - ref[:, None, None]).astype(np.float32) ** 2).sum(axis=(2, 3)))
    np.testing.assert_allclose(imp.values[:2], want, rtol=1e-6)
    assert np.isnan(imp.values[2]).all()  # chunk 1 is not written yet
    assert ds.ism.outputs == ["y"]


def test_accessor_registered_by_the_top_level_open_results_alone(tmp_path):
    """A fresh interpreter that imports nothing but ``fastism_dist`` gets ``ds.ism``; the store
    package alone neither registers it nor imports the analysis package."""
    path = str(tmp_path / "s.zarr")
    _store_with_one_chunk(path)
    code = (
        "import sys, fastism_dist.store as st\n"
        f"ds = st.open_results({path!r})\n"
        "assert not hasattr(ds, 'ism'), 'the store package registered ds.ism'\n"
        "assert 'fastism_dist.analysis' not in sys.modules\n"
        "import fastism_dist\n"
        f"ds = fastism_dist.open_results({path!r})\n"
        "print(ds.ism.importance('y').shape, ds.ism.outputs)\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras', 'matplotlib') for m in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(3, 5) ['y']"


def test_variant_effect():
    ds, mut, ref, _ = make_dataset()
    alt = mut[:, 0, 1]  # any (seq, y_dim_0) array
    ds["y_alt"] = (("seq", "y_dim_0"), da.from_array(alt, chunks=(2, 2)))
    effect = an.variant_effect(ds, "y")
    assert is_lazy(effect) and effect.dims == ("seq", "y_dim_0") and effect.name == "y_variant_effect"
    np.testing.assert_allclose(effect.values, alt - ref, rtol=1e-6)
    np.testing.assert_allclose(ds.ism.variant_effect(task=1).values, alt[:, 1] - ref[:, 1], rtol=1e-6)
    bare, *_ = make_dataset()
    with pytest.raises(FastISMError, match="no 'y_alt': ALT outputs are stored for VCF inputs only"):
        an.variant_effect(bare)


def test_genomic_coordinate_masks_padding():
    ds, *_ = make_dataset(n_seq=3, n_pos=8)
    # sequence 0's window starts 3 bp before chr1 (+), clipped to chr1:0-5; sequence 1 (-) has
    # 2 N rows at its end (the window started 2 bp before the chromosome), clipped to 202-208
    ds = ds.assign_coords(start=("seq", [0, 202, -1]), end=("seq", [5, 208, -1]),
                          pad_left=("seq", [3, 0, 0]), pad_right=("seq", [0, 2, 0]))
    values = an.genomic_coordinate(ds).values
    np.testing.assert_array_equal(values[0], [-1, -1, -1, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(values[1], [207, 206, 205, 204, 203, 202, -1, -1])
    np.testing.assert_array_equal(values[2], -1)


def test_choose_output():
    two, *_ = make_dataset(extra_output=True)
    assert an.choose_output(two, "z") == "z"
    with pytest.raises(FastISMError, match=r"several outputs \['y', 'z'\]: choose one with output="):
        an.choose_output(two)
    broken = two.drop_vars("z_ref")
    broken.attrs["outputs"] = ["y", "z"]
    with pytest.raises(FastISMError, match="has no reference variable 'z_ref'"):
        an.choose_output(broken, "z")
