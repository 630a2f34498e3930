"""The ``ds.ism`` accessor, registered on ``xarray.Dataset`` when this package is imported.

The accessor holds only the Dataset; each method calls the function of the same name in
:mod:`fastism_dist.analysis.attribution` or :mod:`fastism_dist.analysis.plot`::

    import fastism_dist
    ds = fastism_dist.open_results("run.zarr")
    ds.ism.importance("motifs").compute()
"""

from __future__ import annotations

import xarray as xr

from fastism_dist.analysis import attribution, plot
from fastism_dist.store import open_results as open_store

ACCESSOR_NAME = "ism"


@xr.register_dataset_accessor(ACCESSOR_NAME)
class ISMAccessor:
    """``ds.ism``: the analysis and plotting functions of ``fastism_dist.analysis`` on ``ds``."""

    def __init__(self, ds):
        self._ds = ds

    @property
    def outputs(self):
        """The stored output names."""
        return attribution.output_names(self._ds)

    def delta(self, output=None, task=None):
        """See :func:`fastism_dist.analysis.delta`."""
        return attribution.delta(self._ds, output, task)

    def mean_centred(self, output=None, task=None):
        """See :func:`fastism_dist.analysis.mean_centred`."""
        return attribution.mean_centred(self._ds, output, task)

    def importance(self, output=None, task=None):
        """See :func:`fastism_dist.analysis.importance`."""
        return attribution.importance(self._ds, output, task)

    def top_positions(self, output=None, k=10, task=None):
        """See :func:`fastism_dist.analysis.top_positions`."""
        return attribution.top_positions(self._ds, output, k, task)

    def top_window(self, output=None, width=15, task=None):
        """See :func:`fastism_dist.analysis.top_window`."""
        return attribution.top_window(self._ds, output, width, task)

    def genomic_coordinate(self):
        """See :func:`fastism_dist.analysis.genomic_coordinate`."""
        return attribution.genomic_coordinate(self._ds)

    def variant_effect(self, output=None, task=None):
        """See :func:`fastism_dist.analysis.variant_effect`."""
        return attribution.variant_effect(self._ds, output, task)

    def plot(self, seq, output=None, task=None, window=None, ax=None):
        """See :func:`fastism_dist.analysis.plot_ism`."""
        return plot.plot_ism(self._ds, seq, output=output, task=task, window=window, ax=ax)

    def plot_importance_track(self, output=None, seqs=None, task=None, ax=None):
        """See :func:`fastism_dist.analysis.plot_importance_track`."""
        return plot.plot_importance_track(self._ds, output, seqs=seqs, task=task, ax=ax)


def open_results(path, **kwargs):
    """The store at ``path`` as a lazily loaded ``xarray.Dataset`` with ``ds.ism`` available.

    Parameters
    ----------
    path : str or path-like
        Local directory, ``file://`` or fsspec URL of a store.
    **kwargs
        Passed to ``xarray.open_zarr``.

    Returns
    -------
    xarray.Dataset
    """
    return open_store(path, **kwargs)
