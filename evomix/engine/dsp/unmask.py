"""The sidechain-keyed dynamic EQ cut ("dynamic unmasking"), in both tiers.

A stem gets a peaking cut at ``freq_hz`` (width ``q``) that deepens from 0 dB to ``-depth_db`` only
while a key (another stem: the lead vocal over the guitars, the kick over the bass) is loud in
that band, as iZotope Neutron's Unmask, Wavesfactory Trackspacer or Sonible smart:EQ do.

activity_law            the one activity law of both tiers: key band level -> target cut in dB
bandpass_sos            RBJ band-pass (constant 0 dB peak gain): the key's detector filter
DynamicCutStream        exact tier, chunk by chunk: time-varying RBJ peaking cut keyed by the key
dynamic_cut             exact tier, whole signal (one DynamicCutStream call)
dynamic_cut_gain_db     exact tier's control curve: detector level and smoothed cut per control block
mono_band_power         band powers of the mono key (L + R) / 2 from per-channel powers and cross power
key_band_level_db       fast tier: the key's band-passed level per frame from its band powers
cut_band_gain           fast tier: power gain of the cut per band and frame, vectorized over (pop, stems)

The activity law (both tiers)
-----------------------------
1. The key is mixed to mono as the mean of its channels (a centred source keeps its level).
2. Its level in the cut's band, ``L`` (dB, 0 dB = RMS 1): the mean square of the key through the
   RBJ band-pass at ``freq_hz``, ``q`` (constant 0 dB peak gain), over ``DETECTOR_WINDOW_S``
   (50 ms). Exact tier: a causal 50 ms rectangle, read every ``CONTROL_SAMPLES`` samples. Fast
   tier: the key's band powers per 50 ms frame weighted by the band-pass's power response.
3. Activity ``a = clip((L - threshold_db) / RANGE_DB, 0, 1)``: no cut below the threshold, the
   full cut ``RANGE_DB`` (12 dB) above it, linear in dB in between.
4. Target cut ``g* = -depth_db * a`` (dB), smoothed by the branching one-pole of
   :func:`evomix.engine.dsp.dynamics.smooth_gain_db`: the attack time constant while the cut
   deepens, the release one while it recovers. A step reaches 63 % (1 - 1/e) of its size after one
   time constant.
5. The stem goes through the RBJ peaking EQ at ``freq_hz``, ``q`` with gain ``g`` (the smoothed cut).

``threshold_db`` is absolute (dBFS of the band-passed key; a full-scale sine at ``freq_hz`` reads
-3.01 dB): the caller sets it from the key's analysed band level (say its loud-frame level minus
some dB).

Sources: R. Bristow-Johnson, Audio EQ Cookbook, https://www.w3.org/TR/audio-eq-cookbook/ (peakingEQ,
BPF); A. Simper, "Linear Trapezoidal Integrated State Variable Filter", Cytomic technical paper
SvfLinearTrapOptimised2, 2013-2021 (the structure); U. Zölzer (ed.), DAFX, 2nd ed., Wiley 2011,
ch. 2 (parametric filters, time-varying filters) and ch. 4 (dynamics: side-chain, attack/release);
D. Giannoulis, M. Massberg, J. D. Reiss, JAES 60(6), 2012, eq. 17 (smoothing).
"""
from __future__ import annotations

import math

import numpy as np

from evomix.core.compiled import inline_njit, lazy_njit
from evomix.engine.dsp._checks import _require_positive
from evomix.engine.dsp.dynamics import LEVEL_FLOOR_DB, smooth_gain_db
from evomix.engine.dsp.filters import MAX_FREQ_FRACTION, cascade_power_response, rbj_sos
from evomix.errors import ParameterError

__all__ = [
    "CONTROL_SAMPLES", "DETECTOR_WINDOW_S", "RANGE_DB", "FREQ_RANGE_HZ", "MAX_DEPTH_DB", "SCALING_ERROR_DB",
    "activity_law", "bandpass_sos", "DynamicCutStream", "dynamic_cut", "dynamic_cut_gain_db",
    "mono_band_power", "key_band_level_db", "cut_band_gain", "cut_frame_db",
]

CONTROL_SAMPLES = 32  # samples per control block (0.73 ms at 44.1 kHz): detector read, cut smoothed, filter updated
DETECTOR_WINDOW_S = 0.05  # s, the key detector's RMS window (the fast tier's frames weigh about as long)
RANGE_DB = 12.0  # dB of key level over the threshold from no cut to the full cut
FREQ_RANGE_HZ = (60.0, 12000.0)  # allowed cut frequencies
MAX_DEPTH_DB = 12.0  # deepest cut, dB
#: Largest error (dB) of the fast tier's scaling of the full-depth response to a shallower cut (cut_band_gain).
SCALING_ERROR_DB = 0.25
STATE_FLOOR = 1e-200  # filter states below this are set to 0 at block starts (no subnormal arithmetic in silences)


# --------------------------------------------------------------------------------------------------
# checks and the shared law
# --------------------------------------------------------------------------------------------------
def _finite(name, value):
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    return arr


def _check_freq(freq_hz, sr):
    """``freq_hz`` as a float array in ``FREQ_RANGE_HZ`` (and <= 0.49 sr); raises ParameterError naming it."""
    freq_hz = _finite("freq_hz", freq_hz)
    low, high = FREQ_RANGE_HZ[0], min(FREQ_RANGE_HZ[1], MAX_FREQ_FRACTION * sr)
    if np.any((freq_hz < low) | (freq_hz > high)):
        raise ParameterError(f"freq_hz must be in [{low:g}, {high:g}] Hz at sr={sr:g} Hz, got {freq_hz.tolist()!r}")
    return freq_hz


