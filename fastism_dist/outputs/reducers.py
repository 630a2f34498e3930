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

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastism_dist.errors import FastISMError
from fastism_dist.outputs.arrays import (bin_sums, jsd, logsumexp, map_mutants, select_tasks,
                                         task_indices, total_count)
from fastism_dist.store import output_dims



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
