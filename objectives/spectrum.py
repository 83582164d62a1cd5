"""Spectral helpers shared by objectives: long-term spectra, mid/side, K-weighted band shares."""
from __future__ import annotations

import functools

import numpy as np

from evomix.core.features import Features
from evomix.core.meter import k_weighting_power

_FLOOR = 1e-20
THIRD_OCTAVE_HZ = 1000.0 * 2.0 ** (np.arange(-15, 13) / 3.0)  # 31.5 Hz .. 16 kHz, 28 centres


def third_octave_levels_db(band_power: np.ndarray, features: Features) -> np.ndarray:
    """Band powers (..., B) -> equivalent 1/3-octave band levels at each band centre, dB (..., B).

    A band's power spread evenly over its width gives a power density; a 1/3-octave band at the
    centre f is 0.2316 f wide (2^(1/6) - 2^(-1/6)), so its level is density * 0.2316 f.
    """
    width = np.diff(features.band_edges_hz)  # (B,)
    density = band_power / width
    return 10.0 * np.log10(np.maximum(density * 0.2316 * features.bands_hz, _FLOOR))


def long_term_spectrum_db(features: Features) -> np.ndarray:
    """The mix's long-term average spectrum as 1/3-octave-equivalent levels, dB, (pop, B)."""
    ltas = features.mix_power.mean(axis=(1, 3))  # (pop, 2, B, T) -> (pop, B)
    return third_octave_levels_db(ltas, features)


def normalise_level(levels_db: np.ndarray, bands_hz: np.ndarray, lo_hz: float = 40.0, hi_hz: float = 16000.0):
    """Subtract the mean level over bands in [lo_hz, hi_hz] (level-normalised spectrum)."""
    sel = (bands_hz >= lo_hz) & (bands_hz <= hi_hz)
    return levels_db - levels_db[..., sel].mean(axis=-1, keepdims=True)


def side_fraction(power_lr: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Side energy / (mid + side) energy from channel powers (..., 2, ...) and cross power.

    With M = (L + R) / 2 and S = (L - R) / 2: |M|^2 = (PL + PR + 2C) / 4, |S|^2 = (PL + PR - 2C) / 4,
    so the fraction is (PL + PR - 2C) / (2 (PL + PR)), in [0, 1]: 0 = mono, 0.5 = uncorrelated,
    1 = out of phase.
    """
    total = power_lr[..., 0, :] + power_lr[..., 1, :] if power_lr.ndim == cross.ndim + 1 else power_lr
    side = np.maximum(total - 2.0 * cross, 0.0)
    return side / np.maximum(2.0 * total, _FLOOR)


def k_weights(features: Features) -> np.ndarray:
    """K-weighting power gain at each band centre (B,) (BS.1770-4 pre-filter + RLB)."""
    return _k_weights_at(tuple(np.asarray(features.bands_hz, dtype=float).tolist()))


@functools.lru_cache(maxsize=16)
def _k_weights_at(bands_hz: tuple) -> np.ndarray:
    """:func:`k_weights` for one band layout, computed once (read-only)."""
    k = k_weighting_power(np.array(bands_hz), 48000)
    k.setflags(write=False)
    return k
