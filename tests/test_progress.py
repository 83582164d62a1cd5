"""Progress of every phase (lines on a pipe, rich bars on a terminal, nothing with --quiet), the
phase times and exact-render count in the --json summary, and two defects met as a new user:
stems shorter than one loudness block, and numpy RuntimeWarnings from silent passages."""
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evomix.errors import ParameterError
from evomix.progress import INTERVAL_ENV, NULL_PHASE, NULL_REPORTER, Reporter, format_seconds
from tests.support import SR, run_cli, search_flags, small_search, song_stems, write_stems

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("load", "analysis", "search", "render", "write")
SMALL = search_flags(small_search(generations=3, seed=1, alternatives=2))
TINY = [*search_flags(small_search(population=4, generations=1)), "--quiet"]


class FakeClock:
    """A monotonic clock the test moves by hand, s."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _evomix(*args, env=None, warnings_as_errors=False):
    """``python -m evomix ARGS`` with stdout and stderr on pipes (not terminals), this checkout first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    flags = ["-W", "error::RuntimeWarning"] if warnings_as_errors else []
    return subprocess.run([sys.executable, *flags, "-m", "evomix", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


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


def test_null_reporter_prints_nothing_keeps_nothing_and_lets_errors_through(capsys):
    with NULL_REPORTER.phase("load", total=3) as p:
        p.advance()
        p.update(done=3, total=4, info="x")
    assert p is NULL_PHASE
    assert capsys.readouterr() == ("", "")  # nothing on stdout or stderr
    assert vars(NULL_REPORTER) == {}  # no timings or counts kept behind the caller
    with pytest.raises(ValueError, match="boom"):  # a failing phase is not swallowed
        with NULL_REPORTER.phase("render"):
            raise ValueError("boom")


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


# --- the command line -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lines_run(stem_dir, tmp_path_factory):
    """``evomix mix`` with stderr on a pipe, a line for every update (interval 0)."""
    out = tmp_path_factory.mktemp("lines") / "out"
    res = _evomix("mix", stem_dir, "--out", out, *SMALL, env={INTERVAL_ENV: "0"})
    assert res.returncode == 0, res.stderr
    return out, res


@pytest.fixture(scope="module")
def quiet_run(stem_dir, tmp_path_factory):
    """``evomix mix --quiet --json`` and the wall time of the whole process, s."""
    out = tmp_path_factory.mktemp("quiet") / "out"
    t0 = time.perf_counter()
    res = _evomix("mix", stem_dir, "--out", out, *SMALL, "--quiet", "--json")
    wall_s = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    return out, res, wall_s


def _phase_lines(stderr: str, name: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"evomix: {name}: ")]


@pytest.mark.slow
@pytest.mark.parametrize("name", PHASES)
def test_every_phase_of_a_mix_reports_on_a_non_terminal_stderr(lines_run, name):
    _, res = lines_run
    lines = _phase_lines(res.stderr, name)
    assert len(lines) >= 2, res.stderr
    assert lines[-1].startswith(f"evomix: {name}: done in "), lines  # the end line has the phase's time
    assert "\x1b[" not in res.stderr  # plain lines: no terminal control codes in a log


@pytest.mark.slow
def test_the_search_reports_generation_front_best_per_objective_elapsed_and_eta(lines_run):
    _, res = lines_run
    lines = _phase_lines(res.stderr, "search")
    assert any("0/3 generations" in ln for ln in lines), lines
    last = [ln for ln in lines if "3/3 generations" in ln and "ETA" in ln]
    assert last, lines
    for piece in ("front ", "best masking ", " dB", "loudness ", " LU", "balance ", "genre ", "elapsed", "ETA"):
        assert piece in last[0], (piece, last[0])


@pytest.mark.slow
def test_the_renders_report_each_exact_render(lines_run):
    _, res = lines_run
    counts = [ln for ln in _phase_lines(res.stderr, "render") if "exact renders |" in ln]
    assert any(ln.startswith("evomix: render: 1/") for ln in counts), counts
    assert any(ln.startswith("evomix: render: 2/") for ln in counts), counts


@pytest.mark.slow
def test_quiet_prints_nothing_on_stderr_and_json_has_phase_times_and_exact_renders(quiet_run):
    out, res, wall_s = quiet_run
    # nothing but warnings (printed as ever: a misjudged pick, a resampled stem) may reach stderr
    assert all(ln.startswith(("evomix: warning:", "evomix: note:")) for ln in res.stderr.splitlines()), res.stderr
    summary = json.loads(res.stdout)
    t = summary["timings_s"]
    assert set(PHASES) | {"total"} <= set(t), t
    assert all(v > 0 for v in t.values()), t  # every phase does some work
    assert sum(t[p] for p in PHASES) - 1e-3 <= t["total"] <= wall_s, (t, wall_s)  # in seconds, within the process
    settings = json.loads((out / "front.json").read_text())["settings"]
    assert summary["exact_renders"] == settings["exact_renders"] >= 2  # at least the 2 picks
    rendered = [m for m in json.loads((out / "front.json").read_text())["members"] if "exact" in m]
    assert settings["exact_renders"] == len(rendered)


@pytest.mark.slow
def test_render_command_reports_load_render_and_write(quiet_run, stem_dir, tmp_path):
    out, _, _ = quiet_run
    target = tmp_path / "again.wav"
    res = run_cli("render", out / "alt-01.json", stem_dir, "-o", target)
    assert res.exit_code == 0, res.output
    for name in ("load", "render", "write"):
        assert f"evomix: {name}: done in" in res.stderr, res.stderr
    assert res.stdout.strip() == str(target)
    res = run_cli("render", out / "alt-01.json", stem_dir, "-o", target, "--force", "--quiet")
    assert res.exit_code == 0 and res.stderr == "", res.stderr


@pytest.mark.slow
def test_demo_reports_its_synthesis_too(tmp_path, monkeypatch):
    """The demo's own song is long; a tiny one stands in (the phase, not the song, is tested)."""
    import evomix.demo

    monkeypatch.setattr(evomix.demo, "write_demo_stems", lambda folder: write_stems(folder, song_stems(duration_s=3.0)))
    # (the demo has no --alternatives, so not search_flags)
    res = run_cli("demo", "--out", tmp_path / "demo", "--population", 4, "--generations", 1, "--json")
    assert res.exit_code == 0, res.output
    assert "evomix: synthesis: done in" in res.stderr
    assert {"synthesis", *PHASES, "total"} <= set(json.loads(res.stdout)["timings_s"])


# --- defects met as a new user ----------------------------------------------------------------------

@pytest.mark.parametrize("duration_s", [0.009, 0.39])
def test_stems_shorter_than_one_loudness_block_fail_naming_the_files_and_the_length_needed(tmp_path, duration_s):
    d = tmp_path / "short"
    write_stems(d, {k: v[:, : int(duration_s * SR)] for k, v in song_stems(duration_s=1.0).items()})
    out = tmp_path / "out"
    res = run_cli("mix", d, "--out", out, *TINY)
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evomix: error:"), res.stderr
    for name in ("drums.wav", "bass.wav", "keys.wav", "vocal.wav"):
        assert name in lines[0]
    assert "at least one stem of 0.4 s (17640 samples at 44100 Hz)" in lines[0], lines[0]
    assert f"{duration_s:.3f} s" in lines[0]
    assert not out.exists() or not any(out.iterdir())
    res = run_cli("analyze", d / "bass.wav")
    assert res.exit_code == 1 and "bass.wav" in res.stderr and "at least 0.4 s" in res.stderr, res.stderr


@pytest.mark.slow
def test_a_session_shorter_than_one_short_term_window_still_mixes(tmp_path):
    """0.4-3 s: one loudness block but no 3 s LRA window; the exact tier then reads LRA 0 LU, as the
    fast tier does (it failed after the whole search with "shorter than one 3.0 s window")."""
    d = tmp_path / "jingle"
    write_stems(d, song_stems(duration_s=1.5))
    out = tmp_path / "out"
    res = run_cli("mix", d, "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    assert (out / "alt-01.wav").exists()


@pytest.mark.slow
def test_a_mix_with_silent_passages_leaves_no_runtime_warning(tmp_path):
    """Every stem silent from 1 s to 3 s: the frames there have no power, and the fast tier's master
    gain took log10(0) (a numpy RuntimeWarning on the terminal). With -W error it would crash."""
    stems = song_stems(duration_s=4.0)
    for x in stems.values():
        x[:, SR : 3 * SR] = 0.0
    d = tmp_path / "gap"
    write_stems(d, stems)
    res = _evomix("mix", d, "--out", tmp_path / "out", *search_flags(small_search(alternatives=2)), "--quiet",
                  warnings_as_errors=True)
    assert res.returncode == 0, res.stderr
    assert "RuntimeWarning" not in res.stderr and "Traceback" not in res.stderr, res.stderr
