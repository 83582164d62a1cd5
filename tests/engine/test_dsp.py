"""Tests of evomix.engine.dsp against the standards it implements, not against itself.

References: RBJ Audio EQ Cookbook (https://www.w3.org/TR/audio-eq-cookbook/), Giannoulis,
Massberg & Reiss, JAES 60(6) 2012 (compressor), ITU-R BS.1770-4 Annex 2 (true peak).
Independent routes: scipy.signal.sosfreqz / sosfilt for filters, resample_poly at 8x for
true peak (the limiter itself uses 4x).
"""
import numpy as np
import pytest
from scipy.signal import resample_poly, sosfilt, sosfreqz

from evomix.engine.dsp import (
    cascade_power_response,
    cascade_response,
    compress,
    compressor_static_db,
    pan_gains,
    rbj_sos,
    rms_level_db,
    smooth_gain_db,
    sos_power_response,
    sos_response,
    true_peak_db,
    true_peak_limit,
)
from evomix.errors import ParameterError
from tests.support import sine

SRS = (44100, 48000, 96000)
DB_3 = 10 * np.log10(0.5)  # -3.0103 dB, half power


def response_db(sos, freq_hz, sr):
    """Independent route: scipy's complex evaluation of one section, in dB, shape (F,)."""
    _, h = sosfreqz(np.atleast_2d(sos), worN=np.atleast_1d(np.asarray(freq_hz, float)), fs=sr)
    return 20 * np.log10(np.abs(h))


def true_peak_8x_db(x):
    """Independent true-peak meter: 8x polyphase oversampling (twice the BS.1770 minimum)."""
    return 20 * np.log10(np.abs(resample_poly(x, 8, 1, axis=-1)).max())


def rms_db(x):
    return 10 * np.log10(np.mean(np.asarray(x) ** 2))


# ----------------------------------------------------------------------------------------------
# rbj_sos
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("cutoff_hz", [40.0, 1000.0, 12000.0])
def test_rbj_highpass_is_minus_3db_at_cutoff(sr, cutoff_hz):
    sos = rbj_sos("highpass", cutoff_hz, 0.0, 1 / np.sqrt(2), sr)
    # cookbook HPF: |H(f0)| = Q exactly, -3.0103 dB for Q = 1/sqrt(2); only rounding: atol 1e-6 dB
    np.testing.assert_allclose(response_db(sos, cutoff_hz, sr), DB_3, atol=1e-6)
    # unity at Nyquist (s -> inf under the BLT), zero at DC
    np.testing.assert_allclose(response_db(sos, sr / 2, sr), 0.0, atol=1e-6)
    assert sos_power_response(sos, np.array([0.0]), sr)[0] < 1e-20
    # gain_db is ignored by the highpass
    np.testing.assert_array_equal(sos, rbj_sos("highpass", cutoff_hz, 12.0, 1 / np.sqrt(2), sr))


@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("gain_db", [-12.0, 6.0, 12.0])
@pytest.mark.parametrize("q", [0.7, 2.0])
def test_rbj_peak_gain_at_centre_and_bandwidth(sr, gain_db, q):
    centre_hz = 1000.0
    sos = rbj_sos("peak", centre_hz, gain_db, q, sr)
    # |H(f0)| = A^2 = gain_db exactly; atol 1e-6 dB (rounding only)
    np.testing.assert_allclose(response_db(sos, centre_hz, sr), gain_db, atol=1e-6)
    # midpoint-gain (gain/2 dB) edges: the analog prototype has them where |Omega - 1/Omega| = 1/Q,
    # and the BLT maps f to Omega = tan(pi f / sr) / tan(pi f0 / sr) (exact, any gain)
    omega = np.array([-1 / q, 1 / q]) / 2 + np.sqrt(1 / q**2 + 4) / 2
    edges_hz = sr / np.pi * np.arctan(omega * np.tan(np.pi * centre_hz / sr))
    np.testing.assert_allclose(response_db(sos, edges_hz, sr), gain_db / 2, atol=1e-6)
    # cookbook's digital bandwidth relation 1/Q = 2 sinh(ln2/2 BW w0/sin w0) is an approximation:
    # 2 % agreement at 1 kHz
    bw_oct = np.log2(edges_hz[1] / edges_hz[0])
    w0 = 2 * np.pi * centre_hz / sr
    np.testing.assert_allclose(2 * np.sinh(np.log(2) / 2 * bw_oct * w0 / np.sin(w0)), 1 / q, rtol=0.02)
    # higher Q -> narrower: at half an octave off-centre the boost/cut is smaller
    wide, narrow = (rbj_sos("peak", centre_hz, gain_db, qq, sr) for qq in (q, 2 * q))
    f_off = centre_hz * np.sqrt(2)
    assert abs(response_db(narrow, f_off, sr)[0]) < abs(response_db(wide, f_off, sr)[0]) - 0.1


