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

FREE_LIMITING_DB = 2.0


def _dev(x, x0, tol):
    return np.maximum(np.abs(x - x0) - tol, 0.0)


@register("loudness", unit="LU", description="distance to the target loudness plus PLR/LRA distance to the genre and excess limiting")
def loudness(features: Features, target: Target) -> np.ndarray:
    prof = target.profile
    distance = np.abs(features.loudness_lufs - target.target_lufs)
    plr = _dev(features.plr_db, prof.plr_db, 1.5)
    lra = _dev(features.lra_lu, prof.lra_lu, 2.0)
    limiting = np.maximum(features.limiter_gr_db - FREE_LIMITING_DB, 0.0)
    return distance + 0.5 * plr + 0.25 * lra + 0.5 * limiting
