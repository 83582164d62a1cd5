"""The features contract: what a rendered batch of mixes hands to the objectives.

Both tiers of ``evomix.engine`` build :class:`Features`; every objective in ``objectives`` reads
them. The class lives in this leaf layer so that neither side imports the other (pymoo ``core/``:
the contract in one place, the implementations beside it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evomix.core.compiled import lazy_njit

TONALITY = 0.5  # Johnston's tonality index a: music is neither pure tone (1) nor pure noise (0)


def threshold_offset_db(band_bark: np.ndarray) -> np.ndarray:
    """Masking threshold offset below the spread masker, dB, per band (B,) from band centres in
    Bark (B,): ``O(z) = a (14.5 + z) + (1 - a) 5.5`` with ``a = TONALITY``.

    Source: J. D. Johnston, "Transform coding of audio signals using perceptual noise criteria",
    IEEE JSAC 6(2), 1988 (the masking model of ``objectives.masking``).
    """
    return TONALITY * (14.5 + band_bark) + (1.0 - TONALITY) * 5.5


@dataclass(frozen=True)
class Features:
    """What objectives may look at, for a batch of ``pop`` rendered mixes.

    Powers are mean squares per 50 ms hop in critical bands (full-scale sine = 0.5), after the whole
    chain (per-stem processing, master EQ/compressor, loudness normalisation).

    Attributes
    ----------
    bands_hz : (B,) band centre frequencies, Hz.
    band_edges_hz : (B + 1,) band edges, Hz.
    band_bark : (B,) band centres in Bark.
    spread : (B, B) linear power spreading matrix (masker band j -> band i).
    roles : tuple of str, one per stem.
    stem_power : (pop, stems, 2, B, T) float32, each stem's power in the mix.
    stem_spread : (pop, stems, 2, B, T) float32, ``stem_power`` spread across bands.
    mix_power : (pop, 2, B, T) float32, power of the mix (same frames as ``stem_power``).
    mix_cross : (pop, B, T) float32, Re(L R*) of the mix.
    loudness_lufs : (pop,) integrated loudness of the master, LUFS (BS.1770-4).
    raw_loudness_lufs : (pop,) integrated loudness before loudness normalisation, LUFS.
    lra_lu : (pop,) loudness range, LU (EBU Tech 3342).
    true_peak_dbtp : (pop,) true peak of the master, dBTP.
    frames : (T,) int, the analysis frames that the (…, T) arrays hold (the fast tier may use a
        subset; the exact tier uses every frame).
    limiter_gr_db : (pop,) >= 0, dB by which the normalised pre-limiter true peak exceeds the
        ceiling, i.e. the peak gain reduction the limiter must apply.
    stem_block_k : (pop, stems, T) float64 or None: each stem's K-weighted power (BS.1770-4 at the
        band centres, channels summed) over the 400 ms block centred on each frame, as in the mix;
        ``mix_block_k`` (pop, T) the same of the mix. The blocks a meter gates a level on
        (``objectives.balance.gated_levels_db``); None: each 50 ms frame gated on its own.
    return_power : (pop, 2, B, T) float32 or None: the reverb return's power in the mix (it is part
        of ``mix_power``, and masks every stem); None when no candidate sends to the reverb.
    return_block_k : (pop, T) float64 or None: the return's K-weighted power over the 400 ms block
        around each frame, as ``mix_block_k`` (the blocks its loudness is gated on).
    return_share : (pop, stems, B) float32 or None: each stem's share of the return's energy per band
        (:func:`return_shares`): a stem's own reverb is part of its image, not a masker of it.
    """

    bands_hz: np.ndarray
    band_edges_hz: np.ndarray
    band_bark: np.ndarray
    spread: np.ndarray
    roles: tuple
    stem_power: np.ndarray
    stem_spread: np.ndarray
    mix_power: np.ndarray
    mix_cross: np.ndarray
    loudness_lufs: np.ndarray
    raw_loudness_lufs: np.ndarray
    lra_lu: np.ndarray
    true_peak_dbtp: np.ndarray
    limiter_gr_db: np.ndarray
    frames: np.ndarray | None = None
    stem_block_k: np.ndarray | None = None
    mix_block_k: np.ndarray | None = None
    return_power: np.ndarray | None = None
    return_share: np.ndarray | None = None
    return_block_k: np.ndarray | None = None

    @property
    def n_pop(self) -> int:
        """Candidates in the batch, int >= 1: the leading axis of every (pop, ...) array."""
        return self.stem_power.shape[0]

    @cached_property
    def stem_band_power(self) -> np.ndarray:
        """Each stem's power per channel and band, summed over the frames, (pop, stems, 2, B)
        (computed once per batch; the objectives' per-stem levels come from it)."""
        return self.stem_power.sum(axis=-1)

    @cached_property
    def rest_threshold(self) -> np.ndarray:
        """Masking threshold that the rest of the mix puts on each stem, (pop, stems, 2, B, T).

        ``O(z) * (spread(mix) - spread(stem))``, computed once per batch and shared by the
        objectives that need it (masking, balance); the model is in ``objectives.masking``. The
        mix's spread includes the reverb return's (``return_power`` spread like a stem's), less the
        stem's own share of it (``return_share``): a source's own reverb fuses with it (it lowers
        its clarity, not its audibility; D. Griesinger, "How loud is my reverberation?", AES 98th
        Conv., 1995), so only the others' reverb masks it.
        """
        y = np.ascontiguousarray(self.stem_spread)
        offset = (10.0 ** (-threshold_offset_db(self.band_bark) / 10.0)).astype(y.dtype)  # (B,)
        n_pop, n_stems, n_ch, n_bands = y.shape[:4]
        if self.return_power is None:
            extra = np.zeros((n_pop, n_ch, n_bands, 0), dtype=y.dtype)  # (pop, 2, B, 0): none
            others = np.zeros((n_pop, n_stems, n_bands), dtype=y.dtype)
        else:  # (B, B) @ (pop, 2, B, T): the return spread across bands
            extra = np.ascontiguousarray(np.matmul(self.spread.astype(y.dtype), self.return_power.astype(y.dtype)))
            share = (np.zeros((n_pop, n_stems, n_bands)) if self.return_share is None else self.return_share)
            others = np.ascontiguousarray(1.0 - np.clip(share, 0.0, 1.0), dtype=y.dtype)  # (pop, stems, B)
        return _rest_of_mix(y, offset, extra, others)

    @property
    def plr_db(self) -> np.ndarray:
        """Peak-to-loudness ratio, dB (true peak - integrated loudness)."""
        return self.true_peak_dbtp - self.loudness_lufs


def return_shares(stem_power: np.ndarray, send_power: np.ndarray) -> np.ndarray:
    """Each stem's share of the reverb return's energy per band, (pop, stems, B) float32 in [0, 1]:
    ``g_s E_s(b) / sum_j g_j E_j(b)`` with ``E_s(b)`` the stem's energy in the mix in band ``b``
    (``stem_power`` (pop, stems, 2, B, T) summed over channels and frames) and ``g_s`` its send's
    power gain (``send_power`` (pop, stems), 0 when off). The reverb is linear, so its return is the
    sum of the stems' returns; at unit energy gain each one's share of the energy is its share of
    the send's (the tails spread it in time, not across stems)."""
    e = stem_power.sum(axis=(2, 4), dtype=np.float64) * np.asarray(send_power, dtype=np.float64)[:, :, None]
    return (e / np.maximum(e.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32)


@lazy_njit
def _rest_of_mix(spread, offset, extra, others):  # (p, s, 2, B, T), (B,), (p, 2, B, T|0), (p, s, B) -> (p, s, 2, B, T)
    """``max(sum_j spread_j - spread_s + others_s extra, 0) * offset[b]`` per cell, in one pass over
    the stems (``extra``: the reverb return's spread, or an empty last axis for none; ``others``:
    the part of it not from stem ``s``)."""
    n_pop, n_stems, n_ch, n_bands, n_t = spread.shape
    out = np.empty_like(spread)
    total = np.empty(n_t, dtype=spread.dtype)
    for p in range(n_pop):
        for c in range(n_ch):
            for b in range(n_bands):
                total[:] = 0.0
                for s in range(n_stems):
                    for t in range(n_t):
                        total[t] += spread[p, s, c, b, t]
                o = offset[b]
                for s in range(n_stems):
                    if extra.shape[-1]:
                        k = others[p, s, b]
                        for t in range(n_t):
                            r = total[t] - spread[p, s, c, b, t] + k * extra[p, c, b, t]
                            out[p, s, c, b, t] = max(r, 0.0) * o
                    else:
                        for t in range(n_t):
                            r = total[t] - spread[p, s, c, b, t]
                            out[p, s, c, b, t] = max(r, 0.0) * o
    return out
