"""fastism_dist.outputs: profile reducers on known arrays and against independent float64
implementations, the registry, the spec parsers and the per-run OutputPlan."""

import tracemalloc

import numpy as np
import pytest

from fastism_dist import outputs as rd
from fastism_dist.errors import FastISMError
from fastism_dist.outputs import arrays

B, W, S, L_OUT, T = 2, 3, 4, 10, 2


def chunk(seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(B, L_OUT, T)).astype(np.float32)
    mut = rng.normal(size=(B, W, S, L_OUT, T)).astype(np.float32)
    mut[:, 1, 2] = ref  # an identity edit
    return ref, mut


def softmax64(x, axis=-2):
    """Softmax in float64, written independently of the package."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def jsd64(p, q, axis=-2):
    """The textbook Jensen-Shannon distance in float64: sqrt of the mean KL to the midpoint."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    m = (p + q) / 2

    def kl(a):
        ratio = np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)
        return np.where(a > 0, a * np.log2(ratio), 0.0).sum(axis=axis)

    return np.sqrt(0.5 * kl(p) + 0.5 * kl(q))


# ---- array functions ----------------------------------------------------------------------------


def test_jsd_zero_for_identical_profiles():
    ref, mut = chunk()
    assert np.all(rd.jsd(ref, ref) == 0)
    assert np.all(rd.jsd(mut, mut) == 0)


def test_jsd_symmetric_and_bounded():
    ref, mut = chunk(1)
    a = rd.jsd(mut, ref[:, None, None])
    b = rd.jsd(ref[:, None, None], mut)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (B, W, S, T)
    assert np.all(a >= 0) and np.all(a <= 1)
    # disjoint supports: exactly 1 with log base 2
    p = np.array([[1.0], [0.0]])
    q = np.array([[0.0], [1.0]])
    assert rd.jsd(p, q, logits=False)[0] == pytest.approx(1.0)
    # sharply peaked logits at different bins: close to 1
    assert rd.jsd(np.array([[50.0], [0.0]]), np.array([[0.0], [50.0]]))[0] == pytest.approx(1.0, abs=1e-6)


def test_jsd_against_hand_computed_value():
    # m = (0.25, 0.5, 0.25): KL(p || m) = 0.5 log2(0.5 / 0.25) + 0.5 log2(0.5 / 0.5) = 0.5 = KL(q || m)
    p = np.array([0.5, 0.5, 0.0])[:, None]
    q = np.array([0.0, 0.5, 0.5])[:, None]
    assert rd.jsd(p, q, logits=False)[0] == pytest.approx(np.sqrt(0.5), rel=1e-6)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4); KL(p||m) = 1 - 0.5 log2(3), KL(q||m) = 2 - log2(3)
    want = np.sqrt(0.5 * (1 - 0.5 * np.log2(3)) + 0.5 * (2 - np.log2(3)))
    assert rd.jsd(np.array([[0.5], [0.5]]), np.array([[1.0], [0.0]]), logits=False)[0] == pytest.approx(want, rel=1e-6)
    # logits: softmax first, so adding a constant changes nothing
    logits = np.log(np.array([0.2, 0.3, 0.5]))[:, None]
    assert rd.jsd(logits, logits + 7.0)[0] == pytest.approx(0.0, abs=1e-6)
    assert rd.jsd(logits, np.log(np.array([0.5, 0.3, 0.2]))[:, None])[0] == pytest.approx(
        jsd64([[0.2], [0.3], [0.5]], [[0.5], [0.3], [0.2]])[0], rel=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e-2, 1e-4])
def test_jsd_float32_matches_float64_textbook_formula(scale):
    """Small distances (a mutation that barely moves the profile) keep their absolute accuracy."""
    rng = np.random.default_rng(7)
    ref = (3 * rng.normal(size=(64, 200, 3))).astype(np.float32)
    mut = (ref + scale * rng.normal(size=ref.shape)).astype(np.float32)
    got = rd.jsd(mut, ref)
    want = jsd64(softmax64(mut), softmax64(ref))
    assert got.dtype == np.float32 and got.shape == (64, 3)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-7)
    assert np.all(got > 0)
    probs = softmax64(mut.astype(np.float64))
    np.testing.assert_allclose(rd.jsd(probs, softmax64(ref), logits=False), want, rtol=1e-3, atol=2e-7)


