"""Fast tier: render a whole population at once in the band/frame domain of the Analysis.

Signal flow per candidate, as in the exact renderer (``engine.render``):
stem -> trim -> high-pass, low shelf, peak, high shelf -> compressor -> fader -> pan -> sum
-> master shelves -> master compressor -> loudness normalisation -> true-peak limiter.

How each block is modelled here (no Python loop over candidates):

* EQ: the cascade's power response ``|H(f)|^2`` on the fine grid, averaged within each band with the
  stem's own long-term spectrum as weights -> a (pop, stems, bands) power gain.
* Compressor: the same soft-knee gain computer and attack/release smoothing as the exact tier
  (``engine.dsp``), run at the 50 ms frame rate on each stem's RMS per frame.
* Mix: powers add (stems are treated as uncorrelated); the L/R cross power adds too.
* Loudness: BS.1770-4 gating on 400 ms blocks built from the frames, with the K-weighting applied
  per band; normalisation is exact in this domain.
* Limiter: the mix's true peak is estimated from each stem's per-frame sample peak (power sum of
  the scaled peaks); the limiter's gain reduction is the excess over the ceiling.
* Masking tensors: per-stem band powers and their spread (the spreading is applied to the
  unprocessed stem and scaled by the band's EQ gain; exact when the EQ is flat across the spread).

``experiments/fidelity.py`` measures how closely this ranks candidates like the exact tier.
"""
from __future__ import annotations

import numpy as np

from evomix.engine.analysis import PEAK_HPF_HZ, Analysis
from evomix.engine.dsp import compressor_static_db, pan_gains, rbj_sos, smooth_gain_db, sos_power_response
from evomix.genome import (
    KNEE_DB,
    MASTER_COMP_ATTACK_MS,
    MASTER_COMP_RELEASE_MS,
    MASTER_HIGH_SHELF_HZ,
    MASTER_LOW_SHELF_HZ,
    SHELF_Q,
    Params,
)
from objectives.base import Features
from objectives.meter import gated_loudness, lra_from_short_term
from evomix.engine.bands import bark

BLOCK_FRAMES = 8  # 400 ms gating block = 8 hops of 50 ms
BLOCK_STEP = 2  # 75 % overlap -> 100 ms step
SHORT_TERM_FRAMES = 60  # 3 s short-term window (EBU Tech 3342)
_FLOOR = 1e-20
INTER_SAMPLE_DB = 0.0  # allowance for true peak over sample peak (the candidates are sample values)


def stem_eq_power(params: Params, sr: int, freq_hz: np.ndarray, *, highpass: bool = True) -> np.ndarray:
    """Power response of each stem's EQ cascade on ``freq_hz`` (F,) -> (pop, stems, F)."""
    h2 = sos_power_response(rbj_sos("lowshelf", params.low_shelf_hz, params.low_shelf_db, SHELF_Q, sr), freq_hz, sr)
    if highpass:
        h2 = h2 * sos_power_response(rbj_sos("highpass", params.highpass_hz, 0.0, SHELF_Q, sr), freq_hz, sr)
    h2 = h2 * sos_power_response(rbj_sos("peak", params.peak_hz, params.peak_db, params.peak_q, sr), freq_hz, sr)
    h2 = h2 * sos_power_response(rbj_sos("highshelf", params.high_shelf_hz, params.high_shelf_db, SHELF_Q, sr), freq_hz, sr)
    return h2


def master_eq_power(params: Params, sr: int, freq_hz: np.ndarray) -> np.ndarray:
    """Power response of the master shelves on ``freq_hz`` (F,) -> (pop, F)."""
    lo = rbj_sos("lowshelf", MASTER_LOW_SHELF_HZ, params.master_low_shelf_db, SHELF_Q, sr)
    hi = rbj_sos("highshelf", MASTER_HIGH_SHELF_HZ, params.master_high_shelf_db, SHELF_Q, sr)
    return sos_power_response(lo, freq_hz, sr) * sos_power_response(hi, freq_hz, sr)


def _per_stem_frames(weights: np.ndarray, power: np.ndarray) -> np.ndarray:
    """sum over (ch, bands) of weights[p, s, c, b] * power[s, c, b, t] -> (pop, stems, T).

    A batched matmul over stems: (s, p, 2B) @ (s, 2B, T) -> (s, p, T).
    """
    n_pop, n_stems, n_ch, n_bands = weights.shape
    w = weights.reshape(n_pop, n_stems, n_ch * n_bands).transpose(1, 0, 2)  # (s, p, 2B)
    pw = power.reshape(n_stems, n_ch * n_bands, -1)  # (s, 2B, T)
    return np.matmul(w, pw).transpose(1, 0, 2)  # (p, s, T)


