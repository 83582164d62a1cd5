"""Pure DSP kernels shared by the fast (frame-rate, band-domain) and exact (sample-accurate) tiers.

Every function is stateless and vectorized over leading (population) axes: parameters such as
``gain_db`` of shape ``(pop, stems)`` broadcast against each other, time is on the last axis and
channels on the one before it (``(..., ch, samples)``). No function loops in Python over
candidates. The Python loops left are the time recursion of :func:`smooth_gain_db` (over all
leading axes at once), a loop over channels in :func:`rms_level_db` and over 32768-sample blocks
in the limiter's oversampled envelope (to bound memory).

Contents
--------
rbj_sos               biquad coefficients, RBJ Audio EQ Cookbook
sos_power_response    |H(e^jw)|^2 of one biquad, analytic and vectorized
cascade_power_response  the same for biquads in series (compiled, one pass)
sos_response, cascade_response  complex response (phase) of one biquad / biquads in series
pan_gains             constant-power (mono) and balance (stereo) pan laws
compressor_static_db  soft-knee gain computer, Giannoulis et al. 2012 (compressor_static_rows: unchecked rows)
smooth_gain_db        branching one-pole attack/release smoothing of a gain in dB
rms_level_db          stereo-linked windowed RMS detector at control rate
compressor_gain       gain curve of the feed-forward RMS compressor (exact tier)
compress              x * compressor_gain
limiter_gain          gain curve of the look-ahead true-peak brickwall limiter
true_peak_limit       x * limiter_gain
true_peak_db          oversampled peak level (the limiter's own check)
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import minimum_filter1d
from scipy.signal import resample_poly

from evomix.core.compiled import lazy_njit
from evomix.errors import ParameterError

__all__ = [
    "rbj_sos",
    "sos_power_response",
    "cascade_power_response",
    "sos_response",
    "cascade_response",
    "pan_gains",
    "compressor_static_db",
    "smooth_gain_db",
    "rms_level_db",
    "compressor_gain",
    "compress",
    "limiter_gain",
    "true_peak_limit",
    "true_peak_db",
]

FILTER_KINDS = ("highpass", "lowshelf", "peak", "highshelf")
LEVEL_FLOOR_DB = -120.0
TRUE_PEAK_FLOOR_DB = -200.0
#: Highest allowed centre/cut-off frequency as a fraction of the sample rate.
MAX_FREQ_FRACTION = 0.49


def _require_positive(name, value):
    """Raise ParameterError unless every element of ``value`` is finite and > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # the common scalar case, without numpy calls
        if not (math.isfinite(value) and value > 0):
            raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
        return np.asarray(float(value))
    arr = np.asarray(value, dtype=float)
    if not (arr.size and np.isfinite(arr).all() and arr.min() > 0) and arr.size:
        raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def _require_signal(x, name="x"):
    """Return ``x`` as float array with at least (ch, samples) axes."""
    x = np.asarray(x, dtype=float)
    if x.ndim < 2 or x.shape[-1] == 0:
        raise ParameterError(
            f"{name} must have shape (..., ch, samples) with samples > 0, got shape {x.shape}; "
            "add a channel axis with x[None, :] for a mono signal"
        )
    return x


# ----------------------------------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------------------------------
def rbj_sos(kind, freq_hz, gain_db, q, sr, *, check=True):
    """Biquad coefficients of the RBJ cookbook filters, as scipy second-order sections.

    Source: R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients",
    W3C Working Group Note 2021, https://www.w3.org/TR/audio-eq-cookbook/

    Parameters
    ----------
    kind : {"highpass", "lowshelf", "peak", "highshelf"}
        Filter type (cookbook HPF, lowShelf, peakingEQ, highShelf).
    freq_hz : float or ndarray, shape broadcastable, Hz > 0
        Cut-off (highpass), centre (peak) or midpoint (shelves) frequency. Clamped to
        ``< 0.49 * sr`` so that the bilinear pre-warp stays finite.
    gain_db : float or ndarray, broadcastable, dB
        Peak or shelf gain. Ignored by ``"highpass"`` (but still broadcast into the shape).
    q : float or ndarray, broadcastable, > 0
        Quality factor. Shelves use the cookbook's Q form, ``alpha = sin(w0) / (2 Q)``;
        ``Q = 1/sqrt(2)`` is the steepest shelf without overshoot (equivalent to S = 1).
    sr : float, Hz > 0
        Sample rate.
    check : bool, keyword-only, default True
        Validate the parameters; the fast tier passes False for parameters decoded from genomes,
        which are in range by construction (the checks cost more than the formulas there).

    Returns
    -------
    sos : ndarray, shape (..., 6)
        ``[b0, b1, b2, 1, a1, a2]`` normalised by ``a0``; ``...`` is the broadcast shape of
        ``freq_hz``, ``gain_db`` and ``q``. Use ``sos[..., None, :]`` or stack along a section axis
        to pass a cascade to :func:`scipy.signal.sosfilt`.

    Raises
    ------
    ParameterError
        Unknown ``kind``; non-positive ``freq_hz``, ``q`` or ``sr``; non-finite ``gain_db``.

    Notes
    -----
    Properties the tests check against the cookbook: highpass ``|H(f0)| = Q`` (-3.01 dB for
    ``Q = 1/sqrt(2)``); peak ``|H(f0)| = gain_db`` and midpoint-gain edges at warped
    frequencies ``Omega = tan(pi f / sr) / tan(pi f0 / sr)`` solving ``|Omega - 1/Omega| = 1/Q``;
    shelves reach ``gain_db / 2`` at ``f0`` and exactly ``gain_db`` at DC (low) or Nyquist (high);
    ``gain_db = 0`` gives ``b == a`` (identity) for peak and shelves.

    Examples
    --------
    >>> sos = rbj_sos("peak", [[1000.0, 2000.0]], 6.0, 1.0, 48000)
    >>> sos.shape
    (1, 2, 6)
    """
    if kind not in FILTER_KINDS:
        raise ParameterError(f"kind: unknown filter {kind!r}; choose from {', '.join(FILTER_KINDS)}")
    if check:
        sr = float(_require_positive("sr", sr))
        freq_hz = _require_positive("freq_hz", freq_hz)
        q = _require_positive("q", q)
        gain_db = np.asarray(gain_db, dtype=float)
        if not np.all(np.isfinite(gain_db)):
            raise ParameterError(f"gain_db must be finite, got {gain_db!r}")
    else:
        sr, freq_hz, q, gain_db = float(sr), np.asarray(freq_hz, dtype=float), np.asarray(q, dtype=float), np.asarray(gain_db, dtype=float)
    shape = np.broadcast_shapes(np.shape(freq_hz), np.shape(gain_db), np.shape(q))

    freq_hz = np.minimum(freq_hz, MAX_FREQ_FRACTION * sr)
    w0 = 2.0 * np.pi * freq_hz / sr  # w0 = 2 pi f0 / Fs
    cos_w0 = np.cos(w0)
    alpha = np.sin(w0) / (2.0 * q)  # alpha = sin(w0) / (2 Q)
    amp = 10.0 ** (gain_db / 40.0)  # A = 10^(dBgain / 40), peaking and shelving only

    if kind == "highpass":  # HPF: H(s) = s^2 / (s^2 + s/Q + 1)
        b0 = (1.0 + cos_w0) / 2.0
        b1 = -(1.0 + cos_w0)
        b2 = b0
        a0 = 1.0 + alpha
        a1 = -2.0 * cos_w0
        a2 = 1.0 - alpha
    elif kind == "peak":  # peakingEQ: H(s) = (s^2 + s (A/Q) + 1) / (s^2 + s/(A Q) + 1)
        b0 = 1.0 + alpha * amp
        b1 = -2.0 * cos_w0
        b2 = 1.0 - alpha * amp
        a0 = 1.0 + alpha / amp
        a1 = -2.0 * cos_w0
        a2 = 1.0 - alpha / amp
    else:
        two_sqrt_a_alpha = 2.0 * np.sqrt(amp) * alpha
        ap1, am1 = amp + 1.0, amp - 1.0
        if kind == "lowshelf":  # lowShelf: H(s) = A (s^2 + (sqrt(A)/Q) s + A) / (A s^2 + (sqrt(A)/Q) s + 1)
            b0 = amp * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha)
            b1 = 2.0 * amp * (am1 - ap1 * cos_w0)
            b2 = amp * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha)
            a0 = ap1 + am1 * cos_w0 + two_sqrt_a_alpha
            a1 = -2.0 * (am1 + ap1 * cos_w0)
            a2 = ap1 + am1 * cos_w0 - two_sqrt_a_alpha
        else:  # highShelf: H(s) = A (A s^2 + (sqrt(A)/Q) s + 1) / (s^2 + (sqrt(A)/Q) s + A)
            b0 = amp * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha)
            b1 = -2.0 * amp * (am1 + ap1 * cos_w0)
            b2 = amp * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha)
            a0 = ap1 - am1 * cos_w0 + two_sqrt_a_alpha
            a1 = 2.0 * (am1 - ap1 * cos_w0)
            a2 = ap1 - am1 * cos_w0 - two_sqrt_a_alpha

    # cookbook eq. 2: divide everything by a0 -> (..., 6)
    sos = np.empty(shape + (6,))
    for i, c in enumerate((b0, b1, b2, a0, a1, a2)):
        sos[..., i] = c  # broadcast to the common shape
    sos /= sos[..., 3:4]
    return sos


