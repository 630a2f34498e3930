"""BPNet (Avsec et al. 2021) as benchmarked by fastISM (Nair et al. 2022)."""

from __future__ import annotations

from fastism_dist.models.basset import SEQUENCE_INPUT_NAME, check_positive, seeded


def bpnet(seq_len=1000, filters=64, n_dilated=9, first_kernel=25, dilated_kernel=3,
          profile_kernel=25, n_tasks=2, strands=2, alphabet=4, seed=None):
    """Build BPNet: a base-resolution profile model with residual dilated convolutions.

    Layers (defaults; ``L`` = ``seq_len``; every convolution has 'same' padding, so the
    length never changes)::

        sequence    Input                                 (L, 4)
        conv1       Conv1D 64, k=25, relu                 (L, 64)
        dil_conv1   Conv1D 64, k=3, dilation 2,   relu    (L, 64)
        add1        Add [dil_conv1, conv1]                (L, 64)
        dil_conv2   Conv1D 64, k=3, dilation 4,   relu    (L, 64)
        add2        Add [dil_conv2, add1]                 (L, 64)
        ...         (dilation 2**i for i = 1 .. n_dilated; the last is 512)
        add9        Add [dil_conv9, add8]                 (L, 64)
        profile     Conv1D 4 (n_tasks*strands), k=25      (L, 4)     output 1, linear
        gap         GlobalAveragePooling1D on add9        (64,)
        counts      Dense 2 (n_tasks)                     (2,)       output 2, linear

    The profile head is a plain 'same' Conv1D (the original used a Conv2DTranspose, which is
    the same computation) so it stays spatial: a mutation affects only a window of it until the
    dilated stack has spread the change over the whole sequence.

    Parameters
    ----------
    seq_len : int
        Input length ``L``. Default is 1000.
    filters : int
        Channels of every convolution of the trunk. Default is 64.
    n_dilated : int
        Number of residual dilated convolutions (dilations 2, 4, ..., 2**n_dilated).
        Default is 9.
    first_kernel : int
        Kernel size of the first convolution. Default is 25.
    dilated_kernel : int
        Kernel size of the dilated convolutions. Default is 3.
    profile_kernel : int
        Kernel size of the profile head. Default is 25.
    n_tasks : int
        Number of tasks (e.g. TFs). Default is 2.
    strands : int
        Profile tracks per task. Default is 2.
    alphabet : int
        Channels ``C`` of the one-hot input. Default is 4.
    seed : int or None
        Seed making the initial weights deterministic. Default is None (random).

    Returns
    -------
    keras.Model
        Uncompiled; input ``"sequence"`` of shape (B, L, C); outputs ``"profile"`` of shape
        (B, L, n_tasks * strands) and ``"counts"`` of shape (B, n_tasks).
    """
    import keras
    from keras import layers

    check_positive(seq_len=seq_len, filters=filters, first_kernel=first_kernel,
                   dilated_kernel=dilated_kernel, profile_kernel=profile_kernel,
                   n_tasks=n_tasks, strands=strands, alphabet=alphabet)
    if isinstance(n_dilated, bool) or not isinstance(n_dilated, int) or n_dilated < 0:
        raise ValueError(f"n_dilated must be a non-negative integer, got {n_dilated!r}")
    with seeded(seed):
        inp = keras.Input(shape=(seq_len, alphabet), name=SEQUENCE_INPUT_NAME)
        x = layers.Conv1D(filters, first_kernel, padding="same", activation="relu",
                          name="conv1")(inp)
        for i in range(1, n_dilated + 1):
            conv = layers.Conv1D(filters, dilated_kernel, padding="same", dilation_rate=2 ** i,
                                 activation="relu", name=f"dil_conv{i}")(x)
            x = layers.Add(name=f"add{i}")([conv, x])
        profile = layers.Conv1D(n_tasks * strands, profile_kernel, padding="same",
                                name="profile")(x)
        pooled = layers.GlobalAveragePooling1D(name="gap")(x)
        counts = layers.Dense(n_tasks, name="counts")(pooled)
        return keras.Model(inp, [profile, counts], name="bpnet")
