"""Property tests for the four objectives (masking, balance, genre, loudness) and their contract.

Every scenario is a small session of synthetic stems (3.1 s at 44.1 kHz: the exact tier's loudness
range needs one 3 s short-term window). Mixes are built by editing genomes (``Gene.encode`` at index
``s * len(STEM_GENES) + j``) and rendered with the FAST tier (``engine.batch.render_features``, the
whole population at once) and, where cheap, with the EXACT tier (``render_exact`` +
``features_from_render``), so each property is checked on both tiers. Exact renders are cached per
module; noise comes from generators seeded 440 (as the ``rng`` fixture).
"""
from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

import objectives
from evomix.engine.analysis import analyze_session
from evomix.engine.batch import render_features
from evomix.engine.render import features_from_render, render_exact
from evomix.errors import EvomixError, ParameterError
from evomix.io.audio import Session
from evomix.search.genome import STEM_GENES, GeneTable
from objectives import balance as bal
from objectives import genre as gen
from objectives.masking import masking_by_band, masking_matrix, masking_per_stem
from tests.support import SR, song_stems

DUR_S = 3.1
N = int(DUR_S * SR)
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
TIERS = ("fast", "exact")
GENE_INDEX = {g.name: j for j, g in enumerate(STEM_GENES)}
SHARED_BAND_HZ = (500.0, 2000.0)


@pytest.fixture(scope="module")
def target():
    return objectives.Target(profile=objectives.load_profile("pop"), target_lufs=TARGET_LUFS,
                             ceiling_dbtp=CEILING_DBTP)


# --------------------------------------------------------------------------------------------
# helpers: signals, sessions, genomes, a scene rendered on both tiers
# --------------------------------------------------------------------------------------------