def _check_response_args(sos, freq_hz, sr):
    """Validated ``(sos (..., 6), freq_hz (F,), sr)`` as float arrays for the response functions."""
    sos = np.asarray(sos, dtype=float)
    if sos.shape[-1:] != (6,):
        raise ParameterError(f"sos must have shape (..., 6), got {sos.shape}")
    freq_hz = np.asarray(freq_hz, dtype=float)
    if freq_hz.ndim != 1:
        raise ParameterError(f"freq_hz must be 1-D (F,), got shape {freq_hz.shape}")
    sr = float(_require_positive("sr", sr))
    return sos, freq_hz, sr


def sos_power_response(sos, freq_hz, sr):
    """Power response ``|H(e^jw)|^2`` of one biquad per row, without complex arrays.

    Source: RBJ Audio EQ Cookbook, https://www.w3.org/TR/audio-eq-cookbook/ (closing formula for
    the magnitude response, with ``phi = sin^2(w/2)``).

    Expanding ``|b0 + b1 z^-1 + b2 z^-2|^2`` with ``z = e^jw`` gives
    ``b0^2 + b1^2 + b2^2 + 2 (b0 b1 + b1 b2) cos w + 2 b0 b2 cos 2w``; substituting
    ``cos w = 1 - 2 phi`` gives the cookbook form
    ``(b0 + b1 + b2)^2 - 4 (b0 b1 + 4 b0 b2 + b1 b2) phi + 16 b0 b2 phi^2``, which is the same
    polynomial but keeps its accuracy near DC (the cos form cancels large terms there, which
    matters for highpass filters at 20 Hz and 96 kHz).

    Parameters
    ----------
    sos : ndarray, shape (..., 6)
        ``[b0, b1, b2, a0, a1, a2]`` rows (``a0`` need not be 1).
    freq_hz : ndarray, shape (F,), Hz in [0, sr/2]
        Evaluation frequencies.
    sr : float, Hz > 0
        Sample rate.

    Returns
    -------
    power : ndarray, shape (..., F)
        Linear power gain (``10 * log10(power)`` is the response in dB).

    Raises
    ------
    ParameterError
        ``sos`` last axis is not 6, or ``freq_hz`` is not 1-D.

    Examples
    --------
    >>> sos = rbj_sos("peak", 1000.0, 6.0, 1.0, 48000)
    >>> float(np.round(10 * np.log10(sos_power_response(sos, np.array([1000.0]), 48000))[0], 6))
    6.0
    """
    sos, freq_hz, sr = _check_response_args(sos, freq_hz, sr)
    return cascade_power_response(sos[..., None, :], freq_hz, sr)


def _power_polynomials(sos):
    """Coefficients ``(c0, c1, c2)`` of the cookbook's numerator and denominator in ``phi``:
    ``(b0 + b1 + b2)^2``, ``-4 (b0 b1 + 4 b0 b2 + b1 b2)``, ``16 b0 b2`` (and the same of the
    ``a``) -> (..., 6) as ``[n0, n1, n2, d0, d1, d2]``."""
    b0, b1, b2, a0, a1, a2 = (sos[..., i] for i in range(6))
    return np.stack([
        (b0 + b1 + b2) ** 2, -4.0 * (b0 * b1 + 4.0 * b0 * b2 + b1 * b2), 16.0 * b0 * b2,
        (a0 + a1 + a2) ** 2, -4.0 * (a0 * a1 + 4.0 * a0 * a2 + a1 * a2), 16.0 * a0 * a2,
    ], axis=-1)


def cascade_power_response(sos, freq_hz, sr):
    """Power response of a cascade of biquads: the product of :func:`sos_power_response` over the
    sections, in one compiled pass (the fast tier evaluates every candidate's EQ with it).

    Parameters
    ----------
    sos : ndarray, shape (..., sections, 6)
        ``[b0, b1, b2, a0, a1, a2]`` rows, applied in series.
    freq_hz : ndarray, shape (F,), Hz in [0, sr/2]
    sr : float, Hz > 0

    Returns
    -------
    power : ndarray, shape (..., F), linear power gain.

    Examples
    --------
    >>> lo = rbj_sos("lowshelf", 100.0, 3.0, 0.707, 48000); hi = rbj_sos("highshelf", 8000.0, 3.0, 0.707, 48000)
    >>> f = np.array([10.0, 20000.0])
    >>> bool(np.allclose(cascade_power_response(np.stack([lo, hi]), f, 48000),
    ...                  sos_power_response(lo, f, 48000) * sos_power_response(hi, f, 48000)))
    True
    """
    rows, lead, freq_hz, sr = _check_cascade_args(sos, freq_hz, sr)
    phi = np.sin(np.pi * freq_hz / sr) ** 2  # phi = sin^2(w/2), w = 2 pi f / sr; (F,)
    return _cascade_power_rows(_power_polynomials(rows), phi).reshape(lead + phi.shape)


