"""Compiled, fused kernels of the exact tier: each stage is one pass over preallocated buffers.

The exact renderer (``engine.render``) runs every stem's channel strip (trim -> four RBJ biquads ->
RMS compressor -> fader -> pan -> the master's two shelves) as three loops over the stem's samples,
writing into one float64 buffer per thread, and the master chain (compressor, loudness
normalisation, look-ahead true-peak limiter) as a handful more over the mix. A render that keeps only
the mix runs the strips as SIMD lanes instead (:func:`eq_detect_lanes`, :func:`gain_pan_eq_sum_lanes`:
8 stems x 2 channels, then one lane per stem and side, summed in stem order), each lane with the
arithmetic of the one-stem kernels, so the mix is the same bit for bit (issue 23; about half the CPU
time of the per-stem kernels on the 16-stem real-size session).

Why float64: the exact tier is what the musician hears and the reference the fast tier is measured
against. Sixteen stems summed in float32 would round at about -140 dB of full scale per add, and
the IIR filters' states need float64 at low frequencies (a 20 Hz high-pass at 96 kHz has poles
within 1e-3 of the unit circle). The session audio itself stays float32, as decoded. Measured for
issue 23: the same four-biquad lane loop in float32 (16 AVX-512 lanes instead of 8) was no faster here
once the samples are gathered from the stems' rows (about 2.4-2.8 ns per lane and sample either way;
only with the input already interleaved did float32 gain ~1.7x), so the lanes stay float64 and the
render stays bit for bit what it was: no tolerance to spend.

Why reproducible: every loop runs in a fixed order (no reassociation, no parallel reduction inside
a kernel) and the stems are added to the mix in stem order whatever thread processed them, so a
render is bit-for-bit the same on any machine with the same numpy/numba and any thread count.

Each kernel equals the numpy/scipy definition it replaces (``engine.dsp``, ``scipy.signal.sosfilt``,
``scipy.signal.resample_poly``, ``evomix.core.meter``); ``tests/engine/test_chain.py`` compares
them. Sources are those of the definitions: RBJ Audio EQ Cookbook (biquads), Giannoulis, Massberg &
Reiss, JAES 60(6), 2012 (compressor), ITU-R BS.1770-4 Annex 1 (K-weighted block power) and Annex 2
(true peak), U. Zölzer, DAFX 2nd ed., ch. 4 (look-ahead limiter).
"""
from __future__ import annotations

import numpy as np

from evomix.core.compiled import inline_njit, lazy_njit

__all__ = [
    "detector_levels_db",
    "apply_control_gain",
    "true_peak_envelope",
    "limiter_core",
    "k_block_powers",
    "k_sums_at",
    "k_block_powers_of",
    "frame_gain_power",
    "eq_detect_chunk",
    "smooth_chunk",
    "add_in_order",
    "gain_pan_eq_chunk",
]


EQ_SECTIONS = 4  # biquads of a stem's EQ (eq_detect_chunk runs this many, as two pairs)
MASTER_SECTIONS = 2  # the master's shelves (gain_pan_eq_chunk runs one pair)
IDENTITY_SECTION = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # b0 = 1, rest 0: passes the signal unchanged


@lazy_njit
def detector_levels_db(x, n_ch, step, window, n_steps, floor_db):  # (C, n) -> (T,)
    """Stereo-linked RMS level (dB) at control steps ``k * step``: the mean over the first
    ``n_ch`` rows and over the ``window``-sample rectangle centred on the step (cut at the
    signal's edges) of ``x**2``, as ``engine.dsp.rms_level_db`` computes it from a cumulative
    sum (the same sequential float64 sum, read at the window edges without storing it)."""
    n = x.shape[1]
    half = window // 2
    c_lo = np.zeros(n_steps)
    c_hi = np.zeros(n_steps)
    lo = np.empty(n_steps, np.int64)
    hi = np.empty(n_steps, np.int64)
    for k in range(n_steps):
        a = k * step - half
        lo[k] = min(max(a, 0), n)
        hi[k] = min(max(a + window, 0), n)
    kl = 0
    kh = 0
    c = 0.0
    for i in range(n + 1):
        while kl < n_steps and lo[kl] == i:
            c_lo[kl] = c
            kl += 1
        while kh < n_steps and hi[kh] == i:
            c_hi[kh] = c
            kh += 1
        if i < n:
            p = x[0, i] * x[0, i]
            for ch in range(1, n_ch):
                p += x[ch, i] * x[ch, i]
            p /= n_ch
            c += p
    out = np.empty(n_steps)
    floor = 10.0 ** (floor_db / 10.0)
    for k in range(n_steps):
        ms = (c_hi[k] - c_lo[k]) / (hi[k] - lo[k]) if hi[k] > lo[k] else 0.0
        if ms < floor:
            ms = floor
        out[k] = 10.0 * np.log10(ms)
    return out