def band_noise(rng, lo_hz, hi_hz, n=N, rms=0.1):
    """White noise band-limited to [lo_hz, hi_hz] (brick-wall in the FFT domain), (n,)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    spec[(f < lo_hz) | (f > hi_hz)] = 0.0
    x = np.fft.irfft(spec, n)
    return rms * x / x.std()


def make_session(stems):
    """``stems``: list of (name, role, x) with x (samples,) mono or (2, samples) stereo."""
    names, roles, audio, mono = [], [], [], []
    for name, role, x in stems:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        mono.append(x.shape[0] == 1)
        audio.append(np.broadcast_to(x, (2, x.shape[-1])))
        names.append(name)
        roles.append(role)
    return Session(sr=SR, names=tuple(names), roles=tuple(roles), audio=np.stack(audio).astype(np.float32),
                   is_mono=np.array(mono), paths=tuple(Path(f"{n}.wav") for n in names))


def genome(table: GeneTable, edits: dict) -> np.ndarray:
    """The neutral genome with ``{(stem, gene_name): value_in_real_units}`` applied."""
    g = table.neutral().copy()
    k = len(table.stem_genes)
    for (s, name), value in edits.items():
        gene = table.stem_genes[GENE_INDEX[name]]
        assert min(gene.low, gene.high) <= value <= max(gene.low, gene.high), f"{name}={value} outside the gene range"
        g[s * k + GENE_INDEX[name]] = gene.encode(value)
    return g


def take(features, i: int):
    """Candidate ``i`` of a fast-tier Features as a population of one."""
    per_pop = ("stem_power", "stem_spread", "mix_power", "mix_cross", "loudness_lufs", "raw_loudness_lufs",
               "lra_lu", "true_peak_dbtp", "limiter_gr_db", "stem_block_k", "mix_block_k")
    return dataclasses.replace(features, **{k: getattr(features, k)[i : i + 1] for k in per_pop})


class Scene:
    """A session plus named mixes (genome edits), rendered once on the fast tier, lazily on the exact one."""

    def __init__(self, session: Session, variants: dict, overrides: dict | None = None):
        self.session = session
        self.analysis = analyze_session(session)
        self.table = GeneTable(session.n_stems)
        self.names = list(variants)
        params = self.table.decode(np.stack([genome(self.table, variants[v]) for v in self.names]),
                                   self.analysis.trim_db)
        for (v, field), (s, value) in (overrides or {}).items():  # values beyond a gene's range
            arr = getattr(params, field).copy()
            arr[self.names.index(v), s] = value
            params = dataclasses.replace(params, **{field: arr})
        self.params = params
        self.fast_all = render_features(self.analysis, params, target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP)
        self._exact = {}

    def features(self, variant: str, tier: str):
        i = self.names.index(variant)
        if tier == "fast":
            return take(self.fast_all, i)
        if variant not in self._exact:
            r = render_exact(self.session.audio, self.session.is_mono, SR, self.params, target_lufs=TARGET_LUFS,
                             ceiling_dbtp=CEILING_DBTP, index=i)
            self._exact[variant] = features_from_render(r, self.analysis.grid, self.analysis.roles)
        return self._exact[variant]

    def stem(self, name: str) -> int:
        return self.session.names.index(name)


# --------------------------------------------------------------------------------------------
# masking scene: a vocal and keys sharing 500 Hz-2 kHz (the keys 20 dB louder), and a 60 Hz bass
# --------------------------------------------------------------------------------------------

VOX, KEYS, BASS = 0, 1, 2
MASK_BASE = {(VOX, "gain_db"): -14.0, (KEYS, "gain_db"): 6.0, (BASS, "gain_db"): 0.0}


def _shift(edits, db):
    return {k: v + db for k, v in edits.items()}


MASK_VARIANTS = {
    "base": MASK_BASE,
    "carved": {**MASK_BASE, (KEYS, "peak_hz"): 1000.0, (KEYS, "peak_db"): -12.0, (KEYS, "peak_q"): 1.0},
    "panned_apart": {**MASK_BASE, (VOX, "pan"): -1.0, (KEYS, "pan"): 1.0},
    "masker_boosted": {**MASK_BASE, (KEYS, "gain_db"): 12.0},
    "all_+6dB": _shift(MASK_BASE, 6.0),
    "all_-10dB": _shift(MASK_BASE, -10.0),
}


@pytest.fixture(scope="module")
def mask_scene():
    rng = np.random.default_rng(440)
    t = np.arange(N) / SR
    session = make_session([
        ("vox", "vocal", band_noise(rng, *SHARED_BAND_HZ)),
        ("keys", "keys", band_noise(rng, *SHARED_BAND_HZ)),
        ("bass", "bass", 0.3 * np.sin(2 * np.pi * 60.0 * t)),
    ])
    return Scene(session, MASK_VARIANTS)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("shift", ["all_+6dB", "all_-10dB"])
def test_masking_invariant_to_overall_gain(mask_scene, target, tier, shift):
    f0, f1 = mask_scene.features("base", tier), mask_scene.features(shift, tier)
    before, after = objectives.REGISTRY["masking"](f0, target)[0], objectives.REGISTRY["masking"](f1, target)[0]
    assert before > 1.0, f"scenario should mask the vocal: masking {before:.3f} dB"
    assert after == pytest.approx(before, rel=1e-6), f"[{tier}] masking {before:.9f} -> {after:.9f} dB ({shift})"
    ps0, ps1 = masking_per_stem(f0)[0], masking_per_stem(f1)[0]
    np.testing.assert_allclose(ps1, ps0, rtol=1e-6, atol=1e-9,
                               err_msg=f"[{tier}] per-stem masking {ps0} -> {ps1} dB ({shift})")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("c", [1e-3, 4.0, 1e3])
def test_masking_per_stem_invariant_to_scaling_features(mask_scene, target, tier, c):
    f = mask_scene.features("base", tier)
    g = dataclasses.replace(f, stem_power=f.stem_power * c, stem_spread=f.stem_spread * c, mix_power=f.mix_power * c)
    before, after = masking_per_stem(f)[0], masking_per_stem(g)[0]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-9,
                               err_msg=f"[{tier}] per-stem masking {before} -> {after} dB with powers x{c:g}")
    m0, m1 = objectives.REGISTRY["masking"](f, target)[0], objectives.REGISTRY["masking"](g, target)[0]
    assert m1 == pytest.approx(m0, rel=1e-6), f"[{tier}] masking {m0:.9f} -> {m1:.9f} dB with powers x{c:g}"


def _maskee_and_scalar(scene, target, variant, tier):
    f = scene.features(variant, tier)
    return masking_per_stem(f)[0, VOX], objectives.REGISTRY["masking"](f, target)[0]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("variant, change_db, edit", [
    ("carved", -1.0, "after -12 dB @ 1 kHz on the keys"),
    ("panned_apart", -1.0, "with vocal/keys panned -1/+1"),
    ("masker_boosted", +3.0, "with the keys' fader +6 dB"),
], ids=["carved", "panned_apart", "masker_boosted"])
def test_vocal_masking_follows_the_edit(mask_scene, target, tier, variant, change_db, edit):
    """Carving the shared band out of the keys or panning the two apart lowers the vocal's masking
    by more than 1 dB; a louder masker raises it by more than 3 dB; the scalar objective follows."""
    v0, m0 = _maskee_and_scalar(mask_scene, target, "base", tier)
    v1, m1 = _maskee_and_scalar(mask_scene, target, variant, tier)
    msg = f"[{tier}] vocal masking {v0:.3f} -> {v1:.3f} dB, masking {m0:.3f} -> {m1:.3f} dB {edit}"
    direction = np.sign(change_db)
    assert direction * (v1 - v0) > abs(change_db), msg
    assert direction * (m1 - m0) > 0.0, msg


@pytest.mark.parametrize("tier", TIERS)
def test_masking_matrix_names_the_band_sharing_stem(mask_scene, tier):
    if tier == "fast":
        f = mask_scene.fast_all
    else:
        f = mask_scene.features("base", tier)
    mm = masking_matrix(f)
    n = mask_scene.session.n_stems
    assert mm.shape == (f.n_pop, n, n)
    assert np.all(mm[:, np.arange(n), np.arange(n)] == 0.0), "diagonal must be zero"
    assert np.all(mm >= 0.0)
    by_keys, by_bass = mm[0, VOX, KEYS], mm[0, VOX, BASS]
    assert by_keys > 10.0 * by_bass, f"[{tier}] vocal masked by keys {by_keys:.4f} dB vs by bass {by_bass:.4f} dB"
    # documented: each row splits the maskee's masking across its maskers
    np.testing.assert_allclose(mm.sum(axis=2), masking_per_stem(f), rtol=1e-3, atol=1e-4,
                               err_msg=f"[{tier}] rows of masking_matrix must sum to masking_per_stem")


@pytest.mark.parametrize("tier", TIERS)
def test_masking_by_band_peaks_in_shared_band(mask_scene, tier):
    f = mask_scene.features("base", tier)
    prof = masking_by_band(f)[0]
    # bands that overlap the shared region (a critical band straddling 500 Hz holds part of it)
    shared = (f.band_edges_hz[1:] > SHARED_BAND_HZ[0]) & (f.band_edges_hz[:-1] < SHARED_BAND_HZ[1])
    peak_hz = f.bands_hz[np.argmax(prof)]
    assert shared[np.argmax(prof)], (
        f"[{tier}] masking_by_band peaks at {peak_hz:.0f} Hz ({prof.max():.2f} dB); max inside "
        f"500 Hz-2 kHz is {prof[shared].max():.3f} dB; vocal per-stem masking {masking_per_stem(f)[0, VOX]:.2f} dB")


# --------------------------------------------------------------------------------------------
# balance: the small synthetic song (drums, bass, keys, vocal)
# --------------------------------------------------------------------------------------------

DEFICITS_DB = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)


def _song(bass=None):
    st = song_stems(duration_s=DUR_S)
    if bass is not None:
        st["bass"] = bass
    return [(k, k, v) for k, v in st.items()]  # the names are the roles


@pytest.fixture(scope="module")
def song_scene():
    probe = make_session(_song())
    vocal, bass = probe.names.index("vocal"), probe.names.index("bass")
    variants = {f"vocal_-{d:g}dB": {} for d in DEFICITS_DB}
    overrides = {}
    for d in DEFICITS_DB:
        if d <= 24.0:  # within the fader gene's range (-24..+12 dB)
            variants[f"vocal_-{d:g}dB"] = {(vocal, "gain_db"): -d}
        else:  # -25 dB is beyond the gene's range: set it on the decoded Params
            overrides[(f"vocal_-{d:g}dB", "gain_db")] = (vocal, -d)
    variants["bass_centre"] = {}
    variants["bass_hard_left"] = {(bass, "pan"): -1.0}
    return Scene(probe, variants, overrides)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("deficit", [15.0, 25.0])
def test_balance_buried_vocal_scores_worse(song_scene, target, tier, deficit):
    b0 = objectives.REGISTRY["balance"](song_scene.features("vocal_-0dB", tier), target)[0]
    b1 = objectives.REGISTRY["balance"](song_scene.features(f"vocal_-{deficit:g}dB", tier), target)[0]
    assert b1 > b0 + 5.0, f"[{tier}] balance {b0:.3f} (neutral) -> {b1:.3f} with the vocal fader -{deficit:g} dB"


def test_balance_subterms_rise_with_vocal_deficit_fast(song_scene, target):
    f = song_scene.fast_all
    idx = [song_scene.names.index(f"vocal_-{d:g}dB") for d in DEFICITS_DB]
    aud = bal.audibility_penalty(f)[idx]
    lead = bal.lead_penalty(f, target.profile.vocal_margin_db)[idx]
    total = objectives.REGISTRY["balance"](f, target)[idx]
    msg = (f"deficits {DEFICITS_DB} dB: audibility {np.round(aud, 3)}, lead {np.round(lead, 3)}, "
           f"balance {np.round(total, 3)}")
    assert np.all(np.diff(aud) >= -1e-9), msg
    assert aud[-1] > aud[0] + 1.0, msg  # -25 dB is beyond the -20 dB audibility floor
    assert np.all(np.diff(lead) > 1.0), msg
    assert np.all(np.diff(total) > 0.0), msg


def test_balance_subterms_rise_with_vocal_deficit_exact(song_scene, target):
    fs = [song_scene.features(f"vocal_-{d:g}dB", "exact") for d in (0.0, 15.0, 25.0)]
    aud = np.array([bal.audibility_penalty(f)[0] for f in fs])
    lead = np.array([bal.lead_penalty(f, target.profile.vocal_margin_db)[0] for f in fs])
    msg = f"deficits (0, 15, 25) dB: audibility {np.round(aud, 3)}, lead {np.round(lead, 3)}"
    assert np.all(np.diff(aud) >= -1e-9) and aud[-1] > aud[0] + 1.0, msg
    assert np.all(np.diff(lead) > 5.0), msg


@pytest.mark.parametrize("tier", TIERS)
def test_spatial_penalty_bass_hard_left(song_scene, tier):
    s0 = bal.spatial_penalty(song_scene.features("bass_centre", tier))[0]
    s1 = bal.spatial_penalty(song_scene.features("bass_hard_left", tier))[0]
    assert s1 > s0 + 5.0, f"[{tier}] spatial penalty {s0:.3f} (bass centred) -> {s1:.3f} (bass hard left)"


@pytest.fixture(scope="module")
def low_end_scenes():
    """The song with a stereo bass whose content below 120 Hz is in phase (L = R) or out of phase (L = -R)."""
    bass = song_stems(duration_s=DUR_S)["bass"][0].astype(float)
    low = scipy.signal.sosfiltfilt(scipy.signal.butter(4, 120.0, fs=SR, output="sos"), bass)
    high = bass - low
    in_phase = np.stack([bass, bass])
    out_of_phase = np.stack([low + high, -low + high])
    return {k: Scene(make_session(_song(b.astype(np.float32))), {"neutral": {}})
            for k, b in (("in_phase", in_phase), ("out_of_phase", out_of_phase))}


@pytest.mark.parametrize("tier", TIERS)
def test_spatial_penalty_low_end_out_of_phase(low_end_scenes, tier):
    s0 = bal.spatial_penalty(low_end_scenes["in_phase"].features("neutral", tier))[0]
    s1 = bal.spatial_penalty(low_end_scenes["out_of_phase"].features("neutral", tier))[0]
    assert s1 > s0 + 1.0, f"[{tier}] spatial penalty {s0:.3f} (low end L = R) -> {s1:.3f} (L = -R below 120 Hz)"


# --------------------------------------------------------------------------------------------
# balance: a backing vocal sits under the lead (issue 21)
# --------------------------------------------------------------------------------------------

BV_OFFSETS_DB = (-12.0, -6.0, 0.0, 6.0)  # the backing vocal's fader, the lead's at 0


def backing_vocal(n=N):
    """A vocal-like harmony a fifth over the song's vocal (330 Hz, 8 harmonics at 1/h) that sings only
    in the second half (the "chorus"), mono (n,): measured where it sings, it is as loud as its
    integrated loudness says, not 3 dB quieter."""
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * 330.0 * h * t) / h for h in range(1, 9))
    gate = (t >= t[-1] / 2).astype(float)
    ramp = int(0.01 * SR)
    gate[n // 2 : n // 2 + ramp] = np.linspace(0.0, 1.0, ramp)
    gate[-ramp:] = np.linspace(1.0, 0.0, ramp)
    return 0.1 * x * gate


@pytest.fixture(scope="module")
def backing_scene():
    probe = make_session([*_song(), ("bvox", "backing_vocal", backing_vocal())])
    bv = probe.names.index("bvox")
    return Scene(probe, {f"bv_{d:+g}dB": {(bv, "gain_db"): d} for d in BV_OFFSETS_DB})


def test_backing_penalty_zero_without_a_backing_vocal(song_scene):
    assert "backing_vocal" not in song_scene.session.roles
    np.testing.assert_array_equal(bal.backing_penalty(song_scene.fast_all), 0.0)
    assert bal.backing_penalty(song_scene.features("vocal_-0dB", "exact"))[0] == 0.0


@pytest.mark.parametrize("tier", TIERS)
def test_backing_vocal_louder_than_the_lead_is_penalised(backing_scene, target, tier):
    f_over, f_under = backing_scene.features("bv_+6dB", tier), backing_scene.features("bv_-12dB", tier)
    lead, bv = backing_scene.stem("vocal"), backing_scene.stem("bvox")
    over = bal.gated_levels_db(f_over, [bv, lead])[0]
    under = bal.gated_levels_db(f_under, [bv, lead])[0]
    assert over[0] > over[1] and under[0] < under[1] - bal.BACKING_MARGIN_DB, (over, under)
    p_over, p_under = bal.backing_penalty(f_over)[0], bal.backing_penalty(f_under)[0]
    msg = f"[{tier}] backing vocal re lead {over[0] - over[1]:+.1f} dB: {p_over:.2f}; {under[0] - under[1]:+.1f} dB: "
    assert p_over == pytest.approx(over[0] - over[1] + bal.BACKING_MARGIN_DB, abs=1e-9), msg
    assert p_over > 5.0 and p_under == 0.0, msg + f"{p_under:.2f}"
    b_over = objectives.REGISTRY["balance"](f_over, target)[0]
    b_under = objectives.REGISTRY["balance"](f_under, target)[0]
    assert b_over > b_under + 5.0, f"[{tier}] balance {b_under:.2f} (under the lead) -> {b_over:.2f} (over it)"


def test_backing_penalty_grows_db_for_db_past_the_margin(backing_scene):
    f = backing_scene.fast_all
    idx = [backing_scene.names.index(f"bv_{d:+g}dB") for d in BV_OFFSETS_DB]
    p = bal.backing_penalty(f)[idx]
    g = bal.gated_levels_db(f, [backing_scene.stem("bvox"), backing_scene.stem("vocal")])[idx]
    expected = np.maximum(g[:, 0] - g[:, 1] + bal.BACKING_MARGIN_DB, 0.0)
    msg = f"fader {BV_OFFSETS_DB} dB: re lead {np.round(g[:, 0] - g[:, 1], 2)} dB, penalty {np.round(p, 2)}"
    np.testing.assert_allclose(p, expected, atol=1e-9, err_msg=msg)
    assert np.all(np.diff(p) >= 0.0) and p[0] == 0.0 and p[-1] - p[-2] == pytest.approx(6.0, abs=1.0), msg


def test_backing_vocal_measured_where_it_sings(backing_scene):
    """Half the song silent, the backing vocal's ungated level reads ~3 dB under its gated one."""
    f = take(backing_scene.fast_all, backing_scene.names.index("bv_+0dB"))
    bv = backing_scene.stem("bvox")
    gated = bal.gated_levels_db(f, [bv])[0, 0]
    ungated = bal.relative_levels_db(f)[0, bv]
    assert gated - ungated == pytest.approx(3.0, abs=0.5), (gated, ungated)


