"""The space ladder: send-shifted copies of the front's good mixes, so the alternatives span the
genre's space range.

The search's objectives are flat inside the genre's space range (``objectives.genre.space_penalty``
counts only what lies outside), and the return masks the stems, so the front gathers toward the dry
end of the range (``experiments/results/mix_quality_space.txt``: spans of 1.4-3.3 LU on dry songs
whose ranges are 7-8 LU wide). How wet a mix is, though, is a choice a musician makes by ear, one
of the differences worth hearing side by side. So before the alternatives are chosen, each of the
front's best mixes (``MAX_PARENTS``, by weighted score) is copied at ``k`` return levels spread over
the range (``space_targets``): every open send of the copy moves by the same number of dB (a
send that is off stays off; each send stays in its own range), which moves the return's level by
about as many LU (the return is linear in the sends until the master compressor and limiter),
refined by ``REFINE_STEPS`` fast-tier measurements. A copy is a candidate like the front's members
(fast-tier scores, descriptors); one that is infeasible is dropped, and a copy is eligible exactly
when its parent is (``select.choose_alternatives``' ``parents``): a wet copy of a good mix competes
as that mix. The choice then takes the driest and the wettest good mix second and third
(``select``'s SPACE_SPREAD), near the two ends of the range.

The outermost targets are the range's ends (``LADDER_MARGIN_LU``, a choice): on the six songs of
``experiments/mix_quality.py`` the exported copies' exact return levels lay 0.5-0.8 LU inside the
fast tier's target, so a 0.3 LU margin left spans of 5.5-5.7 LU on 7 LU ranges. The driest and the
wettest pick are taken inside the range (``select.SPACE_RANGE_SLACK``).
"""
from __future__ import annotations

import numpy as np

from evomix.choose.describe import JND, fast_descriptors
from evomix.search.genome import REVERB_SEND_OFF_DB, GeneTable
from evomix.search.problem import INFEASIBLE

LADDER_MARGIN_LU = 0.0  # LU inside each end of the genre's space range: the outermost targets (a choice)
MIN_SHIFT_LU = 1.0  # a copy within this of its parent's level adds nothing (the JND of space is 3 LU)
MAX_PARENTS = 24  # members copied, best weighted score first (cost: MAX_PARENTS x k x (2 + REFINE_STEPS) evals)
MAX_TARGETS = 8  # return levels at most, whatever k (a run asking for 1,000 alternatives gets 8 levels)
REFINE_STEPS = 1  # fast-tier re-measurements of each copy's level after the first shift


def space_targets(profile, k: int) -> np.ndarray | None:
    """``k`` return levels (LU re the mix) evenly spread over the profile's ``space_lu`` range,
    ``LADDER_MARGIN_LU`` inside its ends; None without a space target or for k < 2."""
    space = getattr(profile, "space_lu", None)
    if space is None or k < 2:
        return None
    lo, hi = float(space[0]) + LADDER_MARGIN_LU, float(space[1]) - LADDER_MARGIN_LU
    return np.linspace(lo, hi, int(k)) if hi > lo else None


def space_range_jnd(profile) -> tuple | None:
    """The profile's ``space_lu`` range in the listener descriptors' JND units (``describe.JND``), or None."""
    space = getattr(profile, "space_lu", None)
    if space is None:
        return None
    jnd = JND["space_lu"]
    return float(space[0]) / jnd, float(space[1]) / jnd


def _space_lu(analysis, table: GeneTable, G: np.ndarray, target) -> np.ndarray:
    """(n,) fast-tier return level (LU re the mix) of genomes ``G`` (n, genes)."""
    return fast_descriptors(analysis, table, G, target_lufs=target.target_lufs,
                            ceiling_dbtp=target.ceiling_dbtp)["space_lu"]


def _shifted(table: GeneTable, analysis, G: np.ndarray, shift_db: np.ndarray) -> np.ndarray:
    """Genomes ``G`` (n, genes) with every open send moved by ``shift_db`` (n,) dB, each send
    clipped to its stem's range; sends that are off stay off."""
    params = table.decode(G, analysis.trim_db)
    sends = np.array(params.reverb_send_db, dtype=float)  # (n, stems)
    low = np.array([table.gene("reverb_send_db", s).low for s in range(table.n_stems)])
    high = np.array([table.gene("reverb_send_db", s).high for s in range(table.n_stems)])
    open_ = sends > REVERB_SEND_OFF_DB
    moved = np.clip(sends + shift_db[:, None], np.maximum(low, REVERB_SEND_OFF_DB + 1e-6)[None, :], high[None, :])
    object.__setattr__(params, "reverb_send_db", np.where(open_, moved, sends))
    return table.encode(params)


def space_ladder(problem, table: GeneTable, analysis, target, G: np.ndarray, F: np.ndarray, k: int):
    """Copies of the best front members at ``k`` return levels over the genre's range.

    ``G`` (n, genes) and ``F`` (n, n_obj) are the front's genomes and weighted scores. Returns
    ``(G_copies, F_copies, parents)``: the feasible copies' genomes, weighted scores and the index
    of the member each copies (empty arrays when the table has no open send or the profile no
    space target).
    """
    targets = space_targets(target.profile, min(int(k), MAX_TARGETS))
    empty = (np.zeros((0, G.shape[1])), np.zeros((0, F.shape[1])), np.zeros(0, dtype=int))
    if targets is None or len(G) == 0 or not table.has_open_sends:
        return empty
    feasible = np.flatnonzero((F < INFEASIBLE).all(axis=1))
    if feasible.size == 0:
        return empty
    score = (F[feasible] / np.maximum(np.abs(F[feasible]).max(axis=0), 1e-12)).sum(axis=1)
    parents = feasible[np.argsort(score, kind="stable")[:MAX_PARENTS]]
    level = _space_lu(analysis, table, G[parents], target)  # (p,)
    pp, tt = np.meshgrid(np.arange(len(parents)), targets, indexing="ij")  # (p, k) each
    want = tt.ravel()
    src = pp.ravel()
    far = np.abs(want - level[src]) >= MIN_SHIFT_LU
    want, src = want[far], src[far]
    if src.size == 0:
        return empty
    shift = want - level[src]
    copies = _shifted(table, analysis, G[parents[src]], shift)
    for _ in range(REFINE_STEPS):  # the master chain bends the line a little: measure and correct once
        shift = shift + (want - _space_lu(analysis, table, copies, target))
        copies = _shifted(table, analysis, G[parents[src]], shift)
    Fc = problem.weighted_scores(copies)
    ok = (Fc < INFEASIBLE).all(axis=1) & np.any(copies != G[parents[src]], axis=1)
    return copies[ok], Fc[ok], parents[src][ok]
