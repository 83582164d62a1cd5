"""Genre profiles from audio: learn one from reference mixes, rank a mix against profiles, and
synthesize a test signal that has a profile's spectrum, width and dynamics.

The numbers are the ones the ``genre`` and ``loudness`` objectives look at:

* **1/3-octave LTAS** (:func:`third_octave_ltas_db`): the long-term power spectrum (Welch, Hann,
  ~0.75 s segments, 50 % overlap, L and R powers averaged) integrated over *true* 1/3-octave bands
  (centres :data:`objectives.spectrum.THIRD_OCTAVE_HZ`, edges ``f_c * 2^(±1/6)``, FFT bins
  weighted by how much of each bin lies inside the band), in dB, then level-normalised (the mean
  over the centres in 40 Hz–16 kHz is removed), exactly the format of the built-in profiles.
  The FFT is used rather than the 32-band ERB analysis grid because that grid has only 2 bands
  below 100 Hz (20–57–99 Hz at 44.1 kHz), too coarse for the low-end differences between
  genres (sub corner, low shelf). The ``genre`` objective later compares the grid's
  1/3-octave-*equivalent* levels with the profile interpolated in log frequency; on the
  synthesized profile examples the two views agree to 0.12–0.16 dB RMS.
  Note the unit: in 1/3-octave levels pink noise is flat (0 dB/octave), whereas FFT (per-Hz)
  spectra show it at −3 dB/octave (see ``experiments/make_profiles.py`` on the built-in slopes).
* **PLR** = true peak − integrated loudness (dB), **LRA** (EBU Tech 3342, LU) and the integrated
  loudness (LUFS), from :mod:`evomix.core.meter` (BS.1770-4).
* **Width**: side / (mid + side) energy per region of :data:`objectives.genre.WIDTH_REGIONS_HZ`,
  measured on the analysis grid exactly as the ``genre`` objective measures a mix.

Mono input is treated as a centre-panned stereo signal (each side ``x / sqrt(2)``, the
constant-power law of the analysis (``pan_gains(0, mono)``)), so its width is 0.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.fft

from evomix.core.constants import GATING_HOP_S, SHORT_TERM_WINDOW_S
from evomix.core.constants import POWER_FLOOR as _FLOOR
from evomix.core.features import Features
from evomix.core.meter import integrated_loudness, k_weighting_power, loudness_range, true_peak_dbtp
from evomix.engine.bands import band_grid, band_powers, bark
from evomix.engine.dsp.pan import pan_gains
from evomix.errors import OptionError, ParameterError
from evomix.io.audio import expand_paths, read_audio
from evomix.io.files import write_text_atomic
from evomix.io.places import check_creatable
from objectives.base import Target
from objectives.genre import WIDTH_REGIONS_HZ, GenreProfile, builtin_genres, genre, load_profile, width_by_region
from objectives.spectrum import THIRD_OCTAVE_HZ, normalise_level

__all__ = [
    "DEFAULT_VOCAL_MARGIN_DB",
    "as_stereo",
    "features_from_audio",
    "third_octave_ltas_db",
    "learn_profile",
    "write_profile",
    "check_profile_output",
    "genre_distance",
    "genre_similarity",
    "synthesize_profile_example",
]

#: Vocal margin (dB) written into learned profiles. The lead's level relative to the loudest other
#: stem cannot be measured from a finished stereo mix (no stems), so learned profiles use the
#: middle of the built-in range (0–3 dB; De Man & Reiss 2013: the lead is the loudest element).
DEFAULT_VOCAL_MARGIN_DB = 2.0
MIN_REFERENCE_S = SHORT_TERM_WINDOW_S  # s: LRA needs at least one short-term window
_SILENCE_LUFS = -70.0  # LUFS: below the BS.1770 absolute gate everything is "silence"

_HALF_THIRD = 2.0 ** (1.0 / 6.0)
_MAX_CLIP_ITER = 60  # crest-factor reduction passes (each one FFT pair)


# --------------------------------------------------------------------------- measurement


def as_stereo(x: np.ndarray) -> np.ndarray:
    """(ch, samples) or (samples,) -> (2, samples) float64; mono is centre-panned (x / sqrt(2) each side)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise ParameterError(f"x: expected (channels, samples) with 1 or 2 channels, got shape {x.shape}")
    if x.shape[0] == 1:
        g = pan_gains(0.0, True)  # (2,), cos/sin(pi/4): the centre-panned law of the analysis
        return x * g[:, None]
    return x


