"""Locks and ranges (issue 12, item 8) and render's range check (item 9): ``evomix.search.constraints``.

Parsing and the table edit are checked on their own; one short CLI run (2 s synthetic stems,
population 8, 3 generations) checks that locks hold exactly and ranges hold in every front member
and every exported ``alt-NN.json``. Exactness: a locked gene decodes to ``low`` bit for bit and JSON
floats round-trip, so the tests compare locked values with ``==`` (tolerance 0).
"""
import json
import types
import warnings

import numpy as np
import pytest

from evomix import api, pipeline
from evomix.errors import ParameterError
from evomix.output.result import PARAMS_FORMAT
from evomix.search.constraints import Constraints, constrain_table, default_constraints, parse_lock, parse_range
from evomix.search.genome import MASTER_GENES, MASTER_PARAM_PATHS, STEM_GENES, STEM_PARAM_PATHS, GeneTable, Params
from objectives.genre import load_profile
from tests.support import run_cli, search_flags, small_search, song_stems, write_stems

NAMES = ["drums", "bass", "keys", "vocal"]  # the stems of tests.support.song_stems, in file order
LOCKS = ["vocal.gain_db=-3.7", "master.comp.ratio=2.5", "keys.eq.peak_q=0.7"]  # 2.5 and 0.7: log-scale genes
RANGES = ["*.eq.highpass_hz=40:120", "bass.eq.highpass_hz=20:30", "bass.pan=-0.2:0.1", "*.comp.ratio=1.5:3"]


def _uniform(table: GeneTable, n: int = 400) -> Params:
    g = np.random.default_rng(5).uniform(size=(n, table.n_genes))
    g[0], g[1] = 0.0, 1.0  # the ends of every gene's range
    return table.decode(g, np.zeros(table.n_stems))


# --- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, stem, path, low, high", [
    ("vocal.gain_db=-3", "vocal", "gain_db", -3.0, -3.0),
    ("bass.pan=0", "bass", "pan", 0.0, 0.0),
    ("keys.eq.highpass_hz = 120", "keys", "eq.highpass_hz", 120.0, 120.0),
    ("drums.comp.ratio=4", "drums", "comp.ratio", 4.0, 4.0),
    ("*.eq.highpass_hz=30", "*", "eq.highpass_hz", 30.0, 30.0),
    ("master.comp.ratio=2", None, "comp.ratio", 2.0, 2.0),
    ("master.eq.high_shelf_db=-1.5", None, "eq.high_shelf_db", -1.5, -1.5),
    ("lead.take2.gain_db=1e0", "lead.take2", "gain_db", 1.0, 1.0),  # a stem name with a dot
    ("keys.eq.highpass_hz=120Hz", "keys", "eq.highpass_hz", 120.0, 120.0),  # the gene's unit may follow
    ("vocal.gain_db=-3 dB", "vocal", "gain_db", -3.0, -3.0),
    ("a=b.pan=0.5", "a=b", "pan", 0.5, 0.5),  # a stem name with "="
])
def test_parse_lock_forms(text, stem, path, low, high):
    c = parse_lock(text)
    assert (c.stem, c.path, c.low, c.high, c.kind) == (stem, path, low, high, "lock")


@pytest.mark.parametrize("text, stem, path, low, high", [
    ("bass.pan=-0.2:0.2", "bass", "pan", -0.2, 0.2),
    ("*.eq.highpass_hz=40:120", "*", "eq.highpass_hz", 40.0, 120.0),
    ("master.comp.threshold_db=-12:-3", None, "comp.threshold_db", -12.0, -3.0),
    ("vocal.comp.attack_ms= 5 : 20 ", "vocal", "comp.attack_ms", 5.0, 20.0),
    ("*.eq.highpass_hz=40Hz:120hz", "*", "eq.highpass_hz", 40.0, 120.0),
    ("vocal.gain_db=-3:-3", "vocal", "gain_db", -3.0, -3.0),  # a zero-width range is a lock
])
def test_parse_range_forms(text, stem, path, low, high):
    c = parse_range(text)
    assert (c.stem, c.path, c.low, c.high, c.kind) == (stem, path, low, high, "range")


