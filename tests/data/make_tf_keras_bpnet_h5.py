"""Write tiny_tf_keras_bpnet.h5: a small BPNet-like model saved by legacy tf-keras (Keras 2).

Its profile head is built the way the original BPNet / fastISM code builds it: a Reshape of the
(L, C) bottleneck to (L, 1, C), a Conv2DTranspose with a (k, 1) kernel, and a Reshape back to
(L, tasks); its count head is a global average pool and a Dense layer. tf-keras writes
``groups: 1`` into the Conv2DTranspose config, a key Keras 3's Conv2DTranspose does not take.

Run once with a tf-keras environment (e.g. the benchmarks' venv-fastism):
    TF_USE_LEGACY_KERAS=1 benchmarks/venv-fastism/bin/python tests/data/make_tf_keras_bpnet_h5.py
It also stores inputs and tf-keras's own predictions (profile, counts) in tiny_tf_keras_bpnet.npz,
so the tests check that Keras 3 loads the legacy file with the same predictions.
"""

import os

import numpy as np
import tf_keras as keras

HERE = os.path.dirname(os.path.abspath(__file__))
LENGTH, FILTERS, TASKS = 40, 6, 2


def build():
    """BPNet-like: (B, 40, 4) -> profile (B, 40, 2) and counts (B, 2)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((LENGTH, 4), name="sequence")
    h = keras.layers.Conv1D(FILTERS, 7, padding="same", activation="relu")(inp)
    for dilation in (2, 4):
        conv = keras.layers.Conv1D(FILTERS, 3, padding="same", activation="relu",
                                   dilation_rate=dilation)(h)
        h = keras.layers.Add()([conv, h])
    profile = keras.layers.Reshape((-1, 1, FILTERS))(h)
    profile = keras.layers.Conv2DTranspose(TASKS, kernel_size=(9, 1), padding="same")(profile)
    profile = keras.layers.Reshape((-1, TASKS), name="profile")(profile)
    counts = keras.layers.GlobalAveragePooling1D()(h)
    counts = keras.layers.Dense(TASKS, name="counts")(counts)
    return keras.Model(inp, [profile, counts])


if __name__ == "__main__":
    model = build()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:  # non-zero biases, so loading them is checked
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape).astype("float32"))
    x = np.eye(4, dtype="float32")[rng.integers(0, 4, size=(3, LENGTH))]
    profile, counts = model.predict(x, verbose=0)
    model.save(os.path.join(HERE, "tiny_tf_keras_bpnet.h5"), include_optimizer=False)
    np.savez(os.path.join(HERE, "tiny_tf_keras_bpnet.npz"), x=x, profile=profile, counts=counts)
    print("keras", keras.__version__)
