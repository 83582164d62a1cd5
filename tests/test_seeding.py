"""The smart first generation: each seed decodes to the mix it names."""
from types import SimpleNamespace

import numpy as np
import pytest

from evomix.core.meter import integrated_loudness
from evomix.engine.analysis import STEM_REFERENCE_LUFS
from evomix.engine.dsp.pan import pan_gains
from evomix.io.audio import ROLES
from evomix.search.genome import GeneTable
from evomix.search.seeding import (
    ROLE_HIGHPASS_HZ,
    SEED_NAMES,
    SUPPORT_LEVEL_DB,
    seed_genomes,
    smart_initial_population,
)


@pytest.fixture(scope="module")
def setup(stem_session, stem_analysis):
    session, analysis = stem_session, stem_analysis
    table = GeneTable(session.n_stems)
    return session, analysis, table, seed_genomes(table, analysis)


def _decode(table, analysis, genome):
    return table.decode(genome[None], analysis.trim_db)


def test_every_seed_is_a_valid_genome(setup):
    _, _, table, seeds = setup
    assert tuple(seeds) == SEED_NAMES[1:]  # no genre_balance without the genre's role ranges
    for g in seeds.values():
        assert g.shape == (table.n_genes,) and ((g >= 0) & (g <= 1)).all()
    assert len({g.tobytes() for g in seeds.values()}) == len(seeds)  # all different


def test_unity_mix_leaves_every_stem_as_recorded(setup):
    _, analysis, table, seeds = setup
    p = _decode(table, analysis, seeds["unity"])
    np.testing.assert_allclose(p.trim_db + p.gain_db, 0.0, atol=1e-9)
    np.testing.assert_allclose(p.pan, 0.0, atol=1e-12)
    np.testing.assert_allclose(p.comp_ratio, 1.0)


def test_loudness_matched_stems_measure_equal_loudness(setup):
    session, analysis, table, seeds = setup
    p = _decode(table, analysis, seeds["loudness_matched"])
    lufs = []
    for s in range(session.n_stems):
        pan = pan_gains(np.zeros(1), np.array([session.is_mono[s]]))[0]  # (2,) the centre of the pan law
        x = session.stem(s).astype(np.float64) * pan[:, None] * 10 ** ((p.trim_db[0, s] + p.gain_db[0, s]) / 20)
        lufs.append(integrated_loudness(x, session.sr))  # BS.1770, measured on the gained, panned audio
    lufs = np.asarray(lufs)
    assert np.ptp(lufs) < 0.5, lufs
    assert abs(lufs.mean() - STEM_REFERENCE_LUFS) < 1.5, lufs


def test_role_templates(setup):
    session, analysis, table, seeds = setup
    roles = session.roles
    lf = _decode(table, analysis, seeds["lead_forward"])
    lm = _decode(table, analysis, seeds["loudness_matched"])
    for s, r in enumerate(roles):
        diff = lf.gain_db[0, s] - lm.gain_db[0, s]
        assert diff == pytest.approx(4.0 if r == "vocal" else -1.0, abs=1e-6), (r, diff)
    c = _decode(table, analysis, seeds["centred_low"])
    for s, r in enumerate(roles):
        if r in ("kick", "bass", "drums", "vocal"):
            assert c.pan[0, s] == pytest.approx(0.0, abs=1e-9)
        else:
            assert abs(c.pan[0, s]) >= 0.3
    h = _decode(table, analysis, seeds["highpass"])
    for s, r in enumerate(roles):
        assert h.highpass_hz[0, s] == pytest.approx(ROLE_HIGHPASS_HZ[r], rel=1e-9)


def test_smart_population_puts_the_seeds_first(setup, rng):
    _, analysis, table, seeds = setup
    pop = smart_initial_population(table, analysis, 16, rng)
    assert pop.shape == (16, table.n_genes) and ((pop >= 0) & (pop <= 1)).all()
    np.testing.assert_array_equal(pop[: len(seeds)], np.asarray(list(seeds.values())))
    extra = np.full(table.n_genes, 0.3)
    pop2 = smart_initial_population(table, analysis, 8, rng, extra=extra)
    np.testing.assert_array_equal(pop2[0], extra)
    assert len(pop2) == 8


def test_perturbations_keep_the_seeds_balance_and_draw_their_tone_anew(setup, rng):
    _, analysis, table, seeds = setup
    n_seeds = len(seeds)
    pop = smart_initial_population(table, analysis, 4 * n_seeds, rng, spread=0.05, random_fraction=0.25)
    pert = pop[n_seeds: 3 * n_seeds]  # two perturbations of each seed, in seed order
    base = np.asarray(list(seeds.values()))[np.arange(len(pert)) % n_seeds]
    kept = table.gene_mask(("gain_db", "pan", "highpass_hz"))
    assert kept.sum() == 3 * table.n_stems
    assert np.abs(pert[:, kept] - base[:, kept]).max() < 0.05 * 6  # the seed's balance, plus noise
    assert np.abs(pert[:, ~kept] - base[:, ~kept]).mean() > 0.2  # EQ, compression, master: uniform draws
    old = smart_initial_population(table, analysis, 4 * n_seeds, np.random.default_rng(1), spread=0.05,
                                   random_fraction=0.25, kept_genes=None)
    assert np.abs(old[n_seeds: 3 * n_seeds] - base).max() < 0.05 * 6  # every gene kept: the seed itself


