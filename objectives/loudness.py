"""Loudness objective: hit the target loudness with the dynamics the genre calls for.

``loudness = |L - L_target| + 0.5 dev(PLR, PLR_genre, 1.5) + 0.25 dev(LRA, LRA_genre, 2)
+ 0.5 max(0, GR_limiter - 2)``, in LU/dB, lower is better, where ``dev(x, x0, tol) =
max(0, |x - x0| - tol)`` and

* ``L`` is the master's integrated loudness (ITU-R BS.1770-4), ``L_target`` = ``--target-lufs``;
* ``PLR`` = true peak - integrated loudness (dB), compared with the genre's typical PLR
  (≈ 8–10 dB for loud pop/EDM, 12–20 dB for jazz, acoustic, classical: Deruty & Tardieu,
  "About dynamic processing in mainstream music", JAES 62(1/2), 2014);
* ``LRA`` = loudness range (EBU Tech 3342), compared with the genre's typical LRA
  (Skovenborg, "Loudness Range (LRA) — design and evaluation", AES 132nd Conv., 2012);
* ``GR_limiter`` = how far the normalised mix's true peak exceeds the ceiling, i.e. how hard the
  limiter must work; the first 2 dB are free, beyond that the mix should get its density from
  the compressors rather than from the brickwall limiter.

The measurement functions (BS.1770-4, Tech 3341/3342, true peak) live in ``evomix.core.meter``.
"""
from __future__ import annotations

import numpy as np

from evomix.core.features import Features
from objectives.base import Target, register

FREE_LIMITING_DB = 2.0  # dB of limiter gain reduction that cost nothing (a choice)
PLR_TOLERANCE_DB = 1.5  # dB of PLR difference from the genre's that cost nothing (a choice)
LRA_TOLERANCE_LU = 2.0  # LU of LRA difference from the genre's that cost nothing (a choice)


def _dev(x, x0, tol):
    """``max(0, |x - x0| - tol)``: the distance of ``x`` from ``x0`` beyond a tolerance."""
    return np.maximum(np.abs(x - x0) - tol, 0.0)


@register("loudness", unit="LU",
          description="distance to the target loudness plus PLR/LRA distance to the genre and excess limiting")
def loudness(features: Features, target: Target) -> np.ndarray:
    """Distance from the target loudness, the genre's dynamics, and limiting beyond what is free.

    ``|L - L_target| + 0.5 dev(PLR, PLR_genre, 1.5) + 0.25 dev(LRA, LRA_genre, 2)
    + 0.5 max(0, GR - 2)`` (terms in the module docstring).

    Source: ITU-R BS.1770-4 (integrated loudness, true peak); EBU Tech 3342 (LRA); E. Deruty,
    D. Tardieu, "About dynamic processing in mainstream music", JAES 62(1/2), 2014 (PLR);
    E. Skovenborg, "Loudness Range (LRA) - design and evaluation", AES 132nd Conv., 2012 (LRA by
    genre). The weights 0.5 / 0.25 / 0.5 and the tolerances ``PLR_TOLERANCE_DB``,
    ``LRA_TOLERANCE_LU`` and ``FREE_LIMITING_DB`` are a choice.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` masters. Reads ``loudness_lufs`` (pop,) LUFS, ``plr_db`` (pop,) dB
        (true peak - loudness), ``lra_lu`` (pop,) LU >= 0 and ``limiter_gr_db`` (pop,) dB >= 0.
    target : Target
        ``target_lufs`` (LUFS), and ``profile.plr_db`` (dB) and ``profile.lra_lu`` (LU).

    Returns
    -------
    loudness_lu : np.ndarray, shape (pop,), float64, LU >= 0
        0 for a master at the target loudness whose PLR and LRA are within tolerance of the
        genre's and whose limiter takes at most ``FREE_LIMITING_DB`` off the peaks.
    """
    prof = target.profile
    distance = np.abs(features.loudness_lufs - target.target_lufs)
    plr = _dev(features.plr_db, prof.plr_db, PLR_TOLERANCE_DB)
    lra = _dev(features.lra_lu, prof.lra_lu, LRA_TOLERANCE_LU)
    limiting = np.maximum(features.limiter_gr_db - FREE_LIMITING_DB, 0.0)
    return distance + 0.5 * plr + 0.25 * lra + 0.5 * limiting