def test_a_backing_vocal_is_never_the_lead(backing_scene):
    f = take(backing_scene.fast_all, backing_scene.names.index("bv_+6dB"))
    assert bal.lead_role(f.roles) == "vocal"
    assert bal.lead_penalty(f, 0.0)[0] > 0.0  # the backing vocal is the loudest "other" stem
    roles = tuple("keys" if r == "vocal" else r for r in f.roles)  # no lead vocal left
    no_lead = dataclasses.replace(f, roles=roles)
    assert bal.lead_role(roles) is None
    assert bal.lead_penalty(no_lead, 3.0)[0] == 0.0 and bal.backing_penalty(no_lead)[0] == 0.0
    with_lead = dataclasses.replace(f, roles=tuple("lead" if r == "vocal" else r for r in f.roles))
    assert bal.lead_role(with_lead.roles) == "lead"
    assert bal.backing_penalty(with_lead)[0] == pytest.approx(bal.backing_penalty(f)[0])
    power, blocks = f.stem_power.copy(), f.stem_block_k.copy()
    power[:, backing_scene.stem("vocal")] = 0.0  # a silent lead: nothing to sit under, no 200 dB penalty
    blocks[:, backing_scene.stem("vocal")] = 0.0
    assert bal.backing_penalty(dataclasses.replace(f, stem_power=power, stem_block_k=blocks))[0] == 0.0