def test_every_searched_parameter_has_a_name():
    for g in STEM_GENES:
        assert parse_lock(f"vocal.{STEM_PARAM_PATHS[g.name]}={g.neutral}").gene.name == g.name
    for g in MASTER_GENES:
        assert parse_lock(f"master.{MASTER_PARAM_PATHS[g.name]}={g.neutral}").gene.name == g.name


def test_names_match_the_params_json():
    """Each name points at the same value in Params.to_dict as the gene it edits."""
    table = GeneTable(2)
    p = table.decode(np.random.default_rng(1).uniform(size=(1, table.n_genes)), np.zeros(2))
    d = p.to_dict(0, ["a", "b"], ["vocal", "bass"])
    for g in STEM_GENES:
        node = d["stems"]["b"]
        for part in STEM_PARAM_PATHS[g.name].split("."):
            node = node[part]
        assert node == getattr(p, g.name)[0, 1]
    for g in MASTER_GENES:
        node = d["master"]
        for part in MASTER_PARAM_PATHS[g.name].split("."):
            node = node[part]
        assert node == getattr(p, g.name)[0]


def test_mappings_and_round_trip_of_the_record():
    c = Constraints.parse(locks={"vocal.gain_db": -3}, ranges={"bass.pan": (-0.2, 0.2), "*.comp.ratio": "1:3"})
    d = c.to_dict()
    assert d == {"locks": {"vocal.gain_db": -3.0}, "ranges": {"bass.pan": [-0.2, 0.2], "*.comp.ratio": [1.0, 3.0]}}
    assert Constraints.parse(locks=d["locks"], ranges=d["ranges"]).to_dict() == d  # front.json settings re-run
    assert not Constraints() and c


@pytest.mark.parametrize("locks, ranges, match", [
    (["vocal.gain=-3"], None, r"--lock 'vocal.gain=-3': unknown parameter 'gain' \(did you mean vocal.gain_db\?\)"),
    (["vocal.highpass_hz=80"], None, r"unknown parameter 'highpass_hz' \(did you mean vocal.eq.highpass_hz\?\)"),
    (["master.gain_db=0"], None, r"unknown master parameter 'gain_db'; master parameters: eq.low_shelf_db"),
    (["vocal.gain_db=99"], None, r"'vocal.gain_db=99': 99 is outside the range of vocal.gain_db, -24..12 dB"),
    (None, ["*.eq.highpass_hz=10:100"], r"10 is outside the range of \*.eq.highpass_hz, 20..400 Hz"),
    (["vocal.pan=2"], None, r"outside the range of vocal.pan, -1..1$"),
    (["vocal.gain_db"], None, r"--lock 'vocal.gain_db': expected STEM.PARAM=VALUE"),
    (["vocal.gain_db=loud"], None, r"value 'loud' is not a number \(in dB\)"),
    (["keys.eq.highpass_hz=0.1kHz"], None, r"value '0.1kHz' is not a number \(in Hz\)"),
    (["vocal.gain_db=inf"], None, r"finite"),
    (["gain_db=0"], None, r"expected STEM.PARAM"),
    (None, ["bass.pan=0.5"], r"--range 'bass.pan=0.5': expected STEM.PARAM=LO:HI"),
    (None, ["bass.pan=0.5:-0.5"], r"LO 0.5 is above HI -0.5 \(did you swap them\?\)"),
    (None, ["bass.pan=a:1"], r"LO 'a' is not a number"),
    (["vocal.trim_db=2"], None, r"vocal.trim_db is not searched \(set by the analysis\)"),
    (["master.comp.attack_ms=5"], None, r"master.comp.attack_ms is not searched \(fixed at 20 ms\)"),
    (["vocal.pan=0"], ["vocal.pan=-0.5:0"],
     r"vocal.pan is given twice \(--lock 'vocal.pan=0' and --range 'vocal.pan=-0.5:0'\)"),
    (None, ["*.pan=-1:0", "*.pan=0:1"], r"\*.pan is given twice"),
])
def test_bad_entries_name_what_is_wrong(locks, ranges, match):
    with pytest.raises(ParameterError, match=match) as e:
        Constraints.parse(locks, ranges, lock_option="--lock", range_option="--range")
    assert "\n" not in str(e.value)