@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("kind", ["lowshelf", "highshelf"])
@pytest.mark.parametrize("gain_db", [-9.0, 6.0, 12.0])
def test_rbj_shelf_midpoint_and_plateau(sr, kind, gain_db):
    corner_hz = 200.0 if kind == "lowshelf" else 2000.0
    sos = rbj_sos(kind, corner_hz, gain_db, 1 / np.sqrt(2), sr)
    # cookbook shelves: |H(f0)| = sqrt(A) -> gain_db / 2 at f0 for any Q (atol 1e-6 dB, rounding)
    np.testing.assert_allclose(response_db(sos, corner_hz, sr), gain_db / 2, atol=1e-6)
    # plateau: exactly gain_db at DC (low) / Nyquist (high); within 0.01 dB one decade into the shelf
    edge_hz, decade_hz = (0.0, corner_hz / 10) if kind == "lowshelf" else (sr / 2, corner_hz * 10)
    np.testing.assert_allclose(response_db(sos, edge_hz, sr), gain_db, atol=1e-6)
    np.testing.assert_allclose(response_db(sos, decade_hz, sr), gain_db, atol=0.01)
    # the other side is flat (0 dB within 0.01 dB a decade away)
    flat_hz = corner_hz * 10 if kind == "lowshelf" else corner_hz / 10
    np.testing.assert_allclose(response_db(sos, flat_hz, sr), 0.0, atol=0.01)


@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("kind", ["peak", "lowshelf", "highshelf"])
def test_rbj_zero_gain_is_identity(sr, kind, rng):
    freq_hz = rng.uniform(30, 15000, size=(4, 3))
    q = rng.uniform(0.3, 5, size=(4, 3))
    sos = rbj_sos(kind, freq_hz, 0.0, q, sr)  # (4, 3, 6)
    np.testing.assert_allclose(sos[..., :3], sos[..., 3:], rtol=1e-12)  # b == a
    x = rng.normal(size=4096)
    np.testing.assert_allclose(sosfilt(sos[1, 2][None], x), x, atol=1e-9)


@pytest.mark.parametrize("sr", SRS)
def test_sos_power_response_matches_sosfreqz(sr, rng):
    """Two routes agree: the analytic cos/phi form and scipy's complex evaluation."""
    n_pop, n_stems = 6, 4
    freq_hz = np.concatenate([[0.0], np.geomspace(10, 0.49 * sr, 300), [sr / 2]])  # (F,)
    for kind in ("highpass", "lowshelf", "peak", "highshelf"):
        sos = rbj_sos(
            kind,
            rng.uniform(20, 0.45 * sr, size=(n_pop, n_stems)),
            rng.uniform(-18, 18, size=(n_pop, n_stems)),
            rng.uniform(0.3, 8, size=(n_pop, n_stems)),
            sr,
        )  # (pop, stems, 6)
        power = sos_power_response(sos, freq_hz, sr)  # (pop, stems, F)
        assert power.shape == (n_pop, n_stems, freq_hz.size)
        for i in range(n_pop):  # reference is per section; the code under test is batched
            for j in range(n_stems):
                _, h = sosfreqz(sos[i, j][None], worN=freq_hz, fs=sr)
                # rtol 1e-8: double rounding of two exact formulas; atol for highpass stop band
                np.testing.assert_allclose(power[i, j], np.abs(h) ** 2, rtol=1e-8, atol=1e-14)
        # guard against a trivial pass: different parameters give different responses
        assert not np.allclose(power[0, 0], power[1, 1])