def test_total_logsumexp_bins():
    ref, mut = chunk()
    exact = mut.astype(np.float64).sum(axis=-2)  # float32 sums of 10 values: a few ulps off
    np.testing.assert_allclose(rd.total_count(mut), exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rd.logsumexp(ref), np.log(np.exp(ref).sum(axis=-2)), rtol=1e-5)
    big = np.full((4, 1), 1000.0)
    assert rd.logsumexp(big)[0] == pytest.approx(1000 + np.log(4))
    assert rd.logsumexp(np.full((3, 1), -np.inf))[0] == -np.inf
    x = np.arange(10.0)[:, None]
    np.testing.assert_allclose(rd.bin_sums(x, 3)[:, 0], [3, 12, 21, 9])  # last bin: remainder
    np.testing.assert_allclose(rd.bin_sums(x, 5)[:, 0], [10, 35])
    np.testing.assert_allclose(rd.softmax(x).sum(axis=-2), 1, rtol=1e-6)
    np.testing.assert_allclose(rd.softmax(mut), softmax64(mut), rtol=1e-5, atol=1e-7)
    assert rd.softmax(mut).dtype == np.float32 and rd.softmax(mut.astype(np.float64)).dtype == np.float64
    np.testing.assert_allclose(rd.total_count(mut, axis=-1), mut.sum(axis=-1), rtol=1e-5, atol=1e-6)
    half = mut.astype(np.float16)
    assert rd.total_count(half).dtype == np.float32 and rd.bin_sums(half, 2).dtype == np.float32
    before = mut.copy()
    rd.softmax(mut), rd.logsumexp(mut), rd.jsd(mut, mut), rd.total_count(mut[..., :1])
    np.testing.assert_array_equal(mut, before)  # inputs are never written


def test_select_tasks():
    x = np.arange(12).reshape(2, 2, 3)
    np.testing.assert_array_equal(rd.select_tasks(x, [2, 0]), x[..., [2, 0]])
    np.testing.assert_array_equal(rd.select_tasks(x, "b", labels=["a", "b", "c"]), x[..., [1]])
    with pytest.raises(FastISMError, match="no task named 'z'"):
        rd.select_tasks(x, "z", labels=["a", "b", "c"])
    with pytest.raises(FastISMError, match="have no names"):
        rd.select_tasks(x, "a")
    with pytest.raises(FastISMError, match="out of range"):
        rd.select_tasks(x, 3)


# ---- reducers -----------------------------------------------------------------------------------


def test_reducers_shapes_values_and_dims():
    ref, mut = chunk()
    total = rd.get_reducer("total")(ref, mut, output="profile")
    assert total.ref.shape == (B, T) and total.mut.shape == (B, W, S, T)
    assert [d.name for d in total.dims] == ["profile_dim_1"]
    np.testing.assert_allclose(total.mut[:, 1, 2], total.ref, rtol=1e-6)
    np.testing.assert_allclose(total.mut, mut.astype(np.float64).sum(axis=-2), rtol=1e-6, atol=1e-6)

    j = rd.get_reducer("jsd")(ref, mut, output="profile")
    assert np.all(j.ref == 0) and np.all(j.mut[:, 1, 2] == 0)
    assert j.mut.shape == (B, W, S, T) and j.mut.dtype == np.float32
    np.testing.assert_allclose(j.mut, jsd64(softmax64(mut), softmax64(ref[:, None, None])),
                               rtol=1e-4, atol=2e-7)

    ls = rd.get_reducer("logsum")(ref, mut, output="profile")
    np.testing.assert_allclose(ls.ref, np.log(np.exp(ref).sum(axis=1)), rtol=1e-5)

    bins = rd.get_reducer("bins:4")(ref, mut, output="profile")
    assert bins.ref.shape == (B, 3, T) and bins.mut.shape == (B, W, S, 3, T)
    assert bins.dims[0].name == "profile_bin" and list(bins.dims[0].coords) == [0, 4, 8]
    assert bins.dims[1] == rd.Dim("profile_dim_1", T)
    edges = [0, 4, 8, L_OUT]
    want = np.stack([mut[..., lo:hi, :].astype(np.float64).sum(axis=-2)
                     for lo, hi in zip(edges, edges[1:])], axis=-2)
    np.testing.assert_allclose(bins.mut, want, rtol=1e-6, atol=1e-6)

    tasks = rd.get_reducer("tasks:1")(ref, mut, output="profile")
    assert tasks.mut.shape == (B, W, S, L_OUT, 1)
    np.testing.assert_array_equal(tasks.mut[..., 0], mut[..., 1])
    np.testing.assert_array_equal(tasks.ref[..., 0], ref[..., 1])
    assert tasks.dims[-1].name == "profile_dim_1" and list(tasks.dims[-1].coords) == [1]