@lazy_njit
def apply_control_gain(x, gain_ctrl, step):  # (C, n) f64, in place
    """``x *= g`` with ``g`` the control gains interpolated to every sample (all rows)."""
    n = x.shape[1]
    n_ctrl = gain_ctrl.shape[0]
    for i in range(n):
        c = i // step
        j = i - c * step
        g = gain_ctrl[c]
        g_next = gain_ctrl[c + 1] if c + 1 < n_ctrl else g
        g = g + (g_next - g) * (j / step)
        for ch in range(x.shape[0]):
            x[ch, i] *= g


@lazy_njit
def true_peak_envelope(x, phases, offset, block, raw_max):  # (C, n) f64, (P, taps) -> (n,)
    """Per-sample true-peak envelope of ``x`` (max over rows): ``env[i]`` is the largest ``|y|``
    of the ``P``-times oversampled signal over ``[i, i + 1)``, each local maximum of ``|y|``
    refined by the parabola through it and its neighbours, and never below ``|x[:, i]|`` -- as
    ``engine.dsp.true_peak_envelope``. ``y[P i + p] = sum_j phases[p, j] x[i + offset - j]``
    is ``resample_poly(x, P, 1)`` (``phases`` and ``offset`` from ``evomix.core.meter``'s
    ``_polyphase_filter``), computed block by block.

    ``raw_max`` (1,) receives the largest ``|y|`` (and ``|x|``) without the refinement: the
    BS.1770-4 Annex 2 true peak (linear) of ``x``.
    """
    n_ch, n = x.shape
    n_ph, taps = phases.shape
    phases_rev = np.empty((n_ph, taps))
    for p in range(n_ph):
        for k in range(taps):
            phases_rev[p, k] = phases[p, taps - 1 - k]
    env = np.zeros(n)
    top = 0.0
    m = block + 2  # the block's samples plus one neighbour each side
    seg = np.zeros(m + taps)
    acc = np.zeros(m)
    flat = np.zeros(n_ph * m)
    for ch in range(n_ch):
        for a in range(0, n, block):
            b = min(a + block, n)
            cnt = b - a + 2  # samples a - 1 .. b
            # seg[u] = x[a - 1 + u + offset - (taps - 1)], zero outside the signal
            first = a - 1 + offset - (taps - 1)
            for u in range(cnt + taps - 1):
                t = first + u
                seg[u] = x[ch, t] if 0 <= t < n else 0.0
            # |y| at sample a - 1 + u + p / P into flat[P u + p]: y = sum_k phases_rev[p, k] seg[u + k],
            # each output summed over k in order; the loop over the block's outputs innermost, so
            # it runs in SIMD lanes (the same additions in the same order for every output)
            for p in range(n_ph):
                for u in range(cnt):
                    acc[u] = 0.0
                for k in range(taps):
                    h = phases_rev[p, k]
                    for u in range(cnt):
                        acc[u] += h * seg[u + k]
                for u in range(cnt):
                    flat[n_ph * u + p] = abs(acc[u])
            length = n_ph * cnt
            lo_valid = n_ph if a == 0 else 0  # indices before sample 0 do not exist
            hi_valid = length - n_ph if b == n else length
            for u in range(1, cnt - 1):  # the block's own samples a .. b - 1
                best = 0.0
                for p in range(n_ph):
                    q = n_ph * u + p
                    v = flat[q]
                    if v > top:
                        top = v
                    if lo_valid < q < hi_valid - 1:
                        left = flat[q - 1]
                        right = flat[q + 1]
                        curv = 2.0 * v - left - right
                        if v >= left and v >= right and curv > 0.0:
                            v = v + (left - right) * (left - right) / (8.0 * curv)
                    if v > best:
                        best = v
                i = a + u - 1
                s = x[ch, i]
                s = s if s >= 0.0 else -s
                if s > top:
                    top = s
                if s > best:
                    best = s
                if best > env[i]:
                    env[i] = best
    raw_max[0] = top
    return env


