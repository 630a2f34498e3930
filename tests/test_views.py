"""Reverse-complement and shift averaging against an explicit naive ISM that averages the same way."""

import numpy as np
import pytest

from fastism_dist import AveragedISM, FastISM, NaiveISM
from fastism_dist.core import parse_shifts
from fastism_dist.errors import MutationSpecError

from oracle import assert_close, random_one_hot

L = 24


def _build(kind, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((L, 4))
    h = layers.Conv1D(4, 5, padding="same", activation="relu")(inp)
    if kind == "scalar":
        out = layers.Dense(2, name="y")(layers.Flatten()(layers.MaxPooling1D(2)(h)))
        return keras.Model(inp, out)
    profile = layers.Conv1D(2, 3, padding="same", name="profile")(h)
    binned = layers.AveragePooling1D(2, name="binned")(profile)
    counts = layers.Dense(3, name="counts")(layers.GlobalAveragePooling1D()(h))
    return keras.Model(inp, [profile, binned, counts])


@pytest.fixture(scope="module")
def scalar_model():
    return _build("scalar", 1)


@pytest.fixture(scope="module")
def profile_model():
    return _build("profile", 2)


def _view(seqs, rc, k):
    shifted = np.zeros_like(seqs)
    for i in range(seqs.shape[1]):
        if 0 <= i - k < seqs.shape[1]:
            shifted[:, i] = seqs[:, i - k]
    return shifted[:, ::-1, ::-1] if rc else shifted


def _back(out, rc, k):
    """An output of a view in forward orientation and the bins it covers (explicit loops)."""
    if out.ndim < 3:
        return out, np.ones(1)
    out = out[:, ::-1] if rc else out
    bins = out.shape[1]
    d = k // (L // bins)
    mapped, covered = np.zeros_like(out), np.zeros((bins, 1))
    for j in range(bins):
        if 0 <= j + d < bins:
            mapped[:, j], covered[j] = out[:, j + d], 1
    return mapped, covered


def explicit_averaged(model, x, rc, shifts, start=0, end=None, subs=None):
    """(ref, mut) averaged over the views, one explicit mutant at a time."""
    import keras

    subs = np.eye(4, dtype=np.float32)[:, None] if subs is None else subs
    width = subs.shape[1]
    end = L - width + 1 if end is None else end
    seqs = [x]
    for p in range(start, end):
        for s in range(len(subs)):
            m = x.copy()
            m[:, p:p + width] = subs[s]
            seqs.append(m)
    seqs = np.concatenate(seqs)  # (1 + W * S) blocks of B
    sums, counts = None, None
    for strand in ((False, True) if rc else (False,)):
        for k in shifts:
            outs = keras.tree.flatten(model.predict_on_batch(_view(seqs, strand, k)))
            mapped = [_back(np.asarray(o), strand, k) for o in outs]
            if sums is None:
                sums, counts = [np.zeros_like(m) for m, _ in mapped], [0.0] * len(mapped)
            for i, (m, c) in enumerate(mapped):
                sums[i], counts[i] = sums[i] + m, counts[i] + c
    means = []
    for total, count in zip(sums, counts):
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    n, w, n_subs = len(x), end - start, len(subs)
    ref = [m[:n] for m in means]
    mut = [np.moveaxis(m[n:].reshape((w, n_subs, n) + m.shape[1:]), 2, 0) for m in means]
    return ref, mut


def _compare(got, want, tol=1e-5):
    for g, w in zip(got.ref + got.mut, want[0] + want[1]):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        assert_close([np.nan_to_num(g)], [np.nan_to_num(w)], tol)


@pytest.mark.parametrize("executor", [FastISM, NaiveISM])
def test_scalar_output_rc_and_shifts(scalar_model, executor):
    x = random_one_hot(2, L, seed=1)
    x[1, 5] = 0  # an N
    ism = AveragedISM(scalar_model, rc=True, shifts=1, executor=executor)
    _compare(ism(x), explicit_averaged(scalar_model, x, True, (-1, 0, 1)))


@pytest.mark.parametrize("executor", [FastISM, NaiveISM])
def test_profile_outputs_flipped_and_shifted_back(profile_model, executor):
    x = random_one_hot(2, L, seed=2)
    ism = AveragedISM(profile_model, rc=True, shifts="-2,0,2", executor=executor)
    _compare(ism(x), explicit_averaged(profile_model, x, True, (-2, 0, 2)))
    # no zero shift: the last bins are covered by no view and stay NaN
    ism = AveragedISM(profile_model, shifts=(2, 4), executor=executor)
    got = ism(x)
    _compare(got, explicit_averaged(profile_model, x, False, (2, 4)))
    assert np.isnan(got.ref[0][:, -2:]).all() and not np.isnan(got.ref[0][:, :-2]).any()


def test_profile_bins_refuse_odd_shifts(profile_model):
    with pytest.raises(MutationSpecError, match="bin") as err:
        AveragedISM(profile_model, shifts=1, check=False)
    assert "\n" not in str(err.value)


def test_positions_window_and_wide_substitutions(scalar_model):
    x = random_one_hot(2, L, seed=3)
    ism = AveragedISM(scalar_model, rc=True, shifts=(-1, 0, 2), start=3, end=17)
    _compare(ism(x), explicit_averaged(scalar_model, x, True, (-1, 0, 2), 3, 17))
    rng = np.random.default_rng(0)
    subs = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(3, 2))]  # (S=3, w=2, C=4)
    subs[0] = x[0, 5:7]  # a reference-letter edit of sequence 0 at 5
    ism = AveragedISM(scalar_model, rc=True, shifts=1, start=2, end=20, substitutions=subs)
    got = ism(x)
    _compare(got, explicit_averaged(scalar_model, x, True, (-1, 0, 1), 2, 20, subs))
    np.testing.assert_array_equal(got.mut[0][0, 3, 0], got.ref[0][0])
    with pytest.raises(MutationSpecError, match="cut by"):
        AveragedISM(scalar_model, shifts=1, substitutions=subs, check=False)