def _check_params(sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms):
    """The cut's parameters as float arrays, each checked; raises ParameterError naming the value."""
    sr = float(_require_positive("sr", sr))
    freq_hz = _check_freq(freq_hz, sr)
    q = _require_positive("q", q)
    depth_db = _finite("depth_db", depth_db)
    if np.any((depth_db < 0.0) | (depth_db > MAX_DEPTH_DB)):
        raise ParameterError(f"depth_db must be in [0, {MAX_DEPTH_DB:g}] dB (0 = off), got {depth_db.tolist()!r}")
    threshold_db = _finite("threshold_db", threshold_db)
    attack_ms = _require_positive("attack_ms", attack_ms)
    release_ms = _require_positive("release_ms", release_ms)
    return sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms


def activity_law(level_db, depth_db, threshold_db):
    """Target cut in dB for a key band level: ``-depth_db * clip((level_db - threshold_db) / RANGE_DB, 0, 1)``.

    The one law both tiers use (steps 3-4 of the module docstring), before smoothing.

    Source: a feed-forward side-chain gain computer (Zölzer, DAFX 2nd ed., ch. 4.2; Giannoulis
    et al., JAES 60(6), 2012, sec. 2) with a linear-in-dB ramp of ``RANGE_DB`` instead of a ratio.

    Parameters
    ----------
    level_db : ndarray, shape (..., T), dB
        The key's band-passed level (:func:`key_band_level_db`, or the exact tier's detector).
    depth_db : float or ndarray, broadcastable, dB in [0, 12]
    threshold_db : float or ndarray, broadcastable, dB (absolute)

    Returns
    -------
    target_db : ndarray, broadcast shape, dB in [-depth_db, 0]

    Examples
    --------
    >>> activity_law(np.array([-40.0, -24.0, -18.0, 0.0]), 6.0, -24.0).tolist()
    [-0.0, -0.0, -3.0, -6.0]
    """
    activity = np.clip((np.asarray(level_db, dtype=float) - threshold_db) / RANGE_DB, 0.0, 1.0)  # a in [0, 1]
    return -np.asarray(depth_db, dtype=float) * activity  # g* = -depth a


def bandpass_sos(freq_hz, q, sr):
    """RBJ band-pass with constant 0 dB peak gain, as scipy second-order sections ``(..., 6)``.

    Source: RBJ Audio EQ Cookbook, https://www.w3.org/TR/audio-eq-cookbook/, "BPF (constant 0 dB
    peak gain)": ``H(s) = (s/Q) / (s^2 + s/Q + 1)``; ``b = [alpha, 0, -alpha]``,
    ``a = [1 + alpha, -2 cos w0, 1 - alpha]``, ``alpha = sin(w0) / (2 Q)``.

    Parameters
    ----------
    freq_hz : float or ndarray, broadcastable, Hz in (0, 0.49 sr]
    q : float or ndarray, broadcastable, > 0
    sr : float, Hz > 0

    Returns
    -------
    sos : ndarray, shape (..., 6), normalised by ``a0``.

    Examples
    --------
    >>> from evomix.engine.dsp.filters import sos_power_response
    >>> float(np.round(sos_power_response(bandpass_sos(1000.0, 2.0, 48000), np.array([1000.0]), 48000)[0], 9))
    1.0
    """
    sr = float(_require_positive("sr", sr))
    freq_hz = np.minimum(_require_positive("freq_hz", freq_hz), MAX_FREQ_FRACTION * sr)
    freq_hz, q = np.broadcast_arrays(freq_hz, _require_positive("q", q))
    w0 = 2.0 * np.pi * freq_hz / sr  # w0 = 2 pi f0 / Fs
    alpha = np.sin(w0) / (2.0 * q)  # alpha = sin(w0) / (2 Q)
    a0 = 1.0 + alpha
    # BPF (constant 0 dB peak gain), cookbook eq. 2: everything divided by a0 -> (..., 6)
    return np.stack([alpha / a0, np.zeros_like(alpha), -alpha / a0, np.ones_like(alpha), -2.0 * np.cos(w0) / a0,
                     (1.0 - alpha) / a0], axis=-1)


# --------------------------------------------------------------------------------------------------
# exact tier
# --------------------------------------------------------------------------------------------------
def _svf_coefficients(freq_hz, q, gain_db, sr):
    """Simper's linear trapezoidal SVF for the RBJ peakingEQ (``gain_db``) or, with the band output
    scaled by ``k``, the constant-0-dB BPF (``gain_db = 0``): ``(g, k, a1, a2, a3)``."""
    g = math.tan(math.pi * min(freq_hz, MAX_FREQ_FRACTION * sr) / sr)  # prewarped integrator gain
    amp = 10.0 ** (gain_db / 40.0)  # A, as the cookbook's peakingEQ
    k = 1.0 / (q * amp)  # damping 1 / (Q A)
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    a3 = g * a2
    return g, k, a1, a2, a3