def features_from_audio(x: np.ndarray, sr: int) -> Features:
    """Measure a finished mix as objective :class:`Features` with pop = 1.

    The file is a single stem with role ``"other"`` (``stem_power = mix_power[None]``); loudness,
    LRA and true peak come from :mod:`evomix.core.meter` on the (centre-panned) stereo signal;
    ``raw_loudness_lufs = loudness_lufs`` and ``limiter_gr_db = 0`` (nothing was normalised or
    limited here). LRA is 0 for signals shorter than 3 s (no short-term window).

    Parameters
    ----------
    x : (ch, samples) or (samples,) float, ch 1 or 2, full scale.
    sr : int, Hz.
    """
    stereo = as_stereo(x)
    sr = int(sr)
    grid = band_grid(sr)
    power, cross = band_powers(stereo, grid)  # (2, B, T), (B, T)
    stem_power = power[None]  # (stems=1, 2, B, T)
    stem_spread = np.einsum("ij,scjt->scit", grid.spread.astype(np.float32), stem_power)
    loud = float(integrated_loudness(stereo, sr))
    lra = float(loudness_range(stereo, sr)) if stereo.shape[-1] >= MIN_REFERENCE_S * sr else 0.0
    tp = float(true_peak_dbtp(stereo, sr))
    return Features(
        bands_hz=grid.centres_hz,
        band_edges_hz=grid.edges_hz,
        band_bark=bark(grid.centres_hz),
        spread=grid.spread,
        roles=("other",),
        stem_power=stem_power[None],
        stem_spread=stem_spread[None].astype(np.float32),
        mix_power=power[None],
        mix_cross=cross[None],
        loudness_lufs=np.array([loud]),
        raw_loudness_lufs=np.array([loud]),
        lra_lu=np.array([lra]),
        true_peak_dbtp=np.array([tp]),
        limiter_gr_db=np.zeros(1),
    )


def _third_octave_matrix(freqs: np.ndarray, df: float, centres: np.ndarray) -> np.ndarray:
    """(bands, bins) weights: the fraction of each FFT bin [f - df/2, f + df/2] inside each band."""
    lo_b, hi_b = freqs - df / 2.0, freqs + df / 2.0
    lo_c, hi_c = centres / _HALF_THIRD, centres * _HALF_THIRD
    overlap = np.minimum(hi_b[None, :], hi_c[:, None]) - np.maximum(lo_b[None, :], lo_c[:, None])
    return np.clip(overlap, 0.0, None) / df


