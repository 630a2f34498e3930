"""Output reducers: shrink each chunk's ISM results on the worker, before they are written.

A profile head (BPNet's ``profile``, shape ``(L_out, T)`` per sequence) stores
``W * S * L_out * T`` numbers per sequence; usually only a summary of each mutant's profile is
wanted. Reducers are plain NumPy functions applied to one chunk's ``ref`` (B, *out) and ``mut``
(B, W, S, *out) arrays of one output; each returns the reduced arrays and a description of the
output's dimensions afterwards (name, size, coordinate labels), from which the store labels them.

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

``--tasks 0,2`` (or task names, where an output's tasks are named) keeps those entries of the
last axis of every stored output before any reducer runs. :func:`plan_outputs` resolves both
on the client into an :class:`OutputPlan`, whose ``apply`` the workers run on each chunk and
whose ``dims`` label the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastism_dist.errors import FastISMError
from fastism_dist.store.layout import output_dims

__all__ = [
    "Dim",
    "Reduced",
    "Reducer",
    "REDUCERS",
    "select_outputs",
    "select_tasks",
    "total_count",
    "logsumexp",
    "softmax",
    "jsd",
    "bin_sums",
    "get_reducer",
    "parse_reduce",
    "check_reduce",
    "apply_reduce",
    "reduced_dims",
    "parse_tasks",
    "OutputPlan",
    "plan_outputs",
]

BIN_AXIS = -2
TRACK_AXIS = -1


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


# ----------------------------------------------------------------------------------------------
# array functions


def _as_float(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" and x.dtype.itemsize >= 4 else x.astype(np.float32)


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
    return _as_float(x).sum(axis=axis)


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
    """
    x = _as_float(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis=axis)
    return out.astype(x.dtype, copy=False)


def softmax(x, axis=BIN_AXIS):
    """Softmax over bins: ``exp(x) / sum(exp(x))``, float64.

    Parameters
    ----------
    x : ndarray of shape (..., L_out, T)

    Returns
    -------
    ndarray of shape (..., L_out, T), float64
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _xlogy_ratio(p, m):
    """``p * log2(p / m)`` with 0 where p == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log2(np.where(p > 0, p, 1) / np.where(m > 0, m, 1)), 0.0)


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
    if logits:
        p, q = softmax(p, axis), softmax(q, axis)
    else:
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    p, q = np.broadcast_arrays(p, q)
    m = 0.5 * (p + q)
    div = 0.5 * (_xlogy_ratio(p, m).sum(axis=axis) + _xlogy_ratio(q, m).sum(axis=axis))
    return np.sqrt(np.clip(div, 0.0, 1.0)).astype(np.float32)


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
    n = x.shape[axis]
    starts = np.arange(0, n, width)
    return np.add.reduceat(x, starts, axis=axis)


def select_outputs(names, ref, mut, wanted=None):
    """Keep some of a model's outputs, in the order asked for.

    Parameters
    ----------
    names : list of str
        The output names, one per entry of ``ref`` / ``mut``.
    ref, mut : list of ndarray
        As ``ISMResult.ref`` (B, *out_k) and ``ISMResult.mut`` (B, W, S, *out_k).
    wanted : list of str or int, or str, optional
        Names or indices, or one comma-separated string of them. Default is all.

    Returns
    -------
    names, ref, mut : lists
    """
    names = [str(n) for n in names]
    if wanted is None:
        return list(names), list(ref), list(mut)
    if isinstance(wanted, str):
        wanted = [w.strip() for w in wanted.split(",") if w.strip()]
    if len(wanted) == 0:
        raise FastISMError("no outputs chosen")
    chosen = []
    for w in wanted:
        if isinstance(w, str) and w not in names and w.lstrip("-").isdigit():
            w = int(w)  # an index given as text, e.g. "0,2" on the command line
        if isinstance(w, (int, np.integer)) and not isinstance(w, bool):
            if not -len(names) <= int(w) < len(names):
                raise FastISMError(f"output index {w} out of range: the model has {len(names)} outputs {names}")
            k = int(w) % len(names)
        elif str(w) in names:
            k = names.index(str(w))
        else:
            raise FastISMError(f"no model output named {w!r}; the outputs are {names}")
        if k in chosen:
            raise FastISMError(f"output {names[k]!r} is chosen twice")
        chosen.append(k)
    return [names[k] for k in chosen], [ref[k] for k in chosen], [mut[k] for k in chosen]


def _task_indices(tasks, size, labels=None):
    """Indices along a track axis of ``size`` for ``tasks`` (ints or labels)."""
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
    return np.take(x, _task_indices(tasks, x.shape[axis], labels), axis=axis)


# ----------------------------------------------------------------------------------------------
# reducers


