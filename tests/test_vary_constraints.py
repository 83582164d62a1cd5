"""Locks and ranges in ``evomix vary`` (issue 12, item 8): explicit ``--lock``/``--range``, the
constraints inherited from the parent's ``alt-NN.json``, and two parents whose constraints differ.

Small sessions (2 s synthetic stems, 2-3 variations per run). Exactness as in test_constraints.py:
a locked gene decodes to ``low`` bit for bit and JSON floats round-trip, so locked values are
compared with ``==`` (tolerance 0).
"""
import json

import numpy as np
import pytest

from evomix.errors import ParameterError
from evomix.output.result import PARAMS_FORMAT
from evomix.search.constraints import Constraints, default_constraints
from evomix.search.genome import GeneTable
from evomix.tools.vary import parent_constraints, run_constraints, vary
from objectives.genre import load_profile
from tests.support import run_cli, search_flags, small_search, song_stems, write_stems

NAMES = ["drums", "bass", "keys", "vocal"]  # the stems of tests.support.song_stems, in file order
ROLES = ["drums", "bass", "keys", "vocal"]
LOCKS = ["vocal.gain_db=-3.7", "keys.eq.peak_q=0.7", "master.comp.ratio=2.5"]  # 0.7, 2.5: log-scale genes
RANGES = ["*.eq.highpass_hz=40:120", "bass.eq.highpass_hz=20:30", "bass.pan=-0.2:0.1"]


@pytest.fixture(scope="module")
def stems(tmp_path_factory):
    return write_stems(tmp_path_factory.mktemp("stems2s"), song_stems(duration_s=2.0))


def _saved_mix(path, *, seed=7, constraints=None, edit=None):
    """An alt-NN.json of a random (unconstrained) mix, optionally with recorded constraints."""
    table = GeneTable(len(NAMES))
    g = np.random.default_rng(seed).uniform(0.2, 0.8, size=(1, table.n_genes))  # (1, genes)
    params = table.decode(g, np.zeros(len(NAMES))).to_dict(0, NAMES, ROLES)
    if edit is not None:
        edit(params)
    d = {"format": PARAMS_FORMAT, "name": path.stem, "sr": 44100, "genre": "pop", "target_lufs": -14.0,
         "ceiling_dbtp": -1.0, "params": params}
    if constraints is not None:
        d["constraints"] = constraints
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


def _check(params, locks, ranges):
    """Every lock exact (==), every range respected, in one params object."""
    for name, value in locks.items():
        assert _value(params, name) == value, (name, _value(params, name), value)
    for name, (lo, hi) in ranges.items():
        assert lo <= _value(params, name) <= hi, (name, _value(params, name))


def _value(params, name):
    stem, _, path = name.partition(".")
    node = params["master"] if stem == "master" else params["stems"][stem]
    for key in path.split("."):
        node = node[key]
    return node


def _written(out):
    return [json.loads(p.read_text()) for p in sorted(out.glob("alt-*.json"))]


# --- explicit constraints -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def explicit_run(stems, tmp_path_factory):
    folder = tmp_path_factory.mktemp("explicit")
    parent = _saved_mix(folder / "in" / "alt-01.json")
    c = Constraints.parse(LOCKS, RANGES)
    res = vary([parent], stems, n=3, spread=0.4, seed=1, constraints=c)
    res.write(folder / "out")
    return parent, res, folder / "out", c


@pytest.mark.slow
def test_explicit_locks_hold_exactly_and_the_rest_varies(explicit_run):
    parent, res, out, c = explicit_run
    files = _written(out)
    assert len(files) == len(res.alternatives) >= 2
    locks = c.to_dict()["locks"]
    every = [m.params for m in res.front] + [f["params"] for f in files]  # every rendered candidate, every export
    for p in every:
        _check(p, locks, {})
    saved = json.loads(parent.read_text())["params"]
    assert all(_value(saved, n) != v for n, v in locks.items())  # guard: the parent's values differ from the locks
    for name in ("drums.gain_db", "bass.pan", "master.comp.threshold_db"):  # guard: the unlocked ones still move
        assert len({_value(m.params, name) for m in res.front}) == len(res.front), name


@pytest.mark.slow
def test_explicit_ranges_hold_with_specific_beating_wildcard(explicit_run):
    _, res, out, _ = explicit_run
    ranges = {"bass.eq.highpass_hz": (20.0, 30.0), "bass.pan": (-0.2, 0.1),
              **{f"{n}.eq.highpass_hz": (40.0, 120.0) for n in ("drums", "keys", "vocal")}}
    for p in [m.params for m in res.front] + [f["params"] for f in _written(out)]:
        _check(p, {}, ranges)


