"""Progress of the phases of a run (load, analysis, search, render, write) and their wall times.

Library code (``evomix.api``) reports through the small :class:`ProgressReporter` protocol and
defaults to :data:`NULL_REPORTER`, which does nothing; it never imports rich nor looks at terminals.
The command line picks a :class:`Reporter` for its stderr (:meth:`Reporter.auto`):

* ``"rich"`` (stderr is a terminal): one rich progress bar per phase, left on screen when done;
* ``"lines"`` (stderr is a pipe or a file: CI, logs): a line when a phase starts, then at most one
  line every ``interval_s`` (done/total, elapsed, ETA), and a line with its time when it ends;
* ``"quiet"``: nothing.

Every mode records each phase's wall time (:attr:`Reporter.timings_s`, for the ``--json`` summary).

>>> r = Reporter("quiet")
>>> with r.phase("analysis", total=4, unit="stems") as p:
...     p.advance(4)
>>> sorted(r.timings_s)
['analysis', 'total']
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal, Protocol, TextIO

from evomix.errors import ParameterError

Mode = Literal["rich", "lines", "quiet"]
MODES = ("rich", "lines", "quiet")
DEFAULT_INTERVAL_S = 3.0  # lines mode: at most one progress line per phase this often
INTERVAL_ENV = "EVOMIX_PROGRESS_INTERVAL_S"  # overrides DEFAULT_INTERVAL_S for the command line


class Phase(Protocol):
    """What a running phase accepts: counts of units done, and a short status text."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units are done (thread-safe)."""

    def update(self, *, done: int | None = None, total: int | None = None, info: str | None = None) -> None:
        """Set the units done, the total (it may grow) and/or the status text (thread-safe)."""


class ProgressReporter(Protocol):
    """Anything with a ``phase`` context manager: :class:`Reporter`, :data:`NULL_REPORTER`."""

    def phase(self, name: str, *, total: int | None = None, unit: str = "",
              info: str = "") -> contextlib.AbstractContextManager:
        """A context manager yielding a :class:`Phase`; its wall time is the ``with`` block's."""


class _NullPhase:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, *, done=None, total=None, info=None) -> None:
        pass


NULL_PHASE: Phase = _NullPhase()


class NullReporter:
    """Reports nothing and times nothing: the library's default."""

    @contextlib.contextmanager
    def phase(self, name: str, *, total: int | None = None, unit: str = "", info: str = "") -> Iterator[Phase]:
        """A phase that reports nothing."""
        yield NULL_PHASE


NULL_REPORTER = NullReporter()


def format_seconds(s: float) -> str:
    """``"0.42 s"``, ``"12.3 s"``, ``"4 min 05 s"``.

    >>> format_seconds(0.4213), format_seconds(12.34), format_seconds(245.2)
    ('0.42 s', '12.3 s', '4 min 05 s')
    """
    if s < 10.0:
        return f"{s:.2f} s"
    if s < 60.0:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s"


