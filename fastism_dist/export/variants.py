"""A table of variant effects from a VCF run: one row per variant, output and task.

Columns, in order:

=================  ===========================================================================
``seq``            the sequence id in the store (``chrom:pos:ref>alt``)
``variant_id``     the VCF ID column (``.`` where the VCF has none)
``chrom``          chromosome
``variant_pos``    1-based position of the variant, as in the VCF
``ref_allele``     REF
``alt_allele``     the ALT allele of this sequence (one sequence per ALT allele)
``output``         model output name
``task``           the output's task: its label, or its index; ``i,j`` for several task
                   dimensions; empty for an output with one value per sequence
``ref_output``     the output on the reference window
``alt_output``     the output with the ALT allele written in (NaN for indels)
``alt_minus_ref``  ``alt_output - ref_output`` (NaN for indels)
=================  ===========================================================================
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd

from fastism_dist.analysis import choose_output, output_names, task_dims, variant_effect
from fastism_dist.errors import FastISMError
from fastism_dist.export.names import COLUMNS, TABLE_FORMATS
from fastism_dist.export.stream import as_text, atomic_file, open_store, seq_chunks
from fastism_dist.store import (
    ALT_ALLELE,
    CHROM,
    END,
    PAD_LEFT,
    REF_ALLELE,
    SEQ,
    START,
    STRAND,
    VARIANT_ID,
    VARIANT_POS,
    alt_name,
    ref_name,
)



def task_labels(da):
    """One label per entry of the output's own dimensions of ``da``, in C order.

    Returns
    -------
    list of str
        A dimension's coordinate labels where it has them, else indices; entries of several
        dimensions joined by ``,``; ``[""]`` for an output without task dimensions.
    """
    per_dim = []
    for dim in task_dims(da):
        labels = da[dim].values if dim in da.coords else np.arange(da.sizes[dim])
        per_dim.append([str(label) for label in labels])
    return [",".join(entry) for entry in itertools.product(*per_dim)]


def vcf_positions(part):
    """1-based genomic position of each sequence's variant, as in the VCF, (B,) int64."""
    in_window = part[VARIANT_POS].values.astype(np.int64)
    if PAD_LEFT in part.variables:  # counted from the first genome base of a clipped window
        in_window = in_window - part[PAD_LEFT].values.astype(np.int64)
    start = part[START].values.astype(np.int64)
    end = part[END].values.astype(np.int64)
    minus = as_text(part[STRAND].values) == "-" if STRAND in part.variables else False
    return np.where(minus, end - in_window, start + in_window + 1)


def variant_rows(part, outputs):
    """The table's rows for one chunk of sequences: variant by variant, then output, then task.

    Parameters
    ----------
    part : xarray.Dataset
        One chunk of a VCF store.
    outputs : list of str

    Returns
    -------
    pandas.DataFrame with :data:`COLUMNS`
    """
    n = part.sizes[SEQ]
    names, tasks, ref, alt, effect = [], [], [], [], []
    for output in outputs:
        labels = task_labels(part[alt_name(output)])
        names += [output] * len(labels)
        tasks += labels
        ref.append(part[ref_name(output)].values.astype(np.float32).reshape(n, -1))
        alt.append(part[alt_name(output)].values.astype(np.float32).reshape(n, -1))
        effect.append(variant_effect(part, output).values.astype(np.float32).reshape(n, -1))
    per_variant = len(names)

    def repeat(values):
        return np.repeat(np.asarray(values), per_variant)

    return pd.DataFrame({
        "seq": repeat(part[SEQ].values.astype(object)),
        "variant_id": repeat(part[VARIANT_ID].values.astype(object)),
        "chrom": repeat(part[CHROM].values.astype(object)),
        "variant_pos": repeat(vcf_positions(part)),
        "ref_allele": repeat(part[REF_ALLELE].values.astype(object)),
        "alt_allele": repeat(part[ALT_ALLELE].values.astype(object)),
        "output": np.tile(np.asarray(names, dtype=object), n),
        "task": np.tile(np.asarray(tasks, dtype=object), n),
        "ref_output": np.concatenate(ref, axis=1).ravel(),
        "alt_output": np.concatenate(alt, axis=1).ravel(),
        "alt_minus_ref": np.concatenate(effect, axis=1).ravel(),
    }, columns=list(COLUMNS))


