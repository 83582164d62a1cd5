"""RBJ-cookbook biquads and their responses: one biquad, or a cascade in one compiled pass.

rbj_sos                 biquad coefficients, RBJ Audio EQ Cookbook
sos_power_response      |H(e^jw)|^2 of one biquad, analytic and vectorized
cascade_power_response  the same for biquads in series (compiled, one pass)
sos_response, cascade_response  complex response (phase) of one biquad / biquads in series
"""
from __future__ import annotations

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.engine.dsp._checks import _require_positive
from evomix.errors import ParameterError

FILTER_KINDS = ("highpass", "lowshelf", "peak", "highshelf")
#: Highest allowed centre/cut-off frequency as a fraction of the sample rate.
MAX_FREQ_FRACTION = 0.49


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
        sr, freq_hz = float(sr), np.asarray(freq_hz, dtype=float)
        q, gain_db = np.asarray(q, dtype=float), np.asarray(gain_db, dtype=float)
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
            n0, n1, n2 = poly[i, j, 0], poly[i, j, 1], poly[i, j, 2]
            d0, d1, d2 = poly[i, j, 3], poly[i, j, 4], poly[i, j, 5]
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
