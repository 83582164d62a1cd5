"""Loudness and peak meters, vectorized over a whole population.

Array layout: batch axes first, then channel, then time on the last axis,
``x.shape == (..., ch, samples)``. Every function reduces the last two axes and
keeps the batch axes, so one call measures a whole population.

Equation numbers in ``# eq. N`` comments follow ITU-R BS.1770-4 Annex 1:
(1) mean square of the K-weighted signal, (2) loudness from channel-weighted
mean squares, (3) mean square per gating block, (4) block loudness,
(5) gated loudness over a set of blocks, (6) relative threshold,
(7) integrated (gated) loudness.

Quantities that would be ``-inf`` (silence) are returned as
:data:`SILENCE_FLOOR_DB` so downstream arithmetic (differences, penalties)
stays finite.

Source: ITU-R BS.1770-4 (2015); EBU R 128 (2014); EBU Tech 3341 (2016);
EBU Tech 3342 (2016); K-filter prototype parameters from B. De Man,
github.com/BrechtDeMan/loudness.py (as in pyloudnorm ``iirfilter.py``).
"""
from __future__ import annotations

import math

import numpy as np

from evomix.core.constants import GATING_BLOCK_S, GATING_HOP_S, GATING_OVERLAP, SHORT_TERM_WINDOW_S
from evomix.errors import ParameterError

__all__ = [
    "SILENCE_FLOOR_DB",
    "k_weighting_sos",
    "k_weighting_power",
    "block_powers",
    "gated_loudness",
    "integrated_loudness",
    "short_term_powers",
    "momentary_powers",
    "max_momentary_lufs",
    "max_short_term_lufs",
    "lra_from_short_term",
    "loudness_range",
    "true_peak_dbtp",
    "sample_peak_db",
    "plr_db",
]

#: Value (LUFS, dBTP or dBFS) returned for silence instead of ``-inf``.
SILENCE_FLOOR_DB = -200.0

# K-filter analog prototype parameters (De Man's fit to the BS.1770-4 table).
_SHELF_F0_HZ = 1681.9744509555319
_SHELF_GAIN_DB = 3.99984385397
_SHELF_Q = 0.7071752369554193
_SHELF_VB_EXPONENT = 0.499666774155  # band gain Vb = Vh ** exponent
_HIGHPASS_F0_HZ = 38.13547087613982
_HIGHPASS_Q = 0.5003270373253953

_LOUDNESS_OFFSET_DB = -0.691  # eq. 2: K-weighting gain at 997 Hz compensation
_CHUNK_ELEMENTS = 1 << 20  # elements per (rows, chunk) working buffer, 8 MB float64;
# cache-sized chunks filter faster than the whole signal at once


# --------------------------------------------------------------------------- helpers


def _check_signal(x, name="x"):
    """Return ``x`` as a float array of shape (..., ch, samples); raise otherwise."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ParameterError(
            f"{name}: expected shape (..., ch, samples), got {x.shape}; "
            "add a channel axis, e.g. x[None, :] for mono"
        )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def _check_sr(sr):
    if isinstance(sr, (bool, np.bool_)) or not (
        isinstance(sr, (int, float, np.integer, np.floating)) and sr > 0 and float(sr).is_integer()
    ):
        raise ParameterError(f"sr: expected a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


def _channel_weights(n_ch, channel_weights):
    """BS.1770-4 channel weights G_i, shape (ch,).

    Mono/stereo/3-channel (L, R, C) -> 1.0 each; 5 channels (L, R, C, Ls, Rs)
    -> [1, 1, 1, 1.41, 1.41]. Other layouts must pass weights explicitly.
    """
    if channel_weights is None:
        if n_ch <= 3:
            return np.ones(n_ch)
        if n_ch == 5:
            return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
        raise ParameterError(
            f"channel_weights: no BS.1770-4 default for {n_ch} channels; "
            "pass channel_weights with one weight per channel (LFE = 0.0)"
        )
    g = np.asarray(channel_weights, dtype=np.float64)
    if g.shape != (n_ch,):
        raise ParameterError(
            f"channel_weights: expected shape ({n_ch},) to match the channel axis, got {g.shape}"
        )
    return g


def _power_to_db(p, offset_db=0.0):
    """``offset_db + 10 log10(p)`` with silence (p <= 0) mapped to SILENCE_FLOOR_DB."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = offset_db + 10.0 * np.log10(p)
    return np.where(p > 0, np.maximum(db, SILENCE_FLOOR_DB), SILENCE_FLOOR_DB)