@inline_njit
def _svf_tick(v0, ic1, ic2, a1, a2, a3):
    """One sample ``v0`` through Simper's linear trapezoidal SVF: returns the band output ``v1``
    (the peakingEQ adds ``m1 v1`` to ``v0``; ``k v1`` is the 0 dB band-pass) and the integrator
    states ``ic1``, ``ic2`` advanced."""
    v3 = v0 - ic2
    v1 = a1 * ic1 + a2 * v3
    v2 = ic2 + a2 * ic1 + a3 * v3
    return v1, 2.0 * v1 - ic1, 2.0 * v2 - ic2


@inline_njit
def _bell_coefficients(gain_db, g, q):
    """Simper's bell for the RBJ peakingEQ at ``gain_db``: ``(a1, a2, a3, m1)``, ``A = 10^(gain/40)``,
    ``k = 1/(Q A)``, ``m1 = k (A^2 - 1)`` (exactly 0 at 0 dB)."""
    amp = 10.0 ** (gain_db / 40.0)
    k = 1.0 / (q * amp)
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    return a1, a2, g * a2, k * (amp * amp - 1.0)


@inline_njit
def _flushed(s):
    """``s``, or 0 below ``STATE_FLOOR`` (a state ringing out into a silence: no subnormal arithmetic)."""
    return 0.0 if abs(s) < STATE_FLOOR else s


@lazy_njit
def _detect_chunk(key, det, state, ring, ipos, levels, gains):
    """Detector and control curve of one chunk of the key (the activity law, steps 1-4), resumable.

    ``key`` (kc, m): the chunk, any float dtype. ``det`` = [k, a1, a2, a3, threshold_db, range_db,
    depth_db, k_release, k_diff, 1 / window_samples, floor (mean square)]. ``state`` = [ic1, ic2,
    acc, y]: the band-pass's two integrator states, the current block's sum of squares and the
    smoothed cut (dB). ``ring`` (blocks,): the last window's block sums; ``ipos`` = [position in
    the block, ring index]. For each control block that ends in this chunk, in order, its level
    (dB) goes to ``levels[j]`` and the smoothed cut after it to ``gains[j]``; returns their number.
    """
    n_keys, m = key.shape
    k, a1, a2, a3 = det[0], det[1], det[2], det[3]
    threshold, range_db, depth = det[4], det[5], det[6]
    k_release, k_diff, inv_window, floor = det[7], det[8], det[9], det[10]
    inv_keys = 1.0 / n_keys
    ic1, ic2, acc, y = state[0], state[1], state[2], state[3]
    pos, ridx = ipos[0], ipos[1]
    n_ring = ring.shape[0]
    block = CONTROL_SAMPLES
    j = 0
    for t in range(m):
        v0 = np.float64(key[0, t])
        for c in range(1, n_keys):
            v0 += key[c, t]
        v0 *= inv_keys  # mono: mean of the channels
        v1, ic1, ic2 = _svf_tick(v0, ic1, ic2, a1, a2, a3)
        band = k * v1  # the cookbook BPF (constant 0 dB peak gain)
        acc += band * band
        pos += 1
        if pos == block:  # a control block ends: read the detector, apply the law, smooth
            ring[ridx] = acc
            ridx += 1
            if ridx == n_ring:
                ridx = 0
            acc = 0.0
            pos = 0
            total = 0.0
            for r in range(n_ring):
                total += ring[r]
            mean_square = total * inv_window  # causal rectangle of the last n_ring blocks
            if mean_square < floor:
                mean_square = floor
            level = 10.0 * np.log10(mean_square)
            activity = (level - threshold) / range_db  # a = clip((L - T) / range, 0, 1)
            if activity < 0.0:
                activity = 0.0
            elif activity > 1.0:
                activity = 1.0
            target = -depth * activity  # g* = -depth a
            delta = target - y  # smooth_gain_db's recursion (dynamics._smooth_rows), same order
            attack = delta < 0.0
            coef = k_diff * attack
            coef += k_release
            coef *= delta
            y += coef
            levels[j] = level
            gains[j] = y
            j += 1
            ic1, ic2 = _flushed(ic1), _flushed(ic2)
    state[0], state[1], state[2], state[3] = ic1, ic2, acc, y
    ipos[0], ipos[1] = pos, ridx
    return j


@lazy_njit
def _bell_chunk(x, out, gains, pos0, gain0, bell, g, q):
    """``x`` (C, m) through the time-varying peaking cut into ``out`` (C, m) float64, resumable.

    The first ``CONTROL_SAMPLES - pos0`` samples use the cut ``gain0`` (dB; the block under way),
    each later block the next entry of ``gains`` (the cut after the block before it: one block of
    latency, causal). ``bell`` (C, 2) holds each channel's integrator states. Coefficients are
    recomputed at each block start (:func:`_bell_coefficients`); at 0 dB ``m1 = 0`` and the output
    is the input exactly. Channels run two at a time, side by side, so that the two recursions
    overlap in the processor (each is latency-bound on its own).
    """
    n_ch, m = x.shape
    block = CONTROL_SAMPLES
    for c0 in range(0, n_ch, 2):
        c1 = c0 + 1 if c0 + 1 < n_ch else c0  # an odd last channel runs beside itself
        p1, q1 = bell[c0, 0], bell[c0, 1]
        p2, q2 = bell[c1, 0], bell[c1, 1]
        y = gain0
        j = 0
        pos = pos0
        t = 0
        while t < m:
            a1, a2, a3, m1 = _bell_coefficients(y, g, q)
            stop = t + block - pos
            if stop > m:
                stop = m
            for i in range(t, stop):
                v = np.float64(x[c0, i])
                w = np.float64(x[c1, i])
                b, p1, q1 = _svf_tick(v, p1, q1, a1, a2, a3)
                d, p2, q2 = _svf_tick(w, p2, q2, a1, a2, a3)
                out[c0, i] = v + m1 * b  # bell: m0 v0 + m1 v1 + m2 v2 with m0 = 1, m2 = 0
                out[c1, i] = w + m1 * d
            pos += stop - t
            t = stop
            if pos == block:  # the next block: the cut after this one
                pos = 0
                y = gains[j]
                j += 1
                p1, q1, p2, q2 = _flushed(p1), _flushed(q1), _flushed(p2), _flushed(q2)
        bell[c0, 0], bell[c0, 1] = p1, q1
        bell[c1, 0], bell[c1, 1] = p2, q2


