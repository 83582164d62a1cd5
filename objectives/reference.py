"""Reference: distance of the mix's band envelopes from a rough mix of the same stems.

``reference = mean_cells |D - median(D)|`` in dB, where ``D = 10 log10(mix) - 10 log10(ref)`` per
channel, critical band and 50 ms frame, over the cells where either signal is within 60 dB of its
loudest cell. Subtracting the median makes it independent of overall level (both are normalised
masters); what remains is the difference in balance, panning, EQ and dynamics over time. It is 0 for
a mix identical to the reference up to a gain. Only active when ``Target.reference_power`` is set
(``--reference`` with a rough mix of the same stems).

Source: log-spectral distance (e.g. Gray & Markel, "Distance measures for speech processing",
IEEE Trans. ASSP 24(5), 1976), applied to critical-band envelopes; used here as in reference-based
mixing (the rough mix as the target balance).
"""
from __future__ import annotations

import numpy as np

from evomix.core.constants import POWER_FLOOR
from evomix.core.features import Features
from objectives.base import Target, register

RANGE_DB = 60.0  # dB below its loudest cell within which a cell of either signal counts (a choice)


def envelope_distance_db(mix_power: np.ndarray, ref_power: np.ndarray) -> np.ndarray:
    """Level-independent mean absolute dB difference of band envelopes.

    ``mean_cells |D - median(D)|`` with ``D = 10 log10(mix) - 10 log10(ref)`` per cell, over the
    cells where either signal is within ``RANGE_DB`` of its loudest cell; each signal is floored
    ``RANGE_DB`` below its loudest cell first, so cells far below both compare equal.

    Source: log-spectral distance (Gray & Markel, "Distance measures for speech processing",
    IEEE Trans. ASSP 24(5), 1976) on critical-band envelopes; the median offset (level
    independence) and ``RANGE_DB`` are a choice.

    Parameters
    ----------
    mix_power : np.ndarray, shape (pop, 2, B, T), float >= 0
        Band powers of the candidates' mixes, mean square per hop (full-scale sine = 0.5).
    ref_power : np.ndarray, shape (2, B, T), float >= 0
        Band powers of the reference on the same bands and frames.

    Returns
    -------
    distance_db : np.ndarray, shape (pop,), float64, dB >= 0
        0 when a mix equals the reference up to a gain.
    """
    m = 10.0 * np.log10(np.maximum(mix_power, POWER_FLOOR))
    r = 10.0 * np.log10(np.maximum(ref_power, POWER_FLOOR))[None]
    active = (r > r.max() - RANGE_DB) | (m > m.max(axis=(1, 2, 3), keepdims=True) - RANGE_DB)  # (pop, 2, B, T)
    floor_m = m.max(axis=(1, 2, 3), keepdims=True) - RANGE_DB
    floor_r = r.max() - RANGE_DB
    d = np.maximum(m, floor_m) - np.maximum(r, floor_r)  # cells far below both floors compare equal
    n = active.reshape(len(m), -1).sum(axis=1)
    dm = np.where(active, d, np.nan).reshape(len(m), -1)
    med = np.nanmedian(dm, axis=1)
    return np.nansum(np.abs(dm - med[:, None]), axis=1) / np.maximum(n, 1)


@register("reference", unit="dB",
          description="band-envelope distance to a rough mix of the same stems (only with --reference)")
def reference(features: Features, target: Target) -> np.ndarray:
    """Distance of the mix's band envelopes from a rough mix of the same stems.

    :func:`envelope_distance_db` of ``features.mix_power`` and ``target.reference_power`` on the
    frames the features hold.

    Source: log-spectral distance (Gray & Markel, IEEE Trans. ASSP 24(5), 1976), applied to
    critical-band envelopes, with the rough mix as the target balance (a choice).

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes: ``mix_power`` (pop, 2, B, T) float32, mean square per 50 ms
        hop (full-scale sine = 0.5), and ``frames`` (T,) int, the analysis frames held (None:
        all of them).
    target : Target
        ``reference_power`` (2, B, T_all): the reference's band powers on every analysis frame,
        or None (no reference).

    Returns
    -------
    reference_db : np.ndarray, shape (pop,), float64, dB >= 0
        0 for a mix equal to the reference up to a gain, and for every mix without a reference.
    """
    if target.reference_power is None:
        return np.zeros(features.n_pop)
    frames = features.frames if features.frames is not None else np.arange(target.reference_power.shape[-1])
    return envelope_distance_db(features.mix_power, target.reference_power[..., frames])