def test_python_callers_get_python_names():
    with pytest.raises(ParameterError, match=r"^locks 'vocal.gain_db=99'"):
        Constraints.parse(locks=["vocal.gain_db=99"])
    with pytest.raises(ParameterError, match=r"^ranges 'bass.pan=1:0'"):
        Constraints.parse(ranges=["bass.pan=1:0"])


def test_unknown_stem_lists_the_stems():
    with pytest.raises(ParameterError, match=r"--lock 'vox.gain_db=-3': unknown stem 'vox'; stems are drums, bass, "
                                             r"keys, vocal \(\* for every stem, master for the master bus\)"):
        constrain_table(GeneTable(4), NAMES, ["vox.gain_db=-3"])
    with pytest.raises(ParameterError, match=r"unknown stem 'vocals' \(did you mean vocal\?\)"):
        constrain_table(GeneTable(4), NAMES, None, ["vocals.pan=0:1"])


def test_exact_repeat_is_allowed():
    assert len(Constraints.parse(["vocal.pan=0", "vocal.pan=0.0"]).entries) == 1


# --- the table edit ------------------------------------------------------------------------------

def test_locks_exact_ranges_hold_and_specific_beats_wildcard():
    table = constrain_table(GeneTable(4), NAMES, LOCKS, RANGES)
    p = _uniform(table)
    assert np.all(p.gain_db[:, 3] == -3.7) and np.all(p.master_comp_ratio == 2.5) and np.all(p.peak_q[:, 2] == 0.7)
    assert not np.all(p.gain_db[:, 0] == p.gain_db[0, 0])  # guard: unlocked stems still vary
    hp = p.highpass_hz  # (pop, stems): bass (stem 1) has its own range, the others the wildcard's
    assert hp[:, 1].min() >= 20 and hp[:, 1].max() <= 30
    for s in (0, 2, 3):
        assert hp[:, s].min() >= 40 and hp[:, s].max() <= 120
        assert hp[:, s].min() == 40 and hp[:, s].max() == 120  # the ends are reached (genome 0 and 1)
    assert p.pan[:, 1].min() >= -0.2 and p.pan[:, 1].max() <= 0.1
    assert p.comp_ratio.min() >= 1.5 and p.comp_ratio.max() <= 3
    # the order on the command line does not matter: the specific entry wins either way
    t2 = constrain_table(GeneTable(4), NAMES, None, ["bass.eq.highpass_hz=20:30", "*.eq.highpass_hz=40:120"])
    assert (t2.gene("highpass_hz", 1).low, t2.gene("highpass_hz", 1).high) == (20.0, 30.0)
    assert (t2.gene("highpass_hz", 0).low, t2.gene("highpass_hz", 0).high) == (40.0, 120.0)
    # a specific lock replaces a wildcard range, even outside it
    t3 = constrain_table(GeneTable(4), NAMES, ["keys.eq.highpass_hz=300"], ["*.eq.highpass_hz=40:120"])
    assert np.all(_uniform(t3).highpass_hz[:, 2] == 300.0)


def test_wildcard_covers_every_stem_not_the_master():
    table = constrain_table(GeneTable(4), NAMES, ["*.comp.ratio=2"])
    p = _uniform(table)
    assert np.all(p.comp_ratio == 2.0)
    assert p.master_comp_ratio.min() < p.master_comp_ratio.max()  # the master's ratio is still searched


def test_canonical_genomes_and_encode_respect_per_stem_ranges():
    table = constrain_table(GeneTable(4), NAMES, LOCKS, RANGES)
    g = np.random.default_rng(2).uniform(size=(6, table.n_genes))
    c = table.canonical(g)
    assert np.all(c[:, table.locked()] == 0.5) and np.array_equal(c[:, ~table.locked()], g[:, ~table.locked()])
    assert table.locked().sum() == 3
    p = table.decode(g, np.zeros(4))
    np.testing.assert_allclose(table.decode(table.encode(p), np.zeros(4)).highpass_hz, p.highpass_hz, rtol=1e-12)
    neutral = table.decode(table.neutral()[None], np.zeros(4))
    assert neutral.highpass_hz[0, 0] == 40.0 and neutral.highpass_hz[0, 1] == 20.0  # neutral 20 Hz clipped into range
    assert neutral.gain_db[0, 3] == -3.7


