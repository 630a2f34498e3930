"""Progress of a run's chunks: a tqdm bar on stderr, or a live Dask widget inside Jupyter."""

from __future__ import annotations

import importlib.util
import sys
import time

from distributed.utils import is_kernel
from tqdm import tqdm

TTY_REFRESH_S = 0.1
LOG_REFRESH_S = 10.0  # not a terminal (a log file, CI): fewer, longer-spaced updates


class ChunkProgress:
    """Chunks done (of all the store's chunks) and mutations per second since the start.

    Parameters
    ----------
    cli : distributed.Client
    futures : list of Future
        The run's chunk tasks (watched by the Jupyter widget).
    total : int
        All chunks of the store.
    already : int
        Chunks done before this run.
    enabled : bool
        False shows nothing. Default is True.
    stream : file, optional
        Where the text bar goes. Default is ``sys.stderr``.
    """

    def __init__(self, cli, futures, total, already=0, enabled=True, stream=None):
        self.bar = None
        self.widget = None
        self.mutations = 0
        self.t0 = time.perf_counter()
        if not enabled or total <= already:
            return
        if in_notebook():
            self.widget = progress_widget(cli, futures)
            return
        stream = stream or sys.stderr
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = tqdm(total=total, initial=already, unit="chunk", file=stream,
                        dynamic_ncols=tty, mininterval=TTY_REFRESH_S if tty else LOG_REFRESH_S)

    def update(self, mutations):
        """One more chunk done, with ``mutations`` computed in it."""
        if self.bar is None:
            return
        self.mutations += mutations
        elapsed = time.perf_counter() - self.t0
        rate = self.mutations / elapsed if elapsed > 0 else 0.0
        self.bar.set_postfix_str(f"{rate:,.0f} mutations/s", refresh=False)
        self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def in_notebook():
    """True inside a Jupyter kernel that can show widgets."""
    return bool(is_kernel()) and importlib.util.find_spec("ipywidgets") is not None


def progress_widget(cli, futures):
    """A live ``distributed`` progress widget in Jupyter.

    It listens on the client's own event loop (a separate thread), because ``score`` blocks the
    kernel's loop while it waits.
    """
    from distributed.diagnostics.progressbar import ProgressWidget
    from IPython.display import display

    widget = ProgressWidget(futures, scheduler=cli.scheduler.address, complete=True)
    display(widget.widget)
    cli.loop.add_callback(widget.listen)
    return widget
