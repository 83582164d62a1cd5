"""Checkpoint, resume and Ctrl-C (issue 12, item 9).

A search killed after generation k and resumed from its checkpoint file ends with the same front as
one run straight through (run_search for every algorithm, mix(), the command line); resume refuses
other stems, other settings and files that are not checkpoints, in one line; SIGINT sent to a
running ``evomix mix`` leaves a loadable checkpoint and the exported alternatives, and a second
SIGINT aborts with exit code 130 and no output folder.
"""
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evomix import api
from evomix.io.audio import load_session
from evomix.io.spill import materialise
from evomix.search import checkpoint as ck
from evomix.search.algorithm import STOP_REASONS, Termination, run_search
from evomix.search.hypervolume import Normaliser
from evomix.search.interrupt import InterruptGuard
from tests.support import run_cli, small_search, song_stems, write_stems

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--population", "8", "--seed", "2", "--alternatives", "2", "--quiet"]


def dtlz2(genomes):
    """DTLZ2 with 3 objectives (Deb et al. 2002): a spherical front."""
    x, g = genomes[:, :2], ((genomes[:, 2:] - 0.5) ** 2).sum(axis=1)
    c, s = np.cos(x * np.pi / 2), np.sin(x * np.pi / 2)
    return (1 + g)[:, None] * np.stack([c[:, 0] * c[:, 1], c[:, 0] * s[:, 1], s[:, 0]], axis=1)


class Killed(Exception):
    """The process running the search died (a kill, a power cut) while scoring a generation."""


def _dies_scoring(generation: int):
    """DTLZ2 that raises :class:`Killed` when asked to score ``generation`` (one call per generation)."""
    calls = []

    def evaluate(G):
        calls.append(len(G))
        if len(calls) == generation + 1:
            raise Killed
        return dtlz2(G)
    return evaluate


def _assert_same_search(a, b):
    np.testing.assert_array_equal(a.front_genomes, b.front_genomes)
    np.testing.assert_array_equal(a.front_F, b.front_F)
    np.testing.assert_array_equal(a.hypervolume, b.hypervolume)
    np.testing.assert_array_equal(a.best_achievement, b.best_achievement)
    np.testing.assert_array_equal(a.population, b.population)
    np.testing.assert_array_equal(a.population_F, b.population_F)
    assert (a.evaluations, a.generations, a.stop_reason) == (b.evaluations, b.generations, b.stop_reason)
    assert [r["evals"] for r in a.logbook] == [r["evals"] for r in b.logbook]
    np.testing.assert_array_equal(np.asarray(a.logbook.select("min")), np.asarray(b.logbook.select("min")))


INIT = np.random.default_rng(7).uniform(size=(16, 6))
NORM = Normaliser(np.zeros(3), np.full(3, 1.5))
CASES = [("nsga2", None), ("nsga2", (4.0, 1.0, 1.0)), ("nsga3", None), ("nsga3", (4.0, 1.0, 1.0)), ("random", None)]


@pytest.mark.parametrize("algorithm, steer", CASES)
def test_search_killed_after_generation_3_and_resumed_gives_the_same_front(tmp_path, algorithm, steer):
    kw = dict(algorithm=algorithm, normaliser=NORM, steer=None if steer is None else np.array(steer))
    straight = run_search(dtlz2, INIT, termination=Termination(generations=6), seed=5, **kw)
    path = tmp_path / "run.npz"
    with pytest.raises(Killed), ck.Saver(path, settings={"algorithm": algorithm}, stems=[]) as saver:
        run_search(_dies_scoring(4), INIT, termination=Termination(generations=6), seed=5, on_generation=saver, **kw)
    assert saver.saved == 3
    saved = ck.load(path)
    assert saved.state.gen == 3 and saved.settings == {"algorithm": algorithm}
    # another seed and no initial population: everything must come from the file
    resumed = run_search(dtlz2, None, termination=Termination(generations=6), seed=999, resume=saved.state, **kw)
    assert resumed.resumed_from == 3
    _assert_same_search(resumed, straight)
    # guard against a trivial pass: the same resume with fresh generator states goes elsewhere
    fresh = dataclasses.replace(saved.state, random_state=random.Random(1).getstate(),
                                numpy_state=np.random.RandomState(1).get_state(),
                                uniform_state=np.random.default_rng(1).bit_generator.state)
    other = run_search(dtlz2, None, termination=Termination(generations=6), seed=5, resume=fresh, **kw)
    assert not np.array_equal(other.population, straight.population)