class TsvTable:
    """Rows appended to a tab-separated file with one header line; NaN written as ``NaN``."""

    def __init__(self, file):
        self.file = file
        self.started = False

    def write(self, rows):
        rows.to_csv(self.file, sep="\t", index=False, header=not self.started,
                    mode="a" if self.started else "w", na_rep="NaN", float_format="%.9g")
        self.started = True

    def close(self):
        if not self.started:
            pd.DataFrame(columns=list(COLUMNS)).to_csv(self.file, sep="\t", index=False)


class ParquetTable:
    """Rows appended to a Parquet file, one row group per chunk of sequences."""

    def __init__(self, file):
        self.pa, self.pq = _pyarrow()
        self.file = file
        self.writer = None

    def write(self, rows):
        table = self.pa.Table.from_pandas(rows, preserve_index=False)
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.file, table.schema)
        self.writer.write_table(table)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        else:
            self.pq.write_table(self.pa.Table.from_pandas(
                pd.DataFrame(columns=list(COLUMNS)), preserve_index=False), self.file)


def _pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or a one-line error saying what to do instead."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise FastISMError("writing .parquet needs pyarrow: pip install pyarrow, or write a .tsv "
                           "file instead") from None
    return pyarrow, pyarrow.parquet


def table_format(out):
    """``.tsv`` or ``.parquet`` from the name of ``out``; checks pyarrow for Parquet."""
    suffix = os.path.splitext(os.fspath(out))[1].lower()
    if suffix not in TABLE_FORMATS:
        raise FastISMError(f"{os.fspath(out)}: the variant table must end in .tsv or .parquet")
    if suffix == ".parquet":
        _pyarrow()
    return suffix


def variant_outputs(ds, path, output):
    """The outputs to tabulate: ``output`` (a name or list of names) or every stored one."""
    if VARIANT_POS not in ds.variables:
        raise FastISMError(f"store {path} was not scored from a VCF (it has no {VARIANT_POS!r}): "
                           "the variant table needs a VCF run")
    names = output_names(ds) if output is None else [output] if isinstance(output, str) else list(output)
    names = [choose_output(ds, name) for name in names]
    for name in names:
        if alt_name(name) not in ds.data_vars:
            raise FastISMError(f"store {path} has no ALT output {alt_name(name)!r}")
    return names


def export_variants(store, out, output=None, progress=True):
    """Write the effect of every VCF variant of a store as a table.

    Parameters
    ----------
    store : str or os.PathLike
        A store scored from a VCF (with ALT outputs).
    out : str or os.PathLike
        ``.tsv`` (tab-separated, one header line) or ``.parquet`` (needs pyarrow). Replaced if it
        exists.
    output : str or list of str, optional
        Outputs to tabulate. Default is every stored output.
    progress : bool
        Show a progress bar. Default is True.

    Returns
    -------
    int
        Rows written: one per variant (sequence), output and task, in store order; sequences not
        yet scored have NaN outputs.
    """
    suffix = table_format(out)
    path, ds = open_store(store)
    outputs = variant_outputs(ds, path, output)
    n_rows = 0
    with atomic_file(out) as partial:
        table = TsvTable(partial) if suffix == ".tsv" else ParquetTable(partial)
        try:
            for rows in seq_chunks(path, progress, desc="variants"):
                block = variant_rows(ds.isel({SEQ: rows}), outputs)
                table.write(block)
                n_rows += len(block)
        finally:
            table.close()
    return n_rows