class DynamicCutStream:
    """The exact tier's dynamic cut on a stem, fed chunk by chunk (state kept between chunks).

    Source: the activity law of the module docstring; filter structure: A. Simper, "Linear
    Trapezoidal Integrated State Variable Filter" (Cytomic, SvfLinearTrapOptimised2), whose bell
    and band outputs have exactly the responses of the RBJ cookbook's peakingEQ and BPF (both are
    the bilinear transform, prewarped at ``freq_hz``, of the same analog prototypes); time-varying
    filters: Zölzer, DAFX 2nd ed., ch. 2; side-chain dynamics: ch. 4.

    The cut's gain is updated every ``CONTROL_SAMPLES`` (32) samples: at each block end the
    detector's causal 50 ms RMS is read, the law gives the target and the one-pole smooths it;
    the next block's filter coefficients come from that gain (so the cut lags the key by one block,
    0.73 ms at 44.1 kHz, and never looks ahead: the stream has no latency). The filter's states
    are kept across coefficient updates (never reset), and coefficients are held within a block. Why this structure
    and not a transposed direct-form II biquad: the SVF's states are its two integrators' charges,
    which keep their meaning when the coefficients jump, so a fast attack (1 ms, several dB per
    block) causes no transient beyond the new response; a direct-form biquad's states are mixtures
    of past inputs and outputs weighted by the old coefficients and can ring or jump when the
    coefficients change (A. Wishnick, "Time-varying filters for musical applications", DAFx-14,
    2014). At 0 dB the bell's mix coefficient ``k (A^2 - 1)`` is exactly 0, so the output equals the
    input bit for bit wherever the cut is idle.

    Deterministic and chunk-invariant: the loops run in a fixed order with all state carried, so
    any split of a signal into chunks gives bit for bit the output of one call.

    Parameters
    ----------
    sr : float, Hz > 0
    freq_hz : float, Hz in [60, 12000] (and <= 0.49 sr), keyword-only
    q : float > 0 (the search uses 0.5-4), keyword-only
    depth_db : float, dB in [0, 12], keyword-only; 0 = off (the input is returned unchanged)
    threshold_db : float, dB (absolute level of the band-passed mono key), keyword-only
    attack_ms, release_ms : float, ms > 0 (the search uses 1-100 and 20-1000), keyword-only
    record : bool, keyword-only
        Keep each control block's detector level and smoothed cut (:attr:`level_db`,
        :attr:`gain_db`).

    Raises
    ------
    ParameterError
        A parameter out of range (the message names it).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, key = rng.normal(0, 0.1, (2, 4410)), rng.normal(0, 0.3, 4410)
    >>> s = DynamicCutStream(44100, freq_hz=2000.0, q=1.0, depth_db=6.0, threshold_db=-40.0,
    ...                      attack_ms=5.0, release_ms=100.0)
    >>> y = np.concatenate([s.process(x[:, :1000], key[:1000]), s.process(x[:, 1000:], key[1000:])], axis=1)
    >>> bool(np.array_equal(y, dynamic_cut(x, key, 44100, freq_hz=2000.0, q=1.0, depth_db=6.0,
    ...                                    threshold_db=-40.0, attack_ms=5.0, release_ms=100.0)))
    True
    """

    def __init__(self, sr, *, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms, record=False):
        sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms = _check_params(
            sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms)
        for name, value in (("freq_hz", freq_hz), ("q", q), ("depth_db", depth_db), ("threshold_db", threshold_db),
                            ("attack_ms", attack_ms), ("release_ms", release_ms)):
            if value.size != 1:
                raise ParameterError(f"DynamicCutStream: {name} must be one number, got shape {value.shape}")
        self.sr = sr
        self.freq_hz, self.q = float(freq_hz), float(q)
        self.depth_db, self.threshold_db = float(depth_db), float(threshold_db)
        self.attack_ms, self.release_ms = float(attack_ms), float(release_ms)
        step_s = CONTROL_SAMPLES / sr
        # smooth_gain_db's coefficients: (1 - alpha) = -expm1(-step / tau), per branch
        k_attack = float(-np.expm1(-step_s / (self.attack_ms / 1000.0)))
        k_release = float(-np.expm1(-step_s / (self.release_ms / 1000.0)))
        n_ring = max(1, int(round(DETECTOR_WINDOW_S * sr / CONTROL_SAMPLES)))  # window in whole blocks
        g, k, a1, a2, a3 = _svf_coefficients(self.freq_hz, self.q, 0.0, sr)  # the key's band-pass
        self._g = g
        self._det = np.array([k, a1, a2, a3, self.threshold_db, RANGE_DB, self.depth_db, k_release,
                              k_attack - k_release, 1.0 / (n_ring * CONTROL_SAMPLES), 10.0 ** (LEVEL_FLOOR_DB / 10.0)])
        self._state = np.zeros(4)  # [ic1, ic2, acc, y]: band-pass states, block sum, smoothed cut dB
        self._ring = np.zeros(n_ring)  # (blocks,) last window's block sums; the key was silent before the start
        self._ipos = np.zeros(2, dtype=np.int64)  # [position in block, ring index]
        self._bell = None  # (C, 2) per-channel integrator states, made at the first chunk
        self._gain0 = 0.0  # cut (dB) of the block under way
        self.record = bool(record)
        self._levels, self._gains = [], []
        self.n_samples = 0  # samples processed

    @property
    def window_samples(self) -> int:
        """The detector's window, samples (a whole number of control blocks, ~50 ms)."""
        return self._ring.size * CONTROL_SAMPLES

    @property
    def level_db(self) -> np.ndarray:
        """(K,) dB: the detector level at the end of each control block so far (``record=True``)."""
        return np.concatenate(self._levels) if self._levels else np.zeros(0)

    @property
    def gain_db(self) -> np.ndarray:
        """(K,) dB <= 0: the smoothed cut at the end of each control block so far (``record=True``);
        block ``k`` covers samples ``[32 k, 32 k + 32)`` and its cut is applied from sample ``32 (k + 1)``."""
        return np.concatenate(self._gains) if self._gains else np.zeros(0)

    def process(self, x, key, *, out=None):
        """The next chunk: ``x`` (C, m) stem, ``key`` (m,) or (kc, m) key -> (C, m) float64.

        Parameters
        ----------
        x : ndarray, shape (C, m), float32 or float64
            The stem's next ``m`` samples (the same channel count each call; ``C = 0`` runs the
            detector alone).
        key : ndarray, shape (m,) or (kc, m), float32 or float64
            The key's same ``m`` samples; mixed to mono as the mean of its channels.
        out : ndarray, shape (C, m), float64, optional, keyword-only
            Where to write the output: a new array, or ``x`` itself (in place; each sample is read
            before it is written), but no other view overlapping ``x``.

        Returns
        -------
        y : ndarray, shape (C, m), float64
            ``x`` (as float64, values unchanged) when ``depth_db`` is 0 (the detector then runs only
            with ``record``).

        Raises
        ------
        ParameterError
            Bad shapes or dtypes, or a channel count different from the first chunk's.
        """
        x, key = np.asarray(x), np.asarray(key)
        if key.ndim == 1:
            key = key[None, :]  # (m,) -> (1, m)
        if x.ndim != 2 or key.ndim != 2 or key.shape[1] != x.shape[1] or key.shape[0] == 0:
            raise ParameterError(f"x must be (channels, m) and key (m,) or (channels, m) with the same m; got "
                                 f"x {x.shape}, key {key.shape}")
        for name, a in (("x", x), ("key", key)):
            if a.dtype not in (np.float32, np.float64):
                raise ParameterError(f"{name} must be float32 or float64, got {a.dtype}")
        if self._bell is None:
            self._bell = np.zeros((x.shape[0], 2))  # (C, 2) integrator states
        elif self._bell.shape[0] != x.shape[0]:
            raise ParameterError(f"x has {x.shape[0]} channels; this stream was started with {self._bell.shape[0]}")
        m = x.shape[1]
        if out is None:
            out = np.empty(x.shape)
        elif out.shape != x.shape or out.dtype != np.float64:
            raise ParameterError(f"out must be float64 of shape {x.shape}, got {out.dtype} {out.shape}")
        self.n_samples += m
        if self.depth_db == 0.0:  # off: the identity, whatever the key does
            if out is not x:
                out[...] = x
            if not self.record:
                return out
        pos0 = int(self._ipos[0])
        n_ends = (pos0 + m) // CONTROL_SAMPLES  # control blocks that end in this chunk
        levels, gains = np.empty(n_ends), np.empty(n_ends)
        _detect_chunk(key, self._det, self._state, self._ring, self._ipos, levels, gains)
        if x.shape[0] and self.depth_db > 0.0:
            _bell_chunk(x, out, gains, pos0, self._gain0, self._bell, self._g, self.q)
        if n_ends:
            self._gain0 = float(gains[-1])
        if self.record:
            self._levels.append(levels)
            self._gains.append(gains)
        return out


