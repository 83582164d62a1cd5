"""Spectral helpers shared by objectives: long-term spectra, mid/side, K-weighted band shares."""
from __future__ import annotations

import functools

import numpy as np

from evomix.core.constants import K_WEIGHTING_SR, POWER_FLOOR
from evomix.core.features import Features
from evomix.core.meter import k_weighting_power

THIRD_OCTAVE_HZ = 1000.0 * 2.0 ** (np.arange(-15, 13) / 3.0)  # 31.5 Hz .. 16 kHz, 28 centres


def third_octave_levels_db(band_power: np.ndarray, features: Features) -> np.ndarray:
    """Band powers -> the equivalent 1/3-octave band level at each band centre.

    A band's power spread evenly over its width gives a power density; a 1/3-octave band at the
    centre f is 0.2316 f wide (2^(1/6) - 2^(-1/6)), so its level is density * 0.2316 f.

    Source: the width of a base-2 1/3-octave band, edges at ``f 2^(+-1/6)``; spreading a band's
    power evenly over its width is a choice (the analysis bands are about 1.3 ERB wide).

    Parameters
    ----------
    band_power : np.ndarray, shape (..., B), float >= 0
        Power per analysis band, mean square (full-scale sine = 0.5).
    features : Features
        Gives the band layout: ``band_edges_hz`` (B + 1,) and ``bands_hz`` (B,), Hz.

    Returns
    -------
    levels_db : np.ndarray, shape (..., B), float64, dB re full-scale mean square
        About -200 dB for a silent band (power floored at ``POWER_FLOOR``).
    """
    width = np.diff(features.band_edges_hz)  # (B,)
    density = band_power / width
    return 10.0 * np.log10(np.maximum(density * 0.2316 * features.bands_hz, POWER_FLOOR))


def long_term_spectrum_db(features: Features) -> np.ndarray:
    """The mix's long-term average spectrum as 1/3-octave-equivalent levels.

    The band powers averaged over both channels and every frame held, then
    :func:`third_octave_levels_db`.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; reads ``mix_power`` (pop, 2, B, T).

    Returns
    -------
    ltas_db : np.ndarray, shape (pop, B), float64, dB re full-scale mean square
    """
    ltas = features.mix_power.mean(axis=(1, 3))  # (pop, 2, B, T) -> (pop, B)
    return third_octave_levels_db(ltas, features)


def normalise_level(levels_db: np.ndarray, bands_hz: np.ndarray, lo_hz: float = 40.0, hi_hz: float = 16000.0):
    """Subtract the mean level over the bands in ``[lo_hz, hi_hz]`` (a level-normalised spectrum).

    Parameters
    ----------
    levels_db : np.ndarray, shape (..., B), float, dB
        Band levels, e.g. from :func:`third_octave_levels_db`.
    bands_hz : np.ndarray, shape (B,), float, Hz
        Band centres; at least one must lie in ``[lo_hz, hi_hz]``.
    lo_hz, hi_hz : float, Hz, default 40 and 16000
        The range whose mean is removed (a choice: the range the genre profiles are compared over).

    Returns
    -------
    normalised_db : np.ndarray, shape (..., B), float64, dB
        ``levels_db`` minus its mean over the range; that mean is 0 afterwards.
    """
    sel = (bands_hz >= lo_hz) & (bands_hz <= hi_hz)
    return levels_db - levels_db[..., sel].mean(axis=-1, keepdims=True)


def side_fraction(power_lr: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Side energy / (mid + side) energy from channel powers and cross power.

    With M = (L + R) / 2 and S = (L - R) / 2: |M|^2 = (PL + PR + 2C) / 4, |S|^2 = (PL + PR - 2C) / 4,
    so the fraction is (PL + PR - 2C) / (2 (PL + PR)), in [0, 1]: 0 = mono, 0.5 = uncorrelated,
    1 = out of phase.

    Source: the mid/side decomposition above; the fraction as a width measure is a choice.

    Parameters
    ----------
    power_lr : np.ndarray, float >= 0
        Either shape (..., 2, n) with L and R powers on the axis before the last (when it has one
        axis more than ``cross``), or the sum ``PL + PR`` with the shape of ``cross``.
    cross : np.ndarray, float
        ``Re(L R*)`` summed like the powers, shape (..., n) (or the shape of ``power_lr``).

    Returns
    -------
    fraction : np.ndarray, shape of ``cross``, float64 in [0, 1]
        0 for silence (no power).
    """
    total = power_lr[..., 0, :] + power_lr[..., 1, :] if power_lr.ndim == cross.ndim + 1 else power_lr
    side = np.maximum(total - 2.0 * cross, 0.0)
    return side / np.maximum(2.0 * total, POWER_FLOOR)


def k_weights(features: Features) -> np.ndarray:
    """K-weighting power gain at each band centre (pre-filter and RLB high-pass).

    Source: ITU-R BS.1770-4 Annex 1 (:func:`evomix.core.meter.k_weighting_power`), evaluated at
    48 kHz whatever the session's rate (at 44.1 or 96 kHz it differs by less than 0.03 dB).

    Parameters
    ----------
    features : Features
        Gives the band centres ``bands_hz`` (B,), Hz.

    Returns
    -------
    k : np.ndarray, shape (B,), float64 > 0, read-only
        Linear power gain (about 0.05 at 20 Hz, 1.17 at 1 kHz, 2.5 at 10 kHz), cached per layout.
    """
    return _k_weights_at(tuple(np.asarray(features.bands_hz, dtype=float).tolist()))


@functools.lru_cache(maxsize=16)
def _k_weights_at(bands_hz: tuple) -> np.ndarray:
    """:func:`k_weights` for one band layout, computed once (read-only)."""
    k = k_weighting_power(np.array(bands_hz), K_WEIGHTING_SR)
    k.setflags(write=False)
    return k
