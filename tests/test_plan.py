"""Layer rules and the registry: geometry checked by brute force, roles by real Keras layers."""

from types import SimpleNamespace

import numpy as np
import pytest

from fastism_dist.core.layer_rules import AvgPoolRule, ConvRule, CropRule, UpSampleRule, ZeroPadRule
from fastism_dist.core.rules import LOCAL, MERGE, POSITION_WISE, STOP, Window, rule_for

import toy_models


def layer_rule(layer, in_shapes, out_shapes):
    """The registry's rule for one call of a real Keras layer."""
    node = SimpleNamespace(op=layer, arg_ids=tuple(range(len(in_shapes))), arguments=None)
    return rule_for(node, in_shapes, out_shapes)


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
    rule = ConvRule.from_config(config, [(in_length, 4)], [(out_length, 3)])
    assert rule.role == LOCAL and rule.expected_length(in_length) == out_length
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
    import keras

    rule = layer_rule(keras.layers.Conv1D(3, 5, padding="same"), [(20, 4)], [(17, 3)])
    assert rule.role == STOP and "output length" in rule.reason


def test_needed_window_covers_receptive_field():
    rule = Window(kernel=5, dilation=2, stride=1, pad_left=4, pad_right=4)
    start, width = rule.needed(np.array([10]), 3)
    assert (int(start[0]), width) == (6, 11)


def test_same_pool_padding_and_counts():
    config = {"pool_size": (3,), "strides": (2,), "padding": "same", "data_format": "channels_last"}
    rule = AvgPoolRule.from_config(config, [(10, 4)], [(5, 4)])
    assert rule.same and (rule.pad_left, rule.pad_right) == (0, 1)
    np.testing.assert_array_equal(rule.valid_counts(10, 5), [3, 3, 3, 3, 2])
    table = rule.tables(10, np.array([3, 1]), 2)["counts"]
    assert table.shape == (2, 2, 1) and table[0, :, 0].tolist() == [3, 2]


def test_upsample_and_crop_and_pad():
    up = UpSampleRule.from_config({"size": 3}, [(8, 2)], [(24, 2)])
    assert up.align == 3 and up.expected_length(8) == 24
    assert [int(v[0]) for v in up.affected(np.array([2]), np.array([4]), 24)] == [6, 12]
    start, width = up.needed(np.array([6]), 6)
    assert (int(start[0]), width) == (2, 2)
    crop = CropRule.from_config({"cropping": (2, 3)}, [(20, 2)], [(15, 2)])
    assert crop.expected_length(20) == 15
    assert [int(v[0]) for v in crop.affected(np.array([0]), np.array([5]), 15)] == [0, 3]
    pad = ZeroPadRule.from_config({"padding": (4, 1)}, [(20, 2)], [(25, 2)])
    assert [int(v[0]) for v in pad.affected(np.array([0]), np.array([5]), 25)] == [4, 9]


def _roles():
    import keras

    L = keras.layers

    class MyCustomLayer(L.Layer):
        def call(self, x):
            return x

    return [
        (L.Activation("relu"), [(10, 4)], [(10, 4)], POSITION_WISE),
        (L.BatchNormalization(axis=-1), [(10, 4)], [(10, 4)], POSITION_WISE),
        (L.BatchNormalization(axis=1), [(10, 4)], [(10, 4)], STOP),
        (L.LayerNormalization(axis=[-1]), [(10, 4)], [(10, 4)], POSITION_WISE),
        (L.LayerNormalization(axis=[1, 2]), [(10, 4)], [(10, 4)], STOP),
        (L.PReLU(shared_axes=[1]), [(10, 4)], [(10, 4)], POSITION_WISE),
        (L.PReLU(), [(10, 4)], [(10, 4)], STOP),
        (L.Dense(8), [(10, 4)], [(10, 8)], POSITION_WISE),
        (L.Dense(8), [(40,)], [(8,)], STOP),
        (L.Softmax(axis=1), [(10, 4)], [(10, 4)], STOP),
        (L.Add(), [(10, 4), (10, 4)], [(10, 4)], MERGE),
        (L.Add(), [(10, 4), (1, 4)], [(10, 4)], STOP),
        (L.Concatenate(axis=-1), [(10, 4), (10, 2)], [(10, 6)], MERGE),
        (L.Concatenate(axis=1), [(10, 4), (10, 4)], [(20, 4)], STOP),
        (L.Flatten(), [(10, 4)], [(40,)], STOP),
        (L.GlobalAveragePooling1D(), [(10, 4)], [(4,)], STOP),
        (L.MultiHeadAttention(2, 4), [(10, 4), (10, 4)], [(10, 4)], STOP),
        (MyCustomLayer(), [(10, 4)], [(10, 4)], STOP),
        (L.Conv1D(4, 3, padding="same", data_format="channels_first"), [(10, 4)], [(10, 4)], STOP),
    ]