@pytest.mark.parametrize("rule", ["achievement", "hypervolume"])
@pytest.mark.parametrize("algorithm", ["nsga2", "nsga3", "random"])
def test_resumed_search_converges_at_the_same_generation(tmp_path, algorithm, rule):
    """The convergence test reads the best-achievement (or hypervolume) history: it is restored with the state."""
    term = Termination(time_limit=None, window=4, tol=0.02, rule=rule)
    straight = run_search(dtlz2, INIT, algorithm=algorithm, termination=term, seed=5, normaliser=NORM)
    assert straight.stop_reason == "converged" and straight.generations > 5  # stops after the checkpoint
    with pytest.raises(Killed), ck.Saver(tmp_path / "run.npz", settings={}, stems=[]) as saver:
        run_search(_dies_scoring(5), INIT, algorithm=algorithm, termination=term, seed=5, normaliser=NORM,
                   on_generation=saver)
    assert saver.saved == 4
    resumed = run_search(dtlz2, None, algorithm=algorithm, termination=term, seed=5, normaliser=NORM,
                         resume=ck.load(tmp_path / "run.npz").state)
    _assert_same_search(resumed, straight)


def test_a_checkpoint_without_the_achievement_history_still_loads_and_waits_a_window(tmp_path):
    """A checkpoint written before the best-achievement history was saved: unknown (NaN) before the
    resume, so the default test holds only once its window lies after the resume."""
    term = Termination(time_limit=None, window=4, tol=0.02)
    with pytest.raises(Killed), ck.Saver(tmp_path / "run.npz", settings={}, stems=[]) as saver:
        run_search(_dies_scoring(5), INIT, termination=term, seed=5, normaliser=NORM, on_generation=saver)
    old = dataclasses.replace(ck.load(tmp_path / "run.npz").state, best_achievement=None)
    ck.save(tmp_path / "old.npz", old, settings={}, stems=[])
    loaded = ck.load(tmp_path / "old.npz").state
    assert loaded.best_achievement is None
    resumed = run_search(dtlz2, None, termination=term, seed=5, normaliser=NORM, resume=loaded)
    assert np.isnan(resumed.best_achievement[:5]).all() and resumed.generations >= 4 + 4


def test_stop_requested_stops_with_interrupted_after_the_generation_and_resume_with_no_budget_left():
    assert "interrupted" in STOP_REASONS
    states = []
    r = run_search(dtlz2, INIT, termination=Termination(generations=50), seed=1, on_generation=states.append,
                   stop_requested=lambda: len(states) == 3)
    assert r.stop_reason == "interrupted" and r.generations == 2 and r.state.gen == 2
    assert [s.gen for s in states] == [0, 1, 2]
    np.testing.assert_array_equal(r.state.archive_F, r.front_F)
    done = run_search(dtlz2, None, termination=Termination(generations=2), seed=1, resume=r.state)
    assert done.stop_reason == "generations" and done.generations == 2 and done.evaluations == r.evaluations


def test_checkpoint_write_is_atomic_and_keeps_the_previous_one_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    states = []
    run_search(dtlz2, INIT, termination=Termination(generations=2), seed=1, on_generation=states.append)
    ck.save(path, states[1], settings={}, stems=[])

    def broken_savez(*a, **k):
        raise KeyboardInterrupt  # a second Ctrl-C while the next checkpoint is being written

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        ck.save(path, states[2], settings={}, stems=[])
    assert ck.load(path).state.gen == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temporary file left


# --- interrupt guard ---------------------------------------------------------------------------------

def _interrupt_self(times: int) -> None:
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.02)  # the handler runs in the main thread before the next signal


def test_interrupt_guard_first_sigint_sets_the_flag_second_raises_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        assert guard.active
        _interrupt_self(1)
        assert guard.requested
        with pytest.raises(KeyboardInterrupt):
            _interrupt_self(1)
    assert signal.getsignal(signal.SIGINT) is before
    seen = []
    t = threading.Thread(target=lambda: seen.append(InterruptGuard().__enter__().active))
    t.start()
    t.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is before  # not in the main thread: no handler


# --- mix(): Ctrl-C, the default checkpoint, resume ----------------------------------------------------

@pytest.fixture(scope="module")
def session(stem_dir):
    return load_session([stem_dir])


