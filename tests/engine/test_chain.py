"""The exact tier's compiled kernels equal the numpy/scipy definitions they replace, and the
renderer built from them is reproducible and keeps its contracts."""
import numpy as np
import pytest
from scipy.signal import resample_poly

from evomix.core.meter import block_powers, k_weighting_sos, true_peak_dbtp
from evomix.engine import chain
from evomix.engine.bands import band_grid, band_powers, band_powers_chunked
from evomix.engine.dsp import (
    LEVEL_FLOOR_DB,
    compressor_gain,
    rbj_sos,
    rms_level_db,
    true_peak_envelope,
)
from evomix.engine.dsp.limiter import _limiter_gain
from evomix.engine.render import _Grid, features_from_render, render_exact
from evomix.search.genome import GeneTable

SR = 44100


def _signal(rng, n, ch=2, crest=False):
    x = rng.standard_normal((ch, n)) * 0.1
    if crest:  # sparse clicks: peaks far above the RMS, inter-sample overs
        idx = rng.integers(0, n, 40)
        x[:, idx] += rng.choice([-1.0, 1.0], (ch, 40)) * rng.uniform(0.5, 2.0, (ch, 40))
    return x


def _eq(sr=SR):
    sections = [rbj_sos("highpass", 80.0, 0.0, 0.707, sr), rbj_sos("lowshelf", 150.0, 4.0, 0.707, sr),
                rbj_sos("peak", 2500.0, -6.0, 1.5, sr), rbj_sos("highshelf", 8000.0, 3.0, 0.707, sr)]
    return np.ascontiguousarray(np.reshape(sections, (4, 6)))


@pytest.mark.parametrize("ch", [1, 2])
def test_detector_and_control_gain_are_compressor_gain(ch, rng):
    x = _signal(rng, 30000, ch) * np.linspace(0.1, 3.0, 30000)
    g = _Grid(SR, x.shape[1])
    level = chain.detector_levels_db(x, ch, g.step, g.window, g.n_steps, LEVEL_FLOOR_DB)
    np.testing.assert_allclose(level, rms_level_db(x, SR), rtol=1e-14)  # the same sum; log10 may differ by 1 ulp
    ctrl = g.control_gain(x, ch, -18.0, 4.0, 5.0, 80.0)
    y = x.copy()
    chain.apply_control_gain(y, ctrl, g.step)
    ref = x * compressor_gain(x, SR, threshold_db=-18.0, ratio=4.0, attack_ms=5.0, release_ms=80.0)[None, :]
    np.testing.assert_allclose(y, ref, rtol=1e-14, atol=0)
    assert not np.allclose(y, x)  # it did compress


@pytest.mark.parametrize("crest", [False, True])
@pytest.mark.parametrize("n", [1000, 4096, 9001])
def test_true_peak_envelope_is_the_oversampling_definition(n, crest, rng):
    x = _signal(rng, n, 2, crest)
    g = _Grid(SR, n)
    env, raw = g.envelope(x)
    np.testing.assert_allclose(env, true_peak_envelope(x), rtol=1e-12, atol=1e-15)
    up = resample_poly(x, 4, 1, axis=-1)  # BS.1770-4 Annex 2 oversampling, the meter's filter
    assert raw == pytest.approx(max(np.abs(up).max(), np.abs(x).max()), rel=1e-12)
    assert 20 * np.log10(raw) == pytest.approx(float(true_peak_dbtp(x, SR)), abs=1e-9)


@pytest.mark.parametrize("scale", [0.5, 1.0, 4.0])
def test_limiter_core_is_the_numpy_limiter(scale, rng):
    x = _signal(rng, 20000, 2, crest=True)
    env = true_peak_envelope(x)
    ceiling = 10 ** (-1 / 20)
    g = _Grid(SR, x.shape[1])
    ours = chain.limiter_core(env, scale, ceiling, g.lookahead, g.decay_per_sample)
    ref = _limiter_gain(x * scale, SR, ceiling, g.lookahead, 80.0, 4, envelope=env * scale)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-11)  # the numpy version's running sums round at 1e-12
    assert ours.min() < 0.99  # it limited