@lazy_njit
def limiter_core(env, scale, ceiling_lin, lookahead, decay_per_sample):  # (n,) -> (n,)
    """The look-ahead limiter's gain from its true-peak envelope (steps 2-5 of
    ``engine.dsp.limiter_gain``): required gain, look-ahead minimum over ``lookahead + 1``
    samples, one-pole release of the reduction depth, attack ramp as its moving average over
    ``lookahead + 1`` samples, for the envelope ``env * scale`` (the mix at a normalisation gain).
    The release is the recursion ``u[t] = max(u[t], alpha u[t-1])``, which the numpy version
    evaluates as a running maximum in the log domain. One pass, memory O(lookahead) besides the
    result."""
    n = env.shape[0]
    L = lookahead
    size = L + 1
    n_pad = n + 2 * L  # the required gain, padded with 1 for L samples on each side: index i <-> time t = i - L
    alpha = np.exp(-decay_per_sample)
    # look-ahead minimum m[j] = min(req[j .. j + L]) with a monotonic queue of padded indices
    # (values increasing from the front), O(L) memory; the running sum of the released depth kept
    # for the last ``size + 1`` indices (gain[t] needs csum[t] and csum[t + size])
    q_idx = np.empty(size + 1, np.int64)
    q_val = np.empty(size + 1)
    head = 0
    count = 0
    ring = np.zeros(size + 1)  # ring[k % (size + 1)] = csum[k]
    gain = np.empty(n)
    rel = 0.0
    acc = 0.0
    prev = 0.0
    for i in range(n_pad):
        v = 1.0
        t = i - L
        if 0 <= t < n:  # required gain with the [n-1, n) fold: min(1, c / max(env[t], env[t-1]))
            e = env[t] * scale
            e2 = e if e > prev else prev
            prev = e
            if e2 > 0.0:
                g = ceiling_lin / e2
                v = g if g < 1.0 else 1.0
        while count > 0 and q_val[(head + count - 1) % (size + 1)] >= v:
            count -= 1
        q_idx[(head + count) % (size + 1)] = i
        q_val[(head + count) % (size + 1)] = v
        count += 1
        if i < L:
            continue
        j = i - L  # the window [j, j + L] is complete
        while q_idx[head] < j:
            head = (head + 1) % (size + 1)
            count -= 1
        depth = 1.0 - q_val[head]
        rel = rel * alpha
        if depth > rel:
            rel = depth
        acc += rel
        ring[(j + 1) % (size + 1)] = acc  # csum[j + 1]
        t = j + 1 - size  # csum[t + size] is now known
        if 0 <= t < n:
            g = 1.0 - (ring[(t + size) % (size + 1)] - ring[t % (size + 1)]) / size
            gain[t] = 0.0 if g < 0.0 else (1.0 if g > 1.0 else g)
    return gain


# The compiled filters' flush of decayed filter states (k_sums_at, eq_detect_chunk, gain_pan_eq_chunk): a
# state below SUBNORMAL_FLOOR is set to 0 every SUBNORMAL_CHECK (a power of 2) samples; from the floor, the
# fastest-decaying K-weighting pole (radius 0.43 at 8 kHz) takes more than 256 samples to reach the subnormal
# range (below 2.2e-308)
SUBNORMAL_CHECK = 256
SUBNORMAL_FLOOR = 1e-200


# --- the biquad step the compiled filters share, inlined into each (evomix.core.compiled.inline_njit): a
# filter runs as pairs of sections (K-weighting and the master's shelves are one pair, the strip's EQ two),
# each row's states in a tuple of local variables (p0, q0, p1, q1), so the recursion stays in registers

@inline_njit
def _section(sos, k):
    """Section ``k`` of ``sos`` (sections, 6) as the five numbers its recursion uses,
    ``(b0, b1, b2, a1, a2)`` (``a0`` is 1)."""
    return (sos[k, 0], sos[k, 1], sos[k, 2], sos[k, 4], sos[k, 5])


@inline_njit
def _section_pair(sos, k):
    """Sections ``k`` and ``k + 1`` of ``sos`` (:func:`_section`), for :func:`_biquad_pair`."""
    return (_section(sos, k), _section(sos, k + 1))


@inline_njit
def _biquad(v, c, p, q):
    """Sample ``v`` through one biquad ``c`` (:func:`_section`) in direct form II transposed, as
    ``scipy.signal.sosfilt`` computes it: returns the output and the states ``p``, ``q`` advanced."""
    y = c[0] * v + p
    return y, c[1] * v - c[3] * y + q, c[2] * v - c[4] * y


@inline_njit
def _biquad_pair(v, pair, z):
    """Sample ``v`` through two biquads in series (``pair`` from :func:`_section_pair`), ``z`` their
    states ``(p0, q0, p1, q1)``: returns the output and the new states."""
    v, p0, q0 = _biquad(v, pair[0], z[0], z[1])
    v, p1, q1 = _biquad(v, pair[1], z[2], z[3])
    return v, (p0, q0, p1, q1)


@inline_njit
def _flush(s):
    """``s``, or 0 where it is below ``SUBNORMAL_FLOOR`` (a state ringing out into a silence)."""
    return 0.0 if abs(s) < SUBNORMAL_FLOOR else s


@inline_njit
def _flushed(z):
    """The states ``z`` of a pair of sections, each below ``SUBNORMAL_FLOOR`` set to 0 (:func:`_flush`).
    The tuple is rebuilt only when one is (the test first keeps the filter loops as fast as with the
    states flushed one by one in place)."""
    if (abs(z[0]) < SUBNORMAL_FLOOR or abs(z[1]) < SUBNORMAL_FLOOR or abs(z[2]) < SUBNORMAL_FLOOR
            or abs(z[3]) < SUBNORMAL_FLOOR):
        return (_flush(z[0]), _flush(z[1]), _flush(z[2]), _flush(z[3]))
    return z


@inline_njit
def _pair_states(z, r, k):
    """The states of sections ``k``, ``k + 1`` of row ``r`` in ``z`` (rows, sections, 2), as a tuple."""
    return (z[r, k, 0], z[r, k, 1], z[r, k + 1, 0], z[r, k + 1, 1])


