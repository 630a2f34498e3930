"""Small Keras models for the correctness tests, each sketched in ASCII.

Legend: C conv, P max-pool, A avg-pool, D dense, F flatten, G global pool, + add, | concat,
R residual, X unknown (stop) layer, y output.
"""

import numpy as np


def _k():
    import keras

    return keras, keras.layers


def conv_flatten_dense(length=31, channels=4):
    """in -> C(k5 same relu) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, channels))
    h = L.Conv1D(6, 5, padding="same", activation="relu")(inp)
    return keras.Model(inp, L.Dense(3)(L.Flatten()(h)))


def mini_basset(length=60):
    """in -> C(k7 valid) -> BN -> relu -> P3 -> C(k5) -> BN -> relu -> P2 -> F -> D -> D(sigmoid) -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = inp
    for filters, kernel, pool in ((8, 7, 3), (6, 5, 2)):
        h = L.Conv1D(filters, kernel)(h)
        h = L.BatchNormalization()(h)
        h = L.Activation("relu")(h)
        h = L.MaxPooling1D(pool)(h)
    h = L.Dense(10, activation="relu")(L.Flatten()(h))
    return keras.Model(inp, L.Dense(2, activation="sigmoid")(h))


def strided_valid(length=45):
    """in -> C(k4 s2 valid) -> C(k3 s3 valid) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(5, 4, strides=2, activation="tanh")(inp)
    h = L.Conv1D(5, 3, strides=3)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def strided_same(length=37):
    """in -> C(k5 s2 same) -> C(k2 s2 same, no bias) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(5, 5, strides=2, padding="same", activation="elu")(inp)
    h = L.Conv1D(4, 2, strides=2, padding="same", use_bias=False)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def dilated_residual(length=64, layers=4):
    """in -> C(k7) -> [C(k3 dil 2^i) + skip] x layers -> (C profile -> y1, G -> D -> y2)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 7, padding="same", activation="relu")(inp)
    for i in range(1, layers + 1):
        conv = L.Conv1D(6, 3, padding="same", dilation_rate=2 ** i, activation="relu")(h)
        h = L.Add()([h, conv])
    profile = L.Conv1D(2, 9, padding="same", name="profile")(h)
    counts = L.Dense(2, name="counts")(L.GlobalAveragePooling1D()(h))
    return keras.Model(inp, [profile, counts])


def causal(length=33):
    """in -> C(k4 causal dil 2) -> C(k3 causal s2) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 4, padding="causal", dilation_rate=2, activation="relu")(inp)
    h = L.Conv1D(4, 3, padding="causal", strides=2)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def pools_same(length=41):
    """in -> C -> A(3 s2 same) -> C -> P(4 s3 same) -> A(2 s1 valid) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 3, padding="same", activation="relu")(inp)
    h = L.AveragePooling1D(3, strides=2, padding="same")(h)
    h = L.Conv1D(4, 3, padding="same")(h)
    h = L.MaxPooling1D(4, strides=3, padding="same")(h)
    h = L.AveragePooling1D(2, strides=1)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def crop_pad_upsample(length=30):
    """in -> C -> Crop(2,3) -> ZeroPad(4,1) -> P2 -> Up(3) -> C -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 3, padding="same", activation="relu")(inp)
    h = L.Cropping1D((2, 3))(h)
    h = L.ZeroPadding1D((4, 1))(h)
    h = L.MaxPooling1D(2)(h)
    h = L.UpSampling1D(3)(h)
    h = L.Conv1D(3, 4, padding="same")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def merges(length=32):
    """in -> C_a, C_b -> (a+b, a-b, a*b, avg, max, min) -> | -> C -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    a = L.Conv1D(3, 3, padding="same", activation="sigmoid")(inp)
    b = L.Conv1D(3, 5, padding="same")(inp)
    parts = [L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]),
             L.Maximum()([a, b]), L.Minimum()([a, b])]
    h = L.Concatenate()(parts)
    h = L.Conv1D(4, 3, padding="same")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def position_wise_layers(length=29):
    """in -> C -> LN -> PReLU(shared) -> LeakyReLU -> ELU -> Dense3D -> softmax -> Dropout -> C(k1) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 5, padding="same")(inp)
    h = L.LayerNormalization()(h)
    h = L.PReLU(shared_axes=[1])(h)
    h = L.LeakyReLU(0.2)(h)
    h = L.ELU()(h)
    h = L.Dense(5)(h)
    h = L.Softmax()(h)
    h = L.Dropout(0.5)(h)
    h = L.SpatialDropout1D(0.3)(h)
    h = L.GaussianNoise(0.3)(h)
    h = L.Conv1D(3, 1)(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def prelu_per_position(length=20):
    """in -> C -> PReLU(alpha per position: stop) -> C -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(3, 3, padding="same")(inp)
    h = L.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.0, 0.5, seed=1))(h)
    h = L.Conv1D(3, 3, padding="same")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def nested_model(length=36):
    """in -> [inner: C -> P2 -> C] -> [inner again via shared Sequential] -> F -> D -> y"""
    keras, L = _k()
    inner_in = keras.Input((length, 4))
    inner_out = L.Conv1D(5, 3, padding="same", activation="relu")(inner_in)
    inner_out = L.MaxPooling1D(2)(inner_out)
    inner = keras.Model(inner_in, L.Conv1D(4, 3, padding="same")(inner_out), name="inner")
    block = keras.Sequential([L.Conv1D(4, 3, padding="same", activation="relu"), L.Activation("tanh")],
                             name="block")
    inp = keras.Input((length, 4))
    h = inner(inp)
    h = L.Add()([block(h), h])
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def shared_layer(length=30):
    """in -> C_shared -> P2 -> C_shared (same weights, applied twice) -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    first = L.Conv1D(4, 3, padding="same", activation="relu")
    shared = L.Conv1D(4, 3, padding="same", activation="relu")
    h = shared(first(inp))
    h = L.MaxPooling1D(2)(h)
    h = shared(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def sequential(length=25):
    """Sequential: in -> C -> P2 -> C -> F -> D -> y"""
    keras, L = _k()
    return keras.Sequential([
        keras.Input((length, 4)), L.Conv1D(4, 5, activation="relu"), L.MaxPooling1D(2),
        L.Conv1D(3, 3), L.Flatten(), L.Dense(2),
    ])


def reverse_complement_lambda(length=28):
    """in -> (C, X=rc flip -> C) -> + -> F -> D -> y   (Lambda is unknown: a stop layer)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    conv = L.Conv1D(4, 5, padding="same", activation="relu")
    flipped = L.Lambda(lambda t: t[:, ::-1, ::-1])(inp)
    h = L.Add()([conv(inp), conv(flipped)])
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def squeeze_excite(length=30):
    """in -> C -> X=squeeze-excitation (custom layer) -> C -> F -> D -> y"""
    keras, L = _k()

    class SqueezeExcite(L.Layer):
        def build(self, shape):
            self.dense = L.Dense(shape[-1], activation="sigmoid")
            self.dense.build((None, shape[-1]))

        def call(self, x):
            gate = self.dense(keras.ops.mean(x, axis=1, keepdims=True))
            return x * gate

    inp = keras.Input((length, 4))
    h = L.Conv1D(5, 3, padding="same", activation="relu")(inp)
    h = SqueezeExcite()(h)
    h = L.Conv1D(3, 3, padding="same")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def keras_ops_on_tensors(length=24):
    """in -> C -> ops(h * 2 + 1: scalar constants, position-wise) -> C -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 3, padding="same")(inp)
    h = keras.ops.add(keras.ops.multiply(h, 2.0), 1.0)
    h = L.Conv1D(3, 3, padding="same")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def positional_embedding_ops(length=20):
    """in -> C -> ops.add(h, E (L, C)) -> C -> F -> D -> y   (E varies along length: a stop)"""
    keras, L = _k()
    rng = np.random.default_rng(0)
    inp = keras.Input((length, 4))
    h = L.Conv1D(5, 3, padding="same")(inp)
    h = keras.ops.add(h, rng.standard_normal((length, 5)).astype("float32"))
    h = L.Conv1D(3, 3, padding="same", activation="relu")(h)
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def position_weights_ops(length=22):
    """in -> C -> ops.multiply(h, w (1, L, 1)) -> G -> D -> y1 ;
       C -> ops.multiply(h, c (C,)) -> ops.add(h, b (1, 1, C)) -> ops.relu -> P2 -> F -> D -> y2"""
    keras, L = _k()
    rng = np.random.default_rng(1)
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 5, padding="same")(inp)
    weighted = keras.ops.multiply(h, rng.uniform(0.5, 1.5, (1, length, 1)).astype("float32"))
    y1 = L.Dense(2, name="y1")(L.GlobalAveragePooling1D()(weighted))
    g = keras.ops.multiply(h, rng.uniform(0.5, 1.5, (4,)).astype("float32"))
    g = keras.ops.relu(keras.ops.add(g, rng.standard_normal((1, 1, 4)).astype("float32")))
    y2 = L.Dense(2, name="y2")(L.Flatten()(L.MaxPooling1D(2)(g)))
    return keras.Model(inp, [y1, y2])


