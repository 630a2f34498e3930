"""A Ctrl-C that always stops a run, even one that lands in a finalizer.

Python cannot raise an exception out of a finalizer (``__del__``, a weakref callback, the
garbage collector): it prints "Exception ignored in ..." and goes on. A ``KeyboardInterrupt``
whose signal arrives while the main thread runs a finalizer is lost that way, and the run would
go on to its end. A client waiting on its cluster creates and drops many objects with
finalizers (futures, messages), so now and then a Ctrl-C does land in one.
``redeliver_lost_interrupts`` raises such an interrupt again, in the main thread, right after
the finalizer has returned.
"""

from __future__ import annotations

import _thread
import contextlib
import sys
import threading

REDELIVERY_DELAY_S = 0.01  # long enough for the finalizer's frame to have returned


@contextlib.contextmanager
def redeliver_lost_interrupts():
    """Within the block, a ``KeyboardInterrupt`` lost in a finalizer is raised again.

    Only in the main thread (the one that receives signals); elsewhere it does nothing. A lost
    interrupt is not printed: the one raised again says it all.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(REDELIVERY_DELAY_S, _thread.interrupt_main).start()
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
