"""Lazy analysis of an ISM store: differences from the reference, attributions, importance.

Every function takes the ``xarray.Dataset`` of a store (``fastism_dist.open_results(STORE)``)
and returns DataArrays / Datasets that stay Dask-backed until ``.compute()``, so they work on
stores larger than memory. For a model output ``o`` the store holds::

    o       (seq, pos, base, *o_dims)    output with position pos replaced by base
    o_ref   (seq, *o_dims)               reference output
    o_alt   (seq, *o_dims)               VCF inputs: output with the ALT allele (NaN for indels)
    coords  ref_base (seq, pos); chrom / start / end / strand (seq,) where known;
            pad_left / pad_right (seq,) where windows run off a chromosome end

``o_dims`` are the output's own dimensions (``o_dim_0``, ... or labelled ones left by a reducer);
``task`` arguments choose along them. The ``ds.ism`` accessor calls these functions.
"""

from __future__ import annotations

import dask.array
import numpy as np
import xarray as xr

from fastism_dist.errors import FastISMError
from fastism_dist.store import (
    ATTR_OUTPUTS,
    BASE,
    CHROM,
    END,
    PAD_LEFT,
    PAD_RIGHT,
    POS,
    SEQ,
    START,
    STRAND,
    alt_name,
    ref_name,
)

RANK = "rank"

__all__ = [
    "output_names",
    "choose_output",
    "task_dims",
    "select_task",
    "delta",
    "mean_centred",
    "importance",
    "top_positions",
    "window_sums",
    "top_window_start",
    "top_window",
    "genomic_coordinate",
    "variant_effect",
]


# ----------------------------------------------------------------------------------------------
# choosing an output and its tasks


def output_names(ds):
    """Names of the model outputs stored in ``ds``: ``attrs["outputs"]``, else every variable
    ``o`` with dims ``(seq, pos, base, ...)`` that has a matching ``o_ref``."""
    names = ds.attrs.get(ATTR_OUTPUTS)
    if isinstance(names, str):
        names = [names]
    if names:
        return [str(n) for n in names if str(n) in ds.data_vars]
    return [
        str(name) for name, var in ds.data_vars.items()
        if var.dims[:3] == (SEQ, POS, BASE) and ref_name(name) in ds.data_vars
    ]


def choose_output(ds, output=None):
    """The stored output name ``output`` stands for.

    Parameters
    ----------
    ds : xarray.Dataset
    output : str, optional
        An output name. Default is the only output (an error where there are several).

    Returns
    -------
    str
    """
    names = output_names(ds)
    if output is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise FastISMError("the dataset holds no ISM output (no variable with dims (seq, pos, base))")
        raise FastISMError(f"the dataset holds several outputs {names}: choose one with output=")
    output = str(output)
    if output not in names:
        raise FastISMError(f"no output named {output!r} in the dataset; its outputs are {names}")
    if ref_name(output) not in ds.data_vars:
        raise FastISMError(f"output {output!r} has no reference variable {ref_name(output)!r}")
    return output


def task_dims(da):
    """The output's own dimensions of a stored variable: those after (seq, pos, base)."""
    return tuple(d for d in da.dims if d not in (SEQ, POS, BASE))


def select_task(da, task):
    """Choose along the output's own dimensions of ``da``.

    Parameters
    ----------
    da : DataArray
        A variable with dims ``(seq, [pos, base,] *o_dims)``.
    task : int, str, dict or None
        An int index or a coordinate label along the first of ``o_dims``, or a dict
        ``{dim: index or label or list of them}``; None keeps everything.

    Returns
    -------
    DataArray
        With the chosen dimension dropped for a single index / label.
    """
    if task is None:
        return da
    dims = task_dims(da)
    if not isinstance(task, dict):
        if not dims:
            raise FastISMError(f"task={task!r} given but {da.name!r} has no task dimension")
        task = {dims[0]: task}
    for dim, which in task.items():
        if dim not in dims:
            raise FastISMError(f"{da.name!r} has no dimension {dim!r}; its task dimensions are {list(dims)}")
        size = da.sizes[dim]
        labelled = dim in da.coords
        items = which if isinstance(which, (list, tuple, np.ndarray)) else [which]
        for item in items:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not -size <= int(item) < size:
                    raise FastISMError(f"task index {item} out of range for {dim!r} of size {size}")
            elif labelled:
                if item not in set(da.coords[dim].values.tolist()):
                    raise FastISMError(f"no task {item!r} along {dim!r}; labels are {da.coords[dim].values.tolist()}")
            else:
                raise FastISMError(f"task {item!r} is not an int index and {dim!r} has no labels")
        if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
            da = da.isel({dim: which})
        else:
            da = da.sel({dim: which})
    return da


