"""Choosing K alternatives from the front: good by the user's weights, and different from each other.

1. Each objective is replaced by its rank among the candidates (0 = best, 1 = worst), so a member
   that is extreme on one objective cannot hide a poor rank on the others; the first alternative is
   the one with the lowest weighted rank sum (the weights of ``--weights``).
2. Only the best ``ELIGIBLE_FRACTION`` of the candidates by that weighted sum are eligible (at least
   ``k``), so an alternative is never one that is only "best" by ignoring the other objectives.
3. Each next alternative maximises its distance to the nearest one already chosen (farthest-point
   sampling), in a descriptor space of the genome (all genes in [0, 1], so a 0.1 step in any gene
   counts the same) concatenated with the normalised objectives.

   With listener descriptors (``descriptors``: :func:`evomix.choose.describe.jnd_matrix` of the fast-tier
   descriptors of every candidate, in JND units), the distance is the Euclidean distance in that
   space instead, and a candidate within ``describe.DISTINCT_JND`` (Chebyshev, JND units) of one
   already chosen is never chosen: it would sound the same. SPACE_SPREAD: while the mixes differ in
   how wet they are (``space_lu``), the second and third alternatives are the eligible ones whose
   reverb return lies furthest below and above the ones chosen (when 1 LU beyond them): the
   musician gets the driest and the wettest of the good mixes to compare, which the farthest-point
   rule alone, led by the descriptors with the widest spread, does not ensure (a choice, issue 22).
   With the genre's space range (``space_range``), every pick after the first is taken among the
   mixes inside it (``SPACE_RANGE_SLACK``) while any good distinct one is: the space ladder
   (``evomix.choose.space``) puts copies of the good mixes all over it.
   When no eligible candidate is distinct
   any more, the best-scoring distinct candidate outside the eligible set is taken; when none is
   left at all, fewer than ``k`` are returned (never a duplicate).

A choice can be continued: ``keep`` members stay chosen and ``exclude`` members are never chosen
(``evomix.api`` uses this to replace an alternative whose exact render did not keep the fast
tier's promise, or that sounds the same as another once rendered exactly).

Labels (:func:`label_alternatives`): each alternative is described relative to the others from its
*exact* descriptors. For descriptor d with values x_1..x_K over the K alternatives, alternative i
gets d's "more" label (e.g. "brighter") when both

* its z-score ``(x_i - mean(x)) / sd(x)`` (population sd) is >= ``LABEL_Z`` (0.5), and
* it exceeds the mean of the *other* alternatives by at least one JND (``describe.JND``),

and d's "less" label (e.g. "darker") in the mirror case. Labels are ordered by the size of that
difference in JNDs, at most ``MAX_LABELS`` per alternative. With one alternative there is nothing
to compare: no labels.
"""
from __future__ import annotations

import numpy as np

from evomix.choose.describe import COMPARED, DISTINCT_JND, JND, jnd_distance, jnd_matrix

ELIGIBLE_FRACTION = 0.25


def normalise(F: np.ndarray) -> np.ndarray:
    """Each column of ``F`` (n, n_obj) scaled to [0, 1] over the rows (a constant column to 0)."""
    lo, hi = F.min(axis=0), F.max(axis=0)
    return (F - lo) / np.where(hi > lo, hi - lo, 1.0)


def rank_normalise(F: np.ndarray) -> np.ndarray:
    """Each column's ranks scaled to [0, 1] (ties share the lower rank), (n, m)."""
    from scipy.stats import rankdata

    n = F.shape[0]
    ranks = rankdata(F, method="min", axis=0) - 1.0  # (n, m): how many are strictly better
    return ranks / max(n - 1, 1)


