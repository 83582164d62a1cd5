"""The reverb of the reverb bus: a stereo feedback delay network (exact tier) and its band-power model (fast tier).

line_delays            mutually prime delay-line lengths chosen from the seed (Jot & Chaigne 1991; Smith, PASP)
reverb_design          delay lengths, gains and filters of the FDN for one parameter set (Jot & Chaigne 1991)
ReverbStream           the FDN with its state, for audio in chunks (chunked == one call, bit for bit)
reverb                 one call: the wet return of a stereo signal, ReverbStream(...).process(x)
band_decay_s           RT60 per band of the FDN, from its absorption filters' actual response
reverb_band_power      the return's power per band and frame: the send smeared by each band's energy decay
return_highpass_power  power response of the return high-pass (RBJ) at band centres or averaged per band

The exact tier is sample-accurate and reproducible: the same arguments give the same output bit for
bit, run to run and however the input is cut into chunks. Its energy gain is calibrated to one per
band (a stationary white-noise send comes back at the same power per band, before the high-pass), so
the fast tier's model, a unit-gain exponential smear per band, needs no fudge factor. The tests
measure both claims against independent routes (Schroeder integration, STFT band powers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.engine.dsp._checks import _require_positive
from evomix.engine.dsp.filters import rbj_sos, sos_power_response
from evomix.errors import ParameterError

N_LINES = 16  # delay lines (the kernel's fast Walsh-Hadamard transform is written for 16)
BLOCK = 256  # samples per block of the compiled kernel (at most the shortest line)
LINE_DELAY_RANGE_S = (0.020, 0.070)  # s, shortest and longest nominal delay line
#: Nominal delay-line lengths, s (the fast tier's onset model uses them).
NOMINAL_LINE_DELAYS_S = np.geomspace(*LINE_DELAY_RANGE_S, N_LINES)
#: Mean delay of the lines, s: every seed's lengths are scaled to it before rounding to primes.
MEAN_LINE_DELAY_S = float(NOMINAL_LINE_DELAYS_S.mean())
DAMPING_REF_HZ = 8000.0  # Hz, where the decay time is decay_s * damping (at most sr / 4)
DECAY_RANGE_S = (0.2, 8.0)  # s, RT60 at low frequencies
PREDELAY_RANGE_MS = (0.0, 200.0)  # ms
HIGHPASS_RANGE_HZ = (20.0, 1000.0)  # Hz, return high-pass cut-off
HIGHPASS_Q = 1.0 / math.sqrt(2.0)  # Butterworth response of the RBJ high-pass
#: Magnitude below which a filter state is set to 0 (-3000 dB): no subnormal arithmetic in a long tail.
FLUSH_BELOW = 1e-150
#: 60 dB of energy decay in T60: ``tau = T60 / DECAY_TO_TAU``, the energy time constant (6 ln 10).
DECAY_TO_TAU = 6.0 * math.log(10.0)


def _check_range(name, value, low, high, *, low_open=False):
    """``value`` as a float, or ParameterError naming it and the range."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not (math.isfinite(v) and (v > low if low_open else v >= low) and v <= high):
        bracket = "(" if low_open else "["
        raise ParameterError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")
    return v


def _check_damping(damping):
    """Damping as an array, each element in (0, 1], or ParameterError naming it."""
    arr = np.asarray(damping, dtype=float)
    if arr.size == 0 or not np.all((arr > 0.0) & (arr <= 1.0)):
        raise ParameterError(f"damping must be in (0, 1] (1 = no extra decay at high frequencies), got {damping!r}")
    return arr


def _primes_upto(n):
    """Primes <= n (sieve of Eratosthenes), ascending int64."""
    sieve = np.ones(n + 1, dtype=bool)
    sieve[:2] = False
    for k in range(2, int(n**0.5) + 1):
        if sieve[k]:
            sieve[k * k :: k] = False
    return np.nonzero(sieve)[0]


def line_delays(sr, seed=None):
    """Delay-line lengths in samples: distinct primes (so mutually prime) spread over ``LINE_DELAY_RANGE_S``.

    Source: J.-M. Jot, A. Chaigne, "Digital delay networks for designing artificial reverberators",
    90th AES Convention, 1991, preprint 3030 (mutually prime lengths, so that the modes of the lines
    do not coincide); J. O. Smith, *Physical Audio Signal Processing*, "Choice of Delay Lengths",
    https://ccrma.stanford.edu/~jos/pasp/Choice_Delay_Lengths.html

    The nominal lengths are ``N_LINES`` geometrically spaced times from 20 to 70 ms. A seed moves each
    one by up to half a geometric step (log-uniform), scales them back to the nominal mean
    (``MEAN_LINE_DELAY_S``, which the fast tier's model uses) and shuffles them over the lines; each
    is then rounded to the nearest prime not already taken.

    Parameters
    ----------
    sr : float, Hz > 0
    seed : int >= 0 or None
        None: the nominal lengths, in ascending order (what :func:`band_decay_s` uses by default).

    Returns
    -------
    delays : ndarray, shape (N_LINES,), int64, samples
    """
    targets_s = NOMINAL_LINE_DELAYS_S.copy()  # (N,) s
    order = np.arange(N_LINES)
    if seed is not None:
        rng = np.random.default_rng(seed)
        half_step = 0.5 * math.log(LINE_DELAY_RANGE_S[1] / LINE_DELAY_RANGE_S[0]) / (N_LINES - 1)
        targets_s = targets_s * np.exp(rng.uniform(-half_step, half_step, N_LINES))
        targets_s *= MEAN_LINE_DELAY_S / targets_s.mean()
        order = rng.permutation(N_LINES)
    targets = targets_s * sr  # (N,) samples
    primes = _primes_upto(int(targets.max() * 1.5) + 100)
    delays = np.empty(N_LINES, dtype=np.int64)
    taken = set()
    for k in np.argsort(targets, kind="stable"):
        ranked = primes[np.argsort(np.abs(primes - targets[k]), kind="stable")]
        delays[k] = next(int(p) for p in ranked if int(p) not in taken)
        taken.add(int(delays[k]))
    return delays[order]