def ops_merges(length=24):
    """in -> C1, C2 -> ops.concatenate(-1) | ops.maximum(C1, C2) -> ops.add -> ... -> F -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    a = L.Conv1D(3, 3, padding="same", activation="relu")(inp)
    b = L.Conv1D(3, 5, padding="same")(inp)
    joined = keras.ops.concatenate([a, keras.ops.maximum(a, b)], axis=-1)
    h = L.Conv1D(2, 3, padding="same")(keras.ops.add(joined, joined))
    return keras.Model(inp, L.Dense(2)(L.Flatten()(h)))


def impostor_layers(length=18):
    """in -> C -> Dense* (user layer named Dense: cumsum along length) -> Flatten* (user layer
    named Flatten: reverses positions, then flattens) -> D -> y   (both are stops)"""
    keras, L = _k()

    class Dense(L.Layer):
        def call(self, x):
            return keras.ops.cumsum(x, axis=1)

    class Flatten(L.Layer):
        def call(self, x):
            return keras.ops.reshape(x[:, ::-1], (-1, x.shape[1] * x.shape[2]))

    inp = keras.Input((length, 4))
    h = L.Conv1D(3, 3, padding="same", activation="relu")(inp)
    return keras.Model(inp, L.Dense(2)(Flatten()(Dense()(h))))


def channels_first_flatten(length=40):
    """in -> C(k3 same) -> P2 -> F(channels_first) -> D(relu) -> D -> y
    (incremental dense needs channels-last rows: here the Dense is recomputed in full)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.MaxPooling1D(2)(L.Conv1D(3, 3, padding="same", activation="relu")(inp))
    h = L.Dense(6, activation="relu")(L.Flatten(data_format="channels_first")(h))
    return keras.Model(inp, L.Dense(2)(h))


