"""Masking: how much of each stem is hidden under the rest of the mix, in critical bands.

Model (after Hafezi & Reiss 2015, with the spreading and offset of the MPEG-1 psychoacoustic model):

* the masker of stem ``s`` is the rest of the mix, ``R = mix - s`` (per channel, band, 50 ms frame);
* its excitation is spread across bands with the Schroeder et al. (1979) spreading function
  ``SF(dz) = 15.81 + 7.5 (dz + 0.474) - 17.5 sqrt(1 + (dz + 0.474)^2)`` dB (dz in Bark);
* the masking threshold lies ``O(z) = a (14.5 + z) + (1 - a) 5.5`` dB below the spread masker
  (Johnston 1988; ``a = 0.5``: music is neither pure tone nor pure noise); ``O(z)`` and ``a`` are
  ``threshold_offset_db`` and ``TONALITY`` in ``evomix.core.features``, because
  ``Features.rest_threshold`` applies them once per batch for masking and balance alike;
* the masker-to-signal ratio ``MSR = T_R / P_s`` in dB, counted where positive, is averaged
  over channels, bands and frames weighted by the stem's own power (a loud band that is masked
  counts more than a quiet one): ``m_s = sum(P_s max(0, 10 log10 MSR)) / sum(P_s)``, dB;
* the scalar is the role-priority-weighted mean of ``m_s`` over audible stems (vocal and lead
  matter most, ``ROLE_PRIORITY``; a backing vocal counts as one more part, not as the lead).

Properties (tested): invariant to an overall gain change (ratios only); falls when a conflicting
band is EQ-carved or the stems are panned apart (masking is per channel); rises when a masker
is boosted. Burying a stem raises *its own* masking, and ``balance`` penalises burying too.

Source: S. Hafezi, J. D. Reiss, "Autonomous multitrack equalization based on masking reduction",
JAES 63(5), 2015; J. D. Johnston, "Transform coding of audio signals using perceptual noise
criteria", IEEE JSAC 6(2), 1988; M. R. Schroeder, B. S. Atal, J. L. Hall, JASA 66(6), 1979.
"""
from __future__ import annotations

import numpy as np

from evomix.core.compiled import lazy_njit
from evomix.core.constants import POWER_FLOOR
from evomix.core.features import Features
from objectives.base import Target, register

PRESENT_DB = 30.0  # a stem counts in a band's profile if within this of its strongest band
# A choice. The lead vocal counts most; a backing vocal as one more part (it is meant to sit under the
# lead, so its masking is not worth the lead's), the drum parts of a split kit as instruments, room
# mics (ambience, meant to blend under the close mics) as little as a pad.
ROLE_PRIORITY = {
    "vocal": 3.0, "lead": 2.5, "kick": 1.5, "snare": 1.5, "bass": 1.5, "drums": 1.2,
    "guitar": 1.0, "keys": 1.0, "piano": 1.0, "synth": 1.0, "other": 1.0, "pad": 0.7, "fx": 0.5,
    "backing_vocal": 1.0, "toms": 1.0, "hihat": 1.0, "overheads": 1.0, "percussion": 1.0, "room": 0.7,
}


def masker_to_signal_db(features: Features) -> np.ndarray:
    """Positive part of the masker-to-signal ratio, dB, per cell (pop, stems, 2, B, T).

    ``MSR = O(z) * spread(rest) / P_s`` with ``rest = mix - s`` (eq. of the module docstring).
    """
    y = np.ascontiguousarray(features.stem_power)  # (pop, stems, 2, B, T)
    msr = _masker_ratio(y, np.ascontiguousarray(features.rest_threshold, dtype=y.dtype))  # one buffer, worked in place
    np.log10(msr, out=msr)
    msr *= msr.dtype.type(10.0)
    return msr


@lazy_njit
def _masker_ratio(power, rest):  # (pop, stems, 2, B, T) x 2 -> same
    """``max(rest / max(power, floor), 1)`` per cell (the ratio whose dB is counted)."""
    flat_p, flat_r = power.reshape(-1), rest.reshape(-1)
    out = np.empty_like(flat_p)
    for i in range(flat_p.size):
        out[i] = max(flat_r[i] / max(flat_p[i], POWER_FLOOR), 1.0)
    return out.reshape(power.shape)


def masking_per_stem(features: Features) -> np.ndarray:
    """Power-weighted mean positive masker-to-signal ratio of each stem, dB, (pop, stems)."""
    y = features.stem_power
    n_pop, n_stems = y.shape[:2]
    msr_db = masker_to_signal_db(features).reshape(n_pop, n_stems, -1)  # (pop, stems, 2, B, T) -> (pop, stems, 2 B T)
    num = np.einsum("psk,psk->ps", y.reshape(n_pop, n_stems, -1), msr_db)
    return num / np.maximum(features.stem_band_power.sum(axis=(2, 3)), POWER_FLOOR)


