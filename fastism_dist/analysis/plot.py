"""Plots of an ISM store: the seed paper's Fig. 1b heatmap + logo, and importance tracks.

:func:`plot_ism` draws, for one sequence, the difference of every substitution's output from the
reference output as a (base x position) heatmap on a diverging colour map centred at 0, and above
it the reference sequence as a logo whose letters are scaled by the L2 norm of those differences
at each position (Nair et al. 2022, Fig. 1b).

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, never through
``pyplot``: no display is needed, no global backend is changed and nothing is kept alive by a
figure registry. In Jupyter the returned Figure displays itself.
"""

from __future__ import annotations

import os

import numpy as np

from fastism_dist.analysis.attribution import (
    choose_output,
    delta,
    genomic_coordinate,
    importance,
    select_task,
    task_dims,
    top_window_start,
)
from fastism_dist.errors import FastISMError
from fastism_dist.store import BASE, CHROM, END, PAD_LEFT, POS, REF_BASE, SEQ, START, STRAND

__all__ = ["plot_ism", "plot_importance_track", "save_png"]

BASE_COLOURS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839", "U": "#D62839"}
OTHER_COLOUR = "#7F7F7F"
MAX_TRACKS = 20


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _seq_index(ds, seq):
    """Index along ``seq`` of an id (str) or an index (int)."""
    ids = [str(s) for s in ds[SEQ].values.tolist()]
    if isinstance(seq, (int, np.integer)) and not isinstance(seq, bool):
        if not -len(ids) <= int(seq) < len(ids):
            raise FastISMError(f"sequence index {seq} out of range for {len(ids)} sequences")
        return int(seq) % len(ids)
    seq = str(seq)
    if seq not in ids:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise FastISMError(f"no sequence {seq!r} in the store; its ids are {shown}")
    return ids.index(seq)


def _seq_coords(ds, i):
    """(chrom, start, end, strand, pad_left) of sequence ``i``, or None when unknown."""
    if START not in ds.variables or CHROM not in ds.variables:
        return None
    chrom = str(np.asarray(ds[CHROM][i].values))
    start = int(ds[START][i].values)
    end = int(ds[END][i].values) if END in ds.variables else -1
    strand = str(np.asarray(ds[STRAND][i].values)) if STRAND in ds.variables else "."
    pad_left = int(ds[PAD_LEFT][i].values) if PAD_LEFT in ds.variables else 0
    if not chrom or start < 0:
        return None
    return chrom, start, end, strand, pad_left


def _to_genomic(coords, pos):
    _, start, end, strand, pad_left = coords
    return end - 1 - (pos - pad_left) if strand == "-" else start + pos - pad_left


def _window(positions, importance, window):
    """Boolean mask over positions for ``window`` (None, (lo, hi) in pos values, or a width)."""
    n = len(positions)
    if window is None:
        return np.ones(n, dtype=bool)
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        width = int(window)
        if not 1 <= width:
            raise FastISMError(f"window width must be >= 1, got {width}")
        width = min(width, n)
        first = int(top_window_start(importance, width))
        mask = np.zeros(n, dtype=bool)
        mask[first:first + width] = True
        return mask
    try:
        lo, hi = (int(v) for v in window)
    except (TypeError, ValueError):
        raise FastISMError(f"window must be None, a width, or (start, end) positions; got {window!r}") from None
    mask = (positions >= lo) & (positions < hi)
    if not mask.any():
        raise FastISMError(f"window ({lo}, {hi}) holds none of the scored positions "
                           f"{int(positions.min())}..{int(positions.max()) + 1}")
    return mask


def _one_task(d, task):
    """Reduce ``d`` (pos, base, *tasks) to (pos, base): ``task`` or the task changing most."""
    d = select_task(d, task)
    dims = task_dims(d)
    if not dims:
        if isinstance(task, dict):
            return d, ", ".join(f"{k}={v}" for k, v in task.items())
        return d, task
    if len(dims) > 1:
        raise FastISMError(f"{d.name!r} has dims {list(dims)} at each position: choose one value of "
                           f"each with task={{dim: index, ...}} (or store it reduced)")
    dim = dims[0]
    norms = np.sqrt((d * d).sum([POS, BASE]).values)
    k = int(np.nanargmax(norms)) if np.isfinite(norms).any() else 0
    label = d[dim].values[k] if dim in d.coords else k
    return d.isel({dim: k}), label