def _damping_ref_hz(sr):
    """The frequency at which the decay time is ``decay_s * damping``: 8 kHz, at most sr / 4."""
    return min(DAMPING_REF_HZ, 0.25 * sr)


def _absorption(delays, sr, decay_s, damping):
    """One-pole absorption filter of each line, ``H_i(z) = g_i (1 - p_i) / (1 - p_i z^-1)`` (eqs. A1-A3).

    Broadcast: ``decay_s``, ``damping`` (...) -> ``dc_gain`` ``g_i``, ``pole`` ``p_i``, ``one_minus_pole``
    (..., N); ``1 - p_i`` is computed without cancellation (it is ~1e-10 for short, strongly damped decays).
    """
    m = np.asarray(delays, dtype=float)  # (N,) samples
    decay_s = np.asarray(decay_s, dtype=float)[..., None]  # (..., 1)
    damping = np.asarray(damping, dtype=float)[..., None]  # (..., 1)
    loss_dc_db = 60.0 * m / (sr * decay_s)  # (..., N) dB per pass at DC: 60 dB in decay_s (eq. A1)
    dc_gain = 10.0 ** (-loss_dc_db / 20.0)
    # power ratio R = |H(0)|^2 / |H(w_r)|^2 = 10^(extra / 10), extra = loss_dc (1/damping - 1) dB (eq. A2)
    r_minus_1 = np.expm1(math.log(10.0) / 10.0 * loss_dc_db * (1.0 / damping - 1.0))
    cos_r = math.cos(2.0 * math.pi * _damping_ref_hz(sr) / sr)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = (1.0 - cos_r) / r_minus_1  # B - 1, B = (R - cos w_r) / (R - 1); inf for damping = 1
        root = np.sqrt(e * (2.0 + e))  # sqrt(B^2 - 1)
        pole = np.where(np.isinf(e), 0.0, 1.0 / (1.0 + e + root))  # root < 1 of p^2 - 2 B p + 1 = 0 (eq. A3)
        one_minus_pole = np.where(np.isinf(e), 1.0, (e + root) / (1.0 + e + root))
    return dc_gain, pole, one_minus_pole


def _line_power_gain(dc_gain, pole, one_minus_pole, freq_hz, sr):
    """``|H_i(e^jw)|^2`` of the absorption filters (eq. A4): (..., N) x 3, (F,) -> (..., N, F)."""
    w = 2.0 * np.pi * np.asarray(freq_hz, dtype=float) / sr  # (F,)
    g, p, q = dc_gain[..., None], pole[..., None], one_minus_pole[..., None]  # (..., N, 1)
    # 1 - 2 p cos w + p^2 = (1 - p)^2 + 4 p sin^2(w/2): no cancellation near DC
    return (g * q) ** 2 / (q * q + 4.0 * p * np.sin(w / 2.0) ** 2)


def _output_filters(dc_gain, pole, one_minus_pole):
    """Per-line output filter ``F_i(z) = sqrt(N K_i / 2) (1 - z_i z^-1) / (1 - p_i z^-1)`` with
    ``|F_i|^2 = (N / 2) (1 - |H_i|^2)`` (eq. C2): returns ``sqrt(N K_i / 2)`` and ``z_i`` (N,).

    ``1 - |H_i|^2 = (1 + p^2 - G^2 - 2 p cos w) / (1 + p^2 - 2 p cos w)`` with ``G = g (1 - p)``; the
    numerator is ``K (1 + z^2 - 2 z cos w)`` with ``z / (1 + z^2) = h = p / (1 + p^2 - G^2)`` (a real
    ``z`` in [0, 1): ``h <= 1/2`` because ``g < 1``).
    """
    g, p, q = dc_gain, pole, one_minus_pole
    one_minus_g2 = -np.expm1(2.0 * np.log(g))  # 1 - g^2
    den = q * q * one_minus_g2 + 2.0 * p  # 1 + p^2 - G^2
    h = p / den
    one_minus_2h = q * q * one_minus_g2 / den
    zero = 2.0 * h / (1.0 + np.sqrt(one_minus_2h * (1.0 + 2.0 * h)))  # root < 1 of h z^2 - z + h = 0
    k = den / (1.0 + zero * zero)
    return np.sqrt(0.5 * N_LINES * k), zero


