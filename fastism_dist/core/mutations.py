"""What an ISM run mutates, and the checks on the arrays it is given.

Shapes, channels-last like Keras: ``B`` sequences, ``L`` length, ``C`` alphabet,
``W`` mutated positions, ``S`` substitutions, ``w`` substitution width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastism_dist.errors import InputError, MutationSpecError


@dataclass(frozen=True)
class MutationSpec:
    """Positions ``start..end`` (half-open) each replaced by every substitution.

    substitutions : ndarray of shape (S, w, C)
    """

    start: int
    end: int
    substitutions: np.ndarray

    @property
    def width(self):
        return self.substitutions.shape[1]

    @property
    def n_positions(self):
        return self.end - self.start

    @property
    def positions(self):
        return np.arange(self.start, self.end)


def make_mutation_spec(length, channels, start=0, end=None, substitutions=None):
    """Validate ``start``, ``end`` and ``substitutions`` against a (L, C) sequence input."""
    subs = _normalise_substitutions(substitutions, channels)
    width = subs.shape[1]
    last = length - width + 1
    if end is None:
        end = last
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, (int, np.integer)):
            raise MutationSpecError(f"{name} must be an integer, got {value!r}")
    start, end = int(start), int(end)
    if not 0 <= start < end <= last:
        raise MutationSpecError(
            f"start={start}, end={end} out of range: need 0 <= start < end <= {last} "
            f"(sequence length {length}, substitution width {width})"
        )
    return MutationSpec(start, end, subs)


def _normalise_substitutions(substitutions, channels):
    if substitutions is None:
        return np.eye(channels, dtype=np.float32)[:, None, :]
    subs = np.asarray(substitutions, dtype=np.float32)
    if subs.ndim == 2:
        subs = subs[:, None, :]
    if subs.ndim != 3 or subs.shape[0] == 0 or subs.shape[1] == 0 or subs.shape[2] != channels:
        raise MutationSpecError(
            f"substitutions must have shape (S, {channels}) or (S, width, {channels}), "
            f"got {np.shape(substitutions)}"
        )
    if not np.all(np.isfinite(subs)):
        raise MutationSpecError("substitutions contain NaN or infinite values")
    return subs


def changed_mutations(x, starts, substitutions):
    """(N, 3) int32 (b, position index, s) of the mutations that change the sequence.

    Parameters
    ----------
    x : ndarray of shape (B, L, C)
    starts : ndarray of int, shape (W,)
        Window starts.
    substitutions : ndarray of shape (S, w, C)
    """
    width = substitutions.shape[1]
    if len(starts) == 0:
        return np.zeros((0, 3), dtype=np.int32)
    windows = np.stack([x[:, p:p + width] for p in starts], axis=1)  # (B, W, w, C)
    identity = np.all(windows[:, :, None] == substitutions[None, None], axis=(-2, -1))  # (B, W, S)
    return np.argwhere(~identity).astype(np.int32)


def validate_sequences(x, seq):
    """Return ``x`` as a float32 array of shape (B, L, C) or raise ``InputError``."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise InputError(f"x must be 3-D (batch, length, channels), got shape {x.shape}")
    if x.shape[1:] != (seq.length, seq.channels):
        raise InputError(
            f"x has shape {x.shape} but model input {seq.name!r} expects "
            f"(batch, {seq.length}, {seq.channels})"
        )
    if x.shape[0] == 0:
        raise InputError("x holds no sequences (batch size 0)")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError("x contains NaN or infinite values")
    return x


def validate_other_inputs(model, seq, other_inputs, batch):
    """Return the non-sequence inputs as a list aligned with ``model.inputs`` (None at ``seq``)."""
    inputs = list(model.inputs)
    n_other = len(inputs) - 1
    if other_inputs is None:
        other_inputs = []
    elif isinstance(other_inputs, dict):
        other_inputs = [other_inputs.get(t.name) for i, t in enumerate(inputs) if i != seq.index]
    elif not isinstance(other_inputs, (list, tuple)):
        other_inputs = [other_inputs]
    other_inputs = list(other_inputs)
    if len(other_inputs) != n_other or any(o is None for o in other_inputs):
        raise InputError(
            f"the model has {n_other} input(s) besides {seq.name!r}; "
            f"pass them as other_inputs (got {len(other_inputs)})"
        )
    full = []
    others = iter(other_inputs)
    for i, tensor in enumerate(inputs):
        if i == seq.index:
            full.append(None)
            continue
        value = np.asarray(next(others))
        expected = tuple(tensor.shape[1:])
        if value.ndim != len(expected) + 1 or value.shape[0] != batch or any(
            e is not None and e != v for e, v in zip(expected, value.shape[1:])
        ):
            raise InputError(
                f"other input {tensor.name!r} has shape {value.shape}, expected ({batch}, "
                f"{', '.join('?' if e is None else str(e) for e in expected)})"
            )
        full.append(value.astype(tensor.dtype if tensor.dtype else np.float32, copy=False))
    return full