def frames_to_blocks(z: np.ndarray, block: int, step: int) -> np.ndarray:
    """Mean of ``block`` consecutive frames every ``step`` frames: (..., T) -> (..., blocks)."""
    n = z.shape[-1]
    if n < block:
        return z.mean(axis=-1, keepdims=True)
    c = np.concatenate([np.zeros(z.shape[:-1] + (1,)), np.cumsum(z, axis=-1, dtype=np.float64)], axis=-1)
    starts = np.arange(0, n - block + 1, step)
    return (c[..., starts + block] - c[..., starts]) / block


def render_features(analysis: Analysis, params: Params, *, target_lufs: float, ceiling_dbtp: float) -> Features:
    """Render a population (pop, ...) in the fast tier and return its :class:`Features`."""
    a = analysis
    sr, grid = a.sr, a.grid
    n_pop, n_stems = params.gain_db.shape
    hop_s = grid.hop_s
    P = a.band_power  # (s, 2, B, T)

    # --- per-stem static gains -------------------------------------------------------------
    h2_rest = stem_eq_power(params, sr, grid.grid_hz, highpass=False)  # (p, s, G) shelves and peak
    h2_hp = sos_power_response(rbj_sos("highpass", params.highpass_hz, 0.0, SHELF_Q, sr), grid.grid_hz, sr)
    eq_rest = np.einsum("psg,sgb->psb", h2_rest, a.grid_weight)  # (p, s, B)
    eq = np.einsum("psg,sgb->psb", h2_rest * h2_hp, a.grid_weight)  # (p, s, B)
    meq = np.einsum("pg,sgb->psb", master_eq_power(params, sr, grid.grid_hz), a.grid_weight)  # (p, s, B)
    trim_pow = 10.0 ** (params.trim_db / 10.0)  # (p, s)
    fader_pow = 10.0 ** (params.gain_db / 10.0)  # (p, s)
    centre = pan_gains(np.zeros(n_stems), a.is_mono)  # (s, 2): the Analysis is centre-panned
    rel_pan = pan_gains(params.pan, a.is_mono[None, :]) / centre[None]  # (p, s, 2)

    # --- stem compressors (detector: stereo-linked mean square, pre-pan) -----------------------
    lev = np.matmul(eq.transpose(1, 0, 2), a.detector_power).transpose(1, 0, 2) * trim_pow[:, :, None]  # (p, s, T)
    with np.errstate(divide="ignore"):
        lev_db = 10.0 * np.log10(np.maximum(lev, _FLOOR))
    gr = compressor_static_db(lev_db, params.comp_threshold_db[:, :, None], params.comp_ratio[:, :, None], KNEE_DB)
    gr = smooth_gain_db(gr, params.comp_attack_ms, params.comp_release_ms, hop_s)  # (p, s, T) dB
    g_comp = 10.0 ** (gr / 10.0)  # power

    # --- power weights of each stem in the mix (before the master's time-varying gain) -------
    w_mix = (trim_pow * fader_pow)[:, :, None, None] * rel_pan[:, :, :, None] ** 2 * (eq * meq)[:, :, None, :]  # (p, s, 2, B)
    stem_frames = _per_stem_frames(w_mix, P) * g_comp  # (p, s, T) channel-summed power
    mix_frames = stem_frames.sum(axis=1)  # (p, T)
    with np.errstate(divide="ignore"):
        mlev_db = 10.0 * np.log10(np.maximum(mix_frames / 2.0, _FLOOR))
    mgr = compressor_static_db(mlev_db, params.master_comp_threshold_db[:, None], params.master_comp_ratio[:, None], KNEE_DB)
    mgr = smooth_gain_db(mgr, np.full(n_pop, MASTER_COMP_ATTACK_MS), np.full(n_pop, MASTER_COMP_RELEASE_MS), hop_s)
    g_master = 10.0 ** (mgr / 10.0)  # (p, T)

    # --- loudness (BS.1770-4 on K-weighted band powers) and normalisation ------------------------
    k_frames = np.einsum("pst,pst->pt", _per_stem_frames(w_mix * a.k_band[None, :, None, :], P), g_comp) * g_master  # (p, T)
    blocks = frames_to_blocks(k_frames, BLOCK_FRAMES, BLOCK_STEP)  # (p, blocks)
    raw_lufs = np.asarray(gated_loudness(blocks[:, None, :]), dtype=float)  # (p,)
    audible = raw_lufs > -150.0
    norm_db = np.where(audible, target_lufs - raw_lufs, 0.0)
    g_norm = 10.0 ** (norm_db / 10.0)  # (p,) power
    short = frames_to_blocks(k_frames, SHORT_TERM_FRAMES, BLOCK_STEP)  # (p, windows)
    lra = np.asarray(lra_from_short_term(short[:, None, :]), dtype=float)

    # --- true-peak estimate: the candidates' gains applied to each stem's band-split values at the
    #     analysis' peak-candidate instants, summed with signs (waveforms add, not powers) --------
    n_cut = len(PEAK_HPF_HZ)
    n_groups = a.peak_values.shape[2] // n_cut
    group_eq = np.einsum("psb,sgb->psg", eq_rest * meq, a.peak_group_share)  # (p, s, G) power gain, high-pass excluded
    amp = np.sqrt((trim_pow * fader_pow)[:, :, None, None] * group_eq[..., None] * rel_pan[:, :, None, :] ** 2)  # (p, s, G, 2)
    # the high-pass (phase and magnitude) comes from the precomputed cutoffs, interpolated in log cutoff
    pos = np.log(params.highpass_hz / PEAK_HPF_HZ[0]) / np.log(PEAK_HPF_HZ[-1] / PEAK_HPF_HZ[0]) * (n_cut - 1)
    j0 = np.clip(np.floor(pos).astype(int), 0, n_cut - 2)  # (p, s)
    frac = np.clip(pos - j0, 0.0, 1.0)
    w_cut = np.zeros((n_pop, n_stems, n_cut))  # (p, s, J) interpolation weights over the cutoffs
    np.put_along_axis(w_cut, j0[..., None], (1.0 - frac)[..., None], axis=2)
    np.put_along_axis(w_cut, (j0 + 1)[..., None], frac[..., None], axis=2)
    coef = np.einsum("psj,psgc->scpjg", w_cut, amp).reshape(n_stems, 2, n_pop, n_cut * n_groups)  # (s, 2, p, J*G)
    per_stem = np.matmul(coef.astype(np.float32), a.peak_values)  # (s, 2, p, J*G) @ (s, 2, J*G, K) -> (s, 2, p, K)
    k = a.peak_frames
    g_peak = np.take(np.sqrt(g_comp.astype(np.float32)).transpose(1, 0, 2), k, axis=2)  # (s, p, T) -> (s, p, K)
    values = per_stem[0] * g_peak[0]  # (2, p, K)
    for s_ in range(1, n_stems):  # accumulate stem by stem (each term vectorized over pop)
        values += per_stem[s_] * g_peak[s_]
    values = values.transpose(1, 0, 2)  # (2, p, K) -> (p, 2, K)
    values = np.abs(values) * np.sqrt(g_master[:, k] * g_norm[:, None])[:, None, :]
    with np.errstate(divide="ignore"):
        tp_db = 20.0 * np.log10(np.maximum(values.max(axis=(1, 2)), 1e-10)) + INTER_SAMPLE_DB
    limiter_gr = np.maximum(tp_db - ceiling_dbtp, 0.0)
    true_peak = np.minimum(tp_db, ceiling_dbtp)
    loudness = np.where(audible, target_lufs, raw_lufs)

    # --- heavy tensors on the selected frames: (p, s, 2, B, T') --------------------------------
    h = a.heavy_frames
    g_time = (g_comp[:, :, h] * (g_master[:, h] * g_norm[:, None])[:, None, :]).astype(np.float32)  # (p, s, T')
    w32 = w_mix.astype(np.float32)
    wg = w32[..., None] * g_time[:, :, None, None, :]  # (p, s, 2, B, T') gains of each cell
    stem_power = wg * a.heavy_power[None]
    stem_spread = np.multiply(wg, a.spread_power[None], out=wg)
    mix_power = stem_power.sum(axis=1)
    cross_w = (trim_pow * fader_pow)[:, :, None] * (rel_pan[..., 0] * rel_pan[..., 1])[:, :, None] * eq * meq  # (p, s, B)
    mix_cross = np.einsum("psb,pst,sbt->pbt", cross_w.astype(np.float32), g_time, a.heavy_cross, optimize=True)

    return Features(
        bands_hz=grid.centres_hz,
        band_edges_hz=grid.edges_hz,
        band_bark=bark(grid.centres_hz),
        spread=grid.spread,
        roles=a.roles,
        stem_power=stem_power,
        stem_spread=stem_spread,
        mix_power=mix_power,
        mix_cross=mix_cross.astype(np.float32),
        loudness_lufs=loudness,
        raw_loudness_lufs=raw_lufs,
        lra_lu=lra,
        true_peak_dbtp=true_peak,
        limiter_gr_db=limiter_gr,
        frames=h,
    )
