"""Fast tier: render a whole population at once in the band/frame domain of the Analysis.

Signal flow per candidate, as in the exact renderer (``engine.render``):
stem -> trim -> high-pass, low shelf, peak, high shelf -> compressor -> fader -> pan -> sum
-> master shelves -> master compressor -> loudness normalisation -> true-peak limiter.

How each block is modelled here (no Python loop over candidates):

* EQ: the cascade's power response ``|H(f)|^2`` on the fine grid, averaged within each band with the
  stem's own long-term spectrum as weights -> a (pop, stems, bands) power gain.
* Compressor: the same soft-knee gain computer and attack/release smoothing as the exact tier
  (``engine.dsp``), run at the 50 ms frame rate on each stem's RMS per frame; each frame gets the
  smoothed gain's mean over the frame (``step_mean``), not its value at the frame's end. The
  master's runs at twice the frame rate: its detector reads the mix's power in abutting 25 ms
  blocks (a 50 ms running mean), and each frame's gain is the blocks' gains weighted by their power.
* Mix: powers add (stems are treated as uncorrelated); the L/R cross power adds too.
* Loudness: BS.1770-4 gating on 400 ms blocks built from the frames, with the K-weighting applied
  per band; normalisation is exact in this domain.
* Limiter: the mix's peak is estimated at candidate instants (each stem's and the unity-gain
  sum's local maxima) from each stem's in-phase and quadrature band values there: the
  candidate's complex EQ response, gains, pan and compressor gain turn them into the mix's
  waveform at those instants (``Analysis.peak_values``), with the compressors' gains computed at
  each instant; the limiter's gain reduction is the excess over the ceiling, and the loudness it
  removes (modelled per frame) is made up by re-normalising, as the exact tier iterates.
* Masking tensors: per-stem band powers and their spread (the spreading is applied to the
  unprocessed stem and scaled by the band's EQ gain; exact when the EQ is flat across the spread).
* Reverb return (issue 22): each stem's power in the mix per band and frame (after its EQ,
  compressor, fader, pan and the master shelves) times its send's power gain, summed over the
  stems (the mean of the two channels: the send bus), smeared by each band's energy decay
  (``engine.dsp.reverb.reverb_band_power``, Schroeder's exponential decay with the FDN's onset, at
  the network's own RT60 per band, ``band_decay_s``) and its high-pass: the return's power per
  band and frame, the same in both channels (the FDN's outputs are decorrelated, so its L/R cross
  power is 0). It joins the mix's power before the master compressor, so the master, the loudness,
  the limiter and every objective see it; it masks the stems as part of the rest of the mix
  (``Features.return_power``). Its peaks are modelled as noise added to the dry estimate
  (:func:`_peaks_with_return`).

``experiments/fidelity.py`` measures how closely this ranks candidates like the exact tier.
Chains of elementwise steps over large arrays run as compiled loops (``evomix.core.compiled``), which
also release the GIL for the threads of ``evomix.search.parallel.score``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.core.constants import GATING_BLOCK_S, GATING_HOP_S, K_WEIGHTING_SR, POWER_FLOOR, SHORT_TERM_WINDOW_S
from evomix.core.features import Features, return_shares
from evomix.core.meter import gated_loudness, k_weighting_power, lra_from_short_term
from evomix.engine.analysis import MASTER_DETECTOR_SUBSTEPS, Analysis
from evomix.engine.bands import HOP_S
from evomix.engine.dsp.dynamics import compressor_static_rows, smooth_gain_db
from evomix.engine.dsp.filters import MAX_FREQ_FRACTION, cascade_response
from evomix.engine.dsp.limiter import LIMITER_RELEASE_MS
from evomix.engine.dsp.reverb import band_decay_s, return_highpass_power, reverb_band_power
from evomix.engine.dsp.unmask import cut_frame_db, key_band_level_db
from evomix.engine.gains import MixWeights, StemGains, gain_from_db, gained_stem_sum, mix_weights, stem_gains
from evomix.engine.peaks import PeakEstimate, estimate_peaks
from evomix.search.genome import (
    KNEE_DB,
    MASTER_COMP_ATTACK_MS,
    MASTER_COMP_RELEASE_MS,
    REVERB_SEED,
    REVERB_SEND_OFF_DB,
    Params,
)

BLOCK_FRAMES = round(GATING_BLOCK_S / HOP_S)  # 8: the 400 ms gating block in 50 ms analysis hops
BLOCK_STEP = round(GATING_HOP_S / HOP_S)  # 2: its 100 ms hop (75 % overlap)
SHORT_TERM_FRAMES = round(SHORT_TERM_WINDOW_S / HOP_S)  # 60: the 3 s short-term window (EBU Tech 3342)
LIMITER_TOLERANCE_LU = 0.05  # as the exact tier's LOUDNESS_TOLERANCE_LU
LIMITER_PASSES = 6  # normalise -> limit -> re-normalise passes (the exact tier iterates the same way)
# The reverb return's peaks (:func:`_peaks_with_return`): the return is noise-like (a diffuse field),
# so at a frame's dry peak it adds a draw of it, and the largest of the few samples around the peak
# is about two standard deviations; on its own a frame of it (2,205 samples at 44.1 kHz) peaks near
# the expected maximum of that many Gaussian samples, sqrt(2 ln 2205) = 3.9 standard deviations. A
# model: on 8 wet random mixes of the real-size song, 2 sigma ranked the limiter's reduction with
# Spearman 0.95 against the exact renders (1 sigma: 0.90, 3 sigma: 0.95 but 1 dB high on some).
RETURN_PEAK_ADD = 2.0
RETURN_PEAK_ALONE = 3.9


def frames_to_blocks(z: np.ndarray, block: int, step: int) -> np.ndarray:
    """Mean of ``block`` consecutive frames every ``step`` frames: (..., T) -> (..., blocks)."""
    n = z.shape[-1]
    if n < block:
        return z.mean(axis=-1, keepdims=True)
    rows = np.ascontiguousarray(z, dtype=np.float64).reshape(-1, n)
    return _block_means(rows, block, step).reshape(z.shape[:-1] + (-1,))


@lazy_njit
def _block_means(z, block, step):  # (n, T) -> (n, blocks)
    """Running sum of each row, differenced at the block edges (one pass, no Python loop; numpy's
    cumsum would hold the GIL)."""
    n_rows, n = z.shape
    n_blocks = (n - block) // step + 1
    out = np.empty((n_rows, n_blocks))
    c = np.empty(n + 1)
    for i in range(n_rows):
        c[0] = 0.0
        for t in range(n):
            c[t + 1] = c[t] + z[i, t]
        for j in range(n_blocks):
            out[i, j] = (c[j * step + block] - c[j * step]) / block
    return out


def limiter_frame_gain(frame_peak: np.ndarray, ceiling_lin: float, hop_s: float) -> np.ndarray:
    """Mean power gain per frame of the master's look-ahead limiter (``engine.dsp.limiter_gain``),
    from each frame's peak (linear, (..., T)): the depth ``u = 1 - ceiling / peak`` where the
    peak is over the ceiling, held and released with the limiter's one-pole release
    (``LIMITER_RELEASE_MS``) from frame to frame, averaged over the frame -> (..., T) in (0, 1]."""
    depth = np.maximum(1.0 - ceiling_lin / np.maximum(frame_peak, 1e-12), 0.0)  # (..., T)
    if not np.any(depth > 0.0):
        return np.ones_like(depth)
    tau_frames = LIMITER_RELEASE_MS / 1000.0 / hop_s
    # u_rel[t] = max_i<=t u[i] exp(-(t - i)/tau) = max(u[t], u_rel[t-1] exp(-1/tau)) (as the exact tier)
    rows = np.ascontiguousarray(depth, dtype=np.float64).reshape(-1, depth.shape[-1])
    released = _released(rows, np.exp(-1.0 / tau_frames)).reshape(depth.shape)
    mean_depth = released * tau_frames * (1.0 - np.exp(-1.0 / tau_frames))  # mean over the frame's decay
    return (1.0 - np.minimum(mean_depth, 1.0)) ** 2


@lazy_njit
def _released(depth, decay):  # (n, T), float -> (n, T)
    """Peak hold with exponential release: ``r[t] = max(u[t], r[t-1] * decay)``, ``r[-1] = 0``."""
    out = np.empty_like(depth)
    for i in range(depth.shape[0]):
        r = 0.0
        for t in range(depth.shape[1]):
            r = max(depth[i, t], r * decay)
            out[i, t] = r
    return out


def _master_detector_shape(block_power: np.ndarray) -> np.ndarray:
    """The master detector's level at the sub-steps relative to its frame mean, from the mix's power
    in R abutting blocks per frame (p, T, R) -> (p, T, R), mean 1 per frame.

    The 50 ms rectangular detector (``peaks.DETECTOR_WINDOW_S``, one hop) centred on a block spans R
    blocks: for even R the block, (R - 2)/2 blocks on each side and half of the next ones
    (weights ``[1/2, 1, ..., 1, 1/2] / R``), for odd R the block and (R - 1)/2 on each side. The
    song's ends repeat their first and last blocks.
    """
    n_pop, n_frames, R = block_power.shape
    kernel = np.ones(R + 1 if R % 2 == 0 else R)
    if R % 2 == 0:
        kernel[[0, -1]] = 0.5
    level = _running_mean(np.ascontiguousarray(block_power, dtype=np.float64).reshape(n_pop, -1), kernel / R)
    level = level.reshape(n_pop, n_frames, R)
    return level / np.maximum(level.mean(axis=-1, keepdims=True), POWER_FLOOR)


@lazy_njit
def _running_mean(x, kernel):  # (n, L), (W,) odd W -> (n, L)
    """``sum_i kernel[i] x[t + i - W//2]`` along each row, the ends repeated."""
    n_rows, n = x.shape
    half = kernel.size // 2
    out = np.zeros_like(x)
    for r in range(n_rows):
        for t in range(n):
            acc = 0.0
            for i in range(kernel.size):
                j = min(max(t + i - half, 0), n - 1)
                acc += kernel[i] * x[r, j]
            out[r, t] = acc
    return out


@lazy_njit
def _gain_weighted_stem_sum(sub, gain):  # (s, p, T, R), (s, p, T) -> (p, T, R)
    """``sum_s sub[s, p, t, r] * gain[s, p, t]``: each stem's power in the sub-step blocks through
    its compressor's frame gain, summed over the stems (the mix's power per block)."""
    n_stems, n_pop, n_frames, n_sub = sub.shape
    out = np.zeros((n_pop, n_frames, n_sub), dtype=np.float32)
    for s in range(n_stems):
        for p in range(n_pop):
            for t in range(n_frames):
                g = gain[s, p, t]
                for r in range(n_sub):
                    out[p, t, r] += sub[s, p, t, r] * g
    return out


@lazy_njit
def _stem_tensors(weight, gain, power, spread):  # (p, s, 2, B), (p, s, T'), (s, 2, B, T') x 2
    """Each stem's power and spread power in the mix per cell, ``weight[p, s, c, b] gain[p, s, t]``
    times the stem's own (``power``, ``spread``), and the mix's power (their sum over stems), in one
    pass -> (p, s, 2, B, T'), (p, s, 2, B, T'), (p, 2, B, T')."""
    n_pop, n_stems, n_ch, n_bands = weight.shape
    n_t = gain.shape[2]
    stem_power = np.empty((n_pop, n_stems, n_ch, n_bands, n_t), dtype=np.float32)
    stem_spread = np.empty((n_pop, n_stems, n_ch, n_bands, n_t), dtype=np.float32)
    mix_power = np.zeros((n_pop, n_ch, n_bands, n_t), dtype=np.float32)
    for p in range(n_pop):
        for s in range(n_stems):
            for c in range(n_ch):
                for b in range(n_bands):
                    w = weight[p, s, c, b]
                    for t in range(n_t):
                        wg = w * gain[p, s, t]
                        y = wg * power[s, c, b, t]
                        stem_power[p, s, c, b, t] = y
                        stem_spread[p, s, c, b, t] = wg * spread[s, c, b, t]
                        mix_power[p, c, b, t] += y
    return stem_power, stem_spread, mix_power


@lazy_njit
def _send_power(weight, gain, power):  # (p, s, 2, B), (p, s, T), (s, 2, B, T) -> (p, B, T) float32
    """``sum_s gain[p, s, t] sum_c weight[p, s, c, b] power[s, c, b, t]``: the send bus's power per band
    and frame (``weight`` holds each stem's send, mix weight and the mean over the channels; a stem
    whose send is off weighs 0 and is skipped). One pass over each row of frames, both channels at once."""
    n_pop, n_stems, n_ch, n_bands = weight.shape
    n_t = gain.shape[2]
    out = np.zeros((n_pop, n_bands, n_t), dtype=np.float32)
    for p in range(n_pop):
        for s in range(n_stems):
            g = gain[p, s]
            for b in range(n_bands):
                w0 = weight[p, s, 0, b]
                w1 = weight[p, s, n_ch - 1, b]
                if w0 == 0.0 and w1 == 0.0:
                    continue
                x0 = power[s, 0, b]
                x1 = power[s, n_ch - 1, b]
                o = out[p, b]
                for t in range(n_t):
                    o[t] += g[t] * (w0 * x0[t] + w1 * x1[t])
    return out


@dataclass(frozen=True)
class ReturnBus:
    """The reverb return in the fast tier, before the master's time-varying gains.

    Attributes
    ----------
    power : (pop, B, T) float32, the return's power per channel, band and frame (mean square per hop;
        both channels alike), after its high-pass; 0 for a candidate with every send off.
    frames : (pop, T) float64, its power per frame, channels and bands summed.
    k_frames : (pop, T) float64, the same K-weighted (BS.1770-4 at the band centres).
    send_power : (pop, stems) float64, each stem's send as a power gain (0 when off).
    """

    power: np.ndarray
    frames: np.ndarray
    k_frames: np.ndarray
    send_power: np.ndarray


@dataclass(frozen=True)
class Compression:
    """A compressor's frame-rate gain: ``gain_db`` (..., T) dB <= 0 and the same as a linear power
    gain ``power_gain`` (..., T) in (0, 1]; ``...`` is (pop, stems) for the stems, (pop,) for the master."""

    gain_db: np.ndarray
    power_gain: np.ndarray


@dataclass(frozen=True)
class MasterBus:
    """The master compressor's gain and what the loudness stage needs from before it.

    Attributes
    ----------
    compression : Compression, (pop, T).
    k_power_pre : (pop, T) the mix's K-weighted power per frame, channels summed, before the master
        compressor (mean square per hop; BS.1770-4 eq. 1 per frame).
    """

    compression: Compression
    k_power_pre: np.ndarray


@dataclass(frozen=True)
class Levels:
    """Loudness normalisation and limiting of each candidate's master.

    Attributes
    ----------
    raw_lufs : (pop,) LUFS, integrated loudness after the master compressor, before normalisation.
    loudness_lufs : (pop,) LUFS, after normalisation (the target; ``raw_lufs`` for silence).
    norm_power : (pop,) linear power gain of the normalisation.
    limiter_power : (pop, T) linear power gain of the limiter per frame (1 where it is idle).
    lra_lu : (pop,) LU, loudness range of the limited master (EBU Tech 3342).
    true_peak_dbtp : (pop,) dBTP, true peak after the limiter (at most the ceiling).
    limiter_gr_db : (pop,) dB >= 0, by how much the normalised pre-limiter peak exceeds the ceiling.
    """

    raw_lufs: np.ndarray
    loudness_lufs: np.ndarray
    norm_power: np.ndarray
    limiter_power: np.ndarray
    lra_lu: np.ndarray
    true_peak_dbtp: np.ndarray
    limiter_gr_db: np.ndarray


@dataclass(frozen=True)
class HeavyTensors:
    """The per-stem band tensors on the heavy frames T' (``Analysis.heavy_frames``), float32.

    stem_power, stem_spread : (pop, stems, 2, B, T'); mix_power : (pop, 2, B, T');
    mix_cross : (pop, B, T') Re(L R*); stem_block_k (pop, stems, T') and mix_block_k (pop, T'),
    float64: K-weighted power over the 400 ms block around each heavy frame (as in
    :class:`~evomix.core.features.Features`); return_power (pop, 2, B, T') float32 or None, the
    reverb return's power in the mix; return_block_k (pop, T') float64 or None, its K-weighted blocks.
    """

    stem_power: np.ndarray
    stem_spread: np.ndarray
    mix_power: np.ndarray
    mix_cross: np.ndarray
    stem_block_k: np.ndarray
    mix_block_k: np.ndarray
    return_power: np.ndarray | None = None
    return_block_k: np.ndarray | None = None


def render_features(analysis: Analysis, params: Params, *, target_lufs: float, ceiling_dbtp: float) -> Features:
    """Render a population (pop, ...) in the fast tier and return its :class:`Features`.

    The stages, in signal order (each documents its shapes and units): static gains and mix
    weights (``engine.gains``), stem compressors, master compressor, true-peak estimate
    (``engine.peaks``), loudness normalisation and limiting, the per-stem band tensors.

    Past ``engine.segments.SEGMENT_BOUND_S`` every stage works on the song's weighted representative
    segments (``Analysis.fast``: the frame axis T is theirs, warm-ups included); the loudness gate
    and the loudness range weigh each block by the song frames it stands for, and ``Features.frames``
    names the song frames the band tensors were drawn from.
    """
    a = analysis.fast  # every frame, or the song's representative segments (engine.segments)
    gains = stem_gains(a, params)
    cut = unmask_cut(a, params)  # None: no dynamic cut in any candidate (nothing below changes)
    mix = mix_weights(gains)
    stems = _stem_compressors(a, params, gains, cut)
    pair_w = _pair_weights(a, gains, mix)
    ret = _reverb_return(a, params, mix, stems, cut)
    master = _master_compressor(a, params, mix, stems, pair_w, ret, cut)
    peaks = estimate_peaks(a, params, gains, mix, stems.gain_db, master.compression.gain_db)
    if ret is not None:
        peaks = _peaks_with_return(peaks, ret, master.compression.power_gain)
    levels = _normalise_and_limit(a, master, peaks, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)
    heavy = _heavy_tensors(a, gains, mix, stems, master, levels, pair_w, ret, cut)
    return Features(
        bands_hz=a.grid.centres_hz,
        band_edges_hz=a.grid.edges_hz,
        band_bark=a.band_bark,
        spread=a.grid.spread,
        roles=a.roles,
        stem_power=heavy.stem_power,
        stem_spread=heavy.stem_spread,
        mix_power=heavy.mix_power,
        mix_cross=heavy.mix_cross,
        loudness_lufs=levels.loudness_lufs,
        raw_loudness_lufs=levels.raw_lufs,
        lra_lu=levels.lra_lu,
        true_peak_dbtp=levels.true_peak_dbtp,
        limiter_gr_db=levels.limiter_gr_db,
        frames=a.song_frames,
        stem_block_k=heavy.stem_block_k,
        mix_block_k=heavy.mix_block_k,
        return_power=heavy.return_power,
        return_share=None if ret is None else return_shares(heavy.stem_power, ret.send_power),
        return_block_k=heavy.return_block_k,
    )


def _stem_compressors(a: Analysis, params: Params, g: StemGains, cut: CutBus | None = None) -> Compression:
    """Each stem's compressor per frame, (pop, stems, T).

    The detector is the stereo-linked mean square before the pan (``Analysis.detector_power``)
    through the stem's EQ and trim; the gain computer and the attack/release smoothing are the
    exact tier's (``engine.dsp.dynamics``), each frame getting the smoothed gain's mean over it.
    """
    n_stems = params.gain_db.shape[1]
    eq, trim_pow = g.eq_pow, g.trim_pow
    lev = np.matmul(eq.transpose(1, 0, 2).astype(np.float32), a.detector_power)  # (s, p, B) @ (s, B, T) -> (s, p, T)
    lev = lev.transpose(1, 0, 2) * trim_pow[:, :, None]  # (p, s, T)
    if cut is not None:  # the dynamic cut sits before the EQ: the detector hears it
        lev = _cut_detector(a, cut, g, lev)
    with np.errstate(divide="ignore"):
        lev_db = 10.0 * np.log10(np.maximum(lev, POWER_FLOOR))
    gr = compressor_static_rows(lev_db.reshape(-1, lev_db.shape[-1]), params.comp_threshold_db.ravel(),
                                params.comp_ratio.ravel(),
                                np.full(lev_db.shape[0] * n_stems, KNEE_DB)).reshape(lev_db.shape)  # (p, s, T) dB
    gr = smooth_gain_db(gr, params.comp_attack_ms, params.comp_release_ms, a.grid.hop_s, step_mean=True)  # (p, s, T) dB
    g_comp = gain_from_db(gr, power=True)  # (p, s, T) power
    return Compression(gain_db=gr, power_gain=g_comp)


def _reverb_return(a: Analysis, params: Params, mix: MixWeights, stems: Compression,
                   cut: CutBus | None = None) -> ReturnBus | None:
    """The reverb return per band and frame (:class:`ReturnBus`), or None when no candidate sends.

    The send bus: each stem's power in the mix per channel, band and frame (``mix.band_pow``: trim,
    fader, pan, its EQ and the master shelves, which the exact tier's strips carry before the send;
    then its compressor's frame gain) times the send's power gain ``10^(send_db / 10)`` (0 when off)
    and the network's measured gain on that stem (``Analysis.return_gain``),
    summed over the stems, the mean of the two channels (the FDN takes the stereo send's energy
    once, ``engine.dsp.reverb``). The return: that power smeared per band by the network's RT60 there
    (``band_decay_s`` with the exact tier's delay lines, seed ``REVERB_SEED``), delayed by the
    pre-delay (``reverb_band_power``), times the return high-pass's power response per band.
    """
    send_db = np.asarray(params.reverb_send_db, dtype=float)  # (p, s) dB
    on = send_db > REVERB_SEND_OFF_DB
    if not on.any():
        return None
    send_pow = np.where(on, 10.0 ** (send_db / 10.0), 0.0)  # (p, s) power
    weight = 0.5 * send_pow[:, :, None, None] * mix.band_pow  # (p, s, 2, B)
    if a.return_gain is not None:  # the network's gain on each stem's own spectrum (Analysis.reverb_return_gain)
        weight = weight * a.return_gain[None, :, None, :]
    weight = weight.astype(np.float32)
    send = _send_power(weight, np.ascontiguousarray(stems.power_gain, dtype=np.float32), a.band_power)  # (p, B, T)
    if cut is not None:  # the cut stems send their cut signal
        cs = cut.stems
        part = np.ascontiguousarray(send[:, cut.bands])  # (p, J, T)
        _cut_send(np.ascontiguousarray(weight[:, cs][..., cut.bands]),
                  np.ascontiguousarray(stems.power_gain[:, cs], dtype=np.float32),
                  np.ascontiguousarray(a.band_power[cs][:, :, cut.bands]), cut.minus_one, part)
        send[:, cut.bands] = part
    sr, hop_s = a.sr, a.grid.hop_s
    decay = band_decay_s(a.grid.centres_hz, np.asarray(params.reverb_decay_s, dtype=float),
                         np.asarray(params.reverb_damping, dtype=float), sr, seed=REVERB_SEED)  # (p, B) s
    predelay = np.asarray(params.reverb_predelay_ms, dtype=float)[:, None] / 1000.0 / hop_s  # (p, 1) frames
    hp = return_highpass_power(a.grid, np.asarray(params.reverb_highpass_hz, dtype=float), sr)  # (p, B)
    power = reverb_band_power(send, decay, predelay, hop_s)  # (p, B, T) float32
    power *= hp[:, :, None].astype(np.float32)
    weights = np.stack([np.full(power.shape[1], 2.0), 2.0 * _band_k_weights(a)]).astype(np.float32)  # (2, B)
    both = np.matmul(weights, power).astype(np.float64)  # (2, B) @ (p, B, T) -> (p, 2, T)
    frames, k_frames = both[:, 0], both[:, 1]  # (p, T) plain and K-weighted
    return ReturnBus(power=power, frames=frames, k_frames=k_frames, send_power=send_pow)


def _peaks_with_return(peaks: PeakEstimate, ret: ReturnBus, g_master: np.ndarray) -> PeakEstimate:
    """The dry peak estimate with the reverb return added, per frame (before normalisation).

    The return is modelled as Gaussian noise of the frame's RMS per channel ``sigma`` (through the
    master compressor's frame gain ``g_master``, power, (pop, T)): a dry peak ``v`` becomes
    ``max(v + RETURN_PEAK_ADD sigma, RETURN_PEAK_ALONE sigma)``. A model, not a measurement of the
    waveform: experiments/fidelity.py measures how well it ranks limiter reduction and loudness.
    """
    sigma = np.sqrt(0.5 * ret.frames * g_master)  # (p, T) linear RMS per channel
    frame_peak = np.maximum(peaks.frame_peak + RETURN_PEAK_ADD * sigma, RETURN_PEAK_ALONE * sigma)  # (p, T)
    dry_max = np.maximum(peaks.frame_peak.max(axis=1), 1e-12)  # (p,)
    with np.errstate(divide="ignore"):
        rise_db = 20.0 * np.log10(np.maximum(frame_peak.max(axis=1), 1e-12) / dry_max)  # (p,) dB >= 0
    return PeakEstimate(frame_peak=frame_peak, peak_db=peaks.peak_db + rise_db)


def _pair_weights(a: Analysis, g: StemGains, mix: MixWeights) -> tuple[np.ndarray, np.ndarray] | None:
    """Each correlated pair's weight in the mix's power (``engine.coherence``), (pop, P, 2, B):
    ``2 sqrt(w_s w_s') cos(phi_s - phi_s')``, the two stems' power weights (trim, fader, pan, EQs)
    and the phase difference of their EQs at each band's centre (a high-pass on one of two
    doubled stems turns their sum partly out of phase), and ``cos(phi_s - phi_s')`` (pop, P, B).
    None without pairs."""
    if not a.pairs.size:
        return None
    s_idx, r_idx = a.pairs[:, 0], a.pairs[:, 1]
    h = cascade_response(g.stem_sos, a.grid.centres_hz, a.sr)  # (p, s, B) complex
    hs, hr = h[:, s_idx], h[:, r_idx]
    cos_phi = (hs * np.conj(hr)).real / np.maximum(np.abs(hs) * np.abs(hr), 1e-30)  # (p, P, B)
    w_mix = mix.band_pow
    return 2.0 * np.sqrt(w_mix[:, s_idx] * w_mix[:, r_idx]) * cos_phi[:, :, None, :], cos_phi  # (p, P, 2, B), (p, P, B)


def _master_compressor(a: Analysis, params: Params, mix: MixWeights, stems: Compression,
                       pair_w: np.ndarray | None = None, ret: ReturnBus | None = None,
                       cut: CutBus | None = None) -> MasterBus:
    """The master compressor per frame, (pop, T), read R = MASTER_DETECTOR_SUBSTEPS times per frame.

    The frame's level is the mix's band power (stems add in power); where that power lies within
    the frame comes from each stem's power in R abutting blocks (``Analysis.sub_power``) through
    the candidate's EQ, gains, pan and stem compressors. The detector (50 ms, R blocks wide) reads
    their running mean; each frame then gets its sub-steps' gains weighted by the blocks' power:
    the gain dips where the power peaks, so a frame loses more loudness than its mean gain says
    (one gain per frame, or sub-steps weighted by the detector's own level, miss more of the exact
    tier's loss). The level comes from the frame's band power, not from the sub-step blocks alone,
    which read it too low on a song with correlated stems. The reverb return (``ret``) adds its
    power to each frame and, smooth within a frame, the same to each of its blocks.
    """
    n_pop, n_stems = params.gain_db.shape
    hop_s = a.grid.hop_s
    P = a.band_power  # (s, 2, B, T)
    w_mix, mix_w, eq_mix, g_comp = mix.band_pow, mix.linked_pow, mix.eq_pow, stems.power_gain
    R = MASTER_DETECTOR_SUBSTEPS
    g_comp32 = g_comp.transpose(1, 0, 2).astype(np.float32)  # (s, p, T)
    sub = np.matmul(eq_mix * mix_w, a.sub_power).reshape(n_stems, n_pop, -1, R)  # (s, p, T, R)
    # the mix's power per frame, plain and K-weighted (for the loudness below), in one product
    w_both = np.concatenate([w_mix, w_mix * a.k_band[None, :, None, :]]).reshape(2 * n_pop, n_stems, -1)  # (2p, s, 2B)
    # (s, 2p, 2B) @ (s, 2B, T) -> (s, 2p, T)
    both = np.matmul(w_both.transpose(1, 0, 2).astype(np.float32), P.reshape(n_stems, w_both.shape[-1], -1))
    if cut is not None:  # the cut stems' frame powers and sub-steps
        both, sub = _cut_master(a, cut, mix, both, sub)
    block_power = _gain_weighted_stem_sum(sub, g_comp32).astype(float)  # (p, T, R) the mix's power per block
    if ret is not None:
        block_power += ret.frames[:, :, None]
    shape = _master_detector_shape(block_power)  # (p, T, R) the detector's level, mean 1 per frame
    both = gained_stem_sum(both.reshape(n_stems, 2, n_pop, -1), g_comp32).astype(float)  # (2, p, T)
    if pair_w is not None:  # correlated stems add in amplitude: their cross terms (engine.coherence)
        both = np.maximum(both + _pair_terms(a, pair_w[0], g_comp32), 0.0)
    mix_frames, k_frames_pre = both[0], both[1]  # (p, T) channel-summed power, before the master compressor
    if ret is not None:
        mix_frames, k_frames_pre = mix_frames + ret.frames, k_frames_pre + ret.k_frames
    mlev_sub = (mix_frames / 2.0)[:, :, None] * shape  # (p, T, R) detector level (mean over channels)
    with np.errstate(divide="ignore"):
        mlev_db = 10.0 * np.log10(np.maximum(mlev_sub.reshape(n_pop, -1), POWER_FLOOR))
    mgr_sub = compressor_static_rows(mlev_db, params.master_comp_threshold_db, params.master_comp_ratio,
                                     np.full(n_pop, KNEE_DB))  # (p, T R) dB
    mgr_sub = smooth_gain_db(mgr_sub, np.full(n_pop, MASTER_COMP_ATTACK_MS), np.full(n_pop, MASTER_COMP_RELEASE_MS),
                             hop_s / R, step_mean=True)  # (p, T R) dB
    g_sub = gain_from_db(mgr_sub.reshape(n_pop, -1, R), power=True)  # (p, T, R) power gain
    g_master = (g_sub * block_power).sum(axis=-1) / np.maximum(block_power.sum(axis=-1), POWER_FLOOR)  # (p, T)
    with np.errstate(divide="ignore"):  # a silent frame (no block power) has g_master 0: -inf dB, weighs nothing
        mgr = 10.0 * np.log10(g_master)  # (p, T) dB
    return MasterBus(compression=Compression(gain_db=mgr, power_gain=g_master), k_power_pre=k_frames_pre)


def _pair_terms(a: Analysis, wp: np.ndarray, g_comp32: np.ndarray) -> np.ndarray:
    """The correlated pairs' cross terms of the mix's power per frame, plain and K-weighted,
    channels and bands summed: (2, pop, T). The pair weights ``wp`` (:func:`_pair_weights`) times
    ``rho sqrt(P_s P_s')`` per band and channel (``Analysis.pair_cross``), times ``sqrt(g_s g_s')``
    of the two stem compressors."""
    n_pop = wp.shape[0]
    s_idx, r_idx = a.pairs[:, 0], a.pairs[:, 1]
    n_pairs = s_idx.size
    kp = np.sqrt(a.k_band[s_idx] * a.k_band[r_idx])[None, :, None, :]  # (1, P, 1, B) K-weighting
    wq = np.concatenate([wp, wp * kp]).reshape(2 * n_pop, n_pairs, -1)  # (2p, P, 2B)
    pc = a.pair_cross.reshape(n_pairs, wq.shape[-1], -1)  # (P, 2B, T)
    cross = np.matmul(wq.transpose(1, 0, 2).astype(np.float32), pc)  # (P, 2p, T)
    g_pair = np.sqrt(g_comp32[s_idx] * g_comp32[r_idx])  # (P, p, T)
    return gained_stem_sum(cross.reshape(n_pairs, 2, n_pop, -1), g_pair).astype(float)  # (2, p, T)


def _normalise_and_limit(a: Analysis, master: MasterBus, peaks: PeakEstimate, *, target_lufs: float,
                         ceiling_dbtp: float) -> Levels:
    """Loudness (BS.1770-4 on K-weighted band powers), normalisation to ``target_lufs`` (LUFS) and
    limiting to ``ceiling_dbtp`` (dBTP), iterated as in the exact tier: the limiter lowers the
    loudness, the normalisation makes it up. Returns :class:`Levels` (pop, ...)."""
    hop_s = a.grid.hop_s
    g_master, k_frames_pre = master.compression.power_gain, master.k_power_pre
    frame_peak, peak_db = peaks.frame_peak, peaks.peak_db
    n_pop = g_master.shape[0]
    plan = a.segments if a.segment_domain else None  # None: every frame, weight 1
    block_w = None if plan is None else plan.block_weights(BLOCK_FRAMES, BLOCK_STEP)  # (blocks,)
    k_frames = k_frames_pre * g_master  # (p, T)
    raw_lufs = np.asarray(gated_loudness(frames_to_blocks(k_frames, BLOCK_FRAMES, BLOCK_STEP)[:, None, :],
                                         block_weights=block_w), dtype=float)
    audible = raw_lufs > -150.0
    norm_db = np.where(audible, target_lufs - raw_lufs, 0.0)  # (p,)
    ceiling_lin = 10.0 ** (ceiling_dbtp / 20.0)
    g_lim = np.ones_like(k_frames)
    prev_err, prev_norm = np.zeros(n_pop), np.zeros(n_pop)
    # only candidates whose normalised peak reaches the ceiling are limited (the others keep a gain
    # of exactly 1 and their loudness); each pass works on the ones still off target
    active = np.flatnonzero(frame_peak.max(axis=1) * 10.0 ** (norm_db / 20.0) > ceiling_lin)
    for n_pass in range(LIMITER_PASSES):
        if active.size == 0:
            break
        norm_a = norm_db[active]
        g_lim[active] = g_a = limiter_frame_gain(frame_peak[active] * 10.0 ** (norm_a / 20.0)[:, None], ceiling_lin,
                                                 hop_s)
        z = frames_to_blocks(k_frames[active] * g_a, BLOCK_FRAMES, BLOCK_STEP)  # (active, blocks)
        lufs = np.asarray(gated_loudness(z[:, None, :], block_weights=block_w), dtype=float)
        err = np.where(audible[active], target_lufs - (lufs + norm_a), 0.0)
        # a converged candidate stays put: the same result alone or in any batch
        moving = np.abs(err) > LIMITER_TOLERANCE_LU
        slope = np.ones_like(err)  # secant steps as in the exact tier: limiting flattens the slope
        if n_pass:
            step = norm_a - prev_norm[active]
            ok = np.abs(step) > 1e-6
            slope[ok] = np.clip((prev_err[active][ok] - err[ok]) / step[ok], 0.1, 1.0)
        prev_err[active], prev_norm[active] = err, norm_a
        norm_db[active] = norm_a + np.where(moving, err / slope, 0.0)
        active = active[moving]
    g_norm = 10.0 ** (norm_db / 10.0)  # (p,) power
    short = frames_to_blocks(k_frames * g_lim, SHORT_TERM_FRAMES, BLOCK_STEP)  # (p, windows)
    short_w = None if plan is None else plan.block_weights(SHORT_TERM_FRAMES, BLOCK_STEP)  # (windows,)
    lra = np.asarray(lra_from_short_term(short[:, None, :], window_weights=short_w), dtype=float)
    tp_db = peak_db + norm_db  # pre-limiter true peak of the normalised master, dBTP
    limiter_gr = np.maximum(tp_db - ceiling_dbtp, 0.0)
    true_peak = np.minimum(tp_db, ceiling_dbtp)
    loudness = np.where(audible, target_lufs, raw_lufs)
    return Levels(raw_lufs=raw_lufs, loudness_lufs=loudness, norm_power=g_norm, limiter_power=g_lim, lra_lu=lra,
                  true_peak_dbtp=true_peak, limiter_gr_db=limiter_gr)


def _band_k_weights(a: Analysis) -> np.ndarray:
    """(B,) K-weighting power at the band centres (BS.1770-4, at ``K_WEIGHTING_SR``), as the objectives weight them."""
    return k_weighting_power(a.grid.centres_hz, K_WEIGHTING_SR).astype(np.float64)


def _heavy_tensors(a: Analysis, g: StemGains, mix: MixWeights, stems: Compression, master: MasterBus,
                   levels: Levels, pair_w: np.ndarray | None = None, ret: ReturnBus | None = None,
                   cut: CutBus | None = None) -> HeavyTensors:
    """Each stem's power and spread power in the mix, the mix's power and its L/R cross power on
    the heavy frames, after every gain of the chain: :class:`HeavyTensors` (pop, ..., T'). The
    reverb return (``ret``) adds to the mix's power (not to its cross power: its channels are
    decorrelated) and to the mix's K-weighted blocks."""
    trim_pow, fader_pow, rel_pan, eq, meq = g.trim_pow, g.fader_pow, g.rel_pan_amp, g.eq_pow, g.master_eq_pow
    w_mix, g_comp, g_master = mix.band_pow, stems.power_gain, master.compression.power_gain
    g_lim, g_norm = levels.limiter_power, levels.norm_power
    h = a.heavy_frames
    # (p, s, T'): every time-varying gain of the chain after the static ones
    g_time = (g_comp[:, :, h] * (g_master[:, h] * g_lim[:, h] * g_norm[:, None])[:, None, :]).astype(np.float32)
    stem_power, stem_spread, mix_power = _stem_tensors(w_mix.astype(np.float32), g_time, a.heavy_power, a.spread_power)
    cut_change = None if cut is None else _cut_heavy(a, cut, g, w_mix, g_time, stem_power, stem_spread, mix_power)
    if pair_w is not None:  # correlated stems' cross terms (engine.coherence), on the heavy frames
        s_idx, r_idx = a.pairs[:, 0], a.pairs[:, 1]
        wp, cos_phi = pair_w[0].astype(np.float32), pair_w[1]  # (p, P, 2, B), (p, P, B)
        g_pair = np.sqrt(g_time[:, s_idx] * g_time[:, r_idx])  # (p, P, T')
        pc = np.ascontiguousarray(a.pair_cross[..., h])  # (P, 2, B, T')
        mix_power = np.maximum(mix_power + np.einsum("pqcb,qcbt,pqt->pcbt", wp, pc, g_pair), 0.0)
        # and their L/R cross power: stem s's left with stem s''s right and the other way round
        amp = np.sqrt(trim_pow * fader_pow)[:, :, None] * np.sqrt(eq * meq)  # (p, s, B) amplitude gain
        lr = (rel_pan[:, s_idx, 0] * rel_pan[:, r_idx, 1] + rel_pan[:, r_idx, 0] * rel_pan[:, s_idx, 1])  # (p, P)
        w_lr = (amp[:, s_idx] * amp[:, r_idx] * lr[:, :, None] * cos_phi).astype(np.float32)  # (p, P, B)
        pair_mean = 0.5 * (pc[:, 0] + pc[:, 1])  # (P, B, T') centre-panned: the same content on both sides
        extra_cross = np.einsum("pqb,qbt,pqt->pbt", w_lr, pair_mean, g_pair)
    # (p, s, B): each stem's weight in the mix's L/R cross power
    cross_w = (trim_pow * fader_pow)[:, :, None] * (rel_pan[..., 0] * rel_pan[..., 1])[:, :, None] * eq * meq
    mix_cross = np.einsum("psb,pst,sbt->pbt", cross_w.astype(np.float32), g_time, a.heavy_cross)
    if pair_w is not None:
        mix_cross = mix_cross + extra_cross
    if cut_change is not None:  # the cut stems' L/R cross power changes with their band power
        cs = cut.stems  # (mix_cross is this function's own array: changed in place)
        mix_cross[:, cut.bands] += np.einsum("pkb,pkt,kbt,pkbt->pbt", cross_w[:, cs][..., cut.bands].astype(np.float32),
                                             g_time[:, cs], a.heavy_cross[cs][:, cut.bands], cut_change)
    # each stem's K-weighted power over the 400 ms block around each heavy frame (the blocks its level
    # is gated on), through the same gains; the mix's block the stems' sum (correlated pairs aside)
    wk = (w_mix * _band_k_weights(a)[None, None, None, :]).reshape(w_mix.shape[0], w_mix.shape[1], -1)  # (p, s, 2B)
    bf = a.heavy_block_frames  # (T', W)
    blocks = a.heavy_block_power.reshape(a.n_stems, -1, bf.size)  # (s, 2B, T' W)
    g_block = g_comp[:, :, bf] * (g_master[:, bf] * g_lim[:, bf] * g_norm[:, None, None])[:, None]  # (p, s, T', W)
    k_frames = np.matmul(wk.transpose(1, 0, 2).astype(np.float32), blocks).transpose(1, 0, 2)  # (p, s, T' W)
    if cut is not None:  # the cut stems' K-weighted power in those blocks
        cs = cut.stems
        wkc = wk[:, cs].reshape(wk.shape[0], cs.size, 1, 2, -1)  # (p, k, 1, 2, B)
        d = cut.deltas(wkc, a.heavy_block_power.reshape(a.n_stems, 2, a.grid.n_bands, -1), bf.ravel())
        k_frames[:, cs] = np.maximum(k_frames[:, cs] + d[:, :, 0], 0.0)  # (p, k, T' W)
    stem_block_k = (k_frames.reshape(g_block.shape) * g_block).mean(axis=-1, dtype=np.float64)  # (p, s, T')
    mix_block_k = stem_block_k.sum(axis=1)  # (p, T')
    return_power = return_block_k = None
    if ret is not None:
        g_after = g_master * g_lim * g_norm[:, None]  # (p, T) the master's gains after the return joins
        return_power = (ret.power[:, :, h] * g_after[:, None, h].astype(np.float32))[:, None]  # (p, 1, B, T')
        return_power = np.ascontiguousarray(np.broadcast_to(return_power, mix_power.shape))  # (p, 2, B, T')
        mix_power = mix_power + return_power
        return_block_k = (ret.k_frames[:, bf] * g_after[:, bf]).mean(axis=-1)  # (p, T')
        mix_block_k = mix_block_k + return_block_k
    return HeavyTensors(stem_power=stem_power, stem_spread=stem_spread, mix_power=mix_power,
                        mix_cross=mix_cross.astype(np.float32), stem_block_k=stem_block_k,
                        mix_block_k=mix_block_k, return_power=return_power, return_block_k=return_block_k)


# --------------------------------------------------------------------------------------------------
# dynamic unmasking (issue 22, item 2): the keyed stems' cut, frame by frame and band by band
# --------------------------------------------------------------------------------------------------
#: Bands where the cut's full-depth response is under this fraction of its depth (in dB) in every
#: candidate are left uncut in the fast tier (0.001: under 0.012 dB at a 12 dB cut), so the cuts touch
#: only the bands around their frequencies.
CUT_BAND_FLOOR = 1e-3


@dataclass(frozen=True)
class CutBus:
    """The dynamic cuts of a population in the fast tier (``engine.dsp.unmask``, the one activity law).

    The cut's power gain on stem ``stems[k]`` of candidate ``p`` in band ``band0 + j`` and frame ``t``
    is ``1 + minus_one[p, k, j, t]`` (``exp(per_neper frame_db)`` of ``unmask.cut_frame_db``, float32);
    it is 1 outside the bands ``[band0, band0 + J)`` (``CUT_BAND_FLOOR``). The cut sits after the stem's
    trim, before its EQ (as in the exact tier), so it multiplies the stem's band power wherever that
    enters: its compressor's detector, the mix's power per frame (master compressor, loudness, the
    limiter's loudness), the reverb send, and the heavy frames' tensors (masking, balance, genre). Not
    modelled: its effect on the stem's waveform at the peak instants (``engine.peaks``; the compressor
    gains there do include it) and on the correlated pairs' cross terms (``engine.coherence``).

    Attributes
    ----------
    stems : (k,) int, the stems some candidate cuts.  band0 : int, the first band any cut reaches.
    minus_one : (pop, k, J, T) float32 in (-1, 0], the cut's power gain less 1.
    """

    stems: np.ndarray
    band0: int
    minus_one: np.ndarray

    @property
    def bands(self) -> slice:
        """The bands the cuts reach, ``[band0, band0 + J)``."""
        return slice(self.band0, self.band0 + self.minus_one.shape[2])

    def band_gain(self, frames: np.ndarray) -> np.ndarray:
        """(pop, k, J, T') float32: the cut's power gain in its bands on frames ``frames`` (T',)."""
        return 1.0 + self.minus_one[..., frames]

    def deltas(self, weights: np.ndarray, power: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """``sum_{c, b} weights[p, k, q, c, b] (G - 1) power[stems[k], c, b, t]`` -> (pop, k, Q, T): what the
        cut changes in each cut stem's weighted power; ``power`` (stems, C, B, T) float32 is every stem's (an
        analysis array, read in place: no copy of the cut stems' bands), on the frames ``frames`` of the cut
        (None: all)."""
        w = np.ascontiguousarray(weights[..., self.bands], dtype=np.float32)
        power = np.ascontiguousarray(power, dtype=np.float32)  # the analysis's own array: no copy
        gather = frames is not None
        frames = np.ascontiguousarray(frames, dtype=np.int64) if gather else np.zeros(0, np.int64)
        return _cut_deltas(w, power, self.stems.astype(np.int64), self.band0, self.minus_one, frames, gather)


def unmask_cut(a: Analysis, params: Params) -> CutBus | None:
    """The population's dynamic cuts (:class:`CutBus`), or None when no candidate cuts any stem (no
    depth above 0 dB on a stem with a key: nothing is computed, the dry render is unchanged).

    The key (``search.keys``): the key stem's band powers after its trim, mixed to mono
    (``Analysis.key_power``), weighted by the cut's band-pass (``unmask.key_band_level_db``); the
    threshold is the candidate's ``unmask_threshold_db`` (the same number as the exact tier's).
    """
    depth = np.asarray(params.unmask_depth_db, dtype=float)  # (p, s) dB
    key = np.asarray(params.unmask_key)  # (p, s) int
    on = (depth > 0.0) & (key >= 0)
    if not on.any():
        return None
    cs = np.flatnonzero(on.any(axis=0))  # (k,) the stems some candidate cuts
    sr = a.sr
    kk = np.maximum(key[:, cs], 0)  # (p, k) the keys (a stem without one in some candidate: depth 0 there)
    trim_pow = 10.0 ** (np.asarray(a.trim_db, dtype=float) / 10.0)  # (s,)
    freq = np.minimum(np.asarray(params.unmask_hz, dtype=float)[:, cs], MAX_FREQ_FRACTION * sr)  # (p, k) Hz
    q = np.asarray(params.unmask_q, dtype=float)[:, cs]
    if np.all(kk == kk[:1]):  # the keys of a table: the same in every candidate
        key_power = a.key_power[kk[0]] * trim_pow[kk[0], None, None].astype(np.float32)  # (k, B, T)
    else:
        key_power = a.key_power[kk] * trim_pow[kk][:, :, None, None].astype(np.float32)  # (p, k, B, T)
    level = key_band_level_db(key_power, freq_hz=freq, q=q, bands_hz=a.grid, sr=sr)  # (p, k, T) dB
    frame_db, per_neper = cut_frame_db(
        level, freq_hz=freq, q=q, depth_db=np.where(on[:, cs], depth[:, cs], 0.0),
        threshold_db=np.asarray(params.unmask_threshold_db, dtype=float)[:, cs],
        attack_ms=np.asarray(params.unmask_attack_ms, dtype=float)[:, cs],
        release_ms=np.asarray(params.unmask_release_ms, dtype=float)[:, cs], hop_s=a.grid.hop_s, bands_hz=a.grid, sr=sr)
    reach = np.flatnonzero((per_neper >= CUT_BAND_FLOOR * np.log(10.0) / 10.0).any(axis=(0, 1)))  # the bands reached
    b0, b1 = (int(reach[0]), int(reach[-1]) + 1) if reach.size else (0, 1)
    x = per_neper[:, :, b0:b1, None].astype(np.float32) * frame_db[:, :, None, :].astype(np.float32)  # (p, k, J, T)
    np.exp(x, out=x)  # float32 exp: vectorised by numpy, 1e-7 relative
    x -= np.float32(1.0)
    return CutBus(stems=cs, band0=b0, minus_one=x)


@lazy_njit
def _cut_deltas(weights, power, stems, band0, m1, frames, gather):
    """``sum_{c, j} weights[p, k, q, c, j] m1[p, k, j, f(t)] power[stems[k], c, band0 + j, t]``, the frames
    innermost (SIMD): weights (p, k, Q, C, J) f32, power (S, C, B, T) f32 every stem's, m1 (p, k, J, T_m) f32,
    ``f(t) = frames[t]`` with ``gather`` else ``t`` -> (p, k, Q, T) f64."""
    n_pop, n_k, n_q, n_c, n_j = weights.shape
    n_t = power.shape[3]
    out = np.zeros((n_pop, n_k, n_q, n_t))
    x = np.empty(n_t, dtype=np.float32)
    for p in range(n_pop):
        for k in range(n_k):
            s = stems[k]
            for j in range(n_j):
                g = m1[p, k, j]
                for c in range(n_c):
                    row = power[s, c, band0 + j]
                    if gather:
                        for t in range(n_t):
                            x[t] = g[frames[t]] * row[t]
                    else:
                        for t in range(n_t):
                            x[t] = g[t] * row[t]
                    for qq in range(n_q):
                        w = weights[p, k, qq, c, j]
                        if w == 0.0:
                            continue
                        o = out[p, k, qq]
                        for t in range(n_t):
                            o[t] += w * x[t]
    return out


def _cut_detector(a: Analysis, cut: CutBus, g: StemGains, lev: np.ndarray) -> np.ndarray:
    """The stem compressors' detector levels ``lev`` (p, s, T, linear power) with the cut: its change on the
    cut stems (their trim and EQ weighting ``Analysis.detector_power``) added, in place (``lev`` is the
    caller's own temporary)."""
    cs = cut.stems
    w = (g.eq_pow[:, cs] * g.trim_pow[:, cs, None])[:, :, None, None, :]  # (p, k, 1, 1, B)
    d = cut.deltas(w, a.detector_power[:, None])  # (p, k, 1, T)
    lev[:, cs] = np.maximum(lev[:, cs] + d[:, :, 0], 0.0)
    return lev


def _cut_master(a: Analysis, cut: CutBus, mix: MixWeights, both: np.ndarray, sub: np.ndarray):
    """The mix's per-stem frame powers ``both`` (s, 2p, T: plain, then K-weighted) and the master detector's
    sub-step powers ``sub`` (s, p, T, R) with the cut: its change added to ``both``, and each cut stem's
    sub-steps scaled by its frame's plain power ratio (the cut is smooth within a frame); in place (both are
    the caller's own temporaries)."""
    cs = cut.stems
    n_pop = mix.band_pow.shape[0]
    w = mix.band_pow[:, cs]  # (p, k, 2, B)
    w2 = np.stack([w, w * a.k_band[cs][None, :, None, :]], axis=2)  # (p, k, 2 [plain, K], 2 [channel], B)
    d = cut.deltas(w2, a.band_power)  # (p, k, 2, T)
    old = both[cs, :n_pop].astype(np.float64)  # (k, p, T) plain power before the cut
    new = np.maximum(old + d[:, :, 0].transpose(1, 0, 2), 0.0)
    both[cs, :n_pop] = new
    both[cs, n_pop:] = np.maximum(both[cs, n_pop:] + d[:, :, 1].transpose(1, 0, 2), 0.0)
    ratio = np.where(old > POWER_FLOOR, new / np.maximum(old, POWER_FLOOR), 1.0)  # (k, p, T)
    sub[cs] *= ratio[..., None].astype(sub.dtype)
    return both, sub


@lazy_njit
def _cut_send(weight, gain, power, m1, out):  # (p,k,C,J) f32, (p,k,T) f32, (k,C,J,T) f32, (p,k,J,T) f32, (p,J,T) f32
    """``out[p, j, t] += gain[p, k, t] m1[p, k, j, t] sum_c weight[p, k, c, j] power[k, c, j, t]``: the cut's
    change of the reverb send bus in its bands, summed over the cut stems."""
    n_pop, n_k, n_c, n_j = weight.shape
    n_t = power.shape[3]
    for p in range(n_pop):
        for k in range(n_k):
            g = gain[p, k]
            for j in range(n_j):
                m = m1[p, k, j]
                o = out[p, j]
                for c in range(n_c):
                    w = weight[p, k, c, j]
                    if w == 0.0:
                        continue
                    row = power[k, c, j]
                    for t in range(n_t):
                        o[t] += w * g[t] * m[t] * row[t]


def _cut_heavy(a: Analysis, cut: CutBus, g: StemGains, w_mix: np.ndarray, g_time: np.ndarray,
               stem_power: np.ndarray, stem_spread: np.ndarray, mix_power: np.ndarray) -> np.ndarray:
    """The heavy frames' tensors with the cut: the cut stems' power and spread power (in place) times the cut's
    gain in its bands, the mix's power changed by as much; returns the cut's gain less 1 there (p, k, J, T'),
    for the mix's L/R cross power."""
    m1 = np.ascontiguousarray(cut.minus_one[..., a.heavy_frames])  # (p, k, J, T')
    _cut_heavy_kernel(stem_power, stem_spread, mix_power, m1, cut.stems.astype(np.int64), cut.band0)
    return m1


@lazy_njit
def _cut_heavy_kernel(stem_power, stem_spread, mix_power, m1, stems, band0):
    """In place, float32: ``change = stem_power[p, s_k, c, b, t] m1[p, k, j, t]`` (``s_k = stems[k]``,
    ``b = band0 + j``) added to the stem's power and, summed over the cut stems in order, to the mix's;
    the stem's spread power times ``1 + m1``. (p, s, C, B, T') x 2, (p, C, B, T'), (p, k, J, T')."""
    n_pop, n_k, n_j, n_t = m1.shape
    n_c = stem_power.shape[2]
    one = np.float32(1.0)
    acc = np.empty(n_t, dtype=np.float32)
    for p in range(n_pop):
        for c in range(n_c):
            for j in range(n_j):
                b = band0 + j
                for k in range(n_k):
                    s = stems[k]
                    g = m1[p, k, j]
                    sp = stem_power[p, s, c, b]
                    ss = stem_spread[p, s, c, b]
                    for t in range(n_t):
                        change = sp[t] * g[t]
                        if k == 0:
                            acc[t] = change
                        else:
                            acc[t] += change
                        sp[t] = sp[t] + change
                        ss[t] *= one + g[t]
                mp = mix_power[p, c, b]
                for t in range(n_t):
                    mp[t] += acc[t]