def _whole(x, key):
    """``x`` (C, n) and ``key`` (n,) or (kc, n) checked as whole signals of the same length."""
    x, key = np.asarray(x), np.asarray(key)
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ParameterError(f"x must have shape (channels, samples) with samples > 0, got {x.shape}; "
                             "add a channel axis with x[None, :] for a mono stem")
    if key.ndim not in (1, 2) or key.shape[-1] != x.shape[-1]:
        raise ParameterError(f"key must have shape (samples,) or (channels, samples) with the stem's "
                             f"{x.shape[-1]} samples, got {key.shape}")
    return x, key


def dynamic_cut(x, key, sr, *, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms):
    """The stem ``x`` through the dynamic cut keyed by ``key`` (exact tier, whole signal).

    Source: see :class:`DynamicCutStream` (RBJ peakingEQ as Simper's trapezoidal SVF, updated
    every 32 samples; activity law of the module docstring; Zölzer, DAFX 2nd ed., ch. 2 and 4).

    Parameters
    ----------
    x : ndarray, shape (channels, n), float32 or float64, full scale = 1
    key : ndarray, shape (n,) or (key_channels, n), float32 or float64
        The key (another stem); mixed to mono as the mean of its channels.
    sr : float, Hz > 0
    freq_hz : float, Hz in [60, 12000], keyword-only
    q : float > 0, keyword-only
    depth_db : float, dB in [0, 12]; 0 = off, keyword-only
    threshold_db : float, dB (absolute band-passed key level), keyword-only
    attack_ms, release_ms : float, ms > 0, keyword-only

    Returns
    -------
    y : ndarray, shape (channels, n), float64
        Equal to ``x`` in value when ``depth_db == 0`` or while the cut is idle (0 dB).

    Raises
    ------
    ParameterError
        Bad shapes or parameters (the message names the value).

    Examples
    --------
    >>> x = np.ones((2, 100))
    >>> bool(np.array_equal(dynamic_cut(x, np.zeros(100), 44100, freq_hz=1000.0, q=1.0, depth_db=6.0,
    ...                                 threshold_db=-30.0, attack_ms=5.0, release_ms=50.0), x))
    True
    """
    x, key = _whole(x, key)
    stream = DynamicCutStream(sr, freq_hz=freq_hz, q=q, depth_db=depth_db, threshold_db=threshold_db,
                              attack_ms=attack_ms, release_ms=release_ms)
    return stream.process(x, key)


