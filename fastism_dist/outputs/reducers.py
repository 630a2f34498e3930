"""Output reducers: shrink each mutant's output on the worker, before it is written.

A profile head (BPNet's ``profile``, shape ``(L_out, T)`` per sequence) stores
``W * S * L_out * T`` numbers per sequence; usually only a summary of each mutant's profile is
wanted. A reducer maps rows of outputs, ``(M, *out) -> (M, *new)``, M rows at a time (M
mutations, or the B reference outputs), and says what the output's dimensions are afterwards
(name, size, coordinate labels), from which the store labels them.

Profile reducers work on an output of shape ``(..., L_out, T)``: bins on axis -2, tracks on -1.

========== ==================================================================================
spec       what is stored for output ``o`` (per sequence: ``o`` (W, S, ...), ``o_ref`` (...))
========== ==================================================================================
total      sum over bins: total count per track, shape (..., T)
logsum     log of the summed exp over bins (for log-count heads), shape (..., T)
jsd        Jensen-Shannon distance (log base 2, in [0, 1]) between the mutant's and the
           reference's profile after a softmax over bins, per track; ``o_ref`` is 0; (..., T)
bins:N     sums over consecutive N bins, shape (..., ceil(L_out / N), T); dim ``o_bin``
           labelled by each bin's first bin
tasks:I+J  tracks I, J, ... (last axis) only, by index; labelled by the original indices
========== ==================================================================================

On the command line, ``--reduce "profile=jsd,counts"`` reduces output ``profile`` by ``jsd`` and
keeps ``counts`` as it is (so does any output not named): see :func:`parse_reduce`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastism_dist.errors import FastISMError
from fastism_dist.store import output_dims

BIN_AXIS = -2
TRACK_AXIS = -1
BLOCK_ELEMENTS = 2 ** 18  # numbers of one output per block of mutant rows reduced at once
_TWO_LN2 = 2.0 * math.log(2.0)


class Dim(NamedTuple):
    """One dimension of a (reduced) output: its name, size and coordinate labels (or None)."""

    name: str
    size: int
    coords: np.ndarray | None = None


class Reduced(NamedTuple):
    """One output of one chunk after a reducer.

    ref : ndarray of shape (B, *new)
    mut : ndarray of shape (B, W, S, *new)
    dims : tuple of Dim, one per entry of ``new``
    """

    ref: np.ndarray
    mut: np.ndarray
    dims: tuple


def _float_dtype(dtype):
    """float32, or ``dtype`` itself when it is float32 / float64."""
    return dtype if dtype.kind == "f" and dtype.itemsize >= 4 else np.dtype(np.float32)


def _as_float(x):
    x = np.asarray(x)
    return x.astype(_float_dtype(x.dtype), copy=False)


def _bins_last(x, axis):
    """A new C-ordered float copy of ``x`` with the bin ``axis`` moved last.

    NumPy reduces a contiguous last axis many times faster than the bin axis of a
    ``(..., L_out, T)`` array, whose inner loop would run over the few tracks only.
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    return np.array(x, dtype=_float_dtype(x.dtype), order="C", copy=True)


def total_count(x, axis=BIN_AXIS):
    """Sum over bins.

    Parameters
    ----------
    x : ndarray of shape (..., L_out, T)
    axis : int
        The bin axis. Default is -2.

    Returns
    -------
    ndarray of shape (..., T)
    """
    return _bins_last(x, axis).sum(axis=-1)


def logsumexp(x, axis=BIN_AXIS):
    """``log(sum(exp(x)))`` over bins, computed stably (the log total of a log-count head).

    Parameters
    ----------
    x : ndarray of shape (..., L_out, T)
    axis : int
        Default is -2.

    Returns
    -------
    ndarray of shape (..., T)
        -inf where every bin is -inf.
    """
    x = _bins_last(x, axis)
    top = x.max(axis=-1)
    top = np.where(np.isfinite(top), top, 0).astype(x.dtype, copy=False)
    x -= top[..., None]
    np.exp(x, out=x)
    with np.errstate(divide="ignore"):
        out = np.log(x.sum(axis=-1))
    out += top
    return out


