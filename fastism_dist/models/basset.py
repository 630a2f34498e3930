"""Basset (Kelley et al. 2016) as benchmarked by fastISM (Nair et al. 2022), plus the helpers
the other reference builders share: deterministic weight seeding, the Basset dense head and
``randomize_batch_norm``.

TensorFlow / Keras are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np

SEQUENCE_INPUT_NAME = "sequence"


@contextlib.contextmanager
def seeded(seed):
    """Make the Keras layers built inside the block get deterministic initial weights.

    Keras 3 draws the seed of every initializer (and of every Dropout seed generator) created
    without an explicit seed from Python's ``random`` module, so seeding that module while the
    layers are built fixes every weight. The caller's ``random`` state is restored afterwards;
    NumPy's and TensorFlow's global generators are not touched.

    Parameters
    ----------
    seed : int or None
        The seed. ``None`` leaves everything as it is (weights differ on every build).
    """
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(state)


def check_positive(**values):
    """Raise ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in values.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 1:
                raise ValueError(f"{name} must be positive integer(s), got {value!r}")


def dense_head(x, dense, dropout, batch_norm, n_outputs, output_activation, prefix="dense"):
    """Flatten, then per hidden size Dense -> [BatchNormalization] -> ReLU -> Dropout, then the
    output Dense named ``"output"``.

    Parameters
    ----------
    x : KerasTensor of shape (B, L', F)
        Output of the convolution tower.
    dense : tuple of int
        Hidden layer sizes.
    dropout : float
        Dropout rate after each hidden layer (inactive at inference). ``0`` adds no Dropout.
    batch_norm : bool
        Whether each hidden Dense is followed by BatchNormalization.
    n_outputs : int
        Size of the output layer.
    output_activation : str or None
        Activation of the output layer.
    prefix : str
        Prefix of the hidden layers' names. Default is ``"dense"``.

    Returns
    -------
    KerasTensor of shape (B, n_outputs)
    """
    from keras import layers

    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense, start=1):
        x = layers.Dense(units, name=f"{prefix}{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{prefix}{i}_bn")(x)
        x = layers.Activation("relu", name=f"{prefix}{i}_relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{prefix}{i}_dropout")(x)
    return layers.Dense(n_outputs, activation=output_activation, name="output")(x)