@pytest.mark.slow
def test_moved_parent_values_are_warned_and_recorded(explicit_run):
    parent, res, out, c = explicit_run
    lines = [w for w in res.warnings if w.startswith(f"{parent}: the locks and ranges replace")]
    assert len(lines) == 1, res.warnings
    saved = json.loads(parent.read_text())["params"]
    assert f"vocal.gain_db {saved['stems']['vocal']['gain_db']:.4g} -> -3.7 dB (lock)" in lines[0]
    assert "master.comp.ratio" in lines[0] and "(lock)" in lines[0]
    expect = c.to_dict()
    assert res.settings["constraints"] == expect
    assert all(f["constraints"] == expect for f in _written(out))  # so the next vary inherits them
    assert json.loads((out / "front.json").read_text())["settings"]["constraints"] == expect


# --- inherited from `mix --lock` ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(stems, tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "run"
    args = ["mix", stems[0].parent, "-o", out, *search_flags(small_search(seed=2, alternatives=2)), "--quiet", "--json"]
    args += [a for x in LOCKS for a in ("--lock", x)] + [a for x in RANGES for a in ("--range", x)]
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.slow
def test_inherited_constraints_from_mix_lock_hold(mixed, stems, tmp_path):
    # mix records what its search obeyed: the run's defaults (the reverb bus, a centred low end) under its entries
    defaults = default_constraints(load_profile("pop"), NAMES, ROLES, space=True)
    expect = defaults.overridden_by(Constraints.parse(LOCKS, RANGES)).to_dict()
    assert expect["ranges"]["bass.pan"] == [-0.2, 0.1] and expect["ranges"]["drums.pan"] == [-0.2, 0.2]
    assert json.loads((mixed / "alt-01.json").read_text())["constraints"] == expect  # recorded by mix
    res = vary([mixed / "alt-01.json"], stems, n=2, spread=0.5, seed=3)  # no --lock / --range repeated
    res.write(tmp_path / "v")
    assert res.settings["constraints"] == expect
    ranges = {"bass.eq.highpass_hz": (20.0, 30.0), "bass.pan": (-0.2, 0.1), "vocal.eq.highpass_hz": (40.0, 120.0)}
    every = [m.params for m in res.front] + [f["params"] for f in _written(tmp_path / "v")]
    assert len(every) >= 2
    for p in every:
        _check(p, expect["locks"], ranges)
    assert len({_value(m.params, "drums.gain_db") for m in res.front}) == len(res.front)  # guard: the rest still varies
    assert not any("the locks and ranges replace" in w for w in res.warnings)  # the parent obeyed them already


@pytest.mark.slow
def test_explicit_overrides_and_lifts_inherited(mixed, stems):
    lift = Constraints.parse(["vocal.gain_db=-6"], ["master.comp.ratio=1:4"])  # a new lock; the full range lifts one
    res = vary([mixed / "alt-01.json"], stems, n=2, spread=0.5, seed=3, constraints=lift)
    d = res.settings["constraints"]
    assert d["locks"] == {"keys.eq.peak_q": 0.7, "vocal.gain_db": -6.0}
    assert d["ranges"]["master.comp.ratio"] == [1.0, 4.0]
    for m in res.alternatives:
        assert _value(m.params, "vocal.gain_db") == -6.0 and _value(m.params, "keys.eq.peak_q") == 0.7
    assert any(_value(m.params, "master.comp.ratio") != 2.5 for m in res.alternatives)  # no longer locked
    assert any("vocal.gain_db -3.7 -> -6 dB (lock)" in w for w in res.warnings), res.warnings


@pytest.mark.slow
def test_files_without_constraints_fall_back_to_their_front(mixed, tmp_path):
    d = json.loads((mixed / "alt-01.json").read_text())
    expect = d.pop("constraints")
    old = tmp_path / "alt-01.json"  # as written before alt-NN.json recorded them, beside its front.json
    old.write_text(json.dumps(d))
    (tmp_path / "front.json").write_text((mixed / "front.json").read_text())
    assert parent_constraints(old, d).to_dict() == expect
    d["params"]["stems"]["drums"]["gain_db"] += 1.0  # not the file that run exported: nothing inherited
    assert not parent_constraints(old, d)


# --- two parents --------------------------------------------------------------------------------