@dataclass(frozen=True)
class Reducer:
    """A named per-output reduction of one chunk.

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
                raise FastISMError(f"reducer {self.spec!r} needs an output with a task axis; {output!r} is a scalar")
            idx = _task_indices(list(self.arg), shape[-1])
            return tuple(kept[:-1]) + (Dim(names[-1], len(idx), idx),)
        if len(shape) < 2:
            raise FastISMError(f"reducer {self.spec!r} needs a profile output of shape (..., L_out, T); "
                               f"{output!r} has shape {shape}")
        if self.kind in ("total", "logsum", "jsd"):
            return tuple(kept[:-2]) + (kept[-1],)
        if self.kind == "bins":
            starts = np.arange(0, shape[-2], int(self.arg), dtype=np.int64)
            return tuple(kept[:-2]) + (Dim(f"{output}_bin", len(starts), starts), kept[-1])
        raise FastISMError(f"unknown reducer {self.kind!r}")  # pragma: no cover - built by get_reducer

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
        """
        ref, mut = np.asarray(ref), np.asarray(mut)
        if mut.ndim != ref.ndim + 2 or mut.shape[3:] != ref.shape[1:]:
            raise FastISMError(f"{output!r}: mut shape {mut.shape} does not match ref shape {ref.shape}")
        dims = self.dims(output, ref.shape[1:])
        if self.kind == "total":
            r, m = total_count(ref), total_count(mut)
        elif self.kind == "logsum":
            r, m = logsumexp(ref), logsumexp(mut)
        elif self.kind == "jsd":
            m = jsd(mut, ref[:, None, None])
            r = np.zeros(ref.shape[:-2] + ref.shape[-1:], dtype=np.float32)
        elif self.kind == "bins":
            r, m = bin_sums(ref, self.arg), bin_sums(mut, self.arg)
        else:  # tasks
            r, m = select_tasks(ref, list(self.arg)), select_tasks(mut, list(self.arg))
        return Reduced(r, m, dims)


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
    items = list(spec.items()) if isinstance(spec, dict) else None
    if items is None:
        text = str(spec)
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


def check_reduce(plan, shapes):
    """Check a parsed plan against the model's outputs before any task runs.

    Parameters
    ----------
    plan : dict of str to Reducer or None
        From :func:`parse_reduce`.
    shapes : dict of str to tuple of int
        Output name -> per-sequence shape ``out``.

    Returns
    -------
    dict of str to tuple of Dim
        Output name -> its dimensions after reduction (unreduced outputs get the default names).
    """
    for name in plan:
        if name not in shapes:
            raise FastISMError(f"reduce spec names output {name!r}, but the outputs are {list(shapes)}")
    return {name: reduced_dims(name, shape, plan.get(name)) for name, shape in shapes.items()}


def reduced_dims(output, shape, reducer=None):
    """Dimensions of ``output`` (per-sequence ``shape``) after ``reducer`` (None: unchanged)."""
    if reducer is None:
        return tuple(Dim(n, int(s)) for n, s in zip(output_dims(output, len(shape)), shape))
    return get_reducer(reducer).dims(output, shape)


def apply_reduce(plan, names, ref, mut):
    """Apply a plan to one chunk of results.

    Parameters
    ----------
    plan : dict of str to Reducer or None
    names : list of str
        Output names, one per entry of ``ref`` / ``mut``.
    ref, mut : list of ndarray
        (B, *out_k) and (B, W, S, *out_k).

    Returns
    -------
    dict of str to Reduced
        Every output, reduced where the plan says so.
    """
    out = {}
    for name, r, m in zip(names, ref, mut):
        reducer = plan.get(name)
        if reducer is None:
            r, m = np.asarray(r), np.asarray(m)
            out[name] = Reduced(r, m, reduced_dims(name, r.shape[1:]))
        else:
            out[name] = reducer(r, m, output=name)
    return out


# ----------------------------------------------------------------------------------------------
# the per-run plan: tasks, then reducers


