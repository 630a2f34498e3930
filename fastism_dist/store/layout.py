"""The Zarr store of an ISM run: its layout, the template, chunk-aligned region writes, ``done``.

One store holds one run (DESIGN §5). ``create_template`` writes every coordinate, attribute and
(empty, NaN-filled) variable before any task runs; each task then calls ``write_chunk`` for the
one chunk of sequences it owns, which writes that chunk's region of every per-sequence variable
and finally sets ``done[chunk] = 1``. Chunks never overlap, so no two tasks write one Zarr chunk
and no locks are needed; ``write_region`` refuses any region that is not chunk-aligned.

Layout, for a model output ``o`` of shape ``(B, *out)``::

    o          (seq, pos, base, o_dim_0, ...)   model output for each substitution
    o_ref      (seq, o_dim_0, ...)              reference output
    o_alt      (seq, o_dim_0, ...)              VCF inputs only: output with the ALT allele
    done       (chunk,)                         1 where a chunk of sequences is complete
    coords     seq (ids), pos (0-based position in the input), base (letters),
               chrom / start / end / strand (seq,) where known, pad_left / pad_right (seq,)
               where a window is padded, variant_pos / ref_allele / alt_allele / variant_id
               (seq,) for VCF inputs, ref_base (seq, pos); labels of an output's own
               dimensions where known (task names, reducer bins)
    attrs      fastism_dist_version, model_sha256, params (JSON), outputs, chunk_size, alt
               (True when ``o_alt`` variables exist), alt_note (VCF inputs)

An output's own dimensions are ``o_dim_0, o_dim_1, ...`` unless a reducer renames or relabels
them (``create_template(dims=...)``).
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np

from fastism_dist.errors import StoreMismatchError

SEQ = "seq"
POS = "pos"
BASE = "base"
CHUNK = "chunk"
DONE = "done"
REF_BASE = "ref_base"
REF_SUFFIX = "_ref"
ALT_SUFFIX = "_alt"
SEQ_COORDS = ("chrom", "start", "end", "strand")
PAD_COORDS = ("pad_left", "pad_right")
VARIANT_COORDS = ("variant_pos", "ref_allele", "alt_allele", "variant_id")
PER_SEQ_COORDS = SEQ_COORDS + PAD_COORDS + VARIANT_COORDS
DTYPES = ("float32", "float16")

_STR = np.dtypes.StringDType()


def output_dims(name, ndim):
    """Names of an output's own dimensions: ``<name>_dim_0``, ``<name>_dim_1``, ..."""
    return tuple(f"{name}_dim_{i}" for i in range(ndim))


def ref_name(name):
    """Variable holding the reference output of model output ``name``."""
    return f"{name}{REF_SUFFIX}"


def alt_name(name):
    """Variable holding the output of model output ``name`` with the VCF ALT allele applied."""
    return f"{name}{ALT_SUFFIX}"


def n_chunks(n_sequences, chunk_size):
    return int(math.ceil(n_sequences / chunk_size))


def _fspath(path):
    """A local path as an absolute string (``file://`` URLs too); other URLs pass through."""
    path = os.fspath(path)
    if path.startswith("file://"):
        return os.path.abspath(path[len("file://"):])
    if "://" in path:
        return path
    return os.path.abspath(path)


def _open_group(path, mode="r"):
    """The store's root group, read from each array's own metadata (not the consolidated copy,
    which is for readers: writers must see the chunking the arrays really have)."""
    import zarr

    return zarr.open_group(_fspath(path), mode=mode, use_consolidated=False)


def store_state(path):
    """``"absent"``, ``"store"`` (a fastism_dist store), ``"zarr"`` (another Zarr group) or ``"other"``.

    ``"other"`` is an existing local path that is not a Zarr group: never overwritten.
    """
    path = _fspath(path)
    if "://" not in path and not os.path.exists(path):
        return "absent"
    if "://" not in path and not os.path.isdir(path):
        return "other"
    try:
        group = _open_group(path, "r")
    except Exception:  # noqa: BLE001 - zarr raises several kinds for "no group here"
        if "://" in path:
            return "absent"
        return "other" if os.listdir(path) else "absent"
    return "store" if "params" in group.attrs else "zarr"


def read_params(path):
    """The ``params`` dict a store was created with."""
    return json.loads(_open_group(path, "r").attrs["params"])