def third_octave_ltas_db(x: np.ndarray, sr: int, *, normalise: bool = True) -> np.ndarray:
    """Long-term 1/3-octave band levels at :data:`THIRD_OCTAVE_HZ`, dB, shape (28,).

    Welch power spectrum (Hann, segments of the power of two nearest 0.75 s, 50 % overlap) of L
    and R, averaged over the two channels, integrated over true 1/3-octave bands (edges
    ``f_c * 2^(±1/6)``, partial bins weighted by overlap). With ``normalise`` the mean over the
    centres in 40 Hz–16 kHz is removed (the profile format). Bands reaching above Nyquist
    (sr < 36 kHz) repeat the highest complete band's level.
    """
    import scipy.signal
    stereo = as_stereo(x)
    n = stereo.shape[-1]
    nper = min(n, 1 << int(round(math.log2(0.75 * sr))))
    freqs, psd = scipy.signal.welch(stereo, fs=sr, window="hann", nperseg=nper, noverlap=nper // 2,
                                    detrend=False, scaling="density", axis=-1)  # (2, bins), FS^2/Hz
    psd = psd.mean(axis=0)  # (bins,) L/R power average (same as the objective's LTAS)
    df = freqs[1] - freqs[0]
    power = _third_octave_matrix(freqs, df, THIRD_OCTAVE_HZ) @ (psd * df)  # (28,)
    levels = 10.0 * np.log10(np.maximum(power, _FLOOR))
    complete = THIRD_OCTAVE_HZ * _HALF_THIRD <= 0.5 * sr
    if not complete.all() and complete.any():
        last = np.nonzero(complete)[0][-1]
        levels[last + 1 :] = levels[last]
    return normalise_level(levels, THIRD_OCTAVE_HZ) if normalise else levels


def _reference_stats(x: np.ndarray, sr: int, origin: str) -> dict:
    stereo = as_stereo(x)
    if stereo.shape[-1] < MIN_REFERENCE_S * sr:
        raise ParameterError(f"{origin}: {stereo.shape[-1] / sr:.2f} s is too short to learn a profile from "
                             f"(needs >= {MIN_REFERENCE_S:g} s; use whole songs)")
    feats = features_from_audio(stereo, sr)
    loud = float(feats.loudness_lufs[0])
    if loud <= _SILENCE_LUFS:
        raise ParameterError(f"{origin}: is silent (below {_SILENCE_LUFS:g} LUFS); cannot learn a profile from it")
    width = {r: float(v[0]) for r, v in width_by_region(feats).items()}
    return {
        "ltas_db": third_octave_ltas_db(stereo, sr),
        "plr_db": float(feats.plr_db[0]),
        "lra_lu": float(feats.lra_lu[0]),
        "loudness_lufs": loud,
        "width": width,
    }


def learn_profile(paths: Sequence[str | Path], *, name: str, description: str = "") -> GenreProfile:
    """Learn a :class:`GenreProfile` from reference mixes (files or folders of files).

    Per file: level-normalised 1/3-octave LTAS (:func:`third_octave_ltas_db`, true 1/3-octave
    bands from the FFT), PLR, LRA, integrated loudness and side fraction per width region. The
    profile is the average over files: spectra are averaged in dB (each file counts equally
    whatever its level), the other numbers arithmetically. ``vocal_margin_db`` is
    :data:`DEFAULT_VOCAL_MARGIN_DB` (2 dB): it cannot be measured from a stereo mix.
    ``source`` is ``"learned from: <file names>"``.

    Raises
    ------
    ParameterError
        No files, empty name, a file shorter than 3 s or silent.
    AudioFileError
        A file is missing or unreadable.
    """
    name = str(name).strip()
    if not name:
        raise OptionError(lambda k: f"{k('name')}: give the profile a non-empty name")
    files = expand_paths(list(paths))
    if not files:
        raise ParameterError("give at least one reference file")
    stats = []
    for p in files:
        x, sr = read_audio(p)
        stats.append(_reference_stats(x, sr, str(p)))
    ltas = np.mean([s["ltas_db"] for s in stats], axis=0)
    ltas = normalise_level(ltas, THIRD_OCTAVE_HZ)
    return GenreProfile(
        name=name,
        description=str(description),
        source="learned from: " + ", ".join(Path(p).name for p in files),
        third_octave_hz=THIRD_OCTAVE_HZ.copy(),
        ltas_db=ltas,
        plr_db=round(float(np.mean([s["plr_db"] for s in stats])), 2),
        lra_lu=round(float(np.mean([s["lra_lu"] for s in stats])), 2),
        loudness_lufs=round(float(np.mean([s["loudness_lufs"] for s in stats])), 2),
        width={r: round(float(np.mean([s["width"][r] for s in stats])), 3) for r in WIDTH_REGIONS_HZ},
        vocal_margin_db=DEFAULT_VOCAL_MARGIN_DB,
    )


