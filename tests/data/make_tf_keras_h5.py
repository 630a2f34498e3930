"""Write tiny_tf_keras.h5: a small Basset-like model saved by legacy tf-keras (Keras 2).

Run once with a tf-keras environment (e.g. the benchmarks' venv-fastism):
    TF_USE_LEGACY_KERAS=1 benchmarks/venv-fastism/bin/python tests/data/make_tf_keras_h5.py
It also stores inputs and tf-keras's own predictions in tiny_tf_keras.npz, so the test checks that
Keras 3 loads the legacy file with identical predictions.
"""

import os

import numpy as np
import tf_keras as keras

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 4))
    h = keras.layers.Conv1D(8, 7, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.MaxPooling1D(3)(h)
    h = keras.layers.Conv1D(6, 5, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling1D(4)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(3, activation="sigmoid")(h))


if __name__ == "__main__":
    model = build()
    rng = np.random.default_rng(0)
    bn = model.layers[2]
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.5, 8),
                    rng.uniform(0.5, 2.0, 8)])
    x = np.eye(4, dtype="float32")[rng.integers(0, 4, size=(3, 48))]
    model.save(os.path.join(HERE, "tiny_tf_keras.h5"))
    np.savez(os.path.join(HERE, "tiny_tf_keras.npz"), x=x, y=model.predict(x, verbose=0))
    print("keras", keras.__version__)
