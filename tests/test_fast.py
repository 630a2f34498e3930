"""FastISM equals naive ISM on hand-written and random architectures and every option."""

import numpy as np
import pytest

from fastism_dist import FastISM, NaiveISM
from fastism_dist.errors import CheckError

import toy_models
from oracle import assert_close, explicit_ism, random_one_hot


def _fast_vs_explicit(model, x, check=False, **kwargs):
    want = explicit_ism(model, x, start=kwargs.get("start", 0), end=kwargs.get("end"),
                        substitutions=kwargs.get("substitutions"))
    got = FastISM(model, check=check, batch_size=97, **kwargs)(x)
    assert_close(got.ref, want[0])
    assert_close(got.mut, want[1])
    return got


@pytest.mark.parametrize("build", toy_models.HAND_WRITTEN, ids=lambda f: f.__name__)
def test_hand_written_architectures(build):
    model = toy_models.randomize_batch_norm(build())
    length, channels = model.inputs[0].shape[1:]
    x = random_one_hot(3, length, channels, seed=1)
    _fast_vs_explicit(model, x, check=True)  # the self-check accepts every one of them


@pytest.mark.parametrize("seed", range(14))
def test_random_architectures(seed):
    model = toy_models.randomize_batch_norm(toy_models.random_architecture(seed), seed)
    x = random_one_hot(2, model.inputs[0].shape[1], seed=seed)
    _fast_vs_explicit(model, x)
    _fast_vs_explicit(model, x, incremental_conv=False, first_layer_lookup=False)


@pytest.mark.parametrize("build", [toy_models.dilated_residual, toy_models.causal,
                                   toy_models.strided_valid, toy_models.crop_pad_upsample,
                                   toy_models.merges, toy_models.nested_model])
def test_windowed_convolution_without_shortcuts(build):
    """The plain windowed path (every shortcut off) stays exact where convolutions are chained."""
    model = toy_models.randomize_batch_norm(build())
    length, channels = model.inputs[0].shape[1:]
    x = random_one_hot(2, length, channels, seed=6)
    _fast_vs_explicit(model, x, incremental_conv=False, first_layer_lookup=False,
                      incremental_dense=False)


def test_fast_equals_naive_executor():
    model = toy_models.dilated_residual()
    x = random_one_hot(4, 64, seed=3)
    fast = FastISM(model, check=False)(x)
    naive = NaiveISM(model)(x)
    assert_close(fast.ref + fast.mut, naive.ref + naive.mut)


def test_start_end_and_edges():
    model = toy_models.pools_same()
    x = random_one_hot(2, 41, seed=4)
    for start, end in ((0, 1), (40, 41), (3, 17), (0, 41)):
        got = _fast_vs_explicit(model, x, start=start, end=end)
        assert got.mut[0].shape == (2, end - start, 4, 2)


def test_windows_wider_than_one():
    model = toy_models.crop_pad_upsample()
    x = random_one_hot(2, 30, seed=5)
    rng = np.random.default_rng(0)
    subs = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(3, 4))]  # (S=3, w=4, C=4)
    got = _fast_vs_explicit(model, x, substitutions=subs)
    assert got.mut[0].shape == (2, 27, 3, 2)
    got = _fast_vs_explicit(model, x, substitutions=subs, start=25, end=27)


def test_ablation_and_arbitrary_vectors():
    model = toy_models.mini_basset()
    x = random_one_hot(2, 60, seed=6)
    _fast_vs_explicit(model, x, substitutions=np.zeros((1, 4), np.float32))
    subs = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    _fast_vs_explicit(model, x, substitutions=subs)


def test_identity_edits_copy_reference():
    model = toy_models.conv_flatten_dense()
    x = random_one_hot(2, 31, seed=7)
    res = FastISM(model, check=False)(x)
    bases = x.argmax(-1)
    for b in range(2):
        for p in range(31):
            np.testing.assert_array_equal(res.mut[0][b, p, bases[b, p]], res.ref[0][b])


def test_protein_alphabet():
    model = toy_models.protein()
    x = random_one_hot(2, 21, channels=20, seed=8)
    got = _fast_vs_explicit(model, x)
    assert got.mut[0].shape == (2, 21, 20, 2)


