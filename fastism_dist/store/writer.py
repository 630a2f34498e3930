"""Writing a store: the template, chunk-aligned region writes and the ``done`` flags.

``create_template`` writes every coordinate, attribute and (empty, NaN-filled) variable before
any task runs. A local template is written in a sibling directory and renamed into place, so a
run killed meanwhile leaves no half-made store at the path. Each task then writes the one chunk
of sequences it owns: every per-sequence variable's region of that chunk, and finally
``done[chunk] = 1``. Chunks never overlap, so no two tasks write one Zarr chunk; a region that
is not chunk-aligned is refused. A chunk is written only while the store at the path is still
the one its run created (``fence.owned``).

A worker opens the store once with :func:`open_writer` and reuses the :class:`StoreWriter` for
every chunk it writes; :func:`write_chunk` and :func:`write_region` open it for one write.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings

import numpy as np
from zarr.codecs import ZstdCodec

from fastism_dist import __version__
from fastism_dist.errors import StoreMismatchError
from fastism_dist.store.fence import is_url, owned, replace_store
from fastism_dist.store.reader import (
    chunk_slices,
    normalise_params,
    open_group,
    seq_arrays,
    store_path,
    stored_outputs,
)
from fastism_dist.store.schema import (
    ATTR_ALT,
    ATTR_CHUNK_SIZE,
    ATTR_MODEL_SHA256,
    ATTR_OUTPUTS,
    ATTR_PARAMS,
    ATTR_RUN_ID,
    ATTR_VERSION,
    BASE,
    CHUNK,
    DONE,
    DTYPES,
    MODEL,
    PAD_COORDS,
    PER_SEQ_COORDS,
    POS,
    REF_BASE,
    SEQ,
    STRING_DTYPE,
    TEMPLATE_SUFFIX,
    alt_name,
    n_chunks,
    output_dims,
    ref_name,
    reserved_names,
)

#: Codec of the output variables. On ISM scores Zstd level 1 compresses as well as zarr's
#: default (level 3) at about a third of the CPU, which each worker spends on every chunk.
OUTPUT_COMPRESSORS = (ZstdCodec(level=1),)


def create_template(path, *, ids, positions, bases, outputs, params, model_sha256, chunk_size,
                    coords=None, dtype="float32", overwrite=False, dims=None, alt=False,
                    attrs=None, run_id=None, read_chunk=None, models=None, model_chunk=None):
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
    run_id : str, optional
        The run that owns the store (``attrs["run_id"]``): only its writers write chunks.
    read_chunk : int, optional
        Sequences per Zarr chunk, where smaller than ``chunk_size`` (a divisor of it): the
        per-sequence arrays are then sharded, one shard (one file) per chunk of ``chunk_size``
        sequences, written whole by one task, holding chunks of ``read_chunk`` sequences that
        readers fetch alone. Default is one Zarr chunk (and file) per task.
    models : sequence of str, optional
        An ensemble kept model by model: every output variable gets a ``model`` dimension of
        these labels after ``seq`` (``o`` (seq, model, pos, base, *o_dims)). Default is none.
    model_chunk : int, optional
        Models per Zarr chunk along ``model`` (the models of one task). Default is all.

    Returns
    -------
    str
        The store's path (absolute for local paths).
    """
    import xarray as xr

    path = store_path(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    chunk_size = int(chunk_size)
    n = len(ids)
    if n == 0:
        raise ValueError("cannot create a store for zero sequences")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    positions = np.asarray(positions, dtype=np.int64)
    rows = min(chunk_size, n)
    inner = _read_rows(read_chunk, chunk_size, rows)
    lead = (n, len(positions), len(bases))
    data_vars, encoding, dim_coords = _output_variables(
        outputs, dims or {}, lead, rows, dtype, alt, _model_axis(models, model_chunk))
    data_vars[DONE] = ((CHUNK,), _lazy_full((n_chunks(n, chunk_size),), 0, np.int8, (1,)))
    coord_vars = {
        SEQ: np.asarray([str(i) for i in ids], dtype=STRING_DTYPE),
        POS: positions,
        BASE: np.asarray([str(b) for b in bases], dtype=STRING_DTYPE),
        REF_BASE: ((SEQ, POS), _lazy_full((n, len(positions)), "", STRING_DTYPE, (rows, len(positions)))),
    }
    coord_vars.update(_per_seq_coords(coords or {}, n))
    coord_vars.update(dim_coords)
    if models is not None:
        coord_vars[MODEL] = np.asarray([str(m) for m in models], dtype=STRING_DTYPE)
    encoding[REF_BASE] = {"chunks": (rows, len(positions))}
    if inner < rows:
        _shard(encoding, data_vars, coord_vars, rows, inner)
    all_attrs = _template_attrs(outputs, params, model_sha256, chunk_size, alt, attrs or {})
    if run_id is not None:
        all_attrs[ATTR_RUN_ID] = str(run_id)
    ds = xr.Dataset(data_vars, coords=coord_vars, attrs=all_attrs)
    if is_url(path):
        _write_metadata(ds, path, encoding, "w" if overwrite else "w-")
        return path
    if not overwrite and os.path.isdir(path) and os.listdir(path):
        raise StoreMismatchError(f"{path} already exists; pass overwrite=True to replace it")
    template = f"{path}{TEMPLATE_SUFFIX}{run_id or uuid.uuid4().hex[:12]}"
    try:
        _write_metadata(ds, template, encoding, "w-")
        _install(template, path, overwrite)
    except BaseException:  # an error or Ctrl-C: the half-made template goes, then re-raise
        shutil.rmtree(template, ignore_errors=True)
        raise
    return path


def _read_rows(read_chunk, chunk_size, rows):
    """Sequences per Zarr chunk: ``read_chunk`` (checked) or ``rows``."""
    if read_chunk is None or int(read_chunk) >= rows:
        return rows
    read_chunk = int(read_chunk)
    if read_chunk < 1 or chunk_size % read_chunk:
        raise ValueError(f"read_chunk must be a positive divisor of chunk_size {chunk_size}, "
                         f"got {read_chunk}")
    return read_chunk


def _shard(encoding, data_vars, coord_vars, rows, inner):
    """Per-sequence variables in shards of ``rows`` sequences, chunks of ``inner``."""
    for name, (dims, values) in {**data_vars, REF_BASE: coord_vars[REF_BASE]}.items():
        if dims[0] != SEQ:
            continue
        block = tuple(values.chunksize[1:])  # what one task writes of the other dims
        encoding.setdefault(name, {})
        encoding[name]["shards"] = (rows,) + block
        encoding[name]["chunks"] = (inner,) + block


def _write_metadata(ds, path, encoding, mode):
    with warnings.catch_warnings():
        # xarray consolidates the metadata, which zarr v3 calls "not part of the specification";
        # consolidated metadata is what lets xr.open_zarr(STORE) open the store without warnings.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(path, mode=mode, compute=False, encoding=encoding, zarr_format=3)


def _install(template, path, overwrite):
    """Rename the complete ``template`` to ``path`` (replacing what is there with ``overwrite``)."""
    if overwrite and os.path.lexists(path):
        replace_store(template, path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.rename(template, path)  # replaces an empty directory, never a non-empty one
    except OSError as err:
        if not os.path.isdir(path) or not os.listdir(path):
            raise
        raise StoreMismatchError(f"{path} was created by another run at the same moment; rerun "
                                 "to resume it") from err


def _lazy_full(shape, value, dtype, chunks):
    import dask.array as da

    return da.full(shape, value, dtype=dtype, chunks=chunks)


def _model_axis(models, model_chunk):
    """``(size, chunk)`` of the ``model`` dimension, or None without one."""
    if models is None:
        return None
    return len(models), int(model_chunk or len(models))


def _output_variables(outputs, dims, lead, rows, dtype, alt, model_axis=None):
    """The NaN-filled variables of every output, their encodings and their dims' labels.

    Parameters
    ----------
    outputs : dict of str to tuple of int
        Output name -> per-sequence shape ``out``.
    dims : dict
        Output name -> its own dimensions ``(name, size, labels or None)``, where given.
    lead : (int, int, int)
        ``(N, W, S)``.
    rows : int
        Sequences per Zarr chunk.
    dtype : str
    alt : bool
        Create ``o_alt`` too.
    model_axis : (int, int), optional
        Size and chunk of a ``model`` dimension put after ``seq``. Default is none.

    Returns
    -------
    data_vars, encoding, dim_coords : dict
    """
    n, w, s = lead
    m_dim, m_shape, m_chunk = ((), (), ()) if model_axis is None else (
        (MODEL,), (model_axis[0],), (model_axis[1],))
    reserved = reserved_names(outputs) | (set() if model_axis is None else {MODEL})
    data_vars, encoding, dim_coords, sizes = {}, {}, {}, {}
    for name, shape in outputs.items():
        shape = tuple(int(d) for d in shape)
        names, labels = _dims_of(name, shape, dims.get(name))
        for dim, size in zip(names, shape):
            if dim in reserved or sizes.setdefault(dim, size) != size:
                raise ValueError(f"dimension {dim!r} of output {name!r} clashes with a store "
                                 "variable or another output's dimension")
        dim_coords.update({dim: _coord_values(lab) for dim, lab in zip(names, labels)
                           if lab is not None})
        data_vars[name] = ((SEQ,) + m_dim + (POS, BASE) + names,
                           _lazy_full((n,) + m_shape + (w, s) + shape, np.nan, dtype,
                                      (rows,) + m_chunk + (w, s) + shape))
        per_seq = [ref_name(name)] + ([alt_name(name)] if alt else [])
        for var in per_seq:
            data_vars[var] = ((SEQ,) + m_dim + names,
                              _lazy_full((n,) + m_shape + shape, np.nan, dtype,
                                         (rows,) + m_chunk + shape))
        for var in [name] + per_seq:
            encoding[var] = {"_FillValue": np.nan, "dtype": dtype,
                             "compressors": OUTPUT_COMPRESSORS}
    return data_vars, encoding, dim_coords


def _dims_of(name, shape, dims):
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
    for dim, size, labels in dims:
        if labels is not None and len(labels) != int(size):
            raise ValueError(f"dimension {dim!r} has {len(labels)} labels for size {size}")
    return names, tuple(d[2] for d in dims)


def _coord_values(labels):
    """Labels as a coordinate array: int64, float, or variable-width strings."""
    values = np.asarray(labels)
    if values.dtype.kind in "OUS":
        return np.asarray([str(v) for v in values.tolist()], dtype=STRING_DTYPE)
    return values


def _per_seq_coords(coords, n):
    """The per-sequence coordinates worth storing: known somewhere, padding only where padded."""
    padded = any(np.any(np.asarray(coords[k]) > 0) for k in PAD_COORDS if coords.get(k) is not None)
    kept = {}
    for key, values in coords.items():
        if key not in PER_SEQ_COORDS or values is None or (key in PAD_COORDS and not padded):
            continue
        values = np.asarray(values)
        if len(values) != n:
            raise ValueError(f"coordinate {key!r} has {len(values)} values for {n} sequences")
        if values.dtype.kind in "OUS":
            if all(v in (None, "", ".") for v in values.tolist()):
                continue
            values = np.asarray(["" if v is None else str(v) for v in values.tolist()],
                                dtype=STRING_DTYPE)
        elif values.dtype.kind == "f" and np.all(np.isnan(values)):
            continue
        elif values.dtype.kind in "iu" and np.all(values < 0):  # -1: unknown
            continue
        kept[key] = (SEQ, values)
    return kept


def _template_attrs(outputs, params, model_sha256, chunk_size, alt, extra):
    """The store's attributes: the template's own, then ``extra`` (which may not replace them)."""
    attrs = {
        ATTR_VERSION: __version__,
        ATTR_MODEL_SHA256: str(model_sha256),
        ATTR_PARAMS: json.dumps(normalise_params(params)),
        ATTR_OUTPUTS: list(outputs),
        ATTR_CHUNK_SIZE: chunk_size,
        ATTR_ALT: bool(alt),
    }
    for key, value in extra.items():
        if key in attrs:
            raise ValueError(f"attribute {key!r} is written by create_template itself")
        attrs[key] = normalise_params(value)
    return attrs


class StoreWriter:
    """An open store that writes whole chunks of sequences; open it once and reuse it.

    Reads the store's layout and chunk plan once (:func:`open_writer`). Tasks writing different
    chunks, in threads or processes, never share a Zarr chunk. A chunk is written only while
    the store at ``path`` carries the writer's run id: a store replaced meanwhile (another run's
    ``--overwrite``) is refused with ``StoreReplacedError`` and needs a new writer.

    Attributes
    ----------
    path : str
    run_id : str or None
        The run id the store must carry (default: the one it carries when opened).
    outputs : list of str
        The stored output names.
    n_chunks : int
    """

    def __init__(self, group, path, run_id=None):
        self.path = path
        self.run_id = group.attrs.get(ATTR_RUN_ID) if run_id is None else str(run_id)
        self._group = group
        self._slices = chunk_slices(group, path)
        self._arrays = seq_arrays(group)
        self._done = group[DONE]
        self.outputs = stored_outputs(group)
        self._has_alt = bool(group.attrs.get(ATTR_ALT, False))
        self._n = group[SEQ].shape[0]
        self._chunk_size = int(group.attrs[ATTR_CHUNK_SIZE])

    @property
    def n_chunks(self):
        return len(self._slices)

    def chunk_rows(self, chunk_index):
        """The ``seq`` rows of chunk ``chunk_index``: ``slice(start, stop)``."""
        if not 0 <= chunk_index < len(self._slices):
            raise ValueError(f"chunk {chunk_index} out of range: the store has "
                             f"{len(self._slices)} chunks")
        return self._slices[chunk_index]

    def write_chunk(self, chunk_index, ref, mut, ref_base=None, alt=None):
        """Write chunk ``chunk_index`` of every per-sequence variable, then mark it done.

        Parameters
        ----------
        chunk_index : int
        ref : dict
            Output name -> ndarray of shape (B, *out), B the chunk's sequences.
        mut : dict
            Output name -> ndarray of shape (B, W, S, *out).
        ref_base : ndarray of str, shape (B, W), optional
            Reference letter at each mutated position.
        alt : dict, optional
            Output name -> ndarray of shape (B, *out): the output with the ALT allele. Required
            when the store has ``o_alt`` variables.

        Raises
        ------
        StoreReplacedError
            The store at the path is not this writer's run's any more; nothing was written.
        """
        with owned(self.path, self.run_id, f"chunk {chunk_index}"):
            self.write_rows(self.chunk_rows(chunk_index), ref, mut, ref_base, alt)
            self._done[chunk_index] = 1

    def write_rows(self, rows, ref, mut, ref_base=None, alt=None):
        """Write ``seq[rows]`` of every per-sequence variable; ``done`` is left as it is.

        ``rows`` must be chunk-aligned: a region that starts or ends inside a Zarr chunk (other
        than at the last sequence) raises ``ValueError``, since two writers sharing a chunk would
        silently lose data. Every value is checked before anything is written. Arguments as
        :meth:`write_chunk`.
        """
        lo, hi = self._aligned(rows)
        values = self._values(ref, mut, ref_base, alt)
        for var, value in values.items():
            expected = (hi - lo,) + tuple(self._arrays[var].shape[1:])
            if value.shape != expected:
                raise ValueError(f"{var!r}: got shape {value.shape}, expected {expected}")
        for var, value in values.items():
            arr = self._arrays[var]
            arr[lo:hi] = value if var == REF_BASE else value.astype(arr.dtype, copy=False)

    def _aligned(self, rows):
        lo, hi, step = rows.indices(self._n)
        size = self._chunk_size
        if step != 1 or hi <= lo or lo % size or (hi % size and hi != self._n):
            raise ValueError(
                f"region {SEQ}[{rows.start}:{rows.stop}] is not aligned to the store's chunks of "
                f"{size} sequences (of {self._n}): two tasks could write one Zarr chunk"
            )
        return lo, hi

    def _values(self, ref, mut, ref_base, alt):
        """Variable name -> the array to write there."""
        if alt is not None and not self._has_alt:
            raise ValueError("ALT outputs given but the store has no o_alt variables")
        values = {}
        for name in self.outputs:
            if name not in ref or name not in mut:
                raise ValueError(f"no data for output {name!r}")
            values[name] = np.asarray(mut[name])
            values[ref_name(name)] = np.asarray(ref[name])
            if self._has_alt:
                if alt is None or name not in alt:
                    raise ValueError(f"no ALT data for output {name!r}")
                values[alt_name(name)] = np.asarray(alt[name])
        if ref_base is not None:
            values[REF_BASE] = np.asarray(ref_base, dtype=STRING_DTYPE)
        return values


def open_writer(path, run_id=None):
    """Open the store at ``path`` for writing chunks.

    Parameters
    ----------
    path : str
    run_id : str, optional
        The run that writes: its chunks are refused once the store at ``path`` carries another
        run id. Default is the run id the store carries now.

    Returns
    -------
    StoreWriter
        Raises ``ValueError`` when the store's arrays are not chunked as its ``chunk_size`` says.
    """
    path = store_path(path)
    return StoreWriter(open_group(path, "r+"), path, run_id)


def write_chunk(path, chunk_index, ref, mut, ref_base=None, alt=None):
    """Write chunk ``chunk_index`` of every per-sequence variable, then mark it done.

    Opens the store for this one write; see :meth:`StoreWriter.write_chunk` for the arguments.
    """
    open_writer(path).write_chunk(chunk_index, ref, mut, ref_base, alt)


def write_region(path, region, ref, mut, ref_base=None, alt=None):
    """Write ``seq[region]`` of every per-sequence variable; the region must be chunk-aligned.

    ``path`` is the store's path (or its open Zarr group). See :meth:`StoreWriter.write_rows`.
    """
    if isinstance(path, (str, os.PathLike)):
        writer = open_writer(path)
    else:
        writer = StoreWriter(path, str(path.store))
    writer.write_rows(region, ref, mut, ref_base, alt)
