"""NSGA-II search: determinism, non-dominated fronts, alternative selection."""
import numpy as np
import pytest

from evomix.choose.select import choose_alternatives
from evomix.errors import ParameterError
from evomix.search.algorithm import non_dominated, run_nsga2


def zdt1(genomes):
    """ZDT1 (Zitzler, Deb & Thiele 2000): a known convex front f2 = 1 - sqrt(f1) at g = 1."""
    f1 = genomes[:, 0]
    g = 1 + 9 * genomes[:, 1:].mean(axis=1)
    return np.stack([f1, g * (1 - np.sqrt(f1 / g))], axis=1)


def _run(seed, gens=30):
    init = np.random.default_rng(seed).uniform(size=(24, 6))
    return run_nsga2(zdt1, init, generations=gens, seed=seed)


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
    run_nsga2(zdt1, init, generations=4, seed=0, progress=lambda g, n, f, best: seen.append((g, n, f, best.shape)))
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    assert all(s[1] == 4 and s[2] >= 1 and s[3] == (2,) for s in seen)


@pytest.mark.parametrize("n_pop, gens, msg", [(3, 1, "population"), (6, 1, "population"), (8, -1, "generations")])
def test_bad_settings(n_pop, gens, msg):
    with pytest.raises(ParameterError, match=f"^{msg} must be ") as e:
        run_nsga2(zdt1, np.zeros((n_pop, 3)), generations=gens, seed=0)
    assert str(e.value.for_cli()).startswith(f"--{msg} must be ")


def test_non_dominated_mask():
    F = np.array([[1, 2], [2, 1], [2, 2], [0.5, 3], [1, 2]])
    np.testing.assert_array_equal(non_dominated(F), [True, True, False, True, True])


def test_alternatives_start_with_the_best_and_spread_out(rng):
    G = rng.uniform(size=(20, 5))
    F = rng.uniform(size=(20, 3))
    picks = choose_alternatives(G, F, 4)
    assert len(set(picks)) == 4
    assert picks[0] == int(np.argmin(np.argsort(np.argsort(F, axis=0), axis=0).sum(1)))
    assert choose_alternatives(G[:2], F[:2], 5) in ([0, 1], [1, 0])


# --- algorithms, hypervolume, termination, steering (issue 12) -------------------------------

from evomix.search.algorithm import ALGORITHMS, Termination, achievement, run_search, steered_reference_points  # noqa: E402
from evomix.search.hypervolume import Normaliser, hypervolume  # noqa: E402


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
