"""Ensemble stores: per-(chunk, group) tasks, their flags and partial sums, finishing a chunk.

The models of an ensemble are split into groups of ``ensemble_group_size`` (in file-name
order); one task scores one chunk of sequences with the models of one group. Its results go:

- ``keep``: straight into the group's slice of the ``model`` dimension of every output
  variable, which is chunked by group, so each task writes its own Zarr chunks;
- ``mean``: into the scratch array ``fastism_scratch/<var>`` (seq, group, ...), float64: the sum
  of the group's models' outputs, added in model order.

Then ``fastism_scratch/group_done[chunk, group] = 1``. When every group of a chunk is done,
:meth:`EnsembleWriter.finish` writes the reference letters and, for ``mean``, the sum of the
group partials in group order divided by the number of models, and sets ``done[chunk] = 1``.
The arithmetic is in a fixed order, so a retried or resumed task rewrites identical bytes and
the stored mean does not depend on which worker ran what. The scratch group is not in the
store's consolidated metadata (xarray never sees it) and :func:`remove_scratch` deletes it when
the run completes.
"""

from __future__ import annotations

import numpy as np

from fastism_dist.store.fence import owned
from fastism_dist.store.reader import chunk_slices, open_group, seq_arrays, stored_outputs
from fastism_dist.store.schema import (ATTR_CHUNK_SIZE, ATTR_ENSEMBLE, ATTR_ENSEMBLE_MODELS,
                                       ATTR_GROUP_SIZE, ATTR_RUN_ID, DONE, GROUP_DONE, REF_BASE,
                                       SCRATCH, SEQ, STRING_DTYPE, ref_name)