def _float(da):
    """At least float32 (float16 stores lose digits in subtraction and overflow when squared)."""
    if da.dtype.kind != "f" or da.dtype.itemsize < 4:
        return da.astype(np.float32)
    return da


def _lazy(da, like):
    """``da`` as a Dask array, chunked along ``seq`` like ``like`` when that is Dask-backed."""
    if _is_dask(da):
        return da
    chunks = {}
    if _is_dask(like) and SEQ in da.dims:
        chunks[SEQ] = like.chunksizes[SEQ]
    return da.chunk(chunks or {d: -1 for d in da.dims})


def _is_dask(da):
    return isinstance(da.data, dask.array.Array)


# ----------------------------------------------------------------------------------------------
# attributions


def delta(ds, output=None, task=None):
    """Difference of each mutant's output from the reference output.

    Parameters
    ----------
    ds : xarray.Dataset
        An ISM store.
    output : str, optional
        Output name. Default is the only output.
    task : int, str or dict, optional
        Choose along the output's own dimensions (see :func:`select_task`). Default keeps all.

    Returns
    -------
    DataArray of shape (seq, pos, base, *o_dims)
        ``o - o_ref``, at least float32; zero where ``base`` is the reference letter.
    """
    name = choose_output(ds, output)
    mut = _float(ds[name])
    ref = _float(ds[ref_name(name)])
    out = _lazy(select_task(mut, task) - select_task(ref, task), mut)
    out.name = f"{name}_delta"
    return out


def mean_centred(ds, output=None, task=None):
    """Delta minus its mean over ``base`` at each position: the usual ISM attribution.

    Returns
    -------
    DataArray of shape (seq, pos, base, *o_dims)
        ``delta - delta.mean("base")``; for each position, the bases sum to zero.
    """
    d = delta(ds, output, task)
    out = d - d.mean(BASE, skipna=False)
    out.name = d.name.replace("_delta", "_mean_centred")
    return out


def importance(ds, output=None, task=None):
    """L2 norm of the differences from the reference at each position.

    Parameters
    ----------
    ds : xarray.Dataset
    output : str, optional
        Default is the only output.
    task : int, str or dict, optional
        Choose along the output's own dimensions first; the norm runs over ``base`` and every
        task dimension left. Default is all tasks.

    Returns
    -------
    DataArray of shape (seq, pos)
        ``sqrt(sum over base and tasks of delta**2)``; NaN for sequences not yet scored.
    """
    d = delta(ds, output, task)
    out = np.sqrt((d * d).sum([BASE, *task_dims(d)], skipna=False))
    out.name = d.name.replace("_delta", "_importance")
    return out


def _topk_numpy(values, k):
    """Indices (..., k) of the k largest along the last axis, largest first, NaN last."""
    keyed = np.where(np.isnan(values), -np.inf, values)
    order = np.argsort(-keyed, axis=-1, kind="stable")[..., :k]
    return order


def top_positions(ds, output=None, k=10, task=None):
    """The ``k`` most important positions of each sequence.

    Returns
    -------
    xarray.Dataset with dims (seq, rank)
        ``position`` (the ``pos`` value) and ``importance`` (its L2 importance), rank 0 the
        largest; ties keep the lower position first.
    """
    imp = importance(ds, output, task)
    n_pos = imp.sizes[POS]
    k = int(k)
    if not 1 <= k <= n_pos:
        raise FastISMError(f"k must be between 1 and the {n_pos} positions, got {k}")
    imp = imp.chunk({POS: -1})
    idx = xr.apply_ufunc(
        _topk_numpy, imp, kwargs={"k": k}, input_core_dims=[[POS]], output_core_dims=[[RANK]],
        dask="parallelized", output_dtypes=[np.int64], dask_gufunc_kwargs={"output_sizes": {RANK: k}},
    )
    positions = np.asarray(imp[POS].values)
    pos = xr.apply_ufunc(lambda i: positions[i], idx, dask="parallelized", output_dtypes=[positions.dtype])
    val = xr.apply_ufunc(
        lambda v, i: np.take_along_axis(v, i, axis=-1), imp, idx,
        input_core_dims=[[POS], [RANK]], output_core_dims=[[RANK]], dask="parallelized",
        output_dtypes=[imp.dtype],
    )
    return xr.Dataset({"position": pos, "importance": val}).assign_coords({RANK: np.arange(k)})


def window_sums(values, width):
    """Sums of ``width`` consecutive values along the last axis.

    Parameters
    ----------
    values : ndarray of shape (..., L)
    width : int

    Returns
    -------
    ndarray of shape (..., L - width + 1)
        ``out[..., i] = values[..., i:i + width].sum(-1)``.
    """
    values = np.asarray(values, dtype=np.float64)
    c = np.concatenate([np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)], axis=-1)
    return c[..., width:] - c[..., :-width]