def _windowed_k_power(x, sr, window_s, step_s):
    """Mean square of the K-weighted signal over sliding windows.

    Filters in time chunks (state carried in ``zi``) and keeps only a running
    cumulative sum of y**2 at the window edges, so memory stays at one chunk
    per row instead of a float64 copy of the whole batch. The loop runs over
    time chunks, never over batch items or windows.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
    sr : int > 0, Hz
    window_s, step_s : float > 0, s

    Returns
    -------
    z : np.ndarray, shape (..., ch, windows), float64, linear power (FS**2)
    """
    import scipy.signal  # here, not at import: it is slow to import (evomix render never needs it at 44.1/48 kHz)
    x = _check_signal(x)
    sr = _check_sr(sr)
    if not (window_s > 0 and step_s > 0):
        raise ParameterError(
            f"window_s/step_s: expected positive durations in s, got {window_s!r}/{step_s!r}"
        )
    window_n = int(round(window_s * sr))
    hop_n = int(round(step_s * sr))
    if window_n < 1 or hop_n < 1:
        raise ParameterError(
            f"window_s/step_s: {window_s} s / {step_s} s is shorter than one sample at {sr} Hz"
        )
    n = x.shape[-1]
    if n < window_n:
        raise ParameterError(
            f"x: {n / sr:.3f} s of audio is shorter than one {window_s} s window; "
            "pad the signal or use a shorter window"
        )
    batch_shape = x.shape[:-1]  # (..., ch)
    rows = x.reshape(-1, n)  # (..., ch, n) -> (rows, n), a view when contiguous
    n_rows = rows.shape[0]
    n_win = (n - window_n) // hop_n + 1
    lo = np.arange(n_win) * hop_n  # window start, index into cumulative sum C
    hi = lo + window_n  # window end (exclusive); C(t) = sum_{s<t} y[s]**2

    sos = k_weighting_sos(sr)
    zi = np.zeros((sos.shape[0], n_rows, 2))
    c_lo = np.zeros((n_rows, n_win))  # C(0) = 0 stays for windows starting at 0
    c_hi = np.zeros((n_rows, n_win))
    total = np.zeros((n_rows, 1))
    chunk = max(4096, _CHUNK_ELEMENTS // max(n_rows, 1))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        y, zi = scipy.signal.sosfilt(sos, rows[:, a:b], axis=-1, zi=zi)  # (rows, b - a)
        np.square(y, out=y)
        np.cumsum(y, axis=-1, out=y)
        y += total  # y[:, k] = C(a + k + 1)
        total = y[:, -1:].copy()
        for edges, out in ((lo, c_lo), (hi, c_hi)):  # edges t in (a, b] live in this chunk
            i0, i1 = np.searchsorted(edges, [a + 1, b + 1])
            if i1 > i0:
                out[:, i0:i1] = y[:, edges[i0:i1] - a - 1]
    # eq. 1 / eq. 3: mean square per window; clip round-off below zero
    z = np.maximum(c_hi - c_lo, 0.0) / window_n  # (rows, windows)
    return z.reshape(*batch_shape, n_win)  # (rows, windows) -> (..., ch, windows)


def _window_loudness(z, channel_weights):
    """Per-window loudness (eq. 4), shape (..., windows), LUFS; silence -> -inf."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim < 2:
        raise ParameterError(f"z: expected shape (..., ch, windows), got {z.shape}")
    g = _channel_weights(z.shape[-2], channel_weights)
    zw = np.einsum("...cw,c->...w", z, g)  # (..., ch, windows) -> (..., windows)
    with np.errstate(divide="ignore"):
        loud = _LOUDNESS_OFFSET_DB + 10.0 * np.log10(zw)  # eq. 4
    return zw, loud


# --------------------------------------------------------------------------- K-weighting


def k_weighting_sos(sr: int) -> np.ndarray:
    """K-weighting filter of BS.1770-4 as two second-order sections.

    Both stages are derived for any sample rate from their analog prototypes
    through the bilinear transform (De Man's parameters), so at 48 kHz they
    reproduce the coefficient tables of BS.1770-4 Annex 1.

    Parameters
    ----------
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    sos : np.ndarray, shape (2, 6), float64
        Rows ``[b0, b1, b2, 1, a1, a2]`` for :func:`scipy.signal.sosfilt`:
        row 0 the high-shelf pre-filter (stage 1, +4 dB above ~1.7 kHz),
        row 1 the RLB high-pass (stage 2, ~38 Hz).

    Raises
    ------
    ParameterError
        If ``sr`` is not a positive integer.

    Source: ITU-R BS.1770-4 Annex 1, Tables 1 and 2; B. De Man, loudness.py.

    Examples
    --------
    >>> k_weighting_sos(48000).round(6)[:, [0, 4, 5]].tolist()  # b0, a1, a2 per stage
    [[1.535125, -1.690659, 0.732481], [1.0, -1.990047, 0.990072]]
    """
    sr = _check_sr(sr)
    # stage 1: high shelf
    k = math.tan(math.pi * _SHELF_F0_HZ / sr)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    # stage 2: RLB high-pass (numerator 1, -2, 1 as printed in the standard)
    k = math.tan(math.pi * _HIGHPASS_F0_HZ / sr)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    highpass = [
        1.0,
        -2.0,
        1.0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _HIGHPASS_Q + k * k) / a0,
    ]
    return np.array([shelf, highpass])


def k_weighting_power(freq_hz: np.ndarray, sr: int) -> np.ndarray:
    """Power gain |H_K(f)|**2 of the K-weighting cascade.

    Parameters
    ----------
    freq_hz : np.ndarray, any shape, float in [0, sr / 2]
        Frequencies in Hz.
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    gain : np.ndarray, same shape as ``freq_hz``, float64
        Linear power gain (``10 log10`` of it is the gain in dB; about +4 dB
        at 10 kHz, about +0.69 dB at 1 kHz, -13 dB at 20 Hz).

    Source: ITU-R BS.1770-4 Annex 1 (Figs. 1-2); evaluated as
    |B(e^{jw})|**2 / |A(e^{jw})|**2 per biquad, w = 2 pi f / sr.
    """
    sos = k_weighting_sos(sr)
    w = 2.0 * np.pi * np.asarray(freq_hz, dtype=np.float64) / sr
    z1 = np.exp(-1j * w)[..., None]  # (..., 1) broadcast over the 2 sections
    z2 = z1 * z1
    num = sos[:, 0] + sos[:, 1] * z1 + sos[:, 2] * z2  # (..., sections)
    den = sos[:, 3] + sos[:, 4] * z1 + sos[:, 5] * z2
    return np.prod(np.abs(num) ** 2 / np.abs(den) ** 2, axis=-1)  # (..., sections) -> (...)


# --------------------------------------------------------------------------- loudness


def block_powers(x, sr, *, block_s=GATING_BLOCK_S, overlap=GATING_OVERLAP):
    """Mean square of the K-weighted signal per gating block.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
        Audio in full-scale units (+-1.0), batch axes first, time last.
    sr : int > 0
        Sample rate in Hz.
    block_s : float > 0, default 0.4 (``GATING_BLOCK_S``)
        Gating block duration T_g in s.
    overlap : float in [0, 1), default 0.75 (``GATING_OVERLAP``)
        Fraction of a block shared with the next; the hop is
        ``block_s * (1 - overlap)`` (100 ms by default).

    Returns
    -------
    z : np.ndarray, shape (..., ch, blocks), float64
        Mean square z_ij per channel and block (FS**2); only whole blocks
        are counted, ``blocks = (samples - block) // hop + 1``.

    Raises
    ------
    ParameterError
        If ``x`` has no channel axis, is shorter than one block, or the
        durations are invalid.

    Source: ITU-R BS.1770-4 Annex 1, eqs. 1 and 3.
    """
    if not (0.0 <= overlap < 1.0):
        raise ParameterError(f"overlap: expected a fraction in [0, 1), got {overlap!r}")
    return _windowed_k_power(x, sr, block_s, block_s * (1.0 - overlap))


def gated_loudness(z, *, channel_weights=None, absolute_gate_lufs=-70.0, relative_gate_lu=-10.0,
                   block_weights=None):
    """Integrated loudness from block mean squares with the two-stage gate.

    Parameters
    ----------
    z : np.ndarray, shape (..., ch, blocks), float >= 0
        Block mean squares, e.g. from :func:`block_powers`.
    channel_weights : np.ndarray, shape (ch,), optional
        Weights G_i; default 1.0 for up to 3 channels, [1, 1, 1, 1.41, 1.41]
        for 5 channels.
    absolute_gate_lufs : float, default -70.0
        Absolute threshold Gamma_a in LUFS.
    relative_gate_lu : float, default -10.0
        Relative threshold offset in LU, added to the loudness of the
        absolutely gated blocks.
    block_weights : np.ndarray, shape (blocks,), float >= 0, optional
        How many of the programme's blocks each block stands for (a weighted set of representative
        segments, ``evomix.engine.segments``); the means of eqs. 6 and 7 become weighted means
        (integer weights: the same as repeating each block that many times). Default: 1 each.

    Returns
    -------
    loudness_lufs : np.ndarray, shape (...), float64
        Integrated loudness in LUFS; ``SILENCE_FLOOR_DB`` (-200.0, the
        silence floor) where no block passes the gates.

    Source: ITU-R BS.1770-4 Annex 1, eqs. 4-7.
    """
    if block_weights is not None:
        return _weighted_gated_loudness(z, channel_weights, absolute_gate_lufs, relative_gate_lu,
                                        np.asarray(block_weights, dtype=np.float64))
    zw, rel_mask = _gates(z, channel_weights, absolute_gate_lufs, relative_gate_lu)
    n_rel = rel_mask.sum(axis=-1)
    p_rel = np.where(rel_mask, zw, 0.0).sum(axis=-1) / np.maximum(n_rel, 1)
    return np.where(n_rel > 0, _power_to_db(p_rel, _LOUDNESS_OFFSET_DB), SILENCE_FLOOR_DB)  # eq. 7


def _weighted_gated_loudness(z, channel_weights, absolute_gate_lufs, relative_gate_lu, w):
    """:func:`gated_loudness` with block weights ``w`` (blocks,): eqs. 5-7 with weighted means."""
    zw, loud = _window_loudness(z, channel_weights)  # (..., blocks) x2
    abs_mask = (loud > absolute_gate_lufs) & (w > 0.0)  # eq. 5
    w_abs = np.where(abs_mask, w, 0.0)
    p_abs = (w_abs * zw).sum(axis=-1) / np.maximum(w_abs.sum(axis=-1), 1e-300)  # eq. 6's mean, weighted
    gamma_r = _power_to_db(p_abs, _LOUDNESS_OFFSET_DB) + relative_gate_lu  # eq. 6
    w_rel = np.where(abs_mask & (loud > gamma_r[..., None]), w, 0.0)  # eq. 7: J_g
    total = w_rel.sum(axis=-1)
    p_rel = (w_rel * zw).sum(axis=-1) / np.maximum(total, 1e-300)
    return np.where(total > 0.0, _power_to_db(p_rel, _LOUDNESS_OFFSET_DB), SILENCE_FLOOR_DB)  # eq. 7


def _gates(z, channel_weights, absolute_gate_lufs, relative_gate_lu):
    """The channel-weighted block powers (..., blocks) and the blocks that pass both gates (bool)."""
    zw, loud = _window_loudness(z, channel_weights)  # (..., blocks) x2
    abs_mask = loud > absolute_gate_lufs  # eq. 5: J_g = {j : l_j > Gamma_a}
    n_abs = abs_mask.sum(axis=-1)
    p_abs = np.where(abs_mask, zw, 0.0).sum(axis=-1) / np.maximum(n_abs, 1)  # (...)
    gamma_r = _power_to_db(p_abs, _LOUDNESS_OFFSET_DB) + relative_gate_lu  # eq. 6
    return zw, abs_mask & (loud > gamma_r[..., None])  # eq. 7: J_g for both gates


def gated_blocks(z, *, channel_weights=None, absolute_gate_lufs=-70.0, relative_gate_lu=-10.0) -> np.ndarray:
    """Which blocks pass the two-stage gate of :func:`gated_loudness`: bool, shape (..., blocks).

    Source: ITU-R BS.1770-4 Annex 1, eqs. 5-7 (the set J_g).
    """
    return _gates(z, channel_weights, absolute_gate_lufs, relative_gate_lu)[1]


def integrated_loudness(x, sr):
    """Integrated (programme) loudness, gated.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
        Audio in full-scale units, at least 0.4 s long.
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    loudness_lufs : np.ndarray, shape (...), float64
        LUFS; ``SILENCE_FLOOR_DB`` for silence.

    Source: ITU-R BS.1770-4 Annex 1; EBU R 128 (integrated loudness).

    Examples
    --------
    >>> t = np.arange(48000 * 5) / 48000
    >>> x = np.stack([10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)] * 2)
    >>> round(float(integrated_loudness(x, 48000)), 1)
    -23.0
    """
    return gated_loudness(block_powers(x, sr))


def short_term_powers(x, sr, *, window_s=SHORT_TERM_WINDOW_S, step_s=GATING_HOP_S):
    """Mean square of the K-weighted signal over short-term windows.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
    sr : int > 0, Hz
    window_s : float > 0, default 3.0 (``SHORT_TERM_WINDOW_S``)
        Short-term window length in s (EBU Tech 3341: 3 s).
    step_s : float > 0, default 0.1 (``GATING_HOP_S``)
        Hop in s (Tech 3341/3342: update rate >= 10 Hz).

    Returns
    -------
    z : np.ndarray, shape (..., ch, windows), float64, FS**2

    Source: EBU Tech 3341 section 2.2 (short-term, S); BS.1770-4 eq. 1.
    """
    return _windowed_k_power(x, sr, window_s, step_s)


def momentary_powers(x, sr, *, window_s=GATING_BLOCK_S, step_s=GATING_HOP_S):
    """Mean square of the K-weighted signal over momentary windows.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
    sr : int > 0, Hz
    window_s : float > 0, default 0.4 (``GATING_BLOCK_S``)
        Momentary window length in s (EBU Tech 3341: 400 ms, the BS.1770-4 gating block).
    step_s : float > 0, default 0.1 (``GATING_HOP_S``)
        Hop in s (Tech 3341: update rate >= 10 Hz).

    Returns
    -------
    z : np.ndarray, shape (..., ch, windows), float64, FS**2

    Source: EBU Tech 3341 section 2.2 (momentary, M); BS.1770-4 eq. 1.
    """
    return _windowed_k_power(x, sr, window_s, step_s)


def max_momentary_lufs(x, sr):
    """Maximum momentary loudness (ungated).

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float, >= 0.4 s
    sr : int > 0, Hz

    Returns
    -------
    loudness_lufs : np.ndarray, shape (...), float64
        Max over 400 ms windows (100 ms hop) in LUFS; ``SILENCE_FLOOR_DB``
        for silence.

    Source: EBU Tech 3341 section 2.2 (Max. momentary loudness); BS.1770-4 eq. 2.
    """
    return _max_window_lufs(momentary_powers(x, sr))


def max_short_term_lufs(x, sr):
    """Maximum short-term loudness (ungated): :func:`max_momentary_lufs` over the 3 s short-term
    windows (100 ms hop) of ``x`` (at least 3 s long), in LUFS.

    Source: EBU Tech 3341 section 2.2 (Max. short-term loudness); BS.1770-4 eq. 2.
    """
    return _max_window_lufs(short_term_powers(x, sr))


def _max_window_lufs(z):
    """The loudest window's loudness (..., ch, windows) -> (...) LUFS, ungated (eq. 2 on it)."""
    zw, _ = _window_loudness(z, None)
    return _power_to_db(zw.max(axis=-1), _LOUDNESS_OFFSET_DB)