# --------------------------------------------------------------------------------------------
# genre: noise shaped to a profile's 1/3-octave levels, with the profile's width per region
# --------------------------------------------------------------------------------------------

def shaped_noise(rng, profile, width):
    """Stereo noise whose 1/3-octave levels follow ``profile`` (None: white) and whose side fraction
    in each width region is ``width[region]`` (L = M + S, R = M - S)."""
    f = np.fft.rfftfreq(N, 1.0 / SR)
    fc = np.clip(f, 20.0, 20000.0)
    if profile is None:  # white: flat density (+3 dB/octave in 1/3-octave band levels)
        mag = np.ones_like(fc)
    else:  # a 1/3-octave band at f is 0.23 f wide: density = band level / f
        level_db = np.interp(np.log(fc), np.log(profile.third_octave_hz), profile.ltas_db)
        mag = np.sqrt(10.0 ** (level_db / 10.0) / fc)
    mag[(f < 20.0) | (f > 20000.0)] = 0.0
    w = np.zeros_like(f)
    for region, (lo, hi) in gen.WIDTH_REGIONS_HZ.items():
        w[(f >= lo) & (f < hi)] = width[region]
    mid = np.fft.irfft(np.fft.rfft(rng.standard_normal(N)) * mag * np.sqrt(1.0 - w), N)
    side = np.fft.irfft(np.fft.rfft(rng.standard_normal(N)) * mag * np.sqrt(w), N)
    x = np.stack([mid + side, mid - side])
    return 0.1 * x / x.std()