@inline_njit
def _store_pair_states(z, r, k, s):
    """``s`` (:func:`_pair_states`) back into ``z``."""
    z[r, k, 0] = s[0]
    z[r, k, 1] = s[1]
    z[r, k + 1, 0] = s[2]
    z[r, k + 1, 1] = s[3]


@inline_njit
def _next_check(i, limit):
    """Where the run of samples from ``i`` ends: the next multiple of ``SUBNORMAL_CHECK``, at most ``limit``."""
    stop = (i | (SUBNORMAL_CHECK - 1)) + 1
    return stop if stop < limit else limit


@lazy_njit
def k_sums_at(x, gain, scale, sos, at):  # (C, n), (n,) or (0,), float, (2, 6), (E,) -> (C, E)
    """The running sum of the K-weighted squares of ``scale * x * gain`` per row, read at the
    sorted sample indices ``at`` (each in ``[0, n]``): ``C[c, e] = sum_{s < at[e]} y[c, s]^2``,
    without forming the product. Each row is filtered once (``sos``: the two K-weighting
    sections), so any set of blocks comes from one pass (:func:`k_block_powers`). An empty
    ``gain`` means 1. The rows go through the filter two at a time, side by side, with the states
    in local variables (two independent recursions the CPU runs at once).

    Every ``SUBNORMAL_CHECK`` samples a filter state below ``SUBNORMAL_FLOOR`` is set to 0: after
    a digital silence the states otherwise decay into subnormal floats, which the CPU handles in
    microcode (many times slower on a stem with silent stretches). Such a state's output squared is 0 in
    float64 anyway, and a returning signal rounds it away, so the sums do not change."""
    n_ch, n = x.shape
    n_at = at.shape[0]
    out = np.zeros((n_ch, n_at))
    has_gain = gain.shape[0] == n
    pair = _section_pair(sos, 0)
    for c0 in range(0, n_ch, 2):
        two = c0 + 1 < n_ch
        c1 = c0 + 1 if two else c0
        z0 = z1 = (0.0, 0.0, 0.0, 0.0)
        s0 = 0.0
        s1 = 0.0
        e = 0
        i = 0
        while True:
            while e < n_at and at[e] == i:
                out[c0, e] = s0
                if two:
                    out[c1, e] = s1
                e += 1
            if i >= n:
                break
            if i & (SUBNORMAL_CHECK - 1) == 0:  # a state ringing out into a silence: set it to 0
                z0, z1 = _flushed(z0), _flushed(z1)
            stop = _next_check(i, n)  # up to the next check or read-out, no test inside
            if e < n_at and at[e] < stop:
                stop = at[e]
            for t in range(i, stop):
                v = x[c0, t] * scale
                if has_gain:
                    v = v * gain[t]
                v, z0 = _biquad_pair(v, pair, z0)
                s0 += v * v
                if two:  # the second row's recursion, independent of the first: the CPU runs both at once
                    w = x[c1, t] * scale
                    if has_gain:
                        w = w * gain[t]
                    w, z1 = _biquad_pair(w, pair, z1)
                    s1 += w * w
            i = stop
    return out


def _k_sections(sos) -> np.ndarray:
    """The K-weighting ``sos`` as exactly 2 sections for :func:`k_sums_at` (padded with
    ``IDENTITY_SECTION``, which passes the signal unchanged)."""
    sos = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
    if sos.shape[0] > 2:
        raise ValueError(f"k_sums_at: at most 2 biquad sections, got {sos.shape[0]}")
    return np.ascontiguousarray(np.concatenate([sos, np.tile(IDENTITY_SECTION, (2 - sos.shape[0], 1))]))


def k_block_powers_of(x, gain, scale, sos, blocks, hop) -> list:
    """Mean square of the K-weighted ``scale * x * gain`` per block, for each block length in
    ``blocks`` (samples, every ``hop`` samples; BS.1770-4 Annex 1 eqs. 1 and 3, as
    ``evomix.core.meter.block_powers``), all from one filtering (:func:`k_sums_at`): a list of
    (C, blocks) arrays, e.g. the integrated loudness's 0.4 s blocks and the loudness range's 3 s
    windows of the same signal."""
    n = x.shape[-1]
    spans = []
    for block in blocks:
        count = (n - block) // hop + 1 if n >= block else 0
        lo = np.arange(count, dtype=np.int64) * hop
        spans.append((lo, lo + block, block))
    at = np.unique(np.concatenate([np.concatenate([lo, hi]) for lo, hi, _ in spans] + [np.zeros(0, np.int64)]))
    c = k_sums_at(x, gain, float(scale), _k_sections(sos), at)  # (C, edges)
    out = []
    for lo, hi, block in spans:
        d = c[:, np.searchsorted(at, hi)] - c[:, np.searchsorted(at, lo)]
        out.append(np.where(d > 0.0, d, 0.0) / block)
    return out