def _nan_percentile(v, q):
    """Linear-interpolation percentiles along the last axis ignoring NaN (vectorized).

    ``v`` shape (..., n), ``q`` one percentile or a tuple of them; returns shape (...) (a tuple of
    them for a tuple ``q``); NaN where a row has no value. Same as ``np.nanpercentile(v, q,
    axis=-1)`` without its per-row loop; the rows are sorted once for all ``q``.
    """
    s = np.sort(v, axis=-1)  # NaN sorts last
    k = np.sum(~np.isnan(v), axis=-1)  # (...)
    last = np.maximum(k - 1, 0)
    out = []
    for qi in (q if isinstance(q, tuple) else (q,)):
        pos = (qi / 100.0) * last
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, last)
        v0 = np.take_along_axis(s, i0[..., None], axis=-1)[..., 0]
        v1 = np.take_along_axis(s, i1[..., None], axis=-1)[..., 0]
        out.append(v0 + (pos - i0) * (v1 - v0))
    return tuple(out) if isinstance(q, tuple) else out[0]


def lra_from_short_term(z, *, channel_weights=None, window_weights=None):
    """Loudness range from short-term window mean squares.

    Parameters
    ----------
    z : np.ndarray, shape (..., ch, windows), float >= 0
        Short-term (3 s) mean squares, e.g. from :func:`short_term_powers`.
    channel_weights : np.ndarray, shape (ch,), optional
        Weights G_i (see :func:`gated_loudness`).
    window_weights : np.ndarray, shape (windows,), float >= 0, optional
        How many of the programme's windows each window stands for (representative segments,
        ``evomix.engine.segments``): the power mean and the percentiles are weighted (integer
        weights: the same as repeating each window that many times). Default: 1 each.

    Returns
    -------
    lra_lu : np.ndarray, shape (...), float64 >= 0
        95th minus 10th percentile (linear interpolation) of the short-term
        loudness values that pass an absolute gate at -70 LUFS and a relative
        gate 20 LU below their power mean; 0.0 where fewer than 2 values pass.

    Source: EBU Tech 3342 (2016), section 3 and its reference MATLAB code.
    """
    if window_weights is not None:
        return _weighted_lra(z, channel_weights, np.asarray(window_weights, dtype=np.float64))
    zw, loud = _window_loudness(z, channel_weights)  # (..., windows) x2
    abs_mask = loud >= -70.0  # absolute gate, LUFS
    n_abs = abs_mask.sum(axis=-1)
    p_abs = np.where(abs_mask, zw, 0.0).sum(axis=-1) / np.maximum(n_abs, 1)  # power mean
    gate = _power_to_db(p_abs, _LOUDNESS_OFFSET_DB) - 20.0  # relative gate, LU
    keep = abs_mask & (loud >= gate[..., None])
    vals = np.where(keep, loud, np.nan)  # (..., windows), NaN = gated out
    high, low = _nan_percentile(vals, (95.0, 10.0))
    lra = high - low
    return np.where(keep.sum(axis=-1) >= 2, lra, 0.0)


