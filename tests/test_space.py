"""Space by default (issue 22): every run searches the reverb bus toward the genre's space target.

The profile's ``space_lu`` (the return re the mix, LU) and ``decay_s``; the default ranges by role
(``evomix.search.constraints.space_defaults``); the genre objective's penalty and the search's
constraint (``objectives.genre.space_penalty``, ``space_errors_lu``); a run's own locks over the
defaults (a dry mix with ``'*.reverb_send_db=off'``).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from evomix.engine.batch import render_features
from evomix.errors import ParameterError
from evomix.search.constraints import ROLE_SEND_MAX_DB, Constraints, space_defaults
from evomix.search.genome import REVERB_SEND_OFF_DB, GeneTable
from evomix.search.problem import INFEASIBLE, Problem
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile
from objectives.genre import (
    SPACE_ERROR_LU,
    SPACE_FLOOR_LU,
    SPACE_WEIGHT,
    GenreProfile,
    space_errors_lu,
    space_level_lu,
    space_penalty,
)
from tests.support import run_cli, search_flags, small_search


def test_every_builtin_profile_has_a_space_target_at_least_6_lu_wide_around_pestana_and_reiss():
    for name in ("pop", "rock", "metal", "edm", "hip-hop", "jazz", "acoustic", "classical"):
        p = load_profile(name)
        lo, hi = p.space_lu
        assert hi - lo >= 6.0 and lo < -9.5 < hi + 4.0, name  # about 9.5 LU under the mix, give or take
        assert 0.3 <= p.decay_s[0] < p.decay_s[1] <= 4.0, name
        assert "Pestana & Reiss" in p.source


@pytest.mark.parametrize("field,value", [("space_lu", [-5.0, -12.0]), ("space_lu", [-80.0, -10.0]),
                                         ("decay_s", [0.0, 2.0]), ("space_lu", [-12.0])])
def test_a_profile_with_a_bad_space_target_is_refused_naming_it(field, value):
    d = load_profile("pop").to_dict()
    d[field] = value
    with pytest.raises(ParameterError, match=field):
        GenreProfile.from_dict(d, origin="mine.json")


def test_the_default_bus_keeps_the_low_end_nearly_dry_and_the_decay_in_the_genre_s_range(stem_session):
    prof = load_profile("rock")
    c = space_defaults(prof, stem_session.names, stem_session.roles)
    table = c.apply(GeneTable(stem_session.n_stems), stem_session.names)
    assert table.has_open_sends
    for s, role in enumerate(stem_session.roles):
        send = table.gene("reverb_send_db", stem=s)
        assert send.low == REVERB_SEND_OFF_DB and send.high == ROLE_SEND_MAX_DB.get(role, 0.0), role
    decay = table.gene("reverb_decay_s")
    assert (decay.low, decay.high) == prof.decay_s
    assert not space_defaults(dataclasses.replace(prof, space_lu=None), stem_session.names, stem_session.roles)


def test_a_run_s_own_entries_override_the_default_bus(stem_session):
    names, roles = stem_session.names, stem_session.roles
    defaults = space_defaults(load_profile("pop"), names, roles)
    dry = defaults.overridden_by(Constraints.parse(["*.reverb_send_db=off"]))
    assert not dry.apply(GeneTable(len(names)), names).has_open_sends
    bass = names[roles.index("bass")]
    opened = defaults.overridden_by(Constraints.parse(ranges=[f"{bass}.reverb_send_db=-40:-6"]))
    assert opened.apply(GeneTable(len(names)), names).gene("reverb_send_db", stem=roles.index("bass")).high == -6.0


def _wet_and_dry(stem_analysis, send_db):
    table = space_defaults(load_profile("pop"), stem_analysis.names, stem_analysis.roles).apply(
        GeneTable(stem_analysis.n_stems), stem_analysis.names)
    p = table.decode(np.full((2, table.n_genes), 0.5), stem_analysis.trim_db)
    sends = np.full_like(p.reverb_send_db, REVERB_SEND_OFF_DB)
    sends[0] = send_db
    return table, dataclasses.replace(p, reverb_send_db=sends)


def test_the_space_penalty_and_the_error_follow_their_formulas(stem_analysis):
    """Row 0 wet (every send at the given level), row 1 dry (the floor)."""
    prof = load_profile("pop")
    lo, hi = prof.space_lu
    for send_db in (-30.0, -12.0, 0.0):
        _, p = _wet_and_dry(stem_analysis, send_db)
        f = render_features(stem_analysis, p, target_lufs=-14.0, ceiling_dbtp=-1.0)
        s = space_level_lu(f)
        assert s[1] == SPACE_FLOOR_LU and s[0] > SPACE_FLOOR_LU
        out = np.maximum(np.maximum(lo - s, s - hi), 0.0)
        np.testing.assert_allclose(space_penalty(f, prof), SPACE_WEIGHT * out)
        np.testing.assert_allclose(space_errors_lu(f, Target(prof, space=True)), np.maximum(out - SPACE_ERROR_LU, 0))
        assert not space_errors_lu(f, Target(prof, space=False)).any()  # a dry search: no space to set
        g_space = evaluate(f, Target(prof, space=True), ("genre",))[:, 0]
        g_plain = evaluate(f, Target(prof, space=False), ("genre",))[:, 0]
        np.testing.assert_allclose(g_space - g_plain, space_penalty(f, prof))


def test_a_mix_drowned_in_reverb_or_bone_dry_is_infeasible_while_genre_is_searched(stem_analysis):
    table, p = _wet_and_dry(stem_analysis, 0.0)
    G = table.encode(p)  # each send within its role's range (the bass's at most -24 dB)
    target = Target(load_profile("pop"), space=True)
    f = render_features(stem_analysis, table.decode(G, stem_analysis.trim_db), target_lufs=-14.0, ceiling_dbtp=-1.0)
    err = space_errors_lu(f, target)
    assert err[0] > 0.0 and err[1] > 0.0  # every send at its top: drowned; every send off: the floor, far under
    problem = Problem(stem_analysis, table, target, OBJECTIVE_NAMES, (1.0,) * 4)
    raw, limiting, roles, space = problem.scores_and_violations(G)
    np.testing.assert_allclose(space, err)
    F = problem.weighted_scores(G)
    assert (F >= INFEASIBLE).all()
    no_genre = Problem(stem_analysis, table, target, ("masking", "loudness", "balance"), (1.0,) * 3)
    assert not no_genre.scores_and_violations(G)[3].any()  # genre switched off: no space constraint


@pytest.mark.slow
def test_a_run_that_names_the_bus_searches_it_with_the_defaults_and_off_gives_a_dry_mix(stem_dir, tmp_path):
    flags = [*search_flags(small_search(generations=4, alternatives=2, seed=3)), "--quiet", "--export-stems"]
    res = run_cli("mix", stem_dir, "--out", tmp_path / "wet", *flags, "--lock", "vocal.reverb_send_db=-10")
    assert res.exit_code == 0, res.output
    alt = json.loads((tmp_path / "wet" / "alt-01.json").read_text())
    ranges = alt["constraints"]["ranges"]
    assert "*.reverb_send_db" in ranges and "bass.reverb_send_db" in ranges and "drums.pan" in ranges
    assert alt["params"]["stems"]["vocal"]["reverb_send_db"] == -10.0
    res = run_cli("mix", stem_dir, "--out", tmp_path / "dry", *flags, "--lock", "*.reverb_send_db=off")
    assert res.exit_code == 0, res.output
    for path in sorted((tmp_path / "dry").glob("alt-*.json")):
        stems = json.loads(path.read_text())["params"]["stems"]
        assert all(v["reverb_send_db"] == REVERB_SEND_OFF_DB for v in stems.values())
        assert not (tmp_path / "dry" / f"{path.stem}-stems" / "reverb-return.wav").exists()


def test_the_low_end_roles_are_centred_by_default_and_a_run_can_free_them(stem_session):
    from evomix.search.constraints import CENTRED_PAN, CENTRED_ROLES, default_constraints

    names, roles = stem_session.names, stem_session.roles
    assert not default_constraints(load_profile("pop"), names, roles, space=False)  # without the bus: none
    defaults = default_constraints(load_profile("pop"), names, roles)  # SPACE_BY_DEFAULT: every run
    assert defaults == default_constraints(load_profile("pop"), names, roles, space=True)
    table = defaults.apply(GeneTable(len(names)), names)
    for s, role in enumerate(roles):
        pan = table.gene("pan", stem=s)
        assert (pan.low, pan.high) == ((-CENTRED_PAN, CENTRED_PAN) if role in CENTRED_ROLES else (-1.0, 1.0)), role
    bass = names[roles.index("bass")]
    freed = defaults.overridden_by(Constraints.parse(ranges=[f"{bass}.pan=-1:1"])).apply(GeneTable(len(names)), names)
    assert freed.gene("pan", stem=roles.index("bass")).high == 1.0


def test_the_picks_hold_the_driest_and_the_wettest_good_mix():
    """SPACE_SPREAD (choose/select.py): after the best, the eligible mixes whose return lies furthest
    below and above it; the farthest-point rule alone would spend the picks on the centroid, whose
    spread is far wider here."""
    from evomix.choose.describe import COMPARED
    from evomix.choose.select import ELIGIBLE_FRACTION, choose_alternatives, rank_normalise

    rng = np.random.default_rng(0)
    n = 40
    D = np.zeros((n, len(COMPARED)))
    D[:, COMPARED.index("centroid_hz")] = rng.uniform(0, 30, n)  # JND units: a wide spread
    space = rng.uniform(-5.5, -2.7, n)  # -16.5 .. -8 LU in 3 LU JNDs
    space[0] = -4.1  # the best one in the middle: a drier and a wetter one lie a JND beyond it
    D[:, COMPARED.index("space_lu")] = space
    F = rng.uniform(size=(n, 4))
    F[:, 0] = np.linspace(0, 1, n)
    w = np.array([10.0, 1.0, 1.0, 1.0])  # member 0 best by far: the first pick
    picks = choose_alternatives(np.zeros((n, 3)), F, 5, w, descriptors=D)
    eligible = np.argsort(rank_normalise(F) @ w, kind="stable")[: int(np.ceil(n * ELIGIBLE_FRACTION))]
    assert picks[0] == eligible[0]
    driest, wettest = eligible[np.argmin(space[eligible])], eligible[np.argmax(space[eligible])]
    assert space[driest] < space[0] - 1.0 and space[wettest] > space[0] + 1.0  # the premise
    assert sorted(picks[1:3]) == sorted([driest, wettest]), (picks, space[picks])
    assert space[picks].max() - space[picks].min() >= 1.0  # more than a JND apart: audibly drier and wetter


# --- the space ladder (evomix/choose/space.py) ------------------------------------------------------

def test_the_ladder_s_targets_spread_over_the_genre_s_range_inside_its_ends():
    from evomix.choose.space import LADDER_MARGIN_LU, space_targets

    lo, hi = load_profile("pop").space_lu
    t = space_targets(load_profile("pop"), 5)
    np.testing.assert_allclose(t, np.linspace(lo + LADDER_MARGIN_LU, hi - LADDER_MARGIN_LU, 5))
    assert t[-1] - t[0] >= 6.0  # the span the issue asks of the alternatives, on a 7 LU range
    assert space_targets(load_profile("pop"), 1) is None
    assert space_targets(dataclasses.replace(load_profile("pop"), space_lu=None), 5) is None


def test_ladder_copies_move_only_the_open_sends_and_land_near_their_targets(stem_analysis):
    """Copies of the seed mixes (two sends open, keys at -20 and vocal at -12 dB; the rest off): each
    copy differs from its parent only in the open sends, which move together and stay in range;
    an off send stays off; each copy's fast-tier return level is within 1 LU of a target."""
    from evomix.choose.describe import fast_descriptors
    from evomix.choose.space import MIN_SHIFT_LU, space_ladder, space_targets
    from evomix.search.seeding import seed_genomes

    target = Target(load_profile("pop"), space=True)
    table = space_defaults(target.profile, stem_analysis.names, stem_analysis.roles).apply(
        GeneTable(stem_analysis.n_stems), stem_analysis.names)
    problem = Problem(stem_analysis, table, target, OBJECTIVE_NAMES, (1.0,) * 4)
    seeds = seed_genomes(table, stem_analysis, role_levels=target.profile.role_levels_db)  # mixes in the balance
    p = table.decode(np.stack(list(seeds.values())), stem_analysis.trim_db)
    keys, vocal = stem_analysis.names.index("keys"), stem_analysis.names.index("vocal")
    sends = np.full_like(p.reverb_send_db, REVERB_SEND_OFF_DB)
    sends[:, keys], sends[:, vocal] = -20.0, -12.0  # the genre_balance seed then inside the pop space range
    G = table.encode(dataclasses.replace(p, reverb_send_db=sends))
    F = problem.weighted_scores(G)
    Gc, Fc, parents = space_ladder(problem, table, stem_analysis, target, G, F, 5)
    assert len(Gc) > 0 and (Fc < INFEASIBLE).all() and set(parents) <= set(np.flatnonzero((F < INFEASIBLE).all(1)))
    pc = table.decode(Gc, stem_analysis.trim_db)
    pp = table.decode(G[parents], stem_analysis.trim_db)
    for name in ("gain_db", "pan", "highpass_hz", "comp_ratio", "reverb_decay_s"):
        np.testing.assert_array_equal(getattr(pc, name), getattr(pp, name))
    off = [s for s in range(stem_analysis.n_stems) if s not in (keys, vocal)]
    assert (pc.reverb_send_db[:, off] == REVERB_SEND_OFF_DB).all()
    moved = pc.reverb_send_db[:, [keys, vocal]] - pp.reverb_send_db[:, [keys, vocal]]
    unclipped = (pc.reverb_send_db[:, [keys, vocal]] < 0.0).all(axis=1)  # neither send at its 0 dB top
    np.testing.assert_allclose(moved[unclipped, 0], moved[unclipped, 1], atol=1e-9)  # one shift for both
    level = fast_descriptors(stem_analysis, table, Gc, target_lufs=-14.0, ceiling_dbtp=-1.0)["space_lu"]
    parent_level = fast_descriptors(stem_analysis, table, G, target_lufs=-14.0, ceiling_dbtp=-1.0)["space_lu"]
    t = space_targets(target.profile, 5)
    near = np.abs(level[:, None] - t[None, :]).min(axis=1)
    assert (near[unclipped] <= 1.0).all(), (level, t)
    assert (np.abs(level - parent_level[parents]) >= MIN_SHIFT_LU - 1.0).all()


