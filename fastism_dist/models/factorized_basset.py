"""Factorized Basset (Wnuk et al. 2019) as benchmarked by fastISM (Nair et al. 2022)."""

from __future__ import annotations

from string import ascii_lowercase

from fastism_dist.models.basset import (
    SEQUENCE_INPUT_NAME,
    check_positive,
    conv_bn_relu,
    dense_head,
    pooled_length,
    seeded,
)

#: (filters, kernel) of each convolution, one tuple of convolutions per pooled block.
FACTORIZED_BLOCKS = (
    ((48, 3), (64, 3), (100, 3), (150, 7), (300, 7)),
    ((200, 7), (200, 3), (200, 3)),
    ((200, 7),),
)


def factorized_basset(seq_len=1000, n_outputs=164, blocks=FACTORIZED_BLOCKS, pools=(3, 4, 4),
                      dense=(1000, 1000), dropout=0.3, alphabet=4, batch_norm=True,
                      output_activation="sigmoid", seed=None):
    """Build Factorized Basset: Basset with its wide convolutions replaced by stacks of
    narrower ones (Wnuk et al. 2019), in the form fastISM benchmarked it.

    The 19-wide first layer becomes five convolutions (k = 3, 3, 3, 7, 7: the same 19-base
    receptive field), the 11-wide second layer three (k = 7, 3, 3: 11 bases) and the third
    stays a single k=7 convolution. Every convolution is Conv1D ('same' padding, linear)
    -> BatchNormalization -> ReLU; the pools are valid with stride = pool size; the dense head
    is Basset's. Layers (defaults; ``L`` = ``seq_len``)::

        sequence  Input                  (L, 4)
        conv1a    Conv1D  48, k=3        (L, 48)      each conv -> _bn -> _relu
        conv1b    Conv1D  64, k=3        (L, 64)
        conv1c    Conv1D 100, k=3        (L, 100)
        conv1d    Conv1D 150, k=7        (L, 150)
        conv1e    Conv1D 300, k=7        (L, 300)
        pool1     MaxPooling1D 3         (L//3, 300)
        conv2a    Conv1D 200, k=7        (L//3, 200)
        conv2b    Conv1D 200, k=3        (L//3, 200)
        conv2c    Conv1D 200, k=3        (L//3, 200)
        pool2     MaxPooling1D 4         (L//12, 200)
        conv3a    Conv1D 200, k=7        (L//12, 200)
        pool3     MaxPooling1D 4         (L//48, 200)
        flatten   Flatten                (L//48 * 200,)
        dense1    Dense 1000 -> dense1_bn -> dense1_relu -> dense1_dropout 0.3
        dense2    Dense 1000 -> dense2_bn -> dense2_relu -> dense2_dropout 0.3
        output    Dense 164, sigmoid

    Parameters
    ----------
    seq_len : int
        Input length ``L``. Default is 1000.
    n_outputs : int
        Number of output tasks. Default is 164.
    blocks : tuple of tuple of (int, int)
        Per pooled block, the ``(filters, kernel)`` of each convolution in order. Default is
        ``FACTORIZED_BLOCKS`` (the layer list above).
    pools : tuple of int
        Max-pool size (and stride) after each block. Default is (3, 4, 4).
    dense : tuple of int
        Hidden fully connected sizes. Default is (1000, 1000).
    dropout : float
        Dropout rate after each hidden Dense. Default is 0.3.
    alphabet : int
        Channels ``C`` of the one-hot input. Default is 4.
    batch_norm : bool
        Insert BatchNormalization after every convolution and hidden Dense. Default is True.
    output_activation : str or None
        Activation of the output layer. Default is "sigmoid".
    seed : int or None
        Seed making the initial weights deterministic. Default is None (random).

    Returns
    -------
    keras.Model
        Uncompiled; input ``"sequence"`` of shape (B, L, C), output ``"output"`` of shape
        (B, n_outputs).
    """
    import keras
    from keras import layers

    if len(blocks) != len(pools):
        raise ValueError(f"blocks and pools need one entry per block, got {len(blocks)} and "
                         f"{len(pools)}")
    if any(len(block) == 0 or len(block) > 26 for block in blocks):
        raise ValueError("each block needs 1 to 26 convolutions")
    for block in blocks:
        for conv in block:
            if len(conv) != 2:
                raise ValueError(f"each convolution is a (filters, kernel) pair, got {conv!r}")
            check_positive(filters=conv[0], kernels=conv[1])
    check_positive(seq_len=seq_len, n_outputs=n_outputs, pools=pools, dense=dense,
                   alphabet=alphabet)
    pooled_length(seq_len, pools)
    with seeded(seed):
        inp = keras.Input(shape=(seq_len, alphabet), name=SEQUENCE_INPUT_NAME)
        x = inp
        for i, (block, pool) in enumerate(zip(blocks, pools), start=1):
            for j, (f, k) in enumerate(block):
                x = conv_bn_relu(x, f, k, batch_norm, name=f"conv{i}{ascii_lowercase[j]}")
            x = layers.MaxPooling1D(pool, name=f"pool{i}")(x)
        out = dense_head(x, dense, dropout, batch_norm, n_outputs, output_activation)
        return keras.Model(inp, out, name="factorized_basset")
