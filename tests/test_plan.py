"""Spatial rules and the mutation plan, checked without running any model."""

import numpy as np
import pytest

from fastism_dist.core.plan import (LOCAL, MERGE, POSITION_WISE, STOP, StridedWindow, UpSample,
                               rule_for)


def brute_affected(rule, in_length, out_length, lo, hi):
    """Outputs whose receptive field (per the rule's own definition) meets input [lo, hi)."""
    touched = [j for j in range(out_length)
               if any(lo <= rule.stride * j - rule.pad_left + rule.dilation * i < hi
                      for i in range(rule.kernel))]
    return (min(touched), max(touched) + 1) if touched else (0, 0)


@pytest.mark.parametrize("kernel,dilation,stride,padding", [
    (5, 1, 1, "same"), (4, 1, 2, "same"), (3, 3, 1, "same"), (7, 1, 1, "valid"),
    (4, 1, 3, "valid"), (3, 2, 1, "causal"), (1, 1, 1, "valid"), (2, 1, 2, "same"),
])
def test_conv_rule_matches_brute_force(kernel, dilation, stride, padding):
    in_length = 23
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        out_length = (in_length - span) // stride + 1
    elif padding == "same":
        out_length = -(-in_length // stride)
    else:
        out_length = (in_length - 1) // stride + 1
    config = {"kernel_size": (kernel,), "strides": (stride,), "dilation_rate": (dilation,),
              "padding": padding, "data_format": "channels_last", "groups": 1}
    rule = rule_for("Conv1D", config, [(in_length, 4)], [(out_length, 3)])
    assert rule.role == LOCAL
    for lo in range(in_length):
        for width in (1, 3):
            hi = min(lo + width, in_length)
            got = rule.affected(np.array([lo]), np.array([hi]), out_length)
            got = (int(got[0][0]), int(got[1][0]))
            want = brute_affected(rule, in_length, out_length, lo, hi)
            if dilation == 1:
                assert got == want
            else:  # dilation gaps: a covering interval is safe
                assert want == (0, 0) or (got[0] <= want[0] and got[1] >= want[1])


def test_rule_rejects_wrong_output_length():
    config = {"kernel_size": (5,), "strides": (1,), "dilation_rate": (1,), "padding": "same"}
    rule = rule_for("Conv1D", config, [(20, 4)], [(17, 3)])
    assert rule.role == STOP and "output length" in rule.reason


def test_needed_window_covers_receptive_field():
    rule = StridedWindow(op="conv", kernel=5, dilation=2, stride=1, pad_left=4, pad_right=4)
    start, width = rule.needed(np.array([10]), 3)
    assert (int(start[0]), width) == (6, 11)


def test_same_pool_padding_and_counts():
    config = {"pool_size": (3,), "strides": (2,), "padding": "same", "data_format": "channels_last"}
    rule = rule_for("AveragePooling1D", config, [(10, 4)], [(5, 4)])
    assert rule.op == "avg_same" and (rule.pad_left, rule.pad_right) == (0, 1)
    np.testing.assert_array_equal(rule.valid_counts(10, 5), [3, 3, 3, 3, 2])


def test_upsample_and_crop_and_pad():
    up = rule_for("UpSampling1D", {"size": 3}, [(8, 2)], [(24, 2)])
    assert isinstance(up, UpSample)
    assert [int(v[0]) for v in up.affected(np.array([2]), np.array([4]), 24)] == [6, 12]
    crop = rule_for("Cropping1D", {"cropping": (2, 3)}, [(20, 2)], [(15, 2)])
    assert [int(v[0]) for v in crop.affected(np.array([0]), np.array([5]), 15)] == [0, 3]
    pad = rule_for("ZeroPadding1D", {"padding": (4, 1)}, [(20, 2)], [(25, 2)])
    assert [int(v[0]) for v in pad.affected(np.array([0]), np.array([5]), 25)] == [4, 9]


@pytest.mark.parametrize("name,config,in_shapes,out_shapes,role", [
    ("Activation", {"activation": "relu"}, [(10, 4)], [(10, 4)], POSITION_WISE),
    ("BatchNormalization", {"axis": -1}, [(10, 4)], [(10, 4)], POSITION_WISE),
    ("BatchNormalization", {"axis": 1}, [(10, 4)], [(10, 4)], STOP),
    ("LayerNormalization", {"axis": [-1]}, [(10, 4)], [(10, 4)], POSITION_WISE),
    ("LayerNormalization", {"axis": [1, 2]}, [(10, 4)], [(10, 4)], STOP),
    ("PReLU", {"shared_axes": [1]}, [(10, 4)], [(10, 4)], POSITION_WISE),
    ("PReLU", {"shared_axes": None}, [(10, 4)], [(10, 4)], STOP),
    ("Dense", {}, [(10, 4)], [(10, 8)], POSITION_WISE),
    ("Dense", {}, [(40,)], [(8,)], STOP),
    ("Softmax", {"axis": 1}, [(10, 4)], [(10, 4)], STOP),
    ("Add", {}, [(10, 4), (10, 4)], [(10, 4)], MERGE),
    ("Add", {}, [(10, 4), (1, 4)], [(10, 4)], STOP),
    ("Concatenate", {"axis": -1}, [(10, 4), (10, 2)], [(10, 6)], MERGE),
    ("Concatenate", {"axis": 1}, [(10, 4), (10, 4)], [(20, 4)], STOP),
    ("Flatten", {}, [(10, 4)], [(40,)], STOP),
    ("GlobalAveragePooling1D", {}, [(10, 4)], [(4,)], STOP),
    ("MultiHeadAttention", {}, [(10, 4), (10, 4)], [(10, 4)], STOP),
    ("MyCustomLayer", {}, [(10, 4)], [(10, 4)], STOP),
    ("Conv1D", {"kernel_size": (3,), "strides": (1,), "dilation_rate": (1,), "padding": "same",
                "data_format": "channels_first"}, [(10, 4)], [(10, 4)], STOP),
])
def test_roles(name, config, in_shapes, out_shapes, role):
    assert rule_for(name, config, in_shapes, out_shapes).role == role


def test_unknown_layer_reason_is_given():
    rule = rule_for("Lambda", {}, [(10, 4)], [(10, 4)])
    assert rule.role == STOP and rule.reason