@pytest.mark.parametrize("sr", [44100, 48000])
def test_k_block_powers_is_the_meter(sr, rng):
    x = _signal(rng, 3 * sr, 2)
    gain = np.linspace(1.0, 0.3, x.shape[1])
    g = _Grid(sr, x.shape[1])
    z = chain.k_block_powers(x, gain, 1.8, k_weighting_sos(sr), g.block, g.block_hop)
    np.testing.assert_allclose(z, block_powers(1.8 * x * gain, sr), rtol=1e-10)
    z1 = chain.k_block_powers(x, np.zeros(0), 1.0, k_weighting_sos(sr), g.block, g.block_hop)
    np.testing.assert_allclose(z1, block_powers(x, sr), rtol=1e-10)


def test_band_powers_chunked_are_band_powers(rng):
    grid = band_grid(SR)
    x = _signal(rng, SR * 2 + 123, 2)
    p, c = band_powers_chunked(x, grid, cross=True)
    p_ref, c_ref = band_powers(x, grid)
    np.testing.assert_allclose(p, p_ref, rtol=2e-5, atol=1e-12)  # float32 sums in another blocking
    np.testing.assert_allclose(c, c_ref, rtol=2e-5, atol=1e-10)
    from evomix.engine.bands import _bin_weights, frame_spectra

    spec = frame_spectra(x, grid)
    total_ref = ((spec.real**2 + spec.imag**2) * _bin_weights(grid)).sum(axis=(0, 1))
    _, total = band_powers_chunked(x, grid, bin_total=True)
    np.testing.assert_allclose(total, total_ref, rtol=1e-5)  # the long-term spectrum