def permute_reshape_dense(length=16):
    """in -> C -> Permute(2, 1) -> F -> D -> y1 ; C -> Reshape(L/2, 2C) -> D -> F -> D -> y2"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(3, 3, padding="same", activation="relu")(inp)
    y1 = L.Dense(2, name="y1")(L.Flatten()(L.Permute((2, 1))(h)))
    r = L.Dense(2)(L.Reshape((length // 2, 6))(h))
    y2 = L.Dense(1, name="y2")(L.Flatten()(r))
    return keras.Model(inp, [y1, y2])


def attention(length=32):
    """in -> C -> P2 -> MHA(self) + skip -> LN -> D3D -> y_bins ; G -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(8, 5, padding="same", activation="relu")(inp)
    h = L.MaxPooling1D(2)(h)
    att = L.MultiHeadAttention(num_heads=2, key_dim=4)(h, h)
    h = L.LayerNormalization()(L.Add()([h, att]))
    bins = L.Dense(3, name="bins")(h)
    pooled = L.Dense(2, name="pooled")(L.GlobalMaxPooling1D()(h))
    return keras.Model(inp, [bins, pooled])


def two_inputs_dense_join(length=26):
    """seq -> C -> F -|
                      D -> y        (features join at the dense layer)
       feats (5,) ----|"""
    keras, L = _k()
    seq = keras.Input((length, 4), name="seq")
    feats = keras.Input((5,), name="feats")
    h = L.Flatten()(L.Conv1D(4, 3, padding="same", activation="relu")(seq))
    h = L.Concatenate()([h, L.Dense(4)(feats)])
    return keras.Model([feats, seq], L.Dense(2)(h))


def two_inputs_track_join(length=27):
    """track (L, 2) -> C -|
                          | -> C -> F -> D -> y1 ; track -> G -> D -> y2 (independent of seq)
       seq -> C ----------|"""
    keras, L = _k()
    track = keras.Input((length, 2), name="track")
    seq = keras.Input((length, 4), name="seq")
    t = L.Conv1D(3, 3, padding="same")(track)
    s = L.Conv1D(3, 5, padding="same", activation="relu")(seq)
    h = L.Conv1D(3, 3, padding="same")(L.Concatenate()([t, s]))
    y1 = L.Dense(2, name="y1")(L.Flatten()(h))
    y2 = L.Dense(1, name="y2")(L.GlobalAveragePooling1D()(track))
    return keras.Model([track, seq], [y1, y2])


def protein(length=21, alphabet=20):
    """in (L, 20) -> C(k3) -> P2 -> C -> G -> D -> y"""
    keras, L = _k()
    inp = keras.Input((length, alphabet))
    h = L.Conv1D(6, 3, padding="same", activation="relu")(inp)
    h = L.MaxPooling1D(2)(h)
    h = L.Conv1D(4, 3)(h)
    return keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling1D()(h)))


def first_layer_flatten(length=12):
    """in -> F -> D -> y   (a stop layer right on the input)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(inp)))


def pooled_dense(length=160):
    """in -> C(k9 same) -> P4 -> C(k5 same, relu) -> P4 -> F -> D(relu) -> D -> y  (incremental dense)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(6, 9, padding="same")(inp)
    h = L.MaxPooling1D(4)(h)
    h = L.Conv1D(5, 5, padding="same", activation="relu")(h)
    h = L.MaxPooling1D(4)(h)
    h = L.Dense(8, activation="relu")(L.Flatten()(h))
    return keras.Model(inp, L.Dense(2)(h))


