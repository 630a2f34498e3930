"""Shared fixtures: tiny models saved to ``.keras`` files and tiny sequence files.

Models are built once per session (building one imports TensorFlow); files live in a session
temporary directory. Keep everything tiny: sequences of 24 bp, a dozen sequences at most.
"""

import os

import numpy as np
import pytest
from oracle import one_hot

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LENGTH = 24
ALPHABET = "ACGT"


def random_letters(n, length, seed=0):
    """``n`` random ACGT strings of ``length``."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(ALPHABET), size=length)) for _ in range(n)]


class WrappedSource:
    """A sequence source that behaves as ``source`` but runs ``before_read(indices)`` before
    each read: subclasses slow reads down, hold them back or make them fail."""

    def __init__(self, source):
        self.source = source
        self.ids, self.alphabet, self.length = source.ids, source.alphabet, source.length
        self.path, self.kind = source.path, source.kind

    def __len__(self):
        return len(self.source)

    def coords(self):
        return self.source.coords()

    def variants(self):
        return self.source.variants()

    def before_read(self, indices):
        pass

    def read(self, indices):
        self.before_read(indices)
        return self.source.read(indices)


def write_fasta(path, seqs, names=None):
    """Write ``seqs`` (strings) to a FASTA file; names default to ``s0``, ``s1``, ..."""
    names = names or [f"s{i}" for i in range(len(seqs))]
    with open(path, "w") as fh:
        for name, seq in zip(names, seqs):
            fh.write(f">{name}\n{seq}\n")
    return str(path)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model_path(model_dir):
    """in -> C(k5 same relu) -> P2 -> F -> D(2) -> y   (L = 24)"""
    import keras

    keras.utils.set_random_seed(1)
    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    h = L.Conv1D(4, 5, padding="same", activation="relu")(inp)
    h = L.Flatten()(L.MaxPooling1D(2)(h))
    model = keras.Model(inp, L.Dense(2, name="y")(h))
    path = str(model_dir / "tiny.keras")
    model.save(path)
    return path


@pytest.fixture(scope="session")
def two_output_model_path(model_dir):
    """in -> C(k5 same relu) -> (C(k3 same) -> profile (L, 2); G -> D(3) -> counts (3,))"""
    import keras

    keras.utils.set_random_seed(2)
    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    h = L.Conv1D(4, 5, padding="same", activation="relu")(inp)
    profile = L.Conv1D(2, 3, padding="same", name="profile")(h)
    counts = L.Dense(3, name="counts")(L.GlobalAveragePooling1D()(h))
    model = keras.Model(inp, [profile, counts])
    path = str(model_dir / "two_outputs.keras")
    model.save(path)
    return path


@pytest.fixture(scope="session")
def lambda_model_path(model_dir):
    """in -> C(k3) -> Lambda(x * 2) -> F -> D(1) -> y   (only loads without safe mode)"""
    import keras

    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    h = L.Lambda(lambda t: t * 2.0)(L.Conv1D(2, 3)(inp))
    model = keras.Model(inp, L.Dense(1, name="y")(L.Flatten()(h)))
    path = str(model_dir / "lambda.keras")
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_seqs():
    """Ten random 24 bp sequences (strings)."""
    return random_letters(10, LENGTH, seed=0)


@pytest.fixture
def tiny_fasta(tmp_path, tiny_seqs):
    """A FASTA file of ``tiny_seqs`` named s0..s9."""
    return write_fasta(tmp_path / "tiny.fa", tiny_seqs)


@pytest.fixture
def tiny_npy(tmp_path, tiny_seqs):
    """A ``.npy`` one-hot array (10, 24, 4) of ``tiny_seqs``."""
    path = str(tmp_path / "tiny.npy")
    np.save(path, one_hot(tiny_seqs))
    return path


@pytest.fixture(scope="session")
def cluster():
    """A 2-worker LocalCluster (worker processes) on loopback, shared by the tests."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cl:
        yield cl


@pytest.fixture(scope="session")
def scheduler_address(cluster):
    """The address of ``cluster``'s scheduler, for ``--scheduler`` runs of the command line (which
    then start no cluster of their own)."""
    return cluster.scheduler_address


@pytest.fixture
def client(cluster):
    """A client of ``cluster`` (not the default client)."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as cl:
        yield cl
