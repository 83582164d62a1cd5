"""``evomix explore`` (issue 12 item 7, a map of the mix space; item 8, locks and ranges hold in it),
on a small synthetic song (4 stems, 3 s)."""
import json
import struct

import numpy as np
import pytest
from scipy.stats import spearmanr

import evomix.api as api
from evomix.choose.describe import DESCRIPTORS, DISTINCT_JND, describe, fast_descriptors, jnd_distance, jnd_matrix
from evomix.engine.analysis import analyze_session
from evomix.engine.render import features_from_render, render_exact
from evomix.errors import ParameterError
from evomix.io.audio import load_session, read_audio
from evomix.output.result import PARAMS_FORMAT
from evomix.pipeline import searched_constraints
from evomix.search.constraints import Constraints
from evomix.search.genome import GeneTable
from evomix.search.hypervolume import OBJECTIVE_SCALES
from evomix.search.problem import Problem
from evomix.search.seeding import smart_initial_population
from evomix.settings import Parallel
from evomix.tools.explore import MAP_DESCRIPTORS, DescribedProblem, explore, parse_descriptors, pick_order
from objectives import Target, load_profile
from tests.support import run_cli, song_stems, write_stems

LOCKS = ["vocal.gain_db=-3"]
RANGES = ["bass.pan=-0.1:0.1"]


@pytest.fixture(scope="module")
def stems(tmp_path_factory):
    return write_stems(tmp_path_factory.mktemp("explore") / "stems", song_stems(duration_s=3.0))


@pytest.fixture(scope="module")
def song(stems):
    """The 3 s song loaded and analysed once for this module: (session, analysis)."""
    session = load_session(stems)
    return session, analyze_session(session)


@pytest.fixture(scope="module")
def explored(stems, tmp_path_factory):
    """One exploration with a lock and a range: 8 iterations (128 + 8 x 64 mixes), 12 exports."""
    out = tmp_path_factory.mktemp("explore-out") / "map"
    result = explore(stems, descriptors="brightness,width", time_limit=None, iterations=8, max_exports=12, seed=3,
                     constraints=Constraints.parse(LOCKS, RANGES))
    result.write(out)
    return result, out


@pytest.mark.slow
def test_explore_fills_at_least_ten_cells_with_distinct_exported_mixes(explored):
    result, out = explored
    archive = json.loads((out / "archive.json").read_text())
    assert len(archive["cells"]) >= 10 and archive["settings"]["cells_filled"] == len(archive["cells"])
    exported = [c for c in archive["cells"] if c["export"]]
    assert len(exported) >= 10
    genomes = np.array([c["genome"] for c in exported])
    gap = np.abs(genomes[:, None, :] - genomes[None, :, :]).max(axis=-1)[np.triu_indices(len(exported), 1)]
    assert gap.min() > 0.0  # no two exported mixes share their parameters
    audio = [read_audio(out / f"{c['export']}.wav")[0] for c in exported]
    rms = np.array([[np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a ** 2)) for b in audio] for a in audio])
    assert rms[np.triu_indices(len(audio), 1)].min() > 0.01  # every pair differs by > 1 % of the signal (-40 dB)
    M = jnd_matrix([c["descriptors"] for c in exported])  # exact descriptors: no near-duplicate is exported
    assert jnd_distance(M, M)[np.triu_indices(len(M), 1)].min() >= DISTINCT_JND


@pytest.mark.slow
def test_archive_json_agrees_with_the_files_and_the_grid(explored):
    result, out = explored
    archive = json.loads((out / "archive.json").read_text())
    cells = archive["cells"]
    names = {c["export"] for c in cells if c["export"]}
    assert {p.stem for p in out.glob("cell-*.wav")} == names == {p.stem for p in out.glob("cell-*.json")}
    assert len({c["index"] for c in cells}) == len(cells)  # one elite per cell
    q = [c["quality"] for c in cells]
    assert q == sorted(q, reverse=True)
    w, scales = archive["weights"], archive["scales"]
    for c in cells:  # quality = minus the weighted mean of the normalised objectives
        expect = -sum(w[n] * c["objectives"][n] / scales[n] for n in w) / sum(w.values())
        assert c["quality"] == pytest.approx(expect, abs=1e-5)
        assert scales == {n: OBJECTIVE_SCALES[n] for n in w}
        for axis, g in zip(archive["descriptors"], c["grid"]):
            e, v = axis["edges"], c["measures"][axis["name"]]
            assert (g == 0 or v >= e[g] * (1 - 1e-6)) and (g == axis["bins"] - 1 or v <= e[g + 1] * (1 + 1e-6))
        if c["export"]:
            d = json.loads((out / f"{c['export']}.json").read_text())
            assert d["params"] == c["params"] and d["cell"]["index"] == c["index"] and d["format"] == PARAMS_FORMAT
    brightness = archive["descriptors"][0]
    octaves = np.diff(np.log2(brightness["edges"]))
    assert brightness["scale"] == "log" and np.allclose(octaves, octaves[0], rtol=1e-3)  # log-spaced edges


