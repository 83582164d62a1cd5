"""Output places and writes (issue 24): every place a command writes to is checked before any audio
is read, a write that fails at the end leaves no half-made folder, weights cannot outweigh the
limiter budget, and an interrupted run tells the truth about how to continue.

Each bad case: exit code 1, one line on stderr naming the option or file and the OS reason, no
traceback, nothing written, and the stems byte for byte as before.
"""
import errno
import hashlib
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

import evomix.io.files as files_mod
import evomix.io.places as places_mod
from evomix.cli import resume_command
from evomix.search import checkpoint as ck
from evomix.search.problem import INFEASIBLE, RAW_SCORE_CAP
from objectives.base import MAX_WEIGHT, parse_weights
from tests.support import run_cli, search_flags, small_search

TINY = search_flags(small_search())


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def guarded(stem_dir):
    """The stems' hashes before and after the test: inputs are never touched."""
    before = _hashes(stem_dir)
    yield stem_dir
    assert _hashes(stem_dir) == before


def _one_line(res, *needles):
    err = res.stderr.strip()
    assert res.exit_code == 1, (res.exit_code, res.stderr, res.stdout)
    assert len(err.splitlines()) == 1 and err.startswith("evomix: error:"), err
    assert "Traceback" not in res.output and "Warning" not in res.stderr
    for n in needles:
        assert n in err, (n, err)
    return err


def _commands(stems, out, params=None):
    """(name, argv) of every command that writes into a folder or a file, with ``out`` as its place."""
    cmds = [("mix", ["mix", stems, "--out", out, *TINY]),
            ("demo", ["demo", "--out", out, "--population", "8", "--generations", "1"]),
            ("explore", ["explore", stems, "--out", out, "--iterations", "1"]),
            ("analyze --plot", ["analyze", stems / "vocal.wav", "--plot", out / "x.png"]),
            ("profile -o", ["profile", stems / "keys.wav", "--name", "x", "-o", out / "p.json"]),
            ("mix --checkpoint", ["mix", stems, "--out", out.parent / "elsewhere", "--checkpoint", out / "c.npz",
                                  *TINY])]
    if params is not None:
        cmds += [("vary", ["vary", params, stems, "--out", out, "-n", "1"]),
                 ("rank --out", ["rank", params.parent, "--out", out])]
    return cmds


