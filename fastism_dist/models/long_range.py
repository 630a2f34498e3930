"""A small Enformer-like long-range model: convolution/pooling tower, then transformer blocks."""

from __future__ import annotations

from fastism_dist.models.basset import (
    SEQUENCE_INPUT_NAME,
    check_positive,
    pooled_length,
    seeded,
)


def long_range(seq_len=2048, filters=64, n_conv_blocks=4, n_attention=2, heads=4, key_dim=32,
               n_outputs=8, alphabet=4, stem_kernel=15, conv_kernel=5, ff_multiplier=2,
               pooled_head=False, seed=None):
    """Build an Enformer-like model (Avsec et al. 2021b) at benchmark scale.

    Like Enformer (and Akita) it first shrinks the sequence with convolutions and pooling,
    whose effect of a mutation is local, then mixes all bins with self-attention, where ISM
    has to recompute everything: the fast/naive gap is set by the share of compute in the
    tower. Layers (defaults; ``L`` = ``seq_len``, ``L' = L // 2**n_conv_blocks``)::

        sequence     Input                               (L, 4)
        stem_conv    Conv1D 64, k=15, same, linear       (L, 64)
        conv1        Conv1D 64, k=5, same, linear        (L, 64)
        conv1_bn     BatchNormalization
        conv1_gelu   Activation gelu
        pool1        MaxPooling1D 2                      (L//2, 64)
        ...          conv2..conv4 blocks alike           (L', 64)   L' = 128 at 2 kb
        mha1         MultiHeadAttention 4 heads, key 32, self-attention over the L' bins
        mha1_add     Add [input, mha1]
        mha1_norm    LayerNormalization
        ff1_in       Dense 128 (ff_multiplier * filters), relu, per bin
        ff1_out      Dense 64, per bin
        ff1_add      Add [mha1_norm, ff1_out]
        ff1_norm     LayerNormalization                  (L', 64)
        ...          mha2 / ff2 alike
        tracks       Dense 8, softplus, per bin          (L', 8)    output 1
        bins_gap     GlobalAveragePooling1D              (64,)      only if pooled_head
        pooled       Dense 8                             (8,)       output 2, only if pooled_head

    There is no positional encoding (it would need a custom layer, which a plain ``.keras``
    file could not load without this package), so the attention blocks see bin positions only
    through the tower's edge effects: a model for measuring ISM cost and exactness, not a
    replica to train. Attention has no dropout, so inference is deterministic.

    Parameters
    ----------
    seq_len : int
        Input length ``L``. Default is 2048.
    filters : int
        Channels of the tower and of the transformer blocks. Default is 64.
    n_conv_blocks : int
        Number of conv -> BN -> GELU -> MaxPool(2) blocks. Default is 4.
    n_attention : int
        Number of transformer blocks. Default is 2.
    heads : int
        Attention heads per block. Default is 4.
    key_dim : int
        Size of each head's queries and keys. Default is 32.
    n_outputs : int
        Tracks predicted per bin. Default is 8.
    alphabet : int
        Channels ``C`` of the one-hot input. Default is 4.
    stem_kernel : int
        Kernel size of the stem convolution. Default is 15.
    conv_kernel : int
        Kernel size of the tower convolutions. Default is 5.
    ff_multiplier : int
        Width of the feed-forward hidden layer as a multiple of ``filters``. Default is 2.
    pooled_head : bool
        Also output ``"pooled"``: the bins averaged, then a Dense. Default is False.
    seed : int or None
        Seed making the initial weights deterministic. Default is None (random).

    Returns
    -------
    keras.Model
        Uncompiled; input ``"sequence"`` of shape (B, L, C); output ``"tracks"`` of shape
        (B, L', n_outputs), and with ``pooled_head`` a second output ``"pooled"`` of shape
        (B, n_outputs).
    """
    import keras
    from keras import layers

    check_positive(seq_len=seq_len, filters=filters, heads=heads, key_dim=key_dim,
                   n_outputs=n_outputs, alphabet=alphabet, stem_kernel=stem_kernel,
                   conv_kernel=conv_kernel, ff_multiplier=ff_multiplier)
    for name, value in (("n_conv_blocks", n_conv_blocks), ("n_attention", n_attention)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    pooled_length(seq_len, (2,) * n_conv_blocks)
    with seeded(seed):
        inp = keras.Input(shape=(seq_len, alphabet), name=SEQUENCE_INPUT_NAME)
        x = layers.Conv1D(filters, stem_kernel, padding="same", name="stem_conv")(inp)
        for i in range(1, n_conv_blocks + 1):
            x = layers.Conv1D(filters, conv_kernel, padding="same", name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = layers.Activation("gelu", name=f"conv{i}_gelu")(x)
            x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
        for j in range(1, n_attention + 1):
            att = layers.MultiHeadAttention(heads, key_dim, name=f"mha{j}")(x, x)
            x = layers.Add(name=f"mha{j}_add")([x, att])
            x = layers.LayerNormalization(name=f"mha{j}_norm")(x)
            ff = layers.Dense(ff_multiplier * filters, activation="relu", name=f"ff{j}_in")(x)
            ff = layers.Dense(filters, name=f"ff{j}_out")(ff)
            x = layers.Add(name=f"ff{j}_add")([x, ff])
            x = layers.LayerNormalization(name=f"ff{j}_norm")(x)
        outputs = [layers.Dense(n_outputs, activation="softplus", name="tracks")(x)]
        if pooled_head:
            pooled = layers.GlobalAveragePooling1D(name="bins_gap")(x)
            outputs.append(layers.Dense(n_outputs, name="pooled")(pooled))
        return keras.Model(inp, outputs if pooled_head else outputs[0], name="long_range")