def conv_bn_relu(x, filters, kernel, batch_norm, name):
    """Conv1D ('same' padding, linear) -> [BatchNormalization] -> ReLU, layers named
    ``name``, ``name + "_bn"``, ``name + "_relu"``.

    Parameters
    ----------
    x : KerasTensor of shape (B, L, C_in)
    filters, kernel : int
        Conv1D filters and kernel size.
    batch_norm : bool
        Whether to insert BatchNormalization between the convolution and the ReLU.
    name : str
        Name of the convolution.

    Returns
    -------
    KerasTensor of shape (B, L, filters)
    """
    from keras import layers

    x = layers.Conv1D(filters, kernel, padding="same", name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def pooled_length(seq_len, pools):
    """Length after a chain of valid max-pools with ``strides == pool_size``; ValueError if 0."""
    length = seq_len
    for pool in pools:
        length //= pool
        if length < 1:
            raise ValueError(
                f"seq_len={seq_len} is too short for pools {tuple(pools)}: the tower output "
                "would be empty"
            )
    return length


def basset(seq_len=1000, n_outputs=164, filters=(300, 200, 200), kernels=(19, 11, 7),
           pools=(3, 4, 4), dense=(1000, 1000), dropout=0.3, alphabet=4, batch_norm=True,
           output_activation="sigmoid", seed=None):
    """Build Basset (Kelley et al. 2016) in the form fastISM benchmarked it.

    Layers (defaults in brackets; ``L`` = ``seq_len``)::

        sequence  Input                    (L, 4)
        conv1     Conv1D 300, k=19, same   (L, 300)      -> conv1_bn -> conv1_relu
        pool1     MaxPooling1D 3           (L//3, 300)
        conv2     Conv1D 200, k=11, same   (L//3, 200)   -> conv2_bn -> conv2_relu
        pool2     MaxPooling1D 4           (L//12, 200)
        conv3     Conv1D 200, k=7, same    (L//12, 200)  -> conv3_bn -> conv3_relu
        pool3     MaxPooling1D 4           (L//48, 200)
        flatten   Flatten                  (L//48 * 200,)
        dense1    Dense 1000 -> dense1_bn -> dense1_relu -> dense1_dropout 0.3
        dense2    Dense 1000 -> dense2_bn -> dense2_relu -> dense2_dropout 0.3
        output    Dense 164, sigmoid

    As in the fastISM paper (Fig. 2) the convolutions use 'same' padding and the pools are
    valid with stride = pool size. At 1 kb the multiply-adds per sequence are then exactly
    conv 22.8 M + 219.78 M + 23.24 M and dense 4 M + 1 M + 0.164 M. Each
    convolution is linear, so the first op on the sequence is a linear Conv1D.

    Parameters
    ----------
    seq_len : int
        Input length ``L``. Default is 1000.
    n_outputs : int
        Number of output tasks. Default is 164 (Basset's DNase-seq cell types).
    filters : tuple of int
        Filters of each convolution. Default is (300, 200, 200).
    kernels : tuple of int
        Kernel size of each convolution. Default is (19, 11, 7).
    pools : tuple of int
        Max-pool size (and stride) after each convolution. Default is (3, 4, 4).
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

    if not len(filters) == len(kernels) == len(pools):
        raise ValueError(
            f"filters, kernels and pools need one entry per convolution, got {len(filters)}, "
            f"{len(kernels)} and {len(pools)}"
        )
    check_positive(seq_len=seq_len, n_outputs=n_outputs, filters=filters, kernels=kernels,
                   pools=pools, dense=dense, alphabet=alphabet)
    pooled_length(seq_len, pools)
    with seeded(seed):
        inp = keras.Input(shape=(seq_len, alphabet), name=SEQUENCE_INPUT_NAME)
        x = inp
        for i, (f, k, p) in enumerate(zip(filters, kernels, pools), start=1):
            x = conv_bn_relu(x, f, k, batch_norm, name=f"conv{i}")
            x = layers.MaxPooling1D(p, name=f"pool{i}")(x)
        out = dense_head(x, dense, dropout, batch_norm, n_outputs, output_activation)
        return keras.Model(inp, out, name="basset")


def randomize_batch_norm(model, seed=0):
    """Give every BatchNormalization layer random, plausible statistics (in place).

    Freshly built BatchNormalization layers are the identity at inference (mean 0, variance 1,
    gamma 1, beta 0), so they hide bugs in code that folds or windows them. This sets
    ``gamma ~ U(0.5, 1.5)``, ``beta ~ N(0, 0.2)``, ``moving_mean ~ N(0, 0.2)`` and
    ``moving_variance ~ U(0.5, 2)``, per channel. Nested models are visited too.

    Parameters
    ----------
    model : keras.Model
        The model to modify.
    seed : int
        Seed of the NumPy generator. Default is 0.

    Returns
    -------
    keras.Model
        The same model, for chaining.
    """
    from keras import layers

    rng = np.random.default_rng(seed)

    def visit(layer):
        if isinstance(layer, layers.BatchNormalization):
            draws = {
                "gamma": lambda n: rng.uniform(0.5, 1.5, n),
                "beta": lambda n: rng.normal(0.0, 0.2, n),
                "moving_mean": lambda n: rng.normal(0.0, 0.2, n),
                "moving_variance": lambda n: rng.uniform(0.5, 2.0, n),
            }
            for attr, draw in draws.items():
                var = getattr(layer, attr, None)
                if var is not None:
                    var.assign(draw(var.shape).astype(var.dtype))
        for sub in getattr(layer, "layers", []) or []:
            visit(sub)

    visit(model)
    return model