@pytest.fixture(scope="module")
def genre_scenes():
    rng = np.random.default_rng(440)
    pop, classical = objectives.load_profile("pop"), objectives.load_profile("classical")
    signals = {"pop": shaped_noise(rng, pop, pop.width), "classical": shaped_noise(rng, classical, classical.width),
               "white": shaped_noise(rng, None, pop.width)}
    return {k: Scene(make_session([("mix", "other", x)]), {"neutral": {}}) for k, x in signals.items()}


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("own, other", [("pop", "classical"), ("classical", "pop")])
def test_genre_profile_shaped_mix_is_near_its_profile(genre_scenes, tier, own, other):
    f = genre_scenes[own].features("neutral", tier)
    d_own = gen.spectral_distance_db(f, objectives.load_profile(own))[0]
    d_other = gen.spectral_distance_db(f, objectives.load_profile(other))[0]
    assert d_own < 2.0, f"[{tier}] {own}-shaped noise: distance to {own} {d_own:.3f} dB"
    assert d_own < d_other, (f"[{tier}] {own}-shaped noise: distance to {own} {d_own:.3f} dB, "
                             f"to {other} {d_other:.3f} dB")


@pytest.mark.parametrize("tier", TIERS)
def test_genre_matching_mix_beats_white_noise(genre_scenes, target, tier):
    g_match = objectives.REGISTRY["genre"](genre_scenes["pop"].features("neutral", tier), target)[0]
    g_white = objectives.REGISTRY["genre"](genre_scenes["white"].features("neutral", tier), target)[0]
    assert g_match < g_white - 3.0, f"[{tier}] genre vs pop: pop-shaped {g_match:.3f} dB, white noise {g_white:.3f} dB"