def _softmax_last(x):
    """Softmax over the last axis of ``x``, in place."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def softmax(x, axis=BIN_AXIS):
    """Softmax over bins: ``exp(x) / sum(exp(x))``.

    Parameters
    ----------
    x : ndarray of shape (..., L_out, T)
    axis : int
        Default is -2.

    Returns
    -------
    ndarray of shape (..., L_out, T)
        float32 (float64 for float64 ``x``).
    """
    return np.moveaxis(_softmax_last(_bins_last(x, axis)), -1, axis)


def _js_divergence_last(p, q):
    """JS divergence (log base 2) over the last axis of profiles ``p``, ``q``; both overwritten.

    With ``s = p + q`` and ``t = (p - q) / s`` in each bin it is
    ``sum(s * f(t)) / (4 ln 2)`` for ``f(t) = (1 + t) ln(1 + t) + (1 - t) ln(1 - t)``, written
    as ``2 |t| artanh|t| + ln(1 - t^2)``: no ratio ``p / m`` near 1 is formed, so small
    divergences (``f(t)`` about ``t^2``) keep their precision in float32. ``f`` is ``2 ln 2``
    at ``|t| = 1`` (a bin empty in one profile only).
    """
    total = p + q
    t = np.subtract(p, q, out=p)
    np.divide(t, total, out=t, where=total > 0)
    t[total <= 0] = 0
    a = np.abs(t, out=t)
    edge = a >= 1
    a[edge] = 0
    terms = np.arctanh(a, out=q)
    terms *= a
    terms *= 2
    a *= a
    np.negative(a, out=a)
    terms += np.log1p(a, out=a)
    terms[edge] = _TWO_LN2
    terms *= total
    return terms.sum(axis=-1) / (2 * _TWO_LN2)


def jsd(p, q, axis=BIN_AXIS, logits=True):
    """Jensen-Shannon distance between two profiles, per track.

    Parameters
    ----------
    p, q : ndarray of shape (..., L_out, T), broadcastable
        Profiles: logits (softmax over bins is taken) or, with ``logits=False``, probabilities
        that sum to one over bins.
    axis : int
        The bin axis. Default is -2.
    logits : bool
        Default is True.

    Returns
    -------
    ndarray of shape (..., T), float32
        ``sqrt(JS divergence)`` with log base 2: 0 for identical profiles, symmetric, at most 1.
    """
    p, q = np.broadcast_arrays(np.asarray(p), np.asarray(q))
    p, q = _bins_last(p, axis), _bins_last(q, axis)
    if logits:
        p, q = _softmax_last(p), _softmax_last(q)
    div = _js_divergence_last(p, q)
    return np.sqrt(np.clip(div, 0.0, 1.0)).astype(np.float32, copy=False)


def bin_sums(x, width, axis=BIN_AXIS):
    """Sums over consecutive ``width`` bins; a last, shorter bin holds the remainder.

    Parameters
    ----------
    x : ndarray of shape (..., L_out, T)
    width : int
    axis : int
        Default is -2.

    Returns
    -------
    ndarray of shape (..., ceil(L_out / width), T)
    """
    x = _as_float(x)
    width = int(width)
    if width < 1:
        raise FastISMError(f"bin width must be >= 1, got {width}")
    starts = np.arange(0, x.shape[axis], width)
    return np.add.reduceat(x, starts, axis=axis)


def task_indices(tasks, size, labels=None):
    """Indices along a track axis of ``size`` for ``tasks``.

    Parameters
    ----------
    tasks : int, str or list of them
        Indices (negative ones count from the end) or names among ``labels``.
    size : int
    labels : list of str, optional
        Names of the ``size`` tasks.

    Returns
    -------
    ndarray of int64, shape (len(tasks),)
    """
    if isinstance(tasks, (int, np.integer, str)):
        tasks = [tasks]
    labels = None if labels is None else [str(t) for t in labels]
    out = []
    for t in tasks:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not -size <= int(t) < size:
                raise FastISMError(f"task index {t} out of range for {size} tasks")
            out.append(int(t) % size)
        elif labels is not None and str(t) in labels:
            out.append(labels.index(str(t)))
        elif labels is None:
            raise FastISMError(f"task {t!r} is not an index and the tasks have no names")
        else:
            raise FastISMError(f"no task named {t!r}; the tasks are {labels}")
    if not out:
        raise FastISMError("no tasks chosen")
    return np.asarray(out, dtype=np.int64)


def select_tasks(x, tasks, labels=None, axis=TRACK_AXIS):
    """Keep some tracks (tasks) of an output, by index or by name.

    Parameters
    ----------
    x : ndarray of shape (..., T)
    tasks : int, str or list of them
    labels : list of str, optional
        Names of the ``T`` tasks, for choosing by name.
    axis : int
        The task axis. Default is -1.

    Returns
    -------
    ndarray of shape (..., len(tasks))
    """
    x = np.asarray(x)
    return np.take(x, task_indices(tasks, x.shape[axis], labels), axis=axis)


def map_mutants(reduce_rows, ref, mut, block_elements=BLOCK_ELEMENTS):
    """Apply a row reduction to every mutant of a chunk, a bounded block of rows at a time.

    Parameters
    ----------
    reduce_rows : callable
        ``reduce_rows(ref_rows, mut_rows) -> (M, *new)`` for ``ref_rows``, ``mut_rows`` of
        shape (M, *out): row ``i`` of ``ref_rows`` is the reference output of the sequence
        that row ``i`` of ``mut_rows`` mutates.
    ref : ndarray of shape (B, *out)
    mut : ndarray of shape (B, W, S, *out)
    block_elements : int
        About how many numbers of ``mut`` one call gets. Default is ``BLOCK_ELEMENTS``.

    Returns
    -------
    ndarray of shape (B, W, S, *new)
        No temporary larger than one block is made besides the result.
    """
    b, w, s = mut.shape[:3]
    per_seq = w * s
    rows = mut.reshape((b * per_seq,) + mut.shape[3:])
    n_rows = rows.shape[0]
    row_size = max(1, math.prod(mut.shape[3:]))
    step = max(1, int(block_elements) // row_size)
    out = None
    for lo in range(0, max(n_rows, 1), step):
        hi = min(lo + step, n_rows)
        got = np.asarray(reduce_rows(ref[np.arange(lo, hi) // max(per_seq, 1)], rows[lo:hi]))
        if out is None:
            out = np.empty((n_rows,) + got.shape[1:], dtype=got.dtype)
        out[lo:hi] = got
    return out.reshape((b, w, s) + out.shape[1:])


def check_chunk_shapes(ref, mut, output):
    """Raise ``FastISMError`` unless ``mut`` (B, W, S, *out) matches ``ref`` (B, *out)."""
    if mut.ndim != ref.ndim + 2 or mut.shape[0] != ref.shape[0] or mut.shape[3:] != ref.shape[1:]:
        raise FastISMError(f"{output!r}: mut shape {mut.shape} does not match ref shape {ref.shape}")


@dataclass(frozen=True)
class Reducer:
    """A named per-output reduction.

    Attributes
    ----------
    spec : str
        The text that chooses it (``"jsd"``, ``"bins:10"``, ...).
    kind : str
        The registry key.
    arg : object
        Its argument (bin width, task indices) or None.
    """

    spec: str
    kind: str
    arg: object = None

    @property
    def uses_reference(self):
        """True when a mutant's result depends on the reference output (``jsd``)."""
        return self.kind == "jsd"

    def dims(self, output, shape):
        """Dimensions of ``output``'s per-sequence result after this reducer.

        Parameters
        ----------
        output : str
            The output name (new dimensions are named after it).
        shape : tuple of int
            The output's per-sequence shape ``out`` before reduction.

        Returns
        -------
        tuple of Dim
        """
        shape = tuple(int(s) for s in shape)
        names = output_dims(output, len(shape))
        kept = [Dim(n, s) for n, s in zip(names, shape)]
        if self.kind == "tasks":
            if not shape:
                raise FastISMError(f"reducer {self.spec!r} needs an output with a task axis; "
                                   f"{output!r} is a scalar")
            idx = task_indices(list(self.arg), shape[-1])
            return tuple(kept[:-1]) + (Dim(names[-1], len(idx), idx),)
        if len(shape) < 2:
            raise FastISMError(f"reducer {self.spec!r} needs a profile output of shape (..., L_out, T); "
                               f"{output!r} has shape {shape}")
        if self.kind == "bins":
            starts = np.arange(0, shape[-2], int(self.arg), dtype=np.int64)
            return tuple(kept[:-2]) + (Dim(f"{output}_bin", len(starts), starts), kept[-1])
        return tuple(kept[:-2]) + (kept[-1],)

    def rows(self, ref_rows, out_rows):
        """Reduce rows of one output.

        Parameters
        ----------
        ref_rows : ndarray of shape (M, *out)
            The reference output of each row's sequence (read only by ``jsd``).
        out_rows : ndarray of shape (M, *out)
            Outputs to reduce: mutants, ALT alleles, or the reference outputs themselves.

        Returns
        -------
        ndarray of shape (M, *new)
        """
        if self.kind == "total":
            return total_count(out_rows)
        if self.kind == "logsum":
            return logsumexp(out_rows)
        if self.kind == "jsd":
            return jsd(out_rows, ref_rows)
        if self.kind == "bins":
            return bin_sums(out_rows, self.arg)
        return select_tasks(out_rows, list(self.arg))

    def __call__(self, ref, mut, output="output"):
        """Reduce one chunk of one output.

        Parameters
        ----------
        ref : ndarray of shape (B, *out)
        mut : ndarray of shape (B, W, S, *out)
        output : str
            The output's name, for the dimension names.

        Returns
        -------
        Reduced
            ``ref`` is each reference output reduced as a mutant of itself (0 for ``jsd``).
        """
        ref, mut = np.asarray(ref), np.asarray(mut)
        check_chunk_shapes(ref, mut, output)
        dims = self.dims(output, ref.shape[1:])
        return Reduced(self.rows(ref, ref), map_mutants(self.rows, ref, mut), dims)