def k_block_powers(x, gain, scale, sos, block, hop):  # (C, n), (n,) or (0,), float, (k, 6) -> (C, blocks)
    """Mean square of the K-weighted ``scale * x * gain`` per gating block (``block`` samples
    every ``hop``): :func:`k_block_powers_of` for one block length."""
    return k_block_powers_of(x, gain, scale, sos, (int(block),), int(hop))[0]


@lazy_njit
def frame_gain_power(gain_ctrl, step, gain, scale, window_sq, hop, n_frames, n):  # -> (T,)
    """Each analysis frame's window-weighted mean of the squared master gain
    ``(g_comp * scale * g_lim)^2`` (``g_comp`` interpolated from ``gain_ctrl``; ``gain`` the
    per-sample limiter gain, or empty for 1): frame ``t`` is centred on sample ``t * hop`` with
    the weights ``window_sq`` (the STFT window squared, ``n_fft = 2 hop`` long), so a stem's band
    power in that frame after the master gain is its band power before it times this factor
    (exact when the gain is constant over the frame)."""
    out = np.zeros(n_frames)
    n_fft = window_sq.shape[0]
    n_ctrl = gain_ctrl.shape[0]
    has_gain = gain.shape[0] == n
    for t in range(n_frames):
        start = t * hop - hop  # frame t covers padded samples [t hop, t hop + n_fft) = [t hop - hop, ...)
        num = 0.0
        den = 0.0
        for u in range(n_fft):
            i = start + u
            if 0 <= i < n:  # only where the signal is: the padding carries no stem power
                w = window_sq[u]
                den += w
                c = i // step
                j = i - c * step
                g = gain_ctrl[c]
                g_next = gain_ctrl[c + 1] if c + 1 < n_ctrl else g
                g = (g + (g_next - g) * (j / step)) * scale
                if has_gain:
                    g *= gain[i]
                num += w * g * g
        out[t] = num / den if den > 0.0 else 0.0
    return out


# --- the channel strip as a stream (engine.strip): sosfilt, detector_levels_db, smooth_gain_db
# and the gain stage, each resumable chunk by chunk ------------------------------------------

@lazy_njit
def eq_detect_chunk(src, rows, scale, sos, z, a, b, y, y_off, det, lo, hi, level, floor_db):
    """Samples ``[a, b)`` of ``src`` (rows, n) through the strip's EQ into ``y[:, i - y_off]``
    (``sosfilt(sos, src * scale)``: direct form II transposed, as scipy's, so the arithmetic is
    the same; its states ``z`` (2, 4, 2) carried between calls; filter states below
    ``SUBNORMAL_FLOOR`` set to 0 every ``SUBNORMAL_CHECK`` samples, since after a silence they would
    decay through subnormal numbers, which the CPU handles many times slower: the output then
    differs from ``sosfilt`` by less than the floor),
    and the compressor detector fed on the way (as ``detector_levels_db``): the running sum of
    the channel-mean square ``det[0]`` is recorded at each control step's window start ``lo[k]``
    (into ``level[k]``) and turned into that step's level in dB at its window end ``hi[k]``.
    ``det[1]``, ``det[2]`` count the steps whose start / end were passed. At ``b = n`` the steps
    ending at ``n`` are finished. Returns the number of finished steps.

    ``sos`` has exactly 4 sections (the strip's EQ; pad with ``IDENTITY_SECTION``) and ``rows``
    is 1 or 2: the cascade runs as two pairs of sections (:func:`_biquad_pair`, inlined) with its
    states in local variables and both rows in one loop (two independent recursions side by side),
    faster than a loop over sections whose states live in memory, with the same arithmetic in the
    same order."""
    n = src.shape[1]
    n_steps = lo.shape[0]
    c = det[0]
    kl = int(det[1])
    kh = int(det[2])
    floor = 10.0 ** (floor_db / 10.0)
    two = rows == 2
    pair01, pair23 = _section_pair(sos, 0), _section_pair(sos, 2)
    l01, l23 = _pair_states(z, 0, 0), _pair_states(z, 0, 2)  # first row
    r01, r23 = _pair_states(z, 1, 0), _pair_states(z, 1, 2)  # second row
    i = a
    end = b + (1 if b == n else 0)
    while i < end:
        while kl < n_steps and lo[kl] == i:
            level[kl] = c
            kl += 1
        while kh < n_steps and hi[kh] == i:
            ms = (c - level[kh]) / (hi[kh] - lo[kh]) if hi[kh] > lo[kh] else 0.0
            if ms < floor:
                ms = floor
            level[kh] = 10.0 * np.log10(ms)
            kh += 1
        if i >= b:
            break
        if (i & (SUBNORMAL_CHECK - 1)) == 0:  # decayed states set to 0: subnormal arithmetic is slow
            l01, l23, r01, r23 = _flushed(l01), _flushed(l23), _flushed(r01), _flushed(r23)
        # the samples up to the next detector event or state check, with no test inside
        stop = _next_check(i, b)
        if kl < n_steps and lo[kl] < stop:
            stop = lo[kl]
        if kh < n_steps and hi[kh] < stop:
            stop = hi[kh]
        if stop <= i:
            stop = i + 1
        for j in range(i, stop):
            v, l01 = _biquad_pair(src[0, j] * scale, pair01, l01)
            v, l23 = _biquad_pair(v, pair23, l23)
            y[0, j - y_off] = v
            if two:  # the second row's recursion, independent of the first: the CPU runs both at once
                w, r01 = _biquad_pair(src[1, j] * scale, pair01, r01)
                w, r23 = _biquad_pair(w, pair23, r23)
                y[1, j - y_off] = w
                c += (v * v + w * w) / 2.0
            else:
                c += v * v
        i = stop
    _store_pair_states(z, 0, 0, l01)
    _store_pair_states(z, 0, 2, l23)
    _store_pair_states(z, 1, 0, r01)
    _store_pair_states(z, 1, 2, r23)
    det[0] = c
    det[1] = kl
    det[2] = kh
    return kh


