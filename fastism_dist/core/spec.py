"""What an ISM run mutates and the interface every executor (naive, fast) shares.

Shapes, channels-last like Keras: ``B`` sequences, ``L`` length, ``C`` alphabet,
``W`` mutated positions, ``S`` substitutions, ``w`` substitution width, ``M`` mutations per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastism_dist.errors import InputError, ModelError, MutationSpecError

DEFAULT_BATCH_SIZE = 256


class ISMResult(NamedTuple):
    """Outputs of an ISM run.

    ref : list of ndarray, one per model output k, each of shape (B, *out_k)
    mut : list of ndarray, one per model output k, each of shape (B, W, S, *out_k);
        ``mut[k][b, p, s]`` is output k with the window at position ``start + p`` replaced by
        substitution ``s``.
    """

    ref: list
    mut: list


class ResultSink:
    """The default sink: fills the ``ISMResult`` arrays.

    An executor calls ``begin(ref, shape)`` once with the reference outputs (list of
    (B, *out_k)) and ``shape = (B, W, S)``, then ``add(b, p, s, outputs)`` per computed batch:
    ``b``, ``p``, ``s`` (M,) sequence, position (index into the W mutated positions) and
    substitution indices, ``outputs`` a list of (M, *out_k) float32 arrays. Mutations never
    passed to ``add`` are identity edits, whose output is the reference. ``finish()`` returns
    what the executor call returns.
    """

    def begin(self, ref, shape):
        self.ref = ref
        self.mut = [np.broadcast_to(r[:, None, None], tuple(shape) + r.shape[1:]).copy()
                    for r in ref]

    def add(self, b, p, s, outputs):
        for mut, out in zip(self.mut, outputs):
            mut[b, p, s] = out

    def finish(self):
        return ISMResult(self.ref, self.mut)


def load_model(model, safe_mode=True):
    """Return a ``keras.Model`` from a model or a ``.keras`` / ``.h5`` path.

    ``safe_mode=False`` allows deserialising Lambda layers (only for files you trust).
    """
    import keras

    if isinstance(model, keras.Model):
        return model
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    try:
        if path.endswith(".h5") or path.endswith(".hdf5"):
            return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
        return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelError(
                f"{path}: the model has a Lambda layer, which Keras will not load in safe mode; "
                "load it only if you trust the file (unsafe_model / --unsafe-model)"
            ) from None
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None
    except (OSError, TypeError) as err:
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None


COMPUTE_POLICIES = {"float32": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def with_compute_dtype(model, compute_dtype):
    """A copy of ``model`` computing in float16 / bfloat16 (weights kept in float32).

    Half precision is for GPUs: expect relative differences from float32 of about 1e-3
    (float16) to 1e-2 (bfloat16) of the output scale.
    """
    if compute_dtype not in COMPUTE_POLICIES:
        raise ModelError(f"compute_dtype must be one of {sorted(COMPUTE_POLICIES)}, got {compute_dtype!r}")
    policy = COMPUTE_POLICIES[compute_dtype]
    if policy is None:
        return model
    import keras

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as err:  # noqa: BLE001 - any failure means the model cannot be recast
        raise ModelError(f"cannot run model {model.name!r} in {compute_dtype}: {err}") from None
    return copy


@dataclass(frozen=True)
class SequenceInput:
    """Which model input holds the one-hot sequence and its shape (L, C)."""

    index: int
    name: str
    length: int
    channels: int


def find_sequence_input(model, seq_input=0):
    """Locate the sequence input by index or name; it must be (batch, length, channels)."""
    inputs = list(model.inputs)
    names = [t.name for t in inputs]
    if isinstance(seq_input, str):
        if seq_input not in names:
            raise ModelError(f"model has no input named {seq_input!r}; its inputs are {names}")
        index = names.index(seq_input)
    else:
        index = int(seq_input)
        if not 0 <= index < len(inputs):
            raise ModelError(f"seq_input={seq_input} but the model has {len(inputs)} input(s) {names}")
    shape = tuple(inputs[index].shape)
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(
            f"model input {names[index]!r} has shape {shape}: fastism_dist needs a "
            "(batch, length, channels) sequence input with fixed length and channels"
        )
    return SequenceInput(index, names[index], int(shape[1]), int(shape[2]))


def output_names(model):
    """One name per model output, in the order the model returns them."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model.outputs):
        names = [t._keras_history.operation.name for t in model.outputs]
    return names


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