def _check_cascade_args(sos, freq_hz, sr):
    """Validated cascade arguments: ``sos`` (..., sections, 6) as contiguous rows (n, sections, 6),
    the leading shape ``...``, ``freq_hz`` (F,) and ``sr``."""
    sos, freq_hz, sr = _check_response_args(sos, freq_hz, sr)
    if sos.ndim < 2:
        raise ParameterError(f"sos must have shape (..., sections, 6), got {sos.shape}")
    return np.ascontiguousarray(sos).reshape(-1, sos.shape[-2], 6), sos.shape[:-2], freq_hz, sr


@lazy_njit
def _cascade_power_rows(poly, phi):  # (n, sections, 6), (F,) -> (n, F)
    """Product over sections of ``max(num, 0) / den``, ``num = n0 + n1 phi + n2 phi^2`` (cookbook)."""
    n_rows, n_sections, _ = poly.shape
    out = np.ones((n_rows, phi.size))
    for i in range(n_rows):
        for j in range(n_sections):
            n0, n1, n2, d0, d1, d2 = poly[i, j, 0], poly[i, j, 1], poly[i, j, 2], poly[i, j, 3], poly[i, j, 4], poly[i, j, 5]
            for f in range(phi.size):
                p = phi[f]
                p2 = p * p
                # rounding can leave -1e-17 where the exact value is 0 (highpass at DC)
                out[i, f] *= max(n0 + n1 * p + n2 * p2, 0.0) / (d0 + d1 * p + d2 * p2)
    return out


def sos_response(sos, freq_hz, sr):
    """Complex frequency response ``H(e^jw)`` of one biquad per row (magnitude and phase).

    ``H = (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)`` at ``z = e^{j 2 pi f / sr}``
    (the transfer function of the RBJ cookbook biquads, https://www.w3.org/TR/audio-eq-cookbook/).
    Used where phase matters (the fast tier's peak estimate); for power use
    :func:`sos_power_response`, which is accurate near DC.

    Parameters
    ----------
    sos : ndarray, shape (..., 6), ``[b0, b1, b2, a0, a1, a2]`` rows.
    freq_hz : ndarray, shape (F,), Hz in [0, sr/2].
    sr : float, Hz > 0.

    Returns
    -------
    h : complex ndarray, shape (..., F).

    Examples
    --------
    >>> h = sos_response(rbj_sos("peak", 1000.0, 6.0, 1.0, 48000), np.array([1000.0]), 48000)
    >>> float(np.round(20 * np.log10(abs(h[0])), 6)), abs(float(np.round(np.angle(h[0]), 6)))
    (6.0, 0.0)
    """
    sos, freq_hz, sr = _check_response_args(sos, freq_hz, sr)
    return cascade_response(sos[..., None, :], freq_hz, sr)


def cascade_response(sos, freq_hz, sr):
    """Complex response of a cascade of biquads: the product of :func:`sos_response` over the
    sections, in one compiled pass (the fast tier's peak estimate needs each candidate's phase).

    Parameters
    ----------
    sos : ndarray, shape (..., sections, 6), ``[b0, b1, b2, a0, a1, a2]`` rows, in series.
    freq_hz : ndarray, shape (F,), Hz in [0, sr/2].
    sr : float, Hz > 0.

    Returns
    -------
    h : complex ndarray, shape (..., F).

    Examples
    --------
    >>> lo = rbj_sos("lowshelf", 100.0, 3.0, 0.707, 48000); hi = rbj_sos("highshelf", 8000.0, 3.0, 0.707, 48000)
    >>> f = np.array([50.0, 12000.0])
    >>> bool(np.allclose(cascade_response(np.stack([lo, hi]), f, 48000),
    ...                  sos_response(lo, f, 48000) * sos_response(hi, f, 48000)))
    True
    """
    rows, lead, freq_hz, sr = _check_cascade_args(sos, freq_hz, sr)
    z1 = np.exp(-2j * np.pi * freq_hz / sr)  # z^-1, (F,)
    return _cascade_response_rows(rows, z1).reshape(lead + freq_hz.shape)


@lazy_njit
def _cascade_response_rows(sos, z1):  # (n, sections, 6), (F,) complex -> (n, F) complex
    """Product over sections of ``(b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)``."""
    n_rows, n_sections, _ = sos.shape
    out = np.ones((n_rows, z1.size), dtype=np.complex128)
    for i in range(n_rows):
        for j in range(n_sections):
            b0, b1, b2, a0, a1, a2 = sos[i, j, 0], sos[i, j, 1], sos[i, j, 2], sos[i, j, 3], sos[i, j, 4], sos[i, j, 5]
            for f in range(z1.size):
                z = z1[f]
                z2 = z * z
                out[i, f] *= (b0 + b1 * z + b2 * z2) / (a0 + a1 * z + a2 * z2)
    return out


# ----------------------------------------------------------------------------------------------
# Panning
# ----------------------------------------------------------------------------------------------
def pan_gains(pan, is_mono):
    """Left/right amplitude gains: constant power for mono sources, balance for stereo sources.

    Source: constant-power (sine/cosine) pan law, U. Zölzer (ed.), *DAFX: Digital Audio Effects*,
    2nd ed., Wiley 2011, ch. 5 (spatial effects; V. Pulkki et al.); D. Griesinger, "Stereo and
    surround panning in practice", AES 112th Convention, 2002.

    Mono:   ``theta = (pan + 1) pi / 4``, ``L = cos(theta)``, ``R = sin(theta)``, so
    ``L^2 + R^2 = 1`` everywhere and each side is -3.01 dB at the centre.
    Stereo (balance): ``L = min(1, sqrt(2) cos(theta))``, ``R = min(1, sqrt(2) sin(theta))``:
    unity on both sides at the centre, the far side fades out while the near side stays at 1.

    Parameters
    ----------
    pan : float or ndarray, broadcastable, in [-1, 1]
        -1 hard left, 0 centre, +1 hard right.
    is_mono : bool or ndarray of bool, broadcastable against ``pan``
        True where the source is mono (one channel duplicated to both sides).

    Returns
    -------
    gains : ndarray, shape (..., 2)
        Linear amplitude gains ``[left, right]``; ``...`` is the broadcast shape.

    Raises
    ------
    ParameterError
        ``pan`` outside [-1, 1] or not finite.

    Examples
    --------
    >>> np.round(pan_gains(0.0, True), 4)
    array([0.7071, 0.7071])
    >>> np.round(pan_gains(-1.0, False), 4)
    array([1., 0.])
    """
    pan = np.asarray(pan, dtype=float)
    if not np.all(np.isfinite(pan) & (np.abs(pan) <= 1.0)):
        raise ParameterError(f"pan must be in [-1, 1], got {pan!r}; clip it with np.clip(pan, -1, 1)")
    pan, is_mono = np.broadcast_arrays(pan, np.asarray(is_mono, dtype=bool))

    theta = (pan + 1.0) * (np.pi / 4.0)  # [-1, 1] -> [0, pi/2]
    const_power = np.stack([np.cos(theta), np.sin(theta)], axis=-1)  # (..., 2)
    balance = np.minimum(1.0, np.sqrt(2.0) * const_power)  # (..., 2), unity at centre
    return np.where(is_mono[..., None], const_power, balance)


