"""Ctrl-C during a search: the first one asks the search to stop, the second aborts.

>>> with InterruptGuard() as guard:
...     while not guard.requested:   # run_search(..., stop_requested=lambda: guard.requested)
...         break

While the guard is active (in the main thread only: Python runs signal handlers there), the
first SIGINT sets :attr:`InterruptGuard.requested` and calls ``on_first`` (e.g. to print "finishing
this generation"); the search then finishes its generation, saves its checkpoint and stops with
``stop_reason == "interrupted"``, and the front found so far is exported as usual. A second SIGINT
raises :class:`KeyboardInterrupt` at once (the command line exits 130 and writes no outputs).
Leaving the guard restores the handler that was there before. Outside the main thread the guard
does nothing (Ctrl-C behaves as it did).
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable


class InterruptGuard:
    """Context manager counting SIGINTs (see the module docstring).

    on_first : () -> None, called from the handler at the first SIGINT (keep it short, and take
        no lock: it runs between two bytecodes of the main thread, which may hold one).
    message : bytes written to file descriptor 2 (stderr) at the first SIGINT, or None. Written
        with ``os.write``, which takes no lock (``sys.stderr.write`` might be mid-write).
    """

    def __init__(self, on_first: Callable[[], None] | None = None, *, message: bytes | None = None):
        self.on_first = on_first
        self.message = message
        self.requested = False
        self.active = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.message:
            try:
                os.write(2, self.message)
            except OSError:  # stderr closed: the notice is a courtesy
                pass
        if self.on_first is not None:
            self.on_first()

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            # None: the previous handler was not installed from Python; Python's default is the best guess
            signal.signal(signal.SIGINT, signal.default_int_handler if self._previous is None else self._previous)
            self.active = False