# --------------------------------------------------------------------------------------------
# loudness: exact arithmetic on Features edited with dataclasses.replace
# --------------------------------------------------------------------------------------------

def _at_profile(features, target, *, d_lufs=0.0, d_plr=0.0, d_lra=0.0, gr=0.0):
    prof, n = target.profile, features.n_pop
    lufs = target.target_lufs + d_lufs
    return dataclasses.replace(
        features,
        loudness_lufs=np.full(n, lufs),
        true_peak_dbtp=np.full(n, lufs + prof.plr_db + d_plr),
        lra_lu=np.full(n, prof.lra_lu + d_lra),
        limiter_gr_db=np.full(n, gr),
    )


def test_loudness_zero_at_target_and_profile(mask_scene, target):
    out = objectives.REGISTRY["loudness"](_at_profile(mask_scene.fast_all, target), target)
    np.testing.assert_allclose(out, 0.0, atol=1e-12, err_msg=f"loudness at target and profile: {out}")


@pytest.mark.parametrize("d_lufs", [-6.0, -1.0, -0.25, 0.5, 3.0])
def test_loudness_grows_by_level_error(mask_scene, target, d_lufs):
    out = objectives.REGISTRY["loudness"](_at_profile(mask_scene.fast_all, target, d_lufs=d_lufs), target)
    np.testing.assert_allclose(out, abs(d_lufs), atol=1e-9, err_msg=f"loudness off by {d_lufs} LU -> {out}")


@pytest.mark.parametrize("d_plr", [-1.0, 1.4, -3.0, 4.5, 8.0])
def test_loudness_plr_term(mask_scene, target, d_plr):
    out = objectives.REGISTRY["loudness"](_at_profile(mask_scene.fast_all, target, d_plr=d_plr), target)
    expected = 0.5 * max(abs(d_plr) - 1.5, 0.0)
    np.testing.assert_allclose(out, expected, atol=1e-9, err_msg=f"PLR off by {d_plr} dB -> {out}, expected {expected}")


@pytest.mark.parametrize("d_lra, gr, expected", [(1.5, 0.0, 0.0), (-5.0, 0.0, 0.75), (6.0, 1.5, 1.0),
                                                  (0.0, 2.0, 0.0), (0.0, 5.0, 1.5)])
def test_loudness_lra_and_limiting_terms(mask_scene, target, d_lra, gr, expected):
    out = objectives.REGISTRY["loudness"](_at_profile(mask_scene.fast_all, target, d_lra=d_lra, gr=gr), target)
    np.testing.assert_allclose(out, expected, atol=1e-9, err_msg=f"LRA off by {d_lra} LU, GR {gr} dB -> {out}")


@pytest.mark.parametrize("d_lufs, d_plr", [(2.0, 3.0), (-1.0, -6.0)])
def test_loudness_terms_add(mask_scene, target, d_lufs, d_plr):
    out = objectives.REGISTRY["loudness"](_at_profile(mask_scene.fast_all, target, d_lufs=d_lufs, d_plr=d_plr), target)
    expected = abs(d_lufs) + 0.5 * max(abs(d_plr) - 1.5, 0.0)
    np.testing.assert_allclose(out, expected, atol=1e-9,
                               err_msg=f"dL {d_lufs}, dPLR {d_plr} -> {out}, expected {expected}")


# --------------------------------------------------------------------------------------------
# the registry contract
# --------------------------------------------------------------------------------------------

@pytest.fixture
def temp_objective():
    """Register a throw-away objective under a unique name; always removed afterwards."""
    names = []

    def add(func):
        name = f"_test_{uuid.uuid4().hex}"
        objectives.register(name, unit="x", description="temporary test objective")(func)
        names.append(name)
        return objectives.REGISTRY[name]

    yield add
    for name in names:
        objectives.REGISTRY.pop(name, None)
    assert not any(n.startswith("_test_") for n in objectives.REGISTRY)