@lazy_njit
def add_in_order(outs, lo, hi, mix, at):  # (stems, 2, chunk), int, int, (2, n), int
    """``mix[:, at + i - lo] += outs[0, :, i]; ... += outs[S - 1, :, i]`` for ``i`` in ``[lo, hi)``:
    every stem's chunk added to the mix in stem order (the same sum as adding the stems one after
    another), the mix read and written once instead of once per stem."""
    n_stems = outs.shape[0]
    acc = np.empty(1024)  # a run of the mix, in cache while every stem is added to it
    for ch in range(2):
        for i0 in range(lo, hi, 1024):
            m = min(1024, hi - i0)
            o = at + i0 - lo
            for j in range(m):
                acc[j] = mix[ch, o + j]
            for s in range(n_stems):
                for j in range(m):
                    acc[j] += outs[s, ch, i0 + j]
            for j in range(m):
                mix[ch, o + j] = acc[j]


@lazy_njit
def smooth_chunk(target, state, k_release, k_diff, out):  # (m,), (1,), float, float, (m,)
    """``smooth_gain_db`` (not ``step_mean``) of one row, resumable: ``state[0]`` is y[t-1]."""
    y = state[0]
    for t in range(target.shape[0]):
        delta = target[t] - y
        coef = k_diff * (delta < 0.0)
        coef += k_release
        coef *= delta
        y += coef
        out[t] = y
    state[0] = y


@lazy_njit
def gain_pan_eq_chunk(y, y_off, a, b, rows, gain_ctrl, step, fader, pans, sos, z, out, out_off):
    """Samples ``[a, b)`` of the EQ'd stem ``y[:, i - y_off]`` times the compressor's control
    gains interpolated to each sample, the fader and each side's pan gain, through the master's
    two shelves (``sos`` (2, 6), states ``z`` (2, 2, 2) carried), into ``out[:, i - out_off]``:
    ``sosfilt(sos, ((y * g) * fader) * pan)`` on each side with ``g`` the control gains
    interpolated linearly between steps (held after the last), as ``engine.dsp.compressor_gain``
    builds them; a mono stem's one row feeds both sides. Both sides run in one loop with the
    shelves' states in local variables, control step by control step (no division per sample)."""
    n_ctrl = gain_ctrl.shape[0]
    pair = _section_pair(sos, 0)
    zl, zr = _pair_states(z, 0, 0), _pair_states(z, 1, 0)
    pan_l, pan_r = pans[0], pans[1]
    r1 = 0 if rows == 1 else 1
    i = a
    while i < b:
        cs = i // step
        g0 = gain_ctrl[cs]
        g1 = gain_ctrl[cs + 1] if cs + 1 < n_ctrl else g0
        stop = (cs + 1) * step  # this control step's samples
        if stop > b:
            stop = b
        stop = _next_check(i, stop)  # and up to the next state check
        if (i & (SUBNORMAL_CHECK - 1)) == 0:  # decayed states set to 0: subnormal arithmetic is slow
            zl, zr = _flushed(zl), _flushed(zr)
        d = g1 - g0
        base = cs * step
        for t in range(i, stop):
            g = g0 + d * ((t - base) / step)
            v, zl = _biquad_pair(((y[0, t - y_off] * g) * fader) * pan_l, pair, zl)
            w, zr = _biquad_pair(((y[r1, t - y_off] * g) * fader) * pan_r, pair, zr)
            out[0, t - out_off] = v
            out[1, t - out_off] = w
        i = stop
    _store_pair_states(z, 0, 0, zl)
    _store_pair_states(z, 1, 0, zr)


# --- the channel strips of several stems as SIMD lanes (engine.strip.LaneStrips): every recursion of a
# group of stems advances one sample at a time in a lane loop of fixed length over ONE workspace array
# (one base pointer: the compiler sees that the rows do not overlap and makes the loop SIMD, 8 float64
# lanes per AVX-512 register; the samples enter it through a workspace row). Each lane does exactly the
# arithmetic of the one-stem kernels above, in the same order, so the results are bit for bit theirs.

