"""The array math of the reducers, on NumPy rows of outputs.

Profile functions work on an output of shape ``(..., L_out, T)``: bins on axis -2 (``BIN_AXIS``),
tracks on -1 (``TRACK_AXIS``). They compute in float32 (float64 inputs stay float64).
"""

from __future__ import annotations

import math

import numpy as np

from fastism_dist.errors import FastISMError

BIN_AXIS = -2
TRACK_AXIS = -1
BLOCK_ELEMENTS = 2 ** 18  # numbers of one output per block of mutant rows reduced at once
_TWO_LN2 = 2.0 * math.log(2.0)


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
