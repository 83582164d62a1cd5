"""Bad inputs (issue 24): each is refused with exit code 1 and exactly one line on stderr,
``evomix: error: ...``, naming the file or option and the problem; no traceback, no Python or numpy
warning, nothing written, and every input file (the stems' sha256 included) unchanged.

The matrix is :data:`CASES`: one ``pytest.param(argv, fragment, id=...)`` per case, grouped by the
kind of input. ``argv`` is a builder: it gets a fresh :class:`Workspace` (a copy of the tiny song's
four stems and a valid ``alt-01.json`` for them), may write the bad input into it, and returns the
command line. ``fragment`` must appear in the error line. The :func:`unchanged` fixture hashes every
file of the workspace before the command and checks nothing was added, removed or changed after it.
To add a case, add a ``pytest.param`` to the group it belongs to (or a new group).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evomix.output.result import PARAMS_FORMAT
from evomix.search.genome import GeneTable
from tests.support import run_cli

NAMES = ("bass", "drums", "keys", "vocal")  # the stems of tests.support.song_stems
ROLES = ("bass", "drums", "keys", "vocal")


@dataclass
class Workspace:
    """Everything a case reads lives below ``root``: ``stems/`` (bass, drums, keys, vocal .wav) and
    ``alt-01.json``, a valid saved mix of those stems (neutral settings)."""

    root: Path

    @property
    def stems(self) -> Path:
        return self.root / "stems"

    @property
    def params(self) -> Path:
        return self.root / "alt-01.json"

    def stem(self, name: str) -> Path:
        return self.stems / f"{name}.wav"

    def edited(self, *edits, name: str = "bad.json") -> Path:
        """A copy of ``alt-01.json`` with ``edits`` (functions of the whole file's dict) applied."""
        d = json.loads(self.params.read_text())
        for edit in edits:
            edit(d)
        path = self.root / name
        path.write_text(json.dumps(d))
        return path

    def folder(self, name: str, *, drop: tuple[str, ...] = (), files: dict | None = None) -> Path:
        """A folder ``name`` with copies of the stems (less ``drop``) and ``files`` {name: bytes}."""
        folder = self.root / name
        folder.mkdir()
        for n in NAMES:
            if n not in drop:
                shutil.copy(self.stem(n), folder)
        for fname, data in (files or {}).items():
            (folder / fname).write_bytes(data)
        return folder

    def loop(self, name: str = "loop.wav", where: Path | None = None) -> Path:
        """A symbolic link that points to itself."""
        link = (where or self.root) / name
        os.symlink(link, link)
        return link

    def broken_link(self, name: str = "gone.wav") -> Path:
        link = self.root / name
        os.symlink(self.root / "nowhere.wav", link)
        return link


def _neutral_params() -> dict:
    table = GeneTable(len(NAMES))
    params = table.decode(table.neutral()[None], np.zeros(len(NAMES))).to_dict(0, NAMES, ROLES)
    return {"format": PARAMS_FORMAT, "name": "alt-01", "sr": 44100, "genre": "pop", "target_lufs": -14.0,
            "ceiling_dbtp": -1.0, "params": params}


@pytest.fixture
def ws(tmp_path, stem_dir) -> Workspace:
    """A fresh workspace: the session's stems copied (so no case can touch the shared ones)."""
    shutil.copytree(stem_dir, tmp_path / "stems")
    (tmp_path / "alt-01.json").write_text(json.dumps(_neutral_params()))
    return Workspace(tmp_path)


def _snapshot(root: Path) -> dict:
    """{relative path: sha256 of a file, "dir", or "link -> target"} of everything below ``root``
    (links are not followed: some cases are link loops)."""
    out = {}
    for here, dirs, files in os.walk(root, followlinks=False):
        for n in dirs + files:
            p = Path(here) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link -> {os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def unchanged():
    """``with unchanged(root): ...``: hash every file below ``root`` (the stems included) before
    the block, and check after it that nothing was written, removed or changed."""
    @contextlib.contextmanager
    def guard(root: Path):
        before = _snapshot(root)
        assert any(k.startswith("stems") and len(v) == 64 for k, v in before.items())  # the stems are hashed
        yield
        after = _snapshot(root)
        assert sorted(set(after) - set(before)) == [], "written"
        assert sorted(set(before) - set(after)) == [], "removed"
        assert {k: v for k, v in after.items() if before[k] != v} == {}, "changed"

    return guard


# --- edits of a saved mix (functions of the whole alt-NN.json dict) --------------------------------


def put(path: str, value):
    """Set the dotted ``path`` (``params.stems.vocal.gain_db``) to ``value``."""
    *keys, last = path.split(".")

    def edit(d):
        for k in keys:
            d = d[k]
        d[last] = copy.deepcopy(value)

    return edit


def drop(path: str):
    """Remove the dotted ``path``."""
    *keys, last = path.split(".")

    def edit(d):
        for k in keys:
            d = d[k]
        del d[last]

    return edit


def render(ws: Workspace, params: Path, *stems) -> list:
    return ["render", params, *(stems or (ws.stems,)), "-o", ws.root / "x.wav", "--quiet"]


def vary(ws: Workspace, *params_and_stems) -> list:
    return ["vary", *params_and_stems, "--out", ws.root / "v", "-n", 2, "--quiet"]


def mix(ws: Workspace, *stems) -> list:
    return ["mix", *stems, "--out", ws.root / "out", "--population", 8, "--generations", 1, "--quiet"]


def with_guitar(ws: Workspace) -> Path:
    """A folder of the four stems and one more, ``guitar.wav``."""
    return ws.folder("more", files={"guitar.wav": ws.stem("keys").read_bytes()})


# --- the matrix: (argv builder, fragment of the one error line) -------------------------------------

PARAMS_TYPES = [  # A: a saved mix is checked field by field; booleans are not numbers
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.vocal.gain_db", "loud"))),
                 "bad.json: stems.vocal.gain_db must be a number (dB), got 'loud'", id="render-gain-string"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.vocal.gain_db", True))),
                 "bad.json: stems.vocal.gain_db must be a number (dB), got true", id="render-gain-bool"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.vocal.eq", [1, 2]))),
                 "bad.json: stems.vocal.eq must be an object of numbers (highpass_hz, ", id="render-eq-list"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.keys.pan", None))),
                 "bad.json: stems.keys.pan must be a number, got null", id="render-pan-null"),
    pytest.param(lambda ws: render(ws, ws.edited(drop("params.stems.bass.comp.ratio"))),
                 "bad.json: stems.bass.comp.ratio is missing; it must be a number", id="render-missing-field"),
    pytest.param(lambda ws: render(ws, ws.edited(drop("params.stems.drums.trim_db"))),
                 "bad.json: stems.drums.trim_db is missing; it must be a number (dB)", id="render-missing-trim"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.vocal.eq.peak_hz", float("nan")))),
                 "bad.json: stems.vocal.eq.peak_hz must be a finite number (Hz), got NaN", id="render-nan"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.vocal", 3))),
                 "bad.json: stems.vocal must be an object of settings", id="render-stem-number"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems", ["vocal"]))),
                 "bad.json: stems must be an object {stem name: settings}", id="render-stems-list"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.master.comp.ratio", "2"))),
                 "bad.json: master.comp.ratio must be a number, got '2'", id="render-master-string"),
    pytest.param(lambda ws: render(ws, ws.edited(drop("params.master"))),
                 "bad.json: master is missing", id="render-master-missing"),
    pytest.param(lambda ws: render(ws, ws.edited(put("target_lufs", "loud"))),
                 "bad.json: target_lufs must be a number (LUFS), got 'loud'", id="render-target-string"),
    pytest.param(lambda ws: render(ws, ws.edited(put("ceiling_dbtp", False))),
                 "bad.json: ceiling_dbtp must be a number (dBTP), got false", id="render-ceiling-bool"),
    pytest.param(lambda ws: render(ws, ws.edited(put("target_lufs", 10))),
                 "bad.json: target_lufs must be <= -5.0, got 10.0 (pass --target-lufs to override it)",
                 id="render-target-out-of-range"),
    pytest.param(lambda ws: render(ws, ws.edited(put("sr", "44100"))),
                 "bad.json: sr must be a whole number (Hz), got '44100'", id="render-sr-string"),
    pytest.param(lambda ws: render(ws, ws.edited(put("sr", 5))),
                 "bad.json: sr must be between 8000 and 384000 Hz, got 5", id="render-sr-out-of-range"),
    pytest.param(lambda ws: vary(ws, ws.edited(put("params.stems.vocal.gain_db", "loud")), ws.stems),
                 "bad.json: stems.vocal.gain_db must be a number (dB), got 'loud'", id="vary-gain-string"),
    pytest.param(lambda ws: vary(ws, ws.edited(put("params.stems.bass.gain_db", True)), ws.stems),
                 "bad.json: stems.bass.gain_db must be a number (dB), got true", id="vary-gain-bool"),
    pytest.param(lambda ws: vary(ws, ws.edited(put("params.stems.vocal.comp", [1, 2])), ws.stems),
                 "bad.json: stems.vocal.comp must be an object of numbers (threshold_db, ", id="vary-comp-list"),
    pytest.param(lambda ws: vary(ws, ws.params, ws.edited(drop("params.stems.keys.pan")), ws.stems),
                 "bad.json: stems.keys.pan is missing; it must be a number", id="vary-second-parent-missing"),
    pytest.param(lambda ws: vary(ws, ws.edited(put("genre", 5)), ws.stems),
                 "bad.json: genre must be a genre name or profile file, got 5 (pass --genre)", id="vary-genre-number"),
]

STEMS_MISMATCH = [  # B: render and vary take exactly the stems the saved mix was made from
    pytest.param(lambda ws: render(ws, ws.params, ws.stem("vocal")),
                 "alt-01.json: the mix was made from stems bass, drums, keys, vocal; missing: bass, drums, keys",
                 id="render-missing-stems"),
    pytest.param(lambda ws: render(ws, ws.params, with_guitar(ws)),
                 "alt-01.json: the mix was made from stems bass, drums, keys, vocal; not in it: guitar",
                 id="render-extra-stem"),
    pytest.param(lambda ws: render(ws, ws.params, ws.stem("vocal"), ws.stem("keys"), ws.stem("bass"),
                                   ws.folder("other", drop=("bass", "drums", "keys", "vocal"),
                                             files={"gtr.wav": ws.stem("drums").read_bytes()}) / "gtr.wav"),
                 "missing: drums (give every stem it was made from); not in it: gtr", id="render-missing-and-extra"),
    pytest.param(lambda ws: vary(ws, ws.params, ws.stem("vocal")),
                 "alt-01.json: the mix was made from stems bass, drums, keys, vocal; missing: bass, drums, keys",
                 id="vary-missing-stems"),
    pytest.param(lambda ws: vary(ws, ws.params, with_guitar(ws)),
                 "not in it: guitar", id="vary-extra-stem"),
]

STEM_FILES = [  # C: one rule for which files are stems, by name and in a folder
    pytest.param(lambda ws: mix(ws, ws.folder("mp3", drop=("vocal",), files={"vocal.mp3": b"\xff\xfb" + b"\0" * 600})),
                 "vocal.mp3: not a readable audio file or corrupt", id="mix-folder-corrupt-mp3-not-skipped"),
    pytest.param(lambda ws: mix(ws, ws.folder("m4a", drop=("vocal",), files={"vocal.m4a": b"\0\0\0\x20ftypM4A "})),
                 "vocal.m4a: AAC or ALAC (M4A) files cannot be decoded by libsndfile", id="mix-folder-m4a"),
    pytest.param(lambda ws: render(ws, ws.params, ws.folder("m4a", drop=("vocal",), files={"vocal.m4a": b"xx"})),
                 "vocal.m4a: AAC or ALAC (M4A) files cannot be decoded", id="render-folder-m4a"),
    pytest.param(lambda ws: mix(ws, ws.stems, ws.folder("txt", drop=NAMES, files={"notes.txt": b"hi"}) / "notes.txt"),
                 "notes.txt: not a readable audio file", id="mix-text-file-by-name"),
]

LINKS = [  # D: a symbolic link loop is reported as one, not as a missing file
    pytest.param(lambda ws: mix(ws, ws.loop()), "loop.wav: is a symbolic link loop", id="mix-loop"),
    pytest.param(lambda ws: mix(ws, ws.stems, ws.loop("loop")), "loop: is a symbolic link loop", id="mix-loop-folder"),
    pytest.param(lambda ws: mix(ws, ws.loop(where=ws.folder("looped", drop=("vocal",))).parent),
                 "looped/loop.wav: is a symbolic link loop", id="mix-loop-in-folder"),
    pytest.param(lambda ws: mix(ws, ws.loop("dir") / "x.wav"),
                 "dir/x.wav: cannot be reached: its path goes through a symbolic link loop", id="mix-loop-on-the-way"),
    pytest.param(lambda ws: render(ws, ws.params, ws.stem("bass"), ws.stem("drums"), ws.stem("keys"),
                                   ws.loop("vocal.wav", ws.folder("v", drop=NAMES))),
                 "vocal.wav: is a symbolic link loop", id="render-loop-stem"),
    pytest.param(lambda ws: vary(ws, ws.params, ws.loop()), "loop.wav: is a symbolic link loop", id="vary-loop"),
    pytest.param(lambda ws: mix(ws, ws.broken_link()),
                 "gone.wav: is a broken symbolic link (to ", id="mix-broken-link"),
    pytest.param(lambda ws: mix(ws, ws.root / "nothing.wav"), "nothing.wav: no such file or folder", id="mix-missing"),
]

UNMASK = [  # E: the dynamic cuts' keys and genes (issue 22, item 2)
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--key", "keys=guitar"],
                 "--key 'keys=guitar': no stem named 'guitar' to key keys's cut; stems are bass, drums, keys, vocal",
                 id="mix-key-missing-stem"),
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--key", "gtr=vocal"],
                 "--key 'gtr=vocal': no stem named 'gtr'", id="mix-key-unknown-keyed-stem"),
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--key", "keys=keys"],
                 "--key 'keys=keys': a stem cannot key its own cut", id="mix-key-itself"),
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--key", "keys:vocal"],
                 "--key 'keys:vocal': expected STEM=KEY", id="mix-key-malformed"),
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--lock", "keys.unmask_depth_db=20"],
                 "--lock 'keys.unmask_depth_db=20': 20 is outside the range of keys.unmask_depth_db, 0..12 dB",
                 id="mix-unmask-depth-out-of-range"),
    pytest.param(lambda ws: [*mix(ws, ws.stems), "--lock", "bass.unmask_depth_db=6"],
                 "nothing keys bass's cut", id="mix-unmask-without-key"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.keys.unmask_key", "keys"))),
                 "stems.keys.unmask_key names the stem itself", id="render-unmask-key-itself"),
    pytest.param(lambda ws: render(ws, ws.edited(put("params.stems.keys.unmask_key", "gtr"))),
                 "stems.keys.unmask_key must be the name of another stem", id="render-unmask-key-missing"),
]