@pytest.mark.parametrize("bad", [
    lambda n: np.zeros(n + 1),
    lambda n: np.zeros((n, 1)),
    lambda n: np.zeros(()),  # a scalar for a population of 6
    lambda n: np.zeros(0),
], ids=["too_long", "2d", "scalar", "empty"])
def test_registry_rejects_wrong_shape(mask_scene, target, temp_objective, bad):
    f = mask_scene.fast_all
    assert f.n_pop > 1
    obj = temp_objective(lambda features, tgt: bad(features.n_pop))
    with pytest.raises(EvomixError, match="expected shape"):
        obj(f, target)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_registry_rejects_non_finite(mask_scene, target, temp_objective, value):
    def func(features, tgt):
        out = np.ones(features.n_pop)
        out[-1] = value
        return out

    obj = temp_objective(func)
    with pytest.raises(EvomixError, match="non-finite"):
        obj(mask_scene.fast_all, target)


def test_registered_objectives_return_one_finite_score_per_candidate(mask_scene, target):
    f = mask_scene.fast_all
    F = objectives.evaluate(f, target, objectives.OBJECTIVE_NAMES)
    assert F.shape == (f.n_pop, len(objectives.OBJECTIVE_NAMES))
    assert np.all(np.isfinite(F))
    assert set(objectives.OBJECTIVE_NAMES) == {"masking", "loudness", "balance", "genre"}


# --------------------------------------------------------------------------------------------
# parse_weights
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (None, {}),
    ("", {}),
    ("masking=2,genre=0.5", {"masking": 2.0, "genre": 0.5}),
    (" masking = 2 , genre=0 ,", {"masking": 2.0, "genre": 0.0}),
    ("loudness=1e-3,balance=3", {"loudness": 1e-3, "balance": 3.0}),
    ("masking=0,loudness=0,balance=0,genre=0.1", {"masking": 0.0, "loudness": 0.0, "balance": 0.0, "genre": 0.1}),
])
def test_parse_weights_valid(text, expected):
    w = objectives.parse_weights(text)
    assert w == {n: expected.get(n, 1.0) for n in objectives.OBJECTIVE_NAMES}


def test_parse_weights_with_explicit_names():
    assert objectives.parse_weights("a=3", names=("a", "b")) == {"a": 3.0, "b": 1.0}


@pytest.mark.parametrize("text", [
    "masking",  # missing '='
    "masking=2,genre",
    "mask=1",  # unknown name
    "=1",
    "masking=abc",  # not a number
    "masking=",
    "masking=-1",  # negative
    "masking=nan",
    "masking=inf",
    "masking=0,loudness=0,balance=0,genre=0",  # everything switched off
])
def test_parse_weights_malformed(text):
    with pytest.raises(ParameterError, match="^weights: ") as e:  # a Python caller reads the keyword
        objectives.parse_weights(text)
    assert str(e.value.for_cli()).startswith("--weights: ")  # the CLI prints the flag


# --------------------------------------------------------------------------------------------
# balance: the low end carries the song (issue 21)
# --------------------------------------------------------------------------------------------

LOW_OFFSETS_DB = (0.0, -6.0, -12.0, -18.0)  # kick-ish drums and bass faders together, the vocal's at 0


@pytest.fixture(scope="module")
def low_end_scene():
    probe = make_session(_song())
    drums, bass = probe.names.index("drums"), probe.names.index("bass")
    return Scene(probe, {f"low_{d:+g}dB": {(drums, "gain_db"): d, (bass, "gain_db"): d} for d in LOW_OFFSETS_DB})


def test_role_level_penalty_follows_its_formula_and_grows_as_the_low_end_sinks(low_end_scene):
    f = low_end_scene.fast_all
    idx = [low_end_scene.names.index(f"low_{d:+g}dB") for d in LOW_OFFSETS_DB]
    ranges = {"drums": (-3.0, 0.0), "bass": (-4.0, -1.0)}
    g = bal.gated_levels_db(f, [low_end_scene.stem(n) for n in ("vocal", "drums", "bass")])[idx]  # (4, 3)
    x = g[:, 1:] - g[:, :1]  # drums and bass re the vocal (one stem each: the group is the stem)
    lo, hi = np.array([[-3.0, -4.0]]), np.array([[0.0, -1.0]])
    expected = (np.maximum(lo - x, 0.0) + np.maximum(x - hi, 0.0)).sum(axis=1)
    p = bal.role_level_penalty(f, ranges)[idx]
    msg = f"faders {LOW_OFFSETS_DB} dB: role-level penalty {np.round(p, 2)}"
    np.testing.assert_allclose(p, expected, atol=1e-9, err_msg=msg)
    assert p[-1] > p[0] + 10.0 and p[-1] == p.max(), msg  # two roles, ~2 per dB once under their ranges
    np.testing.assert_array_equal(bal.role_level_penalty(f, {}), 0.0)  # a genre that sets no ranges
    # a role above its range costs too: the drums held 6..8 dB under the vocal
    over = bal.role_level_penalty(f, {"drums": (-8.0, -6.0)})[idx]
    np.testing.assert_allclose(over, np.maximum(x[:, 0] - -6.0, 0.0) + np.maximum(-8.0 - x[:, 0], 0.0), atol=1e-9)


