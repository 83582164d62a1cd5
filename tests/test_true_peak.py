"""The true-peak ceiling holds for the reconstructed signal (issue 24), not only for one meter.

Checked against two independent readers: a 16x polyphase resampler (scipy ``resample_poly``,
Kaiser window) and libebur128's BS.1770 true-peak meter (``pyebur128``).
"""
import numpy as np
import pyloudnorm as pyln
import pytest
import soundfile as sf
from scipy.signal import resample, resample_poly

from evomix.core.meter import reconstructed_peak, true_peak_dbtp
from evomix.engine.render import render_exact
from evomix.search.genome import GeneTable
from tests.support import SR, run_cli, search_flags, small_search


def _db(v):
    return 20.0 * np.log10(v)


def resampled_peak_db(x, factor=16):
    """The peak of ``x`` (ch, samples) upsampled ``factor`` times by scipy's polyphase resampler."""
    return _db(np.abs(resample_poly(x, factor, 1, axis=-1, window=("kaiser", 10.0))).max())


def libebur128_peak_db(x, sr):
    """libebur128's true peak (BS.1770-4 Annex 2, its own interpolator) of ``x`` (ch, samples)."""
    pyebur128 = pytest.importorskip("pyebur128")
    state = pyebur128.R128State(x.shape[0], sr, pyebur128.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x.T, dtype=np.float64).ravel(), x.shape[1])
    return _db(max(pyebur128.get_true_peak(state, c) for c in range(x.shape[0])))


def _faded(x, fade_s=0.01):
    """``x`` (ch, samples) with raised-cosine fades: no step at the ends to ring (Gibbs) there."""
    nf = int(fade_s * SR)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf) / nf)
    x = x.copy()
    x[:, :nf] *= ramp
    x[:, -nf:] *= ramp[::-1]
    return x


def test_a_quarter_rate_sine_between_its_samples_reads_its_amplitude():
    """fs/4 at 45 degrees: every sample is at 0.707 of the amplitude, the peak lies between them."""
    n = np.arange(SR)
    x = _faded(0.5 * np.sin(np.pi / 2 * n + np.pi / 4)[None, :])
    assert _db(np.abs(x).max()) == pytest.approx(_db(0.5) - 3.01, abs=0.01)  # the samples under-read by 3 dB
    assert _db(reconstructed_peak(x)) == pytest.approx(_db(0.5), abs=0.01)  # the reconstruction finds it


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_reconstruction_reads_the_band_limited_signal_s_peak(seed):
    """Noise with rising treble up to 20 kHz (where 4x meters under-read): our reading agrees with
    the exact reconstruction (FFT interpolation, 16x) within 0.01 dB; scipy's 16x polyphase
    resampler reads lower (its anti-imaging filter attenuates near Nyquist), BS.1770's 4x meter too."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, SR // 2))
    spec = np.fft.rfft(x, axis=-1)
    f = np.fft.rfftfreq(x.shape[1], 1 / SR)
    spec *= np.where(f < 20000, 1.0 + (f / 5000.0) ** 2, 0.0)  # rising treble, nothing above 20 kHz
    x = _faded(np.fft.irfft(spec, n=x.shape[1], axis=-1))
    x *= 0.9 / np.abs(x).max()
    exact = _db(np.abs(resample(x, 16 * x.shape[1], axis=-1)).max())
    ours = _db(reconstructed_peak(x))
    assert ours == pytest.approx(exact, abs=0.01)
    assert ours >= resampled_peak_db(x) - 0.002
    assert ours > float(true_peak_dbtp(x, SR)), "the 4x meter should under-read this signal"  # guard


def test_a_gain_need_not_be_applied_to_be_read(rng):
    x = rng.standard_normal((2, 20000)) * 0.3
    gain = np.linspace(0.2, 1.0, x.shape[1])
    assert reconstructed_peak(x, gain=gain, scale=0.7) == pytest.approx(reconstructed_peak(x * gain * 0.7), rel=1e-12)


@pytest.mark.parametrize("ceiling", [-1.0, -0.3])
def test_an_exact_render_of_bright_dense_stems_stays_under_the_ceiling_at_16x(rng, ceiling):
    """Treble-heavy stems driven into the limiter (-8 LUFS): the exported master's 16x peak and
    libebur128's true peak are at or under the ceiling, and the loudness is still on target."""
    n = 4 * SR
    hats = rng.standard_normal((2, n)) * (rng.random(n) < 0.02)  # clicks: all treble
    tones = sum(np.sin(2 * np.pi * f * np.arange(n) / SR + p) for f, p in ((9000, 0.3), (15500, 1.1), (19000, 2.0)))
    audio = np.stack([0.5 * hats, np.stack([tones, tones[::-1]]) * 0.2]).astype(np.float32)  # (stems, 2, samples)
    table = GeneTable(2)
    params = table.decode(table.neutral()[None, :], np.zeros(2))
    r = render_exact(audio, np.array([False, False]), SR, params, target_lufs=-8.0, ceiling_dbtp=ceiling)
    master = r.mix.astype(np.float32).astype(np.float64)  # as written (float32, then 24-bit)
    assert resampled_peak_db(master) <= ceiling + 1e-4
    assert _db(reconstructed_peak(master)) <= ceiling + 1e-4
    assert libebur128_peak_db(master, SR) <= ceiling + 1e-4
    assert r.limiter_gr_db > 1.0, "the limiter must be working for this test to mean anything"  # guard
    loudness = pyln.Meter(SR).integrated_loudness(master.T)  # an independent BS.1770 meter
    assert loudness == pytest.approx(-8.0, abs=0.1)  # the target: 0.05 LU tolerance + the meters' 0.05


@pytest.mark.slow
def test_every_exported_alternative_is_under_the_ceiling_for_two_independent_readers(stem_dir, tmp_path):
    out = tmp_path / "out"
    res = run_cli("mix", stem_dir, "--out", out, *search_flags(small_search(alternatives=3, generations=4)),
                  "--ceiling", "-1.0", "--quiet", "--json")
    assert res.exit_code == 0, res.stderr
    worst = []
    for wav in sorted(out.glob("alt-*.wav")):
        x, sr = sf.read(wav, dtype="float64")
        worst.append(max(resampled_peak_db(x.T), libebur128_peak_db(x.T, sr), _db(reconstructed_peak(x.T))))
    assert len(worst) >= 2 and max(worst) <= -1.0 + 1e-4, worst
