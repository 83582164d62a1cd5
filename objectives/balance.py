"""Balance: every stem audible, the lead on top, a centred low end, no band sticking out.

``balance = audibility + lead + kick/bass + spatial + spectral`` (each in dB-like units, lower is better):

* audibility: ``sum_s max(0, floor_s - aud_s) / 2`` where ``aud_s`` is the stem's *unmasked*
  K-weighted power in the mix relative to the whole mix, dB: each cell's power counts in
  proportion ``P_s / (P_s + T_rest)`` to how far it rises above the masking threshold of the rest
  of the mix (a partial-loudness proxy in the spirit of Glasberg & Moore's partial loudness, as
  used by Ward et al., "Multitrack mixing using a model of loudness and partial loudness",
  AES 133rd Conv., 2012; threshold as in ``objectives.masking``). Floor -20 dB (fx -30 dB): a stem
  whose audible part is more than ~20 dB under the mix is effectively lost.
* kick/bass: their levels within 4 dB of each other (the low end is shared between them; a common
  engineering rule, cf. De Man & Reiss 2013), penalty ``max(0, |rel_kick - rel_bass| - 4) / 2``;
  "drums" stands in for a missing kick.
* lead: the lead (vocal, else lead) should sit at least the genre's ``vocal_margin_db`` above the
  loudest other stem (De Man & Reiss, "A knowledge-engineered autonomous mixing system",
  AES 135th Conv., 2013: lead vocal loudest or near); penalty ``max(0, loudest_other + margin
  - rel_lead)``.
* spatial: L/R energy imbalance ``|10 log10(E_L / E_R)|`` beyond 1 dB; low end (< 120 Hz) side
  fraction x 10 (low end mono, De Man & Reiss 2013); kick, snare, bass and vocal off centre by
  more than 1.5 dB of L/R level difference, / 3 per dB (capped at 30 dB: hard-panned).
* spectral: RMS deviation (dB) of the mix's long-term 1/3-octave levels from their own 5-band
  moving average, over 40 Hz–16 kHz (a resonant band "sticking out").
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from evomix.core.compiled import lazy_njit
from evomix.core.features import Features
from objectives.base import Target, register
from objectives.spectrum import k_weights, long_term_spectrum_db, side_fraction

_FLOOR = 1e-20
AUDIBILITY_FLOOR_DB = {"fx": -30.0}
DEFAULT_FLOOR_DB = -20.0
CENTRE_ROLES = ("kick", "snare", "bass", "vocal")
LOW_END_HZ = 120.0
MAX_OFF_CENTRE_DB = 30.0
KICK_BASS_TOLERANCE_DB = 4.0


def relative_levels_db(features: Features) -> np.ndarray:
    """Each stem's K-weighted power relative to the mix, dB, (pop, stems)."""
    k = k_weights(features)  # (B,)
    stem = (features.stem_band_power.sum(axis=2) * k).sum(axis=-1)  # (pop, stems)
    mix = (features.mix_power.sum(axis=(1, 3)) * k).sum(axis=-1)  # (pop,)
    return 10.0 * np.log10(np.maximum(stem, _FLOOR) / np.maximum(mix, _FLOOR)[:, None])


def audible_levels_db(features: Features) -> np.ndarray:
    """Each stem's unmasked K-weighted power relative to the mix, dB, (pop, stems)."""
    y = np.ascontiguousarray(features.stem_power)  # (pop, stems, 2, B, T)
    audible = _audible_band_power(y, np.ascontiguousarray(features.rest_threshold, dtype=y.dtype))  # (pop, stems, B)
    k = k_weights(features)  # (B,)
    stem = (audible * k).sum(axis=-1)  # (pop, stems)
    mix = (features.mix_power.sum(axis=(1, 3)) * k).sum(axis=-1)  # (pop,)
    return 10.0 * np.log10(np.maximum(stem, _FLOOR) / np.maximum(mix, _FLOOR)[:, None])