def _weighted_lra(z, channel_weights, w):
    """:func:`lra_from_short_term` with window weights ``w`` (windows,)."""
    zw, loud = _window_loudness(z, channel_weights)  # (..., windows) x2
    abs_mask = (loud >= -70.0) & (w > 0.0)  # absolute gate, LUFS
    w_abs = np.where(abs_mask, w, 0.0)
    p_abs = (w_abs * zw).sum(axis=-1) / np.maximum(w_abs.sum(axis=-1), 1e-300)  # weighted power mean
    gate = _power_to_db(p_abs, _LOUDNESS_OFFSET_DB) - 20.0  # relative gate, LU
    keep = abs_mask & (loud >= gate[..., None])
    high, low = _weighted_percentile(np.where(keep, loud, np.nan), np.where(keep, w, 0.0), (95.0, 10.0))
    return np.where(keep.sum(axis=-1) >= 2, high - low, 0.0)


def _weighted_percentile(v, w, q):
    """Percentiles along the last axis of values ``v`` (..., n) (NaN: none) repeated ``w`` (..., n)
    times each: :func:`_nan_percentile`'s linear interpolation at position ``q/100 (W - 1)`` of the
    repeated, sorted values (``W`` the total weight), a value at position ``x`` being the one whose
    cumulative weight first exceeds ``x``. Integer weights give the percentile of the repeated values."""
    order = np.argsort(v, axis=-1)  # NaN last
    s = np.take_along_axis(v, order, axis=-1)
    ws = np.take_along_axis(np.where(np.isnan(v), 0.0, w), order, axis=-1)
    cum = np.cumsum(ws, axis=-1)  # (..., n)
    total = cum[..., -1]
    out = []
    for qi in q:
        pos = (qi / 100.0) * np.maximum(total - 1.0, 0.0)  # (...)
        i0 = np.floor(pos)
        vals = []
        for x in (i0, np.minimum(i0 + 1.0, np.maximum(total - 1.0, 0.0))):
            j = np.minimum((cum <= x[..., None]).sum(axis=-1), s.shape[-1] - 1)  # first cum > x
            vals.append(np.take_along_axis(s, j[..., None], axis=-1)[..., 0])
        out.append(vals[0] + (pos - i0) * (vals[1] - vals[0]))
    return tuple(out)