def descriptor_distances(genomes: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Pairwise distances (n, n) between candidates in the genome + normalised-objective space."""
    d = np.concatenate([genomes / np.sqrt(genomes.shape[1]), normalise(F)], axis=1)
    return np.sqrt(((d[:, None, :] - d[None, :, :]) ** 2).sum(axis=-1))


def choose_alternatives(genomes: np.ndarray, F: np.ndarray, k: int, weights: np.ndarray | None = None, *,
                        keep=(), exclude=(), descriptors: np.ndarray | None = None,
                        parents: np.ndarray | None = None, space_range: tuple | None = None) -> list[int]:
    """Indices of up to ``k`` diverse, good candidates (first = best weighted sum).

    ``keep``: indices already chosen (returned first, in their order); ``exclude``: indices never
    chosen. The eligible set is the best ``ELIGIBLE_FRACTION`` of the candidates not excluded.
    ``descriptors`` (n, d) in JND units: choose far apart in them and never within
    ``DISTINCT_JND`` of a chosen one (see the module docstring). ``parents`` (n,) (with
    ``descriptors``): -1 for a front member, else the member a candidate copies
    (``choose.space.space_ladder``); a copy is never first and is eligible exactly when its parent is.
    ``space_range`` (lo, hi): the genre's space range in the descriptors' JND units; the driest and
    the wettest picks are taken inside it.
    """
    if descriptors is not None:
        return _choose_by_descriptors(F, k, weights, np.asarray(descriptors, dtype=float), keep, exclude, parents,
                                      space_range)
    n = len(genomes)
    banned = np.zeros(n, bool)
    banned[list(exclude)] = True
    chosen = [int(i) for i in keep]
    n_free = int((~banned).sum())
    if n == 0 or k <= 0 or n_free == 0:
        return chosen[:max(k, 0)]
    w = np.ones(F.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    score = rank_normalise(F) @ w
    order = [i for i in np.argsort(score, kind="stable") if not banned[i]]
    n_eligible = max(min(k, n_free), int(np.ceil(n_free * ELIGIBLE_FRACTION)))
    eligible = np.zeros(n, bool)
    eligible[order[:n_eligible]] = True
    if not chosen:
        chosen = [int(order[0])]
    dist = descriptor_distances(genomes, F)
    while len(chosen) < k:
        nearest = dist[:, chosen].min(axis=1)
        nearest[chosen] = -1.0
        nearest[~eligible | banned] = -1.0
        if nearest.max() < 0.0:
            break
        chosen.append(int(np.argmax(nearest)))
    return chosen


def _choose_by_descriptors(F, k, weights, D, keep, exclude, parents=None, space_range=None) -> list[int]:
    """:func:`choose_alternatives` in the listener-descriptor space ``D`` (n, d), JND units."""
    n = F.shape[0]
    banned = np.zeros(n, bool)
    banned[list(exclude)] = True
    chosen = [int(i) for i in keep]
    if n == 0 or k <= 0:
        return chosen[:max(k, 0)]
    parents = np.full(n, -1) if parents is None else np.asarray(parents, dtype=int)  # (n,)
    member = parents < 0
    w = np.ones(F.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    score = np.full(n, np.inf)  # (n,) lower is better: the members ranked among themselves
    score[member] = rank_normalise(F[member]) @ w
    order = [int(i) for i in np.argsort(score, kind="stable") if not banned[i] and member[i]]
    n_free = len(order)
    if n_free == 0:
        return chosen[:k]
    n_eligible = max(min(k, n_free), int(np.ceil(n_free * ELIGIBLE_FRACTION)))
    eligible = np.zeros(n, bool)
    eligible[order[:n_eligible]] = True
    eligible[~member] = eligible[np.maximum(parents[~member], 0)] & ~banned[~member]  # a copy as its parent
    order += [int(i) for i in np.flatnonzero(~member & ~banned)]  # copies last (a distinct fallback)
    if not chosen:
        chosen = [order[0]]
    # distance of every candidate to its nearest chosen one, kept up to date as picks are added
    near_cheb = jnd_distance(D, D[chosen]).min(axis=1)  # (n,) JND units
    near_eucl = np.sqrt(((D[:, None, :] - D[None, chosen, :]) ** 2).sum(axis=-1)).min(axis=1)  # (n,)
    j_space = COMPARED.index("space_lu") if "space_lu" in COMPARED and D.shape[1] == len(COMPARED) else None
    spread_first = j_space is not None
    in_range = np.ones(n, bool)  # (n,) within the genre's space range (SPACE_RANGE_SLACK)
    if space_range is not None and j_space is not None:
        lo, hi = space_range[0] - SPACE_RANGE_SLACK, space_range[1] + SPACE_RANGE_SLACK
        in_range = (D[:, j_space] >= lo) & (D[:, j_space] <= hi)
    while len(chosen) < k:
        distinct = (near_cheb >= DISTINCT_JND) & ~banned
        distinct[chosen] = False
        pool = distinct & eligible
        inside = pool & in_range
        if inside.any():  # a mix outside the genre's space range only when no good distinct one is inside
            pool = inside
        if spread_first and inside.any():  # the driest and the wettest good mix next (SPACE_SPREAD in the docstring)
            pick = _space_extreme(D[:, j_space], inside, D[chosen, j_space])
            spread_first = pick is not None and len(chosen) < 2
            if pick is None:
                pick = int(np.argmax(np.where(pool, near_eucl, -1.0)))
        elif pool.any():
            pick = int(np.argmax(np.where(pool, near_eucl, -1.0)))
        elif distinct.any():  # the eligible ones all sound like a chosen one: the best distinct other
            pick = next(i for i in order if distinct[i])
        else:
            break
        chosen.append(pick)
        near_cheb = np.minimum(near_cheb, jnd_distance(D, D[pick])[:, 0])
        near_eucl = np.minimum(near_eucl, np.sqrt(((D - D[pick]) ** 2).sum(axis=1)))
    return chosen


SPACE_RANGE_SLACK = 0.1  # JND units (0.3 LU): how far outside the genre's space range a driest/wettest pick may lie
# JND units (1 LU): how far beyond the chosen ones' driest (wettest) a mix must lie to be taken as the
# driest (wettest) pick; less than a JND, so a first pick near one end of the range still gets the
# range's last LUs at that end (the pick must still be distinct from every chosen one in some descriptor)
SPACE_EXTREME_MIN = 1.0 / 3.0


def _space_extreme(space: np.ndarray, pool: np.ndarray, chosen_space: np.ndarray) -> int | None:
    """The member of ``pool`` whose return level (``space``, JND units) lies furthest beyond the chosen
    ones' (below their driest or above their wettest); None when none is SPACE_EXTREME_MIN beyond them."""
    lo, hi = float(chosen_space.min()), float(chosen_space.max())
    beyond = np.where(pool, np.maximum(lo - space, space - hi), -np.inf)  # (n,)
    i = int(np.argmax(beyond))
    return i if beyond[i] >= SPACE_EXTREME_MIN else None


LABEL_Z = 0.5
MAX_LABELS = 3
#: descriptor -> (label when higher, label when lower)
LABELS = {
    "centroid_hz": ("brighter", "darker"),
    "side_mid_db": ("wider", "narrower"),
    "vocal_lu": ("vocal-forward", "vocal-back"),
    "low_end_db": ("warmer", "leaner"),
    "punch_db": ("punchier", "softer"),
    "plr_db": ("more dynamic", "denser"),
    "lra_lu": ("more loudness range", "steadier"),
    "space_lu": ("wetter", "drier"),
}


def label_alternatives(rows: list, *, lead_role: str = "vocal") -> list[list[str]]:
    """Labels of each alternative relative to the others (rule in the module docstring).

    rows : one descriptor dict per alternative (``evomix.choose.describe.row``), exact renders.
    lead_role : "vocal" or "lead": the word used for ``vocal_lu`` ("lead-forward" for a lead). "vocal"
        is the lead vocal (``vocal_lu`` never measures a ``backing_vocal``).
    Returns one list of labels per alternative, strongest first.
    """
    k = len(rows)
    out: list[list[str]] = [[] for _ in range(k)]
    if k < 2:
        return out
    names = [n for n in LABELS if n in JND]
    raw = jnd_matrix(rows)  # (k, d) JND units, centroid in log2 / 0.1 oct

    found: list[list[tuple[float, str]]] = [[] for _ in range(k)]
    for name in names:
        j = COMPARED.index(name)
        x = raw[:, j]
        if not np.all(np.isfinite(x)) or all(r.get(name) is None for r in rows):
            continue
        sd = x.std()
        if sd <= 0:
            continue
        z = (x - x.mean()) / sd
        for i in range(k):
            others = np.delete(x, i).mean()
            gap = x[i] - others  # JND units
            up, down = LABELS[name]
            if name == "vocal_lu" and lead_role != "vocal":
                up, down = f"{lead_role}-forward", f"{lead_role}-back"
            if z[i] >= LABEL_Z and gap >= 1.0:
                found[i].append((gap, up))
            elif z[i] <= -LABEL_Z and gap <= -1.0:
                found[i].append((-gap, down))
    for i in range(k):
        out[i] = [lab for _, lab in sorted(found[i], key=lambda t: -t[0])[:MAX_LABELS]]
    return out


def label_against(row: dict, reference: dict, *, lead_role: str = "vocal") -> list[str]:
    """Labels of one mix against one reference mix (e.g. a variation against its input): d's
    "more"/"less" label where the two differ by at least one JND, largest difference first."""
    M = jnd_matrix([row, reference])  # (2, d) JND units
    found = []
    for name, (up, down) in LABELS.items():
        gap = M[0, COMPARED.index(name)] - M[1, COMPARED.index(name)]
        if name == "vocal_lu" and lead_role != "vocal":
            up, down = f"{lead_role}-forward", f"{lead_role}-back"
        if abs(gap) >= 1.0:
            found.append((abs(gap), up if gap > 0 else down))
    return [lab for _, lab in sorted(found, key=lambda t: -t[0])[:MAX_LABELS]]
