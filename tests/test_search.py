"""The search (evomix.search.algorithm): determinism, fronts, hypervolume, termination, steering,
the :class:`Evolution` object's loop and the generators it owns; the choice of alternatives."""
import itertools
import random

import numpy as np
import pytest
from deap import tools
from scipy.spatial.distance import pdist

from evomix.choose.select import ELIGIBLE_FRACTION, choose_alternatives
from evomix.errors import EvomixError, ParameterError
from evomix.search.algorithm import (
    ACH_TOL,
    ACH_WINDOW,
    ALGORITHMS,
    HV_TOL,
    HV_WINDOW,
    Evolution,
    Termination,
    achievement,
    best_achievement,
    non_dominated,
    run_search,
    steered_reference_points,
)
from evomix.search.hypervolume import Normaliser, hypervolume


def zdt1(genomes):
    """ZDT1 (Zitzler, Deb & Thiele 2000): a known convex front f2 = 1 - sqrt(f1) at g = 1."""
    f1 = genomes[:, 0]
    g = 1 + 9 * genomes[:, 1:].mean(axis=1)
    return np.stack([f1, g * (1 - np.sqrt(f1 / g))], axis=1)


def _run(seed, gens=30):
    init = np.random.default_rng(seed).uniform(size=(24, 6))
    return run_search(zdt1, init, termination=Termination(generations=gens), seed=seed)


def test_same_seed_same_result_different_seed_differs():
    a, b, c = _run(1), _run(1), _run(2)
    np.testing.assert_array_equal(a.front_F, b.front_F)
    np.testing.assert_array_equal(a.population, b.population)
    assert not np.array_equal(a.population, c.population)


def test_search_approaches_the_known_front():
    r = _run(3, gens=60)
    assert non_dominated(r.front_F).all()
    # hypervolume w.r.t. (1.1, 1.1): the true ZDT1 front has 0.8767 (1.21 - 1/3); random points ~0.2
    F = r.front_F[np.argsort(r.front_F[:, 0])]
    ref = np.array([1.1, 1.1])
    hv = 0.0
    prev_f2 = ref[1]
    for f1, f2 in F:
        if f1 < ref[0] and f2 < prev_f2:
            hv += (ref[0] - f1) * (prev_f2 - f2)
            prev_f2 = f2
    assert hv > 0.6, f"hypervolume {hv:.3f} after 60 generations (true front 0.877)"
    assert r.logbook[-1]["gen"] == 60 and len(r.logbook) == 61


def test_progress_is_reported_each_generation():
    seen = []
    init = np.random.default_rng(0).uniform(size=(8, 3))
    run_search(zdt1, init, termination=Termination(generations=4), seed=0,
               progress=lambda g, n, f, best: seen.append((g, n, f, best.shape)))
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    assert all(s[1] == 4 and s[2] >= 1 and s[3] == (2,) for s in seen)


@pytest.mark.parametrize("n_pop", [3, 6])
def test_bad_population(n_pop):
    with pytest.raises(ParameterError, match="^population must be a multiple of 4") as e:
        run_search(zdt1, np.zeros((n_pop, 3)), termination=Termination(generations=1), seed=0)
    assert str(e.value.for_cli()).startswith("--population must be ")


def test_non_dominated_mask():
    F = np.array([[1, 2], [2, 1], [2, 2], [0.5, 3], [1, 2]])
    np.testing.assert_array_equal(non_dominated(F), [True, True, False, True, True])


# Farthest-point sampling (select.py, step 3) is a 2-approximation of the max-min dispersion
# (Ravi, Rosenkrantz & Tayi 1994, "Heuristic and special case algorithms for dispersion problems",
# Oper. Res. 42(2)): the closest two of its k picks are at least half as far apart as the closest two
# of the most spread k eligible candidates. On this data the picks reach 0.95 of that optimum and
# k candidates huddled round the best one 0.36: the threshold lies between.
SPREAD_OF_BEST = 0.8


