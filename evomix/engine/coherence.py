"""Correlated stems: the part of the mix's power that a sum in power misses.

The fast tier adds stems in power (``sum_s |g_s X_s|^2``), which is right for independent stems.
Stems that carry the same part — a doubled bass, a kick recorded twice, a DI and its amp, a
vocal and its double — add in amplitude: two equal coherent stems are 3 dB louder than their power
sum. ``|sum_s g_s X_s|^2 = sum_s |g_s X_s|^2 + sum_{s != s'} g_s g_s' Re(X_s X_s'^*)``: the cross
terms are what is missing.

Per pair of stems, channel and band, the long-term coherence
``rho = sum_t Re(X_s X_s'^*) / sqrt(sum_t |X_s|^2 sum_t |X_s'|^2)`` (in [-1, 1]) is measured once
from the stems' spectra at ``COHERENCE_FRAMES`` frames spread over the song. Pairs whose coherence,
weighted by their power, exceeds ``COHERENT_PAIR_RHO`` are kept, with their cross term per frame
modelled as ``rho sqrt(P_s P_s')`` from the stems' own band powers (exact for a pair whose
coherence does not change over the song). In the fast tier a candidate's gains turn it into
``2 sqrt(w_s w_s') rho sqrt(P_s P_s')`` (the EQs' phase difference between the two is neglected).

Source: the power of a sum of correlated signals, e.g. J. S. Bendat & A. G. Piersol, *Random Data*,
4th ed., Wiley 2010, ch. 5 (cross-spectral density, coherence).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from evomix.engine.bands import BandGrid, _bin_weights, _window

COHERENCE_FRAMES = 64  # frames spread over the song on which each pair's coherence is measured
COHERENT_PAIR_RHO = 0.15  # power-weighted coherence above which a pair's cross term is modelled


def coherence_frames(n_frames: int) -> np.ndarray:
    """(F,) frame indices spread evenly over the song."""
    return np.unique(np.linspace(0, n_frames - 1, min(COHERENCE_FRAMES, n_frames)).round().astype(int))


def spectra_at(x: np.ndarray, grid: BandGrid, frames: np.ndarray) -> np.ndarray:
    """Short-time spectra of ``x`` (2, samples) at the given frames -> (2, F, bins) complex64
    (the analysis STFT, ``engine.bands.frame_spectra``, of just those frames)."""
    hop, n_fft = grid.hop, grid.n_fft
    n = x.shape[-1]
    out = np.empty((x.shape[0], frames.size, n_fft // 2 + 1), np.complex64)
    seg = np.zeros((x.shape[0], n_fft), np.float32)
    win = _window(n_fft).astype(np.float32)
    for j, t in enumerate(frames):  # frame t covers samples [t hop - hop, t hop + hop)
        a = t * hop - hop
        seg[:] = 0.0
        lo, hi = max(a, 0), min(a + n_fft, n)
        if hi > lo:
            seg[:, lo - a : hi - a] = x[:, lo:hi]
        out[:, j] = scipy.fft.rfft(seg * win, axis=-1)
    return out


def coherent_pairs(spectra: np.ndarray, band_power: np.ndarray, grid: BandGrid) -> tuple[np.ndarray, np.ndarray]:
    """The correlated pairs and their cross term per frame.

    Parameters
    ----------
    spectra : (stems, 2, F, bins) complex64, :func:`spectra_at` of each (centre-panned) stem.
    band_power : (stems, 2, B, T) float32, the Analysis band powers of the same stems.

    Returns
    -------
    pairs : (P, 2) int, stem indices (s < s') of the pairs kept.
    cross : (P, 2, B, T) float32, ``rho sqrt(P_s P_s')`` per channel, band and frame.
    """
    n_stems = spectra.shape[0]
    w = _bin_weights(grid)
    keep = grid.bin_band >= 0
    onehot = np.zeros((keep.size, grid.n_bands), np.float32)  # (bins, B)
    onehot[np.nonzero(keep)[0], grid.bin_band[keep]] = 1.0
    power = ((spectra.real**2 + spectra.imag**2) * w).sum(axis=2) @ onehot  # (s, 2, B) over the F frames
    pairs, cross = [], []
    for s in range(n_stems):
        for r in range(s + 1, n_stems):
            c = ((spectra[s] * np.conj(spectra[r])).real * w).sum(axis=1) @ onehot  # (2, B)
            denom = np.sqrt(power[s] * power[r])
            rho = np.where(denom > 0, c / np.maximum(denom, 1e-30), 0.0)  # (2, B)
            weight = denom / max(float(denom.sum()), 1e-30)
            if float((rho * weight).sum()) > COHERENT_PAIR_RHO:
                pairs.append((s, r))
                cross.append((rho[:, :, None] * np.sqrt(band_power[s] * band_power[r])).astype(np.float32))
    if not pairs:
        return np.zeros((0, 2), int), np.zeros((0, 2) + band_power.shape[2:], np.float32)
    return np.array(pairs, int), np.stack(cross)