def top_window_start(values, width):
    """Index (...) of the first position of the ``width``-wide window with the largest sum.

    Parameters
    ----------
    values : ndarray of shape (..., L)
        E.g. importance per position; NaN counts as -inf.
    width : int

    Returns
    -------
    ndarray of int64, shape (...)
    """
    sums = window_sums(values, width)
    sums = np.where(np.isnan(sums), -np.inf, sums)
    return np.argmax(sums, axis=-1).astype(np.int64)


def top_window(ds, output=None, width=15, task=None):
    """The ``width``-wide window of consecutive positions with the largest summed importance.

    Returns
    -------
    xarray.Dataset with dim (seq,)
        ``window_start`` and ``window_end`` (``pos`` values, half-open) and ``importance`` (the
        summed L2 importance in the window); the per-sequence coords (``chrom``, ``start``, ...)
        are kept.
    """
    imp = importance(ds, output, task).chunk({POS: -1})
    n_pos = imp.sizes[POS]
    width = int(width)
    if not 1 <= width <= n_pos:
        raise FastISMError(f"width must be between 1 and the {n_pos} positions, got {width}")
    first = xr.apply_ufunc(top_window_start, imp, kwargs={"width": width}, input_core_dims=[[POS]],
                           dask="parallelized", output_dtypes=[np.int64])
    positions = np.asarray(imp[POS].values)
    start = xr.apply_ufunc(lambda i: positions[i], first, dask="parallelized",
                           output_dtypes=[positions.dtype])
    end = start + width
    total = xr.apply_ufunc(
        lambda v, i: np.take_along_axis(window_sums(v, width), i[..., None], axis=-1)[..., 0],
        imp, first, input_core_dims=[[POS], []], dask="parallelized", output_dtypes=[np.float64],
    )
    return xr.Dataset({"window_start": start, "window_end": end, "importance": total})


def genomic_coordinate(ds):
    """Genomic coordinate of every (seq, pos), strand-aware.

    Returns
    -------
    DataArray of int64, shape (seq, pos)
        0-based: ``start + i`` on ``+`` / ``.`` strands, ``end - 1 - i`` on ``-`` (the
        sequence was reverse-complemented), where ``i = pos - pad_left`` counts the genome bases
        of the window; ``-1`` where the sequence has no known coordinates (no ``start`` in the
        store, an empty ``chrom``, or a negative ``start`` where the store has no ``chrom``), at
        positions padded in off a chromosome end (``pad_left`` / ``pad_right``, counted in
        sequence order) and at any negative coordinate.
    """
    like = next((ds[n] for n in output_names(ds)), None)
    pos = ds[POS].astype(np.int64)
    if START not in ds.variables:
        out = xr.DataArray(np.full((ds.sizes[SEQ], ds.sizes[POS]), -1, dtype=np.int64),
                           dims=(SEQ, POS), coords={SEQ: ds[SEQ], POS: ds[POS]})
    else:
        start = ds[START].astype(np.int64)
        end = ds[END].astype(np.int64) if END in ds.variables else start + pos.size
        if STRAND in ds.variables:
            minus = ds[STRAND] == "-"
        else:
            minus = xr.zeros_like(start, dtype=bool)
        if CHROM in ds.variables:  # a window may start before a chromosome (then padded)
            known = ds[CHROM] != ""
        else:
            known = start >= 0
        i = pos - ds[PAD_LEFT] if PAD_LEFT in ds.variables else pos  # genome bases in
        known = known & (i >= 0) & (i < end - start)
        coord = xr.where(minus, end - 1 - i, start + i)
        out = xr.where(known & (coord >= 0), coord, -1).astype(np.int64)
    out = out.transpose(SEQ, POS)
    out = _lazy(out, like if like is not None else out)
    out.name = "genomic_coordinate"
    return out


def variant_effect(ds, output=None, task=None):
    """Effect of each sequence's VCF ALT allele: ``o_alt - o_ref``.

    Parameters
    ----------
    ds : xarray.Dataset
        A store scored from a VCF (it holds ``o_alt``).
    output : str, optional
        Default is the only output.
    task : int, str or dict, optional
        Choose along the output's own dimensions (see :func:`select_task`). Default keeps all.

    Returns
    -------
    DataArray of shape (seq, *o_dims)
        At least float32; NaN for indels. For a reducer that compares with the reference
        (``jsd``) ``o_ref`` is 0 and this is the stored distance itself.
    """
    name = choose_output(ds, output)
    alt = alt_name(name)
    if alt not in ds.data_vars:
        raise FastISMError(f"the dataset has no {alt!r}: ALT outputs are stored for VCF inputs only")
    ref = _float(ds[ref_name(name)])
    out = _lazy(select_task(_float(ds[alt]), task) - select_task(ref, task), ref)
    out.name = f"{name}_variant_effect"
    return out