# ---------------------------------------------------------------- the roles of issue 21

def _fake_analysis(roles):
    """What ``seed_genomes`` reads of an analysis: roles, each stem's LUFS and trim."""
    n = len(roles)
    return SimpleNamespace(roles=tuple(roles), stem_lufs=np.full(n, -23.0), trim_db=np.zeros(n))


KIT_AND_VOCALS = ("vocal", "backing_vocal", "kick", "snare", "toms", "hihat", "overheads", "room", "percussion",
                  "bass", "keys")


def test_role_templates_put_backing_vocals_under_the_lead_and_kick_and_snare_in_front_of_the_kit():
    analysis = _fake_analysis(KIT_AND_VOCALS)
    table = GeneTable(len(KIT_AND_VOCALS))
    seeds = seed_genomes(table, analysis)
    lf = _decode(table, analysis, seeds["lead_forward"]).gain_db[0]
    lm = _decode(table, analysis, seeds["loudness_matched"]).gain_db[0]
    rel = dict(zip(KIT_AND_VOCALS, lf - lm))
    assert rel["vocal"] == pytest.approx(4.0, abs=1e-6)
    for r in ("kick", "snare", "bass", "keys"):
        assert rel[r] == pytest.approx(-1.0, abs=1e-6), r
    for r, d in SUPPORT_LEVEL_DB.items():
        assert rel[r] == pytest.approx(-1.0 + d, abs=1e-6), r
        assert rel[r] < rel["kick"], r  # every supporting part under the bed
    assert rel["vocal"] - rel["backing_vocal"] == pytest.approx(8.0, abs=1e-6)
    pans = dict(zip(KIT_AND_VOCALS, _decode(table, analysis, seeds["centred_low"]).pan[0]))
    for r in ("vocal", "kick", "snare", "bass", "overheads", "room"):
        assert pans[r] == pytest.approx(0.0, abs=1e-9), r
    for r in ("backing_vocal", "toms", "hihat", "percussion", "keys"):
        assert abs(pans[r]) >= 0.3, r
    hp = dict(zip(KIT_AND_VOCALS, _decode(table, analysis, seeds["highpass"]).highpass_hz[0]))
    assert hp["backing_vocal"] > hp["vocal"] and hp["hihat"] > hp["snare"] > hp["kick"]


def test_role_templates_without_a_lead_move_only_the_supporting_parts():
    roles = ("kick", "bass", "backing_vocal", "room", "keys")
    analysis = _fake_analysis(roles)
    table = GeneTable(len(roles))
    seeds = seed_genomes(table, analysis)
    diff = (_decode(table, analysis, seeds["lead_forward"]).gain_db
            - _decode(table, analysis, seeds["loudness_matched"]).gain_db)[0]
    np.testing.assert_allclose(diff, [0.0, 0.0, -3.0, -7.0, 0.0], atol=1e-6)


def test_every_role_has_a_highpass_corner():
    assert set(ROLE_HIGHPASS_HZ) == set(ROLES)


def test_the_genre_balance_seed_starts_inside_the_genre_s_role_ranges(stem_session, stem_analysis):
    """With the pop profile's role ranges the first seed aims every role at the middle of its range re
    the lead and lands inside it (fast-tier gated levels; the template's pans and high-passes move
    them a little), so no role is an error (infeasible) from generation 0."""
    from evomix.engine.batch import render_features
    from objectives import Target, load_profile
    from objectives.balance import gated_levels_db, role_errors_db

    table, analysis = GeneTable(stem_session.n_stems), stem_analysis
    pop = Target(load_profile("pop"), -14.0, -1.0)
    ranges = pop.profile.role_levels_db
    seeds = seed_genomes(table, analysis, ranges)
    assert tuple(seeds) == SEED_NAMES
    G = np.stack([seeds["genre_balance"], seeds["loudness_matched"]])
    f = render_features(analysis, table.decode(G, analysis.trim_db), target_lufs=-14.0, ceiling_dbtp=-1.0)
    errors = role_errors_db(f, pop)
    assert errors[0] == 0.0 and errors[0] <= errors[1], errors
    g = gated_levels_db(f)[0]
    roles = analysis.roles
    lead = roles.index("vocal")
    for s, r in enumerate(roles):
        if r != "vocal" and r in ranges:
            lo, hi = ranges[r]
            assert lo <= g[s] - g[lead] <= hi, (r, g[s] - g[lead], (lo, hi))  # aimed at the middle: inside
