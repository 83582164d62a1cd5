"""Each candidate's static gains in the fast tier's domains: the first stage of the fast render.

EQ as a power gain per analysis band, trim and fader as power gains, pan as left/right amplitude
gains, and from them each stem's weight in the mix. Both models of
``engine.batch.render_features`` read them: the band/frame model (compressors, loudness, masking
tensors, in ``engine.batch``) and the true-peak model (``engine.peaks``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.engine.dsp.filters import cascade_power_response
from evomix.engine.dsp.pan import pan_gains
from evomix.engine.eq import master_eq_sos, stem_eq_sos
from evomix.search.genome import Params

if TYPE_CHECKING:  # annotations only: engine.analysis imports engine.peaks, which imports this module
    from evomix.engine.analysis import Analysis


def gain_from_db(db: np.ndarray, *, power: bool = False) -> np.ndarray:
    """Linear gain from dB, ``10^(db/20)`` (amplitude) or ``10^(db/10)`` (power), in the input's
    dtype. Written as ``exp(db ln10 / 20)``: numpy's exp is vectorized and several times faster
    than its ``power`` on these arrays."""
    db = np.asarray(db)
    return np.exp(db * db.dtype.type(np.log(10.0) / (10.0 if power else 20.0)))


@lazy_njit
def gained_stem_sum(values, gain):  # (s, q, p, T), (s, p, T) -> (q, p, T) float32
    """``sum_s values[s, q, p, t] * gain[s, p, t]`` in stem order, float32: each stem's values (per
    channel or quantity ``q``, candidate ``p`` and frame or instant ``t``) through its gain, summed
    over the stems (``einsum("sqpt,spt->qpt")`` without the GIL: the fast tier's threads run it side
    by side). The mix's power per frame through the stem compressors (``engine.batch``) and its
    waveform at the peak instants (``engine.peaks``) are both this sum."""
    n_s, n_q, n_p, n_t = values.shape
    out = np.zeros((n_q, n_p, n_t), dtype=np.float32)
    for s in range(n_s):
        for q in range(n_q):
            for p in range(n_p):
                for t in range(n_t):
                    out[q, p, t] += values[s, q, p, t] * gain[s, p, t]
    return out


@dataclass(frozen=True)
class StemGains:
    """The static (time-invariant) part of each candidate's chain, per stem.

    Attributes
    ----------
    stem_sos : (pop, stems, 4, 6) each stem's EQ biquads (high-pass, low shelf, peak, high shelf).
    master_sos : (pop, 2, 6) the master's low and high shelves.
    eq_pow : (pop, stems, B) linear power gain of each stem's EQ per analysis band: ``|H|^2`` on the
        fine grid, weighted by the stem's long-term spectrum within the band (``Analysis.grid_weight``).
    master_eq_pow : (pop, stems, B) the same for the master shelves, weighted by each stem's spectrum.
    trim_pow, fader_pow : (pop, stems) linear power gains of the trim and the fader.
    pan_amp : (pop, stems, 2) left/right amplitude gains of the pan law (``engine.dsp.pan.pan_gains``).
    rel_pan_amp : (pop, stems, 2) ``pan_amp`` relative to the centre pan the Analysis was made with.
    """

    stem_sos: np.ndarray
    master_sos: np.ndarray
    eq_pow: np.ndarray
    master_eq_pow: np.ndarray
    trim_pow: np.ndarray
    fader_pow: np.ndarray
    pan_amp: np.ndarray
    rel_pan_amp: np.ndarray


def stem_gains(a: Analysis, params: Params) -> StemGains:
    """Decode the candidates' EQ, trim, fader and pan into :class:`StemGains` (shapes there)."""
    sr, grid = a.sr, a.grid
    stem_sos = stem_eq_sos(params, sr, check=False)  # (p, s, 4, 6)
    master_sos = master_eq_sos(params, sr, check=False)  # (p, 2, 6)
    gw = a.grid_weight.astype(float)  # (s, G, B)
    # (p, s, G) -> (s, p, G) @ (s, G, B) -> (s, p, B) -> (p, s, B)
    eq = np.matmul(cascade_power_response(stem_sos, grid.grid_hz, sr).transpose(1, 0, 2), gw).transpose(1, 0, 2)
    # (1, p, G) @ (s, G, B) -> (s, p, B) -> (p, s, B)
    meq = np.matmul(cascade_power_response(master_sos, grid.grid_hz, sr)[None], gw).transpose(1, 0, 2)
    trim_pow = 10.0 ** (params.trim_db / 10.0)  # (p, s)
    fader_pow = 10.0 ** (params.gain_db / 10.0)  # (p, s)
    centre = a.centre_gains  # (s, 2): the Analysis is centre-panned
    pans = pan_gains(params.pan, a.is_mono[None, :])  # (p, s, 2)
    rel_pan = pans / centre[None]  # (p, s, 2)
    return StemGains(stem_sos=stem_sos, master_sos=master_sos, eq_pow=eq, master_eq_pow=meq, trim_pow=trim_pow,
                     fader_pow=fader_pow, pan_amp=pans, rel_pan_amp=rel_pan)


@dataclass(frozen=True)
class MixWeights:
    """Each stem's power weight in the mix, before the compressors' and the master's time-varying gains.

    Attributes
    ----------
    band_pow : (pop, stems, 2, B) float64, per channel and band: trim, fader, pan and both EQs.
    linked_pow : (stems, pop, 1) float32, trim and fader times the pan's power summed over the
        channels (what a stereo-linked detector of the mix sees of the stem, before EQ).
    eq_pow : (stems, pop, B) float32, the stem's and the master's EQ power gain per band.
    """

    band_pow: np.ndarray
    linked_pow: np.ndarray
    eq_pow: np.ndarray


def mix_weights(g: StemGains) -> MixWeights:
    """:class:`MixWeights` from the static gains (shapes there)."""
    trim_pow, fader_pow, rel_pan, pans = g.trim_pow, g.fader_pow, g.rel_pan_amp, g.pan_amp
    eq, meq = g.eq_pow, g.master_eq_pow
    # (p, s, 1, 1) * (p, s, 2, 1) * (p, s, 1, B) -> (p, s, 2, B)
    w_mix = (trim_pow * fader_pow)[:, :, None, None] * rel_pan[:, :, :, None] ** 2 * (eq * meq)[:, :, None, :]
    mix_w = (trim_pow * fader_pow * (pans**2).sum(axis=-1)).T[:, :, None].astype(np.float32)  # (s, p, 1)
    eq_mix = (eq * meq).transpose(1, 0, 2).astype(np.float32)  # (s, p, B)
    return MixWeights(band_pow=w_mix, linked_pow=mix_w, eq_pow=eq_mix)