def parse_tasks(spec):
    """Parse a task choice such as ``"0,2"`` or ``"CTCF,1"``.

    Parameters
    ----------
    spec : int, str, list of int or str, or None
        Indices (along the last axis of an output) or task names; text is split at commas and
        numbers in it become indices.

    Returns
    -------
    list of int or str, or None
        None for None (every task).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        items = [t.strip() for t in spec.split(",")]
        if not any(items):
            raise FastISMError(f"empty task choice {spec!r}: give indices or names, e.g. 0,2")
        if not all(items):
            raise FastISMError(f"empty item in task choice {spec!r}")
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        items = [int(spec)]
    else:
        items = list(spec)
        if not items:
            raise FastISMError("no tasks chosen")
    out = []
    for t in items:
        if isinstance(t, str) and t.lstrip("-").isdigit():
            t = int(t)
        elif isinstance(t, bool) or not isinstance(t, (str, int, np.integer)):
            raise FastISMError(f"a task is an index or a name, got {t!r}")
        out.append(int(t) if isinstance(t, (int, np.integer)) else t)
    return out


@dataclass(frozen=True)
class OutputPlan:
    """What is stored of each chosen model output; built by :func:`plan_outputs` on the client.

    Cheap to pickle (sent to the workers once per run).

    Attributes
    ----------
    dims : dict of str to tuple of Dim
        Output name -> its stored dimensions (per sequence), in the order the outputs are stored.
    tasks : dict of str to tuple of int
        Output name -> indices kept along its last axis; outputs not in it keep every task.
    reducers : dict of str to Reducer
        Output name -> its reducer; outputs not in it are stored as computed.
    """

    dims: dict
    tasks: dict
    reducers: dict

    @property
    def outputs(self):
        """The stored output names, in order."""
        return list(self.dims)

    @property
    def shapes(self):
        """Output name -> per-sequence shape as stored."""
        return {name: tuple(d.size for d in dims) for name, dims in self.dims.items()}

    def params(self):
        """The settings that change what is stored, for the run's ``params``.

        Returns
        -------
        dict
            ``tasks`` (output -> kept indices) and ``reduce`` (output -> reducer spec), each None
            when unused.
        """
        return {
            "tasks": {k: [int(i) for i in v] for k, v in self.tasks.items()} or None,
            "reduce": {k: r.spec for k, r in self.reducers.items()} or None,
        }

    def apply(self, name, ref, mut):
        """Task selection then the reducer, on one chunk of one output.

        Parameters
        ----------
        name : str
        ref : ndarray of shape (B, *out)
        mut : ndarray of shape (B, W, S, *out)

        Returns
        -------
        Reduced
            With the plan's dimensions of ``name``.
        """
        ref, mut = np.asarray(ref), np.asarray(mut)
        idx = self.tasks.get(name)
        if idx is not None:
            ref = np.take(ref, np.asarray(idx), axis=-1)
            mut = np.take(mut, np.asarray(idx), axis=-1)
        reducer = self.reducers.get(name)
        if reducer is not None:
            ref, mut, _ = reducer(ref, mut, output=name)
        return Reduced(ref, mut, self.dims[name])

    def apply_one(self, name, ref, out):
        """The plan applied to one other output per sequence (e.g. with a VCF ALT allele).

        Parameters
        ----------
        name : str
        ref : ndarray of shape (B, *out)
            The reference outputs (reducers such as ``jsd`` compare with them).
        out : ndarray of shape (B, *out)

        Returns
        -------
        ndarray of shape (B, *stored)
            As a mutant of ``name`` would be stored.
        """
        out = np.asarray(out)
        return self.apply(name, ref, out[:, None, None]).mut[:, 0, 0]


def plan_outputs(shapes, tasks=None, reduce=None, task_names=None):
    """Resolve ``--tasks`` and ``--reduce`` against the chosen outputs; raises ``FastISMError``.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        The chosen outputs (in storing order) -> per-sequence shape ``out``.
    tasks : int, str or list, optional
        Entries of the last axis of every output to keep: indices, or names where
        ``task_names`` names that output's tasks (see :func:`parse_tasks`). Default is all.
    reduce : str or dict, optional
        A reduce spec (see :func:`parse_reduce`), applied after the task choice.
    task_names : dict of str to list of str, optional
        Output name -> names of its tasks (the entries of its last axis), where known; they
        label the stored task dimension.

    Returns
    -------
    OutputPlan
    """
    task_names = dict(task_names or {})
    items = parse_tasks(tasks)
    chosen, labels, new_shapes = {}, {}, {}
    for name, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        names = task_names.get(name)
        if names is not None:
            names = [str(t) for t in names]
            if not shape or len(names) != shape[-1]:
                raise FastISMError(f"output {name!r} of shape {shape} has {len(names)} task names")
        coords = None if names is None else np.asarray(names, dtype=object)
        if items is not None:
            if not shape:
                raise FastISMError(f"--tasks chooses along the last axis of every output, but output "
                                   f"{name!r} is a scalar; choose outputs with --outputs")
            try:
                idx = _task_indices(items, shape[-1], names)
            except FastISMError as err:
                raise FastISMError(f"output {name!r}: {err}") from None
            if len(set(idx.tolist())) != len(idx):
                raise FastISMError(f"output {name!r}: a task is chosen twice in {items}")
            chosen[name] = tuple(int(i) for i in idx)
            coords = idx if coords is None else coords[idx]
            shape = shape[:-1] + (len(idx),)
        labels[name] = coords
        new_shapes[name] = shape
    reducers = {k: r for k, r in parse_reduce(reduce).items() if r is not None}
    dims = check_reduce(parse_reduce(reduce), new_shapes)
    for name, shape in new_shapes.items():
        dims[name] = _label_tasks(name, shape, dims[name], labels[name])
    return OutputPlan(dims=dims, tasks=chosen, reducers=reducers)


def _label_tasks(name, shape, dims, labels):
    """Put the task labels on the last dimension where it is still the task axis."""
    if labels is None or not shape or not dims:
        return dims
    track = output_dims(name, len(shape))[-1]
    last = dims[-1]
    if last.name != track:
        return dims
    coords = labels if last.coords is None else np.asarray(labels)[np.asarray(last.coords)]
    return tuple(dims[:-1]) + (Dim(last.name, last.size, np.asarray(coords)),)