def test_multi_input_dense_join_by_name():
    model = toy_models.two_inputs_dense_join()
    x = random_one_hot(3, 26, seed=9)
    feats = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
    got = FastISM(model, seq_input="seq", check=False)(x, other_inputs=[feats])
    want = explicit_ism(model, x, other_inputs=[feats], seq_index=1)
    assert_close(got.ref + got.mut, want[0] + want[1])


def test_multi_input_track_join_and_independent_output():
    model = toy_models.two_inputs_track_join()
    x = random_one_hot(2, 27, seed=10)
    track = np.random.default_rng(3).normal(size=(2, 27, 2)).astype(np.float32)
    ism = FastISM(model, seq_input=1, check=True)
    got = ism(x, other_inputs={"track": track})
    want = explicit_ism(model, x, other_inputs=[track], seq_index=1)
    assert_close(got.ref + got.mut, want[0] + want[1])
    # y2 does not depend on the sequence: every mutant equals the reference
    np.testing.assert_array_equal(got.mut[1], np.broadcast_to(got.ref[1][:, None, None], got.mut[1].shape))


def test_multi_output_shapes():
    model = toy_models.dilated_residual()
    res = FastISM(model, check=False)(random_one_hot(2, 64))
    assert [m.shape for m in res.mut] == [(2, 64, 4, 64, 2), (2, 64, 4, 2)]
    assert [r.shape for r in res.ref] == [(2, 64, 2), (2, 2)]


def test_check_passes_and_detects_a_wrong_fast_path():
    model = toy_models.mini_basset()
    FastISM(model, check=True)

    class Broken(FastISM):
        def _mutants(self, b, p, s, group):
            return [out + 1e-2 for out in super()._mutants(b, p, s, group)]

    with pytest.raises(CheckError, match="differ from naive ISM"):
        Broken(model, check=True)


class ReturnsReference(FastISM):
    """A broken fast path: every mutant gets the reference output."""

    def _reference(self, x, others):
        self._ref_outputs = super()._reference(x, others)
        return self._ref_outputs

    def _mutants(self, b, p, s, group):
        return [r[b] for r in self._ref_outputs]


def test_check_catches_reference_outputs_when_effects_are_tiny():
    """Mutations move this model's output by about 1e-4 of its size; a fast path that ignores
    them must still fail the check, and the real one must pass."""
    model = toy_models.conv_flatten_dense()
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 1e-3, bias + 10.0])
    x = random_one_hot(2, 31, seed=2)
    res = FastISM(model, check=True)(x)
    change = np.abs(res.mut[0] - res.ref[0][:, None, None]).max()
    assert 1e-5 < change / np.abs(res.ref[0]).max() < 1e-3
    with pytest.raises(CheckError, match="changes of output"):
        ReturnsReference(model, check=True)


def test_check_covers_the_last_position_of_long_sequences():
    """A fast path wrong only at the last mutated position is caught on a 1 kb input."""

    class WrongAtTheEnd(FastISM):
        def _mutants(self, b, p, s, group):
            outs = super()._mutants(b, p, s, group)
            last = (p == self.spec.n_positions - 1)[:, None]
            return [np.where(last, out + 1.0, out) for out in outs]

    model = toy_models.conv_flatten_dense(length=1000)
    FastISM(model, check=True)
    with pytest.raises(CheckError):
        WrongAtTheEnd(model, check=True)


def test_batch_size_does_not_change_results():
    model = toy_models.merges()
    x = random_one_hot(3, 32, seed=11)
    a = FastISM(model, check=False, batch_size=1)(x)
    b = FastISM(model, check=False, batch_size=1000)(x)
    assert_close(a.mut, b.mut, tol=1e-6)


def test_default_batch_size_leaves_room_for_attention_scores():
    """Attention after the stop is recomputed in full: each mutation holds its (heads, L, L)
    scores and their softmax, which the default batch keeps within the memory budget."""
    from fastism_dist.core.executor import MEMORY_BUDGET_BYTES

    ism = FastISM(toy_models.attention(length=1024), check=False)  # 2 heads on 512 positions
    scores_bytes = 4 * 2 * (2 * 512 * 512)
    assert ism.program.bytes_per_mutation() > scores_bytes
    assert ism.batch_size * scores_bytes <= MEMORY_BUDGET_BYTES