@pytest.mark.parametrize("sr", SRS)
def test_cascade_responses_match_sosfreqz_of_the_cascade(sr, rng):
    """Biquads in series (a stem's EQ): the compiled products (power, and complex with phase)
    equal scipy's response of the whole cascade, per candidate and stem."""
    freq_hz = np.concatenate([[0.0], np.geomspace(10, 0.49 * sr, 200), [sr / 2]])
    shape = (5, 3)
    sos = np.stack([
        rbj_sos("highpass", rng.uniform(20, 400, shape), 0.0, 0.707, sr),
        rbj_sos("lowshelf", rng.uniform(40, 400, shape), rng.uniform(-12, 12, shape), 0.707, sr),
        rbj_sos("peak", rng.uniform(100, 0.4 * sr, shape), rng.uniform(-18, 18, shape), rng.uniform(0.3, 8, shape), sr),
        rbj_sos("highshelf", rng.uniform(2000, 0.4 * sr, shape), rng.uniform(-12, 12, shape), 0.707, sr),
    ], axis=-2)  # (5, 3, 4, 6)
    power = cascade_power_response(sos, freq_hz, sr)
    response = cascade_response(sos, freq_hz, sr)
    assert power.shape == response.shape == shape + freq_hz.shape
    for i in range(shape[0]):
        for j in range(shape[1]):
            _, h = sosfreqz(sos[i, j], worN=freq_hz, fs=sr)  # the four sections in series
            np.testing.assert_allclose(power[i, j], np.abs(h) ** 2, rtol=1e-8, atol=1e-14)
            np.testing.assert_allclose(response[i, j], h, rtol=1e-9, atol=1e-12)
    assert not np.allclose(power[0, 0], power[1, 1])
    with pytest.raises(ParameterError, match="sections, 6"):
        cascade_power_response(sos[0, 0, 0], freq_hz, sr)
    with pytest.raises(ParameterError, match="sections, 6"):
        cascade_response(sos[0, 0, 0], freq_hz, sr)


@pytest.mark.parametrize("sr", SRS)
def test_sos_response_matches_sosfreqz_magnitude_and_phase(sr, rng):
    """The complex response (used where phase matters) equals scipy's, and its power equals
    the cookbook power form."""
    freq_hz = np.geomspace(10, 0.49 * sr, 200)
    for kind in ("highpass", "lowshelf", "peak", "highshelf"):
        sos = rbj_sos(kind, rng.uniform(20, 0.45 * sr, size=(3, 2)), rng.uniform(-18, 18, size=(3, 2)),
                      rng.uniform(0.3, 8, size=(3, 2)), sr)  # (3, 2, 6)
        h = sos_response(sos, freq_hz, sr)  # (3, 2, F)
        for i in range(3):
            for j in range(2):
                _, ref = sosfreqz(sos[i, j][None], worN=freq_hz, fs=sr)
                np.testing.assert_allclose(h[i, j], ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.abs(h) ** 2, sos_power_response(sos, freq_hz, sr), rtol=1e-8, atol=1e-14)


def test_rbj_sos_clamps_frequency_and_rejects_bad_input():
    sr = 48000
    above = rbj_sos("peak", 30000.0, 6.0, 1.0, sr)  # above Nyquist -> 0.49 sr
    np.testing.assert_allclose(above, rbj_sos("peak", 0.49 * sr, 6.0, 1.0, sr))
    assert np.all(np.isfinite(above))
    with pytest.raises(ParameterError, match="unknown filter 'bandpass'"):
        rbj_sos("bandpass", 1000.0, 0.0, 1.0, sr)
    with pytest.raises(ParameterError, match="q must be"):
        rbj_sos("peak", 1000.0, 0.0, 0.0, sr)
    with pytest.raises(ParameterError, match="freq_hz must be"):
        rbj_sos("peak", -5.0, 0.0, 1.0, sr)


