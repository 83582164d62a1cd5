"""Fast tier vs exact tier, and batched vs per-candidate rendering."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from evomix.audio import load_session
from evomix.engine.analysis import analyze_session
from evomix.engine.batch import render_features
from evomix.engine.render import features_from_render, render_exact
from evomix.genome import GeneTable
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile
from objectives.meter import integrated_loudness, true_peak_dbtp


@pytest.fixture(scope="module")
def setup(stem_dir):
    session = load_session(sorted(stem_dir.glob("*.wav")))
    analysis = analyze_session(session)
    table = GeneTable(session.n_stems)
    genomes = table.initial_population(10, np.random.default_rng(5), spread=0.25, random_fraction=0.3)
    params = table.decode(genomes, analysis.trim_db)
    target = Target(load_profile("pop"), -14.0, -1.0)
    fast = render_features(analysis, params, target_lufs=-14.0, ceiling_dbtp=-1.0)
    exact = [render_exact(session.audio, session.is_mono, session.sr, params, index=i, target_lufs=-14.0, ceiling_dbtp=-1.0)
             for i in range(len(genomes))]
    return session, analysis, params, target, fast, exact


def test_batched_equals_per_candidate(setup):
    session, analysis, params, target, fast, _ = setup
    F_all = evaluate(fast, target, OBJECTIVE_NAMES)
    for i in (0, 3, 7):
        one = render_features(analysis, params.member(i), target_lufs=-14.0, ceiling_dbtp=-1.0)
        np.testing.assert_allclose(evaluate(one, target, OBJECTIVE_NAMES)[0], F_all[i], rtol=1e-4, atol=1e-6)
    assert not np.allclose(F_all[0], F_all[3])  # guard: candidates really differ


def test_exact_render_meets_target_and_ceiling(setup):
    session, *_, exact = setup
    for r in exact:
        assert abs(float(integrated_loudness(r.mix, session.sr)) + 14.0) <= 0.1
        assert float(true_peak_dbtp(r.mix, session.sr)) <= -1.0 + 1e-6
        np.testing.assert_allclose(r.stems.sum(axis=0), r.mix, atol=1e-9)  # contributions add up to the master


def test_fast_loudness_matches_exact_within_half_an_lu(setup):
    """Pre-normalisation integrated loudness: band-domain estimate vs BS.1770 on the exact render."""
    *_, fast, exact = setup
    err = fast.raw_loudness_lufs - np.array([r.raw_loudness_lufs for r in exact])
    assert np.abs(err).max() <= 0.5, f"fast - exact loudness errors {np.round(err, 2)} LU"


@pytest.mark.parametrize("name", ["masking", "balance", "genre"])
def test_fast_tier_ranks_like_exact(setup, name):
    """Rank agreement on 10 varied candidates (experiments/fidelity.py measures larger samples)."""
    _, analysis, _, target, fast, exact = setup
    f = evaluate(fast, target, (name,))[:, 0]
    e = np.array([evaluate(features_from_render(r, analysis.grid, analysis.roles), target, (name,))[0, 0] for r in exact])
    rho = spearmanr(f, e).statistic
    assert rho >= 0.8, f"{name}: Spearman {rho:.2f}; fast {np.round(f, 2)} exact {np.round(e, 2)}"