def masking_matrix(features: Features) -> np.ndarray:
    """Who masks whom: (pop, maskee, masker) share of each maskee's masking caused by each masker.

    The masking of stem ``i`` is split across maskers ``j != i`` in proportion to their spread
    power in the cells where ``i`` is masked (rows sum to the masking of ``i``, dB).
    """
    y = features.stem_power
    sp = features.stem_spread
    total = sp.sum(axis=1, keepdims=True)
    # (pop, i, 2, B, T): each cell's share of stem i's power times its masking, dB
    w = y * masker_to_signal_db(features) / np.maximum(y.sum(axis=(2, 3, 4), keepdims=True), POWER_FLOOR)
    n = y.shape[1]
    out = np.zeros((y.shape[0], n, n))
    for j in range(n):  # small loop over maskers (stems), vectorized over pop
        share = sp[:, j : j + 1] / np.maximum(total - sp, POWER_FLOOR)  # (pop, i, 2, B, T)
        out[:, :, j] = (w * share).sum(axis=(2, 3, 4))
        out[:, j, j] = 0.0
    return out


def masking_by_band(features: Features) -> np.ndarray:
    """Per-band masking profile, dB, (pop, B).

    In each band, each stem's masking (its power-weighted positive MSR over channels and frames)
    is averaged over the stems present in that band (band power within ``PRESENT_DB`` of the stem's
    strongest band), weighted by role priority. Each stem counts by its role, not its loudness, so
    a quiet masked vocal is not hidden by the loud stem masking it.
    """
    y = features.stem_power  # (pop, stems, 2, B, T)
    msr_db = masker_to_signal_db(features)
    band_pow = features.stem_band_power.sum(axis=2)  # (pop, stems, B)
    per_stem = (y * msr_db).sum(axis=(2, 4)) / np.maximum(band_pow, POWER_FLOOR)  # (pop, stems, B)
    present = band_pow > band_pow.max(axis=2, keepdims=True) * 10.0 ** (-PRESENT_DB / 10.0)
    w = np.array([ROLE_PRIORITY.get(r, 1.0) for r in features.roles])[None, :, None] * present
    return (per_stem * w).sum(axis=1) / np.maximum(w.sum(axis=1), POWER_FLOOR)


def role_weights(roles, audible: np.ndarray) -> np.ndarray:
    """Priority weight of each stem (pop, stems); 0 for stems with no power in the mix."""
    w = np.array([ROLE_PRIORITY.get(r, 1.0) for r in roles])
    return w[None, :] * audible


@register("masking", unit="dB",
          description="role-weighted mean masker-to-signal ratio of each stem under the rest of the mix")
def masking(features: Features, target: Target) -> np.ndarray:
    """How much of the stems the rest of the mix hides: the role-weighted mean of their masking.

    ``masking = sum_s w_s m_s / sum_s w_s`` with ``m_s`` the power-weighted mean positive
    masker-to-signal ratio of stem ``s`` (:func:`masking_per_stem`, the model in the module
    docstring) and ``w_s`` its ``ROLE_PRIORITY`` weight, 0 for a stem with no power in the mix.

    Source: S. Hafezi, J. D. Reiss, "Autonomous multitrack equalization based on masking
    reduction", JAES 63(5), 2015 (the rest of the mix as the masker, a masked ratio per band and
    frame); J. D. Johnston, IEEE JSAC 6(2), 1988 (threshold offset); M. R. Schroeder, B. S. Atal,
    J. L. Hall, JASA 66(6), 1979 (spreading function). The role weights and the power weighting
    over cells are a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes. Reads ``stem_power`` (pop, stems, 2, B, T) float32, each stem's
        power in the mix as mean square per 50 ms hop (full-scale sine = 0.5), the
        ``rest_threshold`` computed from ``stem_spread`` (same shape) and ``band_bark`` (B,),
        and ``roles`` (stems,).
    target : Target
        Not read: masking depends on the mix alone.

    Returns
    -------
    masking_db : np.ndarray, shape (pop,), float64, dB >= 0
        0 when no stem is masked anywhere (or none is audible); grows as stems sink under the
        masking threshold of the rest. Invariant to an overall gain change.
    """
    m = masking_per_stem(features)  # (pop, stems)
    audible = (features.stem_band_power.sum(axis=(2, 3)) > POWER_FLOOR).astype(float)
    w = role_weights(features.roles, audible)
    return (m * w).sum(axis=1) / np.maximum(w.sum(axis=1), POWER_FLOOR)
