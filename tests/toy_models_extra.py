"""Small Keras models using the convolution variants, TimeDistributed and identity reshapes.

Legend: C conv, GC grouped conv, DW depthwise conv, SC separable conv, T transposed conv,
TD(.) TimeDistributed, BN batch norm, P max-pool, G global pool, F flatten, D dense, + add,
y output.
"""

import numpy as np


def _k():
    import keras

    return keras, keras.layers


def around(make_layer, length=20, channels=4, conv_before=True):
    """in -> [C(k3 same 6 relu)] -> layer -> F -> D(2) -> y

    ``make_layer()`` builds the layer under test; with ``conv_before`` it reads a 6-channel
    windowed tensor, else the one-hot sequence itself.
    """
    keras, L = _k()
    keras.utils.set_random_seed(length * 7 + channels)
    inp = keras.Input((length, channels))
    h = L.Conv1D(6, 3, padding="same", activation="relu")(inp) if conv_before else inp
    h = make_layer()(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def legnet_blocks(length=40):
    """LegNet-like grouped blocks:

    in -> C(k5 same 8 silu) -> GC(k5 same g4) -> BN -> silu -> C(k1 8) -+-> GC(k3 s2 valid g2)
       `------------------------------------------------------------'      -> G -> D -> y
    """
    keras, L = _k()
    keras.utils.set_random_seed(11)
    inp = keras.Input((length, 4))
    h = L.Conv1D(8, 5, padding="same", activation="silu")(inp)
    block = L.Conv1D(8, 5, padding="same", groups=4)(h)
    block = L.Activation("silu")(L.BatchNormalization()(block))
    h = L.Add()([h, L.Conv1D(8, 1)(block)])
    h = L.Conv1D(8, 3, strides=2, groups=2, activation="relu")(h)
    return keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling1D()(h)))


def depthwise_separable(length=36):
    """in -> C(k3 same 6) -> DW(k5 same x2) -> relu -> SC(8, k3 same dil2) -> DW(k3 s2 valid, no
    bias) -> SC(4, k2 s2 same x2 relu) -> F -> D -> y"""
    keras, L = _k()
    keras.utils.set_random_seed(12)
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 3, padding="same")(inp)
    h = L.Activation("relu")(L.DepthwiseConv1D(5, padding="same", depth_multiplier=2)(h))
    h = L.SeparableConv1D(8, 3, padding="same", dilation_rate=2)(h)
    h = L.DepthwiseConv1D(3, strides=2, use_bias=False)(h)
    h = L.SeparableConv1D(4, 2, strides=2, padding="same", depth_multiplier=2,
                          activation="relu")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def bpnet_transpose(length=48):
    """BPNet with the original transposed-convolution profile head:

    in -> C(k9 same 8 relu) -> [C(k3 dil 2^i same relu) + skip] x 2 -> T(2, k11 same) -> profile
                                                                      `-> G -> D(1) -> counts
    """
    keras, L = _k()
    keras.utils.set_random_seed(13)
    inp = keras.Input((length, 4))
    h = L.Conv1D(8, 9, padding="same", activation="relu")(inp)
    for i in (1, 2):
        h = L.Add()([h, L.Conv1D(8, 3, padding="same", dilation_rate=2 ** i,
                                 activation="relu")(h)])
    profile = L.Conv1DTranspose(2, 11, padding="same", name="profile")(h)
    counts = L.Dense(1, name="counts")(L.GlobalAveragePooling1D()(h))
    return keras.Model(inp, [profile, counts])


def strided_transpose(length=30):
    """in -> C(k4 s2 same 6 relu) -> T(5, k4 s2 same relu) -> T(3, k3 s3 valid) -> F -> D -> y
    (an encoder-decoder: the length halves, doubles, then triples)"""
    keras, L = _k()
    keras.utils.set_random_seed(14)
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 4, strides=2, padding="same", activation="relu")(inp)
    h = L.Conv1DTranspose(5, 4, strides=2, padding="same", activation="relu")(h)
    h = L.Conv1DTranspose(3, 3, strides=3)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def time_distributed(length=24):
    """in -> C(k3 same 6) -> TD(D(5 relu)) -> TD(BN) -> TD(softmax) -> C(k3 same 4) -> F -> D -> y"""
    keras, L = _k()
    keras.utils.set_random_seed(15)
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 3, padding="same")(inp)
    h = L.TimeDistributed(L.Dense(5, activation="relu"))(h)
    norm = L.TimeDistributed(L.BatchNormalization())
    h = L.TimeDistributed(L.Softmax())(norm(h))
    h = L.Conv1D(4, 3, padding="same")(h)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    randomize_batch_norm(norm.layer, seed=15)
    return model


def identity_reshapes(length=20):
    """in -> C(k3 same 5) -> Reshape((L, 5)) -> Permute((1, 2)) -> Reshape((-1, 5)) -> C(k3 4)
    -> F -> D -> y"""
    keras, L = _k()
    keras.utils.set_random_seed(16)
    inp = keras.Input((length, 4))
    h = L.Conv1D(5, 3, padding="same", activation="relu")(inp)
    h = L.Reshape((-1, 5))(L.Permute((1, 2))(L.Reshape((length, 5))(h)))
    h = L.Conv1D(4, 3)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def randomize_batch_norm(layer, seed=0):
    """Give one BatchNormalization layer non-trivial statistics."""
    rng = np.random.default_rng(seed)
    size = layer.moving_mean.shape
    layer.moving_mean.assign(rng.normal(0, 0.5, size).astype("float32"))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
    layer.gamma.assign(rng.uniform(0.5, 1.5, size).astype("float32"))
    layer.beta.assign(rng.normal(0, 0.3, size).astype("float32"))
    return layer


HAND_WRITTEN = [legnet_blocks, depthwise_separable, bpnet_transpose, strided_transpose,
                time_distributed, identity_reshapes]
