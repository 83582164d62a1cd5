"""Balance: every stem audible, the lead on top, backing vocals under it, a centred low end, no band sticking out.

``balance = audibility + lead + backing + role levels + kick/bass + spatial + spectral`` (each in dB-like
units, lower is better):

* audibility: ``sum_s max(0, floor_s - aud_s) / 2`` where ``aud_s`` is the stem's *unmasked*
  K-weighted power in the mix relative to the whole mix, dB: each cell's power counts in
  proportion ``P_s / (P_s + T_rest)`` to how far it rises above the masking threshold of the rest
  of the mix (a partial-loudness proxy in the spirit of Glasberg & Moore's partial loudness, as
  used by Ward et al., "Multitrack mixing using a model of loudness and partial loudness",
  AES 133rd Conv., 2012; threshold as in ``objectives.masking``). Floor -20 dB: a stem whose audible
  part is more than ~20 dB under the mix is effectively lost. Lower floors (``AUDIBILITY_FLOOR_DB``, a
  choice) for the parts an engineer keeps low or that play rarely: fx, toms (fills only) and room
  mics (blended under the close mics) -30 dB; hi-hat, overheads and percussion -25 dB.
* role levels: each role's stems (as one group) within the genre's range relative to the lead
  (``GenreProfile.role_levels_db``, e.g. rock: kick and drums -2..+1 dB, bass -4..0, keys -11..-5),
  1 per dB outside it, on gated levels (:func:`role_level_penalty`). The ranges are a choice
  after De Man & Reiss 2013's ordering (lead on top, kick and bass carrying the song, pads and
  backing parts underneath); they hold the low end up where masking and the limiter would sink it.
* kick/bass: their levels within 4 dB of each other (the low end is shared between them; a common
  engineering rule, cf. De Man & Reiss 2013), penalty ``max(0, |rel_kick - rel_bass| - 4) / 2``;
  "drums" stands in for a missing kick (no other drum part does: toms, hats, overheads, room and
  percussion do not carry the low end).
* lead: the lead (the "vocal" stems, else the "lead" stems; a "backing_vocal" is never the lead)
  should sit at least the genre's ``vocal_margin_db`` above the loudest other stem (De Man & Reiss,
  "A knowledge-engineered autonomous mixing system", AES 135th Conv., 2013: lead vocal loudest or
  near); penalty ``max(0, loudest_other + margin - rel_lead)``.
* backing: every backing vocal at least ``BACKING_MARGIN_DB`` (3 dB) under the lead, penalty
  ``sum_b max(0, g_b - (g_lead - 3))`` over the "backing_vocal" stems ``b``, where ``g`` is a stem's
  *gated* K-weighted level relative to the mix's, dB (:func:`gated_levels_db`: the BS.1770-4 gates,
  -70 LUFS absolute and -10 LU relative, applied to the 50 ms frames, so a backing vocal that sings
  only in the choruses is measured where it sings, as its integrated loudness would be) and
  ``g_lead`` the loudest lead stem's. The rule "the lead vocal loudest" is De Man & Reiss 2013's;
  the 3 dB margin and the weight (1 per dB) are a choice. 0 without a backing vocal or a lead.
* spatial: L/R energy imbalance ``|10 log10(E_L / E_R)|`` beyond 1 dB; low end (< 120 Hz) side
  fraction x 10 (low end mono, De Man & Reiss 2013); kick, snare, bass and (lead) vocal off centre by
  more than 1.5 dB of L/R level difference, / 3 per dB (capped at 30 dB: hard-panned). Not kept
  centred: backing vocals (engineers spread them left and right around the lead), toms, hi-hat and
  percussion (placed across the kit's image), and the stereo parts whose own L/R difference is not
  zero at pan 0 (drums, overheads, room): a penalty on their ILD would ask the pan to undo their
  image.
* spectral: RMS deviation (dB) of the mix's long-term 1/3-octave levels from their own 5-band
  moving average, over 40 Hz–16 kHz (a resonant band "sticking out").
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from evomix.core.compiled import lazy_njit
from evomix.core.constants import POWER_FLOOR
from evomix.core.features import Features
from evomix.core.meter import gated_loudness
from objectives.base import Target, register
from objectives.spectrum import k_weights, long_term_spectrum_db, side_fraction

AUDIBILITY_FLOOR_DB = {"fx": -30.0, "toms": -30.0, "room": -30.0, "hihat": -25.0, "overheads": -25.0,
                       "percussion": -25.0}  # dB, a choice (module docstring)
DEFAULT_FLOOR_DB = -20.0
CENTRE_ROLES = ("kick", "snare", "bass", "vocal")
LEAD_ROLES = ("vocal", "lead")  # the first present is the lead; "backing_vocal" never is
BACKING_ROLE = "backing_vocal"
BACKING_MARGIN_DB = 3.0  # dB, a backing vocal at least this far under the lead (a choice)
SILENT_DB = -150.0  # dB re the mix: a gated level at or under this is a silent stem (about -200 dB)
LOW_END_HZ = 120.0
MAX_OFF_CENTRE_DB = 30.0
KICK_BASS_TOLERANCE_DB = 4.0


def relative_levels_db(features: Features) -> np.ndarray:
    """Each stem's K-weighted power relative to the mix's, dB, (pop, stems).

    Powers summed over channels and frames, K-weighted per band at the band centres
    (:func:`objectives.spectrum.k_weights`, ITU-R BS.1770-4 Annex 1). A silent stem's power is
    floored at ``POWER_FLOOR``, so it reads about -200 dB.
    """
    k = k_weights(features)  # (B,)
    stem = (features.stem_band_power.sum(axis=2) * k).sum(axis=-1)  # (pop, stems)
    mix = (features.mix_power.sum(axis=(1, 3)) * k).sum(axis=-1)  # (pop,)
    return 10.0 * np.log10(np.maximum(stem, POWER_FLOOR) / np.maximum(mix, POWER_FLOOR)[:, None])


def lead_role(roles) -> str | None:
    """The role of the lead: "vocal" if a stem has it, else "lead", else None ("backing_vocal" never)."""
    return next((r for r in LEAD_ROLES if r in tuple(roles)), None)


def gated_levels_db(features: Features, stems=None) -> np.ndarray:
    """Each stem's gated K-weighted level relative to the mix's gated level, dB, (pop, k).

    The BS.1770-4 two-stage gate (absolute -70 LUFS, relative -10 LU;
    :func:`evomix.core.meter.gated_loudness`) on the 400 ms blocks around the features' frames
    (``Features.stem_block_k``, ``mix_block_k``: every frame of an exact render, the heavy frames of
    the fast tier), the stem's and the mix's alike: a stem is measured where it plays, over whole
    blocks, as its integrated loudness is (within 0.2 dB of pyloudnorm's BS.1770 on all 20 stems of
    the engineers' references in ``experiments/mix_quality.py``). Features without
    blocks (synthetic ones): each 50 ms frame gated on its own, which reads a percussive stem too
    loud (a kick's frames between its hits fall under the relative gate: +2.4 dB on the EDM
    song). K-weighting per band at the band centres (:func:`objectives.spectrum.k_weights`). A
    silent stem reads about -200 dB.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes: ``stem_block_k`` (pop, stems, T) and ``mix_block_k`` (pop, T), or
        ``stem_power`` (pop, stems, 2, B, T) and ``mix_power`` (pop, 2, B, T).
    stems : sequence of int, optional
        The stems to measure (default: all), in this order.

    Returns
    -------
    levels : np.ndarray, shape (pop, k), float64, dB
    """
    idx = list(range(len(features.roles)) if stems is None else stems)
    if features.stem_block_k is not None and features.mix_block_k is not None:
        stem = gated_loudness(features.stem_block_k[:, idx, None, :])  # (pop, k): one "channel", weight 1
        return stem - gated_loudness(features.mix_block_k[:, None, :])[:, None]
    k = k_weights(features).astype(features.stem_power.dtype)  # (B,)
    # one stem at a time: a view of stem_power each, no copy of the (pop, k, 2, B, T) selection
    sp = np.stack([np.einsum("pcbt,b->pct", features.stem_power[:, s], k) for s in idx], axis=1)  # (pop, k, 2, T)
    mp = np.einsum("pcbt,b->pct", features.mix_power, k)  # (pop, 2, T)
    return gated_loudness(sp) - gated_loudness(mp)[:, None]


def audible_levels_db(features: Features) -> np.ndarray:
    """Each stem's unmasked K-weighted power relative to the mix's, dB, (pop, stems).

    Each cell's power ``P_s`` counts in proportion ``P_s / (P_s + T_rest)`` (``T_rest`` the masking
    threshold the rest of the mix puts on the stem, ``Features.rest_threshold``): a partial-loudness
    proxy after Ward et al., AES 133rd Conv., 2012. A silent stem reads about -200 dB.
    """
    y = np.ascontiguousarray(features.stem_power)  # (pop, stems, 2, B, T)
    audible = _audible_band_power(y, np.ascontiguousarray(features.rest_threshold, dtype=y.dtype))  # (pop, stems, B)
    k = k_weights(features)  # (B,)
    stem = (audible * k).sum(axis=-1)  # (pop, stems)
    mix = (features.mix_power.sum(axis=(1, 3)) * k).sum(axis=-1)  # (pop,)
    return 10.0 * np.log10(np.maximum(stem, POWER_FLOOR) / np.maximum(mix, POWER_FLOOR)[:, None])


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
                        acc += y * (y / max(y + rest[p, s, c, b, t], POWER_FLOOR))
                    out[p, s, b] += acc
    return out


def role_level_penalty(features: Features, ranges: dict, levels: np.ndarray | None = None,
                       slack_db: float = 0.0) -> np.ndarray:
    """Roles outside the genre's range relative to the lead: ``sum_r max(0, lo_r - x_r) + max(0, x_r - hi_r)``.

    ``x_r`` is role ``r``'s level relative to the lead's, dB: the power sum of the role's stems'
    gated levels (:func:`gated_levels_db`: each stem measured where it plays) over the lead's (the
    power sum of the :func:`lead_role` stems). ``ranges`` is the profile's ``role_levels_db``
    ({role: (lo, hi)}, dB re the lead; e.g. rock: kick and drums -2..+1, bass -4..0, guitars
    -6..-1, keys -11..-5). A "drums" stem beside a "kick" stem is the top of the kit and is held to
    the "snare" range. The lead's own role, roles without a range and silent roles add nothing.

    This is how the low end is kept up (the kick and the bass carry a pop, rock or EDM mix): without
    a lower bound, burying them pays twice, as it masks less (low stems mask upward) and frees
    limiter headroom at the loudness target (issue 21's ablation: each pulls the low end 1.5-2 dB down).

    Source: the ordering (the lead loudest, kick and bass carrying the song, pads and backing
    parts underneath) after De Man & Reiss, "A knowledge-engineered autonomous mixing system",
    AES 135th Conv., 2013; the ranges themselves are a choice (no published per-role measurement
    we could check gives numbers; the profiles' ``role_levels_source`` says so), the weight 1 per dB.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; ``roles`` name the lead and the other stems.
    ranges : dict
        {role: (lo, hi)} dB re the lead; empty switches the term off.
    levels : np.ndarray, shape (pop, stems), optional
        :func:`gated_levels_db` of every stem, if already computed.
    slack_db : float, dB >= 0
        Widens every range by this much on each side (:func:`role_errors_db`).

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 without ranges, without a lead (or with a silent one), and when every role is in its range.
    """
    roles = list(features.roles)
    lead = lead_role(roles)
    if not ranges or lead is None or len(roles) < 2:
        return np.zeros(features.n_pop)
    g = gated_levels_db(features) if levels is None else levels  # (pop, stems)
    power = 10.0 ** (g / 10.0)  # (pop, stems) re the mix

    def group_db(members) -> np.ndarray:
        return 10.0 * np.log10(np.maximum(power[:, members].sum(axis=1), POWER_FLOOR))  # (pop,)

    top = group_db([s for s, r in enumerate(roles) if r == lead])
    out = np.zeros(features.n_pop)
    for role in sorted(set(roles) - {lead}):
        key = "snare" if role == "drums" and "kick" in roles else role
        if key not in ranges:
            continue
        lo, hi = ranges[key][0] - slack_db, ranges[key][1] + slack_db
        x = group_db([s for s, r in enumerate(roles) if r == role]) - top
        out += np.where(x > SILENT_DB, np.maximum(lo - x, 0.0) + np.maximum(x - hi, 0.0), 0.0)
    return np.where(top > SILENT_DB, out, 0.0)  # a silent lead: nothing to measure against


ROLE_ERROR_DB = 2.0  # dB beyond a role's range: an error, not an alternative (a choice)


def role_errors_db(features: Features, target: Target) -> np.ndarray:
    """How far (dB, summed over roles) each mix puts a role more than ``ROLE_ERROR_DB`` outside the
    genre's range re the lead (:func:`role_level_penalty` with that slack): a bass 7 dB under its
    range is a mix without a bass, not an option. The search treats a mix with errors as infeasible
    (``evomix.search.problem.Problem``, Deb's constrained domination), so the front holds none while
    any mix without them is found. (pop,) float64 dB >= 0; 0 for a genre without ranges."""
    return role_level_penalty(features, getattr(target.profile, "role_levels_db", {}), slack_db=ROLE_ERROR_DB)


def kick_bass_penalty(features: Features) -> np.ndarray:
    """Kick and bass more than ``KICK_BASS_TOLERANCE_DB`` apart: ``max(0, |rel_kick - rel_bass| - 4) / 2``.

    Source: De Man & Reiss, AES 135th Conv., 2013 (the low end shared by kick and bass); the
    4 dB tolerance and the halving are a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; ``roles`` name the kick ("drums" stands in for a missing kick)
        and the bass.

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 without both a kick (or drums) and a bass stem.
    """
    roles = list(features.roles)
    kick = "kick" if "kick" in roles else ("drums" if "drums" in roles else None)
    if kick is None or "bass" not in roles:
        return np.zeros(features.n_pop)
    rel = relative_levels_db(features)
    k = rel[:, [r == kick for r in roles]].max(axis=1)
    b = rel[:, [r == "bass" for r in roles]].max(axis=1)
    return np.maximum(np.abs(k - b) - KICK_BASS_TOLERANCE_DB, 0.0) / 2.0


def audibility_penalty(features: Features) -> np.ndarray:
    """Stems lost in the mix: ``sum_s max(0, floor_s - aud_s) / 2`` over :func:`audible_levels_db`.

    The floor is ``DEFAULT_FLOOR_DB`` (-20 dB), ``AUDIBILITY_FLOOR_DB`` for some roles (fx -30 dB);
    the floors and the halving are a choice. Source: Ward et al., "Multitrack mixing using a
    model of loudness and partial loudness", AES 133rd Conv., 2012 (every stem audible).

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes.

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 when every stem's unmasked part is within its floor of the mix.
    """
    rel = audible_levels_db(features)
    floor = np.array([AUDIBILITY_FLOOR_DB.get(r, DEFAULT_FLOOR_DB) for r in features.roles])
    return np.maximum(floor[None, :] - rel, 0.0).sum(axis=1) / 2.0


def lead_penalty(features: Features, margin_db: float) -> np.ndarray:
    """The lead under the loudest other stem plus a margin: ``max(0, loudest_other + margin - lead)``.

    Source: De Man & Reiss, "A knowledge-engineered autonomous mixing system", AES 135th Conv.,
    2013 (the lead vocal loudest or near it).

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; the lead is the "vocal" stem, else the "lead" stem (a
        "backing_vocal" is never the lead: it counts among the others).
    margin_db : float, dB
        How far the lead should sit above the loudest other stem (the genre's ``vocal_margin_db``,
        0-3 dB in the built-in profiles).

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 without a lead or with fewer than two stems.
    """
    roles = list(features.roles)
    lead = lead_role(roles)
    if lead is None or len(roles) < 2:
        return np.zeros(features.n_pop)
    rel = relative_levels_db(features)  # (pop, stems)
    is_lead = np.array([r == lead for r in roles])
    top = rel[:, is_lead].max(axis=1)
    others = rel[:, ~is_lead].max(axis=1) if (~is_lead).any() else top - margin_db
    return np.maximum(others + margin_db - top, 0.0)


def backing_penalty(features: Features, margin_db: float = BACKING_MARGIN_DB) -> np.ndarray:
    """Backing vocals not under the lead: ``sum_b max(0, g_b - (g_lead - margin))``.

    ``g`` is :func:`gated_levels_db` (each stem measured where it plays), ``g_lead`` the loudest
    lead stem's (:func:`lead_role`: the vocal, else the lead), ``b`` every "backing_vocal" stem.

    Source: De Man & Reiss, "A knowledge-engineered autonomous mixing system", AES 135th Conv.,
    2013, for the rule (the lead vocal loudest); the margin (``BACKING_MARGIN_DB``, 3 dB) and the
    weight (1 per dB over) are a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; ``roles`` name the lead and the backing vocals.
    margin_db : float, dB
        How far under the lead each backing vocal should sit at least.

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 without a backing vocal or without a lead (or with a silent one), and when every backing
        vocal is at least ``margin_db`` under the lead.
    """
    roles = list(features.roles)
    lead = lead_role(roles)
    backing = [s for s, r in enumerate(roles) if r == BACKING_ROLE]
    if lead is None or not backing:
        return np.zeros(features.n_pop)
    leads = [s for s, r in enumerate(roles) if r == lead]
    g = gated_levels_db(features, leads + backing)  # (pop, leads + backing)
    top = g[:, : len(leads)].max(axis=1)
    over = np.maximum(g[:, len(leads):] - (top - margin_db)[:, None], 0.0).sum(axis=1)
    return np.where(top > SILENT_DB, over, 0.0)  # a silent lead: nothing to sit under


def spatial_penalty(features: Features) -> np.ndarray:
    """Stereo image: L/R imbalance, a wide low end and centre roles panned off centre.

    ``max(0, |10 log10(E_L / E_R)| - 1) + 10 side_fraction(< LOW_END_HZ)
    + sum_{centre roles} max(0, min(|ILD_s|, 30) - 1.5) / 3``, all in dB-like units.

    Source: De Man & Reiss, AES 135th Conv., 2013 (low end mono; kick, snare, bass and lead vocal
    centred). The 1 dB and 1.5 dB allowances, the factors 10 and 1/3 and the 30 dB cap
    (``MAX_OFF_CENTRE_DB``) are a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes. Reads ``mix_power`` (pop, 2, B, T), ``mix_cross`` (pop, B, T),
        ``stem_band_power`` (pop, stems, 2, B), ``bands_hz`` (B,) and ``roles``.

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, >= 0
        0 for a balanced mix with a mono low end and the ``CENTRE_ROLES`` centred.
    """
    e = features.mix_power.sum(axis=(2, 3))  # (pop, 2)
    lr = np.abs(10.0 * np.log10(np.maximum(e[:, 0], POWER_FLOOR) / np.maximum(e[:, 1], POWER_FLOOR)))
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
        off = np.abs(10.0 * np.log10(np.maximum(sp[..., 0], POWER_FLOOR) / np.maximum(sp[..., 1], POWER_FLOOR)))
        off = np.minimum(off, MAX_OFF_CENTRE_DB)  # a hard-panned stem counts as 30 dB off
        off_centre = (np.maximum(off - 1.5, 0.0) / 3.0).sum(axis=1)
    else:
        off_centre = np.zeros(features.n_pop)
    return imbalance + low_side + off_centre


def spectral_penalty(features: Features) -> np.ndarray:
    """A band sticking out: RMS deviation of the mix's 1/3-octave LTAS from its 5-band moving average.

    Over the bands with centres in 40 Hz-16 kHz; the smoothing width is a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes; reads ``mix_power`` (pop, 2, B, T) and the band layout.

    Returns
    -------
    penalty : np.ndarray, shape (pop,), float64, dB >= 0
        0 for a spectrum that is locally straight (on the 5-band scale).
    """
    ltas = long_term_spectrum_db(features)  # (pop, B)
    sel = (features.bands_hz >= 40.0) & (features.bands_hz <= 16000.0)
    x = ltas[:, sel]
    smooth = uniform_filter1d(x, size=5, axis=1, mode="nearest")  # (pop, n) 5-band moving average
    return np.sqrt(((x - smooth) ** 2).mean(axis=1))


@register("balance", unit="dB",
          description="stems audible, lead on top, backing vocals under it, centred low end, no band sticking out")
def balance(features: Features, target: Target) -> np.ndarray:
    """Every stem audible, the lead on top, backing vocals under it, a centred low end, no band sticking out.

    ``audibility + lead + backing + role levels + kick/bass + spatial + spectral``: the sum of
    :func:`audibility_penalty`, :func:`lead_penalty`, :func:`backing_penalty`,
    :func:`role_level_penalty`, :func:`kick_bass_penalty`, :func:`spatial_penalty` and
    :func:`spectral_penalty` (each described in the module docstring).

    Source: Ward et al., "Multitrack mixing using a model of loudness and partial loudness",
    AES 133rd Conv., 2012 (audibility); B. De Man, J. D. Reiss, "A knowledge-engineered
    autonomous mixing system", AES 135th Conv., 2013 (lead, backing under the lead, kick/bass, low
    end mono, centred roles). Every floor, allowance, margin and weight is a choice (named in the
    module).

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes: ``stem_power`` and ``rest_threshold`` (pop, stems, 2, B, T),
        ``mix_power`` (pop, 2, B, T) and ``mix_cross`` (pop, B, T), float32 mean square per 50 ms
        hop (full-scale sine = 0.5), ``bands_hz`` (B,) Hz and ``roles`` (stems,).
    target : Target
        ``profile.vocal_margin_db`` (dB, 0 if the profile has none) sets the lead's margin,
        ``profile.role_levels_db`` the roles' ranges re the lead (none if the profile has none).

    Returns
    -------
    balance : np.ndarray, shape (pop,), float64, dB-like units >= 0
        0 for a mix that meets every rule; a silent stem alone adds about 90 ((-20 + 200) / 2).
    """
    margin = getattr(target.profile, "vocal_margin_db", 0.0)
    return (
        audibility_penalty(features)
        + lead_penalty(features, margin)
        + role_level_penalty(features, getattr(target.profile, "role_levels_db", {}))
        + backing_penalty(features)
        + kick_bass_penalty(features)
        + spatial_penalty(features)
        + spectral_penalty(features)
    )