# ----------------------------------------------------------------------------------------------
# Dynamics
# ----------------------------------------------------------------------------------------------
def compressor_static_db(level_db, threshold_db, ratio, knee_db=6.0):
    """Soft-knee static gain computer: gain change in dB (<= 0) for an input level in dB.

    Source: D. Giannoulis, M. Massberg, J. D. Reiss, "Digital Dynamic Range Compressor Design —
    A Tutorial and Analysis", J. Audio Eng. Soc. 60(6), 2012, eq. 4.

    With ``x = level_db``, ``T = threshold_db``, ``R = ratio``, ``W = knee_db``::

        y = x                                       if 2 (x - T) < -W
        y = x + (1/R - 1) (x - T + W/2)^2 / (2 W)   if 2 |x - T| <= W
        y = T + (x - T) / R                         if 2 (x - T) > W

    and the returned gain change is ``y - x``. ``W = 0`` is the hard knee.

    Parameters
    ----------
    level_db : ndarray, any shape, dB
        Detector level.
    threshold_db : float or ndarray, broadcastable, dB
    ratio : float or ndarray, broadcastable, >= 1 (``np.inf`` is a limiter)
    knee_db : float or ndarray, broadcastable, dB >= 0
        Full knee width, centred on the threshold.

    Returns
    -------
    gain_db : ndarray, broadcast shape, dB <= 0
        Gain change to apply (no makeup gain).

    Raises
    ------
    ParameterError
        ``ratio < 1`` or ``knee_db < 0``.

    Examples
    --------
    >>> compressor_static_db(np.array([-40.0, -10.0]), -20.0, 4.0).tolist()
    [0.0, -7.5]
    """
    level_db = np.asarray(level_db)
    dtype = level_db.dtype if level_db.dtype in (np.float32, np.float64) else np.float64  # float32 stays float32
    level_db = level_db.astype(dtype, copy=False)
    threshold_db = np.asarray(threshold_db, dtype=dtype)
    ratio = np.asarray(ratio, dtype=dtype)
    knee_db = np.asarray(knee_db, dtype=dtype)
    if np.any(~(ratio >= 1.0)):
        raise ParameterError(f"ratio must be >= 1, got {ratio!r}")
    if np.any(~(knee_db >= 0.0)):
        raise ParameterError(f"knee_db must be >= 0, got {knee_db!r}")

    params = (threshold_db, ratio, knee_db)
    shape = np.broadcast_shapes(level_db.shape, *(p.shape for p in params))
    if shape and all(p.ndim == 0 or p.shape[-1] == 1 for p in params):
        # the usual case: one threshold/ratio/knee per curve (row), time on the last axis
        lead = shape[:-1]
        x = np.ascontiguousarray(np.broadcast_to(level_db, shape)).reshape(-1, shape[-1])  # (rows, T)
        rows = [np.ascontiguousarray(np.broadcast_to(p[..., 0] if p.ndim else p, lead)).reshape(-1) for p in params]
    else:  # parameters that change along the last axis: every element is a row of its own
        x = np.ascontiguousarray(np.broadcast_to(level_db, shape)).reshape(-1, 1)
        rows = [np.ascontiguousarray(np.broadcast_to(p, shape)).reshape(-1) for p in params]
    return compressor_static_rows(x, *rows).reshape(shape)


@lazy_njit
def compressor_static_rows(level_db, threshold_db, ratio, knee_db):  # (n, T), (n,) x 3 -> (n, T)
    """Eq. 4 of :func:`compressor_static_db`, compiled, one row of levels per parameter set:
    ``level_db`` (n, T) C-contiguous, ``threshold_db``, ``ratio``, ``knee_db`` (n,) of the same
    dtype. Unchecked: for callers whose parameters are valid by construction (the fast tier).

    With ``o = x - T`` and knee ``W`` the three branches are ``0`` (o < -W/2),
    ``(o + W/2)^2 / (2W)`` (|o| <= W/2) and ``o`` (o > W/2), all times ``(1/R - 1)``;
    ``clip(o + W/2, 0, W)^2 / (2W) + max(o - W/2, 0)`` equals each of them on its range, with
    no branch in the inner loop (so LLVM vectorizes it).
    """
    n_rows, n_steps = level_db.shape
    out = np.empty_like(level_db)
    for i in range(n_rows):
        threshold = threshold_db[i]
        slope = 1.0 / ratio[i] - 1.0  # (1/R - 1) <= 0
        knee = knee_db[i]
        half = knee / 2.0
        two_knee = 2.0 * knee if knee > 0.0 else 2.0  # W = 0 (hard knee): inside is 0 anyway
        for t in range(n_steps):
            over = level_db[i, t] - threshold
            inside = min(max(over + half, 0.0), knee)
            gain = slope * (inside * inside / two_knee + max(over - half, 0.0))
            out[i, t] = gain if gain < 0.0 else 0.0  # also turns -0.0 into 0
    return out


