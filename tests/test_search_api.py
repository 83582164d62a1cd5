"""The search through ``evomix.mix`` and the CLI: algorithms, why it stopped, hypervolume, steering."""
import json

import numpy as np
import pytest

from evomix import api
from evomix.errors import ParameterError
from evomix.settings import Master, Search
from tests.support import run_cli, search_flags, small_search


@pytest.fixture(scope="module")
def session(stem_session):
    return stem_session


def _hypervolume_by_cells(Z):
    """The volume dominated by the points Z (n, d) up to the reference point (1, ..., 1), by its
    definition: cut the box at every point's coordinates and add the cells some point dominates."""
    Z = Z[(Z < 1.0).all(axis=1)]  # points on or beyond the reference point add nothing
    edges = [np.unique(np.append(Z[:, j], 1.0)) for j in range(Z.shape[1])]
    lows = np.stack(np.meshgrid(*[e[:-1] for e in edges], indexing="ij"), axis=-1).reshape(-1, Z.shape[1])
    sizes = np.stack(np.meshgrid(*[np.diff(e) for e in edges], indexing="ij"), axis=-1).reshape(-1, Z.shape[1])
    covered = (Z[None, :, :] <= lows[:, None, :]).all(axis=-1).any(axis=-1)  # (cells,): inside some point's box
    return float(sizes[covered].prod(axis=1).sum())


def test_hypervolume_by_cells_of_known_points():
    assert _hypervolume_by_cells(np.array([[0.5, 0.5]])) == pytest.approx(0.25)
    assert _hypervolume_by_cells(np.array([[0.0, 0.5], [0.5, 0.0], [2.0, 0.0]])) == pytest.approx(0.75)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["nsga2", "nsga3", "random"])
def test_mix_runs_each_algorithm(session, algorithm):
    r = api.mix([], session=session, search=small_search(generations=3, seed=1, algorithm=algorithm))
    assert r.settings["algorithm"] == algorithm and r.settings["stop_reason"] == "generations"
    assert r.settings["generations"] == 3 and r.settings["evaluations"] == 8 * 4
    rep = r.front_dict()["search"]
    assert rep["algorithm"] == algorithm and len(rep["hypervolume"]) == 4
    space = rep["hypervolume_space"]
    assert space["reference_point"] == [1.0] * len(r.names)
    # the reported hypervolume is the volume the front dominates in the normalised space, recomputed
    # from the front's scores (default weights: the search's scores are the front's)
    F = np.array([[m.objectives[n] for n in r.names] for m in r.front])  # (front, n_obj)
    Z = (F - np.array(space["ideal"])) / np.array(space["scale"])
    assert len(r.front) >= 1 and r.settings["hypervolume"] > 0.0
    assert r.settings["hypervolume"] == pytest.approx(_hypervolume_by_cells(Z), rel=1e-6, abs=1e-9)
    assert rep["hypervolume"][-1] == pytest.approx(r.settings["hypervolume"], abs=1e-6)  # rounded to 6 places


@pytest.mark.slow
def test_hypervolume_never_decreases_on_a_small_session(session):
    r = api.mix([], session=session, search=small_search(generations=8, seed=3))
    hv = np.asarray(r.front_dict()["search"]["hypervolume"])
    assert len(hv) == 9 and (np.diff(hv) >= 0).all() and hv[-1] > hv[0], hv


@pytest.mark.slow
def test_mix_stops_at_the_time_limit(session):
    r = api.mix([], session=session, search=small_search(generations=None, seed=1, time_limit=1e-6))
    assert r.settings["stop_reason"] == "time limit" and r.settings["generations"] == 0


def test_mix_rejects_bad_search_settings(session):
    with pytest.raises(ParameterError, match="Search.algorithm must be one of nsga2, nsga3, random"):
        api.mix([], session=session, search=Search(algorithm="moead"))
    with pytest.raises(ParameterError, match="Search.time_limit must be > 0"):
        api.mix([], session=session, search=Search(time_limit=-1.0))


