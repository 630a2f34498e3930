"""The self-check ``FastISM`` runs when it is built: the fast path against naive ISM.

Both run on the same random one-hot sequences at a sample of positions that covers both edges
of the sequence (where 'same' padding is uneven) and every stride phase of the strided layers
near each edge, plus the middle and random positions. Outputs are compared as *changes*
(mutant minus reference), so a fast path that returned the reference for every mutant fails
even when the true effects are tiny next to the outputs.

Tolerances, per compute dtype (``TOLERANCES``): the largest error of a change may be
``change`` times the largest true change plus ``output`` times the largest output (the round-off
of computing the outputs at all); reference outputs may differ by ``output`` times the largest
output. In float32 that is 1e-3 and 2e-5: a model whose mutations move its outputs by 1e-4 of
their size is still checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastism_dist.core.mutations import validate_other_inputs
from fastism_dist.core.naive import NaiveISM
from fastism_dist.core.plan import WIN
from fastism_dist.core.rules import Window
from fastism_dist.errors import CheckError

MAX_PHASES = 32


@dataclass(frozen=True)
class Tolerance:
    change: float
    output: float


TOLERANCES = {
    "float32": Tolerance(change=1e-3, output=2e-5),
    "float16": Tolerance(change=2e-2, output=2e-3),
    "bfloat16": Tolerance(change=1e-1, output=2e-2),
}


def random_one_hot(rng, n, length, channels):
    """Random one-hot sequences of shape (n, length, channels), float32."""
    return np.eye(channels, dtype=np.float32)[rng.integers(0, channels, size=(n, length))]


def random_other_inputs(rng, model, seq, n):
    """Random standard-normal values for every non-sequence input."""
    others = []
    for i, tensor in enumerate(model.inputs):
        if i == seq.index:
            continue
        shape = (n,) + tuple(1 if d is None else d for d in tensor.shape[1:])
        others.append(rng.standard_normal(shape).astype(np.float32))
    return others


def stride_period(plan):
    """Product of the strides (and upsampling sizes) of the windowed layers, at most MAX_PHASES."""
    period = 1
    for node_plan in plan.nodes:
        rule = node_plan.rule
        if node_plan.state == WIN and isinstance(rule, Window):
            period *= max(rule.stride, rule.align)
    return min(period, MAX_PHASES)


def check_positions(n_positions, period, n_random, rng):
    """Sorted indices into the mutated positions: ``period + 1`` at each edge, the middle and
    ``n_random`` random ones."""
    edge = min(period + 1, n_positions)
    chosen = set(range(edge)) | set(range(n_positions - edge, n_positions)) | {n_positions // 2}
    chosen |= set(rng.choice(n_positions, size=min(n_random, n_positions), replace=False).tolist())
    return np.array(sorted(chosen))


def self_check(executor, n_sequences=2, n_random=8, seed=0):
    """Raise ``CheckError`` unless ``executor`` (a FastISM) equals naive ISM within tolerance."""
    rng = np.random.default_rng(seed)
    seq, spec = executor.seq, executor.spec
    x = random_one_hot(rng, n_sequences, seq.length, seq.channels)
    others = validate_other_inputs(
        executor.model, seq, random_other_inputs(rng, executor.model, seq, n_sequences),
        n_sequences)
    positions = check_positions(spec.n_positions, stride_period(executor.plan), n_random, rng)
    naive = NaiveISM(executor.model, start=spec.start, end=spec.end,
                     substitutions=spec.substitutions, seq_input=seq.index)
    got = executor._run(x, others, positions)
    want = naive._run(x, others, positions)
    tolerance = TOLERANCES[executor.compute_dtype]
    for k, name in enumerate(executor.output_names):
        compare_outputs(name, got.ref[k], got.mut[k], want.ref[k], want.mut[k], tolerance)


def compare_outputs(name, got_ref, got_mut, want_ref, want_mut, tolerance):
    """Raise ``CheckError`` if one output's reference or changes differ beyond ``tolerance``.

    got_ref, want_ref : (B, *out); got_mut, want_mut : (B, W, S, *out).
    """
    scale = max(_max_abs(want_ref), _max_abs(want_mut))
    ref_error = _max_abs(got_ref - want_ref)
    if ref_error > tolerance.output * scale:
        raise CheckError(f"self-check failed: fast ISM's reference output {name!r} differs from "
                         f"the model's by {ref_error:.3g} (outputs up to {scale:.3g}); "
                         "please report this model")
    want_change = want_mut - want_ref[:, None, None]
    got_change = got_mut - got_ref[:, None, None]
    change_scale = _max_abs(want_change)
    error = _max_abs(got_change - want_change)
    if error > tolerance.change * change_scale + tolerance.output * scale:
        raise CheckError(f"self-check failed: fast ISM's changes of output {name!r} differ from "
                         f"naive ISM's by {error:.3g} (largest change {change_scale:.3g}, outputs "
                         f"up to {scale:.3g}); please report this model")


def _max_abs(a):
    return float(np.max(np.abs(a))) if a.size else 0.0