def test_roles():
    for layer, in_shapes, out_shapes, role in _roles():
        got = layer_rule(layer, in_shapes, out_shapes)
        assert got.role == role, (layer, got)
        assert got.role != STOP or got.reason, layer


def test_rules_match_the_class_not_the_name():
    """A user layer called Dense, or a subclass of Conv1D, is not trusted: it is a stop."""
    import keras

    class Dense(keras.layers.Layer):  # same name as the Keras layer, different maths
        def call(self, x):
            return keras.ops.cumsum(x, axis=1)

    class MyConv(keras.layers.Conv1D):
        pass

    assert layer_rule(Dense(), [(10, 4)], [(10, 4)]).role == STOP
    assert layer_rule(MyConv(4, 3, padding="same"), [(10, 4)], [(10, 4)]).role == STOP


def test_unknown_layer_reason_is_given():
    import keras

    rule = layer_rule(keras.layers.Lambda(lambda x: x), [(10, 4)], [(10, 4)])
    assert rule.role == STOP and rule.reason


# The plan of every hand-written toy model, node by node in graph order: "Class:state" where the
# state is win<width> (recomputed on a window of that width), full or ref. A planner that stopped
# everywhere, or that accelerated a layer it cannot prove local, fails here.
PINNED_PLANS = {
    "conv_flatten_dense": "Conv1D:win5 Flatten:full Dense:full",
    "mini_basset": "Conv1D:win7 BatchNormalization:win7 Activation:win7 MaxPooling1D:win3 Conv1D:win7 BatchNormalization:win7 Activation:win7 MaxPooling1D:win4 Flatten:full Dense:full Dense:full",
    "strided_valid": "Conv1D:win2 Conv1D:win2 Flatten:full Dense:full",
    "strided_same": "Conv1D:win3 Conv1D:win2 Flatten:full Dense:full",
    "dilated_residual": "Conv1D:win7 Conv1D:win11 Add:win11 Conv1D:win19 Add:win19 Conv1D:win35 Add:win35 Conv1D:win64 Add:win64 GlobalAveragePooling1D:full Dense:full Conv1D:win64",
    "causal": "Conv1D:win7 Conv1D:win5 Flatten:full Dense:full",
    "pools_same": "Conv1D:win3 AveragePooling1D:win3 Conv1D:win5 MaxPooling1D:win3 AveragePooling1D:win4 Flatten:full Dense:full",
    "crop_pad_upsample": "Conv1D:win3 Cropping1D:win3 ZeroPadding1D:win3 MaxPooling1D:win2 UpSampling1D:win6 Conv1D:win9 Flatten:full Dense:full",
    "merges": "Conv1D:win3 Conv1D:win5 Add:win5 Subtract:win5 Multiply:win5 Average:win5 Maximum:win5 Minimum:win5 Concatenate:win5 Conv1D:win7 Flatten:full Dense:full",
    "position_wise_layers": "Conv1D:win5 LayerNormalization:win5 PReLU:win5 LeakyReLU:win5 ELU:win5 Dense:win5 Softmax:win5 Dropout:win5 SpatialDropout1D:win5 GaussianNoise:win5 Conv1D:win5 Flatten:full Dense:full",
    "prelu_per_position": "Conv1D:win3 PReLU:full Conv1D:full Flatten:full Dense:full",
    "nested_model": "Conv1D:win3 MaxPooling1D:win2 Conv1D:win4 Conv1D:win6 Activation:win6 Add:win6 Flatten:full Dense:full",
    "shared_layer": "Conv1D:win3 Conv1D:win5 MaxPooling1D:win3 Conv1D:win5 Flatten:full Dense:full",
    "sequential": "Conv1D:win5 MaxPooling1D:win3 Conv1D:win5 Flatten:full Dense:full",
    "reverse_complement_lambda": "Lambda:full Conv1D:win5 Conv1D:full Add:full Flatten:full Dense:full",
    "squeeze_excite": "Conv1D:win3 SqueezeExcite:full Conv1D:full Flatten:full Dense:full",
    "keras_ops_on_tensors": "Conv1D:win3 Multiply:win3 Add:win3 Conv1D:win5 Flatten:full Dense:full",
    "attention": "Conv1D:win5 MaxPooling1D:win3 MultiHeadAttention:full Add:full LayerNormalization:full GlobalMaxPooling1D:full Dense:full Dense:full",
    "protein": "Conv1D:win3 MaxPooling1D:win2 Conv1D:win4 GlobalAveragePooling1D:full Dense:full",
    "first_layer_flatten": "Flatten:full Dense:full",
    "spatial_output": "Conv1D:win5 Conv1D:win7",
    "pooled_dense": "Conv1D:win9 MaxPooling1D:win3 Conv1D:win7 MaxPooling1D:win3 Flatten:full Dense:full Dense:full",
    "positional_embedding_ops": "Conv1D:win3 Add:full Conv1D:full Flatten:full Dense:full",
    "position_weights_ops": "Conv1D:win5 Multiply:win5 Add:win5 Relu:win5 MaxPooling1D:win3 Multiply:full Flatten:full GlobalAveragePooling1D:full Dense:full Dense:full",
    "ops_merges": "Conv1D:win3 Conv1D:win5 Maximum:win5 Concatenate:win5 Add:win5 Conv1D:win7 Flatten:full Dense:full",
    "impostor_layers": "Conv1D:win3 Dense:full Flatten:full Dense:full",
    "channels_first_flatten": "Conv1D:win3 MaxPooling1D:win2 Flatten:full Dense:full Dense:full",
    "permute_reshape_dense": "Conv1D:win3 Reshape:full Dense:full Permute:full Flatten:full Flatten:full Dense:full Dense:full",
}