def loudness_range(x, sr):
    """Loudness range (LRA) of a signal.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float, >= 3 s
    sr : int > 0, Hz

    Returns
    -------
    lra_lu : np.ndarray, shape (...), float64 >= 0
        LU; 0.0 for silence or fewer than 2 gated short-term values.

    Source: EBU Tech 3342 (2016); EBU R 128.
    """
    return lra_from_short_term(short_term_powers(x, sr))


# --------------------------------------------------------------------------- peaks


def _oversample_factor(sr, oversample):
    if not (isinstance(oversample, (int, np.integer)) and oversample >= 1):
        raise ParameterError(f"oversample: expected an integer >= 1, got {oversample!r}")
    return max(1, math.ceil(oversample * 44100.0 / sr - 1e-9))


def _abs_max(rows):
    """Max |rows| along the last axis without an |x| copy; shape (rows, n) -> (rows,)."""
    if rows.shape[-1] == 0:
        return np.zeros(rows.shape[:-1], dtype=rows.dtype)
    return np.maximum(rows.max(axis=-1), -rows.min(axis=-1))


def _kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))`` in numpy (without importing
    scipy.signal, which is slow): the windowed ideal low-pass ``cutoff sinc(cutoff m)`` (cutoff relative to
    Nyquist), times a symmetric Kaiser window, scaled to unit gain at DC. Equal to firwin within
    1e-15 (``tests/objectives/test_meter.py``)."""
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


def _polyphase_filter(factor):
    """Interpolation filter of ``resample_poly(x, factor, 1)`` split into phases.

    Returns ``H`` of shape (factor, taps) with ``H[p, j] = h[j * factor + p]``
    and the delay ``offset`` (input samples), so that the resampled signal is
    ``y[factor * i + p] = (x * H[p])[i + offset]`` (full convolution).
    """
    half_len = 10 * factor  # resample_poly default
    h = _kaiser_lowpass(2 * half_len + 1, 1.0 / factor, 5.0) * factor
    h = np.concatenate([h, np.zeros(-h.size % factor)])  # pad to a multiple of factor
    return h.reshape(-1, factor).T, half_len // factor  # (taps * factor,) -> (factor, taps)


RECONSTRUCTION_OVERSAMPLE = 16  # the reconstructed signal's peak is read at 16x
_RECONSTRUCTION_HALF_TAPS = 32  # windowed-sinc taps on each side of an interpolated point
_RECONSTRUCTION_BETA = 10.0  # Kaiser window beta of that sinc (stopband about -100 dB)
_FINDER_HALF_TAPS, _FINDER_BETA = 8, 6.0  # the 4x estimate that finds where the peaks can be
# A 4x reading misses a band-limited peak by at most cos(pi f / 4 fs): 0.55 dB at 0.9 x Nyquist,
# plus its short filter's droop there; intervals within this much of the 4x maximum are read at 16x.
_CANDIDATE_WINDOW_DB = 2.0
_CANDIDATES_PER_CHUNK = 1 << 15  # candidate samples interpolated per matrix product (16 MB float64)
_RECONSTRUCTION_BLOCK = 1 << 18  # samples per block read at a time (2 MB float64)


def _fractional_sinc_bank(factor: int, half: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Kaiser-windowed sinc interpolators: ``h`` (factor, 2 half) whose row ``k`` gives the signal
    at ``i + k / factor`` from the samples ``i + offsets`` (each row sums to 1: DC passes unchanged)."""
    offsets = np.arange(-half + 1, half + 1)  # (2 half,) samples around i
    d = (np.arange(factor) / factor)[:, None] - offsets[None, :]  # (factor, 2 half) distance to each tap
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None))) / np.i0(beta)
    h = np.sinc(d) * window
    return h / h.sum(axis=1, keepdims=True), offsets