SIX = small_search(generations=6, seed=3, alternatives=2)  # population 8


@pytest.mark.slow
def test_mix_interrupted_exports_the_front_and_a_checkpoint_that_resumes_to_the_straight_front(session, tmp_path):
    def ctrl_c_at_generation_2(gen, n_gen, front_size, best):
        if gen == 2:
            _interrupt_self(1)

    r = api.mix([], session=session, search=SIX, progress=ctrl_c_at_generation_2)
    assert r.settings["stop_reason"] == "interrupted" and r.settings["generations"] == 2
    assert len(r.alternatives) == 2 and all(m.render is not None for m in r.alternatives)
    out = tmp_path / "out"
    r.write(out)
    assert {"alt-01.wav", "alt-02.wav", "front.json", ck.DEFAULT_NAME} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "front.json").read_text())["search"]["stop_reason"] == "interrupted"
    saved = ck.load(out / ck.DEFAULT_NAME)
    assert saved.state.gen == 2 and [s["file"] for s in saved.stems] == [p.name for p in session.paths]
    resumed = api.mix([], session=session, search=SIX, resume=out / ck.DEFAULT_NAME)
    straight = api.mix([], session=session, search=SIX)
    assert resumed.settings["resumed_from"]["generation"] == 2 and resumed.settings["stop_reason"] == "generations"
    assert resumed.front_dict()["members"] == straight.front_dict()["members"]
    assert resumed.front_dict()["search"] == straight.front_dict()["search"]


@pytest.mark.slow
def test_mix_second_ctrl_c_raises_and_the_checkpoint_keeps_the_last_generation(session, tmp_path):
    before = signal.getsignal(signal.SIGINT)

    def ctrl_c_twice_at_generation_2(gen, n_gen, front_size, best):
        if gen == 2:
            _interrupt_self(2)

    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        api.mix([], session=session, search=SIX, progress=ctrl_c_twice_at_generation_2, checkpoint=path)
    assert ck.load(path).state.gen == 1  # generation 2 was being recorded: the file keeps generation 1
    assert signal.getsignal(signal.SIGINT) is before


# --- the command line: resume, refusals ----------------------------------------------------------------

def _mix(stems, out, *args):
    return run_cli(*["mix", str(stems), "--out", str(out), *SMALL, *args])


def _front(out):
    d = json.loads((Path(out) / "front.json").read_text())
    return d["members"], d["search"], d["settings"]


@pytest.mark.slow
def test_cli_checkpoint_then_resume_gives_the_straight_front(stem_dir, tmp_path):
    res = _mix(stem_dir, tmp_path / "straight", "--generations", "6")
    assert res.exit_code == 0, res.output
    first = tmp_path / "first"
    res = _mix(stem_dir, first, "--generations", "3", "--checkpoint", str(first / "run.npz"))  # inside --out
    assert res.exit_code == 0, res.output
    assert ck.load(first / "run.npz").state.gen == 3
    res = _mix(stem_dir, tmp_path / "resumed", "--generations", "6", "--resume", str(first / "run.npz"),
               "--checkpoint", str(first / "run.npz"))
    assert res.exit_code == 0, res.output
    members, search, settings = _front(tmp_path / "resumed")
    members0, search0, settings0 = _front(tmp_path / "straight")
    members3, _, _ = _front(first)
    assert members == members0 and search == search0
    assert members3 != members0  # generations 4..6 changed the front: the comparison is not trivial
    assert settings["resumed_from"]["generation"] == 3 and "resumed_from" not in settings0
    assert ck.load(first / "run.npz").state.gen == 6  # the resumed run went on saving into it


@pytest.fixture(scope="module")
def saved_run(session, tmp_path_factory):
    """A checkpoint as ``evomix mix STEMS --population 8 --seed 2 --generations 2 --checkpoint`` writes it
    (the command line calls this mix(); no export, to save time), and an exported alt-01.wav beside it."""
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    r = api.mix([], session=session, search=small_search(seed=2, alternatives=1, generations=2), checkpoint=path)
    sf.write(path.parent / "alt-01.wav", materialise(r.alternatives[0].render.mix).T, session.sr)
    return path