def test_reference_seed_keeps_locks():
    """api.reference_genome (the same-song seed) encodes per stem and anchors on a locked fader."""
    table = constrain_table(GeneTable(4), NAMES, ["vocal.gain_db=-3.7"], ["bass.pan=-0.2:0.1"])
    fit = types.SimpleNamespace(gain_db=np.array([0.0, -6.0, -3.0, -9.0]), pan=np.array([0.0, 0.8, -0.5, 0.1]))
    analysis = types.SimpleNamespace(trim_db=np.zeros(4))
    p = table.decode(pipeline.reference_genome(table, analysis, fit)[None], np.zeros(4))
    assert p.gain_db[0, 3] == -3.7
    np.testing.assert_allclose(p.gain_db[0, :3] - p.gain_db[0, 3], fit.gain_db[:3] - fit.gain_db[3], atol=1e-9)
    assert p.pan[0, 1] == 0.1  # fitted 0.8, clipped into its range
    np.testing.assert_allclose(p.pan[0, [0, 2, 3]], fit.pan[[0, 2, 3]], atol=1e-12)


# --- a run ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def constrained_run(tmp_path_factory):
    stems = write_stems(tmp_path_factory.mktemp("stems2s"), song_stems(duration_s=2.0))
    out = tmp_path_factory.mktemp("run") / "out"
    # 30 generations: with the vocal locked 3.7 dB down and the reverb bus searched, the first
    # few hold few mixes inside the genre's balance
    args = ["mix", stems[0].parent, "-o", out, *search_flags(small_search(generations=30, seed=2, alternatives=3)),
            "--quiet", "--json"]
    args += [a for x in LOCKS for a in ("--lock", x)] + [a for x in RANGES for a in ("--range", x)]
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    return stems, out, json.loads(res.stdout)


def _all_params(out):
    front = json.loads((out / "front.json").read_text())
    alts = [json.loads(p.read_text()) for p in sorted(out.glob("alt-*.json"))]
    assert len(front["members"]) >= 3 and len(alts) == 3
    return front, [m["params"] for m in front["members"]] + [a["params"] for a in alts]


@pytest.mark.slow
def test_locks_hold_exactly_in_every_member_and_export(constrained_run):
    _, out, _ = constrained_run
    _, params = _all_params(out)
    for p in params:
        assert p["stems"]["vocal"]["gain_db"] == -3.7  # tolerance 0: JSON floats round-trip
        assert p["master"]["comp"]["ratio"] == 2.5
        assert p["stems"]["keys"]["eq"]["peak_q"] == 0.7
    assert len({p["stems"]["drums"]["gain_db"] for p in params}) > 1  # guard: the search still moved the rest


@pytest.mark.slow
def test_ranges_hold_in_every_member_and_export(constrained_run):
    _, out, _ = constrained_run
    _, params = _all_params(out)
    for p in params:
        st = p["stems"]
        assert 20.0 <= st["bass"]["eq"]["highpass_hz"] <= 30.0  # specific beats the wildcard
        assert -0.2 <= st["bass"]["pan"] <= 0.1
        for n in ("drums", "keys", "vocal"):
            assert 40.0 <= st[n]["eq"]["highpass_hz"] <= 120.0
        for n in st:
            assert 1.5 <= st[n]["comp"]["ratio"] <= 3.0


@pytest.mark.slow
def test_constraints_recorded_in_front_and_summary(constrained_run):
    _, out, summary = constrained_run
    front, _ = _all_params(out)
    # what the search obeyed: the run's defaults (the reverb bus, the centred low end) under its own entries
    names = list(front["stems"])
    roles = [front["stems"][n]["role"] for n in names]
    defaults = default_constraints(load_profile(front["genre"]), names, roles, space=True)
    expect = defaults.overridden_by(Constraints.parse(LOCKS, RANGES)).to_dict()
    assert front["settings"]["constraints"] == expect == summary["constraints"]
    assert expect["locks"]["vocal.gain_db"] == -3.7 and expect["ranges"]["*.eq.highpass_hz"] == [40.0, 120.0]
    assert expect["ranges"]["bass.pan"] == [-0.2, 0.1]  # the run's own range beats the centred default
    assert expect["ranges"]["drums.pan"] == [-0.2, 0.2] and "*.reverb_send_db" in expect["ranges"]