@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("gain_db", [-6.0, 9.0])
def test_peak_eq_on_sine_in_time_domain(sr, gain_db):
    centre_hz = 1000.0
    x = sine(centre_hz, 1.0, sr=sr, amp=0.25)
    y = sosfilt(rbj_sos("peak", centre_hz, gain_db, 1.0, sr)[None], x)
    steady = slice(int(0.2 * sr), int(0.8 * sr))  # after the fade and the filter transient
    # RMS change = gain_db +- 0.1 dB (BS.1770-style conformance tolerance)
    assert abs(rms_db(y[steady]) - rms_db(x[steady]) - gain_db) < 0.1


# ----------------------------------------------------------------------------------------------
# pan_gains
# ----------------------------------------------------------------------------------------------
def test_pan_mono_constant_power():
    pan = np.linspace(-1, 1, 201)
    gains = pan_gains(pan, True)  # (201, 2)
    np.testing.assert_allclose((gains**2).sum(axis=-1), 1.0, atol=1e-12)  # L^2 + R^2 = 1
    centre = pan_gains(0.0, True)
    np.testing.assert_allclose(20 * np.log10(centre), [DB_3, DB_3], atol=1e-9)  # -3.01 dB each
    np.testing.assert_allclose(pan_gains(-1.0, True), [1.0, 0.0], atol=1e-12)  # hard left
    np.testing.assert_allclose(pan_gains(1.0, True), [0.0, 1.0], atol=1e-12)  # hard right
    assert np.all(np.diff(gains[:, 0]) <= 0) and np.all(np.diff(gains[:, 1]) >= 0)  # monotone


def test_pan_stereo_balance():
    np.testing.assert_allclose(pan_gains(0.0, False), [1.0, 1.0], atol=1e-12)  # unity at centre
    np.testing.assert_allclose(pan_gains(-1.0, False), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pan_gains(1.0, False), [0.0, 1.0], atol=1e-12)
    left_of_centre = pan_gains(np.linspace(-1, 0, 11), False)
    np.testing.assert_array_equal(left_of_centre[:, 0], 1.0)  # near side stays at unity


def test_pan_broadcasts_and_validates():
    pan = np.zeros((5, 3))  # (pop, stems)
    is_mono = np.array([True, False, True])  # (stems,)
    gains = pan_gains(pan, is_mono)
    assert gains.shape == (5, 3, 2)
    np.testing.assert_allclose(gains[:, 1], 1.0)
    np.testing.assert_allclose(gains[:, 0], np.sqrt(0.5))
    with pytest.raises(ParameterError, match=r"pan must be in \[-1, 1\]"):
        pan_gains(1.5, True)


# ----------------------------------------------------------------------------------------------
# compressor_static_db
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1.5, 4.0, 20.0, np.inf])
@pytest.mark.parametrize("knee_db", [0.0, 6.0, 12.0])
def test_compressor_static_curve(ratio, knee_db):
    threshold_db = -20.0
    below = np.linspace(-120, threshold_db - knee_db / 2, 50)
    np.testing.assert_array_equal(compressor_static_db(below, threshold_db, ratio, knee_db), 0.0)
    # far above threshold: output level rises with slope 1/ratio (gain with 1/ratio - 1)
    level_db = np.linspace(threshold_db + knee_db / 2 + 1, 20, 50)
    out_db = level_db + compressor_static_db(level_db, threshold_db, ratio, knee_db)
    np.testing.assert_allclose(np.diff(out_db) / np.diff(level_db), 1 / ratio, atol=1e-9)
    np.testing.assert_allclose(out_db, threshold_db + (level_db - threshold_db) / ratio, atol=1e-9)
    # continuity at the knee edges and the threshold (eps = 1e-7 dB -> jump < 1e-6 dB)
    eps = 1e-7
    for edge_db in (threshold_db - knee_db / 2, threshold_db, threshold_db + knee_db / 2):
        g = compressor_static_db(np.array([edge_db - eps, edge_db + eps]), threshold_db, ratio, knee_db)
        assert abs(g[1] - g[0]) < 1e-6
    everywhere = compressor_static_db(np.linspace(-60, 20, 801), threshold_db, ratio, knee_db)
    assert np.all(everywhere <= 0) and np.all(np.isfinite(everywhere))
    assert np.all(np.diff(everywhere) <= 1e-12)  # more level, never less reduction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compressor_static_gives_each_element_its_own_parameters(dtype, rng):
    """Per-row parameters (the compiled row loop) and parameters that change along time (every
    element its own row) both give what the scalar formula gives element by element."""
    level_db = rng.uniform(-80, 10, (4, 3, 50)).astype(dtype)
    per_row = (rng.uniform(-40, 0, (4, 3, 1)), rng.uniform(1, 10, (4, 3, 1)), rng.uniform(0, 12, (1, 3, 1)))
    per_time = (rng.uniform(-40, 0, (4, 3, 50)), rng.uniform(1, 10, (1, 1, 50)), 6.0)
    for threshold_db, ratio, knee_db in (per_row, per_time):
        got = compressor_static_db(level_db, threshold_db, ratio, knee_db)
        assert got.dtype == dtype and got.shape == level_db.shape
        t, r, k = np.broadcast_arrays(threshold_db, ratio, knee_db, level_db)[:3]
        want = np.array([compressor_static_db(float(x), float(ti), float(ri), float(ki))
                         for x, ti, ri, ki in zip(level_db.ravel(), t.ravel(), r.ravel(), k.ravel())])
        rtol, atol = (1e-5, 1e-4) if dtype == np.float32 else (1e-12, 1e-12)  # float32 rounding: 1e-4 dB near 0 dB
        np.testing.assert_allclose(got, want.reshape(level_db.shape), rtol=rtol, atol=atol)
        assert (got < -1.0).any() and (got == 0.0).any()  # both sides of the threshold are exercised


