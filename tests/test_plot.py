"""fastism_dist.analysis.plot: the Fig. 1b heatmap + logo and the importance track render real PNGs."""

import numpy as np
import pytest
from PIL import Image
from test_analysis import make_dataset

from fastism_dist.analysis import plot
from fastism_dist.errors import FastISMError


def check_png(path, min_size=100):
    """The PNG exists, opens, has a sane size and is not blank."""
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as img:
        w, h = img.size
        assert min_size <= w <= 20000 and min_size <= h <= 20000
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.var() > 0


def test_plot_ism_renders_png(tmp_path):
    ds, *_ = make_dataset(n_pos=40)
    fig = plot.plot_ism(ds, "s0", output="y", task=1)
    path = tmp_path / "s0.png"
    assert plot.save_png(fig, path) == str(path)
    check_png(path)
    heat = fig.axes[0]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["A", "C", "G", "T"]
    assert "chr1" in heat.get_xlabel()  # sequence 0 has genomic coordinates
    assert "y[1]" in fig.axes[1].get_title()


def test_plot_ism_default_task_window_and_index(tmp_path):
    ds, *_ = make_dataset(n_pos=40)
    fig = plot.plot_ism(ds, 2, window=10)  # the only output, the task that changes most, a 10 bp window
    assert fig.axes[0].get_xlim()[1] - fig.axes[0].get_xlim()[0] == pytest.approx(10)
    assert fig.axes[0].get_xlabel() == "position in sequence"  # sequence 2 has no coordinates
    check_png(tmp_path / "w.png") if plot.save_png(fig, tmp_path / "w.png") else None
    fig = plot.plot_ism(ds, "s1", window=(5, 25))
    lo, hi = fig.axes[0].get_xlim()
    assert (lo, hi) == (4.5, 24.5)


def test_plot_ism_on_given_axes(tmp_path):
    fig = plot._figure((6, 3))
    ax = fig.add_subplot()
    ds, *_ = make_dataset(n_pos=20)
    assert plot.plot_ism(ds, "s0", ax=ax) is fig
    plot.save_png(fig, tmp_path / "ax.png")
    check_png(tmp_path / "ax.png")


def test_plot_ism_all_zero_differences(tmp_path):
    ds, *_ = make_dataset(n_pos=12)
    ds["y"] = ds["y"] * 0 + ds["y_ref"]
    plot.save_png(plot.plot_ism(ds, "s0"), tmp_path / "flat.png")
    assert (tmp_path / "flat.png").exists()


def test_plot_ism_errors():
    ds, *_ = make_dataset(n_pos=12)
    with pytest.raises(FastISMError, match="no sequence 'nope'"):
        plot.plot_ism(ds, "nope")
    with pytest.raises(FastISMError, match="out of range"):
        plot.plot_ism(ds, 7)
    with pytest.raises(FastISMError, match="holds none of the scored positions"):
        plot.plot_ism(ds, 0, window=(100, 120))
    with pytest.raises(FastISMError, match="window must be"):
        plot.plot_ism(ds, 0, window="wide")
    two = ds.assign(y2=ds["y"].expand_dims(extra=2, axis=-1), y2_ref=ds["y_ref"].expand_dims(extra=2, axis=-1))
    two.attrs["outputs"] = ["y", "y2"]
    with pytest.raises(FastISMError, match="choose one value of each"):
        plot.plot_ism(two, 0, output="y2")


def test_plot_importance_track(tmp_path):
    ds, *_ = make_dataset(n_seq=4, n_pos=30)
    fig = plot.plot_importance_track(ds, "y", seqs=["s0", "s1"])  # chr1, + and - strands
    assert fig.axes[0].get_xlabel().startswith("chr1")
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 110 and hi > 220
    plot.save_png(fig, tmp_path / "track.png")
    check_png(tmp_path / "track.png")
    fig = plot.plot_importance_track(ds, "y")  # all four: mixed chromosomes -> positions
    assert fig.axes[0].get_xlabel() == "position in sequence"
    assert len(fig.axes[0].get_lines()) == 4
    with pytest.raises(FastISMError, match="no sequences chosen"):
        plot.plot_importance_track(ds, "y", seqs=[])


def test_accessor_plots():
    ds, *_ = make_dataset(n_pos=12)
    assert ds.ism.plot("s0").axes
    assert ds.ism.plot_importance_track(seqs=[0]).axes