def test_reducer_needs_profile_shape():
    with pytest.raises(FastISMError, match=r"needs a profile output of shape \(\.\.\., L_out, T\); 'counts' has shape \(2,\)"):
        rd.get_reducer("jsd").dims("counts", (2,))
    with pytest.raises(FastISMError, match="does not match"):
        rd.get_reducer("total")(np.zeros((1, 5, 2)), np.zeros((1, 3, 4, 5, 3)))


def test_parse_reduce():
    plan = rd.parse_reduce("profile=jsd,counts")
    assert list(plan) == ["profile", "counts"]
    assert plan["profile"].kind == "jsd" and plan["counts"] is None
    plan = rd.parse_reduce(" profile = bins:10 ")
    assert plan["profile"].kind == "bins" and plan["profile"].arg == 10
    assert rd.parse_reduce({"profile": "total"})["profile"].kind == "total"
    assert rd.parse_reduce(None) == {}
    assert rd.parse_reduce("y=tasks:0+3")["y"].arg == (0, 3)
    assert set(rd.REDUCERS) >= {"total", "logsum", "jsd", "bins"}


@pytest.mark.parametrize("spec, message", [
    ("", "empty reduce spec"),
    ("profile=jsd,,counts", "empty item"),
    ("=jsd", "missing output name"),
    ("profile=", "missing reducer"),
    ("profile=foo", "unknown reducer 'foo'"),
    ("profile=bins", "needs a positive bin width"),
    ("profile=bins:0", "needs a positive bin width"),
    ("profile=bins:x", "needs a positive bin width"),
    ("profile=total:3", "takes no argument"),
    ("profile=tasks:a", "needs task indices"),
    ("profile=jsd,profile=total", "named twice"),
])
def test_parse_errors_are_one_line(spec, message):
    with pytest.raises(FastISMError, match=message) as err:
        rd.parse_reduce(spec)
    assert "\n" not in str(err.value)


def test_plan_reduces_only_the_outputs_named():
    shapes = {"profile": (L_OUT, T), "counts": (T,)}
    plan = rd.plan_outputs(shapes, reduce="profile=jsd")
    assert [d.name for d in plan.dims["profile"]] == ["profile_dim_1"]
    assert plan.dims["counts"] == (rd.Dim("counts_dim_0", T),)
    with pytest.raises(FastISMError, match=r"names output 'prof', but the outputs are \['profile', 'counts'\]"):
        rd.plan_outputs(shapes, reduce="prof=jsd")
    with pytest.raises(FastISMError, match="'counts' has shape"):
        rd.plan_outputs(shapes, reduce="counts=jsd")

    ref, mut = chunk()
    cref, cmut = np.ones((B, T)), np.ones((B, W, S, T))
    prof = plan.apply("profile", ref, mut)
    np.testing.assert_allclose(prof.mut, jsd64(softmax64(mut), softmax64(ref[:, None, None])),
                               rtol=1e-4, atol=2e-7)
    assert prof.ref.shape == (B, T) and np.all(prof.ref == 0) and np.all(prof.mut[:, 1, 2] == 0)
    counts = plan.apply("counts", cref, cmut)
    assert counts.mut is cmut and counts.ref is cref  # kept as computed: not even copied
    with pytest.raises(FastISMError, match="does not match"):
        plan.apply("profile", ref, mut[..., :1])