def _no_arg(kind):
    def make(arg, spec):
        if arg is not None:
            raise FastISMError(f"reducer {kind!r} takes no argument, got {spec!r}")
        return Reducer(spec, kind)
    return make


def _bins(arg, spec):
    try:
        width = int(arg)
    except (TypeError, ValueError):
        width = 0
    if width < 1:
        raise FastISMError(f"reducer 'bins' needs a positive bin width, e.g. bins:10, got {spec!r}")
    return Reducer(spec, "bins", width)


def _tasks(arg, spec):
    try:
        idx = tuple(int(t) for t in (arg or "").split("+"))
    except ValueError:
        idx = ()
    if not idx:
        raise FastISMError(f"reducer 'tasks' needs task indices joined by '+', e.g. tasks:0+3, got {spec!r}")
    return Reducer(spec, "tasks", idx)


# name -> factory(arg or None, full spec text) -> Reducer
REDUCERS = {
    "total": _no_arg("total"),
    "logsum": _no_arg("logsum"),
    "jsd": _no_arg("jsd"),
    "bins": _bins,
    "tasks": _tasks,
}
_USAGE = "total, logsum, jsd, bins:N, tasks:I+J"


def get_reducer(spec):
    """The reducer for a spec such as ``"jsd"`` or ``"bins:10"`` (a ``Reducer`` is returned as is)."""
    if isinstance(spec, Reducer):
        return spec
    spec = str(spec).strip()
    kind, sep, arg = spec.partition(":")
    if kind not in REDUCERS:
        raise FastISMError(f"unknown reducer {spec!r}: choose one of {_USAGE}")
    return REDUCERS[kind](arg if sep else None, spec)