@pytest.mark.slow
def test_a_cell_json_renders_back_to_its_wav(explored, stems, tmp_path):
    result, out = explored
    again = api.render(out / "cell-02.json", stems, tmp_path / "again.wav")
    a, b = read_audio(out / "cell-02.wav")[0], read_audio(again)[0]
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6  # as test_cli's alt-NN check: one 24-bit LSB is 1.2e-7


@pytest.mark.slow
def test_locks_and_ranges_hold_in_every_cell(explored, song):
    result, out = explored
    archive = json.loads((out / "archive.json").read_text())
    recorded = archive["settings"]["constraints"]  # the run's own under the genre's defaults, as evomix mix records
    assert recorded["locks"]["vocal.gain_db"] == -3.0 and recorded["ranges"]["bass.pan"] == [-0.1, 0.1]
    expect, _ = searched_constraints(song[0], load_profile("pop"), Constraints.parse(LOCKS, RANGES))
    assert recorded == json.loads(json.dumps(expect.to_dict()))
    assert all(json.loads(p.read_text())["constraints"] == recorded for p in out.glob("cell-*.json"))  # vary keeps them
    files = [json.loads(p.read_text())["params"] for p in out.glob("cell-*.json")]
    pans = []
    for p in [c["params"] for c in archive["cells"]] + files:
        assert p["stems"]["vocal"]["gain_db"] == -3.0  # exactly the lock
        pans.append(p["stems"]["bass"]["pan"])
        assert -0.1 <= pans[-1] <= 0.1
    assert np.ptp(pans) > 0.05  # the range is searched, not collapsed to one value


