"""The compressor: soft-knee gain computer, attack/release smoothing, RMS detector, gain curve.

compressor_static_db  soft-knee gain computer, Giannoulis et al. 2012 (compressor_static_rows: unchecked rows)
smooth_gain_db        branching one-pole attack/release smoothing of a gain in dB
rms_level_db          stereo-linked windowed RMS detector at control rate
compressor_gain       gain curve of the feed-forward RMS compressor (exact tier)
compress              x * compressor_gain
"""
from __future__ import annotations

import math

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.engine.dsp._checks import _require_positive, _require_signal
from evomix.errors import ParameterError

LEVEL_FLOOR_DB = -120.0


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
    (~10 small array operations each, holding the GIL). Compiled, it is several times faster and releases
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


def compress(x, sr, **settings):
    """Feed-forward, stereo-linked, RMS-detecting compressor (exact tier), without makeup gain.

    Source: Giannoulis, Massberg & Reiss, JAES 60(6), 2012 (eq. 4 static curve, eq. 17
    smoothing); see :func:`compressor_gain` for the steps, the parameters and why the detector
    is RMS over 50 ms (the fast tier uses the same gain computer at its 50 ms frame rate).

    Parameters
    ----------
    x : ndarray, shape (..., ch, samples)
        Input, full scale = 1.
    sr : float, Hz > 0
    **settings
        The keyword arguments of :func:`compressor_gain`, with its defaults: ``threshold_db``,
        ``ratio``, ``attack_ms``, ``release_ms`` (required), ``knee_db``, ``window_s``, ``step_s``
        (dB, >= 1, ms, ms, dB, s, s); the first five broadcast to ``x.shape[:-2]``.

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
    gain = compressor_gain(x, sr, **settings)  # (..., samples)
    return x * gain[..., None, :]  # (..., samples) -> (..., 1, samples), stereo link