@pytest.fixture(scope="module")
def saved_run(stem_dir, tmp_path_factory):
    """A finished small run (for vary and rank)."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert run_cli("mix", stem_dir, "--out", out, *TINY, "--quiet").exit_code == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("which", range(8))
def test_an_output_place_below_a_file_fails_before_any_work(guarded, saved_run, tmp_path, which):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    name, argv = _commands(guarded, blocker / "sub", saved_run / "alt-01.json")[which]
    res = run_cli(*argv)
    _one_line(res, "which is a file, not a folder", str(blocker))
    assert blocker.read_text() == "not a folder" and not (tmp_path / "elsewhere").exists(), name


@pytest.mark.slow
@pytest.mark.parametrize("which", range(8))
def test_a_read_only_place_fails_before_any_work_naming_the_os_reason(guarded, saved_run, tmp_path, monkeypatch,
                                                                      which):
    """A read-only file system refuses root too; simulated where the probe asks the OS (the check
    makes and removes a temporary folder: it sees what a permission test cannot)."""
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    out = tmp_path / "ro" / "mixes"
    out.mkdir(parents=True)  # an empty folder on a read-only mount
    monkeypatch.setattr(places_mod.tempfile, "mkdtemp", read_only)
    name, argv = _commands(guarded, out, saved_run / "alt-01.json")[which]
    res = run_cli(*argv)
    _one_line(res, "Read-only file system")
    assert list(out.iterdir()) == [] and not (tmp_path / "elsewhere").exists(), name


def test_the_probe_leaves_nothing_behind(tmp_path):
    places_mod.check_output_folder(tmp_path / "new" / "deeper", force=False)
    assert list(tmp_path.iterdir()) == []  # nothing made: the folder is made when the results are written


@pytest.mark.slow
def test_a_full_disk_at_the_end_leaves_no_half_written_folder(guarded, tmp_path, monkeypatch):
    """``No space left on device`` while writing the masters: one line naming the file and the
    reason, and the folder the run made is gone (no half result presented as one)."""
    real_finish = files_mod.finish

    def full(tmp, path):
        if path.suffix == ".wav":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_finish(tmp, path)

    monkeypatch.setattr(files_mod, "finish", full)
    out = tmp_path / "mixes"
    res = run_cli("mix", guarded, "--out", out, *TINY, "--quiet")
    _one_line(res, "alt-01.wav", "No space left on device")
    assert not out.exists()


@pytest.mark.slow
def test_a_full_disk_into_an_existing_folder_removes_only_what_this_run_wrote(guarded, tmp_path, monkeypatch):
    out = tmp_path / "mixes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(files_mod, "finish", lambda tmp, path: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")) if path.name == "front.json" else files_mod.os.replace(
        tmp, path))
    res = run_cli("mix", guarded, "--out", out, *TINY, "--quiet", "--force")
    _one_line(res, "front.json", "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_libsndfile_s_system_error_on_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    class Usage:
        free = 0

    monkeypatch.setattr(files_mod.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(files_mod.AudioFileError, match="No space left on device"):
        with files_mod.atomic_file(tmp_path / "x.wav"):
            raise files_mod.sf.LibsndfileError(2, prefix="")  # libsndfile's "System error."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["masking=101", "masking=1e9", "masking=1e308,loudness=1e308", "genre=inf"])
def test_weights_past_the_documented_range_are_refused(text):
    with pytest.raises(Exception, match=r"must be a number in \[0, 100\]"):
        parse_weights(text)


def test_weights_at_the_top_of_the_range_cannot_reach_the_infeasibility_marker(stem_analysis, monkeypatch):
    """The feasibility rule cannot collide with a weighted score: with every weight at its maximum
    and raw scores far beyond any real one, a feasible candidate scores below INFEASIBLE and one
    over the limiter budget at or above it."""
    from evomix import pipeline
    from evomix.search.genome import GeneTable
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    assert MAX_WEIGHT * RAW_SCORE_CAP < INFEASIBLE
    w = parse_weights(",".join(f"{n}=100" for n in OBJECTIVE_NAMES))
    problem = pipeline.make_problem(stem_analysis, GeneTable(stem_analysis.n_stems), Target(load_profile("pop")),
                                    OBJECTIVE_NAMES, w, max_limiting_db=6.0)
    huge = np.full((2, len(OBJECTIVE_NAMES)), 1e300)
    monkeypatch.setattr(type(problem), "scores_and_violations",
                        lambda self, g: (huge.copy(), np.array([0.0, 0.5]), np.zeros(2), np.zeros(2)))
    F = problem.weighted_scores(np.zeros((2, problem.table.n_genes)))
    assert (F[0] < INFEASIBLE).all() and (F[1] >= INFEASIBLE).all(), F


def test_the_resume_hint_is_the_same_command_with_resume_and_force():
    argv = ["/usr/bin/evomix", "mix", "my stems/", "--out", "out", "--generations", "50"]
    cmd = resume_command(argv, ck.Path("out/checkpoint.npz"))
    assert shlex.split(cmd) == ["evomix", "mix", "my stems/", "--out", "out", "--generations", "50", "--resume",
                                "out/checkpoint.npz", "--force"]
    again = resume_command(shlex.split(cmd), ck.Path("out/checkpoint.npz"))  # interrupted again: one --resume
    assert shlex.split(again).count("--resume") == 1 and shlex.split(again).count("--force") == 1


def _interrupted(argv, cwd):
    """Run ``argv``, Ctrl-C it once a few generations are done; its JSON summary."""
    import signal

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    seen = ""
    while not re.search(r" ([3-9]|\d\d+)/100000 generations", seen):  # a few generations done
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, seen + err
    summary = json.loads(stdout)
    assert summary["stop_reason"] == "interrupted", summary["stop_reason"]
    return summary


@pytest.mark.slow
def test_the_printed_resume_command_works_as_printed(stem_dir, tmp_path):
    """Ctrl-C once, then run exactly the command evomix printed: it resumes from the checkpoint
    into the same folder (interrupted again, it has continued from the saved generation)."""
    out = tmp_path / "out"
    first = _interrupted([sys.executable, "-m", "evomix", "mix", str(stem_dir), "--out", str(out), "--population",
                          "8", "--generations", "100000", "--alternatives", "1", "--json"], tmp_path)
    printed = shlex.split(first["resume_command"])
    assert printed[0] == "evomix" and printed[-3:] == ["--resume", first["checkpoint"], "--force"]
    second = _interrupted([sys.executable, "-m", "evomix", *printed[1:]], tmp_path)
    front = json.loads((out / "front.json").read_text())
    assert front["settings"]["resumed_from"]["generation"] == first["generations"]
    assert second["generations"] > first["generations"]


def test_checkpoint_temporaries_of_a_killed_run_are_cleaned_on_the_next(tmp_path):
    path = tmp_path / "run.npz"
    stale = tmp_path / ".run.npz.k2j3.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.x.tmp"
    other.write_bytes(b"not ours")
    ck.Saver(path, settings={}, stems=[])
    assert not stale.exists() and other.exists()


def test_the_demo_refuses_a_bad_option_before_writing_its_stems(tmp_path):
    res = run_cli("demo", "--out", tmp_path / "d", "--population", "0")
    _one_line(res, "--population")
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_more_alternatives_than_the_front_holds_says_how_many_it_holds(guarded, tmp_path):
    out = tmp_path / "out"
    res = run_cli("mix", guarded, "--out", out, *search_flags(small_search(alternatives=1000)), "--json")
    assert res.exit_code == 0, res.stderr
    n = len([m for m in json.loads((out / "front.json").read_text())["members"] if "space_copy_of" not in m])
    warning = [w for w in json.loads(res.stdout)["warnings"] if "the front has only" in w]
    assert warning and warning[0].startswith(f"the front has only {n} member(s)"), (n, warning)