def smooth_gain_db(gain_db, attack_ms, release_ms, step_s, *, step_mean=False):
    """Branching one-pole attack/release smoothing of a gain curve in dB, along the last axis.

    Source: Giannoulis, Massberg & Reiss, JAES 60(6), 2012, eq. 17 (smooth branching detector),
    applied in the gain domain (their "log domain, after the gain computer" placement).

    ``y[t] = a y[t-1] + (1 - a) g[t]`` with ``a = alpha_A`` when ``g[t] < y[t-1]`` (more gain
    reduction: attack) and ``a = alpha_R`` otherwise (release), ``alpha = exp(-step_s / tau)``,
    ``tau = attack_ms / 1000`` or ``release_ms / 1000``, and ``y[-1] = 0 dB``. A step reaches
    ``1 - 1/e`` (63 %) of its size after one time constant.

    Parameters
    ----------
    gain_db : ndarray, shape (..., T), dB
        Target gain change per control step (output of :func:`compressor_static_db`).
    attack_ms, release_ms : float or ndarray, broadcastable to ``gain_db.shape[:-1]``, ms > 0
        Time constants.
    step_s : float, s > 0
        Control-step period (1 ms in :func:`compress`, the 50 ms frame hop in the fast tier).
    step_mean : bool, keyword-only
        Return, for each step, the mean of the continuous one-pole response over the step
        (``y[t-1] + (1 - (tau/step)(1 - alpha)) (g[t] - y[t-1])``) instead of its value at the
        end of the step. The fast tier's steps are 50 ms frames: a frame's gain is what the
        compressor applies on average during it (a slow attack lets most of a short hit through).

    Returns
    -------
    smoothed_db : ndarray, shape (..., T), dB

    Raises
    ------
    ParameterError
        Non-positive time constants or step.

    Notes
    -----
    The time recursion runs compiled (numba, :func:`_smooth_rows`) over time-major contiguous
    buffers with precomputed coefficients, for all leading axes at once.

    Examples
    --------
    >>> y = smooth_gain_db(np.full((2, 3), -10.0), 10.0, 100.0, 0.01)
    >>> y.shape
    (2, 3)
    """
    gain_db = np.asarray(gain_db, dtype=float)
    if gain_db.ndim < 1:
        raise ParameterError(f"gain_db must have shape (..., T), got a scalar {gain_db!r}")
    attack_ms = _require_positive("attack_ms", attack_ms)
    release_ms = _require_positive("release_ms", release_ms)
    step_s = float(_require_positive("step_s", step_s))
    lead_shape = gain_db.shape[:-1]
    n_steps = gain_db.shape[-1]
    n_rows = math.prod(lead_shape)

    def flat(a):  # (...) -> (n,) contiguous float64
        return np.ascontiguousarray(np.broadcast_to(a, lead_shape), dtype=float).reshape(n_rows)

    tau_attack, tau_release = flat(attack_ms) / 1000.0, flat(release_ms) / 1000.0  # (n,) s
    # (1 - alpha) per row, alpha = exp(-step / tau)
    e_attack, e_release = np.expm1(-step_s / tau_attack), np.expm1(-step_s / tau_release)  # alpha - 1
    k_attack, k_release = -e_attack, -e_release
    k_diff = k_attack - k_release
    if step_mean:  # share of (g - y[t-1]) reached on average over the step: 1 - (tau/step)(1 - alpha)
        m_attack = 1.0 + (tau_attack / step_s) * e_attack
        m_release = 1.0 + (tau_release / step_s) * e_release
    else:
        m_attack = m_release = np.zeros(n_rows)

    target = np.ascontiguousarray(np.moveaxis(gain_db, -1, 0)).reshape(n_steps, n_rows)  # (..., T) -> (T, n)
    out = _smooth_rows(target, k_release, k_diff, m_attack, m_release, bool(step_mean))
    return np.moveaxis(out.reshape((n_steps,) + lead_shape), 0, -1)  # (T, ...) -> (..., T)


@lazy_njit
def _smooth_rows(target, k_release, k_diff, m_attack, m_release, step_mean):  # (T, n) -> (T, n)
    """The recursion of :func:`smooth_gain_db`, compiled (``evomix.core.compiled``).

    A time recursion cannot be vectorized over time; numpy would need a Python loop over steps
    (~10 small array operations each, holding the GIL). Compiled, it is 5-25x faster and releases
    the GIL, so the fast tier's threads run it in parallel. The arithmetic is the same, in the same
    order, so the result is bit for bit what the numpy loop gave.
    """
    n_steps, n = target.shape
    out = np.empty_like(target)
    state = np.zeros(n)  # y[-1] = 0 dB
    for t in range(n_steps):
        for i in range(n):
            delta = target[t, i] - state[i]  # g[t] - y[t-1]
            attack = delta < 0.0  # more reduction -> attack branch
            if step_mean:
                out[t, i] = state[i] + (m_attack[i] if attack else m_release[i]) * delta
            coef = k_diff[i] * attack
            coef += k_release[i]  # (1 - a)
            coef *= delta
            state[i] += coef  # eq. 17: y = a y + (1 - a) g = y + (1 - a) (g - y)
            if not step_mean:
                out[t, i] = state[i]
    return out


