"""Which run owns a store, and replacing a store without mixing two runs' chunks.

A store's attributes carry the id of the run that created it (``run_id``). A worker writes a
chunk only inside :func:`owned`, which holds a shared lock on the store's root metadata file
and checks that the store now at the path is still that run's. :func:`replace_store` takes the
exclusive lock on the old store before renaming it away, so it waits for chunk writes in
progress, and every later write of the old run finds a store that is not its own and is
refused. Locks are ``flock`` locks (POSIX; on other systems only the run id is checked); stores
given as URLs are checked by run id alone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid

from fastism_dist.errors import StoreMismatchError
from fastism_dist.store.reader import open_group
from fastism_dist.store.schema import ATTR_RUN_ID, RETIRED_SUFFIX, ROOT_METADATA, STAGING_SUFFIX

try:
    import fcntl
except ImportError:  # not a POSIX system: run ids are still checked
    fcntl = None

#: The run id of a store whose metadata file at the path is not the one this writer locked.
_MOVED = object()


class StoreReplacedError(StoreMismatchError):
    """The store at a run's path was replaced by another run; the chunk was not written."""


def is_url(path):
    """True for an fsspec URL (``s3://...``), False for a local path."""
    return "://" in os.fspath(path)


def staging_path(out, run_id):
    """Where run ``run_id`` writes the store that replaces ``out`` when the run succeeds."""
    return f"{out}{STAGING_SUFFIX}{run_id}"


def staged_stores(out):
    """The directories beside ``out`` where runs (finished or not) wrote a replacement of it."""
    return sorted(p for p in glob.glob(glob.escape(out) + STAGING_SUFFIX + "*") if os.path.isdir(p))


def stored_run_id(path):
    """The ``run_id`` attribute of the store at ``path`` (None where it has none)."""
    return open_group(path, "r").attrs.get(ATTR_RUN_ID)


@contextlib.contextmanager
def owned(path, run_id, what="the chunk"):
    """Hold while writing into the store at ``path`` on behalf of run ``run_id``.

    Parameters
    ----------
    path : str
        The store (absolute local path or URL).
    run_id : str or None
        The run id the store must carry.
    what : str
        What is being written, for the message.

    Raises
    ------
    StoreReplacedError
        The store at ``path`` is gone or carries another run id; nothing was written.
    """
    if is_url(path):
        _check_owner(path, run_id, _remote_run_id(path), what)
        yield
        return
    meta = os.path.join(path, ROOT_METADATA)
    try:
        fd = os.open(meta, os.O_RDONLY)
    except FileNotFoundError:
        raise _replaced(path, run_id, None, what) from None
    try:
        _lock(fd, shared=True)
        _check_owner(path, run_id, _locked_run_id(meta, fd), what)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _remote_run_id(path):
    try:
        return stored_run_id(path)
    except (FileNotFoundError, KeyError):
        return _MOVED


def _locked_run_id(meta, fd):
    """The run id in the locked metadata file, or ``_MOVED`` if another file is at ``meta`` now."""
    try:
        at_path = os.stat(meta)
    except FileNotFoundError:
        return _MOVED
    locked = os.fstat(fd)
    if (at_path.st_dev, at_path.st_ino) != (locked.st_dev, locked.st_ino):
        return _MOVED
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(0)
        attributes = json.loads(fh.read()).get("attributes", {})
    return attributes.get(ATTR_RUN_ID)


def _check_owner(path, run_id, found, what):
    if found is _MOVED or found != run_id:
        raise _replaced(path, run_id, None if found is _MOVED else found, what)


def _replaced(path, run_id, found, what):
    by = f" (now run {found})" if found else ""
    return StoreReplacedError(
        f"{path} was replaced by another run{by} while run {run_id} was writing it "
        f"(--overwrite elsewhere?); {what} was not written", parameter=ATTR_RUN_ID)


def _lock(fd, shared):
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


@contextlib.contextmanager
def exclusive(path):
    """Hold the exclusive lock of the local store at ``path``: no chunk of it is being written.

    A path without root metadata (absent, or not a Zarr v3 store) needs no lock.
    """
    meta = os.path.join(path, ROOT_METADATA)
    try:
        fd = os.open(meta, os.O_RDWR)  # NFS gives exclusive locks to writable descriptors only
    except PermissionError:
        fd = os.open(meta, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        yield
        return
    try:
        _lock(fd, shared=False)
        yield
    finally:
        os.close(fd)


def replace_store(new, out):
    """Put the complete local store ``new`` at ``out``, replacing what is there.

    Waits for chunk writes in progress in the old store (its exclusive lock), renames it away,
    renames ``new`` into place and deletes the old one. Anything still writing for the old
    store's run is refused from then on (:func:`owned`).

    Parameters
    ----------
    new : str
        A directory beside ``out`` (same file system).
    out : str
    """
    retired = f"{out}{RETIRED_SUFFIX}{uuid.uuid4().hex[:12]}"
    with exclusive(out):
        try:
            os.rename(out, retired)
        except FileNotFoundError:
            retired = None
        try:
            os.rename(new, out)
        except OSError:
            if retired is not None:
                os.rename(retired, out)
            raise
    if retired is None:
        return
    if os.path.isdir(retired) and not os.path.islink(retired):
        shutil.rmtree(retired)
    else:
        os.remove(retired)
