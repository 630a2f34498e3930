"""Log files of command-line runs, and sending this process's native stderr to one."""

from __future__ import annotations

import contextlib
import os
import sys
import time

#: Log files of earlier runs kept in the cache folder.
KEPT_LOGS = 20


def log_folder():
    """Where the log files of runs go: ``$XDG_CACHE_HOME/fastism_dist/logs`` (``~/.cache``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fastism_dist", "logs")


def new_log_path(command):
    """A fresh log file path for ``command``; the oldest logs beyond ``KEPT_LOGS`` are removed."""
    folder = log_folder()
    os.makedirs(folder, exist_ok=True)
    logs = sorted((f for f in os.listdir(folder) if f.endswith(".log")),
                  key=lambda f: os.path.getmtime(os.path.join(folder, f)))
    for name in logs[:max(0, len(logs) - KEPT_LOGS + 1)]:
        with contextlib.suppress(FileNotFoundError):  # another run removed it first
            os.remove(os.path.join(folder, name))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(folder, f"{command}-{stamp}-{os.getpid()}.log")


def _writes_to_fd2(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: captured streams
        return False


@contextlib.contextmanager
def native_output_to(path):
    """File descriptor 2 of this process (inherited by the processes it starts) goes to ``path``.

    TensorFlow's C++ start-up lines and anything workers write to stderr land in the log;
    ``sys.stderr`` (the progress bar, warnings, the error line) stays on the terminal.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    previous = sys.stderr
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
    if _writes_to_fd2(previous):
        sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1,
                               encoding=getattr(previous, "encoding", None), errors="backslashreplace")
    try:
        yield
    finally:
        if sys.stderr is not previous:
            sys.stderr.close()
            sys.stderr = previous
        os.dup2(terminal, 2)
        os.close(terminal)