@pytest.mark.parametrize("spec", ["jsd", "total", "logsum", "bins:3", "tasks:1"])
def test_blocks_of_mutants_give_the_whole_chunk_result(spec):
    """Rows reduced in blocks that cut through sequences equal the reducer on the whole chunk."""
    ref, mut = chunk(5)
    reducer = rd.get_reducer(spec)
    whole = reducer.rows(np.broadcast_to(ref[:, None, None], mut.shape).reshape(-1, L_OUT, T),
                         mut.reshape(-1, L_OUT, T))
    for block in (1, 7 * L_OUT * T, 10 ** 9):  # one row, 7 rows (W * S = 12), everything
        got = arrays.map_mutants(reducer.rows, ref, mut, block_elements=block)
        np.testing.assert_array_equal(got, whole.reshape((B, W, S) + whole.shape[1:]))


def test_apply_one_on_batches_of_mutations_matches_apply():
    """The engine reduces each computed batch of M mutations: rows (M, *out) with their
    sequences' reference rows; stitched together they are the chunk's result."""
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(B, L_OUT, 4)).astype(np.float32)
    mut = rng.normal(size=(B, W, S, L_OUT, 4)).astype(np.float32)
    for spec in ("profile=jsd", "profile=bins:4", "profile=logsum", None):
        plan = rd.plan_outputs({"profile": (L_OUT, 4)}, tasks="3,1", reduce=spec)
        whole = plan.apply("profile", ref, mut)
        rows = mut.reshape(-1, L_OUT, 4)
        seq_of_row = np.arange(len(rows)) // (W * S)
        batches = [plan.apply_one("profile", ref[seq_of_row[lo:lo + 5]], rows[lo:lo + 5])
                   for lo in range(0, len(rows), 5)]
        np.testing.assert_allclose(np.concatenate(batches).reshape(whole.mut.shape), whole.mut,
                                   rtol=1e-6, atol=1e-7)
        assert np.concatenate(batches).shape[1:] == plan.shapes["profile"]
    plan = rd.plan_outputs({"profile": (L_OUT, 4)}, reduce="profile=jsd")
    with pytest.raises(FastISMError, match="reference rows of shape"):
        plan.apply_one("profile", ref[:1], mut[:2, 0, 0])


