"""SHA-256 digests that identify a run's model and inputs in the store's parameters."""

from __future__ import annotations

import hashlib
import json

import numpy as np

BLOCK_BYTES = 2**20


def file_sha256(path):
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def strings_sha256(strings):
    """Hex SHA-256 of ``strings`` in order, each followed by a NUL byte."""
    digest = hashlib.sha256()
    for text in strings:
        digest.update(str(text).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def keras_model_sha256(keras_model):
    """Hex SHA-256 of an in-memory model's config (as sorted JSON) and weights."""
    config = json.dumps(keras_model.get_config(), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode())
    for weight in keras_model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()