def _control_grid(n_samples, sr, window_s, step_s):
    """Step and window lengths in samples and the number of control steps."""
    step_samples = max(1, int(round(step_s * sr)))
    window_samples = max(1, int(round(window_s * sr)))
    n_steps = -(-n_samples // step_samples)  # ceil
    return step_samples, window_samples, n_steps


def rms_level_db(x, sr, *, window_s=0.05, step_s=0.001):
    """Stereo-linked RMS level at control rate, in dB.

    Source: Giannoulis et al. 2012, section on RMS detection (mean square over a window);
    stereo linking by averaging the mean square over channels.

    At control step ``k`` (sample ``k * step_samples``) the level is
    ``10 log10(mean over channels and over the window of x^2)`` for a rectangular window of
    ``window_s`` centred on that sample. Near the start and end the window is cut at the signal
    edges and the mean is taken over the samples that exist.

    Parameters
    ----------
    x : ndarray, shape (..., ch, samples)
        Signal, full scale = 1.
    sr : float, Hz > 0
    window_s : float, s > 0, keyword-only
        RMS window length (50 ms; the same window the fast tier uses at its 50 ms hop).
    step_s : float, s > 0, keyword-only
        Control-step period; rounded to a whole number of samples (44 samples at 44.1 kHz).

    Returns
    -------
    level_db : ndarray, shape (..., T), dB >= -120
        ``T = ceil(samples / step_samples)``.

    Raises
    ------
    ParameterError
        ``x`` without a channel axis; non-positive ``sr``, ``window_s`` or ``step_s``.

    Examples
    --------
    >>> t = np.arange(48000) / 48000
    >>> x = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2)  # (2, 48000), RMS -3.01 dB
    >>> float(np.round(rms_level_db(x, 48000)[500], 2))
    -3.01
    """
    x = _require_signal(x)
    sr = float(_require_positive("sr", sr))
    window_s = float(_require_positive("window_s", window_s))
    step_s = float(_require_positive("step_s", step_s))
    n_samples = x.shape[-1]
    step_samples, window_samples, n_steps = _control_grid(n_samples, sr, window_s, step_s)

    n_ch = x.shape[-2]
    power = np.square(x[..., 0, :])  # (..., ch, samples) -> (..., samples)
    for c in range(1, n_ch):  # channels, not candidates: avoids a full-size x**2 temporary
        power += np.square(x[..., c, :])
    power /= n_ch  # mean square over channels: stereo link
    csum = np.zeros(power.shape[:-1] + (n_samples + 1,))
    np.cumsum(power, axis=-1, out=csum[..., 1:])  # (..., samples + 1)

    centre = np.arange(n_steps) * step_samples  # (T,) control instants in samples
    lo = np.clip(centre - window_samples // 2, 0, n_samples)  # (T,)
    hi = np.clip(centre - window_samples // 2 + window_samples, 0, n_samples)  # (T,)
    mean_square = (csum[..., hi] - csum[..., lo]) / (hi - lo)  # (..., T)
    mean_square = np.maximum(mean_square, 0.0)  # cumsum rounding can leave -1e-17
    floor = 10.0 ** (LEVEL_FLOOR_DB / 10.0)
    return 10.0 * np.log10(np.maximum(mean_square, floor))


def compressor_gain(
    x,
    sr,
    *,
    threshold_db,
    ratio,
    attack_ms,
    release_ms,
    knee_db=6.0,
    window_s=0.05,
    step_s=0.001,
):
    """Gain curve of the feed-forward, stereo-linked, RMS-detecting compressor (no makeup gain).

    Source: Giannoulis, Massberg & Reiss, JAES 60(6), 2012: feed-forward design with the
    detector in the log domain after the gain computer (eq. 4 static curve, eq. 17 smoothing).

    Steps: (1) :func:`rms_level_db` at a 1 ms control rate over a 50 ms RMS window;
    (2) :func:`compressor_static_db`; (3) :func:`smooth_gain_db`; (4) the linear gain is
    interpolated linearly from the control instants to every sample; one gain for all channels
    (stereo link). No makeup gain: the master normalises loudness afterwards.

    The fast tier uses the same gain computer and smoothing at its 50 ms frame rate with the
    same 50 ms RMS window; that is why this detector is RMS over 50 ms and not a peak detector:
    both tiers then see the same level, and differ only in control-rate resolution.

    Parameters
    ----------
    x : ndarray, shape (..., ch, samples)
        Input, full scale = 1.
    sr : float, Hz > 0
    threshold_db : float or ndarray, broadcastable to ``x.shape[:-2]``, dB (RMS)
    ratio : float or ndarray, broadcastable to ``x.shape[:-2]``, >= 1
    attack_ms, release_ms : float or ndarray, broadcastable to ``x.shape[:-2]``, ms > 0
    knee_db : float or ndarray, broadcastable to ``x.shape[:-2]``, dB >= 0
    window_s : float, s > 0
        RMS window.
    step_s : float, s > 0
        Control-step period.

    Returns
    -------
    gain : ndarray, shape (..., samples), linear in (0, 1]
        Per-sample gain, the same for all channels (stereo link); exactly 1.0 wherever the
        smoothed gain change is 0 dB. ``compress(x) == x * gain[..., None, :]``.

    Raises
    ------
    ParameterError
        Bad shapes or parameter values (see the functions above).

    Examples
    --------
    >>> x = np.zeros((3, 2, 4800))  # (stems, ch, samples)
    >>> compressor_gain(x, 48000, threshold_db=[-20, -10, 0], ratio=4, attack_ms=5, release_ms=50).shape
    (3, 4800)
    """
    x = _require_signal(x)
    sr = float(_require_positive("sr", sr))
    lead_shape = x.shape[:-2]
    n_samples = x.shape[-1]
    step_samples, _, n_steps = _control_grid(n_samples, sr, window_s, step_s)

    def lead(name, value):
        arr = np.asarray(value, dtype=float)
        try:
            return np.broadcast_to(arr, lead_shape)
        except ValueError:
            raise ParameterError(
                f"{name} of shape {arr.shape} does not broadcast to the leading axes {lead_shape} "
                "of x (..., ch, samples)"
            ) from None

    threshold_db = lead("threshold_db", threshold_db)
    ratio = lead("ratio", ratio)
    knee_db = lead("knee_db", knee_db)
    attack_ms = lead("attack_ms", attack_ms)
    release_ms = lead("release_ms", release_ms)

    level_db = rms_level_db(x, sr, window_s=window_s, step_s=step_s)  # (..., T)
    target_db = compressor_static_db(
        level_db, threshold_db[..., None], ratio[..., None], knee_db[..., None]
    )  # (..., T)
    smoothed_db = smooth_gain_db(target_db, attack_ms, release_ms, step_samples / sr)  # (..., T)
    gain_ctrl = 10.0 ** (smoothed_db / 20.0)  # (..., T), linear; exactly 1.0 at 0 dB

    # linear interpolation from control instants k * step_samples to every sample; the grid is
    # uniform, so each control interval is filled by broadcasting instead of np.interp per row
    g_next = np.concatenate([gain_ctrl[..., 1:], gain_ctrl[..., -1:]], axis=-1)  # (..., T), hold last
    frac = np.arange(step_samples) / step_samples  # (step,) in [0, 1)
    gain = gain_ctrl[..., None] + (g_next - gain_ctrl)[..., None] * frac  # (..., T, step)
    gain = gain.reshape(lead_shape + (n_steps * step_samples,))  # (..., T, step) -> (..., T * step)
    return gain[..., :n_samples]  # (..., samples); 1 + 0 * frac is exactly 1


def compress(
    x,
    sr,
    *,
    threshold_db,
    ratio,
    attack_ms,
    release_ms,
    knee_db=6.0,
    window_s=0.05,
    step_s=0.001,
):
    """Feed-forward, stereo-linked, RMS-detecting compressor (exact tier), without makeup gain.

    Source: Giannoulis, Massberg & Reiss, JAES 60(6), 2012 (eq. 4 static curve, eq. 17
    smoothing); see :func:`compressor_gain` for the steps, the parameters and why the detector
    is RMS over 50 ms (the fast tier uses the same gain computer at its 50 ms frame rate).

    Parameters
    ----------
    x : ndarray, shape (..., ch, samples)
        Input, full scale = 1.
    sr : float, Hz > 0
    threshold_db, ratio, attack_ms, release_ms, knee_db, window_s, step_s
        As in :func:`compressor_gain` (dB, >= 1, ms, ms, dB, s, s); the first five broadcast
        to ``x.shape[:-2]``.

    Returns
    -------
    y : ndarray, shape (..., ch, samples)
        ``x * gain[..., None, :]``; identical to ``x`` (bit for bit) where the gain change is
        0 dB.

    Raises
    ------
    ParameterError
        Bad shapes or parameter values.

    Examples
    --------
    >>> x = np.zeros((3, 2, 4800))  # (stems, ch, samples)
    >>> compress(x, 48000, threshold_db=[-20, -10, 0], ratio=4, attack_ms=5, release_ms=50).shape
    (3, 2, 4800)
    """
    x = _require_signal(x)
    gain = compressor_gain(
        x,
        sr,
        threshold_db=threshold_db,
        ratio=ratio,
        attack_ms=attack_ms,
        release_ms=release_ms,
        knee_db=knee_db,
        window_s=window_s,
        step_s=step_s,
    )  # (..., samples)
    return x * gain[..., None, :]  # (..., samples) -> (..., 1, samples), stereo link


# ----------------------------------------------------------------------------------------------
# True peak
# ----------------------------------------------------------------------------------------------
def _oversampled_abs_max(x, oversample, axis_count):
    """max |x| after ``oversample``-times polyphase upsampling, over the last ``axis_count`` axes."""
    up = resample_poly(x, oversample, 1, axis=-1) if oversample > 1 else x
    return np.abs(up).max(axis=tuple(range(-axis_count, 0)))


def true_peak_db(x, sr, oversample=4):
    """Oversampled (true) peak level in dB, over channels and time.

    Source: ITU-R BS.1770-4 (2015), Annex 2, "Guidelines for accurate measurement of true-peak
    level" (4x oversampling, then absolute maximum). This is the limiter's own check; the full
    meter (with the Annex's -12.04 dB attenuation and filter spec) lives elsewhere.

    Parameters
    ----------
    x : ndarray, shape (..., ch, samples)
    sr : float, Hz > 0
        Sample rate (only validated; the measurement is rate-independent).
    oversample : int >= 1
        Upsampling factor of :func:`scipy.signal.resample_poly`.

    Returns
    -------
    peak_db : ndarray, shape (...), dB >= -200
        ``20 log10(max |upsampled x|)``; a float for a ``(ch, samples)`` input.

    Raises
    ------
    ParameterError
        ``x`` without a channel axis, ``oversample < 1``.

    Examples
    --------
    >>> n = np.arange(4800)
    >>> x = np.sin(np.pi / 2 * n + np.pi / 4)[None] * np.hanning(4800)  # fs/4, samples at +-0.707 max
    >>> float(np.round(20 * np.log10(np.abs(x).max()), 2)), float(np.round(true_peak_db(x, 48000), 1))
    (-3.01, 0.0)
    """
    x = _require_signal(x)
    _require_positive("sr", sr)
    oversample = _check_oversample(oversample)
    peak = _oversampled_abs_max(x, oversample, 2)  # (..., ch, samples) -> (...)
    floor = 10.0 ** (TRUE_PEAK_FLOOR_DB / 20.0)
    return 20.0 * np.log10(np.maximum(peak, floor))


def _check_oversample(oversample):
    if int(oversample) != oversample or oversample < 1:
        raise ParameterError(f"oversample must be an integer >= 1, got {oversample!r}")
    return int(oversample)


def _parabolic_peaks(up_abs):
    """Refine local maxima of ``|x|`` on the oversampled grid by a parabola through 3 points.

    For neighbours ``a, b, c`` with ``b >= a, c`` the vertex of the parabola through
    ``(-1, a), (0, b), (1, c)`` is ``b + (a - c)^2 / (8 (2b - a - c))``, within half a grid step
    of the middle point. Elsewhere the value is unchanged. Shape ``(..., M)`` -> ``(..., M)``.
    """
    a, b, c = up_abs[..., :-2], up_abs[..., 1:-1], up_abs[..., 2:]
    curvature = 2.0 * b - a - c  # > 0 at a strict local maximum
    is_peak = (b >= a) & (b >= c) & (curvature > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bump = np.where(is_peak, (a - c) ** 2 / (8.0 * curvature), 0.0)
    out = up_abs.copy()
    out[..., 1:-1] += bump
    return out


def _true_peak_envelope(x, oversample, block_samples=1 << 15):
    """Per-sample true-peak envelope of ``x (ch, samples)`` -> ``(samples,)``, max over channels.

    ``env[n]`` is the largest ``|x|`` over ``[n, n+1)`` on the ``oversample``-times upsampled
    grid (``resample_poly``), refined by :func:`_parabolic_peaks`, and never below ``|x[n]|``.
    Processed in blocks of ``block_samples`` with 64 samples of context on each side (the
    ``resample_poly`` filter spans about 10 input samples each way), so the result equals the
    whole-signal computation while the oversampled buffer stays small.
    """
    n_ch, n_samples = x.shape
    env = np.abs(x).max(axis=0)  # (samples,), the samples themselves
    if oversample == 1:
        return env
    context = 64
    for start in range(0, n_samples, block_samples):
        stop = min(n_samples, start + block_samples)
        lo, hi = max(0, start - context), min(n_samples, stop + context)
        up_abs = np.abs(resample_poly(x[:, lo:hi], oversample, 1, axis=-1))  # (ch, (hi-lo) * os)
        peaks = _parabolic_peaks(up_abs).max(axis=0)  # (ch, (hi-lo) * os) -> ((hi-lo) * os,)
        per_sample = peaks.reshape(hi - lo, oversample).max(axis=1)  # -> (hi - lo,)
        np.maximum(env[start:stop], per_sample[start - lo : stop - lo], out=env[start:stop])
    return env


def _limiter_gain(x, sr, ceiling_lin, lookahead_samples, release_ms, oversample, envelope=None):
    """Per-sample limiter gain (samples,) <= the gain each sample's true peak requires."""
    n_samples = x.shape[-1]
    lookahead = lookahead_samples

    env = _true_peak_envelope(x, oversample) if envelope is None else np.array(envelope, dtype=float)  # (samples,)
    env[1:] = np.maximum(env[1:], env[:-1])  # peaks in [n-1, n) count for sample n too

    with np.errstate(divide="ignore"):
        g_req = np.minimum(1.0, ceiling_lin / env)  # (samples,), 1 where env == 0

    # -- look-ahead minimum: m(t) = min g_req over [t, t + L], for t in [-L, samples)
    padded = np.concatenate([np.ones(lookahead), g_req, np.ones(lookahead)])  # (samples + 2L,)
    size = lookahead + 1
    m = minimum_filter1d(padded, size=size, origin=-(size // 2), mode="constant", cval=1.0)
    m = m[: n_samples + lookahead]  # index j <-> time t = j - L

    # -- release: depth u = 1 - m, u_rel[j] = max_{i <= j} u[i] alpha^(j - i)  (one-pole decay
    #    towards unity gain, instant attack), evaluated in the log domain as a running maximum
    depth = 1.0 - m
    decay_per_sample = 1.0 / (release_ms / 1000.0 * sr)  # -ln(alpha)
    ramp = np.arange(depth.size) * decay_per_sample
    with np.errstate(divide="ignore"):
        log_depth = np.log(depth)  # -inf where no reduction
    log_rel = np.maximum.accumulate(log_depth + ramp) - ramp
    depth_rel = np.maximum(np.exp(log_rel), depth)  # >= depth even after rounding

    # -- attack ramp: moving average of the depth over the L + 1 samples [t - L, t]
    csum = np.concatenate([[0.0], np.cumsum(depth_rel)])  # (samples + L + 1,)
    avg_depth = (csum[size:] - csum[:-size]) / size  # (samples,), time t = 0 .. samples - 1
    return np.clip(1.0 - avg_depth, 0.0, 1.0)


def true_peak_envelope(x, *, oversample=4):
    """The limiter's per-sample true-peak envelope of ``x`` (ch, samples) -> (samples,) (step 1 of
    :func:`limiter_gain`). It scales with the signal: ``envelope(g x) = |g| envelope(x)``, so a
    caller that limits the same mix at several gains computes it once."""
    return _true_peak_envelope(np.asarray(x, dtype=float), _check_oversample(oversample))


LIMITER_RELEASE_MS = 80.0  # ms, the master limiter's release (the fast tier models it per frame)


def limiter_gain(x, sr, *, ceiling_dbtp=-1.0, lookahead_ms=5.0, release_ms=LIMITER_RELEASE_MS, oversample=4,
                 envelope=None):
    """Gain curve of a look-ahead brickwall limiter on the true (oversampled) peak, no delay.

    Source: U. Zölzer (ed.), *DAFX*, 2nd ed., Wiley 2011, ch. 4 (nonlinear processing:
    limiter with look-ahead and peak-decay release); ITU-R BS.1770-4 Annex 2 (true peak).

    Parameters
    ----------
    x : ndarray, shape (ch, samples)
        Master bus, full scale = 1.
    sr : float, Hz > 0
    ceiling_dbtp : float, dBTP <= 0 typical
        Output true-peak ceiling.
    lookahead_ms : float, ms > 0
        Look-ahead and attack-ramp length.
    release_ms : float, ms > 0
        One-pole release time constant of the gain-reduction depth.
    oversample : int >= 1
        Oversampling factor for the true-peak envelope and the safety check (4 per BS.1770).
    envelope : ndarray, shape (samples,), optional
        ``true_peak_envelope(x)`` if the caller already has it (saves step 1).

    Returns
    -------
    gain : ndarray, shape (samples,), linear in [0, 1]
        Gain for all channels, aligned with ``x`` (no delay), the safety scale (Notes, 6)
        included: ``x * gain`` is the limited signal (:func:`true_peak_limit`). Exactly 1.0
        where no gain reduction is active, unless the safety step scaled it.

    Raises
    ------
    ParameterError
        ``x`` not 2-D, non-finite samples, non-positive times or rate.

    Notes
    -----
    1. True-peak envelope ``env[n]``: max over channels of ``|x|`` upsampled ``oversample``
       times (``resample_poly``, BS.1770-4 Annex 2), each local maximum on that grid refined by
       a 3-point parabola, folded to per-sample maxima over ``[n-1, n+1)`` so that the
       inter-sample peaks on both sides of a sample count for it. The parabola matters: a
       limiter pushes thousands of peaks to the ceiling, so the largest under-read of a plain
       4x grid among them (up to 0.69 dB = -20 log10 cos(pi/8) for a sine at Nyquist, 0.3 dB
       measured on white noise) shows up in the output; with the refinement an 8x meter reads at
       most 0.04 dB above the ceiling on white noise and about 0.01 dB on pink noise.
    2. Required gain ``g_req[n] = min(1, ceiling / env[n])``.
    3. Look-ahead: ``m[t] = min(g_req[t .. t+L])`` (sliding minimum, ``L`` = look-ahead in
       samples, ``g_req = 1`` outside the signal).
    4. Release: the gain-reduction depth ``u = 1 - m`` decays as a one-pole towards 0,
       ``u_rel[t] = max(u[t], alpha u_rel[t-1])`` with ``alpha = exp(-1 / (release_s sr))``,
       computed without a loop as ``u_rel[t] = exp(max_{i<=t}(ln u[i] + i c) - t c)``,
       ``c = -ln(alpha)`` (a running maximum, ``np.maximum.accumulate``).
    5. Attack: ``g[n] = 1 - mean(u_rel[n-L .. n])``, a moving average over ``L + 1`` samples,
       so the gain ramps down linearly-ish over the look-ahead time instead of jumping.

    Why ``g[n] <= g_req[n]``: every ``t`` in ``[n-L, n]`` has ``n`` inside its look-ahead window
    ``[t, t+L]``, so ``m[t] <= g_req[n]``, i.e. ``u[t] >= 1 - g_req[n]``; the release only
    raises depths (``u_rel >= u``); and a mean of numbers ``>= 1 - g_req[n]`` is itself
    ``>= 1 - g_req[n]``. So the gain is fully down when the peak arrives although the audio is
    not delayed: the look-ahead is built into the gain (the gain is shifted, not the audio).
    (The running sums of step 5 add rounding of order 1e-12, far below any tolerance.)

    6. Safety step: the gain is applied at the base rate, and the product's inter-sample peaks
       can still exceed the per-sample bound slightly (the gain modulates the signal between
       samples). The output's true peak is re-measured with the same estimator (step 1) and, if
       above the ceiling, the whole gain is scaled by ``ceiling / peak``. It is tiny: on the
       signals of ``tests/engine/test_dsp.py`` it triggers on the white-noise cases by 0.0004 to
       0.0009 dB and on the fs/4 sine by 0 to 1e-8 dB (0.003 dB at most seen on 2 s of white
       noise). Because it is uniform it keeps the balance; its only side effect is that quiet
       passages are scaled by the same factor.

    Examples
    --------
    >>> x = 2.0 * np.sin(2 * np.pi * 1000 * np.arange(4800) / 48000)[None]  # (1, 4800), +6 dBFS
    >>> g = limiter_gain(x, 48000)
    >>> g.shape, bool(true_peak_db(x * g, 48000) <= -1.0 + 1e-9)
    ((4800,), True)
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ParameterError(f"x must have shape (ch, samples), got {x.shape}; limit one master at a time")
    if not np.all(np.isfinite(x)):
        raise ParameterError("x contains NaN or inf; check the mix before limiting")
    sr = float(_require_positive("sr", sr))
    lookahead_ms = float(_require_positive("lookahead_ms", lookahead_ms))
    release_ms = float(_require_positive("release_ms", release_ms))
    oversample = _check_oversample(oversample)
    if not np.isfinite(ceiling_dbtp):
        raise ParameterError(f"ceiling_dbtp must be finite, got {ceiling_dbtp!r}")
    ceiling_lin = 10.0 ** (float(ceiling_dbtp) / 20.0)
    lookahead_samples = max(1, int(round(lookahead_ms / 1000.0 * sr)))

    gain = _limiter_gain(x, sr, ceiling_lin, lookahead_samples, release_ms, oversample, envelope)  # (samples,)
    peak = _true_peak_envelope(x * gain, oversample).max()  # safety step (6), same estimator
    if peak > ceiling_lin:
        gain *= ceiling_lin / peak
    return gain


def true_peak_limit(x, sr, *, ceiling_dbtp=-1.0, lookahead_ms=5.0, release_ms=80.0, oversample=4):
    """Look-ahead brickwall limiter on the true (oversampled) peak, with no output delay.

    Source: U. Zölzer (ed.), *DAFX*, 2nd ed., Wiley 2011, ch. 4 (limiter with look-ahead and
    peak-decay release); ITU-R BS.1770-4 Annex 2 (true peak). The algorithm, the proof that the
    gain is down when a peak arrives, and the safety step are in :func:`limiter_gain`.

    Parameters
    ----------
    x : ndarray, shape (ch, samples)
        Master bus, full scale = 1.
    sr : float, Hz > 0
    ceiling_dbtp : float, dBTP
        Output true-peak ceiling.
    lookahead_ms : float, ms > 0
        Look-ahead and attack-ramp length.
    release_ms : float, ms > 0
        One-pole release time constant.
    oversample : int >= 1
        Oversampling factor of the true-peak estimate (4 per BS.1770-4).

    Returns
    -------
    y : ndarray, shape (ch, samples)
        ``x * limiter_gain(x, ...)``, aligned with ``x``. Bit-identical to ``x`` where no gain
        reduction is active, unless the safety step scaled the whole output by a tiny factor.

    Raises
    ------
    ParameterError
        ``x`` not 2-D, non-finite samples, non-positive times or rate.

    Examples
    --------
    >>> x = 2.0 * np.sin(2 * np.pi * 1000 * np.arange(4800) / 48000)[None]  # +6 dBFS
    >>> bool(true_peak_db(true_peak_limit(x, 48000), 48000) <= -1.0 + 1e-9)
    True
    """
    gain = limiter_gain(
        x,
        sr,
        ceiling_dbtp=ceiling_dbtp,
        lookahead_ms=lookahead_ms,
        release_ms=release_ms,
        oversample=oversample,
    )  # (samples,)
    return np.asarray(x, dtype=float) * gain  # (ch, samples) * (samples,): all channels, no delay