def n_groups(n_models, group_size):
    """Number of model groups of ``group_size`` covering ``n_models`` (the last may be short)."""
    return -(-int(n_models) // int(group_size))


def _layout(group):
    """``(mode, n_models, group_size)`` of an open ensemble store."""
    return (str(group.attrs[ATTR_ENSEMBLE]), len(group.attrs[ATTR_ENSEMBLE_MODELS]),
            int(group.attrs[ATTR_GROUP_SIZE]))


def _partial_vars(group):
    """The variables whose group partials a ``mean`` run keeps: ``o`` and ``o_ref``."""
    return [v for name in stored_outputs(group) for v in (name, ref_name(name))]


def create_scratch(path):
    """Create the scratch group of the ensemble store at ``path`` where it is missing.

    Holds ``group_done`` (chunk, group) int8 and, for ``mean``, one float64 array
    (seq, group, *rest) per output variable, chunked by one chunk of sequences and one group.
    Arrays already there are kept, so a resumed run keeps its finished groups.
    """
    group = open_group(path, "r+")
    mode, n_models, size = _layout(group)
    groups = n_groups(n_models, size)
    n = group[SEQ].shape[0]
    chunk = int(group[DONE].shape[0])
    rows = min(int(group.attrs[ATTR_CHUNK_SIZE]), n)
    scratch = group.require_group(SCRATCH)
    existing = set(scratch.array_keys())
    if GROUP_DONE not in existing:
        scratch.create_array(GROUP_DONE, shape=(chunk, groups), chunks=(1, 1), dtype="int8",
                             fill_value=0)
    if mode != "mean":
        return
    for var in _partial_vars(group):
        if var in existing:
            continue
        rest = tuple(group[var].shape[1:])
        scratch.create_array(var, shape=(n, groups) + rest, chunks=(rows, 1) + rest,
                             dtype="float64", fill_value=np.nan)


def group_done_mask(path):
    """Boolean (n_chunks, n_groups): True where a (chunk, group) task is done; None once the
    scratch group is gone (the run completed)."""
    group = open_group(path, "r")
    if SCRATCH not in set(group.group_keys()):
        return None
    return group[SCRATCH][GROUP_DONE][...] == 1


def remove_scratch(path, run_id=None):
    """Delete the scratch group of the store at ``path`` (while it is run ``run_id``'s)."""
    group = open_group(path, "r+")
    if SCRATCH not in set(group.group_keys()):
        return
    with owned(path, run_id or group.attrs.get(ATTR_RUN_ID), "the scratch arrays"):
        del group[SCRATCH]


class EnsembleWriter:
    """Writes the (chunk, group) results of an ensemble store and finishes its chunks.

    Parameters
    ----------
    path : str
        The store (with its scratch group, :func:`create_scratch`).
    run_id : str, optional
        The run id the store must carry while writing. Default is the one it carries now.

    Attributes
    ----------
    mode : {"mean", "keep"}
    n_models, group_size, n_groups : int
    """

    def __init__(self, path, run_id=None):
        group = open_group(path, "r+")
        self.path = path
        self.run_id = group.attrs.get(ATTR_RUN_ID) if run_id is None else str(run_id)
        self.mode, self.n_models, self.group_size = _layout(group)
        self.n_groups = n_groups(self.n_models, self.group_size)
        self._slices = chunk_slices(group, path)
        self._arrays = seq_arrays(group)
        self._done = group[DONE]
        scratch = group[SCRATCH]
        self._flags = scratch[GROUP_DONE]
        self._partials = ({v: scratch[v] for v in _partial_vars(group)}
                          if self.mode == "mean" else {})
        self.outputs = stored_outputs(group)

    def models(self, group_index):
        """The models of group ``group_index``: a slice of the file-name order."""
        lo = group_index * self.group_size
        return slice(lo, min(lo + self.group_size, self.n_models))

    def is_done(self, chunk_index, group_index=None):
        """True where the chunk (or its (chunk, group) task) is already written."""
        if self._done[chunk_index] == 1:
            return True
        return group_index is not None and self._flags[chunk_index, group_index] == 1

    def write_group(self, chunk_index, group_index, values):
        """Write one (chunk, group) task's results, then flag it done.

        Parameters
        ----------
        chunk_index, group_index : int
        values : dict of str to ndarray
            Per output variable (``o``, ``o_ref``): for ``keep`` the group's models' outputs,
            (B, G, *rest); for ``mean`` their float64 sum in model order, (B, *rest).
        """
        rows = self._slices[chunk_index]
        with owned(self.path, self.run_id, f"chunk {chunk_index} group {group_index}"):
            for var, value in values.items():
                if self.mode == "keep":
                    arr = self._arrays[var]
                    arr[rows, self.models(group_index)] = value.astype(arr.dtype, copy=False)
                else:
                    self._partials[var][rows, group_index] = value
            self._flags[chunk_index, group_index] = 1

    def finish(self, chunk_index, ref_base):
        """Write chunk ``chunk_index``'s reference letters (and, for ``mean``, the mean over
        every model) once all its groups are done, then mark it done.

        Parameters
        ----------
        chunk_index : int
        ref_base : ndarray of str, shape (B, W)
        """
        flags = self._flags[chunk_index, :]
        if not np.all(flags == 1):
            missing = [int(g) for g in np.flatnonzero(flags != 1)]
            raise RuntimeError(f"chunk {chunk_index}: model group(s) {missing} are not done")
        rows = self._slices[chunk_index]
        with owned(self.path, self.run_id, f"chunk {chunk_index}"):
            for var, partial in self._partials.items():
                arr = self._arrays[var]
                arr[rows] = (self._group_sum(partial, rows) / self.n_models).astype(arr.dtype)
            self._arrays[REF_BASE][rows] = np.asarray(ref_base, dtype=STRING_DTYPE)
            self._done[chunk_index] = 1

    def _group_sum(self, partial, rows):
        """Sum of the group partials of ``rows``, in group order, one group read at a time."""
        total = np.array(partial[rows, 0], dtype=np.float64)
        for g in range(1, self.n_groups):
            total += partial[rows, g]
        return total


def open_ensemble_writer(path, run_id=None):
    """An :class:`EnsembleWriter` of the store at ``path``."""
    return EnsembleWriter(path, run_id)
