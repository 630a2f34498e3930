"""The per-run output plan: which tasks of each output are kept, then which reducer runs.

``--tasks 0,2`` (or task names, where an output's tasks are named) keeps those entries of the
last axis of every stored output before any reducer runs; ``--reduce`` then reduces some
outputs (see :mod:`fastism_dist.outputs.reducers`). :func:`plan_outputs` resolves both on the
client into an :class:`OutputPlan`, whose ``apply`` / ``apply_one`` the workers run before
writing and whose ``dims`` label the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from fastism_dist.errors import FastISMError
from fastism_dist.outputs.arrays import map_mutants, task_indices
from fastism_dist.outputs.reducers import Dim, Reduced, check_chunk_shapes, parse_reduce
from fastism_dist.store import output_dims


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

    def _take_tasks(self, name, x):
        idx = self.tasks.get(name)
        return x if idx is None else np.take(x, np.asarray(idx), axis=-1)

    def apply_one(self, name, ref_rows, out_rows):
        """Task choice then the reducer, on rows of one output: M mutants, ALT alleles, ...

        Parameters
        ----------
        name : str
            The output.
        ref_rows : ndarray of shape (M, *out)
            Row ``i`` is the reference output of the sequence of row ``i`` of ``out_rows``
            (only reducers that compare with the reference, ``jsd``, read it).
        out_rows : ndarray of shape (M, *out)
            Model outputs, as computed.

        Returns
        -------
        ndarray of shape (M, *stored)
            As the store holds them (``stored`` is ``self.shapes[name]``). Without a reducer,
            the rows' own dtype; with one, float32 (float64 for float64 rows). Temporaries are
            a few arrays of the rows' size, whatever the chunk.
        """
        out_rows = np.asarray(out_rows)
        reducer = self.reducers.get(name)
        if reducer is None:
            return self._take_tasks(name, out_rows)
        if reducer.uses_reference:
            ref_rows = np.asarray(ref_rows)
            if ref_rows.shape != out_rows.shape:
                raise FastISMError(f"{name!r}: reference rows of shape {ref_rows.shape} for "
                                   f"output rows of shape {out_rows.shape}")
            ref_rows = self._take_tasks(name, ref_rows)
        return reducer.rows(ref_rows, self._take_tasks(name, out_rows))

    def apply(self, name, ref, mut):
        """The plan on one chunk of one output.

        Parameters
        ----------
        name : str
        ref : ndarray of shape (B, *out)
            Reference outputs of the chunk's B sequences.
        mut : ndarray of shape (B, W, S, *out)
            Every mutant's output.

        Returns
        -------
        Reduced
            ``ref`` (B, *stored), ``mut`` (B, W, S, *stored) and the plan's dimensions of
            ``name``. A reducer runs on bounded blocks of mutants (``apply_one`` on each), so
            no temporary of the chunk's size is made; without one the arrays are returned as
            they are, or with the chosen tasks taken.
        """
        ref, mut = np.asarray(ref), np.asarray(mut)
        check_chunk_shapes(ref, mut, name)
        if name not in self.reducers:
            return Reduced(self._take_tasks(name, ref), self._take_tasks(name, mut), self.dims[name])
        rows = partial(self.apply_one, name)
        return Reduced(rows(ref, ref), map_mutants(rows, ref, mut), self.dims[name])


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
        A reduce spec (see :func:`~fastism_dist.outputs.reducers.parse_reduce`), applied after
        the task choice.
    task_names : dict of str to list of str, optional
        Output name -> names of its tasks (the entries of its last axis), where known; they
        label the stored task dimension.

    Returns
    -------
    OutputPlan
    """
    task_names = dict(task_names or {})
    items = parse_tasks(tasks)
    chosen, labels, kept_shapes = {}, {}, {}
    for name, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        names = _task_names(name, shape, task_names.get(name))
        coords = None if names is None else np.asarray(names, dtype=object)
        if items is not None:
            idx = _chosen_tasks(name, shape, items, names)
            chosen[name] = tuple(int(i) for i in idx)
            coords = idx if coords is None else coords[idx]
            shape = shape[:-1] + (len(idx),)
        labels[name] = coords
        kept_shapes[name] = shape
    parsed = parse_reduce(reduce)
    for name in parsed:
        if name not in kept_shapes:
            raise FastISMError(f"reduce spec names output {name!r}, but the outputs are {list(kept_shapes)}")
    reducers = {k: r for k, r in parsed.items() if r is not None}
    dims = {}
    for name, shape in kept_shapes.items():
        reducer = reducers.get(name)
        own = reducer.dims(name, shape) if reducer else tuple(
            Dim(d, s) for d, s in zip(output_dims(name, len(shape)), shape))
        dims[name] = _label_tasks(name, shape, own, labels[name])
    return OutputPlan(dims=dims, tasks=chosen, reducers=reducers)


def _task_names(name, shape, names):
    """``names`` as strings, checked against the last axis of ``shape``; None when unnamed."""
    if names is None:
        return None
    names = [str(t) for t in names]
    if not shape or len(names) != shape[-1]:
        raise FastISMError(f"output {name!r} of shape {shape} has {len(names)} task names")
    return names


def _chosen_tasks(name, shape, items, names):
    """Indices of the ``--tasks`` items along the last axis of output ``name``."""
    if not shape:
        raise FastISMError(f"--tasks chooses along the last axis of every output, but output "
                           f"{name!r} is a scalar; choose outputs with --outputs")
    try:
        idx = task_indices(items, shape[-1], names)
    except FastISMError as err:
        raise FastISMError(f"output {name!r}: {err}") from None
    if len(set(idx.tolist())) != len(idx):
        raise FastISMError(f"output {name!r}: a task is chosen twice in {items}")
    return idx


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