def test_jsd_plan_makes_no_chunk_sized_temporaries():
    """A chunk of 40 MB of float32 profiles is reduced with a few MB of temporaries."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 500, 2)).astype(np.float32)
    mut = rng.normal(size=(4, 500, 5, 500, 2)).astype(np.float32)
    plan = rd.plan_outputs({"profile": (500, 2)}, reduce="profile=jsd")
    tracemalloc.start()
    try:
        got = plan.apply("profile", ref, mut)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.mut.shape == (4, 500, 5, 2) and got.mut.dtype == np.float32
    assert peak < mut.nbytes / 4, f"peak {peak / 2**20:.1f} MiB for a {mut.nbytes / 2**20:.0f} MiB chunk"
    np.testing.assert_allclose(got.mut[:, :3], jsd64(softmax64(mut[:, :3]), softmax64(ref[:, None, None])),
                               rtol=1e-3, atol=2e-7)


# ---- the per-run plan: --tasks then --reduce ------------------------------------------------------


def test_parse_tasks():
    assert rd.parse_tasks(None) is None
    assert rd.parse_tasks("0, 2") == [0, 2]
    assert rd.parse_tasks("CTCF,-1") == ["CTCF", -1]
    assert rd.parse_tasks(1) == [1]
    assert rd.parse_tasks(["a", 3]) == ["a", 3]
    for bad, message in ((" ", "empty task choice"), ("0,,1", "empty item"), ([], "no tasks"),
                         ([1.5], "index or a name")):
        with pytest.raises(FastISMError, match=message):
            rd.parse_tasks(bad)


def test_plan_outputs_tasks_then_reducer():
    shapes = {"profile": (L_OUT, 4), "counts": (4,)}
    names = {"profile": ["a+", "a-", "b+", "b-"]}
    plan = rd.plan_outputs(shapes, tasks="2,0", reduce="profile=bins:4", task_names=names)
    assert plan.outputs == ["profile", "counts"]
    assert plan.shapes == {"profile": (3, 2), "counts": (2,)}
    prof = plan.dims["profile"]
    assert [d.name for d in prof] == ["profile_bin", "profile_dim_1"]
    assert list(prof[1].coords) == ["b+", "a+"] and list(prof[0].coords) == [0, 4, 8]
    assert list(plan.dims["counts"][0].coords) == [2, 0]  # no names: the original indices
    assert plan.params() == {"tasks": {"profile": [2, 0], "counts": [2, 0]},
                             "reduce": {"profile": "bins:4"}}

    rng = np.random.default_rng(0)
    ref, mut = rng.normal(size=(B, L_OUT, 4)), rng.normal(size=(B, W, S, L_OUT, 4))
    got = plan.apply("profile", ref, mut)
    np.testing.assert_allclose(got.mut, rd.bin_sums(mut[..., [2, 0]], 4))
    np.testing.assert_allclose(got.ref, rd.bin_sums(ref[..., [2, 0]], 4))
    alt = rng.normal(size=(B, L_OUT, 4))
    np.testing.assert_allclose(plan.apply_one("profile", ref, alt), rd.bin_sums(alt[..., [2, 0]], 4))
    cref, cmut = rng.normal(size=(B, 4)), rng.normal(size=(B, W, S, 4))
    np.testing.assert_array_equal(plan.apply("counts", cref, cmut).mut, cmut[..., [2, 0]])


def test_plan_outputs_names_and_jsd_labels():
    plan = rd.plan_outputs({"profile": (L_OUT, 2)}, tasks="b", reduce="profile=jsd",
                           task_names={"profile": ["a", "b"]})
    assert plan.dims["profile"] == (rd.Dim("profile_dim_1", 1, plan.dims["profile"][0].coords),)
    assert list(plan.dims["profile"][0].coords) == ["b"]
    ref, mut = chunk()
    np.testing.assert_allclose(plan.apply("profile", ref, mut).mut,
                               rd.jsd(mut[..., [1]], ref[:, None, None, :, [1]]))
    # the tasks reducer relabels through the chosen tasks
    plan = rd.plan_outputs({"y": (3,)}, tasks=[2, 1], reduce="y=tasks:1")
    assert list(plan.dims["y"][0].coords) == [1]
    plain = rd.plan_outputs({"y": (3,), "z": ()})
    assert plain.params() == {"tasks": None, "reduce": None}
    assert plain.dims["y"] == (rd.Dim("y_dim_0", 3),) and plain.dims["z"] == ()


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": "x"}, "output 'y': task 'x' is not an index and the tasks have no names"),
    ({"tasks": "5"}, "output 'y': task index 5 out of range"),
    ({"tasks": "1,1"}, "chosen twice"),
    ({"tasks": "0", "shapes": {"y": (3,), "s": ()}}, "'s' is a scalar"),
    ({"tasks": "c", "task_names": {"y": ["a", "b", "c"]}, "shapes": {"y": (3,), "z": (3,)}},
     "output 'z': task 'c' is not an index"),
    ({"reduce": "y=jsd"}, "'y' has shape"),
    ({"reduce": "q=total"}, "names output 'q'"),
    ({"task_names": {"y": ["a"]}}, "has 1 task names"),
])
def test_plan_outputs_errors_are_one_line(kwargs, message):
    shapes = kwargs.pop("shapes", {"y": (3,)})
    with pytest.raises(FastISMError, match=message) as err:
        rd.plan_outputs(shapes, **kwargs)
    assert "\n" not in str(err.value)