def test_two_parents_locking_one_parameter_differently_fail_in_one_line(stems, tmp_path):
    a = _saved_mix(tmp_path / "a" / "alt-01.json", constraints={"locks": {"vocal.gain_db": -3.0}, "ranges": {}})
    b = _saved_mix(tmp_path / "b" / "alt-02.json", seed=8, constraints={"locks": {"vocal.gain_db": -1.0}, "ranges": {}})
    with pytest.raises(ParameterError, match=rf"^{a} and {b} lock vocal.gain_db to different values \(-3 and -1\); "
                                             r"set it on the command line"):
        vary([a, b], [tmp_path / "missing.wav"])  # refused before any stem is read
    res = run_cli("vary", a, b, *map(str, stems), "-o", tmp_path / "o", "--quiet")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("evomix: error: "), res.output
    assert str(a) in lines[0] and str(b) in lines[0] and "vocal.gain_db" in lines[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_two_parents_union_and_command_line_resolution(tmp_path):
    a = {"constraints": {"locks": {"vocal.gain_db": -3.0, "bass.pan": 0.1}, "ranges": {"*.comp.ratio": [1.5, 3.0]}}}
    b = {"constraints": {"locks": {"vocal.gain_db": -1.0},
                         "ranges": {"bass.pan": [0.0, 0.5], "*.comp.ratio": [2.0, 4.0],
                                    "master.comp.ratio": [1.0, 2.0]}}}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    c = run_constraints(paths, [a, b], Constraints.parse(["vocal.gain_db=-2"])).to_dict()
    # a lock inside the other's range; the command line wins
    assert c["locks"] == {"bass.pan": 0.1, "vocal.gain_db": -2.0}
    assert c["ranges"] == {"*.comp.ratio": [2.0, 3.0], "master.comp.ratio": [1.0, 2.0]}  # both hold: the overlap
    c = run_constraints(paths, [a, b], Constraints.parse(["*.gain_db=0"])).to_dict()  # *.PARAM replaces STEM.PARAM too
    assert c["locks"] == {"bass.pan": 0.1, "*.gain_db": 0.0}
    b["constraints"]["ranges"]["bass.pan"] = [0.2, 0.5]
    with pytest.raises(ParameterError,
                       match=r"leave no value of bass.pan \(lock bass.pan=0.1 and range bass.pan=0.2:0.5\)"):
        run_constraints(paths, [a, b], Constraints.parse(["vocal.gain_db=-2"]))


def test_recorded_constraints_round_trip_and_bad_records(tmp_path):
    c = Constraints.parse(LOCKS + ["bass.gain_db=-0.30000000000000004"], RANGES)
    back = Constraints.from_dict(json.loads(json.dumps(c.to_dict())), source="x.json")
    assert back.to_dict() == c.to_dict() and back.to_dict()["locks"]["bass.gain_db"] == -0.30000000000000004
    with pytest.raises(ParameterError, match=r"^x.json: constraints must be"):
        Constraints.from_dict({"locks": [1]}, source="x.json")
    with pytest.raises(ParameterError, match=r"^x.json: constraints.locks 'vocal.gain_db=40': 40 is outside the range"):
        Constraints.from_dict({"locks": {"vocal.gain_db": 40}}, source="x.json")


# --- command line -------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_vary_with_lock_and_range(stems, tmp_path):
    parent = _saved_mix(tmp_path / "in" / "alt-01.json")
    out = tmp_path / "o"
    res = run_cli("vary", parent, *map(str, stems), "-o", out, "-n", "2", "--spread", "0.4",
                  "--lock", "vocal.gain_db=-3.7", "--range", "bass.pan=-0.2:0.1", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["constraints"] == {"locks": {"vocal.gain_db": -3.7}, "ranges": {"bass.pan": [-0.2, 0.1]}}
    files = _written(out)
    assert len(files) == len(summary["alternatives"]) >= 1
    for f in files:
        _check(f["params"], {"vocal.gain_db": -3.7}, {"bass.pan": (-0.2, 0.1)})
    assert "evomix: warning: " in res.stderr and "vocal.gain_db" in res.stderr  # the parent's fader was moved


@pytest.mark.parametrize("extra, match", [
    (["--lock", "vocal.gain=-3"], "--lock 'vocal.gain=-3': unknown parameter 'gain' (did you mean vocal.gain_db?); "
                                  "names: STEM.PARAM with PARAM one of gain_db, pan, eq.highpass_hz"),
    (["--range", "vox.pan=-0.2:0.2"],
     "--range 'vox.pan=-0.2:0.2': unknown stem 'vox'; stems are drums, bass, keys, vocal"),
])
def test_cli_vary_unknown_name_lists_the_valid_ones(stems, tmp_path, extra, match):
    parent = _saved_mix(tmp_path / "alt-01.json")
    res = run_cli("vary", parent, *map(str, stems), "-o", tmp_path / "o", "--quiet", *extra)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("evomix: error: "), res.output
    assert match in lines[0], lines[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