def _reduce_items(text):
    """``(output, reducer text or None)`` items of a reduce spec given as text."""
    if not text.strip():
        raise FastISMError("empty reduce spec: give OUTPUT=REDUCER items, e.g. profile=jsd,counts")
    items = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise FastISMError(f"empty item in reduce spec {text!r}")
        name, sep, red = (s.strip() for s in item.partition("="))
        if not name:
            raise FastISMError(f"missing output name before '=' in {item!r} of reduce spec {text!r}")
        if sep and not red:
            raise FastISMError(f"missing reducer after '=' in {item!r}: choose one of {_USAGE}")
        items.append((name, red if sep else None))
    return items


def parse_reduce(spec):
    """Parse a reduction spec such as ``"profile=jsd,counts"``.

    Parameters
    ----------
    spec : str or dict or None
        Comma-separated items ``OUTPUT=REDUCER`` (reduce that output) or ``OUTPUT`` (keep it as
        it is); or a dict ``{output: reducer spec or None}``. Outputs not named are kept as
        they are.

    Returns
    -------
    dict of str to Reducer or None
        In the order given.
    """
    if spec is None:
        return {}
    items = list(spec.items()) if isinstance(spec, dict) else _reduce_items(str(spec))
    plan = {}
    for name, red in items:
        name = str(name)
        if name in plan:
            raise FastISMError(f"output {name!r} is named twice in the reduce spec")
        try:
            plan[name] = None if red is None else get_reducer(red)
        except FastISMError as err:
            raise FastISMError(f"output {name!r}: {err}") from None
    return plan
