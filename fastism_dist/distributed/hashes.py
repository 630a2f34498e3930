"""SHA-256 digests that identify a run's model and inputs in the store's parameters.

A file's content is identified by :func:`file_fingerprint`: the SHA-256 of the whole file up to
``WHOLE_FILE_BYTES``; for a larger file (a genome, a big ``.npy``) its size, its modification
time in nanoseconds and the SHA-256 of its first and last MiB, which costs the same for any size.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

BLOCK_BYTES = 2**20
#: Files up to this size are identified by the SHA-256 of all their bytes.
WHOLE_FILE_BYTES = 64 * 2**20


def file_sha256(path):
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path):
    """What identifies the content of the file at ``path`` (see the module's rule).

    Returns
    -------
    str
        ``"sha256:<hex>"`` for a file of at most ``WHOLE_FILE_BYTES``, else
        ``"size:<bytes> mtime_ns:<ns> ends_sha256:<hex of the first and last MiB>"``.
    """
    stat = os.stat(path)
    if stat.st_size <= WHOLE_FILE_BYTES:
        return f"sha256:{file_sha256(path)}"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(BLOCK_BYTES))
        fh.seek(stat.st_size - BLOCK_BYTES)
        digest.update(fh.read(BLOCK_BYTES))
    return f"size:{stat.st_size} mtime_ns:{stat.st_mtime_ns} ends_sha256:{digest.hexdigest()}"


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
