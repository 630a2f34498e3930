"""Construction-time self-check: an executor against NaiveISM on random one-hot inputs."""

from __future__ import annotations

import numpy as np

from fastism_dist.errors import CheckError
from fastism_dist.core.spec import validate_other_inputs

RELATIVE_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}


def random_one_hot(rng, n, length, channels):
    """Random one-hot sequences of shape (n, length, channels), float32."""
    return np.eye(channels, dtype=np.float32)[rng.integers(0, channels, size=(n, length))]


def random_other_inputs(rng, model, seq, n):
    """Random standard-normal values for every non-sequence input (None at the sequence input)."""
    others = []
    for i, tensor in enumerate(model.inputs):
        if i == seq.index:
            continue
        shape = (n,) + tuple(1 if d is None else d for d in tensor.shape[1:])
        others.append(rng.standard_normal(shape).astype(np.float32))
    return others


def check_positions(n_positions, count, rng):
    """Indices into the mutated positions: both edges, the middle and random ones."""
    if n_positions <= count:
        return np.arange(n_positions)
    fixed = {0, 1, n_positions // 2, n_positions - 2, n_positions - 1}
    rest = rng.choice(n_positions, size=count, replace=False)
    return np.array(sorted(fixed | set(rest.tolist()))[: max(count, len(fixed))])


def compare_with_naive(executor, n_sequences=2, n_positions=12, seed=0):
    """Raise ``CheckError`` unless ``executor`` equals NaiveISM within float32 round-off."""
    from fastism_dist.core.naive import NaiveISM

    rng = np.random.default_rng(seed)
    seq = executor.seq
    x = random_one_hot(rng, n_sequences, seq.length, seq.channels)
    others = validate_other_inputs(executor.model, seq, random_other_inputs(rng, executor.model, seq, n_sequences), n_sequences)
    positions = check_positions(executor.spec.n_positions, n_positions, rng)
    spec = executor.spec
    naive = NaiveISM(executor.model, start=spec.start, end=spec.end,
                     substitutions=spec.substitutions, seq_input=seq.index,
                     batch_size=executor.batch_size)
    tolerance = RELATIVE_TOLERANCE[executor.compute_dtype]
    got = executor._run(x, others, positions)
    want = naive._run(x, others, positions)
    names = executor.output_names * 2
    for name, g, w in zip(names, got.ref + got.mut, want.ref + want.mut):
        scale = max(1.0, float(np.max(np.abs(w))) if w.size else 1.0)
        err = float(np.max(np.abs(g - w))) if w.size else 0.0
        if not err <= tolerance * scale:
            raise CheckError(
                f"self-check failed: {executor.method} ISM differs from naive ISM on output "
                f"{name!r} by {err:.3g} (scale {scale:.3g}); please report this model"
            )
