"""NSGA-II search: determinism, non-dominated fronts, alternative selection."""
import numpy as np
import pytest

from evomix.errors import ParameterError
from evomix.search import non_dominated, run_nsga2
from evomix.select import choose_alternatives


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


@pytest.mark.parametrize("n_pop, gens, msg", [(3, 1, "--population"), (6, 1, "--population"), (8, -1, "--generations")])
def test_bad_settings(n_pop, gens, msg):
    with pytest.raises(ParameterError, match=msg):
        run_nsga2(zdt1, np.zeros((n_pop, 3)), generations=gens, seed=0)


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