def dynamic_cut_gain_db(key, sr, *, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms):
    """The exact tier's control curve for a key: detector level and smoothed cut per control block.

    Source: the activity law of the module docstring (the detector and smoothing of
    :class:`DynamicCutStream`, without the stem).

    Parameters
    ----------
    key : ndarray, shape (n,) or (key_channels, n), float32 or float64
    sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms
        As :func:`dynamic_cut` (``depth_db = 0`` still gives the levels, with a 0 dB cut).

    Returns
    -------
    level_db : ndarray, shape (n // 32,), dB >= -120
        The key's band level (causal 50 ms RMS) at the end of each control block ``k`` (samples
        ``[32 k, 32 k + 32)``).
    gain_db : ndarray, shape (n // 32,), dB in [-depth_db, 0]
        The smoothed cut after block ``k``, applied to the stem from sample ``32 (k + 1)``:
        ``smooth_gain_db(activity_law(level_db, depth_db, threshold_db), attack_ms, release_ms,
        32 / sr)`` bit for bit.

    Examples
    --------
    >>> level, gain = dynamic_cut_gain_db(np.zeros(3200), 44100, freq_hz=1000.0, q=1.0, depth_db=6.0,
    ...                                   threshold_db=-30.0, attack_ms=5.0, release_ms=50.0)
    >>> level.shape, float(gain.min())
    ((100,), 0.0)
    """
    key = np.asarray(key)
    if key.ndim not in (1, 2) or key.shape[-1] == 0:
        raise ParameterError(f"key must have shape (samples,) or (channels, samples), got {key.shape}")
    stream = DynamicCutStream(sr, freq_hz=freq_hz, q=q, depth_db=depth_db, threshold_db=threshold_db,
                              attack_ms=attack_ms, release_ms=release_ms, record=True)
    stream.process(np.empty((0, key.shape[-1])), key)  # no stem: the detector and the smoothing alone
    return stream.level_db, stream.gain_db


# --------------------------------------------------------------------------------------------------
# fast tier
# --------------------------------------------------------------------------------------------------
def _band_points(bands_hz):
    """``bands_hz`` as (B, S) evaluation points: a BandGrid's fine grid (B, SUBBANDS), a (B, S)
    array, or a (B,) array of one point per band."""
    if hasattr(bands_hz, "grid_hz"):  # a BandGrid: its SUBBANDS log-spaced points per band
        return np.asarray(bands_hz.grid_hz, dtype=float).reshape(bands_hz.n_bands, -1)
    points = np.asarray(bands_hz, dtype=float)
    if points.ndim == 1:
        return points[:, None]  # (B,) -> (B, 1)
    if points.ndim != 2:
        raise ParameterError(f"bands_hz must be a BandGrid, (bands,) or (bands, points) Hz, got shape {points.shape}")
    return points


def _band_mean_power(sos, points, sr):
    """Power response of one biquad per row ``sos`` (..., 6), averaged over each band's points
    (B, S) -> (..., B) (the band power a flat spectrum in the band would get)."""
    n_bands, n_points = points.shape
    power = cascade_power_response(sos[..., None, :], points.reshape(-1), sr)  # (..., B * S)
    return power.reshape(power.shape[:-1] + (n_bands, n_points)).mean(axis=-1)  # (..., B, S) -> (..., B)