def test_compressor_static_broadcasts_and_validates():
    level_db = np.zeros((1, 1, 7))
    threshold_db = np.linspace(-30, 0, 5)[:, None, None]  # (5, 1, 1)
    ratio = np.array([2.0, 4.0, 8.0])[None, :, None]  # (1, 3, 1)
    assert compressor_static_db(level_db, threshold_db, ratio).shape == (5, 3, 7)
    with pytest.raises(ParameterError, match="ratio must be >= 1"):
        compressor_static_db(level_db, -20.0, 0.5)
    with pytest.raises(ParameterError, match="knee_db must be >= 0"):
        compressor_static_db(level_db, -20.0, 2.0, knee_db=-1.0)


# ----------------------------------------------------------------------------------------------
# smooth_gain_db
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("step_s", "attack_ms", "release_ms"), [(0.001, 10.0, 100.0), (0.05, 500.0, 2000.0)])
def test_smooth_gain_time_constants(step_s, attack_ms, release_ms, rng):
    n_pop, n_stems = 16, 8
    attack = attack_ms * rng.uniform(1, 3, size=(n_pop, n_stems))  # (pop, stems) ms
    release = release_ms * rng.uniform(1, 3, size=(n_pop, n_stems))
    n_down = int(round(20 * attack.max() / 1000 / step_s))  # long enough to settle
    n_up = int(round(20 * release.max() / 1000 / step_s))
    target = np.concatenate([np.full(n_down, -10.0), np.zeros(n_up)])  # step down, then up
    y = smooth_gain_db(np.broadcast_to(target, (n_pop, n_stems, target.size)), attack, release, step_s)
    assert y.shape == (n_pop, n_stems, target.size)
    # attack: 63.2 % (1 - 1/e) of the step after one time constant, +- one control step
    t_attack_s = (np.argmax(y[..., :n_down] <= -10.0 * (1 - np.exp(-1)), axis=-1) + 1) * step_s
    np.testing.assert_allclose(t_attack_s, attack / 1000, atol=step_s)
    # release: back up by 63.2 % after one release time constant, +- one step
    start_db = y[..., n_down - 1 : n_down]  # (pop, stems, 1), ~ -10 dB
    recovered = y[..., n_down:] >= start_db * np.exp(-1)
    t_release_s = (np.argmax(recovered, axis=-1) + 1) * step_s
    np.testing.assert_allclose(t_release_s, release / 1000, atol=step_s)
    assert np.all(t_release_s > t_attack_s)  # release slower than attack here
    assert np.all(y <= 0) and np.all(y >= -10 - 1e-12)


