"""Files on disk: existence checks, compression, first bytes, text lines and the cache folder."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import threading
import zlib

from fastism_dist.errors import InputError

COMPRESSION_SUFFIXES = (".gz", ".bgz", ".bgzf")
"""Name endings of compressed inputs, ignored when a file is recognised by its name."""

_OTHER_COMPRESSIONS = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_HEAD_BYTES = 1 << 16


def require_file(path, what, expected=None):
    """Raise :class:`InputError` unless ``path`` is an existing file.

    Parameters
    ----------
    path : str
        The path to check.
    what : str
        What the file should be, for "no such ..." (``"file"``, ``"genome FASTA"``).
    expected : str, optional
        What to give instead of a directory; default ``what``.
    """
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory; expected a {expected or what}")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such {what}")


def compression(path):
    """How a file is compressed, from its first bytes.

    Returns
    -------
    str or None
        ``"bgzf"`` (``bgzip`` output), ``"gzip"`` (any other gzip), ``"bzip2"``, ``"xz"``,
        ``"zstd"``, or None for an uncompressed file.
    """
    with open(path, "rb") as f:
        head = f.read(18)
    if head[:2] == b"\x1f\x8b":
        # BGZF: a gzip member with the extra field "BC" (FEXTRA flag, then the subfield id)
        bgzf = len(head) == 18 and bool(head[3] & 4) and head[12:14] == b"BC"
        return "bgzf" if bgzf else "gzip"
    for magic, name in _OTHER_COMPRESSIONS.items():
        if head.startswith(magic):
            return name
    return None


def head_bytes(path, size=_HEAD_BYTES):
    """The first ``size`` bytes of a file, decompressed if it is gzip (``b""`` if unreadable)."""
    if compression(path) not in ("gzip", "bgzf"):
        with open(path, "rb") as f:
            return f.read(size)
    try:
        with gzip.open(path, "rb") as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error):
        return b""


def strip_compression_suffix(name):
    """``name`` without a trailing ``.gz`` / ``.bgz`` / ``.bgzf``, lower case."""
    name = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def open_text(path):
    """Text lines of a plain or gzipped file (undecodable bytes replaced)."""
    if compression(path) in ("gzip", "bgzf"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline=None)
    return open(path, encoding="utf-8", errors="replace", newline=None)


def cache_dir():
    """The folder for decompressed copies and indexes: ``$FASTISM_DIST_CACHE_DIR``, default
    ``<tmp>/fastism_dist_cache``; created when missing."""
    folder = os.environ.get("FASTISM_DIST_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "fastism_dist_cache")
    os.makedirs(folder, exist_ok=True)
    return folder


def file_stamp(path):
    """``(size, mtime_ns)`` of a file: what tells a changed file from the one that was opened."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def cache_path(path, suffix, stamp=None):
    """The cache file for ``path``, named by its absolute path, size and modification time.

    Parameters
    ----------
    path : str
        The input file the cache file is made from.
    suffix : str
        Ending of the cache file name (``".fa"``, ``".fai"``).
    stamp : tuple of int, optional
        ``(size, mtime_ns)`` of the input; default: as it is now.
    """
    size, mtime = stamp if stamp is not None else file_stamp(path)
    key = f"{os.path.abspath(path)}\0{size}\0{mtime}".encode()
    return os.path.join(cache_dir(), hashlib.sha256(key).hexdigest()[:24] + suffix)


def is_fresh(derived, source):
    """True if the file ``derived`` exists and is not older than ``source``."""
    return os.path.exists(derived) and os.path.getmtime(derived) >= os.path.getmtime(source)


@contextlib.contextmanager
def atomic_output(final):
    """Yield a temporary path next to ``final``; on success it replaces ``final`` at once.

    Other threads and processes see either no ``final`` or a complete one; a failed write
    leaves nothing behind.
    """
    tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