def _four_times(y: np.ndarray, margin: int) -> np.ndarray:
    """Largest magnitude of a 4x interpolation of ``y`` in each interval ``[i, i + 1)`` for the
    samples ``margin .. len - margin`` of ``y``: (len - 2 margin,)."""
    h, offsets = _fractional_sinc_bank(4, _FINDER_HALF_TAPS, _FINDER_BETA)
    n = y.size - 2 * margin
    out = np.abs(y[margin:margin + n])
    for k in range(1, 4):  # np.convolve runs the 16 taps in C
        v = np.convolve(y, h[k][::-1], mode="full")[margin + offsets[-1]:margin + offsets[-1] + n]
        np.maximum(out, np.abs(v), out=out)
    return out


def reconstructed_peak(x: np.ndarray, *, gain: np.ndarray | None = None, scale: float = 1.0,
                       envelope: np.ndarray | None = None,
                       oversample: int = RECONSTRUCTION_OVERSAMPLE) -> float:
    """Peak of the band-limited signal the samples ``x * scale * gain`` (ch, samples) describe, in
    linear full scale; ``gain`` (samples,) or None (1), so a gain need not be applied to be read.

    A 4x estimate (``envelope``: a true-peak envelope (samples,) of ``x`` over its channels, as the
    limiter keeps one; else a short windowed sinc here) finds the intervals that may hold the peak
    (within ``_CANDIDATE_WINDOW_DB`` of the estimate's maximum); each is interpolated at
    ``oversample`` points by a Kaiser-windowed sinc of 64 taps, so the cost grows with the number of
    loud intervals, not with ``oversample`` x the length. It agrees with an exact (FFT)
    reconstruction within 0.01 dB; a 16x polyphase resampler (:func:`scipy.signal.resample_poly`)
    and BS.1770's 4x meter (:func:`true_peak_dbtp`) read lower on treble-heavy signals.

    Source: Shannon-Whittaker interpolation with a Kaiser window (J. F. Kaiser, "Nonrecursive
    digital filter design using the I0-sinh window function", ISCAS 1974); the oversampling
    factor, window and taps are choices.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ParameterError(f"x must have shape (channels, samples), got {x.shape}")
    h, offsets = _fractional_sinc_bank(int(oversample), _RECONSTRUCTION_HALF_TAPS, _RECONSTRUCTION_BETA)
    half, n, blocks = _RECONSTRUCTION_HALF_TAPS, x.shape[-1], range(0, x.shape[-1], _RECONSTRUCTION_BLOCK)
    g = None if gain is None else np.asarray(gain, dtype=np.float64)

    def piece(c: int, a: int, b: int) -> np.ndarray:  # samples a..b of channel c, scaled; zeros beyond the ends
        lo, hi = max(a, 0), min(b, n)
        out = np.zeros(b - a)
        seg = x[c, lo:hi] * float(scale)
        out[lo - a:hi - a] = seg if g is None else seg * g[lo:hi]
        return out

    def estimate(c: int, a: int, b: int, y: np.ndarray) -> np.ndarray:  # the 4x estimate over a..b
        if envelope is None:
            return _four_times(y, half)
        e = np.abs(envelope[a:b]) * float(scale)
        return e if g is None else e * g[a:b]

    top = 0.0  # the 4x estimate's maximum over every channel
    for c in range(x.shape[0]):
        for a in blocks:
            b = min(a + _RECONSTRUCTION_BLOCK, n)
            top = max(top, float(estimate(c, a, b, piece(c, a - half, b + half)).max()))
    if top == 0.0:
        return 0.0
    floor = top * 10.0 ** (-_CANDIDATE_WINDOW_DB / 20.0)
    best = 0.0
    for c in range(x.shape[0]):
        for a in blocks:  # blocks, so memory does not grow with the length
            b = min(a + _RECONSTRUCTION_BLOCK, n)
            y = piece(c, a - half, b + half)  # (b - a + 2 half,) with the taps' margins
            loud = np.flatnonzero(estimate(c, a, b, y) >= floor)
            start = np.unique(np.concatenate([loud - 1, loud]))  # both intervals around a loud point
            start = start[(start >= 0) & (start + a < n - 1)]
            best = max(best, float(np.abs(y[half:half + b - a]).max()))
            for s in range(0, start.size, _CANDIDATES_PER_CHUNK):
                idx = start[s:s + _CANDIDATES_PER_CHUNK, None] + half + offsets[None, :]  # (k, 2 half)
                best = max(best, float(np.abs(y[idx] @ h.T).max()))  # (k, oversample)
    return best


def true_peak_dbtp(x, sr, *, oversample=4):
    """True-peak level from an oversampled signal.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
        Audio in full-scale units.
    sr : int > 0
        Sample rate in Hz.
    oversample : int >= 1, default 4
        Factor used at 44.1 kHz; the factor applied is
        ``ceil(oversample * 44100 / sr)``, so the default reaches >= 176.4 kHz
        everywhere: 4x at 44.1/48 kHz, 2x at 88.2/96 kHz, 1x at >= 176.4 kHz.

    Returns
    -------
    peak_dbtp : np.ndarray, shape (...), float64
        ``20 log10`` of the largest absolute oversampled value over channels
        and time, in dBTP; ``SILENCE_FLOOR_DB`` for silence.

    Raises
    ------
    ParameterError
        If ``x`` has no channel axis or ``sr``/``oversample`` are invalid.

    Notes
    -----
    The interpolator is the one of :func:`scipy.signal.resample_poly`
    (Kaiser-windowed sinc, beta 5, 20 taps per phase) rather than the 48-tap
    example filter of Annex 2. Its phases are applied with FFT convolution
    (:func:`scipy.signal.fftconvolve`) over time chunks with a margin wider
    than the filter: the result equals ``resample_poly`` on the whole signal
    (tested) but runs faster and never holds the whole oversampled
    batch in memory.

    Source: ITU-R BS.1770-4 Annex 2.
    """
    import scipy.signal  # here, not at import: it is slow to import (evomix render never needs it at 44.1/48 kHz)
    x = _check_signal(x)
    sr = _check_sr(sr)
    factor = _oversample_factor(sr, oversample)
    n = x.shape[-1]
    rows = x.reshape(-1, n)  # (..., ch, n) -> (rows, n)
    n_rows = rows.shape[0]
    peak = _abs_max(rows)  # (rows,), sample peak
    if factor > 1 and n:
        phases, offset = _polyphase_filter(factor)  # (factor, taps)
        phases = phases.astype(np.result_type(rows.dtype, np.float32))[None]  # (1, factor, taps)
        margin = offset + 1  # input samples each side that reach into a chunk
        # FFT length 1024..8192 (fastest measured) with a (rows, factor, fft) buffer <= 2**23
        fft_len = 1 << int(np.clip(np.log2((1 << 23) / (n_rows * factor)), 10, 13))
        chunk = fft_len - 2 * margin - phases.shape[-1] + 1
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            a_pad, b_pad = max(a - margin, 0), min(b + margin, n)
            seg = rows[:, None, a_pad:b_pad]  # (rows, 1, b_pad - a_pad)
            up = scipy.signal.fftconvolve(seg, phases, axes=-1)  # (rows, factor, len + taps - 1)
            core = up[:, :, a - a_pad + offset : b - a_pad + offset]  # (rows, factor, b - a)
            np.maximum(peak, np.max(np.abs(core), axis=(-2, -1)), out=peak)
    peak = peak.reshape(x.shape[:-2] + (-1,)).max(axis=-1)  # (..., ch) -> (...)
    return _power_to_db(np.square(peak.astype(np.float64)))


def sample_peak_db(x):
    """Sample-peak level.

    Parameters
    ----------
    x : np.ndarray, shape (..., ch, samples), float
        Audio in full-scale units.

    Returns
    -------
    peak_db : np.ndarray, shape (...), float64
        ``20 log10 max |x|`` over channels and time in dBFS;
        ``SILENCE_FLOOR_DB`` for silence.

    Source: EBU Tech 3341 (sample peak vs. true peak); AES17.
    """
    x = _check_signal(x)
    n = x.shape[-1]
    peak = _abs_max(x.reshape(-1, n)).reshape(x.shape[:-1]).max(axis=-1)  # (..., ch) -> (...)
    return _power_to_db(np.square(peak.astype(np.float64)))


def plr_db(true_peak_dbtp, integrated_lufs):
    """Peak-to-loudness ratio.

    Parameters
    ----------
    true_peak_dbtp : np.ndarray or float, shape (...)
        True-peak level in dBTP, e.g. from :func:`true_peak_dbtp`.
    integrated_lufs : np.ndarray or float, shape (...)
        Integrated loudness in LUFS, e.g. from :func:`integrated_loudness`.

    Returns
    -------
    plr : np.ndarray, shape (...), float64
        ``true_peak_dbtp - integrated_lufs`` in dB (LU); larger means more
        dynamic headroom (less limiting).

    Source: AES, E. Deruty and D. Tardieu, "About dynamic processing in
    mainstream music", JAES 62(1/2), 2014 (PLR); EBU R 128.
    """
    return np.asarray(true_peak_dbtp, dtype=np.float64) - np.asarray(integrated_lufs, dtype=np.float64)