STRIP_LANES = 16  # lanes of eq_detect_lanes: 8 stems x 2 channels (a mono stem's two rows are equal)
SUM_LANES = 8  # stems per lane block of gain_pan_eq_sum_lanes
# eq_detect_lanes' workspace rows: 0-19 the four sections' (b0, b1, b2, a1, a2), 20-27 their states
# (p, q per section), 28 the trim gain, 29 the input sample, 30 the output, 31 the detector's running sums
# (first lanes: one per stem)
EQ_WS_ROWS = 32
# gain_pan_eq_sum_lanes' workspace rows (one lane per stem): 0 fader, 1 pan gain of the side, 2 send gain,
# 3-12 the master shelves' two sections (the same in every lane), 13-16 their states, 17 the control gain
# at the step's start, 18 its change over the step, 19 the input sample, 20 the output
SUM_WS_ROWS = 21


@lazy_njit
def eq_detect_lanes(audio, s0, n_stems, right, a, b, state, y, y_mask, kk, lo, hi, level, floor_db, alt, alt_index):
    """Samples ``[a, b)`` of stems ``s0 .. s0 + n_stems - 1`` (``n_stems`` <= ``STRIP_LANES / 2``) of ``audio`` (stems,
    2, n) float32 through their trim and EQ, lane ``j + 8 c`` = stem ``s0 + j``, channel ``c`` (the right lane
    reads row ``right[j]``: 1, or 0 for a mono stem, whose one row feeds both sides; a stem with ``alt_index[j]
    >= 0`` reads ``alt[alt_index[j]]`` (n_alt, 2, n) float32 instead: its dynamic cut's output,
    ``engine.render``), into the ring ``y[i & y_mask, lane]`` -- :func:`eq_detect_chunk` for each stem, its two
    rows as two lanes, states and coefficients in ``state`` (``EQ_WS_ROWS``, ``STRIP_LANES``) -- and the
    compressor detector fed on the way: stem ``j``'s running sum of ``(v^2 + w^2) / 2`` (``ws[31, j]``) recorded
    at each control step's window start ``lo[k]`` into ``level[j, k]`` and turned into the level in dB at its
    end ``hi[k]``; ``kk`` (2,) counts the steps whose start / end were passed (the same for every stem). A mono
    stem is its row twice: equal inputs give equal lanes and ``(v^2 + v^2) / 2 = v^2`` exactly, the one-row
    detector's value. States below ``SUBNORMAL_FLOOR`` are set to 0 before every sample whose index is a
    multiple of ``SUBNORMAL_CHECK``, as there.
    Returns the number of finished steps."""
    n = audio.shape[2]
    n_steps = lo.shape[0]
    L = STRIP_LANES
    H = STRIP_LANES // 2
    ws = np.empty((EQ_WS_ROWS, STRIP_LANES))  # a local copy: its shape is known, so the compiler sees the rows apart
    for r in range(EQ_WS_ROWS):
        for j in range(L):
            ws[r, j] = state[r, j]
    kl = kk[0]
    kh = kk[1]
    floor = 10.0 ** (floor_db / 10.0)
    end = b + (1 if b == n else 0)
    for i in range(a, end):
        while kl < n_steps and lo[kl] == i:
            for j in range(n_stems):
                level[j, kl] = ws[31, j]
            kl += 1
        while kh < n_steps and hi[kh] == i:
            for j in range(n_stems):
                ms = (ws[31, j] - level[j, kh]) / (hi[kh] - lo[kh]) if hi[kh] > lo[kh] else 0.0
                if ms < floor:
                    ms = floor
                level[j, kh] = 10.0 * np.log10(ms)
            kh += 1
        if i >= b:
            break
        if (i & (SUBNORMAL_CHECK - 1)) == 0:  # decayed states set to 0: subnormal arithmetic is slow
            for r in range(20, 28):
                for j in range(L):
                    if abs(ws[r, j]) < SUBNORMAL_FLOOR:
                        ws[r, j] = 0.0
        for j in range(n_stems):
            q = alt_index[j]
            if q < 0:
                ws[29, j] = audio[s0 + j, 0, i]
                ws[29, j + H] = audio[s0 + j, right[j], i]
            else:
                ws[29, j] = alt[q, 0, i]
                ws[29, j + H] = alt[q, right[j], i]
        for j in range(L):  # the SIMD loop: four sections, direct form II transposed, as _biquad
            v = ws[29, j] * ws[28, j]
            o = ws[0, j] * v + ws[20, j]
            ws[20, j] = ws[1, j] * v - ws[3, j] * o + ws[21, j]
            ws[21, j] = ws[2, j] * v - ws[4, j] * o
            v = o
            o = ws[5, j] * v + ws[22, j]
            ws[22, j] = ws[6, j] * v - ws[8, j] * o + ws[23, j]
            ws[23, j] = ws[7, j] * v - ws[9, j] * o
            v = o
            o = ws[10, j] * v + ws[24, j]
            ws[24, j] = ws[11, j] * v - ws[13, j] * o + ws[25, j]
            ws[25, j] = ws[12, j] * v - ws[14, j] * o
            v = o
            o = ws[15, j] * v + ws[26, j]
            ws[26, j] = ws[16, j] * v - ws[18, j] * o + ws[27, j]
            ws[27, j] = ws[17, j] * v - ws[19, j] * o
            ws[30, j] = o
        for j in range(H):  # the detector: each stem's two lanes, also SIMD
            v = ws[30, j]
            w = ws[30, j + H]
            ws[31, j] += (v * v + w * w) / 2.0
        for j in range(L):
            y[i & y_mask, j] = ws[30, j]
    for r in range(EQ_WS_ROWS):
        for j in range(L):
            state[r, j] = ws[r, j]
    kk[0] = kl
    kk[1] = kh
    return kh