def padded_size(n, batch_size, smallest=16, steps_per_octave=4):
    """Rows a call of ``n`` mutations is padded to: the smallest bucket holding ``n``, at most
    ``batch_size``. Buckets grow by 2 ** (1 / steps_per_octave), rounded up to multiples of 8
    (16, 24, 32, 40, 48, 64, 80, 96, 120, ...), so a run traces few shapes and pads little.
    """
    size = smallest
    while size < n:
        size = int(-(-size * 2 ** (1 / steps_per_octave) // 8) * 8)
    return min(size, batch_size)


class ISMExecutor:
    """Shared front end of the ISM executors.

    Subclasses implement ``_prepare()`` (once, after the spec is known),
    ``_reference(x, others)`` returning the reference outputs and keeping whatever they cache, and
    ``_mutants(b, p, s)`` computing outputs for ``M`` mutations: sequence index ``b``,
    position index ``p`` (into ``spec.positions``) and substitution index ``s``, each (M,) int32.

    Parameters
    ----------
    model : keras.Model or str
        The model, or a path to a ``.keras`` / ``.h5`` file.
    start, end : int
        Mutate window starts ``start..end`` (half-open). Default is the whole sequence.
    substitutions : ndarray of shape (S, C) or (S, w, C), optional
        Replacement vectors. Default is the C one-hot bases.
    seq_input : int or str
        Index or name of the sequence input. Default is 0.
    check : bool
        Compare with naive ISM on random inputs when built. Default is True.
    batch_size : int, optional
        Mutations per model call. Default is 256.
    safe_mode : bool
        Keras safe mode when loading a model file. Default is True.
    skip_identity : bool
        Copy the reference output for substitutions equal to the reference instead of computing
        them. Default is True.
    compute_dtype : {"float32", "float16", "bfloat16"}
        Precision of the model's computation (half precision is meant for GPUs; see
        ``with_compute_dtype`` for the tolerance). Results are returned as float32.
        Default is "float32".
    """

    method = None

    def __init__(self, model, start=0, end=None, substitutions=None, seq_input=0, check=True,
                 batch_size=None, safe_mode=True, skip_identity=True, compute_dtype="float32"):
        self.compute_dtype = compute_dtype
        self.model = with_compute_dtype(load_model(model, safe_mode=safe_mode), compute_dtype)
        self.skip_identity = bool(skip_identity)
        self.seq = find_sequence_input(self.model, seq_input)
        self.spec = make_mutation_spec(self.seq.length, self.seq.channels, start, end, substitutions)
        self.output_names = output_names(self.model)
        if batch_size is not None and int(batch_size) < 1:
            raise MutationSpecError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size) if batch_size else None
        self._prepare()
        self.batch_size = self.batch_size or self._default_batch_size()
        if check:
            self.self_check()

    def _prepare(self):
        pass

    def _default_batch_size(self):
        return DEFAULT_BATCH_SIZE

    def _begin(self, n_batches):
        """Called before the mutation batches of one run; ``n_batches`` is about how many."""

    def __call__(self, x, other_inputs=None, sink=None):
        """Run ISM on ``x`` of shape (B, L, C).

        Each computed batch goes to ``sink`` (see ``ResultSink``) as soon as it is ready, so a
        caller that reduces or writes per batch never holds the full (B, W, S, *out) arrays.
        Returns ``sink.finish()``: by default an ``ISMResult``.
        """
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        return self._run(x, others, np.arange(self.spec.n_positions), sink)

    def _run(self, x, others, position_indices, sink=None):
        """ISM over the given indices into ``spec.positions`` (W = len(position_indices))."""
        sink = ResultSink() if sink is None else sink
        ref = [np.asarray(r) for r in self._reference(x, others)]
        triples = self._plan_mutations(x, position_indices)
        sink.begin(ref, (len(x), len(position_indices), len(self.spec.substitutions)))
        self._begin(-(-len(triples) // self.batch_size))
        for batch in self._batches(triples, position_indices):
            outs = self._mutants(*self._padded(batch, position_indices))
            sink.add(batch[:, 0], batch[:, 1], batch[:, 2],
                     [np.asarray(out)[:len(batch)] for out in outs])
        return sink.finish()

    def _plan_mutations(self, x, position_indices):
        """(N, 3) int array of (b, local position, s) mutations that are not identity edits."""
        subs = self.spec.substitutions
        width = self.spec.width
        starts = self.spec.positions[position_indices]
        windows = np.stack([x[:, p:p + width] for p in starts], axis=1)  # (B, W, w, C)
        identity = np.all(windows[:, :, None] == subs[None, None], axis=(-2, -1))  # (B, W, S)
        if not self.skip_identity:
            identity[:] = False
        return np.argwhere(~identity).astype(np.int32)

    def _batches(self, triples, position_indices):
        """Split the (N, 3) mutations into model calls of at most ``batch_size`` rows."""
        for lo in range(0, len(triples), self.batch_size):
            yield triples[lo:lo + self.batch_size]

    def _padded(self, batch, position_indices):
        """Pad a batch to a fixed bucket size (few traced shapes); p becomes a spec index."""
        pad = padded_size(len(batch), self.batch_size) - len(batch)
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[:1], pad, axis=0)])
        b = batch[:, 0].astype(np.int32)
        p = np.asarray(position_indices, dtype=np.int32)[batch[:, 1]]
        s = batch[:, 2].astype(np.int32)
        return b, p, s

    def _reference(self, x, others):
        raise NotImplementedError

    def _mutants(self, b, p, s):
        raise NotImplementedError

    def self_check(self, n_sequences=2, n_positions=12, seed=0):
        """Compare with ``NaiveISM`` on random one-hot sequences at edge and random positions."""
        from fastism_dist.core.checks import compare_with_naive

        compare_with_naive(self, n_sequences=n_sequences, n_positions=n_positions, seed=seed)