def test_a_copy_is_never_first_and_is_eligible_only_as_its_parent():
    from evomix.choose.describe import COMPARED
    from evomix.choose.select import choose_alternatives

    n_members = 8
    j = COMPARED.index("space_lu")
    D = np.zeros((n_members + 2, len(COMPARED)))
    D[:n_members, j] = -4.0  # every member at one level; member 0 best, member 7 worst
    D[:n_members, COMPARED.index("centroid_hz")] = np.arange(n_members) * 2.0
    D[n_members:, j] = [-2.0, -6.0]  # a copy of member 0 (wet) and of member 7 (dry)
    D[n_members:, COMPARED.index("centroid_hz")] = [0.0, 14.0]
    F = np.tile(np.linspace(0, 1, n_members)[:, None], (1, 4))
    F = np.concatenate([F, [[-1.0] * 4, [-1.0] * 4]])  # the copies score best of all: still never first
    parents = np.array([-1] * n_members + [0, 7])
    picks = choose_alternatives(np.zeros((n_members + 2, 3)), F, 3, descriptors=D, parents=parents)
    assert picks[0] == 0
    assert n_members in picks  # the wet copy of the best member: eligible, a JND wetter
    assert n_members + 1 not in picks[:2]  # the dry copy of the worst member is not eligible
    same = choose_alternatives(np.zeros((n_members, 3)), F[:n_members], 3, descriptors=D[:n_members])
    assert same == choose_alternatives(np.zeros((n_members, 3)), F[:n_members], 3, descriptors=D[:n_members],
                                       parents=np.full(n_members, -1))  # without copies: the choice of before
