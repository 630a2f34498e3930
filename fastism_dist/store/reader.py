"""Reading a store: what is at a path, its parameters, its chunks, what is done, the Dataset."""

from __future__ import annotations

import json
import os

from fastism_dist.errors import StoreMismatchError
from fastism_dist.store.schema import (
    ATTR_ALT,
    ATTR_CHUNK_SIZE,
    ATTR_GROUP_SIZE,
    ATTR_OUTPUTS,
    ATTR_PARAMS,
    BASE,
    DONE,
    MODEL,
    POS,
    REF_BASE,
    SEQ,
    alt_name,
    n_chunks,
    ref_name,
)

_STATE_PROBLEMS = {
    "absent": "does not exist",
    "incomplete": "is a fastism_dist store whose template was never completed",
    "zarr": "is a Zarr store not written by fastism_dist",
    "other": "exists and is not a Zarr store",
}


def store_path(path):
    """A local path as an absolute string (``file://`` URLs too); other URLs pass through."""
    path = os.fspath(path)
    if path.startswith("file://"):
        return os.path.abspath(path[len("file://"):])
    if "://" in path:
        return path
    return os.path.abspath(path)


def open_group(path, mode="r"):
    """The store's root Zarr group.

    Read from each array's own metadata, not the consolidated copy (that one is for readers:
    writers must see the chunking the arrays really have).
    """
    import zarr

    return zarr.open_group(store_path(path), mode=mode, use_consolidated=False)


def store_state(path):
    """What is at ``path``: ``"absent"``, ``"store"``, ``"incomplete"``, ``"zarr"`` or ``"other"``.

    ``"store"`` is a fastism_dist store; ``"incomplete"`` one whose template lacks some of its
    arrays (its creation was killed; it holds no results); ``"zarr"`` another Zarr group;
    ``"other"`` an existing local path that is not a Zarr group: never overwritten.
    """
    path = store_path(path)
    remote = "://" in path
    if not remote and not os.path.exists(path):
        return "absent"
    if not remote and not os.path.isdir(path):
        return "other"
    try:
        group = open_group(path, "r")
    except Exception:  # noqa: BLE001 - zarr raises several kinds for "no group here"
        if remote:
            return "absent"
        return "other" if os.listdir(path) else "absent"
    if ATTR_PARAMS not in group.attrs:
        return "zarr"
    return "store" if _complete(group) else "incomplete"


def _complete(group):
    """True if every array a store's template creates is there."""
    try:
        outputs = stored_outputs(group)
    except KeyError:
        return False
    alt = bool(group.attrs.get(ATTR_ALT, False))
    names = [SEQ, POS, BASE, DONE, REF_BASE]
    for name in outputs:
        names.extend([name, ref_name(name)] + ([alt_name(name)] if alt else []))
    members = set(group.array_keys())
    return all(name in members for name in names)


def read_params(path):
    """The ``params`` dict a store was created with."""
    return json.loads(open_group(path, "r").attrs[ATTR_PARAMS])


def read_chunk_size(path):
    """Sequences per chunk of the store at ``path``."""
    return int(open_group(path, "r").attrs[ATTR_CHUNK_SIZE])


def normalise_params(params):
    """``params`` as JSON would give it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(params))


def check_params(path, params):
    """Raise ``StoreMismatchError`` naming the first parameter that differs from the store's."""
    path = store_path(path)
    state = store_state(path)
    if state != "store":
        raise StoreMismatchError(f"{path} {_STATE_PROBLEMS[state]}", parameter=None)
    stored = read_params(path)
    new = normalise_params(params)
    for key in list(stored) + [k for k in new if k not in stored]:
        if stored.get(key) != new.get(key):
            raise StoreMismatchError(
                f"{path} was written with {key}={_show(stored.get(key))} but this run has "
                f"{key}={_show(new.get(key))}; use --overwrite (overwrite=True) to replace it, "
                "or choose another --out",
                parameter=key,
            )


def _show(value):
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def stored_outputs(group):
    """The output names a store holds, in order."""
    return [str(name) for name in group.attrs[ATTR_OUTPUTS]]


def seq_arrays(group):
    """Every array of the store whose first dimension is ``seq`` and that tasks write.

    Returns
    -------
    dict of str to zarr.Array
        ``o``, ``o_ref`` (and ``o_alt`` in a store with ALT outputs) for each output, then
        ``ref_base``.
    """
    alt = bool(group.attrs.get(ATTR_ALT, False))
    arrays = {}
    for name in stored_outputs(group):
        arrays[name] = group[name]
        arrays[ref_name(name)] = group[ref_name(name)]
        if alt:
            arrays[alt_name(name)] = group[alt_name(name)]
    arrays[REF_BASE] = group[REF_BASE]
    return arrays


def chunk_slices(group, where):
    """The ``seq`` rows of each chunk of an open store, checked against its Zarr chunking.

    Parameters
    ----------
    group : zarr.Group
    where : str
        The store's path, for messages.

    Returns
    -------
    list of slice
        One per chunk, in order.
    """
    n = group[SEQ].shape[0]
    chunk_size = int(group.attrs[ATTR_CHUNK_SIZE])
    for name, arr in seq_arrays(group).items():
        files = task_blocks(arr)
        if arr.shape[0] != n or files != _expected_chunks(group, arr, min(chunk_size, n)):
            raise ValueError(
                f"{where}: array {name!r} has shape {arr.shape} and chunks {files}; expected "
                f"{n} sequences in chunks of {chunk_size} along {SEQ!r} and whole other dimensions"
            )
    done = group[DONE]
    if done.shape != (n_chunks(n, chunk_size),) or done.chunks != (1,):
        raise ValueError(f"{where}: {DONE!r} has shape {done.shape} and chunks {done.chunks}; "
                         f"expected one element per chunk of {chunk_size} sequences")
    return [slice(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]


def task_blocks(arr):
    """The blocks one task writes whole: the array's shards where it is sharded, else its
    chunks."""
    return tuple(getattr(arr, "shards", None) or arr.chunks)


def _expected_chunks(group, arr, rows):
    """The chunks a per-sequence array must have: ``rows`` along ``seq``, a ``model``
    dimension (ensembles kept model by model) by the models of one task, others whole."""
    names = getattr(arr.metadata, "dimension_names", None) or ()
    group_size = group.attrs.get(ATTR_GROUP_SIZE)
    return (rows,) + tuple(
        min(int(group_size), size) if dim == MODEL and group_size else size
        for dim, size in zip(names[1:] or [None] * (arr.ndim - 1), arr.shape[1:]))


def chunk_plan(path):
    """The store's chunks of sequences, from its own Zarr chunking: list of ``(index, slice)``.

    Every per-sequence array must be chunked along ``seq`` by the same ``chunk_size`` (and
    ``done`` must have one element per chunk, one per Zarr chunk); otherwise ``ValueError``.
    """
    return list(enumerate(chunk_slices(open_group(path, "r"), path)))


def done_mask(path):
    """Boolean array (n_chunks,): True where a chunk is complete."""
    return open_group(path, "r")[DONE][:] == 1


def open_results(path, **kwargs):
    """The store as a lazily loaded ``xarray.Dataset`` (``xr.open_zarr``; ``kwargs`` go to it).

    ``fastism_dist.open_results`` is the same with the ``ds.ism`` accessor registered.
    """
    import xarray as xr

    return xr.open_zarr(store_path(path), **kwargs)
