"""Exact tier: sample-accurate, time-domain rendering of one candidate, and its Features.

Per stem: trim -> RBJ biquads (high-pass, low shelf, peak, high shelf; scipy ``sosfilt``) ->
feed-forward RMS compressor -> fader -> constant-power pan. Master: low/high shelves ->
stereo-linked compressor -> loudness normalisation to the target (BS.1770-4) -> look-ahead
true-peak limiter to the ceiling; normalisation and limiting are iterated until the integrated
loudness of the limited master is within ``LOUDNESS_TOLERANCE_LU`` of the target.

Source: RBJ Audio EQ Cookbook; Giannoulis, Massberg & Reiss, JAES 60(6), 2012; ITU-R BS.1770-4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import sosfilt

from evomix.engine.bands import BandGrid, band_powers, bark
from evomix.engine.dsp import compressor_gain, limiter_gain, pan_gains, true_peak_envelope
from evomix.engine.eq import master_eq_sos, stem_eq_sos
from evomix.genome import (
    KNEE_DB,
    MASTER_COMP_ATTACK_MS,
    MASTER_COMP_RELEASE_MS,
    Params,
)
from objectives.base import Features
from objectives.meter import integrated_loudness, loudness_range, true_peak_dbtp

LOUDNESS_TOLERANCE_LU = 0.05
MAX_NORMALISE_PASSES = 6


@dataclass(frozen=True)
class ExactRender:
    """One rendered candidate.

    mix : (2, samples) float64, the finished master.
    stems : (stems, 2, samples) float64, each stem's contribution to ``mix`` (they sum to it), or
        None for a session that streams from its files (then see ``stem_power``).
    raw_loudness_lufs : loudness after the master compressor, before normalisation, LUFS.
    normalise_db : gain applied for loudness normalisation, dB.
    limiter_gr_db : peak gain reduction the limiter applied, dB >= 0.
    stem_power : (stems, 2, B, T) float32 band powers of each contribution, when ``stems`` is None.
    """

    mix: np.ndarray
    stems: np.ndarray
    raw_loudness_lufs: float
    normalise_db: float
    limiter_gr_db: float
    stem_power: np.ndarray | None = None


def _stem_audio(audio, s: int) -> np.ndarray:
    """Stem ``s`` (2, samples) from an array (stems, 2, samples) or a Session (read on demand)."""
    return audio.stem(s) if hasattr(audio, "stem") else audio[s]


def _process_stem(x: np.ndarray, mono: bool, params: Params, i: int, s: int, sr: int,
                  pan: np.ndarray, master_sos: np.ndarray) -> np.ndarray:
    """One stem through its channel strip and the (linear) master EQ -> (2, samples) float64."""
    x = x[:1] if mono else x  # (ch, samples), ch = 1 or 2
    x = x.astype(np.float64) * 10.0 ** (params.trim_db[i, s] / 20.0)
    x = sosfilt(stem_eq_sos(params.member(i), sr)[0, s], x, axis=-1)
    x = x * compressor_gain(x, sr, threshold_db=params.comp_threshold_db[i, s], ratio=params.comp_ratio[i, s],
                            attack_ms=params.comp_attack_ms[i, s], release_ms=params.comp_release_ms[i, s],
                            knee_db=KNEE_DB)[None, :]
    x = x * 10.0 ** (params.gain_db[i, s] / 20.0) * pan[:, None]  # mono (1, n) broadcasts to (2, n)
    return sosfilt(master_sos, x, axis=-1)  # linear: filtering each stem = filtering the sum


def render_exact(audio, is_mono: np.ndarray, sr: int, params: Params, *,
                 target_lufs: float, ceiling_dbtp: float, index: int = 0,
                 grid: BandGrid | None = None) -> ExactRender:
    """Render candidate ``index`` of ``params`` from the session audio.

    Parameters
    ----------
    audio : (stems, 2, samples) float array, or a Session (stems are then taken one at a time with
        ``Session.stem``, so a session that streams from its files is never all in memory).
    is_mono : (stems,) bool.
    sr : int, Hz.
    params : Params.
    target_lufs : float, LUFS.  ceiling_dbtp : float, dBTP.
    grid : BandGrid, optional. For a session that does not hold its audio, the per-stem
        contributions are not kept; with ``grid`` their band powers are measured in a second pass
        (``ExactRender.stem_power``) so that :func:`features_from_render` can still score it.
    """
    i = index
    n_stems = len(is_mono)
    keep = not hasattr(audio, "stem") or getattr(audio, "audio", None) is not None
    pans = pan_gains(params.pan[i], np.asarray(is_mono))  # (stems, 2)
    master_sos = master_eq_sos(params.member(i), sr)[0]  # (2, 6)
    stems = None
    mix = None
    for s in range(n_stems):
        y = _process_stem(_stem_audio(audio, s), bool(is_mono[s]), params, i, s, sr, pans[s], master_sos)
        if keep:
            if stems is None:
                stems = np.empty((n_stems,) + y.shape)
            stems[s] = y
        mix = y if mix is None else mix + y
    g_master = compressor_gain(mix, sr, threshold_db=params.master_comp_threshold_db[i],
                               ratio=params.master_comp_ratio[i], attack_ms=MASTER_COMP_ATTACK_MS,
                               release_ms=MASTER_COMP_RELEASE_MS, knee_db=KNEE_DB)  # (samples,)
    mix = mix * g_master
    raw = float(integrated_loudness(mix, sr))
    if raw <= -150.0:  # silence: nothing to normalise or limit
        gain, out, norm_db, gr = g_master, mix, 0.0, 0.0
    else:
        norm_db = target_lufs - raw
        best = prev = None
        env = true_peak_envelope(mix)  # (samples,), scales with the normalisation gain
        for _ in range(MAX_NORMALISE_PASSES):
            pre = mix * 10.0 ** (norm_db / 20.0)
            g_lim = limiter_gain(pre, sr, ceiling_dbtp=ceiling_dbtp, envelope=env * 10.0 ** (norm_db / 20.0))
            out = pre * g_lim
            err = target_lufs - float(integrated_loudness(out, sr))
            if best is None or abs(err) < abs(best[0]):
                best = (err, norm_db, pre, g_lim, out)
            if abs(err) <= LOUDNESS_TOLERANCE_LU:
                break
            if prev is not None and abs(norm_db - prev[1]) > 1e-6:  # secant step: limiting flattens the slope
                slope = float(np.clip((prev[0] - err) / (norm_db - prev[1]), 0.1, 1.0))
            else:
                slope = 1.0
            prev = (err, norm_db)
            norm_db += err / slope
        _, norm_db, pre, g_lim, out = best  # the pass closest to the target
        gr = max(0.0, 20.0 * np.log10(max(float(env.max()), 1e-10)) + norm_db - ceiling_dbtp)  # pre-limiter true peak
        gain = g_master * 10.0 ** (norm_db / 20.0) * g_lim  # (samples,) total master gain curve
    stem_power = None
    if stems is not None:
        stems = stems * gain
    elif grid is not None:  # second pass: each stem's contribution, measured and dropped
        stem_power = np.empty((n_stems, 2, grid.n_bands, grid.n_frames(mix.shape[-1])), np.float32)
        for s in range(n_stems):
            y = _process_stem(_stem_audio(audio, s), bool(is_mono[s]), params, i, s, sr, pans[s], master_sos)
            stem_power[s] = band_powers(y * gain, grid)[0]
    return ExactRender(out, stems, raw, norm_db, gr, stem_power)


def features_from_render(render: ExactRender, grid: BandGrid, roles: tuple) -> Features:
    """Measure an exact render on the analysis grid -> Features with pop = 1 (every frame)."""
    if render.stems is not None:  # one stem at a time: the STFT of all stems at once is large
        stem_power = np.stack([band_powers(x, grid)[0] for x in render.stems])  # (stems, 2, B, T)
    elif render.stem_power is not None:
        stem_power = render.stem_power
    else:
        raise ValueError("features_from_render: render has neither stems nor stem_power (pass grid to render_exact)")
    mix_power, mix_cross = band_powers(render.mix, grid)  # (2, B, T), (B, T)
    stem_spread = np.einsum("ij,scjt->scit", grid.spread.astype(np.float32), stem_power)
    sr = grid.sr
    return Features(
        bands_hz=grid.centres_hz,
        band_edges_hz=grid.edges_hz,
        band_bark=bark(grid.centres_hz),
        spread=grid.spread,
        roles=tuple(roles),
        stem_power=stem_power[None],
        stem_spread=stem_spread[None].astype(np.float32),
        mix_power=mix_power[None],
        mix_cross=mix_cross[None],
        loudness_lufs=np.atleast_1d(np.asarray(integrated_loudness(render.mix, sr), dtype=float)),
        raw_loudness_lufs=np.array([render.raw_loudness_lufs]),
        # LRA needs one 3 s short-term window; shorter, 0 LU, as the fast tier (one window) and measure.py
        lra_lu=np.atleast_1d(np.asarray(loudness_range(render.mix, sr) if render.mix.shape[-1] >= 3 * sr else 0.0,
                                        dtype=float)),
        true_peak_dbtp=np.atleast_1d(np.asarray(true_peak_dbtp(render.mix, sr), dtype=float)),
        limiter_gr_db=np.array([render.limiter_gr_db]),
        frames=np.arange(mix_power.shape[-1]),
    )
