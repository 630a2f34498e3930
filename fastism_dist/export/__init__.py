"""Exports of a store for tools downstream: TF-MoDISco inputs, bigWig tracks, variant tables.

Each export reads the store one chunk of sequences at a time and writes its file under a
temporary name, renamed when complete.

- :func:`export_modisco`: ``ohe.npz`` and ``attr.npz`` (N, 4, L) for ``modisco motifs``.
- :func:`export_bigwig`: per-position importance (``l2`` or ``ref``) on genomic coordinates.
- :func:`export_variants`: one row per VCF variant, output and task (``.tsv`` / ``.parquet``).

The names load on first use (the exporters import xarray and Dask), so the command line can
import this package for its parser without that cost.
"""

import importlib

__all__ = [
    "export_modisco",
    "export_bigwig",
    "export_variants",
    "ModiscoFiles",
    "BigWigTrack",
    "NpzArrayWriter",
    "SCORES",
    "COLUMNS",
    "add_export_parser",
    "run_export",
]

_MODULES = {
    "export_modisco": "modisco",
    "ModiscoFiles": "modisco",
    "NpzArrayWriter": "modisco",
    "export_bigwig": "bigwig",
    "BigWigTrack": "bigwig",
    "SCORES": "names",
    "export_variants": "variants",
    "COLUMNS": "names",
    "add_export_parser": "command",
    "run_export": "command",
}


def __getattr__(name):
    if name in _MODULES:
        return getattr(importlib.import_module(f"fastism_dist.export.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'fastism_dist.export' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