def test_alternatives_start_with_the_best_and_spread_out(rng):
    n, k = 60, 5
    G = rng.uniform(size=(n, 5))
    F = rng.uniform(size=(n, 3))
    picks = choose_alternatives(G, F, k)
    rank_sum = np.argsort(np.argsort(F, axis=0), axis=0).sum(axis=1)  # (n,) no ties in uniform draws
    assert len(set(picks)) == k and picks[0] == int(np.argmin(rank_sum))
    # the space the choice spreads in (select.py, step 3): genes / sqrt(genes), objectives min-max normalised
    X = np.hstack([G / np.sqrt(G.shape[1]), (F - F.min(axis=0)) / (F.max(axis=0) - F.min(axis=0))])  # (n, 8)
    eligible = np.argsort(rank_sum, kind="stable")[: int(np.ceil(n * ELIGIBLE_FRACTION))]  # the best 15
    assert set(picks) <= set(eligible)
    best = max(pdist(X[list(s)]).min() for s in itertools.combinations(eligible, k))  # 3003 subsets
    assert pdist(X[picks]).min() >= SPREAD_OF_BEST * best
    # guard: a collapsed choice, the best and its k - 1 nearest eligible neighbours, fails the same test
    huddle = eligible[np.argsort(np.linalg.norm(X[eligible] - X[picks[0]], axis=1))[:k]]
    assert huddle[0] == picks[0] and pdist(X[huddle]).min() < SPREAD_OF_BEST * best
    assert choose_alternatives(G[:2], F[:2], 5) in ([0, 1], [1, 0])


# --- algorithms, hypervolume, termination, steering (issue 12) -------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_returns_a_valid_front(algorithm):
    init = np.random.default_rng(0).uniform(size=(16, 5))
    r = run_search(zdt1, init, algorithm=algorithm, termination=Termination(generations=8), seed=0)
    assert r.algorithm == algorithm and r.generations == 8 and r.stop_reason == "generations"
    assert r.evaluations == 16 * 9
    assert len(r.front_F) >= 1 and non_dominated(r.front_F).all()
    np.testing.assert_allclose(zdt1(r.front_genomes), r.front_F)
    assert ((r.front_genomes >= 0) & (r.front_genomes <= 1)).all()
    assert len(r.hypervolume) == 9 and r.hypervolume[-1] > 0


def test_unknown_algorithm_is_rejected():
    with pytest.raises(ParameterError, match="^algorithm: unknown algorithm .cmaes."):
        run_search(zdt1, np.zeros((8, 3)), algorithm="cmaes", termination=Termination(generations=1))


def test_hypervolume_never_decreases_and_is_in_the_logbook():
    init = np.random.default_rng(1).uniform(size=(24, 6))
    norm = Normaliser(np.zeros(2), np.array([1.1, 1.1]))
    r = run_search(zdt1, init, termination=Termination(generations=25), seed=1, normaliser=norm)
    hv = np.asarray(r.logbook.select("hv"))
    np.testing.assert_array_equal(hv, r.hypervolume)
    assert (np.diff(hv) >= -1e-12).all() and hv[-1] > hv[0]
    # the known ZDT1 front in this space: (1.21 - 1/3) / 1.21 = 0.7245
    assert hv[-1] < 0.7245 + 1e-9


def test_hypervolume_of_known_points():
    norm = Normaliser(np.zeros(2), np.ones(2))
    assert hypervolume(np.array([[0.5, 0.5]]), norm) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.5, 0.5], [0.25, 0.75]]), norm) == pytest.approx(0.3125)
    assert hypervolume(np.array([[1.5, 0.1]]), norm) == 0.0  # beyond the reference point


def test_termination_stops_when_converged():
    # a flat problem: nothing ever improves, so the hypervolume gain over the window is 0
    flat = lambda G: np.stack([0.5 + 0 * G[:, 0], 0.5 + 0 * G[:, 1]], axis=1)  # noqa: E731
    init = np.random.default_rng(0).uniform(size=(8, 3))
    r = run_search(flat, init, termination=Termination(window=5, tol=1e-3, time_limit=None), seed=0,
                   normaliser=Normaliser(np.zeros(2), np.ones(2)))
    assert r.stop_reason == "converged" and r.generations == 5


def _plateau_at(k_plateau: int, step: float = 0.9):
    """A problem whose every candidate of generation k scores (c_k, c_k), c_k = 0.5 step^min(k, k_plateau):
    the archive's best improves by 1 - step a generation until ``k_plateau``, then never again
    (one ``evaluate`` call per generation)."""
    calls = []

    def evaluate(G):
        c = 0.5 * step ** min(len(calls), k_plateau)
        calls.append(len(G))
        return np.full((len(G), 2), c)
    return evaluate