def _refused(res, *needles):
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("evomix: error: --resume: "), err
    assert "Traceback" not in res.output
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("args, needles", [
    (["--seed", "5"], ["seed 2 (saved) vs 5 (now)"]),
    (["--population", "12"], ["population 8 (saved) vs 12 (now)"]),
    (["--weights", "masking=2"], ["weights"]),
    (["--algorithm", "nsga3"], ["algorithm \"nsga2\" (saved) vs \"nsga3\" (now)"]),
    (["--genre", "rock", "--lock", "vocal.pan=0"], ["genre", "constraints"]),
])
def test_resume_refuses_other_settings(stem_dir, saved_run, tmp_path, args, needles):
    base = ["--seed", "2", "--population", "8"]
    res = run_cli(*["mix", str(stem_dir), "--out", str(tmp_path / "out"), "--alternatives", "2", "--quiet",
                              *base, *args, "--generations", "4", "--resume", str(saved_run)])
    _refused(res, "other search settings", *needles)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, needle", [
    ("content", "vocal.wav has other content"),
    ("missing", "keys.wav is missing"),
    ("new", "guitar.wav is new"),
])
def test_resume_refuses_other_stems(stem_dir, saved_run, tmp_path, change, needle):
    stems = tmp_path / "stems"
    shutil.copytree(stem_dir, stems)
    if change == "content":
        x, sr = sf.read(stems / "vocal.wav", always_2d=True)
        sf.write(stems / "vocal.wav", 0.5 * x, sr, subtype="PCM_24")  # 6 dB quieter: same name and size
    elif change == "missing":
        (stems / "keys.wav").unlink()
    else:
        write_stems(stems, {"guitar": song_stems(duration_s=4.0)["keys"]})
    res = _mix(stems, tmp_path / "out", "--generations", "4", "--resume", str(saved_run))
    _refused(res, "other stems", needle)
    assert not (tmp_path / "out").exists()


def _damaged(kind: str, good: Path, tmp_path: Path) -> Path:
    p = tmp_path / f"{kind}.npz"
    data = good.read_bytes()
    if kind == "random-bytes":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif kind == "bit-flip":  # inside the population array: the zip CRC catches it
        z = np.load(good)
        i = data.find(z["population"].tobytes()[:64])
        p.write_bytes(data[:i + 10] + bytes([data[i + 10] ^ 0xFF]) + data[i + 11:])
    elif kind == "other-npz":
        np.savez(p, a=np.arange(3))
    elif kind == "other-format":
        with np.load(good) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays["header"].tobytes()) | {"format": "evomix-checkpoint/99"}
        np.savez(p, **(arrays | {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}))
    elif kind == "array-missing":
        with np.load(good) as z:
            np.savez(p, **{k: z[k] for k in z.files if k != "archive_F"})
    elif kind == "wav":
        p = good.parent / "alt-01.wav"
    elif kind == "no-file":
        p = tmp_path / "nothing.npz"
    return p


@pytest.mark.parametrize("kind, needle", [
    ("random-bytes", "not an evomix checkpoint (not a .npz archive)"),
    ("truncated", "not a readable evomix checkpoint"),
    ("bit-flip", "not a readable evomix checkpoint"),
    ("other-npz", "not an evomix checkpoint (no header"),
    ("other-format", "format 'evomix-checkpoint/99'"),
    ("array-missing", "damaged checkpoint"),
    ("wav", "not an evomix checkpoint (not a .npz archive)"),
    ("no-file", "no such file"),
])
def test_resume_refuses_files_that_are_not_checkpoints(stem_dir, saved_run, tmp_path, kind, needle):
    bad = _damaged(kind, saved_run, tmp_path)
    res = _mix(stem_dir, tmp_path / "out", "--generations", "4", "--resume", str(bad))
    _refused(res, needle)


def test_checkpoint_refuses_to_replace_an_existing_file_without_force(stem_dir, saved_run, tmp_path):
    before = saved_run.read_bytes()
    res = _mix(stem_dir, tmp_path / "out", "--generations", "1", "--checkpoint", str(saved_run))
    assert res.exit_code == 1 and "--checkpoint" in res.stderr and "--force" in res.stderr
    assert saved_run.read_bytes() == before and not (tmp_path / "out").exists()


# --- SIGINT sent to a running `evomix mix` --------------------------------------------------------------