CASES = PARAMS_TYPES + STEMS_MISMATCH + STEM_FILES + LINKS + UNMASK


@pytest.mark.parametrize("argv, fragment", CASES)
def test_a_bad_input_is_one_line_and_changes_nothing(ws, unchanged, argv, fragment):
    args = argv(ws)  # writes the bad input into the workspace
    with unchanged(ws.root), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_cli(*args)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evomix: error: "), res.stderr
    assert fragment in lines[0], lines[0]
    assert [str(w.message) for w in caught] == []  # no Python or numpy warning
    assert res.stdout == ""


def test_the_matrix_covers_each_kind():
    assert len(PARAMS_TYPES) >= 15 and len(STEMS_MISMATCH) >= 4 and len(STEM_FILES) >= 3 and len(LINKS) >= 5
    assert len({p.id for p in CASES}) == len(CASES)  # every case has its own id


# --- unusual inputs that work: the same stems by name and in a folder ---------------------------------


def _folder_with_an_mp3_vocal(ws: Workspace) -> Path:
    """The four stems with the vocal as an MP3 (libsndfile's encoder), and a text file beside them."""
    x, sr = sf.read(ws.stem("vocal"))
    folder = ws.folder("mp3", drop=("vocal",), files={"notes.txt": b"not a stem"})
    sf.write(folder / "vocal.mp3", x, sr, format="MP3")
    return folder