@pytest.mark.parametrize("k_plateau, window", [(12, 5), (30, 8), (3, 20)])
def test_default_rule_stops_a_window_after_the_best_achievement_plateaus_and_not_before(k_plateau, window):
    # each generation before the plateau improves the best achievement by 10 % (> tol = 1 %), so the
    # test holds first when the window lies wholly inside the plateau: at k_plateau + window exactly
    init = np.random.default_rng(0).uniform(size=(8, 3))
    r = run_search(_plateau_at(k_plateau), init, termination=Termination(window=window, time_limit=None), seed=0,
                   normaliser=Normaliser(np.zeros(2), np.ones(2)))
    assert r.stop_reason == "converged"
    assert r.generations == k_plateau + window
    best = np.asarray(r.best_achievement)
    assert best.shape == (r.generations + 1,)
    np.testing.assert_allclose(best[k_plateau:], 0.5 * 0.9 ** k_plateau * (1 + 1e-3 * 2))  # max + RHO * sum
    assert (np.diff(best[: k_plateau + 1]) < 0).all()  # guard: it did improve until the plateau


def test_default_rule_is_the_achievement_rule_and_the_hypervolume_rule_is_kept():
    t = Termination()
    assert (t.rule, t.window, t.tol) == ("achievement", ACH_WINDOW, ACH_TOL)
    h = Termination(rule="hypervolume")
    assert (h.window, h.tol) == (HV_WINDOW, HV_TOL)
    hv, best = [0.5] * 50, [0.2] * 50
    assert t.stop(ACH_WINDOW, hv, 0.0, best) == "converged" and t.stop(ACH_WINDOW - 1, hv, 0.0, best) is None
    assert h.stop(HV_WINDOW, hv, 0.0) == "converged"  # the hypervolume rule needs no achievement history
    # the achievement rule: only a best mix inside the reference box (achievement < 1) converges, as hv > 0 does
    assert t.stop(ACH_WINDOW, hv, 0.0, [1.5] * 50) is None
    with pytest.raises(ParameterError, match="unknown rule 'pareto'"):
        Termination(rule="pareto").check()


def test_best_achievement_is_the_lowest_weighted_chebyshev_of_the_archive():
    norm = Normaliser(np.zeros(2), np.array([2.0, 4.0]))
    F = np.array([[1.0, 1.0], [0.2, 3.0]])  # z = (0.5, 0.25), (0.1, 0.75)
    assert best_achievement(F, norm) == pytest.approx(min(0.5 + 1e-3 * 0.75, 0.75 + 1e-3 * 0.85))
    assert best_achievement(F, norm, [4.0, 1.0]) == pytest.approx(min(2.0 + 1e-3 * 2.25, 0.75 + 1e-3 * 1.15))
    assert best_achievement(np.zeros((0, 2)), norm) == float("inf")


def test_achievement_rule_is_deterministic_per_seed_and_seeds_differ():
    init = np.random.default_rng(3).uniform(size=(16, 6))
    term = Termination(window=6, tol=0.01, time_limit=None)
    a, b, c = (run_search(zdt1, init, termination=term, seed=s) for s in (4, 4, 5))
    assert a.stop_reason == b.stop_reason == "converged"
    assert a.generations == b.generations
    np.testing.assert_array_equal(a.best_achievement, b.best_achievement)
    np.testing.assert_array_equal(a.front_F, b.front_F)
    assert not np.array_equal(a.best_achievement, c.best_achievement[: len(a.best_achievement)]) \
        or a.generations != c.generations


def test_termination_stops_at_the_time_limit():
    ticks = iter(range(10_000))
    init = np.random.default_rng(0).uniform(size=(8, 3))
    r = run_search(zdt1, init, termination=Termination(time_limit=3.0, tol=0.0), seed=0,
                   clock=lambda: float(next(ticks)))
    assert r.stop_reason == "time limit" and 1 <= r.generations <= 3
    real = run_search(zdt1, init, termination=Termination(time_limit=1e-6, tol=0.0), seed=0)
    assert real.stop_reason == "time limit" and real.generations == 0