def normalise_params(params):
    """``params`` as JSON would give it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(params))


def check_params(path, params):
    """Raise ``StoreMismatchError`` naming the first parameter that differs from the store's."""
    path = _fspath(path)
    state = store_state(path)
    if state != "store":
        what = {"absent": "does not exist", "zarr": "is a Zarr store not written by fastism_dist",
                "other": "exists and is not a Zarr store"}[state]
        raise StoreMismatchError(f"{path} {what}", parameter=None)
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


def create_template(path, *, ids, positions, bases, outputs, params, model_sha256, chunk_size,
                    coords=None, dtype="float32", overwrite=False, dims=None, alt=False,
                    attrs=None):
    """Write the store's metadata, coordinates and empty variables; no data chunks.

    Parameters
    ----------
    path : str
        Local directory or fsspec URL of the store.
    ids : sequence of str, length N
        Sequence ids (the ``seq`` coordinate).
    positions : array of int, length W
        0-based mutated positions in the input sequence (the ``pos`` coordinate).
    bases : sequence of str, length S
        Substitution labels (the ``base`` coordinate).
    outputs : dict
        Output name -> shape of one sequence's stored output (no batch dimension; after any
        reducer).
    params : dict
        The run's settings, stored as JSON in ``attrs["params"]`` and compared on resume.
    model_sha256 : str
    chunk_size : int
        Sequences per chunk (and per task).
    coords : dict, optional
        Per-sequence arrays among ``chrom``, ``start``, ``end``, ``strand`` (genomic windows),
        ``pad_left``, ``pad_right`` (padded rows; kept only where some window is padded) and
        ``variant_pos``, ``ref_allele``, ``alt_allele``, ``variant_id`` (VCF inputs); other keys,
        None and all-missing arrays are left out.
    dtype : {"float32", "float16"}
        Stored dtype of the outputs. Default is float32.
    overwrite : bool
        Replace an existing store. Default is False (an existing store is an error).
    dims : dict, optional
        Output name -> its own dimensions, each ``(name, size, labels or None)`` (e.g. the
        ``Dim`` of a reducer); labels become a coordinate of that dimension. Default is
        ``o_dim_0, o_dim_1, ...`` without labels.
    alt : bool
        Also create ``o_alt`` (seq, *o_dims) for every output (VCF inputs). Default is False.
    attrs : dict, optional
        Extra JSON-able attributes of the store.
    """
    import dask.array as da
    import xarray as xr

    from fastism_dist import __version__

    path = _fspath(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    chunk_size = int(chunk_size)
    n = len(ids)
    if n == 0:
        raise ValueError("cannot create a store for zero sequences")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    positions = np.asarray(positions, dtype=np.int64)
    w, s = len(positions), len(bases)
    n_chunk = n_chunks(n, chunk_size)
    chunks = min(chunk_size, n)

    data_vars = {}
    encoding = {}
    dim_coords = {}
    reserved = {SEQ, POS, BASE, CHUNK, DONE, REF_BASE, *PER_SEQ_COORDS}
    for name in outputs:
        reserved |= {name, ref_name(name), alt_name(name)}
    sizes = {}
    for name, shape in outputs.items():
        shape = tuple(int(d) for d in shape)
        names, labels = _output_dims(name, shape, (dims or {}).get(name))
        for dim, size in zip(names, shape):
            if dim in reserved or sizes.setdefault(dim, size) != size:
                raise ValueError(f"dimension {dim!r} of output {name!r} clashes with a store "
                                 "variable or another output's dimension")
        for dim, lab in zip(names, labels):
            if lab is not None:
                dim_coords[dim] = _coord_values(lab)
        data_vars[name] = (
            (SEQ, POS, BASE) + names,
            da.full((n, w, s) + shape, np.nan, dtype=dtype, chunks=(chunks, w, s) + shape),
        )
        per_seq = [ref_name(name)] + ([alt_name(name)] if alt else [])
        for var in per_seq:
            data_vars[var] = ((SEQ,) + names,
                              da.full((n,) + shape, np.nan, dtype=dtype, chunks=(chunks,) + shape))
        for var in [name] + per_seq:
            encoding[var] = {"_FillValue": np.nan, "dtype": dtype}
    data_vars[DONE] = ((CHUNK,), da.zeros((n_chunk,), dtype=np.int8, chunks=1))

    coord_vars = {
        SEQ: np.asarray([str(i) for i in ids], dtype=_STR),
        POS: positions,
        BASE: np.asarray([str(b) for b in bases], dtype=_STR),
        REF_BASE: ((SEQ, POS), da.full((n, w), "", dtype=_STR, chunks=(chunks, w))),
    }
    coords = coords or {}
    padded = any(np.any(np.asarray(coords[k]) > 0) for k in PAD_COORDS if coords.get(k) is not None)
    for key, values in coords.items():
        if key not in PER_SEQ_COORDS or values is None or (key in PAD_COORDS and not padded):
            continue
        values = np.asarray(values)
        if len(values) != n:
            raise ValueError(f"coordinate {key!r} has {len(values)} values for {n} sequences")
        if values.dtype.kind in "OUS":
            if all(v in (None, "", ".") for v in values.tolist()):
                continue
            values = np.asarray(["" if v is None else str(v) for v in values.tolist()], dtype=_STR)
        elif values.dtype.kind == "f" and np.all(np.isnan(values)):
            continue
        elif values.dtype.kind in "iu" and np.all(values < 0):  # -1: unknown
            continue
        coord_vars[key] = (SEQ, values)
    coord_vars.update(dim_coords)
    encoding[REF_BASE] = {"chunks": (chunks, w)}

    all_attrs = {
        "fastism_dist_version": __version__,
        "model_sha256": str(model_sha256),
        "params": json.dumps(normalise_params(params)),
        "outputs": list(outputs),
        "chunk_size": chunk_size,
        "alt": bool(alt),
    }
    for key, value in (attrs or {}).items():
        if key in all_attrs:
            raise ValueError(f"attribute {key!r} is written by create_template itself")
        all_attrs[key] = normalise_params(value)
    ds = xr.Dataset(data_vars, coords=coord_vars, attrs=all_attrs)
    with warnings.catch_warnings():
        # xarray consolidates the metadata, which zarr v3 calls "not part of the specification";
        # consolidated metadata is what lets xr.open_zarr(STORE) open the store without warnings.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(path, mode="w" if overwrite else "w-", compute=False, encoding=encoding,
                   zarr_format=3)
    return path


