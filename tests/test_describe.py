"""Listener descriptors (evomix.choose.describe), labelled alternatives and the near-duplicate rule
(issue 12, item 5): descriptors follow the signal, labels agree with the measured descriptors, and
exported alternatives are pairwise distinct, with 2, 3 and 4 stems."""
import json

import numpy as np
import pytest

import evomix.api as api
from evomix.choose import verify
from evomix.choose.describe import COMPARED, DISTINCT_JND, JND, describe, jnd_distance, jnd_matrix
from evomix.choose.select import LABELS, choose_alternatives, label_alternatives
from evomix.engine.bands import band_grid
from evomix.engine.render import ExactRender, features_from_render
from evomix.output.result import Member
from tests.support import SR, run_cli, search_flags, sine, small_search, song_stems, write_stems


def _describe(stems, roles):
    """Descriptors of the plain sum of ``stems`` (list of (2, n)): an ExactRender with no processing."""
    stems = np.stack([np.asarray(s, dtype=float) for s in stems])  # (stems, 2, n)
    mix = stems.sum(axis=0)
    r = ExactRender(mix=mix, stems=stems, raw_loudness_lufs=-20.0, normalise_db=0.0, limiter_gr_db=0.0)
    d = describe(features_from_render(r, band_grid(SR), roles))
    return {k: float(v[0]) for k, v in d.items()}


def _stereo(x):
    return np.stack([x, x])


def test_descriptors_follow_the_signal(rng):
    low, high = sine(200.0, 2.0, amp=0.3), sine(3000.0, 2.0, amp=0.3)
    dark = _describe([_stereo(low)], ("keys",))
    bright = _describe([_stereo(high)], ("keys",))
    assert 150 < dark["centroid_hz"] < 260 and 2500 < bright["centroid_hz"] < 3600, (dark, bright)
    assert bright["tilt_db_per_oct"] > dark["tilt_db_per_oct"]
    assert dark["side_mid_db"] < -60 and dark["correlation"] > 0.999  # identical channels: no side
    noise = 0.1 * rng.standard_normal((2, 2 * SR))  # independent channels: side = mid within 0.5 dB
    wide = _describe([noise], ("keys",))
    assert abs(wide["side_mid_db"]) < 0.5 and abs(wide["correlation"]) < 0.05, wide
    sub = _describe([_stereo(sine(60.0, 2.0, amp=0.3))], ("bass",))
    assert sub["low_end_db"] > -0.5 and bright["low_end_db"] < -30, (sub, bright)
    assert np.isnan(dark["vocal_lu"])  # no vocal or lead stem
    v = sine(1000.0, 2.0, amp=0.3)
    even = _describe([_stereo(low), _stereo(v)], ("keys", "vocal"))
    up = _describe([_stereo(low), _stereo(2.0 * v)], ("keys", "vocal"))
    assert up["vocal_lu"] > even["vocal_lu"] + 1.0 and up["vocal_lu"] < 0.0, (even, up)
    steady = _describe([_stereo(low)], ("keys",))
    bursts = low * (np.arange(low.size) % SR < SR // 8)  # 1/8 s on, 7/8 s off: frames far above the median
    punchy = _describe([_stereo(bursts + 0.02 * low)], ("keys",))
    assert punchy["punch_db"] > steady["punch_db"] + 6.0, (steady["punch_db"], punchy["punch_db"])


def test_label_rule():
    rows = [{k: 0.0 for k in COMPARED} for _ in range(3)]
    for r in rows:
        r["centroid_hz"] = 500.0
    rows[0]["centroid_hz"] = 1000.0  # an octave brighter than the others
    rows[1]["side_mid_db"] = 3.0  # 3 dB wider
    rows[2]["vocal_lu"] = -0.5  # half a JND: too small to name
    labels = label_alternatives(rows)
    assert "brighter" in labels[0] and "wider" in labels[1], labels
    assert not any("vocal" in lab for labs in labels for lab in labs), labels
    assert label_alternatives(rows[:1]) == [[]]  # nothing to compare with


def test_choice_never_takes_a_near_duplicate(rng):
    F = rng.uniform(size=(10, 3))
    D = np.zeros((10, len(COMPARED)))
    D[5, 0] = 0.5  # half a JND away: still the same sound
    assert len(choose_alternatives(None, F, 4, descriptors=D)) == 1
    D[7, 1] = 2.0
    picks = choose_alternatives(None, F, 4, descriptors=D)
    assert len(picks) == 2 and 7 in picks, picks


def test_duplicates_after_the_exact_render_are_not_exported(monkeypatch, rng):
    """Fast descriptors promised distinct mixes; the exact renders of all but one sound the same."""
    n = 8
    G, F = rng.uniform(size=(n, 6)), rng.uniform(size=(n, 2))
    members = [Member(genome=G[i], params={}, objectives={"masking": F[i, 0], "loudness": F[i, 1]}) for i in range(n)]
    D = np.arange(n)[:, None] * np.ones((1, len(COMPARED))) * 2.0  # fast tier: every pair 2 JND apart
    same = {k: 1.0 for k in COMPARED}
    odd = dict(same, side_mid_db=5.0)

    def render(session, analysis, params, picks, target, names, **_):
        return [(f"r{i}", {"masking": float(F[i, 0]), "loudness": float(F[i, 1])},
                 {"integrated_lufs": -14.0, "descriptors": odd if i == n - 1 else same}) for i in picks]

    monkeypatch.setattr(verify, "render_alternatives", render)
    picks, _ = verify.verified_alternatives(members, G, F, 3, None, None, None, None, ("masking", "loudness"),
                                          descriptors=D)
    M = jnd_matrix([members[i].measured["descriptors"] for i in picks])
    assert len(picks) == 2 and n - 1 in picks, picks
    assert jnd_distance(M, M)[np.triu_indices(len(picks), 1)].min() >= DISTINCT_JND
    assert "sound distinct" in verify.label_front(members, picks, 3, ("keys",))[0]


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda n: f"{n}stems")
def exported(request, tmp_path_factory):
    """A small search on the first N stems of the tests' song, written to a folder."""
    stems = song_stems(duration_s=3.0)
    names = ["keys", "vocal", "bass", "drums"][: request.param]
    folder = tmp_path_factory.mktemp(f"desc{request.param}")
    paths = write_stems(folder / "stems", {k: stems[k] for k in names})
    result = api.mix(paths, search=small_search(population=12, generations=3, seed=2, alternatives=5))
    result.write(folder / "out")
    return result, folder / "out"