def plot_ism(ds, seq, output=None, task=None, window=None, ax=None, cmap="RdBu_r", figsize=None):
    """The ISM map of one sequence: a heatmap of differences from the reference and a logo.

    Parameters
    ----------
    ds : xarray.Dataset
        An ISM store (``fastism_dist.open_results``).
    seq : str or int
        Sequence id, or its index.
    output : str, optional
        Output name. Default is the only output.
    task : int, str or dict, optional
        Which task of a multi-task output (see :func:`select_task`). Default is the task
        whose differences have the largest L2 norm on this sequence.
    window : None, int or (int, int), optional
        Positions shown: all (None, the default), the ``int``-wide window with the largest
        summed importance, or ``(start, end)`` in ``pos`` values, half-open.
    ax : matplotlib Axes, optional
        Axes for the heatmap; the logo and colour bar are added beside it. Default is a new
        Figure.
    cmap : str
        Diverging colour map, centred at 0. Default is ``"RdBu_r"``.
    figsize : (float, float), optional
        For a new Figure. Default grows with the number of positions shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    name = choose_output(ds, output)
    i = _seq_index(ds, seq)
    values, positions, bases, ref, label = _sequence_map(ds, name, i, task, window)
    if ax is None:
        n = len(positions)
        fig = _figure(figsize or (min(max(6.0, 0.075 * n + 2.0), 40.0), 3.4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    divider = make_axes_locatable(ax)
    logo_ax = divider.append_axes("top", size="70%", pad=0.08, sharex=ax)
    cax = divider.append_axes("right", size=0.12, pad=0.08)
    extent = (positions[0] - 0.5, positions[-1] + 0.5, len(bases) - 0.5, -0.5)
    _draw_heatmap(ax, cax, values, bases, extent, cmap)
    _draw_logo(logo_ax, positions, bases, ref, np.sqrt(np.nansum(values * values, axis=1)))
    logo_ax.set_xlim(extent[0], extent[1])

    coords = _seq_coords(ds, i)
    if coords is not None:
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{_to_genomic(coords, round(x)):,}"))
        ax.set_xlabel(f"{coords[0]} ({coords[3]} strand), 0-based", fontsize=8)
    else:
        ax.set_xlabel("position in sequence", fontsize=8)
    ax.tick_params(labelsize=7)
    what = name if label is None else f"{name}[{label}]"
    logo_ax.set_title(f"{ds[SEQ].values[i]} — ISM of {what}", fontsize=9)
    return fig


def _sequence_map(ds, name, i, task, window):
    """What :func:`plot_ism` draws for sequence ``i``, at the positions of ``window``.

    Returns
    -------
    values : ndarray of float64, shape (W, S)
        Differences from the reference output.
    positions : ndarray of int64, shape (W,)
    bases : list of str, length S
    ref : ndarray of str, shape (W,)
        Reference letters ("" where the store has none).
    label
        The task shown, or None.
    """
    d = delta(ds, name).isel({SEQ: i}).compute()  # (pos, base, *tasks)
    d, label = _one_task(d, task)
    d = d.transpose(POS, BASE)
    values = np.asarray(d.values, dtype=np.float64)
    positions = np.asarray(d[POS].values, dtype=np.int64)
    bases = [str(b) for b in d[BASE].values.tolist()]
    mask = _window(positions, np.sqrt(np.nansum(values * values, axis=1)), window)
    if REF_BASE in ds.variables:
        ref = np.asarray([str(r) for r in np.asarray(ds[REF_BASE].isel({SEQ: i}).values).tolist()],
                         dtype=object)
    else:
        ref = np.full(len(positions), "", dtype=object)
    return values[mask], positions[mask], bases, ref[mask], label


def _draw_heatmap(ax, cax, values, bases, extent, cmap):
    """The (base x position) heatmap of ``values`` (W, S) centred at 0, with its colour bar."""
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    vmax = vmax if vmax > 0 else 1e-9
    im = ax.imshow(values.T, aspect="auto", cmap=cmap, vmin=-vmax, vmax=vmax, extent=extent,
                   interpolation="nearest")
    ax.set_yticks(range(len(bases)), bases)
    ax.set_xlim(extent[0], extent[1])
    cbar = ax.figure.colorbar(im, cax=cax)
    cbar.set_label("Δ output", fontsize=8)
    cbar.ax.tick_params(labelsize=7)


def _draw_logo(logo_ax, positions, bases, ref, heights):
    """The reference letters ``ref`` (W,) as a logo scaled by ``heights`` (W,)."""
    import logomaker
    import pandas as pd

    letters = sorted(set(bases) | {r for r in ref.tolist() if r})
    frame = pd.DataFrame(0.0, index=positions, columns=letters)
    for p, r, h in zip(positions, ref, heights):
        if r and np.isfinite(h):
            frame.loc[p, r] = h
    colours = {b: BASE_COLOURS.get(b.upper(), OTHER_COLOUR) for b in letters}
    top = float(heights[np.isfinite(heights)].max()) if np.isfinite(heights).any() else 0.0
    if top > 0:  # logomaker cannot scale an all-zero logo
        logomaker.Logo(frame, ax=logo_ax, color_scheme=colours, show_spines=False)
    logo_ax.set_ylim(0, top * 1.05 if top > 0 else 1.0)
    logo_ax.set_ylabel("‖Δ‖₂", fontsize=8)
    logo_ax.tick_params(labelbottom=False, labelsize=7)
    logo_ax.spines[["top", "right"]].set_visible(False)


def plot_importance_track(ds, output=None, seqs=None, task=None, ax=None, figsize=(8, 2.8)):
    """Importance (L2 norm of the differences) along the genomic coordinate, one line per sequence.

    Parameters
    ----------
    ds : xarray.Dataset
    output : str, optional
        Default is the only output.
    seqs : list of str or int, optional
        Sequence ids or indices. Default is the first 20 sequences.
    task : int, str or dict, optional
        Default is the norm over all tasks.
    ax : matplotlib Axes, optional
    figsize : (float, float)
        For a new Figure. Default is (8, 2.8).

    Returns
    -------
    matplotlib.figure.Figure
        The x axis is the genomic coordinate when every chosen sequence has coordinates on one
        chromosome, else the position in the sequence.
    """
    name = choose_output(ds, output)
    n = ds.sizes[SEQ]
    if seqs is None:
        idx = list(range(min(n, MAX_TRACKS)))
    else:
        seqs = [seqs] if isinstance(seqs, (str, int, np.integer)) else list(seqs)
        if not seqs:
            raise FastISMError("no sequences chosen")
        idx = [_seq_index(ds, s) for s in seqs]
    imp = importance(ds, name, task).isel({SEQ: idx}).compute()
    coords = [_seq_coords(ds, i) for i in idx]
    genomic = all(c is not None for c in coords) and len({c[0] for c in coords}) == 1
    gc = genomic_coordinate(ds).isel({SEQ: idx}).compute().values if genomic else None
    positions = np.asarray(imp[POS].values)

    if ax is None:
        fig = _figure(figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ids = [str(s) for s in imp[SEQ].values.tolist()]
    for row, sid in enumerate(ids):
        x = gc[row] if genomic else positions
        order = np.argsort(x, kind="stable")
        ax.plot(x[order], imp.values[row][order], lw=0.9, label=sid)
    ax.set_xlabel(f"{coords[0][0]}, 0-based" if genomic else "position in sequence", fontsize=8)
    ax.set_ylabel("‖Δ‖₂", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if len(ids) <= 10:
        ax.legend(fontsize=7, frameon=False)
    task_text = "" if task is None else f"[{task}]"
    ax.set_title(f"ISM importance of {name}{task_text}", fontsize=9)
    return fig


def save_png(fig, path, dpi=150):
    """Write ``fig`` to ``path`` as a PNG (white background, tight box); returns the path."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return path