def write_profile(profile: GenreProfile, path: str | Path, *, force: bool = False,
                  inputs: Iterable[str | Path] = ()) -> Path:
    """Write ``profile`` as JSON to ``path`` atomically (loadable by :func:`objectives.load_profile`).

    Raises
    ------
    ParameterError
        ``path`` exists and not ``force``, is a folder, its folder is missing, or it is one of ``inputs``.
    """
    path = Path(path)
    check_profile_output(path, force=force, inputs=inputs)
    return write_text_atomic(path, json.dumps(profile.to_dict(), indent=1) + "\n")


_PATH_FLAG = {"path": "-o"}  # evomix profile's output file


def check_profile_output(path: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()) -> None:
    """Fail early if a profile cannot be written to ``path`` (see :func:`write_profile`)."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(lambda k: f"{k('path')}: {path} is a folder; "
                                    f"give a file name such as {path / 'profile.json'}", flags=_PATH_FLAG)
    if not path.parent.exists():  # below a file: check_creatable names it
        check_creatable(path, keyword="path", flags=_PATH_FLAG, folder=False)
        raise OptionError(lambda k: f"{k('path')}: folder {path.parent} does not exist", flags=_PATH_FLAG)
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise OptionError(lambda k: f"{k('path')}: {path} is one of the reference files; "
                                    f"refusing to overwrite it", flags=_PATH_FLAG)
    if path.exists() and not force:
        raise OptionError(lambda k: f"{k('path')}: {path} exists; pass {k('force')} to replace it", flags=_PATH_FLAG)
    check_creatable(path, keyword="path", flags=_PATH_FLAG, folder=False)


# --------------------------------------------------------------------------- similarity


def genre_distance(features: Features, profile: GenreProfile, *, use_lra: bool = True) -> float:
    """``genre(features, profile) + 0.5 max(0, |PLR - PLR_p| - 1.5) + 0.25 max(0, |LRA - LRA_p| - 2)``.

    The first term is the ``genre`` objective (dB RMS spectral distance + 10 x mean width
    difference); the dynamics terms are those of the ``loudness`` objective. ``use_lra=False``
    drops the LRA term (signals shorter than 3 s have no LRA).
    """
    d = float(genre(features, Target(profile=profile))[0])
    d += 0.5 * max(0.0, abs(float(features.plr_db[0]) - profile.plr_db) - 1.5)
    if use_lra:
        d += 0.25 * max(0.0, abs(float(features.lra_lu[0]) - profile.lra_lu) - 2.0)
    return d


def _resolve_profiles(profiles) -> list[GenreProfile]:
    if profiles is None:
        return [load_profile(n) for n in builtin_genres()]
    return [p if isinstance(p, GenreProfile) else load_profile(p) for p in profiles]


def genre_similarity(x: np.ndarray, sr: int, *, profiles=None,
                     features: Features | None = None) -> list[tuple[str, float]]:
    """Rank genre profiles by how close the mix ``x`` is to them, closest first.

    ``distance = genre + 0.5 max(0, |PLR - PLR_p| - 1.5) + 0.25 max(0, |LRA - LRA_p| - 2)``

    where ``genre`` = RMS dB difference of the level-normalised 1/3-octave LTAS (40 Hz–16 kHz)
    + 10 x mean |side fraction difference| over the low/mid/high regions (the ``genre``
    objective) and the PLR/LRA terms are the dynamics terms of the ``loudness`` objective
    (dB / LU; the first 1.5 dB of PLR and 2 LU of LRA difference are free). The absolute
    loudness is not compared (a mix can be turned up or down). Signals shorter than 3 s skip the
    LRA term; silence (below -70 LUFS) returns ``[]``.

    Parameters
    ----------
    x : (ch, samples), ch 1 or 2.  sr : Hz.
    profiles : None (every built-in profile) or an iterable of GenreProfile / names / JSON paths.
    features : optional, ``features_from_audio(x, sr)`` if already computed.

    Returns
    -------
    list of (profile name, distance), ascending distance.
    """
    feats = features if features is not None else features_from_audio(x, sr)
    if float(feats.loudness_lufs[0]) <= _SILENCE_LUFS:
        return []
    n = np.asarray(x).shape[-1]
    use_lra = n >= MIN_REFERENCE_S * sr
    out = [(p.name, genre_distance(feats, p, use_lra=use_lra)) for p in _resolve_profiles(profiles)]
    return sorted(out, key=lambda t: t[1])


# --------------------------------------------------------------------------- synthesis


def _bin_amplitudes(profile: GenreProfile, freqs: np.ndarray) -> np.ndarray:
    """Per-bin amplitude whose power density gives the profile's 1/3-octave levels.

    A 1/3-octave band at f is 0.2316 f wide, so the density is 10^(L(f)/10) / (0.2316 f), with L
    interpolated linearly in log frequency (held constant beyond the end centres); 0 below 20 Hz
    and above 20 kHz.
    """
    f = np.maximum(freqs, 1.0)
    level = np.interp(np.log(f), np.log(profile.third_octave_hz), profile.ltas_db)
    density = 10.0 ** (level / 10.0) / (0.2316 * f)
    density[(freqs < 20.0) | (freqs > 20000.0)] = 0.0
    return np.sqrt(density)


def _bin_width(profile: GenreProfile, freqs: np.ndarray, sr: int) -> np.ndarray:
    """Target side fraction per bin: the region of the analysis band the bin falls in."""
    grid = band_grid(sr)
    band = np.clip(np.searchsorted(grid.edges_hz, freqs, side="right") - 1, 0, grid.n_bands - 1)
    centre = grid.centres_hz[band]
    w = np.empty(freqs.size)
    for r, (lo, hi) in WIDTH_REGIONS_HZ.items():
        w[(centre >= lo) & (centre < hi)] = profile.width[r]
    w[centre < WIDTH_REGIONS_HZ["low"][0]] = profile.width["low"]
    w[centre >= WIDTH_REGIONS_HZ["high"][1]] = profile.width["high"]
    return np.clip(w, 0.0, 1.0)


def _predicted_lra(gain_db: np.ndarray, rate: float) -> float:
    """LRA of a stationary carrier under a slow gain curve (dB at ``rate`` Hz), Tech 3342 style."""
    p = 10.0 ** (gain_db / 10.0)
    win, hop = int(round(SHORT_TERM_WINDOW_S * rate)), max(1, int(round(GATING_HOP_S * rate)))
    c = np.concatenate([[0.0], np.cumsum(p)])
    starts = np.arange(0, p.size - win + 1, hop)
    st = 10.0 * np.log10(np.maximum((c[starts + win] - c[starts]) / win, _FLOOR))
    st = st[st >= 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0]
    return float(np.percentile(st, 95) - np.percentile(st, 10)) if st.size >= 2 else 0.0


def _lra_envelope(lra_lu: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Gain (n,) for a loudness range of ``lra_lu``: 2 s steps, smoothed by 0.4 s crossfades.

    Step levels are ``-D u^p`` for u evenly spaced in [0, 1] (shuffled). ``p = 2`` first: most
    of the time near full level with a few quieter passages, as in loud songs, which keeps the
    loudest part only ≈ 1.5–2.5 dB above the integrated loudness; if that shape cannot reach
    ``lra_lu`` (the quiet steps fall under the gates first), ``p = 1`` then ``p = 0.5`` (more
    quiet passages, as in dynamic music). ``D`` is the smallest depth whose predicted LRA
    reaches ``lra_lu`` (scan 0–60 dB, then bisection).
    """
    rate = 100.0  # Hz, control rate
    m = max(1, int(round(n / sr * rate)))
    n_seg = max(4, int(round(n / sr / 2.0)))
    order = rng.permutation(n_seg)
    k = int(0.4 * rate)
    kern = np.hanning(2 * k + 1)
    kern /= kern.sum()
    t_ctrl = (np.arange(m) + 0.5) / rate
    best = (-1.0, None)
    for power in (2.0, 1.0, 0.5):
        levels = -(np.linspace(1.0, 0.0, n_seg) ** power)[order]
        shape = levels[np.minimum((np.arange(m) * n_seg) // m, n_seg - 1)]
        shape = np.convolve(np.pad(shape, k, mode="edge"), kern, mode="valid")
        if lra_lu <= 0.05:
            return np.ones(n)
        grid = np.linspace(0.0, 60.0, 121)
        got = np.array([_predicted_lra(d * shape, rate) for d in grid])
        i = int(np.argmax(got))
        if got[i] > best[0]:
            best = (got[i], grid[i] * shape)
        if got[i] >= lra_lu:
            i = int(np.argmax(got >= lra_lu))
            lo, hi = grid[max(i - 1, 0)], grid[i]
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _predicted_lra(mid * shape, rate) < lra_lu else (lo, mid)
            best = (lra_lu, hi * shape)
            break
    return 10.0 ** (np.interp(np.arange(n) / sr, t_ctrl, best[1]) / 20.0)


def _loudness_of_spectrum(spec: np.ndarray, freqs: np.ndarray, n: int, sr: int) -> float:
    """Integrated loudness (LUFS) of the periodic stationary signal irfft(spec) (2, bins), via Parseval."""
    w = np.full(freqs.size, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    ms = (w * k_weighting_power(freqs, sr) * np.abs(spec) ** 2).sum(axis=-1) / n**2  # (2,)
    return -0.691 + 10.0 * np.log10(max(float(ms.sum()), _FLOOR))


def synthesize_profile_example(profile: GenreProfile, *, sr: int = 44100, duration_s: float = 20.0,
                               seed: int = 0) -> np.ndarray:
    """A stereo test signal with the profile's spectrum, width and (approximately) dynamics.

    * Spectrum: a periodic carrier (period ≈ 4 s, repeated to ``duration_s``) in which every FFT
      bin has the amplitude of the profile's 1/3-octave LTAS (interpolated linearly in log
      frequency, density ``10^(L/10) / (0.2316 f)``) and a random phase.
    * Width: L and R share each bin's amplitude; their phase difference ``±acos(1 - 2 w)`` makes
      side / (mid + side) = ``w`` exactly, ``w`` being the profile's width for the region the
      bin's analysis band belongs to.
    * LRA: a slow gain curve of 2 s steps (0.4 s crossfades), mostly near full level with a few
      quieter passages, its depth set so the Tech 3342 LRA of a stationary signal under it is
      the profile's (see ``_lra_envelope``).
    * PLR: set on the carrier before the gain curve. Below the random-phase noise's own
      (≈ 11–14 dB with the gain curve): crest-factor reduction, i.e. clipping with the magnitudes
      and L/R phase differences restored after each pass, so the spectrum and width stay exact.
      Above it: a spectrally matched click (all bins in phase) once per period, at the loudest
      point of the gain curve. Both are checked with the BS.1770 meter (true peak, gated loudness).
    * Level: the profile's ``loudness_lufs``, lowered if needed to keep the true peak <= -0.5 dBTP.

    Typical accuracy (10 s at 44.1 kHz): LTAS within 0.4 dB RMS, PLR within 0.3 dB, LRA within
    0.5 LU, width within 0.01; the ``genre_similarity`` distance to its own profile is ≈ 0.2.

    Parameters
    ----------
    profile : GenreProfile.  sr : Hz.  duration_s : >= 4 s.  seed : same seed -> same samples.

    Returns
    -------
    (2, samples) float64.
    """
    if not duration_s >= 4.0:
        raise ParameterError(f"duration_s must be >= 4 s (LRA needs 3 s windows), got {duration_s}")
    sr = int(sr)
    n = int(round(duration_s * sr))
    period = min(n, scipy.fft.next_fast_len(int(4.0 * sr), real=True))
    reps = -(-n // period)
    rng = np.random.default_rng(seed)
    freqs = np.fft.rfftfreq(period, 1.0 / sr)
    amp = _bin_amplitudes(profile, freqs)
    w = _bin_width(profile, freqs, sr)
    half = 0.5 * np.arccos(1.0 - 2.0 * w) * rng.choice([-1.0, 1.0], size=freqs.size)
    rot = np.stack([np.exp(1j * half), np.exp(-1j * half)])  # (2, bins): L and R phase offsets
    phase = np.exp(2j * np.pi * rng.random(freqs.size))
    phase[0] = 1.0
    env = _lra_envelope(profile.lra_lu, n, sr, rng)[None]  # (1, n)
    t_loud = int(np.argmax(env[0]))

    def build(ph):
        return amp[None] * rot * ph[None]  # (2, bins)

    def to_time(spec):
        return scipy.fft.irfft(spec, period, axis=-1)  # (2, period)

    def full(carrier):
        return np.tile(carrier, (1, reps))[:, :n] * env

    def plr_of(carrier):
        y = full(carrier)
        return float(true_peak_dbtp(y, sr) - integrated_loudness(y, sr))

    amp *= 10.0 ** ((-20.0 - _loudness_of_spectrum(build(phase), freqs, period, sr)) / 20.0)  # above the gates
    loud = _loudness_of_spectrum(build(phase), freqs, period, sr)  # fixed: magnitudes never change
    target = float(profile.plr_db)
    carrier = to_time(build(phase))
    natural = plr_of(carrier)
    if target < natural:
        # clip 2 dB below the wanted peak (faster convergence), restore magnitudes and L/R phase
        # offsets; when the sample peak is `c` dB above the carrier loudness, check the PLR of the
        # whole signal and correct `c` by the error (true-peak overshoot, gain curve)
        c = target - (natural - (20.0 * np.log10(np.abs(carrier).max()) - loud))
        for _ in range(_MAX_CLIP_ITER):
            thr = 10.0 ** ((loud + c - 2.0) / 20.0)
            Y = scipy.fft.rfft(np.clip(carrier, -thr, thr), axis=-1)
            phase = np.exp(1j * np.angle((Y * np.conj(rot)).sum(axis=0)))
            phase[0] = 1.0
            carrier = to_time(build(phase))
            if 20.0 * np.log10(np.abs(carrier).max()) - loud <= c:
                err = plr_of(carrier) - target
                if err <= 0.3:
                    break
                c -= err
    elif target > natural:
        # a click with the carrier's spectrum; its energy is negligible, so only the true peak near
        # t_loud changes with its gain g (bisection on a short window there)
        click = to_time(build(np.exp(-2j * np.pi * freqs * (t_loud % period) / sr)))
        y0 = full(carrier)
        tp0, lufs0 = float(true_peak_dbtp(y0, sr)), float(integrated_loudness(y0, sr))
        win = slice(max(0, t_loud - 4096), min(n, t_loud + 4096))
        near_c, near_k = full(carrier)[:, win], full(click)[:, win]
        lo, hi = 0.0, 1.0
        for _ in range(40):
            g = 0.5 * (lo + hi)
            if max(tp0, float(true_peak_dbtp(near_c + g * near_k, sr))) - lufs0 < target:
                lo = g
            else:
                hi = g
        carrier = carrier + 0.5 * (lo + hi) * click
    y = full(carrier)
    lufs = float(integrated_loudness(y, sr))
    tp = float(true_peak_dbtp(y, sr))
    goal = min(profile.loudness_lufs, -0.5 - (tp - lufs))
    return y * 10.0 ** ((goal - lufs) / 20.0)