@pytest.mark.slow
def test_cli_reports_why_the_search_stopped(stem_dir, tmp_path):
    out = tmp_path / "out"
    timed = search_flags(small_search(generations=None, time_limit=1e-6, algorithm="nsga3"))
    res = run_cli("mix", stem_dir, "--out", out, *timed, "--quiet", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["stop_reason"] == "time limit" and summary["algorithm"] == "nsga3"
    front = json.loads((out / "front.json").read_text())
    assert front["search"]["stop_reason"] == "time limit" and front["settings"]["stop_reason"] == "time limit"
    res = run_cli("mix", stem_dir, "--out", tmp_path / "o2", *search_flags(small_search(generations=1)), "--quiet")
    assert res.exit_code == 0, res.output
    assert "stopped after 1 generations (generations" in res.stdout


@pytest.mark.slow
def test_weights_move_the_search(session):
    """masking=4 vs default weights, same seed and budget (NSGA-II, the default algorithm): the
    top-ranked alternative's masking and the exported alternatives' mean masking are lower. (NSGA-III's
    steering is weaker: on this tiny session it does not move reliably; test_search.py checks it on
    DTLZ2, and the README's study measures it.) With the reverb bus searched by default (issue 22)
    this 32 x 12 search on a 4 s song moves both in 7 of 8 seeds (measured, seeds 0-7; at 16 x 12
    the top moved in 5 of 8); the seed here is one of those 7. The front's median masking, asserted
    before the bus, moved in 1 of 8 (the archive of four objectives and the bus's genes keeps
    mixes everywhere); the exported alternatives are what the weights are for."""
    kw = dict(session=session, search=small_search(population=32, generations=12, seed=3))
    base = api.mix([], **kw)
    steered = api.mix([], weights="masking=4", **kw)
    assert base.settings["algorithm"] == "nsga2"
    assert steered.alternatives[0].objectives["masking"] < base.alternatives[0].objectives["masking"]
    mean = lambda r: float(np.mean([m.objectives["masking"] for m in r.alternatives]))  # noqa: E731
    assert mean(steered) < mean(base), (mean(steered), mean(base))


def test_over_the_limiter_budget_every_objective_is_infeasible_plus_the_excess(session, stem_analysis):
    """Problem.weighted_scores with ``max_limiting_db``: candidates within the budget keep their
    weighted scores, the others score INFEASIBLE + their excess (dB) on every objective, so every
    candidate within the budget dominates every one beyond it (Deb's constrained domination)."""
    from evomix.search.algorithm import non_dominated
    from evomix.search.genome import GeneTable
    from evomix.search.problem import INFEASIBLE, Problem
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    analysis = stem_analysis
    w = (2.0, 1.0, 1.0, 1.0)
    # jazz: a genre without role ranges, so the limiter is the only constraint (random mixes break the others)
    p = Problem(analysis, GeneTable(session.n_stems), Target(load_profile("jazz"), -14.0, -1.0), OBJECTIVE_NAMES, w,
                max_limiting_db=0.5)
    G = np.random.default_rng(3).uniform(size=(32, p.table.n_genes))
    raw, limiting, roles, _ = p.scores_and_violations(G)
    F = p.weighted_scores(G)
    violation = limiting + roles
    over = violation > 0.0
    assert (limiting > 0).any() and (~over).any(), limiting  # the premise: both kinds in this population
    np.testing.assert_array_equal(F[~over], raw[~over] * np.array(w))
    np.testing.assert_allclose(F[over], INFEASIBLE + raw[over] * np.array(w) + violation[over][:, None])
    assert (F[~over].max(axis=0) < F[over].min(axis=0)).all()  # any within dominates any beyond
    keep = non_dominated(F)
    assert not keep[over].any()


def test_a_buried_bass_is_infeasible_while_balance_is_an_objective(session, stem_analysis):
    """Issue 21: a role more than ROLE_ERROR_DB outside the genre's range (here the bass 24 dB down)
    is an error, not an alternative: infeasible in the search (and never picked: ``pipeline.choose``)."""
    from evomix.search.genome import GeneTable
    from evomix.search.problem import INFEASIBLE, Problem
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    table = GeneTable(session.n_stems)
    g = np.tile(table.neutral(), (2, 1))
    bass = session.roles.index("bass")
    per_stem = len(table.genes_of_stem(0))
    g[1, bass * per_stem + [x.name for x in table.genes_of_stem(bass)].index("gain_db")] = 0.0  # the bass at -24 dB
    pop = Target(load_profile("pop"), -14.0, -1.0)
    p = Problem(stem_analysis, table, pop, OBJECTIVE_NAMES, (1.0,) * 4)
    raw, limiting, roles, _ = p.scores_and_violations(g)
    assert roles[1] > roles[0] + 10.0 and not limiting.any(), roles  # the unity mix is (nearly) in range
    F = p.weighted_scores(g)
    np.testing.assert_allclose(F[1], INFEASIBLE + raw[1] + roles[1])
    without_balance = Problem(stem_analysis, table, pop, ("masking", "loudness", "genre"), (1.0,) * 3)
    assert (without_balance.weighted_scores(g) < INFEASIBLE).all()  # balance switched off: no balance errors
    jazz = Problem(stem_analysis, table, Target(load_profile("jazz"), -14.0, -1.0), OBJECTIVE_NAMES, (1.0,) * 4)
    assert (jazz.weighted_scores(g) < INFEASIBLE).all()  # a genre without role ranges


def test_when_no_mix_is_within_the_limiter_budget_the_front_keeps_a_spread(session, stem_analysis):
    """Random mixes at a budget of 0 dB are all over it: none dominates every other (they compare by
    score plus excess), so an early or over-constrained search still has several alternatives, and
    the least limited one is among them."""
    from evomix.search.algorithm import non_dominated
    from evomix.search.genome import GeneTable
    from evomix.search.problem import INFEASIBLE, Problem
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    table = GeneTable(session.n_stems)
    p = Problem(stem_analysis, table, Target(load_profile("jazz"), -14.0, -1.0), OBJECTIVE_NAMES, (1.0,) * 4,
                max_limiting_db=0.0)
    G = np.random.default_rng(5).uniform(size=(32, table.n_genes))
    _, limiting, _, _ = p.scores_and_violations(G)
    F = p.weighted_scores(G)
    over = limiting > 0
    assert over.sum() >= 16 and (F[over] >= INFEASIBLE).all()  # the premise: most are over it
    keep = non_dominated(F[over])
    assert keep.sum() >= 2, keep.sum()


@pytest.mark.slow
def test_the_limiter_budget_keeps_squashed_mixes_out_of_the_front(session):
    """``max_limiting_db`` holds in every front member (their fast-tier limiter gain reduction, the
    ``limiter_gr_db`` descriptor); without it the same search's front goes beyond it; with a
    budget no mix can meet, the front holds the least limited ones, with their real scores, and a
    warning says what to change."""
    kw = dict(session=session, search=small_search(population=16, generations=6, seed=0))
    free = api.mix([], master=Master(max_limiting_db=None), **kw)
    most = max(m.fast_descriptors["limiter_gr_db"] for m in free.front)
    assert most > 1.0, most  # the premise: unconstrained, some front member is limited by more than 1 dB
    tight = api.mix([], master=Master(max_limiting_db=1.0), **kw)
    assert tight.settings["max_limiting_db"] == 1.0 and free.settings["max_limiting_db"] is None
    assert max(m.fast_descriptors["limiter_gr_db"] for m in tight.front) <= 1.0 + 1e-6
    loud = api.mix([], master=Master(target_lufs=-6.0, max_limiting_db=0.0), **kw)  # nothing reaches -6 LUFS unlimited
    expected = "no mix reached -6 LUFS with at most 0 dB of limiting"
    assert any(w.startswith(expected) for w in loud.warnings), loud.warnings
    assert all(v < 1e3 for m in loud.front for v in m.objectives.values())  # real scores, not the penalty