def test_an_mp3_stem_renders_the_same_in_a_folder_as_by_name(ws):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile does not decode MP3")
    folder = _folder_with_an_mp3_vocal(ws)
    by_name = [folder / f"{n}.wav" for n in NAMES if n != "vocal"] + [folder / "vocal.mp3"]
    for out, given in (("folder.wav", [folder]), ("by-name.wav", by_name)):
        res = run_cli("render", ws.params, *given, "-o", ws.root / out, "--quiet")
        assert res.exit_code == 0, res.output
    assert (ws.root / "folder.wav").read_bytes() == (ws.root / "by-name.wav").read_bytes()


@pytest.mark.slow
def test_a_folder_with_an_mp3_mixes_every_stem_and_says_it_is_lossy(ws):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile does not decode MP3")
    folder = _folder_with_an_mp3_vocal(ws)
    res = run_cli("mix", folder, "--out", ws.root / "out", "--population", 8, "--generations", 1, "--alternatives", 1,
                  "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert list(json.loads((ws.root / "out" / "front.json").read_text())["stems"]) == list(NAMES)
    lossy = f"evomix: warning: {folder / 'vocal.mp3'}: lossy (MP3) source"
    assert [ln for ln in res.stderr.splitlines() if "lossy" in ln] == [ln for ln in res.stderr.splitlines()
                                                                         if ln.startswith(lossy)]
    assert any(ln.startswith(lossy) for ln in res.stderr.splitlines()), res.stderr