def spatial_output(length=30):
    """in -> C(k5 same) -> C(k3 valid) -> y (per-position output, no stop layer)"""
    keras, L = _k()
    inp = keras.Input((length, 4))
    h = L.Conv1D(4, 5, padding="same", activation="relu")(inp)
    return keras.Model(inp, L.Conv1D(2, 3)(h))


HAND_WRITTEN = [
    conv_flatten_dense, mini_basset, strided_valid, strided_same, dilated_residual, causal,
    pools_same, crop_pad_upsample, merges, position_wise_layers, prelu_per_position, nested_model,
    shared_layer, sequential, reverse_complement_lambda, squeeze_excite, keras_ops_on_tensors,
    attention, protein, first_layer_flatten, spatial_output, pooled_dense,
    positional_embedding_ops, position_weights_ops, ops_merges, impostor_layers,
    channels_first_flatten, permute_reshape_dense,
]


# ---------------------------------------------------------------------------------------------
# Randomised architectures
# ---------------------------------------------------------------------------------------------

def random_architecture(seed):
    """A random conv/pool/merge tower with random heads, drawn from ``seed``.

    Kernel sizes, dilations, strides, paddings, pools, residual adds, concatenations, crops,
    pads, upsampling, one to three heads; odd lengths.
    """
    keras, L = _k()
    rng = np.random.default_rng(seed)
    length = int(rng.integers(25, 70))
    inp = keras.Input((length, 4))
    h = inp
    for _ in range(int(rng.integers(2, 6))):
        h = _random_block(rng, L, h)
    heads = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["flatten", "global", "profile"])
        if kind == "flatten":
            heads.append(L.Dense(int(rng.integers(1, 4)))(L.Flatten()(h)))
        elif kind == "global":
            pool = L.GlobalMaxPooling1D() if rng.random() < 0.5 else L.GlobalAveragePooling1D()
            heads.append(L.Dense(int(rng.integers(1, 4)))(pool(h)))
        else:
            heads.append(L.Conv1D(2, int(rng.integers(1, 6)), padding="same")(h))
    return keras.Model(inp, heads)


def _random_block(rng, L, h):
    length, channels = h.shape[1], h.shape[2]
    kind = rng.choice(["conv", "conv", "pool", "residual", "branch", "crop_pad", "upsample", "posw"])
    filters = int(rng.integers(2, 7))
    if kind == "conv" or length < 12:
        kernel = int(rng.integers(1, 8))
        padding = str(rng.choice(["same", "valid", "causal"]))
        if rng.random() < 0.3 and kernel * 2 < length:
            return L.Conv1D(filters, kernel, strides=int(rng.integers(2, 4)),
                            padding="valid" if padding == "causal" else padding)(h)
        dilation = int(rng.integers(1, 4))
        if padding == "valid" and dilation * (kernel - 1) >= length - 4:
            padding = "same"
        return L.Conv1D(filters, kernel, dilation_rate=dilation, padding=padding,
                        activation=str(rng.choice(["relu", "tanh", "linear"])))(h)
    if kind == "pool":
        size = int(rng.integers(2, 5))
        stride = int(rng.integers(1, size + 1))
        pool = L.MaxPooling1D if rng.random() < 0.5 else L.AveragePooling1D
        return pool(size, strides=stride, padding=str(rng.choice(["same", "valid"])))(h)
    if kind == "residual":
        conv = L.Conv1D(channels, int(rng.integers(1, 6)), padding="same",
                        dilation_rate=int(rng.integers(1, 4)), activation="relu")(h)
        return L.Add()([h, conv])
    if kind == "branch":
        a = L.Conv1D(filters, int(rng.integers(1, 6)), padding="same")(h)
        b = L.MaxPooling1D(3, strides=1, padding="same")(h)
        return L.Concatenate()([a, b])
    if kind == "crop_pad":
        h = L.Cropping1D((int(rng.integers(0, 3)), int(rng.integers(0, 3))))(h)
        return L.ZeroPadding1D((int(rng.integers(0, 3)), int(rng.integers(0, 3))))(h)
    if kind == "upsample":
        return L.UpSampling1D(int(rng.integers(2, 3)))(h) if length < 60 else h
    h = L.BatchNormalization()(h)
    return L.Activation("relu")(h)


def randomize_batch_norm(model, seed=0):
    """Give every BatchNormalization layer non-trivial statistics."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if type(layer).__name__ == "BatchNormalization":
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, size).astype("float32"))
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