@lazy_njit
def gain_pan_eq_sum_lanes(y, y_mask, side, a, b, n_stems, state, ctrl, n_ctrl, step, mix, send, send_off,
                          has_send):
    """Side ``side`` of every stem for samples ``[a, b)``: the EQ'd signal (stem ``s`` in
    ``y[s // 8, i & y_mask, s % 8 + 8 side]``, from :func:`eq_detect_lanes`) times its compressor's
    control gains ``ctrl[s]`` (the first ``n_ctrl`` known) interpolated to each sample, its fader and
    pan gain, through the master's two shelves -- :func:`gain_pan_eq_chunk`'s arithmetic, one lane per
    stem, coefficients and states in ``state`` (``SUM_WS_ROWS``, lanes) -- then summed in stem order from 0 into
    ``mix[i]`` (as :func:`add_in_order` adds the stems) and, with ``has_send``, each output
    times its send gain (skipped where 0) summed in stem order from 0 into ``send[i - send_off]`` (as
    ``engine.render.add_send`` adds them). One side's sums never depend on the other's, so the two
    sides may run at once."""
    L = state.shape[1]  # a multiple of SUM_LANES
    nb = L // SUM_LANES
    # a local copy in blocks of SUM_LANES lanes: inside a block the rows' distance is known, so the compiler
    # sees them apart and makes the block's loop SIMD
    ws = np.empty((nb, SUM_WS_ROWS, SUM_LANES))
    for r in range(SUM_WS_ROWS):
        for j in range(L):
            ws[j // SUM_LANES, r, j % SUM_LANES] = state[r, j]
    i = a
    while i < b:
        cs = i // step
        stop = (cs + 1) * step  # this control step's samples
        if stop > b:
            stop = b
        for j in range(n_stems):
            g0 = ctrl[j, cs]
            g1 = ctrl[j, cs + 1] if cs + 1 < n_ctrl else g0
            ws[j // SUM_LANES, 17, j % SUM_LANES] = g0
            ws[j // SUM_LANES, 18, j % SUM_LANES] = g1 - g0
        base = cs * step
        for t in range(i, stop):
            if (t & (SUBNORMAL_CHECK - 1)) == 0:  # decayed states set to 0: subnormal arithmetic is slow
                for k in range(nb):
                    for r in range(13, 17):
                        for j in range(SUM_LANES):
                            if abs(ws[k, r, j]) < SUBNORMAL_FLOOR:
                                ws[k, r, j] = 0.0
            frac = (t - base) / step
            for j in range(n_stems):
                ws[j // SUM_LANES, 19, j % SUM_LANES] = y[j // SUM_LANES, t & y_mask, SUM_LANES * side + j % SUM_LANES]
            for k in range(nb):
                w = ws[k]
                for j in range(SUM_LANES):  # the SIMD loop: gain, fader, pan, two sections
                    g = w[17, j] + w[18, j] * frac
                    v = ((w[19, j] * g) * w[0, j]) * w[1, j]
                    o = w[3, j] * v + w[13, j]
                    w[13, j] = w[4, j] * v - w[6, j] * o + w[14, j]
                    w[14, j] = w[5, j] * v - w[7, j] * o
                    v = o
                    o = w[8, j] * v + w[15, j]
                    w[15, j] = w[9, j] * v - w[11, j] * o + w[16, j]
                    w[16, j] = w[10, j] * v - w[12, j] * o
                    w[20, j] = o
            acc = 0.0
            for j in range(n_stems):
                acc += ws[j // SUM_LANES, 20, j % SUM_LANES]
            mix[t] = acc
            if has_send:
                acc = 0.0
                for j in range(n_stems):
                    k = j // SUM_LANES
                    if ws[k, 2, j % SUM_LANES] > 0.0:
                        acc += ws[k, 2, j % SUM_LANES] * ws[k, 20, j % SUM_LANES]
                send[t - send_off] = acc
        i = stop
    for r in range(SUM_WS_ROWS):
        for j in range(L):
            state[r, j] = ws[j // SUM_LANES, r, j % SUM_LANES]