@pytest.mark.slow
def test_map_png_is_a_picture_of_sensible_size(explored):
    result, out = explored
    data = (out / "map.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert 500 <= width <= 3000 and 400 <= height <= 3000
    import matplotlib.image

    img = matplotlib.image.imread(out / "map.png")
    assert img.shape[:2] == (height, width) and img[..., :3].std() > 0.05  # not blank


def test_described_problem_scores_as_problem_and_describes_as_fast_descriptors(song, rng):
    """Two routes agree: the explore problem's objective columns are Problem's, bit for bit; its
    descriptor columns are describe.fast_descriptors'."""
    s, a = song
    t = GeneTable(s.n_stems)
    target = Target(profile=load_profile("pop"), target_lufs=-14.0, ceiling_dbtp=-1.0)
    G = rng.uniform(size=(40, t.n_genes))  # two blocks, the second shorter
    args = (a, t, target, ("masking", "genre"), (2.0, 1.0))
    S = DescribedProblem(*args).evaluate_population(G)
    assert np.array_equal(S[:, :2], Problem(*args).evaluate_population(G))
    d = fast_descriptors(a, t, G, target_lufs=-14.0, ceiling_dbtp=-1.0, threads=1)
    assert np.allclose(S[:, 2:], np.stack([d[k] for k in DESCRIPTORS], axis=-1), equal_nan=True)
    assert not np.allclose(S[:, 2], S[0, 2])  # the descriptors vary over the population


def test_fast_tier_descriptors_rank_mixes_as_the_exact_renders_do(song):
    """The map's axes come from the fast tier; over 12 varied mixes their Spearman rank correlation
    with the exact render's descriptors is high (measured: brightness 0.98, width 0.99, vocal 1.00,
    low end 1.00, punch 0.97, dynamics 0.91 on 24 mixes of this song)."""
    s, a = song
    t = GeneTable(s.n_stems)
    G = smart_initial_population(t, a, 12, np.random.default_rng(5), spread=0.25)
    fast = fast_descriptors(a, t, G, target_lufs=-14.0, ceiling_dbtp=-1.0)
    params = t.decode(G, a.trim_db)
    exact = [describe(features_from_render(render_exact(s, s.is_mono, s.sr, params.member(i), target_lufs=-14.0,
                                                        ceiling_dbtp=-1.0, keep_stems=True), a.grid, a.roles))
             for i in range(len(G))]
    floor = {"brightness": 0.9, "width": 0.9, "vocal": 0.9, "low_end": 0.9, "punch": 0.8, "dynamics": 0.7}
    for name, (key, _, _) in MAP_DESCRIPTORS.items():
        rho = spearmanr(fast[key], [e[key][0] for e in exact]).statistic
        assert rho >= floor[name], (name, rho)


@pytest.mark.slow
def test_same_seed_same_archive_on_any_threads_and_another_seed_differs(stems):
    kw = dict(descriptors="width,low_end", bins=5, time_limit=None, iterations=2, max_exports=0)
    a, b, c = (explore(stems, seed=s, parallel=Parallel(threads=n), **kw) for s, n in ((1, 1), (1, 2), (2, 1)))

    def key(r):
        return [(x["index"], x["quality"], x["genome"]) for x in r.cells]

    assert key(a) == key(b)  # the same on one thread or two (whole fast-tier blocks per thread)
    assert key(a) != key(c)
    assert a.exports == [] and a.settings["exact_renders"] == 0


@pytest.mark.parametrize("spec, match", [
    ("brightness,widht",
     r"unknown descriptor 'widht'; choose 2 or 3 of brightness, width, vocal, low_end, punch, dynamics"),
    ("brightness", r"give 2 or 3 descriptors \(got 1\)"),
    ("width,width", r"'width' is given twice"),
    ("brightness,width,vocal,punch", r"give 2 or 3 descriptors \(got 4\)"),
])
def test_bad_descriptors_are_refused_with_the_valid_names(spec, match):
    with pytest.raises(ParameterError, match=match):
        parse_descriptors(spec)


@pytest.mark.slow
def test_spread_pick_covers_more_of_the_map_than_best_first(explored):
    result, _ = explored
    cells, k = result.cells, 8
    best, spread = pick_order(cells, result.axes, "best"), pick_order(cells, result.axes, "spread")
    assert best[:k] == list(range(k)) and spread[0] == 0 and sorted(spread) == list(range(len(cells)))
    assert max(spread[:k]) < (len(cells) + 1) // 2  # only the better half is spread over

    def min_gap(order):
        X = np.array([cells[i]["grid"] for i in order[:k]], dtype=float)
        D = np.linalg.norm(X[:, None] - X[None], axis=-1)
        return D[np.triu_indices(k, 1)].min()

    assert min_gap(spread) > min_gap(best)  # spread exports sit farther apart on the grid
    with pytest.raises(ParameterError, match="^pick: unknown choice 'far'; choose from best, spread"):
        explore([], pick="far")


def test_vocal_axis_needs_a_vocal_or_lead_stem():
    assert parse_descriptors("vocal,low-end", roles=("drums", "vocal")) == ("vocal", "low_end")
    with pytest.raises(ParameterError, match="'vocal' needs a stem of role vocal or lead"):
        parse_descriptors("vocal,width", roles=("drums", "bass"))


@pytest.mark.slow
def test_cli_explore(stems, tmp_path):
    out = tmp_path / "map"
    res = run_cli("explore", *map(str, stems), "--out", out, "--descriptors", "brightness,width,vocal",
                  "--iterations", "2", "--max-exports", "3", "--lock", "vocal.gain_db=-3", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["descriptors"] == ["brightness", "width", "vocal"] and summary["stop_reason"] == "iterations"
    assert len(summary["exports"]) == 3 and all((out / f"cell-0{i}.wav").exists() for i in (1, 2, 3))
    assert summary["cells_total"] == 6 ** 3 and (out / "map.png").exists()
    again = run_cli("explore", *map(str, stems), "--out", out, "--iterations", "1", "--quiet")
    assert again.exit_code == 1 and "not empty" in again.output and "--force" in again.output
    bad = run_cli("explore", *map(str, stems), "--out", tmp_path / "x", "--descriptors", "shine,width")
    assert bad.exit_code == 1 and not (tmp_path / "x").exists()
    line = bad.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("evomix: error: --descriptors: unknown descriptor 'shine'"), line
    assert "low_end, punch, dynamics" in line
    lock = run_cli("explore", *map(str, stems), "--out", tmp_path / "y", "--lock", "vocal.gain=3")
    assert lock.exit_code == 1 and "names:" in lock.output  # unknown parameter: the valid names are listed


def test_squashed_cells_are_exported_only_after_all_the_others(monkeypatch):
    """Explore's export with ``max_limiting_db``: cells whose mix needs more limiting (fast tier)
    are offered after every other cell, so with enough others none of them is exported."""
    from types import SimpleNamespace

    import evomix.tools.explore as explore_mod
    from evomix.progress import NULL_REPORTER
    from evomix.search.genome import GeneTable
    from evomix.tools.explore import _export

    table = GeneTable(2)
    rng = np.random.default_rng(0)
    cells = []
    for i in range(6):  # best first; cells 0 and 2 are squashed
        d = {"centroid_hz": 200.0 * 2 ** i, "side_mid_db": -10.0 + 3 * i, "limiter_gr_db": 9.0 if i in (0, 2) else 1.0}
        cells.append({"genome": rng.uniform(size=table.n_genes), "grid": [i, 0], "descriptors_fast": d})

    def fake(session, analysis, params, picks, target, names, **_):
        return [(f"r{i}", {"masking": 0.1}, {"descriptors": cells[i]["descriptors_fast"], "integrated_lufs": -14.0,
                                             "loudness_range_lu": 5.0, "true_peak_dbtp": -1.0}) for i in picks]

    monkeypatch.setattr(explore_mod, "render_alternatives", fake)
    axes = [{"bins": 6}, {"bins": 1}]
    analysis = SimpleNamespace(trim_db=np.zeros(2))
    session = SimpleNamespace(roles=("drums", "bass"))
    args = (cells, axes, 3, "best", session, analysis, table, None, ("masking",), NULL_REPORTER)
    kept, *_ = _export(*args, max_limiting_db=6.0)
    assert kept == [1, 3, 4], kept
    kept, *_ = _export(*args, max_limiting_db=None)
    assert kept == [0, 1, 2], kept