def test_explicit_generations_override_convergence_and_time():
    flat = lambda G: np.stack([0.5 + 0 * G[:, 0], 0.5 + 0 * G[:, 1]], axis=1)  # noqa: E731
    init = np.random.default_rng(0).uniform(size=(8, 3))
    r = run_search(flat, init, termination=Termination(generations=12, window=2, time_limit=1e-9), seed=0)
    assert r.stop_reason == "generations" and r.generations == 12 and len(r.logbook) == 13


@pytest.mark.parametrize("bad, msg", [(dict(generations=-1), "generations"), (dict(time_limit=0.0), "time_limit")])
def test_bad_termination(bad, msg):
    with pytest.raises(ParameterError, match=f"^{msg} must be ") as e:
        run_search(zdt1, np.zeros((8, 3)), termination=Termination(**bad))
    assert str(e.value.for_cli()).startswith(f"--{msg.replace('_', '-')} must be ")


@pytest.mark.parametrize("algorithm", ["nsga2", "nsga3"])
def test_same_seed_same_front_every_algorithm(algorithm):
    init = np.random.default_rng(5).uniform(size=(16, 5))
    a, b = (run_search(zdt1, init, algorithm=algorithm, termination=Termination(generations=10), seed=4)
            for _ in range(2))
    np.testing.assert_array_equal(a.front_F, b.front_F)
    np.testing.assert_array_equal(a.hypervolume, b.hypervolume)


def test_steered_reference_points_lean_toward_the_heavy_objective():
    ref = steered_reference_points(4, None)
    steered = steered_reference_points(4, np.array([4.0, 1, 1, 1]))
    np.testing.assert_allclose(steered.sum(axis=1), 1.0)
    assert steered[:, 0].mean() < ref[:, 0].mean()  # objective 0 (weighted x4) is lower on average
    np.testing.assert_array_equal(steered_reference_points(4, np.ones(4)), ref)
    assert achievement(np.array([[0.1, 0.5], [0.5, 0.1]]), np.array([4.0, 1.0])).argmin() == 0


def dtlz2(genomes):
    """DTLZ2 with 3 objectives (Deb et al. 2002): a spherical front, every trade-off reachable."""
    x, g = genomes[:, :2], ((genomes[:, 2:] - 0.5) ** 2).sum(axis=1)
    c, s = np.cos(x * np.pi / 2), np.sin(x * np.pi / 2)
    return (1 + g)[:, None] * np.stack([c[:, 0] * c[:, 1], c[:, 0] * s[:, 1], s[:, 0]], axis=1)


@pytest.mark.parametrize("algorithm", ["nsga2", "nsga3"])
def test_weights_steer_the_search(algorithm):
    init = np.random.default_rng(2).uniform(size=(24, 6))
    norm = Normaliser(np.zeros(3), np.full(3, 1.5))
    runs = {}
    for name, w in (("default", None), ("steered", np.array([4.0, 1.0, 1.0]))):
        runs[name] = run_search(dtlz2, init, algorithm=algorithm, termination=Termination(generations=30), seed=3,
                                normaliser=norm, steer=w)
    assert np.median(runs["steered"].front_F[:, 0]) < np.median(runs["default"].front_F[:, 0])
    assert np.median(runs["steered"].population_F[:, 0]) < np.median(runs["default"].population_F[:, 0])


# --- the Evolution object and the generators it owns (issue 20) -------------------------------------

INIT = np.random.default_rng(7).uniform(size=(16, 6))


def _module_states():
    return random.getstate(), np.random.get_state()  # noqa: NPY002 (the caller's generators are the subject)


def _assert_same_module_states(a, b):
    (py_a, (name_a, keys_a, *rest_a)), (py_b, (name_b, keys_b, *rest_b)) = a, b
    assert py_a == py_b and name_a == name_b and np.array_equal(keys_a, keys_b) and rest_a == rest_b


def _caller_draws(*_):
    """What a caller might do between generations (a progress bar, an evaluator, a dask client)."""
    random.random()
    np.random.random()  # noqa: NPY002