def _hadamard(n):
    """Sylvester Hadamard matrix of order ``n`` (a power of two), entries +-1."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


@dataclass(frozen=True)
class ReverbDesign:
    """Everything the FDN kernel needs for one parameter set (:func:`reverb_design`).

    Attributes
    ----------
    sr : float, Hz.  delays : (N,) int64 samples.  predelay : int, samples.
    in_gain : (2, N) input gains ``b_L``, ``b_R``: +-sqrt(2/N) on the even (L) or odd (R) lines.
    out_gain : (2, N) output gains ``c_L``, ``c_R`` (unit norm, orthogonal).
    loop_gain : (N,) ``g_i (1 - p_i) / sqrt(N)``: absorption numerator with the matrix's 1/sqrt(N).
    pole : (N,) absorption poles ``p_i`` in [0, 1).
    tap_now, tap_prev : (2, N) output taps on the absorption filters' outputs ``u_i`` (eq. C3).
    highpass : (6,) RBJ high-pass ``[b0, b1, b2, 1, a1, a2]``.
    """

    sr: float
    delays: np.ndarray
    predelay: int
    in_gain: np.ndarray
    out_gain: np.ndarray
    loop_gain: np.ndarray
    pole: np.ndarray
    tap_now: np.ndarray
    tap_prev: np.ndarray
    highpass: np.ndarray


def reverb_design(sr, *, decay_s=1.5, predelay_ms=0.0, damping=0.5, highpass_hz=20.0, seed=0):
    """Delay lengths, gains and filters of the stereo FDN reverb for one parameter set.

    Source: J.-M. Jot, A. Chaigne, "Digital delay networks for designing artificial reverberators",
    90th AES Convention, Paris, 1991, preprint 3030 (absorption filters, energy normalisation by a
    tone correction); J. O. Smith, *Physical Audio Signal Processing*, "Feedback Delay Networks"
    (orthogonal Hadamard feedback matrix), https://ccrma.stanford.edu/~jos/pasp/Feedback_Delay_Networks_FDN.html;
    RBJ Audio EQ Cookbook, https://www.w3.org/TR/audio-eq-cookbook/ (return high-pass).

    The network: ``N = 16`` delay lines of mutually prime lengths ``m_i`` (:func:`line_delays`); line
    ``i``'s output ``s_i`` goes through its absorption filter ``H_i`` (output ``u_i``), the 16 results
    through the orthogonal matrix ``A = Hadamard / 4`` and back into the lines, where the
    (pre-delayed) inputs are added: L into the even lines, R into the odd ones, with gains
    ``+-sqrt(2/N)``. Each output channel is ``Sum_i c_i F_i(s_i)``, ``F_i`` a per-line tone
    correction, then the RBJ high-pass.

    Absorption (Jot & Chaigne): a line of ``m`` samples must lose ``60 m / (sr T60)`` dB per pass so
    that every mode decays by 60 dB in T60::

        |H_i(0)|   = g_i = 10^(-3 m_i / (sr decay_s))                           (eq. A1)
        |H_i(w_r)| = 10^(-3 m_i / (sr decay_s damping)),  w_r = 2 pi 8 kHz / sr  (eq. A2)
        H_i(z) = g_i (1 - p_i) / (1 - p_i z^-1),  p_i the root < 1 of
                 p^2 - 2 B p + 1 = 0,  B = (R - cos w_r) / (R - 1),  R = |H_i(0)|^2 / |H_i(w_r)|^2  (eq. A3)
        |H_i(e^jw)|^2 = g_i^2 (1 - p_i)^2 / (1 - 2 p_i cos w + p_i^2)             (eq. A4)

    so the loss of each line is exactly proportional to its length at DC and at 8 kHz: every mode
    has decay time ``decay_s`` at DC and ``decay_s * damping`` at 8 kHz (faster above; the one-pole
    also shortens the decay below 8 kHz, see :func:`band_decay_s`); ``damping = 1`` gives ``p_i = 0``.

    Energy calibration (after Jot & Chaigne's tone correction, here exact and per line): with a white
    send of power ``sigma^2`` per channel, every line receives ``sigma^2 / 8`` (each line is fed by
    one channel, so this holds whatever the correlation of L and R). With the lines' outputs mutually
    uncorrelated, the orthogonal ``A`` gives every line the same power ``P`` in the stationary state::

        P = sigma^2 / 8 + (1/N) Sum_i |H_i|^2 P   ->   P = (sigma^2 / 8) / (1 - mean_i |H_i|^2)   (eq. C1)

    An output ``Sum_i c_i F_i(s_i)`` with ``c_i^2 = 1/N`` has power ``P mean_i |F_i|^2``, which is
    ``sigma^2`` at every frequency if::

        |F_i(e^jw)|^2 = (N / 2) (1 - |H_i(e^jw)|^2)                               (eq. C2)

    and that is a first-order filter with the pole of ``H_i`` (:func:`_output_filters`), so
    ``F_i(s_i) = sqrt(N K_i / 2) (u_i[n] - z_i u_i[n-1]) / (g_i (1 - p_i))``: two taps on ``u_i`` (eq. C3).
    Eq. C1 holds on average over networks: tests/test_reverb.py measures the mean of 8 seeds within
    0.7 dB of unit gain in every ERB band from 100 Hz to 10 kHz; one network's modes move single
    bands by up to ~2.5 dB (rms 0.3-0.7 dB), most below 500 Hz and for short decays.

    Stereo: ``c_L, c_R`` are two rows of the Hadamard matrix times a random sign vector, so
    orthogonal: the two outputs are decorrelated.

    Parameters
    ----------
    sr : float, Hz > 0
    decay_s : float, s in [0.2, 8], keyword-only
        RT60 at low frequencies.
    predelay_ms : float, ms in [0, 200], keyword-only
        Delay of the input before the network, rounded to whole samples.
    damping : float in (0, 1], keyword-only
        Ratio of the decay time at 8 kHz (or sr / 4, if lower) to ``decay_s``; 1 = no extra decay.
    highpass_hz : float, Hz in [20, 1000], keyword-only
        Cut-off of the return's RBJ second-order high-pass (Q = 1/sqrt(2)).
    seed : int >= 0, keyword-only
        Chooses the delay lengths, their order, the gains' signs and the output rows.

    Returns
    -------
    ReverbDesign

    Raises
    ------
    ParameterError
        A parameter outside its range (the message names it and the range).
    """
    sr = float(_require_positive("sr", sr))
    decay_s = _check_range("decay_s", decay_s, *DECAY_RANGE_S)
    predelay_ms = _check_range("predelay_ms", predelay_ms, *PREDELAY_RANGE_MS)
    damping = _check_range("damping", damping, 0.0, 1.0, low_open=True)
    highpass_hz = _check_range("highpass_hz", highpass_hz, *HIGHPASS_RANGE_HZ)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed must be a whole number >= 0, got {seed!r}")
    if highpass_hz >= 0.45 * sr:
        raise ParameterError(f"highpass_hz must be below 0.45 sr = {0.45 * sr:g} Hz, got {highpass_hz!r}")

    delays = line_delays(sr, int(seed))  # (N,)
    rng = np.random.default_rng([int(seed), 1])  # a stream of its own: line_delays keeps its draws
    rows = rng.choice(N_LINES, size=2, replace=False)
    in_signs, out_signs = rng.choice([-1.0, 1.0], size=(2, N_LINES))
    norm = 1.0 / math.sqrt(N_LINES)  # rows of +-1 -> unit norm
    in_gain = np.zeros((2, N_LINES))  # (2, N): L into the even lines, R into the odd ones, sigma^2 / 8 each
    in_gain[0, 0::2] = in_signs[0::2] * math.sqrt(2.0) * norm
    in_gain[1, 1::2] = in_signs[1::2] * math.sqrt(2.0) * norm
    out_gain = _hadamard(N_LINES)[rows] * out_signs * norm  # (2, N)

    dc_gain, pole, one_minus_pole = _absorption(delays, sr, decay_s, damping)  # (N,) x 3
    loop_gain = dc_gain * one_minus_pole * norm  # the matrix's 1/sqrt(N) folded into the filter
    scale, zero = _output_filters(dc_gain, pole, one_minus_pole)  # (N,), (N,)
    tap_now = out_gain * (scale / loop_gain)  # (2, N): u_i / loop_gain_i = s_i / (1 - p_i z^-1) (eq. C3)
    tap_prev = -tap_now * zero
    highpass = rbj_sos("highpass", highpass_hz, 0.0, HIGHPASS_Q, sr)  # (6,)
    predelay = int(round(predelay_ms * sr / 1000.0))
    return ReverbDesign(sr, delays, predelay, in_gain, out_gain, loop_gain, pole, tap_now, tap_prev, highpass)


class ReverbStream:
    """The stereo FDN reverb with its state: feed audio in chunks, get the wet return.

    Source: Jot & Chaigne, 90th AES Convention, 1991 (see :func:`reverb_design` for the network and
    its equations).

    ``ReverbStream(sr, ...).process(x)`` on a whole signal, or on consecutive chunks of it, gives
    the same output bit for bit: the kernel keeps the delay lines, the filter states and the write
    positions between calls, and its per-sample arithmetic does not depend on the chunk boundaries.

    Parameters
    ----------
    sr : float, Hz > 0
    decay_s, predelay_ms, damping, highpass_hz, seed : keyword-only
        As :func:`reverb_design` (s in [0.2, 8], ms in [0, 200], (0, 1], Hz in [20, 1000], int >= 0).

    Attributes
    ----------
    design : ReverbDesign
        The network's lengths, gains and filters.

    Raises
    ------
    ParameterError
        A parameter outside its range.

    Examples
    --------
    >>> x = np.zeros((2, 48000)); x[:, 0] = 1.0
    >>> stream = ReverbStream(48000, decay_s=1.0, seed=1)
    >>> y = np.concatenate([stream.process(x[:, :1000]), stream.process(x[:, 1000:])], axis=1)
    >>> bool(np.array_equal(y, reverb(x, 48000, decay_s=1.0, seed=1)))
    True
    """

    def __init__(self, sr, *, decay_s=1.5, predelay_ms=0.0, damping=0.5, highpass_hz=20.0, seed=0):
        d = reverb_design(sr, decay_s=decay_s, predelay_ms=predelay_ms, damping=damping,
                          highpass_hz=highpass_hz, seed=seed)
        self.design = d
        size = 1 << int(d.delays.max() + BLOCK).bit_length()  # a power of two > the longest line + a block
        self._lines = np.zeros((N_LINES, size))  # (N, size) circular buffers
        self._pre = np.zeros((2, 1 << (d.predelay + BLOCK).bit_length()))  # (2, size) pre-delay buffer
        self._filters = np.zeros(N_LINES + 4)  # absorption states u_i[n-1] (N), high-pass DF2T (2 x 2)
        self._pos = np.zeros(2, dtype=np.int64)  # write positions: lines, pre-delay
        self._highpass = np.ascontiguousarray(d.highpass[[0, 1, 2, 4, 5]])  # (5,) b0 b1 b2 a1 a2

    def process(self, x):
        """Wet return of the next chunk.

        Parameters
        ----------
        x : ndarray, shape (2, m), float32 or float64, m >= 0
            The send, full scale = 1.

        Returns
        -------
        y : ndarray, shape (2, m)
            The return, float32 for a float32 ``x``, else float64 (the state is float64 either way).

        Raises
        ------
        ParameterError
            ``x`` not of shape (2, m).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != 2:
            raise ParameterError(
                f"x must have shape (2, samples), got {x.shape}; give a mono send as np.stack([x, x])")
        out_dtype = np.float32 if x.dtype == np.float32 else np.float64
        x = np.ascontiguousarray(x, dtype=np.float64)  # float32 -> float64 is exact; one compiled kernel
        y = np.empty_like(x)
        if x.shape[1]:
            d = self.design
            _fdn_kernel(x, y, d.delays, d.in_gain, d.loop_gain, d.pole, d.tap_now, d.tap_prev, d.predelay,
                        self._highpass, self._lines, self._pre, self._filters, self._pos)
        return y.astype(out_dtype, copy=False)


@lazy_njit
def _fdn_kernel(x, y, delays, in_gain, loop_gain, pole, tap_now, tap_prev, predelay, hp, lines, pre, filters, pos):
    """The FDN (compiled; float64): x (2, m) -> y (2, m), in blocks of at most ``BLOCK``
    samples and never more than the shortest line, so that a block reads only samples written
    before it. Each sample gets the same operations in the same order whatever the block and chunk
    boundaries, so the output does not depend on them (bit for bit).

    State, updated in place: ``lines`` (N, size) circular buffers, ``pre`` (2, size) pre-delay
    buffer, ``filters`` (N + 4,) filter states ``u_i[n-1]`` and the high-pass's, ``pos`` (2,) write
    positions of ``lines`` and ``pre``.
    """
    n_total = x.shape[1]
    size = lines.shape[1]
    mask = size - 1
    pre_mask = pre.shape[1] - 1
    w, wp = pos[0], pos[1]
    b0, b1, b2, a1, a2 = hp[0], hp[1], hp[2], hp[3], hp[4]
    n_block = min(BLOCK, delays.min())
    u = np.empty((N_LINES, n_block + 1))  # (N, 1 + block): u_i[n-1], then the block's u_i
    v = np.empty((N_LINES, n_block))  # (N, block): g_i s_i, then Hadamard u
    xb = np.empty((2, n_block))  # (2, block) pre-delayed send
    yb = np.empty((2, n_block))  # (2, block) output before the high-pass
    in_ch = np.empty(N_LINES, np.int64)  # the channel feeding each line, and its gain
    in_g = np.empty(N_LINES)
    for i in range(N_LINES):
        in_ch[i] = 0 if in_gain[0, i] != 0.0 else 1
        in_g[i] = in_gain[in_ch[i], i]
    n0 = 0
    while n0 < n_total:
        nb = min(n_block, n_total - n0)
        for c in range(2):  # pre-delay: write the block, read it back predelay samples later
            for t in range(nb):
                pre[c, (wp + t) & pre_mask] = x[c, n0 + t]
            for t in range(nb):
                xb[c, t] = pre[c, (wp + t - predelay) & pre_mask]
        wp = (wp + nb) & pre_mask
        for i in range(N_LINES):  # line outputs s_i[n] (written m_i samples ago), times g_i (1 - p_i) / 4
            u[i, 0] = filters[i]
            r = (w - delays[i]) & mask
            g = loop_gain[i]
            for t in range(nb):
                v[i, t] = g * lines[i, (r + t) & mask]
        for t in range(nb):  # absorption H_i (eq. A4), the 16 recursions side by side
            for i in range(N_LINES):
                ui = v[i, t] + pole[i] * u[i, t]
                u[i, t + 1] = ui if abs(ui) >= FLUSH_BELOW else 0.0  # no subnormal arithmetic in a long tail
        for i in range(N_LINES):
            filters[i] = u[i, nb]
        for c in range(2):  # y = Sum_i c_i F_i(s_i) = Sum_i tap_now u_i[n] + tap_prev u_i[n-1] (eq. C3)
            for t in range(nb):
                yb[c, t] = 0.0
            for i in range(N_LINES):
                tn = tap_now[c, i]
                tp = tap_prev[c, i]
                for t in range(nb):
                    yb[c, t] += tn * u[i, t + 1] + tp * u[i, t]
        for j in range(0, N_LINES, 2):  # fast Walsh-Hadamard transform of u, first stage
            for t in range(nb):
                a = u[j, t + 1]
                b = u[j + 1, t + 1]
                v[j, t] = a + b
                v[j + 1, t] = a - b
        for h in (2, 4, 8):  # the other stages (N = 16)
            for i0 in range(0, N_LINES, 2 * h):
                for j in range(i0, i0 + h):
                    for t in range(nb):
                        a = v[j, t]
                        b = v[j + h, t]
                        v[j, t] = a + b
                        v[j + h, t] = a - b
        for i in range(N_LINES):  # back into the lines, with the send
            g = in_g[i]
            c = in_ch[i]
            for t in range(nb):
                lines[i, (w + t) & mask] = v[i, t] + g * xb[c, t]
        w = (w + nb) & mask
        for t in range(nb):  # the RBJ high-pass, transposed direct form II, per channel
            for c in range(2):
                j = N_LINES + 2 * c
                s = yb[c, t]
                o = b0 * s + filters[j]
                z1 = b1 * s - a1 * o + filters[j + 1]
                z2 = b2 * s - a2 * o
                filters[j] = z1 if abs(z1) >= FLUSH_BELOW else 0.0
                filters[j + 1] = z2 if abs(z2) >= FLUSH_BELOW else 0.0
                y[c, n0 + t] = o
        n0 += nb
    pos[0] = w
    pos[1] = wp


def reverb(x, sr, *, decay_s=1.5, predelay_ms=0.0, damping=0.5, highpass_hz=20.0, seed=0):
    """Wet return of the stereo FDN reverb (exact tier), in one call.

    Source: Jot & Chaigne, "Digital delay networks for designing artificial reverberators",
    90th AES Convention, 1991; see :func:`reverb_design` for the network and its equations.

    Parameters
    ----------
    x : ndarray, shape (..., 2, samples), float32 or float64
        The send, full scale = 1; leading axes are independent signals (each starts from silence).
    sr : float, Hz > 0
    decay_s : float, s in [0.2, 8], keyword-only
        RT60 at low frequencies.
    predelay_ms : float, ms in [0, 200], keyword-only
    damping : float in (0, 1], keyword-only
        Decay time at 8 kHz over ``decay_s``.
    highpass_hz : float, Hz in [20, 1000], keyword-only
        Cut-off of the return's high-pass.
    seed : int >= 0, keyword-only

    Returns
    -------
    y : ndarray, shape (..., 2, samples)
        The wet return only (no dry signal); float32 for a float32 ``x``, else float64. For a
        stationary white send its power per band is the send's mean power per channel, before the
        high-pass (eq. C1 of :func:`reverb_design`; on average over seeds, see there).

    Raises
    ------
    ParameterError
        ``x`` without a (2, samples) tail; a parameter outside its range.

    Examples
    --------
    >>> x = np.zeros((2, 4800)); x[:, 0] = 1.0
    >>> y = reverb(x, 48000, decay_s=0.5, predelay_ms=20.0)
    >>> y.shape, bool(np.all(y[:, :960] == 0.0))  # nothing before pre-delay + shortest line
    ((2, 4800), True)
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-2] != 2:
        raise ParameterError(
            f"x must have shape (..., 2, samples), got {x.shape}; give a mono send as np.stack([x, x])")
    lead = x.shape[:-2]
    rows = x.reshape((-1,) + x.shape[-2:])  # (..., 2, n) -> (rows, 2, n)
    settings = dict(decay_s=decay_s, predelay_ms=predelay_ms, damping=damping, highpass_hz=highpass_hz, seed=seed)
    out = [ReverbStream(sr, **settings).process(row) for row in rows]
    if not out:  # no rows: still check the parameters
        ReverbStream(sr, **settings)
        return np.empty(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    return np.stack(out).reshape(lead + x.shape[-2:])


def band_decay_s(centres_hz, decay_s, damping, sr, *, seed=None):
    """RT60 per band of the FDN reverb, from its absorption filters' actual response.

    Source: Jot & Chaigne, 90th AES Convention, 1991: in a network with an orthogonal feedback
    matrix the energy passes through every line alike, so the decay rate at a frequency is the
    lines' total loss per pass over their total length::

        RT60(f) = 60 Sum_i m_i / (sr Sum_i L_i(f)),   L_i(f) = -10 log10 |H_i(e^jw)|^2 dB   (eq. D1)

    with ``|H_i|^2`` of eq. A4 (:func:`reverb_design`). It is exactly ``decay_s`` at DC and
    ``decay_s * damping`` at 8 kHz (each line's loss is proportional to its length there); in
    between it is the mean of the lines' decay rates (the seed's lengths change it by < 0.5 % for
    ``damping >= 0.2``, up to 6 % at 0.05).

    Parameters
    ----------
    centres_hz : ndarray, shape (B,), Hz in [0, sr/2]
        Band centres (``BandGrid.centres_hz``).
    decay_s : float or ndarray, shape (...), s > 0
        RT60 at low frequencies.
    damping : float or ndarray, broadcastable with ``decay_s``, in (0, 1]
    sr : float, Hz > 0
    seed : int >= 0 or None, keyword-only
        The delay lengths of :func:`line_delays` (None: the nominal lengths).

    Returns
    -------
    decay_band_s : ndarray, shape (..., B), s
        RT60 per band, to pass to :func:`reverb_band_power`.

    Raises
    ------
    ParameterError
        Non-positive ``decay_s`` or ``sr``; ``damping`` outside (0, 1].

    Examples
    --------
    >>> rt = band_decay_s(np.array([0.0, 8000.0]), [1.0, 2.0], 0.5, 48000)
    >>> np.round(rt, 6).tolist()
    [[1.0, 0.5], [2.0, 1.0]]
    """
    sr = float(_require_positive("sr", sr))
    decay_s = _require_positive("decay_s", decay_s)
    damping = _check_damping(damping)
    centres_hz = np.asarray(centres_hz, dtype=float)
    if centres_hz.ndim != 1:
        raise ParameterError(f"centres_hz must be 1-D (B,), got shape {centres_hz.shape}")
    decay_s, damping = np.broadcast_arrays(decay_s, damping)  # (...)
    delays = line_delays(sr, seed)  # (N,)
    dc_gain, pole, one_minus_pole = _absorption(delays, sr, decay_s, damping)  # (..., N) x 3
    loss_db = -10.0 * np.log10(_line_power_gain(dc_gain, pole, one_minus_pole, centres_hz, sr))  # (..., N, B)
    return 60.0 * delays.sum() / (sr * loss_db.sum(axis=-2))  # eq. D1: (..., N, B) -> (..., B)


def reverb_band_power(send_power, decay_band_s, predelay_frames, hop_s, *, line_delays_s=NOMINAL_LINE_DELAYS_S):
    """Power of the reverb return per band and frame (fast tier): the send smeared by each band's
    exponential energy decay, with unit gain, delayed by the pre-delay.

    Source: the energy-decay model of a diffuse reverberant field, M. R. Schroeder, "New method of
    measuring reverberation time", JASA 37(3), 1965 (energy ``exp(-t / tau)``, ``tau = T60 / (6 ln 10)``);
    calibrated to unit energy by the FDN's per-line tone correction (:func:`reverb_design`, eq. C2).

    The send's power envelope, linear between frame centres, is convolved with the unit-area energy
    decay ``exp(-t / tau) / tau`` that starts ``D`` after the pre-delay. Sampled at the frame centres,
    that is a first-order recursion over frames with unit DC gain (``x = hop_s / tau``, ``a = exp(-x)``)::

        r[t] = (1 - (1 - a) / x) s[t] + ((1 - a)^2 / x) z[t],   z[t] = a z[t-1] + s[t-1]    (eq. M1)

    where ``s`` is the send delayed by ``predelay_frames + D / hop_s`` frames (linear interpolation
    between frames). ``D`` is the FDN's onset: its energy leaves the lines only after whole passes
    through lines of lengths ``m_i`` (``line_delays_s``). In the energy domain the network is
    ``O(z) = K(z) / (1 - G(z))`` with ``G(z) = mean_i |H_i|^2 z^-m_i`` and
    ``K(z) = mean_i (1 - |H_i|^2) z^-m_i`` (:func:`reverb_design`, eqs. C1-C3; ``O(1) = 1``), whose
    energy centroid ``-z O'(z) / O(z)`` at ``z = 1`` is ``mean_i m_i / (1 - mean_i |H_i|^2)``. With
    ``|H_i|^2 = exp(-m_i / tau)`` (losses proportional to length) the model's centroid ``D + tau``
    matches it when::

        D = mean_i m_i / (1 - mean_i exp(-m_i / tau)) - tau                                 (eq. M2)

    (``D`` -> ``mean_i m_i / 2`` = 20 ms for long decays, ~28 ms at 0.3 s). An empty
    ``line_delays_s`` gives a plain exponential starting at the pre-delay.

    Frame resolution: a 50 ms frame cannot place a sharp onset or offset within it; at such steps
    the first frame of the return and, for decays under ~0.5 s, the frames just after an offset
    deviate by several dB (tests/test_reverb.py states the figures).

    Parameters
    ----------
    send_power : ndarray, shape (..., B, T), float32 or float64, linear power >= 0
        Power of the send per band and frame (for a stereo send, the mean over its two channels).
    decay_band_s : ndarray, broadcastable to (..., B), s > 0
        RT60 per band (:func:`band_decay_s`).
    predelay_frames : float or ndarray, broadcastable to (..., B), frames >= 0
        Pre-delay, ``predelay_ms / 1000 / hop_s``; fractional frames interpolate linearly.
    hop_s : float, s > 0
        Frame hop (``BandGrid.hop_s``).
    line_delays_s : ndarray, shape (L,), s > 0, keyword-only
        Delay-line lengths of the FDN (``NOMINAL_LINE_DELAYS_S``; every seed has the same mean).

    Returns
    -------
    return_power : ndarray, shape (..., B, T), the dtype of ``send_power``
        Power of each channel of the return per band and frame, before the return high-pass
        (multiply by :func:`return_highpass_power`). The recursion runs in float64.

    Raises
    ------
    ParameterError
        Non-positive ``decay_band_s`` or ``hop_s``; negative ``predelay_frames``; shapes that do
        not broadcast.

    Examples
    --------
    >>> s = np.zeros((1, 200)); s[0, 10:110] = 1.0  # (B, T): 5 s of steady send
    >>> r = reverb_band_power(s, 1.0, 0.0, 0.05)
    >>> float(np.round(r[0, 100], 6)), float(np.round(r.sum() / s.sum(), 3))  # unit gain
    (1.0, 1.0)
    """
    send_power = np.asarray(send_power)
    dtype = send_power.dtype if send_power.dtype in (np.float32, np.float64) else np.float64
    if send_power.ndim < 2:
        raise ParameterError(f"send_power must have shape (..., bands, frames), got {send_power.shape}")
    hop_s = float(_require_positive("hop_s", hop_s))
    decay_band_s = _require_positive("decay_band_s", decay_band_s)
    predelay_frames = np.asarray(predelay_frames, dtype=float)
    if not np.all(np.isfinite(predelay_frames) & (predelay_frames >= 0.0)):
        raise ParameterError(f"predelay_frames must be finite and >= 0, got {predelay_frames!r}")
    line_delays_s = np.asarray(line_delays_s, dtype=float).reshape(-1)  # (L,)
    if not np.all(np.isfinite(line_delays_s) & (line_delays_s > 0.0)):
        raise ParameterError(f"line_delays_s must be finite and > 0, got {line_delays_s!r}")
    rows_shape = send_power.shape[:-1]  # (..., B)
    n_frames = send_power.shape[-1]
    try:
        tau = np.broadcast_to(decay_band_s / DECAY_TO_TAU, rows_shape).reshape(-1)  # (rows,) s
        delay = np.broadcast_to(predelay_frames, rows_shape).reshape(-1)  # (rows,) frames
    except ValueError:
        raise ParameterError(
            f"decay_band_s {np.shape(decay_band_s)} and predelay_frames {predelay_frames.shape} must broadcast "
            f"to the (..., bands) axes {rows_shape} of send_power") from None
    if line_delays_s.size:  # eq. M2: D = mean m / (1 - mean exp(-m / tau)) - tau
        loss = np.mean(-np.expm1(-line_delays_s / tau[:, None]), axis=-1)  # (rows, L) -> (rows,)
        delay = delay + (line_delays_s.mean() / loss - tau) / hop_s
    x = hop_s / tau
    a = np.exp(-x)
    one_minus_a = -np.expm1(-x)
    k0 = 1.0 - one_minus_a / x  # eq. M1
    k1 = one_minus_a * one_minus_a / x
    whole = np.floor(delay).astype(np.int64)
    frac = delay - whole
    rows = np.ascontiguousarray(send_power, dtype=np.float64).reshape(-1, n_frames)  # (..., B, T) -> (rows, T)
    out = _decay_rows(rows, a, k0, k1, whole, frac)
    return out.reshape(send_power.shape).astype(dtype, copy=False)


@lazy_njit
def _decay_rows(send, a, k0, k1, whole, frac):  # (rows, T), (rows,) x 5 -> (rows, T)
    """Eq. M1 of :func:`reverb_band_power` along each row, after a delay of ``whole + frac`` frames."""
    n_rows, n_frames = send.shape
    out = np.empty_like(send)
    for i in range(n_rows):
        z = 0.0
        prev = 0.0  # delayed send at t - 1
        for t in range(n_frames):
            j = t - whole[i]
            s = 0.0  # delayed send at t: (1 - f) s[t - d] + f s[t - d - 1]
            if 0 <= j < n_frames:
                s += (1.0 - frac[i]) * send[i, j]
            if 0 <= j - 1 < n_frames:
                s += frac[i] * send[i, j - 1]
            z = a[i] * z + prev
            out[i, t] = k0[i] * s + k1[i] * z
            prev = s
    return out


def return_highpass_power(centres_hz_or_grid, highpass_hz, sr):
    """Power response of the reverb return's RBJ high-pass, at frequencies or per band.

    Source: RBJ Audio EQ Cookbook, https://www.w3.org/TR/audio-eq-cookbook/ (HPF, Q = 1/sqrt(2));
    evaluated with :func:`evomix.engine.dsp.filters.sos_power_response`.

    Parameters
    ----------
    centres_hz_or_grid : ndarray, shape (F,), Hz; or a BandGrid
        Frequencies, or a :class:`evomix.engine.bands.BandGrid`, whose bands get the mean power
        over their ``SUBBANDS`` fine-grid points (``grid_hz``).
    highpass_hz : float or ndarray, shape (...), Hz in [20, 1000]
    sr : float, Hz > 0

    Returns
    -------
    power : ndarray, shape (..., F) or (..., B), linear power gain in [0, 1]

    Raises
    ------
    ParameterError
        ``highpass_hz`` outside [20, 1000] Hz.

    Examples
    --------
    >>> float(np.round(10 * np.log10(return_highpass_power(np.array([100.0]), 100.0, 48000))[0], 2))
    -3.01
    """
    highpass_hz = np.asarray(highpass_hz, dtype=float)
    low, high = HIGHPASS_RANGE_HZ
    if highpass_hz.size == 0 or not np.all((highpass_hz >= low) & (highpass_hz <= high)):
        raise ParameterError(f"highpass_hz must be in [{low:g}, {high:g}] Hz, got {highpass_hz!r}")
    sos = rbj_sos("highpass", highpass_hz, 0.0, HIGHPASS_Q, sr)  # (..., 6)
    grid_hz = getattr(centres_hz_or_grid, "grid_hz", None)
    if grid_hz is None:
        return sos_power_response(sos, np.asarray(centres_hz_or_grid, dtype=float), sr)  # (..., F)
    n_bands = centres_hz_or_grid.n_bands
    power = sos_power_response(sos, grid_hz, sr)  # (..., B * SUBBANDS)
    return power.reshape(power.shape[:-1] + (n_bands, -1)).mean(axis=-1)  # (..., B, SUBBANDS) -> (..., B)