def test_smooth_gain_batched_equals_per_candidate(rng):
    """Two routes agree: one call on (pop, stems, T) and one call per candidate."""
    n_pop, n_stems, n_steps = 5, 3, 400
    target = np.minimum(0, rng.normal(-4, 4, size=(n_pop, n_stems, n_steps)))
    attack = rng.uniform(5, 50, size=(n_pop, n_stems))
    release = rng.uniform(50, 500, size=(n_pop, 1))  # broadcasts over stems
    batched = smooth_gain_db(target, attack, release, 0.01)
    for i in range(n_pop):
        np.testing.assert_allclose(batched[i], smooth_gain_db(target[i], attack[i], release[i], 0.01))
    assert not np.allclose(batched[0], batched[1])  # guard: candidates differ


# ----------------------------------------------------------------------------------------------
# rms_level_db and compress
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", SRS)
def test_rms_level_of_sine_and_stereo_link(sr):
    x = sine(1000.0, 0.5, sr=sr, amp=0.5)
    level = rms_level_db(np.stack([x, x]), sr)  # (T,)
    step = round(0.001 * sr)
    assert level.shape == (-(-x.size // step),)
    mid = level[100:400]  # away from the fades
    np.testing.assert_allclose(mid, 20 * np.log10(0.5 / np.sqrt(2)), atol=0.01)  # sine RMS = A/sqrt2
    one_side = rms_level_db(np.stack([x, np.zeros_like(x)]), sr)[100:400]
    np.testing.assert_allclose(mid - one_side, -DB_3, atol=0.01)  # mean over 2 channels: -3 dB
    assert rms_level_db(np.zeros((2, 100)), sr).min() == -120.0  # floor


@pytest.mark.parametrize("sr", SRS)
def test_rms_window_is_centred_on_the_control_step(sr):
    step = round(0.001 * sr)
    onset = 200 * step  # a tone switches on exactly at control step 200
    x = np.zeros((1, 400 * step))
    x[0, onset:] = np.sin(2 * np.pi * 1000.0 * np.arange(x.shape[-1] - onset) / sr)
    level = rms_level_db(x, sr)
    # centred 50 ms window: half of it holds the tone at the onset -> -3.01 dB below the steady
    # level, the full level 25 ms later and silence 25 ms before (atol 0.05 dB: a 1 kHz sine is
    # 50 whole periods per window only to within a sample)
    steady_db = 20 * np.log10(1 / np.sqrt(2))
    np.testing.assert_allclose(level[200], steady_db + DB_3, atol=0.05)
    np.testing.assert_allclose(level[226], steady_db, atol=0.05)
    assert level[174] == -120.0


@pytest.mark.parametrize("sr", SRS)
def test_compress_settles_at_static_reduction(sr):
    x = sine(1000.0, 1.0, sr=sr, amp=0.5)
    x = np.stack([x, 0.8 * x])  # (2, samples), stereo
    level_db = 10 * np.log10(np.mean(x[:, int(0.3 * sr) : int(0.9 * sr)] ** 2))
    y = compress(
        x, sr, threshold_db=level_db - 20.0, ratio=4.0, attack_ms=10.0, release_ms=100.0
    )
    steady = slice(int(0.3 * sr), int(0.9 * sr))  # well after the attack (10 ms) and the fade
    # 20 dB over threshold at ratio 4: 20 - 20/4 = 15 dB reduction, +- 0.5 dB
    assert abs(rms_db(y[:, steady]) - rms_db(x[:, steady]) + 15.0) < 0.5
    np.testing.assert_allclose(y[1] / 0.8, y[0], atol=1e-12)  # stereo-linked: same gain both sides


@pytest.mark.parametrize("sr", SRS)
def test_compress_below_threshold_is_untouched(sr):
    x = sine(1000.0, 0.5, sr=sr, amp=0.1)[None]  # (1, samples), about -23 dB RMS
    y = compress(x, sr, threshold_db=-10.0, ratio=8.0, attack_ms=1.0, release_ms=50.0, knee_db=6.0)
    assert np.max(np.abs(y - x)) < 1e-9


def test_compress_batched_equals_per_candidate(rng):
    """Two routes agree: (pop, stems, ch, samples) at once and one candidate at a time."""
    sr = 44100
    x = rng.normal(scale=0.3, size=(3, 2, 2, 8820))  # (pop, stems, ch, samples)
    threshold_db = np.array([[-30.0, -20.0], [-15.0, -25.0], [-40.0, -10.0]])  # (pop, stems)
    attack_ms = np.array([1.0, 10.0, 30.0])[:, None]  # (pop, 1)
    y = compress(x, sr, threshold_db=threshold_db, ratio=3.0, attack_ms=attack_ms, release_ms=80.0)
    for i in range(3):
        yi = compress(
            x[i], sr, threshold_db=threshold_db[i], ratio=3.0, attack_ms=attack_ms[i], release_ms=80.0
        )
        np.testing.assert_allclose(y[i], yi, rtol=1e-12)
    assert not np.allclose(y[0] / x[0], y[1] / x[1])  # guard: different settings, different gains
    with pytest.raises(ParameterError, match="does not broadcast"):
        compress(x, sr, threshold_db=np.zeros(4), ratio=3.0, attack_ms=1.0, release_ms=80.0)


# ----------------------------------------------------------------------------------------------
# true_peak_limit / true_peak_db
# ----------------------------------------------------------------------------------------------
CEILING_DBTP = -1.0
# 0.05 dB: the limiter estimates the true peak with 4x oversampling (BS.1770-4 Annex 2) refined by
# a 3-point parabola; against the 8x meter that estimate under-reads by up to 0.03 dB for a
# component near 0.4 fs at worst phase. A limiter puts thousands of peaks at the ceiling, so
# white noise reaches that worst case (0.02-0.04 dB measured); 0.05 dB covers it.
TP_TOLERANCE_DB = 0.05


def loud_section(kind, n_samples, sr, rng):
    """(2, samples) test material whose true peak is about +6 dBTP."""
    if kind == "noise":  # white noise, the worst case for inter-sample peaks
        x = rng.normal(size=(2, n_samples))
        return x / np.abs(x).max() * 10 ** (6 / 20)
    # fs/4 sine with 45 deg phase: samples at +-0.707 A, true peak A = +6 dBTP (3 dB between samples)
    s = sine(sr / 4, n_samples / sr, sr=sr, amp=10 ** (6 / 20), phase=np.pi / 4, fade_s=0.002)
    return np.stack([s, -s])


@pytest.mark.parametrize("sr", SRS)
@pytest.mark.parametrize("kind", ["noise", "fs4_sine"])
def test_true_peak_limit_ceiling_and_transparency(sr, kind, rng):
    quiet_s, loud_s, tail_s = 0.3, 0.5, 1.5
    release_ms, lookahead_ms = 80.0, 5.0
    n_quiet, n_loud, n_tail = (int(d * sr) for d in (quiet_s, loud_s, tail_s))
    quiet = sine(440.0, quiet_s + loud_s + tail_s, sr=sr, amp=0.01)  # -40 dBFS bed under everything
    x = np.stack([quiet, quiet])
    x[:, n_quiet : n_quiet + n_loud] += loud_section(kind, n_loud, sr, rng)
    assert true_peak_8x_db(x) > 5.0  # the input really is 6 dB over the ceiling

    y = true_peak_limit(x, sr, ceiling_dbtp=CEILING_DBTP, lookahead_ms=lookahead_ms, release_ms=release_ms)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert true_peak_8x_db(y) <= CEILING_DBTP + TP_TOLERANCE_DB
    # the limiter's own guarantee (its safety step): the plain 4x BS.1770 reading never exceeds
    # the ceiling (1e-9 dB: rounding)
    assert true_peak_db(y, sr, oversample=4) <= CEILING_DBTP + 1e-9

    # before the look-ahead reaches the loud part the gain is 1, up to the uniform safety scale;
    # the output is not delayed, so it equals the input sample for sample
    before = slice(int(0.01 * sr), n_quiet - int(lookahead_ms / 1000 * sr) - 2)
    scale = y[:, before] / x[:, before]
    safety_db = 20 * np.log10(scale.mean())
    np.testing.assert_allclose(scale, scale.mean(), rtol=1e-12)  # one uniform factor
    assert -0.01 < safety_db <= 0.0  # the safety step, if it triggered, is tiny
    # one second (12.5 release time constants) after the loud part the gain is back to unity:
    # residual reduction <= e^-12.5 = 4e-6 relative
    after = slice(n_quiet + n_loud + int(1.0 * sr), x.shape[-1] - int(0.02 * sr))
    np.testing.assert_allclose(y[:, after], x[:, after] * scale.mean(), rtol=1e-5)
    # and the loud part really was limited close to the ceiling (not just turned down a lot)
    assert true_peak_8x_db(y[:, n_quiet : n_quiet + n_loud]) > CEILING_DBTP - 0.5


@pytest.mark.parametrize("sr", SRS)
def test_true_peak_limit_gain_is_down_when_a_click_arrives(sr):
    n = int(0.2 * sr)
    x = np.zeros((2, n))
    click_at = n // 2
    x[:, click_at] = 4.0  # +12 dBFS sample peak, one sample
    y = true_peak_limit(x, sr)
    assert np.argmax(np.abs(y[0])) == click_at  # no delay
    assert true_peak_8x_db(y) <= CEILING_DBTP + TP_TOLERANCE_DB
    assert np.all(y[:, :click_at] == 0) and np.all(np.isfinite(y))


def test_true_peak_limit_silence_and_validation():
    sr = 48000
    y = true_peak_limit(np.zeros((2, 4800)), sr)
    np.testing.assert_array_equal(y, 0.0)  # no NaN from 0/0
    with pytest.raises(ParameterError, match=r"shape \(ch, samples\)"):
        true_peak_limit(np.zeros(4800), sr)
    with pytest.raises(ParameterError, match="NaN"):
        true_peak_limit(np.full((2, 10), np.nan), sr)


@pytest.mark.parametrize("sr", SRS)
def test_true_peak_db_sees_inter_sample_peak(sr):
    s = sine(sr / 4, 0.1, sr=sr, amp=0.5, phase=np.pi / 4)
    x = np.stack([s, 0.5 * s])[None]  # (1, 2, samples)
    sample_peak_db = 20 * np.log10(np.abs(x).max())
    tp_db = true_peak_db(x, sr)
    assert tp_db.shape == (1,)
    np.testing.assert_allclose(sample_peak_db, 20 * np.log10(0.5) + DB_3, atol=0.01)  # samples at 0.707 A
    # 4x finds the peak between samples: 20 log10(0.5) within 0.05 dB (the filter's passband ripple)
    np.testing.assert_allclose(tp_db, 20 * np.log10(0.5), atol=0.05)
    assert true_peak_db(np.zeros((2, 100)), sr) == -200.0


def test_smooth_gain_db_single_curve_equals_batched_rows(rng):
    """The exact tier's single-curve path (plain floats) gives bit-for-bit the batched result."""
    gains = np.minimum(rng.normal(-6.0, 6.0, size=(3, 2000)), 0.0)
    attack, release = np.array([1.0, 10.0, 80.0]), np.array([30.0, 200.0, 900.0])
    batched = smooth_gain_db(gains, attack, release, 0.001)
    for i in range(3):
        assert np.array_equal(smooth_gain_db(gains[i], attack[i], release[i], 0.001), batched[i])


def test_smooth_gain_db_step_mean_is_the_mean_of_the_fine_response(rng):
    """With ``step_mean`` each coarse step reports the mean of the one-pole response over that step:
    checked against the same smoothing run on 1000 times finer steps and averaged."""
    coarse = np.minimum(rng.normal(-8.0, 6.0, size=(2, 40)), 0.0)  # (2, 40) dB
    attack, release, step = np.array([5.0, 60.0]), np.array([40.0, 400.0]), 0.05
    fine = smooth_gain_db(np.repeat(coarse, 1000, axis=-1), attack, release, step / 1000)  # (2, 40000)
    expected = fine.reshape(2, 40, 1000).mean(axis=-1)
    got = smooth_gain_db(coarse, attack, release, step, step_mean=True)
    # tolerance: the fine run's own discretisation (1000 steps per frame)
    np.testing.assert_allclose(got, expected, atol=0.01)
    # it differs from the end value
    assert not np.allclose(got, smooth_gain_db(coarse, attack, release, step), atol=0.1)