class _Phase:
    """A phase of a :class:`Reporter`: counts under a lock, drawn by the reporter's mode."""

    def __init__(self, reporter: Reporter, name: str, total: int | None, unit: str, info: str):
        self.reporter, self.name, self.total, self.unit, self.info = reporter, name, total, unit, info
        self.done = 0
        self.lock = threading.Lock()
        self.t_start = reporter.clock()
        self.t_printed = self.t_start
        self.first: tuple[float, int] | None = None  # (time, done) at the first update: the rate's origin
        self.task = None  # rich task id

    def advance(self, n: int = 1) -> None:
        with self.lock:
            self._set(self.done + int(n), None, None)

    def update(self, *, done: int | None = None, total: int | None = None, info: str | None = None) -> None:
        with self.lock:
            self._set(self.done if done is None else int(done), total, info)

    def _set(self, done: int, total: int | None, info: str | None) -> None:
        now = self.reporter.clock()
        if self.first is None:
            self.first = (now, done)
        self.done = done
        if total is not None:
            self.total = int(total)
        if info is not None:
            self.info = info
        self.reporter._show(self, now)

    def count(self) -> str:
        """``"2/4 stems"`` ('' without a total)."""
        if self.total is None:
            return ""
        return f"{self.done}/{self.total}" + (f" {self.unit}" if self.unit else "")

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the rate since the first update (a slow start, such as compiling the
        engine before the first generation, does not inflate it); None if unknown."""
        if self.total is None or self.first is None:
            return None
        left = max(self.total - self.done, 0)
        t0, d0 = self.first
        if self.done > d0:
            return left * (now - t0) / (self.done - d0)
        if self.done > 0:
            return left * (now - self.t_start) / self.done
        return None


class Reporter:
    """Phases of a run drawn on a stream, with their wall times.

    Parameters
    ----------
    mode : "rich", "lines" or "quiet" (see the module docstring).
    stream : text stream, default ``sys.stderr`` (looked up now): where "lines" writes.
    console : rich Console for "rich" mode, default one on stderr.
    interval_s : float >= 0, s, "lines" mode: the least time between two lines of a phase.
    clock : () -> float, s, monotonic (tests pass a fake one).

    Examples
    --------
    >>> import io
    >>> t = iter([0.0, 0.0, 1.0, 5.0, 6.0, 6.5, 6.5]).__next__
    >>> out = io.StringIO()
    >>> r = Reporter("lines", stream=out, interval_s=3.0, clock=t)
    >>> with r.phase("analysis", total=3, unit="stems") as p:
    ...     p.advance(); p.advance(); p.advance()
    >>> print(out.getvalue(), end="")
    evomix: analysis: 3 stems
    evomix: analysis: 2/3 stems | 5.00 s elapsed | ETA 4.00 s
    evomix: analysis: done in 6.50 s (3/3 stems)
    """

    def __init__(self, mode: Mode, *, stream: TextIO | None = None, console=None,
                 interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        if mode not in MODES:
            raise ParameterError(f"progress mode: unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if not interval_s >= 0:
            raise ParameterError(f"interval_s: expected seconds >= 0, got {interval_s!r}")
        self.mode = mode
        self.stream = sys.stderr if stream is None else stream
        self.console = console
        self.interval_s = float(interval_s)
        self.clock = clock
        self.t_start = clock()
        self._timings: dict[str, float] = {}
        self._progress = None  # the rich Progress of the phase running now

    @classmethod
    def auto(cls, *, quiet: bool, stream: TextIO | None = None, console=None) -> Reporter:
        """The reporter for a command line run: "quiet" if asked, else "rich" when ``stream``
        (default stderr) is a terminal, else "lines"; the "lines" interval can be set with the
        environment variable ``EVOMIX_PROGRESS_INTERVAL_S`` (seconds >= 0)."""
        stream = sys.stderr if stream is None else stream
        raw = os.environ.get(INTERVAL_ENV, "")
        interval = DEFAULT_INTERVAL_S
        if raw.strip():
            try:
                interval = float(raw)
            except ValueError:
                interval = -1.0
            if not interval >= 0:
                raise ParameterError(f"{INTERVAL_ENV}: expected seconds >= 0, got {raw!r}")
        if quiet:
            mode = "quiet"
        else:
            isatty = getattr(stream, "isatty", None)
            mode = "rich" if isatty is not None and isatty() else "lines"
        return cls(mode, stream=stream, console=console, interval_s=interval)

    @property
    def timings_s(self) -> dict[str, float]:
        """Wall time of each phase so far (s, summed if a phase ran more than once) and
        ``"total"``, the time since the reporter was made."""
        out = {k: round(v, 3) for k, v in self._timings.items()}
        out["total"] = round(self.clock() - self.t_start, 3)
        return out

    @contextlib.contextmanager
    def phase(self, name: str, *, total: int | None = None, unit: str = "", info: str = "") -> Iterator[Phase]:
        """A phase that reports nothing."""
        """Run a phase: ``with reporter.phase("analysis", total=16, unit="stems") as p: p.advance()``.

        ``total`` None: the amount of work is unknown (rich shows a pulsing bar). ``info`` is the
        status text shown beside the count; :meth:`Phase.update` replaces it.
        """
        p = _Phase(self, name, total, unit, info)
        self._begin(p)
        ok = False
        try:
            yield p
            ok = True
        finally:
            now = self.clock()
            self._timings[name] = self._timings.get(name, 0.0) + (now - p.t_start)
            self._end(p, now, ok)

    # --- drawing -------------------------------------------------------------------------------
    def _line(self, p: _Phase, text: str) -> None:
        self.stream.write(f"evomix: {p.name}: {text}\n")
        self.stream.flush()

    def _begin(self, p: _Phase) -> None:
        if self.mode == "lines":
            start = " | ".join(t for t in (f"{p.total} {p.unit}".strip() if p.total is not None else "", p.info) if t)
            self._line(p, start or "started")
        elif self.mode == "rich":
            self._progress = self._rich_progress()
            self._progress.start()
            p.task = self._progress.add_task(p.name, total=1.0 if p.total is not None else None,
                                             count=p.count(), info=p.info)

    def _show(self, p: _Phase, now: float) -> None:
        if self.mode == "lines":
            if now - p.t_printed < self.interval_s:
                return
            p.t_printed = now
            parts = [p.count(), p.info, f"{format_seconds(now - p.t_start)} elapsed"]
            eta = p.eta_s(now)
            if eta is not None:
                parts.append(f"ETA {format_seconds(eta)}")
            self._line(p, " | ".join(t for t in parts if t))
        elif self.mode == "rich" and self._progress is not None:
            self._progress.update(p.task, total=1.0 if p.total is not None else None,
                                  completed=_fraction(p), count=p.count(), info=p.info)

    def _end(self, p: _Phase, now: float, ok: bool) -> None:
        if self.mode == "lines" and ok:
            state = " | ".join(t for t in (p.count(), p.info) if t)
            self._line(p, f"done in {format_seconds(now - p.t_start)}" + (f" ({state})" if state else ""))
        elif self.mode == "rich" and self._progress is not None:
            if ok:
                self._progress.update(p.task, total=1.0, completed=1.0, count=p.count(), info=p.info)
            self._progress.stop()
            self._progress = None

    def _rich_progress(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = self.console if self.console is not None else Console(stderr=True, highlight=False)
        return Progress(TextColumn("{task.description:<8}"), BarColumn(bar_width=24),
                        TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)


def _fraction(p: _Phase) -> float:
    """Rich is fed the fraction done, in [0, 1] (STYLE 13)."""
    if not p.total:
        return 0.0
    return min(max(p.done / p.total, 0.0), 1.0)