def _assert_same_result(a, b):
    np.testing.assert_array_equal(a.front_F, b.front_F)
    np.testing.assert_array_equal(a.front_genomes, b.front_genomes)
    np.testing.assert_array_equal(a.population, b.population)
    np.testing.assert_array_equal(a.hypervolume, b.hypervolume)
    assert (a.generations, a.evaluations, a.stop_reason) == (b.generations, b.evaluations, b.stop_reason)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_search_leaves_the_callers_generators_as_they_were(algorithm):
    random.seed(2024)
    np.random.seed(2024)  # noqa: NPY002
    _caller_draws()  # not a freshly seeded state
    before = _module_states()
    r = run_search(dtlz2, INIT, algorithm=algorithm, termination=Termination(generations=4), seed=1)
    _assert_same_module_states(_module_states(), before)
    # guard: the search did draw, from its own generators
    moved = {"random": r.state.random_state != random.Random(1).getstate(),
             "numpy": r.state.numpy_state[2] != np.random.RandomState(1).get_state()[2],  # noqa: NPY002 (position)
             "uniform": r.state.uniform_state != np.random.default_rng(1).bit_generator.state}
    assert moved == {"nsga2": {"random": True, "numpy": False, "uniform": False},  # selNSGA3 draws from numpy
                     "nsga3": {"random": True, "numpy": True, "uniform": False},
                     "random": {"random": False, "numpy": False, "uniform": True}}[algorithm]


def test_what_the_caller_draws_during_a_search_does_not_change_it():
    kw = dict(algorithm="nsga3", termination=Termination(generations=5), seed=2)
    plain = run_search(dtlz2, INIT, **kw)

    def scores_and_draws(G):
        _caller_draws()
        return dtlz2(G)

    noisy = run_search(scores_and_draws, INIT, progress=_caller_draws, on_generation=_caller_draws,
                       stop_requested=lambda: bool(_caller_draws()), **kw)
    _assert_same_result(noisy, plain)


@pytest.mark.parametrize("fails", ["selection", "scoring"])
def test_the_callers_generators_come_back_when_the_search_fails(monkeypatch, fails):
    before = _module_states()
    calls = []

    def draws_then_fails(*a, **k):  # DEAP's survival, drawing, then failing in the search's turn
        _caller_draws()
        raise RuntimeError("selection failed")

    def fails_at_generation_2(G):  # after two generations of variation and survival
        calls.append(len(G))
        if len(calls) == 3:
            raise RuntimeError("scoring failed")
        return dtlz2(G)

    if fails == "selection":
        monkeypatch.setattr(tools, "selNSGA2", draws_then_fails)
    evaluate = dtlz2 if fails == "selection" else fails_at_generation_2
    with pytest.raises(RuntimeError, match=f"{fails} failed"):
        run_search(evaluate, INIT, termination=Termination(generations=3), seed=1)
    _assert_same_module_states(_module_states(), before)


def test_searches_stepped_in_turn_give_what_each_gives_alone():
    configs = [("nsga2", 1), ("nsga3", 2), ("random", 3)]
    alone = [run_search(dtlz2, INIT, algorithm=a, termination=Termination(generations=4), seed=s) for a, s in configs]
    searches = [Evolution(dtlz2, algorithm=a, termination=Termination(generations=4)).setup(INIT, seed=s)
                for a, s in configs]
    while any(s.has_next() for s in searches):
        for s in searches:
            if s.has_next():
                s.next()
    for search, r in zip(searches, alone):
        _assert_same_result(search.result(), r)
    assert not np.array_equal(alone[0].front_F, alone[1].front_F)  # guard: three different searches


def test_a_dump_loaded_into_a_new_search_continues_it_exactly():
    def make():
        return Evolution(dtlz2, algorithm="nsga3", termination=Termination(generations=6), steer=[4.0, 1.0, 1.0])

    straight = make().setup(INIT, seed=3).run()
    first = make().setup(INIT, seed=3)
    for _ in range(3):
        first.next()
    assert first.gen == 2 and first.has_next()
    second = make().load(first.dump())
    assert (second.gen, second.resumed_from, second.evaluations) == (2, 2, 3 * len(INIT))
    _assert_same_result(second.run(), straight)
    with pytest.raises(EvomixError, match=r"call setup\(initial, seed=...\) or load\(state\) first"):
        make().next()
