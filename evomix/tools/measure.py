"""Measurements of a finished audio file, for ``evomix analyze`` and the mix report.

Loudness, LRA and true peak come from ``evomix.core.meter`` (ITU-R BS.1770-4, EBU Tech 3342).
Crest factor = sample peak - RMS (dB, AES17 RMS with no +3 dB offset). Spectral tilt = the slope
of a least-squares line through the long-term 1/3-octave-equivalent levels against log2(f),
100 Hz–10 kHz (dB/octave of band levels, in which pink noise is flat; Pestana et al. 2013 report ≈ −4.5…−5
dB/octave on per-Hz FFT spectra, i.e. ≈ −1.5…−2 here).
Stereo width = side / (mid + side) energy (0 mono, 0.5 uncorrelated, 1 out of phase);
correlation = Pearson correlation of L and R (1 mono, 0 uncorrelated, -1 out of phase).
Genre similarity: distance to each genre profile, ``genre`` objective + PLR/LRA terms of the
``loudness`` objective (``evomix.tools.profile.genre_similarity``), closest first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyloudnorm as pyln

from evomix.core.constants import GATING_BLOCK_S
from evomix.core.constants import POWER_FLOOR as _FLOOR
from evomix.core.meter import (
    integrated_loudness,
    loudness_range,
    max_momentary_lufs,
    max_short_term_lufs,
    sample_peak_db,
    true_peak_dbtp,
)
from evomix.engine.bands import band_grid, band_powers
from evomix.errors import AudioFileError
from evomix.io.audio import read_audio
from evomix.tools.profile import MIN_REFERENCE_S, features_from_audio, genre_distance, genre_similarity
from objectives.genre import GenreProfile, load_profile

MIN_AUDIO_S = GATING_BLOCK_S  # s: one BS.1770 gating block, the least audio a loudness measurement needs


def spectral_tilt_db_per_octave(x: np.ndarray, sr: int) -> float:
    """Slope of the long-term 1/3-octave-equivalent spectrum, 100 Hz–10 kHz, dB/octave; x (2, n)."""
    grid = band_grid(sr)
    p, _ = band_powers(x, grid)  # (2, B, T)
    ltas = p.mean(axis=(0, 2))
    width = np.diff(grid.edges_hz)
    lvl = 10 * np.log10(np.maximum(ltas / width * 0.2316 * grid.centres_hz, _FLOOR))
    sel = (grid.centres_hz >= 100) & (grid.centres_hz <= min(10000, 0.45 * sr))
    slope, _ = np.polyfit(np.log2(grid.centres_hz[sel]), lvl[sel], 1)
    return float(slope)


def measure_audio(x: np.ndarray, sr: int) -> dict:
    """Measure a (ch, samples) signal; mono is measured as one channel."""
    x = np.asarray(x, dtype=np.float64)
    stereo = x if x.shape[0] == 2 else np.repeat(x, 2, axis=0) / np.sqrt(2.0)
    rms = np.sqrt(np.mean(x**2))
    peak = float(sample_peak_db(x))
    left, right = stereo
    sl, sr_ = left.std(), right.std()
    corr = float(np.mean((left - left.mean()) * (right - right.mean())) / (sl * sr_)) if sl > 0 and sr_ > 0 else 1.0
    mid, side = (left + right) / 2, (left - right) / 2
    e_side, e_mid = float(np.sum(side**2)), float(np.sum(mid**2))
    return {
        "sr": int(sr),
        "channels": int(x.shape[0]),
        "duration_s": x.shape[-1] / sr,
        "integrated_lufs": float(integrated_loudness(x, sr)),
        "loudness_range_lu": float(loudness_range(x, sr)) if x.shape[-1] >= 3 * sr else None,
        "max_momentary_lufs": float(max_momentary_lufs(x, sr)),
        "max_short_term_lufs": float(max_short_term_lufs(x, sr)) if x.shape[-1] >= 3 * sr else None,
        "sample_peak_dbfs": peak,
        "true_peak_dbtp": float(true_peak_dbtp(x, sr)),
        "crest_factor_db": peak - 20 * np.log10(max(rms, 1e-10)),
        "spectral_tilt_db_per_oct": spectral_tilt_db_per_octave(stereo, sr),
        "stereo_width": e_side / max(e_mid + e_side, _FLOOR),
        "lr_correlation": corr,
    }


def genre_measurements(x: np.ndarray, sr: int, *, profiles=None, genre=None) -> dict:
    """How close ``x`` (ch, samples) is to genre profiles (see ``evomix.tools.profile.genre_similarity``).

    Returns ``{"genre_similarity": [{"genre": name, "distance": d}, ...]}`` closest first over
    ``profiles`` (None: the built-in ones) and, when ``genre`` (a GenreProfile, name or JSON path) is given,
    ``"genre_distance"`` to it. Distances are dB-like (spectral dB RMS + width and dynamics
    penalties); silence gives ``[]`` and ``None``.
    """
    if genre is not None and not isinstance(genre, GenreProfile):
        genre = load_profile(genre)
    feats = features_from_audio(x, sr)
    ranked = genre_similarity(x, sr, profiles=profiles, features=feats)
    out = {"genre_similarity": [{"genre": n, "distance": float(d)} for n, d in ranked]}
    if genre is not None:
        use_lra = np.asarray(x).shape[-1] >= MIN_REFERENCE_S * sr
        out["genre_distance"] = float(genre_distance(feats, genre, use_lra=use_lra)) if ranked else None
    return out


def independent_loudness(x: np.ndarray, sr: int) -> float | None:
    """Integrated loudness of ``x`` (ch, samples) by pyloudnorm, an implementation of BS.1770-4
    independent of evomix's own vectorized meter (:mod:`evomix.core.meter`), LUFS; None for silence.

    ``evomix analyze`` reports both, so a user can see the two meters agree on a finished file
    (within 0.1 LU: BS.1770's conformance tolerance). Source: C. J. Steinmetz and J. D. Reiss,
    "pyloudnorm: A simple yet flexible loudness meter in Python", 150th AES Convention, 2021.
    """
    value = pyln.Meter(int(sr)).integrated_loudness(np.ascontiguousarray(np.asarray(x, dtype=np.float64).T))
    return float(value) if np.isfinite(value) else None


def measure_file(path: str | Path, *, genre=None, profiles=None) -> dict:
    """Measure one audio file: :func:`measure_audio`, PLR and :func:`genre_measurements`.

    genre : GenreProfile, name, JSON path or None, adds ``genre_distance``.  profiles : GenreProfiles to rank
    (None: the built-in ones).
    """
    x, sr = read_audio(Path(path))
    need = int(round(MIN_AUDIO_S * sr))
    if x.shape[-1] < need:
        raise AudioFileError(f"{path}: {x.shape[-1] / sr:.3f} s of audio is shorter than one {MIN_AUDIO_S} s loudness "
                             f"block (BS.1770); measuring it needs at least {MIN_AUDIO_S} s "
                             f"({need} samples at {sr} Hz)")
    d = {"file": str(path)}
    d.update(measure_audio(x, sr))
    d["integrated_lufs_pyloudnorm"] = independent_loudness(x, sr)
    d["plr_db"] = d["true_peak_dbtp"] - d["integrated_lufs"]
    d.update(genre_measurements(x, sr, profiles=profiles, genre=genre))
    return d
