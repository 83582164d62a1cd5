"""The fast tier's true-peak model: what is precomputed per stem, and the estimate per candidate.

The limiter and the ``limiter_gr_db`` feature need each candidate's true peak, but the fast tier
has no waveform. So the Analysis keeps, at K candidate instants (local maxima of each stem, of
the stem after each of a few filters, and of the unity-gain sum), each stem split into
``PEAK_NODES_HZ`` bands, in phase and in quadrature (:func:`peak_values_at`), plus what each
compressor's detector sees there (:func:`detector_at`). At render time a candidate's complex EQ
response at the nodes, its gains and pan turn them into the mix's waveform at the instants,
the compressors' gains are computed at each instant (:func:`_gain_at_instants`), and the largest
instants are refined between samples (:func:`_refine_top_peaks`).

Precompute (``engine.analysis.analyze_session``): :func:`stem_candidate_instants`,
:func:`sum_candidate_instants`, :func:`peak_values_at`, :func:`detector_at`.
Estimate (a stage of ``engine.batch.render_features``): :func:`estimate_peaks`, with
:func:`_gain_at_instants`, :func:`_master_level_at_instants`, ``engine.gains.gained_stem_sum`` (the
mix at the instants), :func:`_refine_top_peaks` and :func:`_frame_max`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from evomix.core.compiled import lazy_njit
from evomix.core.constants import POWER_FLOOR
from evomix.engine.bands import BandGrid
from evomix.engine.dsp.dynamics import compressor_static_rows
from evomix.engine.dsp.filters import cascade_response, rbj_sos
from evomix.engine.gains import MixWeights, StemGains, gain_from_db, gained_stem_sum
from evomix.search.genome import KNEE_DB, MASTER_COMP_ATTACK_MS, MASTER_COMP_RELEASE_MS, Params

if TYPE_CHECKING:  # annotations only: engine.analysis imports this module
    from evomix.engine.analysis import Analysis

# ---------------------------------------------------------------------------------------------
# Precompute, once per session (engine.analysis)
# ---------------------------------------------------------------------------------------------
PEAK_GROUP_EDGES_HZ = (150.0, 1000.0, 5000.0)  # bands in which each stem's peak instants are sought
PEAK_SEARCH_HPF_HZ = (60.0, 150.0, 400.0)  # high-passes after which each stem's peaks are sought too
# Instants (local maxima) kept per stem, up to 8 stems; beyond 8 stems they share a budget (cost per
# evaluation ~ stems x instants). With the refinement between samples (_refine_top_peaks) the
# true peak does not need more: larger budgets estimate it, and rank loudness, no better.
PEAK_CANDIDATES_PER_STEM = 200
PEAK_CANDIDATES_ALL_STEMS = 1600
PEAK_CANDIDATES_MIN_PER_STEM = 40
PEAK_CANDIDATES_SUM = 600  # instants kept from the unity-gain sum
PEAK_NODES_HZ = np.geomspace(20.0, 16000.0, 40)  # 1/4-octave nodes of the peak basis (Hz)
# samples on each side of every instant found that are candidates too: an EQ that boosts a
# transient's top octaves (a kick's click) moves its sample peak a sample away from where any search
# found it, and a one-sample click is not a parabola (:func:`_refine_top_peaks` cannot find it);
# without them the fast tier reads such mixes' peaks low, and a search drifts towards them
PEAK_NEIGHBOURS = 1
# ... of the instants of the searches above this (Hz): the 400 Hz high-pass and the 1-5 kHz, > 5 kHz bands
NEIGHBOUR_SEARCH_HZ = 400.0
PEAK_BLOCK_S = 0.005  # at most one candidate instant per block of this length (s) per search
PEAK_KERNEL = 4096  # samples of signal around each candidate instant
DETECTOR_GROUP_BANDS = 4  # analysis bands per group of the compressor detector at the instants
DETECTOR_WINDOW_S = 0.05  # the compressors' RMS window (engine.dsp.compressor_gain), s
EXCERPT_ROWS = 1024  # excerpts gathered (and transformed) at a time by peak_values_at / detector_at


def _local_maxima(env: np.ndarray, k: int, hop: int) -> np.ndarray:
    """About k indices of large per-block maxima of ``env`` (samples,), blocks of ``hop`` samples:
    the k/2 largest overall, and the largest in each of k/2 equal stretches of the song (after a
    compressor has flattened the dynamics, a quiet passage's transient can be the master's peak)."""
    n = env.size // hop * hop
    if n == 0:
        return np.array([int(np.argmax(env))])
    blocks = env[:n].reshape(-1, hop)
    return _top_blocks(blocks.max(axis=1), blocks.argmax(axis=1) + np.arange(blocks.shape[0]) * hop, k)


def _top_blocks(peak: np.ndarray, arg: np.ndarray, k: int) -> np.ndarray:
    """:func:`_local_maxima` from the blocks' maxima ``peak`` (blocks,) and the sample index of
    each (``arg``, blocks,): the k/2 largest blocks and the largest of each of k/2 stretches."""
    top = np.argsort(peak)[::-1][: max(1, k - k // 2)]
    n_stretch = min(k // 2, peak.size)
    if n_stretch == 0:
        return arg[top]
    bounds = np.linspace(0, peak.size, n_stretch + 1).astype(int)
    spread = [b0 + int(np.argmax(peak[b0:b1])) for b0, b1 in zip(bounds[:-1], bounds[1:]) if b1 > b0]
    return arg[np.unique(np.concatenate([top, spread]))]


def _node_weights(freqs: np.ndarray) -> np.ndarray:
    """(N, F) triangular weights in log frequency, one per ``PEAK_NODES_HZ`` node, summing to 1 at
    every frequency (the first node takes everything below it, the last everything above)."""
    nodes = np.log2(PEAK_NODES_HZ)
    lf = np.log2(np.maximum(freqs, 1e-3))
    eye = np.eye(nodes.size)
    return np.array([np.interp(lf, nodes, eye[n]) for n in range(nodes.size)])  # (N, F)


def _kernels(grid: BandGrid) -> np.ndarray:
    """(L, 2 N) impulse responses, index i <-> lag i - L/2 (``L = PEAK_KERNEL``, FFT-designed):
    the zero-phase band filters of :func:`_node_weights` and their Hilbert transforms
    (response ``-j w_n(f)`` for f > 0)."""
    L = PEAK_KERNEL
    w = _node_weights(np.fft.rfftfreq(L, 1.0 / grid.sr))  # (N, F)
    w[:, 0] = np.where(np.arange(w.shape[0]) == 0, 1.0, 0.0)  # DC: in phase only
    real = np.fft.irfft(w, n=L, axis=-1)
    quad = np.fft.irfft(-1j * w, n=L, axis=-1)
    return np.roll(np.concatenate([real, quad]), L // 2, axis=-1).T.astype(np.float32)


def search_filters(sr: int) -> list:
    """The filters after which each stem's peaks are sought, as second-order sections (k, 6) each:
    the RBJ high-passes ``PEAK_SEARCH_HPF_HZ`` (Q 0.707), then 2nd-order Butterworth sections
    splitting the spectrum at ``PEAK_GROUP_EDGES_HZ`` (a low-pass, band-passes, a high-pass)."""
    from scipy.signal import butter  # here, not at import: scipy.signal is slow to import
    edges = (None,) + PEAK_GROUP_EDGES_HZ + (None,)
    filters = [np.asarray(rbj_sos("highpass", f, 0.0, 0.707, sr)).reshape(1, 6) for f in PEAK_SEARCH_HPF_HZ]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo is None:
            filters.append(butter(2, hi, "lowpass", fs=sr, output="sos"))
        elif hi is None:
            filters.append(butter(2, lo, "highpass", fs=sr, output="sos"))
        else:
            filters.append(butter(2, (lo, hi), "bandpass", fs=sr, output="sos"))
    return filters


def search_block_maxima(x: np.ndarray, sr: int, filters: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per block of ``PEAK_BLOCK_S`` the largest ``|x|`` over the channels of ``x`` (ch, samples)
    and, for a stereo ``x``, of ``x`` after each of ``filters`` (default :func:`search_filters`),
    and where it is, in one compiled pass over the samples (no envelope is stored).

    Returns ``peak`` (1 + F, blocks) and ``arg`` (1 + F, blocks) int64 sample indices, row 0 the
    raw signal. The filters run in float32 (as ``scipy.signal.sosfilt`` on the float32 session
    audio did), in ``sosfilt``'s arithmetic order, so they give its values except where a
    filter's state has decayed below ``_STATE_FLOOR`` (set to 0 after each block, see
    :func:`_filtered_block_maxima`: values some 300 dB down, in silences). A signal shorter than
    one block is one block.
    """
    filters = search_filters(sr) if filters is None else filters
    n = x.shape[-1]
    block = max(1, min(int(PEAK_BLOCK_S * sr), n))
    n_blocks = n // block
    peak = np.empty((1 + len(filters), n_blocks), np.float32 if filters else x.dtype)
    arg = np.empty((1 + len(filters), n_blocks), np.int64)
    if not filters:
        _block_abs_max(np.ascontiguousarray(x), block, peak[0], arg[0])
        return peak, arg
    if x.shape[0] != 2 or len(filters) > _SEARCH_LANES // 2 or max(f.shape[0] for f in filters) > 2:
        raise ValueError("search_block_maxima: filters need a stereo signal and at most "
                         f"{_SEARCH_LANES // 2} filters of one or two sections")
    sos = np.zeros((2, _SEARCH_LANES, 6), np.float32)  # (stage, lane): lane j < L/2 left, else right
    sos[:, :, 0] = sos[:, :, 3] = 1.0  # unused lanes and second stages pass their input through
    for f, sec in enumerate(filters):
        sos[: sec.shape[0], f] = sos[: sec.shape[0], f + _SEARCH_LANES // 2] = sec
    _filtered_block_maxima(np.ascontiguousarray(x, np.float32), sos, block, peak, arg)
    return peak, arg


@lazy_njit
def _block_abs_max(x, block, peak, arg):  # (C, n), int, (nb,), (nb,) int64
    """``peak[b]`` = max over block ``b`` (``block`` samples) of ``max_c |x[c]|``, ``arg[b]`` its
    first sample index (``np.abs(x).max(axis=0)`` then each block's max and argmax)."""
    for b in range(peak.shape[0]):
        best = abs(x[0, b * block])
        at = b * block
        for i in range(b * block, (b + 1) * block):
            m = abs(x[0, i])
            for c in range(1, x.shape[0]):
                a = abs(x[c, i])
                if a > m:
                    m = a
            if m > best:
                best = m
                at = i
        peak[b] = best
        arg[b] = at


_SEARCH_LANES = 16  # recursions advanced together by _filtered_block_maxima: up to 8 filters x 2 channels
_STATE_FLOOR = np.float32(1e-30)  # filter states below this are set to 0 after each block: no subnormals


@lazy_njit
def _filtered_block_maxima(x, sos, block, peak, arg):  # (2, n) f32, (2, LANES, 6) f32, int, (1+F, nb), (1+F, nb) int64
    """``peak[0, b]`` = max over block ``b`` of ``max(|x[0]|, |x[1]|)`` and ``arg[0, b]`` its first
    sample; rows ``1 + f`` the same for ``y_f`` = ``x`` through filter ``f``'s two sections
    (``sos[0, f]`` then ``sos[1, f]`` for the left channel, lane ``f + LANES / 2`` for the right),
    direct form II transposed in ``sosfilt``'s arithmetic order, float32.

    All the recursions advance one sample at a time in a fixed-length lane loop over one workspace
    (one base pointer: the compiler sees that the rows do not overlap and makes the loop SIMD; the
    samples enter it as scalars, not through memory). After each block a state below
    ``_STATE_FLOOR`` (some 300 dB under full scale: a filter ringing out into a silence) is set
    to 0; left alone it decays into subnormal floats, which the CPU handles in microcode, and
    makes the pass several times slower on a stem with silent stretches."""
    half = _SEARCH_LANES // 2
    n_f = peak.shape[0] - 1
    # rows 0-4: first sections' b0 b1 b2 a1 a2, 5-9: second sections', 10-13: their states
    # (z0, z1 of the first, then of the second), 14: each filter's max(|left|, |right|)
    ws = np.zeros((15, _SEARCH_LANES), np.float32)
    for st in range(2):
        for j in range(_SEARCH_LANES):
            for r, col in enumerate((0, 1, 2, 4, 5)):
                ws[5 * st + r, j] = sos[st, j, col]
    best = np.empty(half + 1, np.float32)  # filters' block maxima so far, then the raw signal's
    at = np.empty(half + 1, np.int64)
    for b in range(peak.shape[1]):
        best[:] = -1.0
        for i in range(b * block, (b + 1) * block):
            x0 = x[0, i]
            x1 = x[1, i]
            for j in range(half):  # lane j: left channel, lane k: right channel
                k = j + half
                yl = ws[0, j] * x0 + ws[10, j]
                ws[10, j] = ws[1, j] * x0 - ws[3, j] * yl + ws[11, j]
                ws[11, j] = ws[2, j] * x0 - ws[4, j] * yl
                yr = ws[0, k] * x1 + ws[10, k]
                ws[10, k] = ws[1, k] * x1 - ws[3, k] * yr + ws[11, k]
                ws[11, k] = ws[2, k] * x1 - ws[4, k] * yr
                u = yl
                yl = ws[5, j] * u + ws[12, j]
                ws[12, j] = ws[6, j] * u - ws[8, j] * yl + ws[13, j]
                ws[13, j] = ws[7, j] * u - ws[9, j] * yl
                u = yr
                yr = ws[5, k] * u + ws[12, k]
                ws[12, k] = ws[6, k] * u - ws[8, k] * yr + ws[13, k]
                ws[13, k] = ws[7, k] * u - ws[9, k] * yr
                ws[14, j] = max(abs(yl), abs(yr))
            e = max(abs(x0), abs(x1))
            if e > best[half]:
                best[half] = e
                at[half] = i
            for j in range(n_f):
                e = ws[14, j]
                if e > best[j]:
                    best[j] = e
                    at[j] = i
        peak[0, b] = best[half]
        arg[0, b] = at[half]
        for f in range(n_f):
            peak[1 + f, b] = best[f]
            arg[1 + f, b] = at[f]
        for r in range(10, 14):
            for j in range(_SEARCH_LANES):
                if abs(ws[r, j]) < _STATE_FLOOR:
                    ws[r, j] = 0.0


def stem_candidate_instants(x: np.ndarray, grid: BandGrid, n: int = PEAK_CANDIDATES_PER_STEM) -> np.ndarray:
    """About ``n`` sample indices where stem ``x`` (2, samples) peaks: overall, after each of the high-passes
    ``PEAK_SEARCH_HPF_HZ`` (a high-pass moves a stem's peaks to its transients) and in each peak
    band (an EQ boost in a band moves the mix's peak to where that band peaks): the blocks'
    maxima of all the searches come from one pass over the stem (:func:`search_block_maxima`)."""
    if x.shape[-1] < max(1, int(PEAK_BLOCK_S * grid.sr)):
        return np.array([int(np.argmax(np.abs(x).max(axis=0)))])
    peak, arg = search_block_maxima(x, grid.sr)
    per_search = max(1, n // peak.shape[0])
    found = [_top_blocks(p, a, per_search) for p, a in zip(peak, arg)]
    treble = [1 + i for i, f in enumerate(PEAK_SEARCH_HPF_HZ) if f >= NEIGHBOUR_SEARCH_HZ]
    treble += [2 + len(PEAK_SEARCH_HPF_HZ) + i for i, f in enumerate(PEAK_GROUP_EDGES_HZ) if f >= NEIGHBOUR_SEARCH_HZ]
    offsets = np.arange(-PEAK_NEIGHBOURS, PEAK_NEIGHBOURS + 1)
    near = [(found[r][:, None] + offsets[None, :]).ravel() for r in treble]
    return np.unique(np.clip(np.concatenate(found + near), 0, x.shape[-1] - 1))


def peak_values_at(x: np.ndarray, inst: np.ndarray, grid: BandGrid) -> np.ndarray:
    """Stem ``x`` (2, samples) split into the peak basis (in phase and quadrature per node) at
    instants ``inst`` (K,).

    Each value is a dot product of the signal around the instant with the filter's impulse
    response: excerpts (K, L) @ kernels (L, 2 N), the excerpts copied by a compiled loop
    (:func:`_gather_windows`, zeros beyond the signal's ends) into one buffer of
    ``EXCERPT_ROWS`` rows at a time. Returns (2, 2 N, K) float32.

    Why phase: EQ (the high-pass most, shelves and peaks too) shifts the phase of what it touches
    and so moves and reshapes the peaks; magnitude-only band gains misjudge the true peak of a mix
    by dBs (``experiments/fidelity.py`` measures it).
    """
    L = PEAK_KERNEL
    K_mat = _kernels(grid)  # (L, 2 N)
    inst = np.asarray(inst, np.int64)
    out = np.empty((2, K_mat.shape[1], inst.size), np.float32)
    buf = np.empty((min(EXCERPT_ROWS, inst.size), L), np.float32)
    for c in range(2):
        row = np.ascontiguousarray(x[c], np.float32)
        for i0 in range(0, inst.size, EXCERPT_ROWS):
            part = inst[i0 : i0 + EXCERPT_ROWS]
            e = buf[: part.size]
            _gather_windows(row, part + L // 2, -1, L, e)  # e[k, i] = x[t_k + L/2 - i]
            out[c, :, i0 : i0 + part.size] = (e @ K_mat).T  # (k, 2N) -> (2N, k)
    return out


def detector_at(x: np.ndarray, inst: np.ndarray, grid: BandGrid, group_bands: int = DETECTOR_GROUP_BANDS,
                window_s: float = DETECTOR_WINDOW_S) -> np.ndarray:
    """Power of ``x`` (2, samples) summed over channels in a ``window_s`` (s) rectangular window
    centred on each instant (K,), per group of ``group_bands`` analysis bands
    -> (C, K) float32, a mean square (Parseval: one-sided spectrum, DC and Nyquist once).

    The windows ``[t - L/2, t + L/2)`` are copied by a compiled loop into a buffer already
    ``n_fft`` long (its zero tail is the FFT's padding), ``EXCERPT_ROWS`` at a time, and each
    spectrum's bins summed into the groups by another (:func:`_add_group_power`, in float64)."""
    L = int(round(window_s * grid.sr))
    n_fft = 1 << (L - 1).bit_length()
    freqs = np.fft.rfftfreq(n_fft, 1.0 / grid.sr)
    band = np.clip(np.searchsorted(grid.edges_hz, freqs) - 1, 0, grid.n_bands - 1)
    group = band // group_bands  # (bins,) non-decreasing: each group is one run of bins
    n_groups = -(-grid.n_bands // group_bands)
    first = np.searchsorted(group, np.arange(n_groups + 1)).astype(np.int64)  # (C + 1,) run starts
    w = np.full(freqs.size, 2.0)
    w[0] = 1.0
    if n_fft % 2 == 0:
        w[-1] = 1.0
    w /= n_fft * L
    inst = np.asarray(inst, np.int64)
    acc = np.zeros((inst.size, n_groups))  # (K, C) float64, both channels
    buf = np.zeros((min(EXCERPT_ROWS, inst.size), n_fft), np.float32)  # columns >= L stay 0
    for c in range(2):
        row = np.ascontiguousarray(x[c], np.float32)
        for i0 in range(0, inst.size, EXCERPT_ROWS):
            part = inst[i0 : i0 + EXCERPT_ROWS]
            e = buf[: part.size]
            _gather_windows(row, part - L // 2, 1, L, e)
            spec = scipy.fft.rfft(e, axis=-1, workers=1)  # (k, bins) complex64
            _add_group_power(spec, first, w, acc[i0 : i0 + part.size])
    return np.ascontiguousarray(acc.T, np.float32)


@lazy_njit
def _gather_windows(x, start, step, length, out):  # (n,), (K,) int, int, int, (K, >= length)
    """``out[k, j] = x[start[k] + step * j]`` for ``j < length`` (0 outside the signal)."""
    n = x.shape[0]
    for k in range(start.shape[0]):
        a = start[k]
        for j in range(length):
            i = a + step * j
            out[k, j] = x[i] if 0 <= i < n else 0.0


@lazy_njit(fastmath={"reassoc"})
def _add_group_power(spec, first, weight, out):  # (k, bins) complex, (C + 1,) int, (bins,) float64, (k, C) float64
    """``out[r, g] += sum_{first[g] <= b < first[g + 1]} weight[b] |spec[r, b]|^2``: each group's
    bins are one run; summed in float64 (``reassoc``: in SIMD lanes, an order that depends only on
    the run's length)."""
    for r in range(spec.shape[0]):
        for g in range(first.shape[0] - 1):
            acc = 0.0
            for b in range(first[g], first[g + 1]):
                z = spec[r, b]
                re = np.float64(z.real)
                im = np.float64(z.imag)
                acc += (re * re + im * im) * weight[b]
            out[r, g] += acc


def candidates_per_stem(n_stems: int) -> int:
    """Instants kept per stem for a session of ``n_stems`` stems (``PEAK_CANDIDATES_PER_STEM`` up to
    8 stems, then a share of ``PEAK_CANDIDATES_ALL_STEMS``, at least ``PEAK_CANDIDATES_MIN_PER_STEM``)."""
    share = PEAK_CANDIDATES_ALL_STEMS // max(n_stems, 1)
    return min(PEAK_CANDIDATES_PER_STEM, max(PEAK_CANDIDATES_MIN_PER_STEM, share))


def sum_candidate_instants(total: np.ndarray, sr: int) -> np.ndarray:
    """About ``PEAK_CANDIDATES_SUM`` sample indices where the unity-gain sum ``total`` (2, samples) peaks."""
    if total.shape[-1] < max(1, int(PEAK_BLOCK_S * sr)):
        return np.array([int(np.argmax(np.abs(total).max(axis=0)))])
    peak, arg = search_block_maxima(total, sr, filters=[])
    return _top_blocks(peak[0], arg[0], PEAK_CANDIDATES_SUM)


# ---------------------------------------------------------------------------------------------
# Estimate, per candidate (engine.batch)
# ---------------------------------------------------------------------------------------------
# instants per candidate whose peak is refined between samples: a mix's true peak lies next to one
# of its largest few sample peaks; refining more finds no higher one, refining fewer misses some
PEAK_REFINE_TOP = 16
PEAK_REFINE_MAX_SAMPLES = 1.0  # how far from its instant a refined peak may lie (samples)


@dataclass(frozen=True)
class PeakEstimate:
    """Each candidate's estimated master peak, before loudness normalisation and limiting.

    Attributes
    ----------
    frame_peak : (pop, T) linear, the largest estimated peak among each frame's candidate instants
        (0 where a frame has none), full scale = 1.
    peak_db : (pop,) dB, the largest of them.
    """

    frame_peak: np.ndarray
    peak_db: np.ndarray


def estimate_peaks(a: Analysis, params: Params, g: StemGains, mix: MixWeights, stem_gr_db: np.ndarray,
                   master_gr_db: np.ndarray) -> PeakEstimate:
    """The master's peak per frame of each candidate, from the peak basis at the candidate instants.

    Each candidate's EQ (complex, phase included: stem EQ then master shelves at
    ``PEAK_NODES_HZ``), trim, fader and pan applied to each stem's in-phase/quadrature band values
    at the instants (``Analysis.peak_values``), summed as waveforms; the compressors' gains at the
    instants come from their detectors there (:func:`_gain_at_instants`: the stems' EQ'd and
    trimmed detectors, then the master's on the mix); the largest instants are refined between
    samples (:func:`_refine_top_peaks`).

    Parameters
    ----------
    a : Analysis.  params : Params (pop, ...).
    g : StemGains.  mix : MixWeights (``engine.gains``).
    stem_gr_db : (pop, stems, T) dB, the stem compressors' smoothed frame gains.
    master_gr_db : (pop, T) dB, the master compressor's frame gain.
    """
    sr = a.sr
    n_pop, n_stems = params.gain_db.shape
    stem_sos, master_sos, eq = g.stem_sos, g.master_sos, g.eq_pow
    trim_pow, fader_pow, rel_pan = g.trim_pow, g.fader_pow, g.rel_pan_amp
    eq_mix, mix_w = mix.eq_pow, mix.linked_pow
    gr, mgr = stem_gr_db, master_gr_db
    # (p, s, 4, 6) and (p, 2, 6) -> (p, s, 6, 6): each stem's EQ, then the master's shelves
    chain = np.concatenate([stem_sos, np.broadcast_to(master_sos[:, None], (n_pop, n_stems, 2, 6))], axis=2)
    h_nodes = cascade_response(chain, PEAK_NODES_HZ, sr)  # (p, s, N) stem EQ then master shelves
    amp = np.sqrt(trim_pow * fader_pow)[:, :, None] * rel_pan  # (p, s, 2)
    hc = h_nodes[:, :, None, :] * amp[..., None]  # (p, s, 2, N) complex
    coef = np.concatenate([hc.real, -hc.imag], axis=-1).transpose(1, 2, 0, 3)  # (s, 2, p, 2N)
    per_stem = np.matmul(coef.astype(np.float32), a.peak_values)  # (s, 2, p, 2N) @ (s, 2, 2N, K) -> (s, 2, p, K)
    k = a.peak_frames  # (K,) sorted
    # compressors at the instants: stem detectors (EQ'd, trimmed), then the master's (the mix)
    det = a.peak_detector  # (s, C, K)
    eq_groups = np.matmul(eq.transpose(1, 0, 2).astype(np.float32), a.detector_group_share)  # (s, p, C)
    trim32 = trim_pow.T[:, :, None].astype(np.float32)  # (s, p, 1)
    lev = np.matmul(eq_groups, det) * trim32  # (s, p, K)
    gr_peak = _gain_at_instants(a, lev, params.comp_threshold_db.T[:, :, None], params.comp_ratio.T[:, :, None],
                                params.comp_attack_ms.T[:, :, None], params.comp_release_ms.T[:, :, None],
                                gr.transpose(1, 0, 2))  # (s, p, K) dB
    g_peak = gain_from_db(gr_peak)  # (s, p, K) amplitude
    meq_groups = np.matmul(eq_mix, a.detector_group_share)  # (s, p, C)
    mlev = _master_level_at_instants(meq_groups, det, mix_w[:, :, 0], g_peak)  # (p, K)
    mgr_peak = _gain_at_instants(a, mlev, params.master_comp_threshold_db[:, None], params.master_comp_ratio[:, None],
                                 MASTER_COMP_ATTACK_MS, MASTER_COMP_RELEASE_MS, mgr)  # (p, K)
    values = gained_stem_sum(per_stem, g_peak)  # (2, p, K) the mix's waveform: each stem's value through its compressor
    g_master_peak = gain_from_db(mgr_peak)  # (p, K) amplitude
    peaks = np.abs(values).max(axis=0) * g_master_peak  # (p, K) before normalisation
    _refine_top_peaks(a, peaks, values, hc, g_peak, g_master_peak)
    frame_peak = _frame_max(peaks, k, mgr.shape[-1])  # (p, T)
    # the true peak: every instant's, also those that no frame holds (a segmented song's, engine.segments)
    top = frame_peak.max(axis=1) if a.instant_frames is None else np.maximum(frame_peak.max(axis=1), peaks.max(axis=1))
    with np.errstate(divide="ignore"):
        peak_db = 20.0 * np.log10(np.maximum(top, 1e-10))  # (p,)
    return PeakEstimate(frame_peak=frame_peak, peak_db=peak_db)


def _gain_at_instants(a: Analysis, level: np.ndarray, threshold_db, ratio, attack_ms, release_ms,
                      gr_frames: np.ndarray) -> np.ndarray:
    """A compressor's gain (dB) at the peak-candidate instants from its detector level there.

    The frame-rate gain misses what a transient does inside its frame, and peaks are transients.
    At each instant: the static curve on the instant-centred detector level ``level`` (..., K)
    (mean square), approached from the smoothed state of the last frame whose window ends before
    the transient enters the detector, over half the detector window (the time the centred RMS
    window has seen the transient), with the attack or release time constant (the branching
    smoothing of ``engine.dsp.smooth_gain_db``, Giannoulis et al. 2012, eq. 17).
    ``gr_frames`` (..., T) dB; ``threshold_db`` ... broadcast against (..., K). Returns (..., K) dB.
    """
    level = np.asarray(level, np.float32)
    lead, n_inst = level.shape[:-1], level.shape[-1]

    def rows(x, dtype=np.float64):  # per-curve parameter, (..., 1) or scalar -> (n,)
        x = np.asarray(x, dtype)
        return np.ascontiguousarray(np.broadcast_to(x[..., 0] if x.ndim else x, lead)).reshape(-1)

    lev_db = np.log10(np.maximum(level, np.float32(POWER_FLOOR))).reshape(-1, n_inst)  # (n, K)
    lev_db *= np.float32(10.0)
    target = compressor_static_rows(lev_db, rows(threshold_db, np.float32), rows(ratio, np.float32),
                                    np.full(lev_db.shape[0], KNEE_DB, np.float32))  # (n, K)
    before = a.frame_before_instant  # (K,) frame centred a hop or more before the instant
    half_window = DETECTOR_WINDOW_S / 2.0
    # over the half window before the peak the detector's level rises as a step (a sharp hit enters
    # the window's leading edge at once) or as a ramp (a swelling sound); the one-pole leaves
    # exp(-D / tau) of the change to go after a step, (tau / D)(1 - exp(-D / tau)) after a ramp.
    # The mean of the two: the step alone over-compresses (the true peak reads low), the ramp
    # alone under-compresses sharp transients (it reads high on some songs).
    keep_attack = _keep_after_rise(rows(attack_ms) / 1000.0, half_window)
    keep_release = _keep_after_rise(rows(release_ms) / 1000.0, half_window)
    frames = np.ascontiguousarray(gr_frames, np.float32).reshape(-1, gr_frames.shape[-1])  # (n, T)
    return _approach_rows(target, frames, before, keep_attack, keep_release).reshape(level.shape)


def _keep_after_rise(tau_s: np.ndarray, rise_s: float) -> np.ndarray:
    """Share of a level change a one-pole (time constant ``tau_s``, s) has still to go ``rise_s`` s
    after the change began: the mean of its responses to a step and to a linear ramp."""
    step = np.exp(-rise_s / tau_s)
    ramp = -(tau_s / rise_s) * np.expm1(-rise_s / tau_s)
    return (0.5 * (step + ramp)).astype(np.float32)


@lazy_njit
def _approach_rows(target, frames_db, before, keep_attack, keep_release):  # (n, K), (n, T), (K,), (n,), (n,)
    """Gain (dB) at each instant: from the state of frame ``before[k]`` (0 dB before the first
    frame) towards ``target``, keeping ``keep_attack`` of the difference where the gain falls
    (attack) and ``keep_release`` where it rises -> (n, K)."""
    n_rows, n_inst = target.shape
    out = np.empty_like(target)
    for i in range(n_rows):
        for k in range(n_inst):
            b = before[k]
            state = frames_db[i, b] if b >= 0 else np.float32(0.0)
            t = target[i, k]
            keep = keep_attack[i] if t < state else keep_release[i]
            out[i, k] = t + (state - t) * keep
    return out


@lazy_njit
def _master_level_at_instants(eq_groups, det, weight, gain):  # (s, p, C), (s, C, K), (s, p), (s, p, K) -> (p, K)
    """The master detector's level at each instant: the mean over channels of the mix's power,
    ``0.5 sum_s weight[s, p] gain[s, p, k]^2 sum_c eq_groups[s, p, c] det[s, c, k]`` (each stem's
    detector groups through the candidate's EQ, its fader/pan power and its compressor)."""
    n_stems, n_pop, n_groups = eq_groups.shape
    n_inst = det.shape[2]
    out = np.zeros((n_pop, n_inst), dtype=np.float32)
    level = np.empty(n_inst, dtype=np.float32)
    for s in range(n_stems):
        for p in range(n_pop):
            level[:] = 0.0
            for c in range(n_groups):  # the inner loops run along the instants (SIMD)
                e = eq_groups[s, p, c]
                for k in range(n_inst):
                    level[k] += e * det[s, c, k]
            w = weight[s, p] * np.float32(0.5)
            for k in range(n_inst):
                g = gain[s, p, k]
                out[p, k] += level[k] * w * g * g
    return out


def _refine_top_peaks(a: Analysis, peaks: np.ndarray, values: np.ndarray, hc: np.ndarray, g_peak: np.ndarray,
                      g_master_peak: np.ndarray) -> None:
    """Raise ``peaks`` (p, K) in place at each candidate's ``PEAK_REFINE_TOP`` largest instants to
    the waveform's extremum next to the instant, between samples included (a true-peak meter's
    oversampling, ITU-R BS.1770-4 Annex 2, finds those; a high-passed or treble-boosted mix peaks a
    sample or two away from where the raw stem did).

    Around an instant the mix is ``x(t + tau) = Re sum_n a_n exp(j w_n tau)`` over the peak basis's
    nodes; its first and second derivatives at ``tau = 0`` are the same sums weighted by ``j w_n``
    and ``-w_n^2``, and the parabola through them peaks at ``tau* = -x'/x''`` (kept within
    ``PEAK_REFINE_MAX_SAMPLES``: a wider reach overshoots, the parabola holds only near its
    sample). ``values`` (2, p, K) is the mix at the instants before the master compressor, ``hc``
    (p, s, 2, N) the complex gains of each stem's nodes,
    ``g_peak`` (s, p, K) and ``g_master_peak`` (p, K) the compressors' amplitude gains there.
    """
    n_pop, n_inst = peaks.shape
    m = min(PEAK_REFINE_TOP, n_inst)
    if m == 0:
        return
    if m < n_inst:
        top = np.argpartition(-peaks, m - 1, axis=1)[:, :m]  # (p, m)
    else:
        top = np.broadcast_to(np.arange(n_inst), (n_pop, n_inst))
    rows = np.arange(n_pop)[:, None]
    w = (2.0 * np.pi * PEAK_NODES_HZ / a.sr)  # (N,) rad per sample
    h = np.stack([hc * (1j * w), hc * -(w**2)], axis=3)  # (p, s, 2, 2, N): first and second derivative
    coef = np.concatenate([h.real, -h.imag], axis=-1).astype(np.float32)  # (p, s, 2, 2, 2N)
    d = _derivatives_at(np.ascontiguousarray(top), a.peak_values_by_instant, coef, g_peak)  # (p, 2, 2, m)
    x = values[:, rows, top]  # (2, p, m)
    d1, d2 = d[:, :, 0].transpose(1, 0, 2), d[:, :, 1].transpose(1, 0, 2)  # (2, p, m)
    safe = np.where(d2 != 0.0, d2, 1.0)
    tau = np.where(d2 * x < 0.0, -d1 / safe, 0.0)  # an extremum of the same sign as the sample
    tau = np.clip(tau, -PEAK_REFINE_MAX_SAMPLES, PEAK_REFINE_MAX_SAMPLES)
    before, after = a.peak_neighbours[0][top], a.peak_neighbours[1][top]  # (p, m)
    edge = (before >= 0) ^ (after >= 0)  # the end of a run of instants: the one beside it is refined
    inner = (before >= 0) & (after >= 0)  # its neighbours are samples too: refine within half a sample
    tau = np.where(inner[None], np.clip(tau, -0.5, 0.5), tau)
    refined = np.abs(x + tau * (d1 + 0.5 * tau * d2)).max(axis=0) * g_master_peak[rows, top]  # (p, m)
    refined = np.where(edge, peaks[rows, top], refined)
    peaks[rows, top] = np.maximum(peaks[rows, top], refined)


@lazy_njit(fastmath={"reassoc"})
def _derivatives_at(top, basis, coef, gain):  # (p, m), (K, s, 2, 2N), (p, s, 2, 2, 2N), (s, p, K) -> (p, 2, 2, m)
    """First and second derivative of the mix (per channel) at each candidate's instants ``top``:
    ``sum_s gain[s, p, k] sum_n coef[p, s, c, d, n] basis[k, s, c, n]``, read straight from the
    basis (no gathered copy). Each dot product has the basis's length, so its lanes (``reassoc``)
    are summed in the same order for a candidate in any batch."""
    n_pop, n_top = top.shape
    n_stems, n_ch, n_coef = basis.shape[1], basis.shape[2], basis.shape[3]
    out = np.zeros((n_pop, n_ch, 2, n_top), dtype=np.float32)
    for p in range(n_pop):
        for j in range(n_top):
            k = top[p, j]
            for s in range(n_stems):
                g = gain[s, p, k]
                for c in range(n_ch):
                    for d in range(2):
                        acc = np.float32(0.0)
                        for n in range(n_coef):
                            acc += coef[p, s, c, d, n] * basis[k, s, c, n]
                        out[p, c, d, j] += acc * g
    return out


@lazy_njit
def _frame_max(peaks, frame_of, n_frames):  # (p, K), (K,) -> (p, T)
    """Largest of each frame's instants per candidate (0 where a frame has none; an instant of
    frame -1 is in none)."""
    out = np.zeros((peaks.shape[0], n_frames))
    for i in range(peaks.shape[0]):
        for k in range(peaks.shape[1]):
            f = frame_of[k]
            if f >= 0 and peaks[i, k] > out[i, f]:
                out[i, f] = peaks[i, k]
    return out
