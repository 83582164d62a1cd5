"""``evomix rank`` (re-rank a saved front, issue 12 item 4) and ``evomix vary`` (variations and
breeding, item 6), on a small synthetic song."""
import json
import shutil
import time

import numpy as np
import pytest

import evomix.api as api
from evomix.choose.describe import DISTINCT_JND, jnd_distance, jnd_matrix
from evomix.core.meter import integrated_loudness, true_peak_dbtp
from evomix.errors import ParameterError
from evomix.io.audio import read_audio
from evomix.search.genome import GeneTable, Params
from evomix.tools.rank import rank, write_ranked
from evomix.tools.vary import genome_distance, vary
from tests.support import run_cli, small_search, song_stems, write_stems

pytestmark = pytest.mark.slow  # every test reads one finished run (a 16 x 12 search), or ranks or varies it


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished run (4 stems, 3 s), its stems and the wall time of search + export."""
    folder = tmp_path_factory.mktemp("rank")
    paths = write_stems(folder / "stems", song_stems(duration_s=3.0))
    t0 = time.perf_counter()
    result = api.mix(paths, search=small_search(population=16, generations=12, seed=4, alternatives=4))
    result.write(folder / "run")
    return folder, paths, time.perf_counter() - t0


def _alt_genome(folder, name, stems):
    d = json.loads((folder / f"{name}.json").read_text())
    names = [p.stem for p in stems]
    return GeneTable(len(names)).encode(Params.from_dict(d["params"], names))[0]


def test_rank_changes_the_top_alternative_without_searching_again(run, tmp_path):
    folder, paths, t_run = run
    top = {}
    for w in ("masking=8", "loudness=8"):
        res = rank(folder / "run", weights=w)
        write_ranked(res, tmp_path / w, in_place=False)
        # re-weighting only: no analysis, no search, the run's renders and its before.wav reused
        # (the time it takes is measured by experiments/bench_rank.py, not asserted here)
        assert res.settings["rank_used_saved_scores"] and res.settings["reused_renders"] >= 1
        assert (tmp_path / w / "before.wav").read_bytes() == (folder / "run" / "before.wav").read_bytes()
        top[w] = json.loads((tmp_path / w / "alt-01.json").read_text())
        M = jnd_matrix([json.loads(p.read_text())["descriptors"] for p in sorted((tmp_path / w).glob("alt-*.json"))])
        assert jnd_distance(M, M)[np.triu_indices(len(M), 1)].min() >= DISTINCT_JND
    a, b = top["masking=8"], top["loudness=8"]
    assert a["params"] != b["params"]
    assert a["objectives"]["masking"] <= b["objectives"]["masking"]
    assert b["objectives"]["loudness"] <= a["objectives"]["loudness"]
    ranked = json.loads((tmp_path / "masking=8" / "front.json").read_text())  # can be ranked again
    g = np.array([m["genome"] for m in ranked["members"] if m.get("alternative") == "alt-01"][0])
    assert np.allclose(g, _alt_genome(tmp_path / "masking=8", "alt-01", paths), atol=1e-6)


def test_rank_with_the_run_s_weights_reuses_its_renders_bit_for_bit(run, tmp_path):
    folder, _, _ = run
    res = rank(folder / "run")  # the run's own weights: the same picks, read back, not rendered again
    write_ranked(res, tmp_path / "same", in_place=False)
    assert res.settings["exact_renders"] == res.settings["reused_renders"] == len(res.alternatives)
    for p in sorted((folder / "run").glob("alt-*.wav")):
        assert (tmp_path / "same" / p.name).read_bytes() == p.read_bytes()


def test_rank_in_place_with_stems_given_and_a_new_objective(run, tmp_path):
    folder, paths, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    res = rank(copy, [p.parent for p in paths][:1], weights="balance=0,genre=2", alternatives=2)
    write_ranked(res, copy, in_place=True)
    assert sorted(p.name for p in copy.glob("alt-*.wav")) == ["alt-01.wav", "alt-02.wav"]  # stale ones removed
    front = json.loads((copy / "front.json").read_text())
    assert front["objectives"] == ["masking", "loudness", "genre"] and front["weights"]["genre"] == 2.0


def test_rank_errors_name_the_problem(run, tmp_path):
    folder, paths, _ = run
    with pytest.raises(ParameterError, match="front.json: no such file"):
        rank(tmp_path)
    with pytest.raises(ParameterError, match="made from stems"):
        rank(folder / "run", paths[:2])


@pytest.fixture(scope="module")
def varied(run, tmp_path_factory):
    folder, paths, _ = run
    out = tmp_path_factory.mktemp("vary") / "v"
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.3, n=4, seed=1)
    res.write(out)
    return res, out


def test_vary_returns_distinct_mixes_near_the_input_at_the_target(run, varied):
    folder, paths, _ = run
    res, out = varied
    parent = _alt_genome(folder / "run", "alt-01", paths)
    files = sorted(out.glob("alt-*.wav"))
    assert len(files) == 4 and len(res.alternatives) == 4
    for f in files:  # measured from the written files
        x, sr = read_audio(f)
        assert abs(integrated_loudness(x, sr) - res.target.target_lufs) <= 0.5
        assert true_peak_dbtp(x, sr) <= res.target.ceiling_dbtp + 0.01
    genomes = np.stack([_alt_genome(out, f.stem, paths) for f in files])
    dist = genome_distance(genomes, parent)
    assert np.all(np.diff(dist) >= -1e-6) and dist.min() > 0.01, dist  # ordered, none is the input
    assert np.allclose(dist, res.settings["genome_distance"], atol=1e-3)
    rows = [json.loads((out / f"{f.stem}.json").read_text())["descriptors"] for f in files]
    rows.append(json.loads((folder / "run" / "alt-01.json").read_text())["descriptors"])  # the input
    M = jnd_matrix(rows)
    assert jnd_distance(M, M)[np.triu_indices(len(rows), 1)].min() >= DISTINCT_JND  # audibly different


def test_spread_sets_how_far(run):
    folder, paths, _ = run
    near = vary([folder / "run" / "alt-01.json"], paths, spread=0.1, n=2, seed=1).settings["genome_distance"]
    far = vary([folder / "run" / "alt-01.json"], paths, spread=0.6, n=2, seed=1).settings["genome_distance"]
    assert max(near) < min(far), (near, far)


def test_breeding_two_parents_gives_children_between_them(run, tmp_path):
    folder, paths, _ = run
    a, b = _alt_genome(folder / "run", "alt-01", paths), _alt_genome(folder / "run", "alt-02", paths)
    res = vary([folder / "run" / "alt-01.json", folder / "run" / "alt-02.json"], paths, spread=0.1, n=4, seed=3)
    res.write(tmp_path / "kids")
    files = sorted((tmp_path / "kids").glob("alt-*.wav"))
    kids = np.stack([_alt_genome(tmp_path / "kids", f.stem, paths) for f in files])
    assert len(kids) >= 3
    d_ab = float(genome_distance(a[None], b)[0])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    differ = hi - lo > 0.05  # genes where the parents differ
    inside = ((kids >= lo - 0.02) & (kids <= hi + 0.02))[:, differ].mean(axis=1)  # share of genes inside the box
    t = ((kids - a) @ (b - a)) / ((b - a) @ (b - a))  # projection on the segment a -> b
    assert np.all(inside >= 0.9), inside
    assert np.all((t > 0.0) & (t < 1.0)), t
    assert np.all(genome_distance(kids, a) < d_ab) and np.all(genome_distance(kids, b) < d_ab)


def test_cli_rank_and_vary(run, tmp_path):
    folder, paths, _ = run
    r = run_cli("rank", folder / "run", "--weights", "genre=4", "--out", tmp_path / "r", "--alternatives", 2, "--json",
                "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert len(summary["alternatives"]) == 2 and all("labels" in a for a in summary["alternatives"])
    r = run_cli("vary", folder / "run" / "alt-01.json", "--out", tmp_path / "v")
    assert r.exit_code == 1 and "give the stems" in r.output, r.output
    r = run_cli("vary", folder / "run" / "alt-01.json", *paths, "--out", tmp_path / "v", "-n", 2, "--spread", 2)
    assert r.exit_code == 1 and "--spread" in r.output, r.output


def test_labels_against_the_input_agree_with_the_descriptors(run, varied):
    from evomix.choose.select import LABELS

    folder, _, _ = run
    res, out = varied
    ref = json.loads((folder / "run" / "alt-01.json").read_text())["descriptors"]
    for m, labels in zip(res.alternatives, res.settings["labels_vs_input"]):
        for lab in labels:
            key, sign = next((k, 1 if lab == up else -1) for k, (up, down) in LABELS.items() if lab in (up, down))
            mine, theirs = m.measured["descriptors"][key], ref[key]
            gap = np.log2(mine / theirs) / 0.1 if key == "centroid_hz" else mine - theirs
            assert sign * gap >= 1.0 - 1e-9, (lab, mine, theirs)


def test_vary_keeps_to_the_limiter_budget(run):
    """``max_limiting_db``: no variation needs more limiting (fast tier) than the budget, or than
    its parent where the parent needs more; without a budget, the same variation of the same mix
    at a loud target goes beyond both."""
    from evomix.choose.describe import fast_descriptors
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session

    folder, paths, _ = run
    kw = dict(spread=1.0, n=4, seed=2, target_lufs=-8.0)  # loud: most mixes need the limiter
    session = load_session(paths)
    analysis, table = analyze_session(session), GeneTable(session.n_stems)
    parent_gr = float(fast_descriptors(analysis, table, _alt_genome(folder / "run", "alt-01", paths)[None, :],
                                       target_lufs=-8.0, ceiling_dbtp=-1.0)["limiter_gr_db"][0])
    allowed = max(0.5, parent_gr)
    free = vary([folder / "run" / "alt-01.json"], paths, max_limiting_db=None, **kw)
    assert max(m.fast_descriptors["limiter_gr_db"] for m in free.alternatives) > allowed  # the premise
    tight = vary([folder / "run" / "alt-01.json"], paths, max_limiting_db=0.5, **kw)
    assert tight.alternatives and tight.settings["max_limiting_db"] == 0.5
    assert max(m.fast_descriptors["limiter_gr_db"] for m in tight.alternatives) <= allowed + 1e-6