@pytest.mark.parametrize("build", toy_models.HAND_WRITTEN, ids=lambda f: f.__name__)
def test_plan_of_each_toy_model_is_pinned(build):
    from fastism_dist import FastISM

    ism = FastISM(build(), check=False)
    got = " ".join(f"{cls}:{state}" for _, cls, state in ism.plan.summary())
    assert got == PINNED_PLANS[build.__name__]


@pytest.mark.parametrize("build,incremental,dense", [
    (toy_models.pooled_dense, 2, 1),
    (toy_models.mini_basset, 2, 0),   # its first Dense has too few positions per window group
    (toy_models.channels_first_flatten, 1, 0),  # channels_first Flatten: rows not contiguous
    (toy_models.impostor_layers, 1, 0),  # a user layer called Flatten is not a Flatten
    (toy_models.dilated_residual, 5, 0),  # all but the profile head: its input window is whole
    (toy_models.first_layer_flatten, 0, 0),
])
def test_shortcuts_used(build, incremental, dense):
    """How many Conv1D layers are computed incrementally and Dense layers from changed rows."""
    from fastism_dist import FastISM

    program = FastISM(build(), check=False).program
    assert (len(program.incremental), len(program.dense)) == (incremental, dense)


def test_dense_groups_make_full_calls():
    """Calls cover every mutation once, hold at most batch_size, span only groups whose windows
    fit in the anchor's union window, and are full unless the next group does not fit."""
    from fastism_dist.core.program import DenseGroups

    starts = np.array([[0], [1], [2], [4], [5], [9], [10], [11], [12], [13]], dtype=np.int32)
    dense = DenseGroups(nodes=[7], of_position=None, starts=starts, width=np.array([3]),
                        union=np.array([6]), length=np.array([16]), position_starts=None,
                        union_starts=None)
    sizes = np.random.default_rng(0).integers(1, 40, len(starts))
    groups = np.repeat(np.arange(len(starts)), sizes)
    calls = list(dense.calls(groups, 32))
    covered = np.concatenate([np.arange(len(groups))[rows] for _, _, rows in calls])
    np.testing.assert_array_equal(covered, np.arange(len(groups)))
    for (anchor, merged, rows), following in zip(calls, calls[1:] + [None]):
        members = groups[rows]
        assert 0 < len(members) <= 32 and members[0] == anchor
        assert 0 <= (starts[members] - starts[anchor]).max() <= 3
        assert merged == (len(np.unique(members)) > 1)
        if following is not None and len(members) < 32:
            assert starts[groups[following[2].start], 0] - starts[anchor, 0] > 3