def _default_sigint():  # in the child: Ctrl-C as in a terminal, even if this test runs with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, **popen):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "EVOMIX_PROGRESS_INTERVAL_S": "0"}  # a progress line every generation
    return subprocess.Popen([sys.executable, "-m", "evomix", "mix", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=_default_sigint, **popen)


def _read_until(proc, pattern: str, lines: list) -> re.Match:
    """Read the child's stderr lines (kept in ``lines``) until one matches ``pattern``."""
    for line in proc.stderr:
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    proc.wait()
    raise AssertionError("the run ended before '" + pattern + "':\n" + "".join(lines))


@pytest.mark.slow
def test_sigint_during_the_search_exports_the_front_and_leaves_a_loadable_checkpoint(stem_dir, tmp_path):
    out, path = tmp_path / "out", tmp_path / "run.npz"
    proc = _start([stem_dir, "--out", out, "--population", "8", "--generations", "100000", "--alternatives", "2",
                   "--checkpoint", path])
    lines: list = []
    _read_until(proc, r"evomix: search: ([3-9]|\d\d+)/100000 generations", lines)  # a few generations done
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Ctrl-C: stopping after this generation" in err
    front = json.loads((out / "front.json").read_text())
    k = front["settings"]["generations"]
    assert front["search"]["stop_reason"] == front["settings"]["stop_reason"] == "interrupted" and 3 <= k < 100000
    assert f"interrupted after generation {k}" in err and f"--resume {path}" in err
    for i in (1, 2):
        x, sr = sf.read(out / f"alt-{i:02d}.wav")
        assert x.shape[1] == 2 and np.abs(x).max() > 0
        assert (out / f"alt-{i:02d}.json").is_file()
    saved = ck.load(path)
    assert saved.state.gen == k and saved.state.evaluations == front["search"]["evaluations"]
    np.testing.assert_allclose(saved.state.hypervolume, front["search"]["hypervolume"], atol=1e-6)  # rounded in JSON
    # and it resumes (the command line's settings: population 8, seed 0, alternatives 2), two more generations
    more = api.mix([stem_dir], search=small_search(seed=0, alternatives=2, generations=k + 2), resume=path)
    assert more.settings["generations"] == k + 2 and more.settings["resumed_from"]["generation"] == k


@pytest.mark.slow
def test_second_sigint_aborts_at_once_without_writing_the_outputs(stem_dir, tmp_path):
    """Population 1024: generation 0 takes seconds (DEAP's non-dominated sort is O(n^2) Python), so
    both signals arrive while it runs; the search never finishes its phase."""
    out, path = tmp_path / "out", tmp_path / "ckpt" / "run.npz"
    proc = _start([stem_dir, "--out", out, "--population", "1024", "--generations", "100000", "--checkpoint", path])
    lines: list = []
    _read_until(proc, r"evomix: search: 100000 generations", lines)
    proc.send_signal(signal.SIGINT)
    _read_until(proc, r"Ctrl-C: stopping after this generation", lines)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _read_until(proc, r"evomix: aborted by Ctrl-C", lines)
    waited = time.monotonic() - t  # to the message (the interpreter's teardown follows: ~0.5 s here)
    _, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("evomix: aborted by Ctrl-C") and "Traceback" not in err
    assert "evomix: search: done" not in err, err  # aborted inside the search
    assert not out.exists()
    assert not path.parent.exists() or [p.name for p in path.parent.iterdir()] in ([], ["run.npz"])  # no temporary file
    assert waited < 10.0, f"{waited:.1f} s from the second Ctrl-C to the message"  # ~0.1 s here; gen 0 alone takes ~4 s


@pytest.mark.slow
def test_ctrl_c_of_a_terminal_reaches_the_worker_processes_too_and_still_stops_cleanly(stem_dir, tmp_path):
    """A terminal's Ctrl-C goes to the whole process group: the --jobs workers ignore it (loky would
    otherwise break the pool, or send the KeyboardInterrupt of a task back), the parent stops the
    search. Population 8 is one block: one worker scores, the other stays idle."""
    out = tmp_path / "out"
    proc = _start([stem_dir, "--out", out, "--population", "8", "--jobs", "2", "--generations", "100000",
                   "--alternatives", "1"], start_new_session=True)  # its own group: the signal stays off pytest
    lines: list = []
    _read_until(proc, r"evomix: search: ([3-9]|\d\d+)/100000 generations", lines)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted after generation" in err
    front = json.loads((out / "front.json").read_text())
    assert front["settings"]["stop_reason"] == "interrupted" and (out / ck.DEFAULT_NAME).is_file()
    assert ck.load(out / ck.DEFAULT_NAME).state.gen == front["settings"]["generations"]