def test_naive_default_batch_size_leaves_room_for_attention_scores():
    """Naive ISM keeps 256 mutants per call for convolutional models, fewer where one mutant's
    attention scores would take the call past the memory budget."""
    from fastism_dist.core.executor import MEMORY_BUDGET_BYTES

    assert NaiveISM(toy_models.merges()).batch_size == 256
    naive = NaiveISM(toy_models.attention(length=4096))  # 2 heads on 2048 positions
    scores_bytes = 4 * 2 * (2 * 2048 * 2048)
    assert 1 <= naive.batch_size < 256
    assert naive.batch_size * scores_bytes <= MEMORY_BUDGET_BYTES


def test_peak_floats_counts_the_tensors_alive_at_once():
    """in (100, 4) -> conv (100, 8) -> relu (100, 8) -> conv (100, 2), and the same with the
    input kept alive by a skip to the end."""
    import keras

    from fastism_dist.core.graph import read_graph
    from fastism_dist.core.naive import peak_floats

    inp = keras.Input((100, 4))
    h = keras.layers.Activation("relu")(keras.layers.Conv1D(8, 3, padding="same")(inp))
    out = keras.layers.Conv1D(2, 1)(h)
    assert peak_floats(read_graph(keras.Model(inp, out))) == 800 + 800  # conv read by relu
    skip = keras.layers.Concatenate()([out, inp])
    assert peak_floats(read_graph(keras.Model(inp, skip))) == 400 + 800 + 800


@pytest.fixture(scope="module")
def pooled_dense_case():
    model = toy_models.pooled_dense()
    x = random_one_hot(2, 160, seed=12)
    ref, mut = explicit_ism(model, x)
    return model, x, ref + mut


def _first_conv_incremental(ism):
    return any(ism.graph.nodes[i].arg_ids[0] == ism.plan.seq_id for i in ism.program.incremental)


@pytest.mark.parametrize("lookup", [True, False])
@pytest.mark.parametrize("conv", [True, False])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("xla", [False, True])
def test_optimisation_switches_agree(pooled_dense_case, lookup, conv, dense, skip, xla):
    model, x, want = pooled_dense_case
    ism = FastISM(model, check=False, first_layer_lookup=lookup, incremental_conv=conv,
                  incremental_dense=dense, skip_identity=skip, xla=xla, batch_size=128)
    assert _first_conv_incremental(ism) == lookup
    assert len(ism.program.incremental) == lookup + conv
    assert bool(ism.program.dense) == dense
    got = ism(x)
    assert_close(got.ref + got.mut, want)


def test_lookup_with_wide_windows_and_strided_first_conv():
    model = toy_models.strided_same()
    x = random_one_hot(2, 37, seed=13)
    subs = np.random.default_rng(4).normal(size=(2, 3, 4)).astype(np.float32)
    ism = FastISM(model, check=False, substitutions=subs)
    assert _first_conv_incremental(ism) and ism.program.dense
    want = explicit_ism(model, x, substitutions=subs)
    got = ism(x)
    assert_close(got.ref + got.mut, want[0] + want[1])


def test_auto_xla_tunes_and_stays_exact(pooled_dense_case, monkeypatch):
    import fastism_dist.core.fast as fast

    monkeypatch.setattr(fast, "AUTO_XLA_MIN_BATCHES", 2)
    model, x, want = pooled_dense_case
    ism = FastISM(model, check=False, batch_size=32, xla="auto")
    got = ism(x)
    assert ism.xla in (True, False)
    assert_close(got.ref + got.mut, want)


def test_warm_up_settles_auto_xla_and_later_calls_stay_exact(pooled_dense_case):
    model, x, want = pooled_dense_case
    ism = FastISM(model, check=False, batch_size=32, xla="auto")
    ism.warm_up(x)
    assert ism.xla in (True, False)
    assert ism.xla_timings["rows"] > 0
    assert ism.xla_timings["plain_s"] > 0 and ism.xla_timings["xla_s"] > 0
    assert_close(ism(x).ref + ism(x).mut, want)


@pytest.mark.parametrize("choice", [True, False])
def test_decide_xla_keeps_a_fixed_choice_and_either_choice_is_exact(pooled_dense_case, choice):
    model, x, want = pooled_dense_case
    fixed = FastISM(model, check=False, batch_size=32, xla=choice)
    fixed.warm_up(x)
    assert fixed.xla is choice and fixed.xla_timings is None
    auto = FastISM(model, check=False, batch_size=32, xla="auto")
    assert auto.decide_xla(x) in (True, False)
    auto.xla = choice
    got = auto(x)
    assert_close(got.ref + got.mut, want)