def test_frame_gain_power_of_a_constant_gain_is_its_square():
    grid = band_grid(SR)
    n = SR
    ctrl = np.full(-(-n // 44), 0.5)
    gp = chain.frame_gain_power(ctrl, 44, np.zeros(0), 2.0, np.hanning(grid.n_fft + 2)[1:-1] ** 2, grid.hop,
                                grid.n_frames(n), n)
    np.testing.assert_allclose(gp, 1.0, rtol=1e-12)  # (0.5 * 2)^2 in every frame, edges included


def _session(rng, n_stems=4, seconds=3.0):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    audio = np.zeros((n_stems, 2, n), np.float32)
    for s in range(n_stems):
        tone = np.sin(2 * np.pi * (110 * (s + 1)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * (s + 1) * t / seconds) ** 2)
        audio[s] = (0.2 * tone + 0.02 * rng.standard_normal((2, n))).astype(np.float32)
    is_mono = np.array([s % 2 == 1 for s in range(n_stems)])
    audio[is_mono, 1] = audio[is_mono, 0]
    return audio, is_mono


def test_render_is_bitwise_the_same_for_any_thread_count(rng):
    audio, is_mono = _session(rng, 5)
    table = GeneTable(5)
    params = table.decode(table.initial_population(2, np.random.default_rng(2), spread=0.4), np.full(5, 6.0))
    grid = band_grid(SR)
    one = render_exact(audio, is_mono, SR, params, index=1, target_lufs=-14, ceiling_dbtp=-1, grid=grid, threads=1)
    three = render_exact(audio, is_mono, SR, params, index=1, target_lufs=-14, ceiling_dbtp=-1, grid=grid, threads=3)
    np.testing.assert_array_equal(one.mix, three.mix)
    np.testing.assert_array_equal(one.stem_power, three.stem_power)
    assert one.stems is None  # with a grid, only what the scores need is kept


def test_kept_stems_sum_to_the_master_and_meet_the_ceiling(rng):
    audio, is_mono = _session(rng, 4)
    table = GeneTable(4)
    params = table.decode(table.initial_population(1, np.random.default_rng(3), spread=0.3), np.full(4, 8.0))
    r = render_exact(audio, is_mono, SR, params, target_lufs=-9, ceiling_dbtp=-1, keep_stems=True)
    np.testing.assert_allclose(r.stems.sum(axis=0), r.mix, atol=1e-9)
    assert r.true_peak_dbtp <= -1.0 + 1e-6
    assert r.true_peak_dbtp == pytest.approx(float(true_peak_dbtp(r.mix, SR)), abs=1e-9)


def test_features_loudness_and_range_are_the_meters(rng):
    from evomix.core.meter import integrated_loudness, loudness_range

    audio, is_mono = _session(rng, 3, seconds=5.0)
    table = GeneTable(3)
    params = table.decode(table.initial_population(1, np.random.default_rng(6), spread=0.3), np.full(3, 6.0))
    grid = band_grid(SR)
    r = render_exact(audio, is_mono, SR, params, target_lufs=-14, ceiling_dbtp=-1, grid=grid, threads=2)
    f = features_from_render(r, grid, ("other",) * 3)
    assert f.loudness_lufs[0] == pytest.approx(float(integrated_loudness(r.mix, SR)), abs=1e-9)
    assert f.lra_lu[0] == pytest.approx(float(loudness_range(r.mix, SR)), abs=1e-6)
    assert f.loudness_lufs[0] == pytest.approx(-14.0, abs=0.05)


def test_stem_powers_measured_in_the_pass_match_the_finished_stems_under_gentle_limiting(rng):
    """The in-pass route applies the master gain per frame; where the gain barely moves within a
    frame (gain reduction under ~1.5 dB) it matches measuring the finished contributions."""
    audio, is_mono = _session(rng, 4)
    table = GeneTable(4)
    params = table.decode(table.initial_population(1, np.random.default_rng(4), spread=0.1), np.full(4, 6.0))
    grid = band_grid(SR)
    fast = render_exact(audio, is_mono, SR, params, target_lufs=-16, ceiling_dbtp=-1, grid=grid)
    full = render_exact(audio, is_mono, SR, params, target_lufs=-16, ceiling_dbtp=-1, keep_stems=True)
    assert fast.limiter_gr_db < 1.5
    np.testing.assert_array_equal(fast.mix, full.mix)
    p_fast = features_from_render(fast, grid, ("other",) * 4).stem_power
    p_full = features_from_render(full, grid, ("other",) * 4).stem_power
    loud = p_full > p_full.max(axis=(-2), keepdims=True) * 1e-3  # within 30 dB of each frame's loudest band
    err_db = np.abs(10 * np.log10(p_fast[loud] / p_full[loud]))
    assert np.percentile(err_db, 99) < 0.1 and err_db.max() < 1.0


def test_k_block_powers_after_a_digital_silence_is_the_meter(rng):
    # 3 s of exact zeros: the K-weighting states decay past SUBNORMAL_FLOOR and are set to 0 (no
    # subnormal arithmetic); the block powers are still the meter's, the returning signal's too
    x = _signal(rng, 4 * SR, 2)
    x[:, SR // 2: SR // 2 + 3 * SR] = 0.0
    g = _Grid(SR, x.shape[1])
    z = chain.k_block_powers(x.astype(np.float32), np.zeros(0), 1.0, k_weighting_sos(SR), g.block, g.block_hop)
    np.testing.assert_allclose(z, block_powers(x.astype(np.float32), SR), rtol=1e-10, atol=0)




@pytest.mark.parametrize("sr,seconds", [(44100, 7.3), (48000, 3.0), (11025, 5.0), (96000, 4.4)])
def test_loudness_and_range_from_one_pass_are_the_two_passes(sr, seconds, rng):
    """Integrated loudness and LRA from one K-weighting pass (chain.k_block_powers_of) are, bit for
    bit, what two block-power passes give (11025 Hz: 0.4 s is not a whole number of 0.1 s hops)."""
    n = int(sr * seconds)
    x = rng.standard_normal((2, n)) * np.linspace(0.01, 0.5, n)
    g = _Grid(sr, n)
    both = g.loudness_and_range(x)
    assert both == (g.loudness(x, np.zeros(0), 1.0), g.loudness_range(x) if n >= round(3 * sr) else 0.0)
    assert both[1] > 0.0 or n < round(3.2 * sr)
