"""Multiply-add counts and the theoretical bound of the paper's models, with and without shortcuts."""

import pytest

from fastism_dist.models import basset, bpnet
from fastism_dist.core import format_report, plan_report

import toy_models


def test_basset_1kb_and_2kb_bounds():
    report = plan_report(basset(seq_len=1000, seed=0))
    assert report.naive_flops == pytest.approx(268.6e6, rel=0.005)
    assert report.fast_flops == pytest.approx(8.0e6, rel=0.01)
    assert 33 < report.bound < 35
    assert report.stops == [("flatten", "flattens all positions")]
    notes = {row.name: row.note for row in report.layers}
    assert notes["conv1"] == "first-layer lookup" and notes["dense1"] == "incremental dense"
    assert notes["conv2"] == notes["conv3"] == "incremental convolution"
    fast = {row.name: row.fast_macs for row in report.layers}
    assert (fast["conv2"], fast["conv3"]) == (7 * 11 * 300 * 200, 5 * 7 * 200 * 200)
    report2 = plan_report(basset(seq_len=2000, seed=0))
    assert report2.naive_flops == pytest.approx(538.6e6, rel=0.005)
    assert 65 < report2.bound < 70


def test_basset_windowed_bound_without_incremental_convolution():
    """The original fastISM's scheme: every affected output window is recomputed."""
    report = plan_report(basset(seq_len=1000, seed=0), incremental_conv=False)
    assert 15.5 < report.bound < 17.5
    fast = {row.name: row.fast_macs for row in report.layers}
    assert fast["conv2"] == 17 * 11 * 300 * 200


def test_bpnet_bound():
    report = plan_report(bpnet(seq_len=1000, seed=0))
    assert 3.8 < report.bound < 4.1
    naive = {row.name: row.naive_macs for row in report.layers}
    fast = {row.name: row.fast_macs for row in report.layers}
    # dilation 512 at L = 1000: only 1976 of the 3000 (output, tap) pairs read the input
    assert naive["dil_conv9"] == fast["dil_conv9"] == 1976 * 64 * 64
    assert 2.4 < plan_report(bpnet(seq_len=1000, seed=0), incremental_conv=False).bound < 3.0
    widths = [row.width for row in report.layers if row.name.startswith("dil_conv")]
    assert widths[:3] == ["29", "37", "53"]


def test_switches_change_the_count():
    model = basset(seq_len=1000, seed=0)
    plain = plan_report(model, first_layer_lookup=False, incremental_conv=False,
                        incremental_dense=False)
    assert plain.fast_flops > plan_report(model).fast_flops


def test_unknown_layer_is_reported_as_the_stop():
    report = plan_report(toy_models.reverse_complement_lambda())
    assert any("lambda" in name for name, _ in report.stops)
    text = format_report(report)
    assert "acceleration stops at lambda" in text and "theoretical speedup" in text


def test_no_stop_model():
    text = format_report(plan_report(toy_models.spatial_output()))
    assert "no stop layer" in text


def _inside_pairs(length, kernel, dilation, pad_left):
    """(output, tap) pairs of a stride-1 convolution that read the input, counted one by one."""
    return sum(1 for out in range(length) for tap in range(kernel)
               if 0 <= out - pad_left + tap * dilation < length)


def test_naive_count_leaves_out_padding_taps():
    """The whole layer skips the taps in its padding; a window near an end computes them."""
    import keras

    length = 50
    inp = keras.Input((length, 4))
    same = keras.layers.Conv1D(6, 3, dilation_rate=20, padding="same", name="same")(inp)
    causal = keras.layers.Conv1D(5, 4, dilation_rate=3, padding="causal", name="causal")(same)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(causal))
    report = plan_report(keras.Model(inp, out), incremental_conv=False, first_layer_lookup=False)
    rows = {row.name: row for row in report.layers}
    assert rows["same"].naive_macs == _inside_pairs(length, 3, 20, 20) * 4 * 6
    assert rows["causal"].naive_macs == _inside_pairs(length, 4, 3, 9) * 6 * 5
    assert rows["same"].fast_macs == int(rows["same"].width) * 3 * 4 * 6