@pytest.mark.slow
def test_exported_params_render_again(constrained_run, tmp_path):
    stems, out, _ = constrained_run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = api.render(out / "alt-01.json", stems, tmp_path / "again.wav")
    assert path.exists()


# --- command line and render errors --------------------------------------------------------------

@pytest.mark.parametrize("extra, match", [
    (["--lock", "vocal.gain=-3"], "--lock 'vocal.gain=-3': unknown parameter 'gain'"),
    (["--lock", "vocal.gain_db=40"], "40 is outside the range of vocal.gain_db, -24..12 dB"),
    (["--range", "bass.pan=1"], "--range 'bass.pan=1': expected STEM.PARAM=LO:HI"),
    (["--lock", "vox.gain_db=-3"], "unknown stem 'vox'; stems are bass, drums, keys, vocal")  # folder order,
])
def test_cli_bad_constraint_is_one_line_exit_1(stem_dir, tmp_path, extra, match):
    res = run_cli("mix", stem_dir, "-o", tmp_path / "o", "--quiet", *extra)
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("evomix: error: ") and match in lines[0], res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_demo_refuses_bad_lock_before_writing(tmp_path):
    res = run_cli("demo", "-o", tmp_path / "d", "--quiet", "--lock", "vocal.pan=3")
    assert res.exit_code == 1 and "outside the range of vocal.pan" in res.output
    assert not (tmp_path / "d").exists()


def _params_file(tmp_path, edit):
    table = GeneTable(4)
    d = table.decode(table.neutral()[None], np.zeros(4)).to_dict(0, NAMES, ["drums", "bass", "keys", "vocal"])
    edit(d)
    path = tmp_path / "alt-01.json"
    path.write_text(json.dumps({"format": PARAMS_FORMAT, "sr": 44100, "params": d}))
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["stems"]["vocal"].update(gain_db=1e9), r"vocal.gain_db = 1e\+09 is outside its range -24..12 dB"),
    (lambda d: d["stems"]["bass"]["eq"].update(highpass_hz=5.0),
     r"bass.eq.highpass_hz = 5 is outside its range 20..400 Hz"),
    (lambda d: d["stems"]["keys"].update(trim_db=300.0), r"keys.trim_db = 300 is outside its range -30..40 dB"),
    (lambda d: d["master"]["comp"].update(ratio=0.0), r"master.comp.ratio = 0 is outside its range 1..4"),
])
def test_render_refuses_out_of_range_params_without_warnings(tmp_path, edit, match):
    path = _params_file(tmp_path, edit)
    missing = [tmp_path / f"{n}.wav" for n in NAMES]  # never read: the check comes first
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning (overflow) would fail the test
        with pytest.raises(ParameterError, match=rf"^{path}: {match}$"):
            api.render(path, missing, tmp_path / "x.wav")


def test_render_cli_out_of_range_is_one_line(tmp_path, stem_dir):
    path = _params_file(tmp_path, lambda d: d["stems"]["vocal"].update(gain_db=1e9))
    res = run_cli("render", path, stem_dir, "-o", tmp_path / "x.wav", "--quiet")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "vocal.gain_db = 1e+09 is outside its range" in lines[0], res.output
    assert not (tmp_path / "x.wav").exists()


def test_rounding_just_outside_a_range_is_accepted():
    """Files written before decode clipped (e.g. release 1000.0000000000001 ms) still load, unchanged."""
    table = GeneTable(1)
    d = table.decode(table.neutral()[None], np.zeros(1)).to_dict(0, ["a"], ["other"])
    d["stems"]["a"]["comp"]["release_ms"] = 1000.0000000000001
    assert Params.from_dict(d, ["a"]).comp_release_ms[0, 0] == 1000.0000000000001
    d["stems"]["a"]["comp"]["release_ms"] = 1000.001  # beyond rounding: refused
    with pytest.raises(ParameterError, match="a.comp.release_ms = 1000.001 is outside its range 30..1000 ms"):
        Params.from_dict(d, ["a"])