def mono_band_power(power, cross):
    """Band powers of the mono key ``(L + R) / 2`` from its channels' band powers and cross power.

    Source: ``|(L + R) / 2|^2 = (|L|^2 + |R|^2 + 2 Re(L R*)) / 4`` per STFT bin, summed over a
    band's bins (``evomix.engine.bands.band_powers`` gives both terms).

    Parameters
    ----------
    power : ndarray, shape (..., 2, B, T) (mean square per hop) or (..., 1, B, T) for a mono key
    cross : ndarray, shape (..., B, T), ``Re(L R*)`` per band and frame (ignored for a mono key)

    Returns
    -------
    mono : ndarray, shape (..., B, T), >= 0

    Examples
    --------
    >>> p = np.ones((2, 3, 4)); float(mono_band_power(p, np.ones((3, 4)))[0, 0])  # identical channels
    1.0
    """
    power = np.asarray(power)
    if power.ndim < 3 or power.shape[-3] not in (1, 2):
        raise ParameterError(f"power must have shape (..., 1 or 2, bands, frames), got {power.shape}")
    if power.shape[-3] == 1:
        return power[..., 0, :, :]
    mono = (power[..., 0, :, :] + power[..., 1, :, :] + 2.0 * np.asarray(cross)) / 4.0  # (..., 2, B, T) -> (..., B, T)
    return np.maximum(mono, 0.0)  # rounding can leave -1e-9 where L = -R


def key_band_level_db(key_power, *, freq_hz, q, bands_hz, sr):
    """The key's level in the cut's band per frame (fast tier): its band powers weighted by the
    RBJ band-pass's power response, in dB.

    Source: the activity law's detector (module docstring, step 2) in the band domain: a band's
    power through the band-pass is ``P_b * mean over the band of |H_BP(f)|^2`` if the key's spectrum
    is flat within the band (RBJ cookbook BPF; Parseval over the frame's bins).

    Parameters
    ----------
    key_power : ndarray, shape (..., B, T), linear (mean square per hop)
        The mono key's band powers per frame (:func:`mono_band_power` of
        ``evomix.engine.bands.band_powers``).
    freq_hz : float or ndarray, broadcastable to the leading axes ``...``, Hz in [60, 12000], keyword-only
    q : float or ndarray, broadcastable, > 0, keyword-only
    bands_hz : BandGrid, or ndarray (B,) or (B, S) Hz, keyword-only
        The bands: a :class:`evomix.engine.bands.BandGrid` (its ``SUBBANDS`` points per band), or
        points per band whose responses are averaged.
    sr : float, Hz > 0, keyword-only

    Returns
    -------
    level_db : ndarray, shape (broadcast of ``...`` and the parameters, T), dB >= -120

    Examples
    --------
    >>> from evomix.engine.bands import band_grid
    >>> grid = band_grid(44100)
    >>> level = key_band_level_db(np.ones((2, grid.n_bands, 5)), freq_hz=[[500.0, 4000.0]], q=1.0,
    ...                           bands_hz=grid, sr=44100)
    >>> level.shape
    (1, 2, 5)
    """
    sr = float(_require_positive("sr", sr))
    freq_hz = _check_freq(freq_hz, sr)
    q = _require_positive("q", q)
    points = _band_points(bands_hz)  # (B, S)
    key_power = np.asarray(key_power, dtype=float)
    if key_power.ndim < 2 or key_power.shape[-2] != points.shape[0]:
        raise ParameterError(f"key_power must have shape (..., {points.shape[0]} bands, frames), got {key_power.shape}")
    weight = _band_mean_power(bandpass_sos(freq_hz, q, sr), points, sr)  # (P..., B)
    band_passed = np.matmul(weight[..., None, :], key_power)[..., 0, :]  # (P..., 1, B) @ (..., B, T) -> (..., T)
    return 10.0 * np.log10(np.maximum(band_passed, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))