def test_a_drums_stem_beside_a_kick_is_held_to_the_snare_range(low_end_scene):
    """A kit split into kick and "drums" (the top): the drums stem is measured against "snare", not "drums"."""
    from dataclasses import replace

    f = low_end_scene.fast_all
    with_kick = replace(f, roles=tuple("kick" if r == "bass" else r for r in f.roles))
    ranges = {"drums": (50.0, 60.0), "snare": (-40.0, 40.0), "kick": (-40.0, 40.0)}
    np.testing.assert_array_equal(bal.role_level_penalty(with_kick, ranges), 0.0)
    assert np.all(bal.role_level_penalty(f, ranges) > 40.0)  # no kick: "drums" is the kit, 50 dB is far off


def test_a_buried_low_end_costs_balance_in_pop_and_not_in_jazz(low_end_scene):
    f = low_end_scene.features("low_-18dB", "fast")
    pop = objectives.Target(profile=objectives.load_profile("pop"))
    jazz = objectives.Target(profile=objectives.load_profile("jazz"))
    assert pop.profile.role_levels_db and not jazz.profile.role_levels_db
    assert bal.role_level_penalty(f, pop.profile.role_levels_db)[0] > 10.0
    assert bal.role_level_penalty(f, jazz.profile.role_levels_db)[0] == 0.0


@pytest.mark.parametrize("genre", ["pop", "rock", "metal", "edm", "hip-hop"])
def test_every_role_range_is_ordered_and_the_low_end_sits_near_the_lead(genre):
    """The profiles' ranges keep De Man & Reiss's ordering: kick and bass within 4 dB of the lead,
    above the pads and the backing vocals."""
    r = objectives.load_profile(genre).role_levels_db
    assert all(lo <= hi for lo, hi in r.values())
    assert r["kick"][0] >= -4.0 and r["bass"][0] >= -4.0
    assert r["pad"][1] < r["bass"][0] and r["backing_vocal"][1] < r["kick"][0]


@pytest.mark.parametrize("bad, says", [({"bass": [0.0, -3.0]}, "low <= high"), ({"bass": [-3.0]}, "bad field"),
                                       ({"bass": [float("nan"), 0.0]}, "low <= high")])
def test_a_profile_with_a_bad_role_range_is_refused_naming_it(bad, says):
    from objectives.genre import GenreProfile

    d = dict(objectives.load_profile("pop").to_dict(), role_levels_db=bad)
    with pytest.raises(ParameterError, match=says):
        GenreProfile.from_dict(d, origin="mine.json")
    assert GenreProfile.from_dict(objectives.load_profile("rock").to_dict(), origin="x").role_levels_db == \
        objectives.load_profile("rock").role_levels_db  # the JSON form reads back


def test_gated_levels_read_a_kick_as_bs1770_does_not_by_its_hits():
    """A kick (short hits every 0.5 s), a pad and a vocal that sings half the time: each stem's gated
    level re the mix is its BS.1770-4 integrated loudness re the mix's (pyloudnorm, an independent
    meter) within 0.5 dB, from the 400 ms blocks of the features; gated 50 ms frame by frame (the
    features without blocks) the kick reads more than 1 dB too loud."""
    import pyloudnorm

    from evomix.engine.bands import band_grid
    from evomix.engine.render import ExactRender, features_from_render

    sr, n = SR, 8 * SR
    t = np.arange(n) / sr
    rng = np.random.default_rng(4)
    kick = np.zeros(n)
    hit = np.sin(2 * np.pi * 55.0 * t[: sr // 8]) * np.exp(-t[: sr // 8] / 0.03)
    for start in range(0, n - hit.size, sr // 2):
        kick[start : start + hit.size] += hit
    pad = 0.05 * scipy.signal.sosfilt(scipy.signal.butter(2, [300, 3000], "bandpass", fs=sr, output="sos"),
                                      rng.standard_normal(n))
    vocal = 0.2 * np.sin(2 * np.pi * 220.0 * t) * (t >= 4.0)
    stems = np.stack([np.stack([x, x]) for x in (0.8 * kick, pad, vocal)])  # (3, 2, n)
    mix = stems.sum(axis=0)
    r = ExactRender(mix=mix, stems=stems, raw_loudness_lufs=-20.0, normalise_db=0.0, limiter_gr_db=0.0)
    f = features_from_render(r, band_grid(sr), ("kick", "pad", "vocal"))
    meter = pyloudnorm.Meter(sr)
    truth = np.array([meter.integrated_loudness(x.T) for x in stems]) - meter.integrated_loudness(mix.T)
    blocks = bal.gated_levels_db(f)[0]
    frames = bal.gated_levels_db(dataclasses.replace(f, stem_block_k=None, mix_block_k=None))[0]
    np.testing.assert_allclose(blocks, truth, atol=0.5, err_msg=f"blocks {blocks}, BS.1770 {truth}")
    assert frames[0] > truth[0] + 1.0, (frames, truth)  # the kick's hits alone, read 50 ms at a time