@lazy_njit
def _audible_band_power(power, rest):  # (pop, stems, 2, B, T) x 2 -> (pop, stems, B)
    """``sum over channels and frames of P_s * P_s / (P_s + T_rest)``: each cell's power, counted in
    proportion to how far it rises above the rest of the mix's masking threshold."""
    n_pop, n_stems, n_ch, n_bands, n_t = power.shape
    out = np.zeros((n_pop, n_stems, n_bands))
    for p in range(n_pop):
        for s in range(n_stems):
            for c in range(n_ch):
                for b in range(n_bands):
                    acc = 0.0
                    for t in range(n_t):
                        y = power[p, s, c, b, t]
                        acc += y * (y / max(y + rest[p, s, c, b, t], _FLOOR))
                    out[p, s, b] += acc
    return out


def kick_bass_penalty(features: Features) -> np.ndarray:
    roles = list(features.roles)
    kick = "kick" if "kick" in roles else ("drums" if "drums" in roles else None)
    if kick is None or "bass" not in roles:
        return np.zeros(features.n_pop)
    rel = relative_levels_db(features)
    k = rel[:, [r == kick for r in roles]].max(axis=1)
    b = rel[:, [r == "bass" for r in roles]].max(axis=1)
    return np.maximum(np.abs(k - b) - KICK_BASS_TOLERANCE_DB, 0.0) / 2.0


def audibility_penalty(features: Features) -> np.ndarray:
    rel = audible_levels_db(features)
    floor = np.array([AUDIBILITY_FLOOR_DB.get(r, DEFAULT_FLOOR_DB) for r in features.roles])
    return np.maximum(floor[None, :] - rel, 0.0).sum(axis=1) / 2.0


def lead_penalty(features: Features, margin_db: float) -> np.ndarray:
    roles = list(features.roles)
    lead_role = "vocal" if "vocal" in roles else ("lead" if "lead" in roles else None)
    if lead_role is None or len(roles) < 2:
        return np.zeros(features.n_pop)
    rel = relative_levels_db(features)  # (pop, stems)
    is_lead = np.array([r == lead_role for r in roles])
    lead = rel[:, is_lead].max(axis=1)
    others = rel[:, ~is_lead].max(axis=1) if (~is_lead).any() else lead - margin_db
    return np.maximum(others + margin_db - lead, 0.0)


def spatial_penalty(features: Features) -> np.ndarray:
    e = features.mix_power.sum(axis=(2, 3))  # (pop, 2)
    lr = np.abs(10.0 * np.log10(np.maximum(e[:, 0], _FLOOR) / np.maximum(e[:, 1], _FLOOR)))
    imbalance = np.maximum(lr - 1.0, 0.0)
    low = features.bands_hz < LOW_END_HZ
    if low.any():
        pl = features.mix_power[:, :, low].sum(axis=(2, 3))  # (pop, 2)
        c = features.mix_cross[:, low].sum(axis=(1, 2))  # (pop,)
        low_side = side_fraction(pl[:, 0] + pl[:, 1], c) * 10.0
    else:
        low_side = np.zeros(features.n_pop)
    centre = np.array([r in CENTRE_ROLES for r in features.roles])
    if centre.any():
        sp = features.stem_band_power[:, centre].sum(axis=3)  # (pop, k, 2)
        off = np.abs(10.0 * np.log10(np.maximum(sp[..., 0], _FLOOR) / np.maximum(sp[..., 1], _FLOOR)))
        off = np.minimum(off, MAX_OFF_CENTRE_DB)  # a hard-panned stem counts as 30 dB off
        off_centre = (np.maximum(off - 1.5, 0.0) / 3.0).sum(axis=1)
    else:
        off_centre = np.zeros(features.n_pop)
    return imbalance + low_side + off_centre


def spectral_penalty(features: Features) -> np.ndarray:
    ltas = long_term_spectrum_db(features)  # (pop, B)
    sel = (features.bands_hz >= 40.0) & (features.bands_hz <= 16000.0)
    x = ltas[:, sel]
    smooth = uniform_filter1d(x, size=5, axis=1, mode="nearest")  # (pop, n) 5-band moving average
    return np.sqrt(((x - smooth) ** 2).mean(axis=1))


@register("balance", unit="dB", description="stems audible, lead on top, centred low end, no band sticking out")
def balance(features: Features, target: Target) -> np.ndarray:
    margin = getattr(target.profile, "vocal_margin_db", 0.0)
    return (
        audibility_penalty(features)
        + lead_penalty(features, margin)
        + kick_bass_penalty(features)
        + spatial_penalty(features)
        + spectral_penalty(features)
    )