def _output_dims(name, shape, dims):
    """Dimension names and labels (None: unlabelled) of output ``name`` of per-sequence ``shape``."""
    if dims is None:
        return output_dims(name, len(shape)), (None,) * len(shape)
    dims = [tuple(d) + (None,) * (3 - len(tuple(d))) for d in dims]
    if tuple(int(d[1]) for d in dims) != shape:
        raise ValueError(f"dims of output {name!r} have sizes {[int(d[1]) for d in dims]}, "
                         f"its shape is {shape}")
    names = tuple(str(d[0]) for d in dims)
    if len(set(names)) != len(names):
        raise ValueError(f"dims of output {name!r} repeat a name: {names}")
    labels = []
    for d in dims:
        if d[2] is not None and len(d[2]) != int(d[1]):
            raise ValueError(f"dimension {d[0]!r} has {len(d[2])} labels for size {d[1]}")
        labels.append(d[2])
    return names, tuple(labels)


def _coord_values(labels):
    """Labels as a coordinate array: int64, float, or variable-width strings."""
    values = np.asarray(labels)
    if values.dtype.kind in "OUS":
        return np.asarray([str(v) for v in values.tolist()], dtype=_STR)
    return values


def _seq_arrays(group):
    """Every array of the store whose first dimension is ``seq`` and that tasks write."""
    names = json.loads(json.dumps(group.attrs["outputs"]))
    alt = bool(group.attrs.get("alt", False))
    arrays = {}
    for name in names:
        arrays[name] = group[name]
        arrays[ref_name(name)] = group[ref_name(name)]
        if alt:
            arrays[alt_name(name)] = group[alt_name(name)]
    arrays[REF_BASE] = group[REF_BASE]
    return arrays