def cut_band_gain(key_level_db, *, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms, hop_s, bands_hz, sr):
    """Power gain of the dynamic cut per band and frame (fast tier), for whole populations.

    Source: the activity law (module docstring) at frame rate: :func:`activity_law`, then
    :func:`evomix.engine.dsp.dynamics.smooth_gain_db` (``step_mean``), then the RBJ peakingEQ's
    power response at the frame's cut (cookbook, via
    :func:`evomix.engine.dsp.filters.cascade_power_response`), averaged over each band's points.

    Timing. The key's level in frame ``t`` is measured over a 100 ms Hann window centred on
    ``t hop``; the exact tier's causal 50 ms detector reads that level about 25 ms later, so the
    target of frame ``t`` drives the cut over the step ``[t hop, (t + 1) hop)``: ``m[t]``, the mean
    of the one-pole over that step (``step_mean``). Frame ``t`` of the cut stem is measured over
    ``[(t - 1) hop, (t + 1) hop)``, half of its Hann window on each step, so its cut at the centre
    frequency is the power mean ``10 log10((10^(m[t-1]/10) + 10^(m[t]/10)) / 2)`` (``m[-1] = 0``).
    Frames where an abrupt key switches on or off stay the least accurate (a 50 ms frame cannot
    tell where in it the key started); ``tests/test_unmask.py`` measures the agreement.

    Response. The time-varying filter is approximated frame by frame by the static peaking filter
    at the frame's cut ``g``, and that response is not recomputed per frame: the response at full
    depth, in dB, is scaled by ``g / -depth_db``. That is exact at the centre frequency and where
    the full cut is half its depth in dB (``|Omega - 1/Omega| = 1/Q``); elsewhere the RBJ bell's
    shape changes a little with its gain (``|H|^2 = (u + A^2) / (u + A^-2)``, ``u`` a function of
    frequency only): the scaling errs by at most ``SCALING_ERROR_DB`` (0.25 dB; measured 0.23 dB at
    half depth of a 12 dB cut with Q = 4, in the bands of its skirts, and less for shallower or
    wider cuts; tests/test_unmask.py measures it over depths, frequencies and Q).

    Parameters
    ----------
    key_level_db : ndarray, shape (..., T), dB
        The key's band level per frame (:func:`key_band_level_db`).
    freq_hz, q, depth_db, threshold_db, attack_ms, release_ms : float or ndarray, keyword-only
        Broadcastable to each other and to ``key_level_db.shape[:-1]`` (say (pop, stems)); Hz in
        [60, 12000], > 0, dB in [0, 12], dB, ms > 0, ms > 0.
    hop_s : float, s > 0, keyword-only
        Frame hop (``BandGrid.hop_s``, 0.05 s).
    bands_hz : BandGrid, or ndarray (B,) or (B, S) Hz, keyword-only
        Where to evaluate the cut: a BandGrid's ``SUBBANDS`` points per band (averaged in power), or
        given points.
    sr : float, Hz > 0, keyword-only

    Returns
    -------
    gain : ndarray, shape (lead..., B, T), linear power gain in (0, 1]
        ``lead`` is the broadcast of ``key_level_db.shape[:-1]`` and the parameters' shapes;
        exactly 1 where the cut is 0 dB (``depth_db = 0``, or the key below its threshold).

    Raises
    ------
    ParameterError
        A parameter out of range (the message names it).

    Examples
    --------
    >>> from evomix.engine.bands import band_grid
    >>> grid = band_grid(44100)
    >>> level = np.full((4, 3, 100), -10.0)  # (pop, stems, frames)
    >>> g = cut_band_gain(level, freq_hz=2000.0, q=1.0, depth_db=np.full((4, 3), 6.0), threshold_db=-30.0,
    ...                   attack_ms=10.0, release_ms=100.0, hop_s=grid.hop_s, bands_hz=grid, sr=44100)
    >>> g.shape
    (4, 3, 32, 100)
    """
    frame_db, per_neper = cut_frame_db(key_level_db, freq_hz=freq_hz, q=q, depth_db=depth_db,
                                       threshold_db=threshold_db, attack_ms=attack_ms, release_ms=release_ms,
                                       hop_s=hop_s, bands_hz=bands_hz, sr=sr)
    # 10^(per_db g / 10) = exp(per_neper g): one multiply and one exp per (band, frame)
    return np.exp(per_neper[..., :, None] * frame_db[..., None, :])  # (lead.., B, 1) * (lead.., 1, T) -> (lead.., B, T)


def cut_frame_db(key_level_db, *, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms, hop_s, bands_hz, sr):
    """The two factors of :func:`cut_band_gain`: ``gain = exp(per_neper[..., :, None] * frame_db[..., None, :])``.

    For callers that apply the cut without holding the (lead..., B, T) tensor (the fast tier at real
    size: ``engine.batch``). Arguments as :func:`cut_band_gain`.

    Returns
    -------
    frame_db : ndarray, shape (lead..., T), dB <= 0: each frame's cut at the centre frequency.
    per_neper : ndarray, shape (lead..., B), >= 0: each band's cut in nepers of power per dB of
        ``frame_db`` (``per_db ln(10) / 10``, ``per_db`` in [0, 1]).
    """
    sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms = _check_params(
        sr, freq_hz, q, depth_db, threshold_db, attack_ms, release_ms)
    hop_s = float(_require_positive("hop_s", hop_s))
    key_level_db = np.asarray(key_level_db, dtype=float)
    if key_level_db.ndim < 1 or key_level_db.shape[-1] == 0:
        raise ParameterError(f"key_level_db must have shape (..., frames), got {key_level_db.shape}")
    params = (freq_hz, q, depth_db, threshold_db, attack_ms, release_ms)
    lead = np.broadcast_shapes(key_level_db.shape[:-1], *(p.shape for p in params))  # (pop, stems), say
    points = _band_points(bands_hz)  # (B, S)

    target_db = activity_law(key_level_db, depth_db[..., None], threshold_db[..., None])  # (lead..., T)
    target_db = np.broadcast_to(target_db, lead + key_level_db.shape[-1:])
    step_db = smooth_gain_db(target_db, attack_ms, release_ms, hop_s, step_mean=True)  # (lead..., T): m[t], <= 0
    step_power = 10.0 ** (step_db / 10.0)  # (lead..., T)
    frame_power = step_power.copy()
    frame_power[..., 1:] += step_power[..., :-1]  # m[t] + m[t - 1] (in power)
    frame_power[..., 0] += 1.0  # m[-1] = 0 dB
    frame_power *= 0.5
    frame_db = 10.0 * np.log10(frame_power)  # (lead..., T), the frame's cut at the centre frequency, <= 0

    # response shape per dB of cut: the full-depth response (dB) / depth; any depth serves where depth is 0
    ref_db = np.where(depth_db > 0.0, depth_db, MAX_DEPTH_DB)  # (P...,)
    sos = rbj_sos("peak", freq_hz, -ref_db, q, sr, check=False)  # (P..., 6)
    full_db = 10.0 * np.log10(_band_mean_power(sos, points, sr))  # (P..., B), <= 0
    per_db = full_db / -ref_db[..., None]  # (P..., B), in [0, 1]: dB of band cut per dB of cut at the centre
    per_neper = np.broadcast_to(per_db * (math.log(10.0) / 10.0), lead + per_db.shape[-1:])  # (lead..., B)
    return frame_db, per_neper
