"""The progress reporter: lines on a pipe, rich bars on a terminal, nothing when quiet, and the
wall time of every phase."""
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from evomix.errors import ParameterError
from evomix.progress import INTERVAL_ENV, NULL_REPORTER, Reporter, format_seconds

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A monotonic clock the test moves by hand, s."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


# --- the reporter ---------------------------------------------------------------------------------

def test_lines_mode_prints_a_start_line_throttled_updates_and_an_end_line_with_the_time():
    clock, out = FakeClock(), io.StringIO()
    r = Reporter("lines", stream=out, interval_s=3.0, clock=clock)
    with r.phase("analysis", total=10, unit="stems") as p:
        for t in (1.0, 2.0, 3.5, 4.0, 5.0, 7.0):  # updates at +1 s ... +7 s after the start
            clock.t = 100.0 + t
            p.advance()
        clock.t = 108.0
    lines = out.getvalue().splitlines()
    # the rate is counted from the first update (1 stem at +1 s): at +3.5 s, 2 stems in 2.5 s -> 7 left in 8.75 s
    assert lines == [
        "evomix: analysis: 10 stems",
        "evomix: analysis: 3/10 stems | 3.50 s elapsed | ETA 8.75 s",  # >= 3 s after the start line
        "evomix: analysis: 6/10 stems | 7.00 s elapsed | ETA 4.80 s",  # >= 3 s after the last line
        "evomix: analysis: done in 8.00 s (6/10 stems)",
    ], lines
    assert r.timings_s == {"analysis": 8.0, "total": 8.0}


def test_lines_mode_shows_the_status_text_and_a_growing_total():
    clock, out = FakeClock(), io.StringIO()
    r = Reporter("lines", stream=out, interval_s=0.0, clock=clock)
    with r.phase("search", total=2, unit="generations", info="8 candidates each") as p:
        clock.t += 1.0
        p.update(done=0, info="front 3 | best masking 0.2 dB")
        clock.t += 1.0
        p.update(done=1, total=4, info="front 5 | best masking 0.1 dB")
    lines = out.getvalue().splitlines()
    assert lines[0] == "evomix: search: 2 generations | 8 candidates each"
    assert lines[1] == "evomix: search: 0/2 generations | front 3 | best masking 0.2 dB | 1.00 s elapsed"  # no rate yet
    assert lines[2] == "evomix: search: 1/4 generations | front 5 | best masking 0.1 dB | 2.00 s elapsed | ETA 3.00 s"
    assert lines[3] == "evomix: search: done in 2.00 s (1/4 generations | front 5 | best masking 0.1 dB)"


def test_quiet_mode_prints_nothing_and_still_times_every_phase():
    clock, out = FakeClock(), io.StringIO()
    r = Reporter("quiet", stream=out, clock=clock)
    for name, dt in (("load", 0.5), ("search", 2.0), ("load", 0.25)):
        with r.phase(name, total=3) as p:
            p.advance(3)
            clock.t += dt
    assert out.getvalue() == ""
    assert r.timings_s == {"load": 0.75, "search": 2.0, "total": 2.75}  # a phase run twice is summed


def test_a_failing_phase_is_timed_and_prints_no_end_line():
    clock, out = FakeClock(), io.StringIO()
    r = Reporter("lines", stream=out, clock=clock)
    with pytest.raises(ValueError):
        with r.phase("render", total=1):
            clock.t += 1.5
            raise ValueError("boom")
    assert out.getvalue().splitlines() == ["evomix: render: 1"]
    assert r.timings_s["render"] == 1.5


def test_phase_counts_are_exact_when_advanced_from_threads():
    r = Reporter("lines", stream=io.StringIO(), interval_s=0.0)
    with r.phase("render", total=400) as p:
        threads = [threading.Thread(target=lambda: [p.advance() for _ in range(100)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert p.done == 400
    assert r.stream.getvalue().splitlines()[-1].startswith("evomix: render: done in")


def test_rich_mode_draws_a_bar_per_phase_on_a_terminal():
    from rich.console import Console

    buf = io.StringIO()
    r = Reporter("rich", console=Console(file=buf, force_terminal=True, width=160, color_system=None))
    with r.phase("search", total=4, unit="generations") as p:
        for g in range(5):
            p.update(done=g, info=f"front {g + 1}")
    with r.phase("load") as p:  # no total: a pulsing bar
        p.update(info="4 stems")
    text = buf.getvalue()
    assert "search" in text and "4/4 generations" in text and "front 5" in text
    assert "load" in text and "4 stems" in text
    assert set(r.timings_s) == {"search", "load", "total"}


def test_auto_picks_the_mode_from_the_stream_and_quiet(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert Reporter.auto(quiet=False, stream=io.StringIO()).mode == "lines"
    assert Reporter.auto(quiet=False, stream=Tty()).mode == "rich"
    assert Reporter.auto(quiet=True, stream=Tty()).mode == "quiet"
    monkeypatch.setenv(INTERVAL_ENV, "0.5")
    assert Reporter.auto(quiet=False, stream=io.StringIO()).interval_s == 0.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ParameterError, match=INTERVAL_ENV):
        Reporter.auto(quiet=False)
    with pytest.raises(ParameterError, match="unknown mode"):
        Reporter("loud")


def test_null_reporter_does_nothing():
    with NULL_REPORTER.phase("load", total=3) as p:
        p.advance()
        p.update(done=3, total=4, info="x")


@pytest.mark.parametrize("s, text", [(0.4213, "0.42 s"), (12.34, "12.3 s"), (59.96, "60.0 s"), (245.2, "4 min 05 s")])
def test_format_seconds(s, text):
    assert format_seconds(s) == text


def test_the_library_never_imports_rich():
    """evomix.api reports through a protocol; only the command line draws (with rich)."""
    code = "import sys, evomix.api, evomix.progress; print('rich' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