@pytest.mark.slow
def test_labels_agree_with_measured_descriptors(exported):
    result, out = exported
    rows = [json.loads((out / f"alt-{i + 1:02d}.json").read_text()) for i in range(len(result.alternatives))]
    assert len(rows) >= 2
    checked = 0
    for i, r in enumerate(rows):
        assert r["labels"] == result.alternatives[i].labels and r["descriptors"]
        for lab in r["labels"]:
            key, sign = next((k, 1 if lab == up else -1) for k, (up, down) in LABELS.items() if lab in (up, down))
            mine = r["descriptors"][key]
            others = [o["descriptors"][key] for j, o in enumerate(rows) if j != i]
            if key == "centroid_hz":  # compared in octaves
                gap = np.log2(mine) - np.mean(np.log2(others))
            else:
                gap = mine - np.mean(others)
            assert sign * gap >= JND[key] - 1e-9, (lab, mine, others)
            checked += 1
    assert checked >= 1  # the alternatives differ audibly, so some label is given
    front = json.loads((out / "front.json").read_text())
    exported_members = [m for m in front["members"] if "alternative" in m]
    labels = {f"alt-{i + 1:02d}": r["labels"] for i, r in enumerate(rows)}
    assert {m["alternative"]: m["labels"] for m in exported_members} == labels
    assert all("descriptors_fast" in m and "genome" in m for m in front["members"])


@pytest.mark.slow
def test_exported_alternatives_are_pairwise_distinct(exported):
    result, out = exported
    rows = [json.loads((out / f"alt-{i + 1:02d}.json").read_text())["descriptors"]
            for i in range(len(result.alternatives))]
    M = jnd_matrix(rows)
    d = jnd_distance(M, M)[np.triu_indices(len(rows), 1)]
    assert d.min() >= DISTINCT_JND, d
    if len(result.alternatives) < 5:
        assert any("sound distinct" in w or "only" in w for w in result.warnings), result.warnings


@pytest.mark.slow
def test_cli_summary_carries_labels_and_descriptors(stem_dir, tmp_path):
    small = search_flags(small_search(generations=1, alternatives=3))
    res = run_cli("mix", stem_dir, "--out", tmp_path / "o", *small, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    for a in summary["alternatives"]:
        assert isinstance(a["labels"], list) and a["descriptors"]["centroid_hz"] > 0


@pytest.mark.slow
def test_fast_tier_descriptors_follow_the_exact_ones(exported):
    """The fast tier's descriptors (used to choose among the whole front) track the exact ones."""
    result, out = exported
    ms = [m for m in json.loads((out / "front.json").read_text())["members"] if "descriptors" in m]
    assert len(ms) >= 2
    for key, tol in (("side_mid_db", 1.5), ("low_end_db", 3.0)):  # measured: within 0.8 / 2.2 dB (2-4 stems)
        e = np.array([m["descriptors"][key] for m in ms])
        f = np.array([m["descriptors_fast"][key] for m in ms])
        audible = e > -30.0  # a low end 50 dB down (no bass stem) is compared to nothing
        assert np.max(np.abs(e - f)[audible], initial=0.0) <= tol, (key, e, f)


def test_fast_descriptors_are_the_same_on_any_number_of_threads(stem_session, stem_analysis):
    from evomix.choose.describe import fast_descriptors
    from evomix.search.genome import GeneTable

    session, analysis = stem_session, stem_analysis
    table = GeneTable(session.n_stems)
    G = table.initial_population(70, np.random.default_rng(3))  # 3 blocks of 32, the last a short one
    one = fast_descriptors(analysis, table, G, target_lufs=-14.0, ceiling_dbtp=-1.0, threads=1)
    two = fast_descriptors(analysis, table, G, target_lufs=-14.0, ceiling_dbtp=-1.0, threads=2)
    assert set(one) == set(two)
    for k in one:
        assert one[k].shape == (70,)
        np.testing.assert_array_equal(one[k], two[k])