def test_decide_xla_without_mutations_stays_auto():
    model = toy_models.conv_flatten_dense()
    ism = FastISM(model, check=False, xla="auto", substitutions=np.eye(4, dtype=np.float32)[:1])
    x = np.zeros((1,) + tuple(model.inputs[0].shape[1:]), dtype=np.float32)
    x[..., 0] = 1.0  # every substitution is the identity edit
    assert ism.decide_xla(x) == "auto"


def test_bad_xla_option():
    from fastism_dist.errors import MutationSpecError

    with pytest.raises(MutationSpecError, match="xla"):
        FastISM(toy_models.conv_flatten_dense(), xla="sometimes", check=False)


@pytest.mark.parametrize("dtype,tol", [("float16", 1e-2), ("bfloat16", 5e-2)])
def test_half_precision_within_documented_tolerance(pooled_dense_case, dtype, tol):
    model, x, want = pooled_dense_case
    got = FastISM(model, check=True, compute_dtype=dtype, batch_size=256)(x)
    assert all(m.dtype == np.float32 for m in got.mut)
    assert_close(got.ref + got.mut, want, tol=tol)
    naive = NaiveISM(model, compute_dtype=dtype)(x)
    assert_close(got.mut, naive.mut, tol=tol)


def test_registered_rule_accelerates_a_user_layer():
    """in -> C -> Scale (user layer, registered as position-wise) -> C -> F -> D -> y"""
    import keras

    from fastism_dist.core import PositionWise, register_rule

    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 2.0 + 1.0

    def build():
        keras.utils.set_random_seed(4)
        inp = keras.Input((20, 4))
        h = Scale()(keras.layers.Conv1D(3, 3, padding="same")(inp))
        h = keras.layers.Conv1D(2, 3, padding="same")(h)
        return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))

    states = lambda ism: [state for _, cls, state in ism.plan.summary() if cls == "Scale"]  # noqa: E731
    assert states(FastISM(build(), check=False)) == ["full"]
    register_rule(Scale, PositionWise)
    model = build()
    assert states(FastISM(model, check=False)) == ["win3"]
    _fast_vs_explicit(model, random_one_hot(2, 20, seed=5), check=True)


def test_one_sequence_runs_full_calls_and_stays_exact(pooled_dense_case):
    """With one sequence the window groups are small: calls merge neighbouring groups."""
    model, x, want = pooled_dense_case
    ism = FastISM(model, check=False, batch_size=64, xla=False)
    positions = np.arange(ism.spec.n_positions)
    calls = list(ism._batches(ism._plan_mutations(x[:1], positions), positions))
    assert any(merged for (_, merged), _ in calls)
    assert sum(len(rows) == 64 for _, rows in calls) >= 0.75 * len(calls)
    got = ism(x[:1])
    assert_close(got.ref + got.mut, [w[:1] for w in want])


def _conv_stack(first, second, length=40):
    """in -> Conv1D(first) -> Conv1D(second, relu) -> Flatten -> Dense -> y"""
    import keras

    keras.utils.set_random_seed(7)
    inp = keras.Input((length, 4))
    h = keras.layers.Conv1D(6, **first)(inp)
    h = keras.layers.Conv1D(5, activation="relu", **second)(h)
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(h)))


@pytest.mark.parametrize("padding", ["same", "valid", "causal"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 3), (2, 1), (3, 1)])
@pytest.mark.parametrize("width", [1, 3])
def test_incremental_frame_geometries(padding, stride, dilation, width):
    """The frame formulation (first-layer lookup and a dilated incremental convolution) equals
    explicit ISM for strided, dilated, 'same' / 'valid' / 'causal' kernels and wide substitutions."""
    if padding == "causal" and stride > 1:
        pytest.skip("Keras refuses strided causal convolutions")
    first = dict(kernel_size=5, strides=stride, dilation_rate=dilation, padding=padding)
    second = dict(kernel_size=3, dilation_rate=2, padding="causal" if padding == "causal" else "same")
    model = _conv_stack(first, second)
    subs = np.random.default_rng(width).normal(size=(2, width, 4)).astype(np.float32)
    x = random_one_hot(2, 40, seed=stride + dilation)
    ism = FastISM(model, check=False, batch_size=29, substitutions=subs, xla=False)
    assert len(ism.program.incremental) == 2
    want = explicit_ism(model, x, substitutions=subs)
    got = ism(x)
    assert_close(got.ref + got.mut, want[0] + want[1])