def chunk_plan(path):
    """The store's chunks of sequences, from its own Zarr chunking: list of ``(index, slice)``.

    Every per-sequence array must be chunked along ``seq`` by the same ``chunk_size`` (and
    ``done`` must have one element per chunk, one per Zarr chunk); otherwise ``ValueError``.
    """
    group = _open_group(path, "r")
    n = group[SEQ].shape[0]
    chunk_size = int(group.attrs["chunk_size"])
    for name, arr in _seq_arrays(group).items():
        if arr.shape[0] != n or arr.chunks[0] != min(chunk_size, n) or arr.chunks[1:] != arr.shape[1:]:
            raise ValueError(
                f"{path}: array {name!r} has shape {arr.shape} and chunks {arr.chunks}; expected "
                f"{n} sequences in chunks of {chunk_size} along {SEQ!r} and whole other dimensions"
            )
    done = group[DONE]
    if done.shape != (n_chunks(n, chunk_size),) or done.chunks != (1,):
        raise ValueError(f"{path}: {DONE!r} has shape {done.shape} and chunks {done.chunks}; "
                         f"expected one element per chunk of {chunk_size} sequences")
    return [(i, slice(lo, min(lo + chunk_size, n))) for i, lo in enumerate(range(0, n, chunk_size))]


def done_mask(path):
    """Boolean array (n_chunks,): True where a chunk is complete."""
    return _open_group(path, "r")[DONE][:] == 1


def write_chunk(path, chunk_index, ref, mut, ref_base=None, alt=None):
    """Write chunk ``chunk_index`` of every per-sequence variable, then mark it done.

    Parameters
    ----------
    path : str
    chunk_index : int
    ref : dict
        Output name -> ndarray of shape (n, *out), n the chunk's sequences.
    mut : dict
        Output name -> ndarray of shape (n, W, S, *out).
    ref_base : ndarray of str, shape (n, W), optional
        Reference letter at each mutated position.
    alt : dict, optional
        Output name -> ndarray of shape (n, *out): the output with the ALT allele. Required
        when the store has ``o_alt`` variables.
    """
    group = _open_group(path, "r+")
    plan = chunk_plan(path)
    if not 0 <= chunk_index < len(plan):
        raise ValueError(f"chunk {chunk_index} out of range: the store has {len(plan)} chunks")
    write_region(group, plan[chunk_index][1], ref, mut, ref_base, alt)
    group[DONE][chunk_index] = 1


def write_region(group, region, ref, mut, ref_base=None, alt=None):
    """Write ``seq[region]`` of every per-sequence variable; the region must be chunk-aligned.

    A region that starts or ends inside a Zarr chunk (other than at the last sequence) raises
    ``ValueError``: two writers sharing a chunk would silently lose data.
    """
    if isinstance(group, (str, os.PathLike)):
        group = _open_group(group, "r+")
    n = group[SEQ].shape[0]
    chunk_size = int(group.attrs["chunk_size"])
    lo, hi, step = region.indices(n)
    if step != 1 or hi <= lo or lo % chunk_size or (hi % chunk_size and hi != n):
        raise ValueError(
            f"region {SEQ}[{region.start}:{region.stop}] is not aligned to the store's chunks of "
            f"{chunk_size} sequences (of {n}): two tasks could write one Zarr chunk"
        )
    arrays = _seq_arrays(group)
    names = list(group.attrs["outputs"])
    has_alt = bool(group.attrs.get("alt", False))
    if alt is not None and not has_alt:
        raise ValueError("ALT outputs given but the store has no o_alt variables")
    values = {}
    for name in names:
        if name not in ref or name not in mut:
            raise ValueError(f"no data for output {name!r}")
        values[name] = mut[name]
        values[ref_name(name)] = ref[name]
        if has_alt:
            if alt is None or name not in alt:
                raise ValueError(f"no ALT data for output {name!r}")
            values[alt_name(name)] = alt[name]
    if ref_base is not None:
        values[REF_BASE] = np.asarray(ref_base, dtype=_STR)
    for var, value in values.items():
        arr = arrays[var]
        value = np.asarray(value)
        expected = (hi - lo,) + tuple(arr.shape[1:])
        if value.shape != expected:
            raise ValueError(f"{var!r}: got shape {value.shape}, expected {expected}")
        if arr.chunks[0] != min(chunk_size, n):
            raise ValueError(f"{var!r} is chunked by {arr.chunks[0]} sequences, the store says "
                             f"{chunk_size}")
        arr[lo:hi] = value if var == REF_BASE else value.astype(arr.dtype, copy=False)


def open_results(path, **kwargs):
    """The store as a lazily loaded ``xarray.Dataset`` (``xr.open_zarr``), with the ``ds.ism``
    accessor of :mod:`fastism_dist.analysis.attribution` registered."""
    import xarray as xr

    import fastism_dist.analysis.attribution  # noqa: F401 - registers the ds.ism accessor

    return xr.open_zarr(_fspath(path), **kwargs)