def test_rc_symmetric_model_unchanged_by_rc():
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((L, 4))
    conv = keras.layers.Conv1D(3, 5, padding="same", activation="relu")
    h = keras.layers.GlobalAveragePooling1D()(conv(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    kernel, bias = conv.get_weights()
    conv.set_weights([(kernel + kernel[::-1, ::-1]) / 2, bias])  # W[k, c] = W[K-1-k, 3-c]
    x = random_one_hot(3, L, seed=5)
    plain = FastISM(model)(x)
    both = AveragedISM(model, rc=True)(x)
    assert_close(both.ref + both.mut, plain.ref + plain.mut, 1e-5)


def test_no_views_is_the_plain_executor(scalar_model):
    x = random_one_hot(2, L, seed=6)
    plain = NaiveISM(scalar_model, start=4, end=9)(x)
    got = AveragedISM(scalar_model, executor=NaiveISM, start=4, end=9)(x)
    assert_close(got.ref + got.mut, plain.ref + plain.mut, 1e-6)


def test_bad_settings_are_one_line_errors(scalar_model):
    import keras

    assert parse_shifts(None) == (0,) and parse_shifts("2") == (-2, -1, 0, 1, 2)
    assert parse_shifts("-1,0,3") == (-1, 0, 3) and parse_shifts([0, 1]) == (0, 1)
    for bad in ("abc", "-1", "1,1", "1.5", "0,x", ""):
        with pytest.raises(MutationSpecError, match="--shifts") as err:
            parse_shifts(bad)
        assert "\n" not in str(err.value)
    protein = keras.Model(inp := keras.Input((12, 20)), keras.layers.Dense(1)(
        keras.layers.Flatten()(inp)))
    with pytest.raises(MutationSpecError, match="--rc needs DNA"):
        AveragedISM(protein, rc=True)
    with pytest.raises(MutationSpecError, match="--rc needs DNA"):
        AveragedISM(scalar_model, rc=True, bases="ACGU".replace("U", "N"))
    with pytest.raises(MutationSpecError, match="shorter than"):
        AveragedISM(scalar_model, shifts=(0, L))
    with pytest.raises(MutationSpecError, match="shifted out"):
        AveragedISM(scalar_model, shifts=(12,), start=14, end=20, check=False)
