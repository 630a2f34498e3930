"""Analysis of an ISM store: lazy attributions, plots, and the ``ds.ism`` accessor.

Importing this package registers ``ds.ism`` on every ``xarray.Dataset``;
``fastism_dist.open_results`` (this package's :func:`open_results`) opens a store with it.
"""

from fastism_dist.analysis.accessor import ISMAccessor, open_results
from fastism_dist.analysis.attribution import (
    choose_output,
    delta,
    genomic_coordinate,
    importance,
    mean_centred,
    output_names,
    select_task,
    task_dims,
    top_positions,
    top_window,
    top_window_start,
    variant_effect,
    window_sums,
)
from fastism_dist.analysis.plot import plot_importance_track, plot_ism, save_png

__all__ = [
    "open_results",
    "ISMAccessor",
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
    "plot_ism",
    "plot_importance_track",
    "save_png",
]
