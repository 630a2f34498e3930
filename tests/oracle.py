"""The tests' shared oracle: one-hot helpers and an independent naive ISM.

``explicit_ism`` builds every mutant explicitly and calls the model on it; it shares no code with
the package's executors, so every executor is checked against it.
"""

import numpy as np


def explicit_ism(model, x, start=0, end=None, substitutions=None, other_inputs=None, seq_index=0):
    """Return (ref, mut) lists like ``ISMResult``, computed one mutant at a time (batched calls).

    x : (B, L, C); substitutions : (S, C) or (S, w, C); mut[k] : (B, W, S, *out_k).
    """
    import keras

    x = np.asarray(x, dtype=np.float32)
    n, length, channels = x.shape
    subs = np.eye(channels, dtype=np.float32) if substitutions is None else np.asarray(substitutions, np.float32)
    if subs.ndim == 2:
        subs = subs[:, None, :]
    width = subs.shape[1]
    end = length - width + 1 if end is None else end
    others = list(other_inputs or [])

    def call(seqs, rows):
        inputs = [np.asarray(o)[rows] for o in others]
        inputs.insert(seq_index, seqs)
        out = model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
        return [np.asarray(o) for o in keras.tree.flatten(out)]

    ref = call(x, np.arange(n))
    mutants, rows = [], []
    for b in range(n):
        for p in range(start, end):
            for s in range(len(subs)):
                m = x[b].copy()
                m[p:p + width] = subs[s]
                mutants.append(m)
                rows.append(b)
    outs = []
    for lo in range(0, len(mutants), 512):
        outs.append(call(np.stack(mutants[lo:lo + 512]), np.array(rows[lo:lo + 512])))
    mut = [np.concatenate(parts).reshape((n, end - start, len(subs)) + r.shape[1:])
           for parts, r in zip(zip(*outs), ref)]
    return ref, mut


def assert_close(got, want, tol=1e-5):
    """max |got - want| <= tol * max(1, max |want|) for every pair of arrays."""
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        scale = max(1.0, float(np.abs(w).max()))
        err = float(np.abs(g - w).max())
        assert err <= tol * scale, f"max abs diff {err:.3g} > {tol} * {scale:.3g}"


ALPHABET = "ACGT"


def one_hot(seqs, alphabet=ALPHABET):
    """(N, L, C) float32 one-hot of equal-length strings over ``alphabet``."""
    table = {c: i for i, c in enumerate(alphabet)}
    return np.eye(len(alphabet), dtype=np.float32)[[[table[c] for c in s] for s in seqs]]


def random_one_hot(n, length, channels=4, seed=0):
    """(n, length, channels) float32 random one-hot sequences."""
    rng = np.random.default_rng(seed)
    return np.eye(channels, dtype=np.float32)[rng.integers(0, channels, size=(n, length))]
