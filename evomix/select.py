"""Choosing K alternatives from the front: good by the user's weights, and different from each other.

1. Each objective is replaced by its rank among the candidates (0 = best, 1 = worst), so a member
   that is extreme on one objective cannot hide a poor rank on the others; the first alternative is
   the one with the lowest weighted rank sum (the weights of ``--weights``).
2. Only the best ``ELIGIBLE_FRACTION`` of the candidates by that weighted sum are eligible (at least
   ``k``), so an alternative is never one that is only "best" by ignoring the other objectives.
3. Each next alternative maximises its distance to the nearest one already chosen (farthest-point
   sampling), in a descriptor space of the genome (all genes in [0, 1], so a 0.1 step in any gene
   counts the same) concatenated with the normalised objectives.

A choice can be continued: ``keep`` members stay chosen and ``exclude`` members are never chosen
(``evomix.api`` uses this to replace an alternative whose exact render did not keep the fast
tier's promise).
"""
from __future__ import annotations

import numpy as np

ELIGIBLE_FRACTION = 0.25


def normalise(F: np.ndarray) -> np.ndarray:
    lo, hi = F.min(axis=0), F.max(axis=0)
    return (F - lo) / np.where(hi > lo, hi - lo, 1.0)


def rank_normalise(F: np.ndarray) -> np.ndarray:
    """Each column's ranks scaled to [0, 1] (ties share the lower rank), (n, m)."""
    n = F.shape[0]
    ranks = (F[:, None, :] > F[None, :, :]).sum(axis=1)  # (n, m): how many are strictly better
    return ranks / max(n - 1, 1)


def descriptor_distances(genomes: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Pairwise distances (n, n) between candidates in the genome + normalised-objective space."""
    d = np.concatenate([genomes / np.sqrt(genomes.shape[1]), normalise(F)], axis=1)
    return np.sqrt(((d[:, None, :] - d[None, :, :]) ** 2).sum(axis=-1))


def choose_alternatives(genomes: np.ndarray, F: np.ndarray, k: int, weights: np.ndarray | None = None, *,
                        keep=(), exclude=()) -> list[int]:
    """Indices of up to ``k`` diverse, good candidates (first = best weighted sum).

    ``keep``: indices already chosen (returned first, in their order); ``exclude``: indices never
    chosen. The eligible set is the best ``ELIGIBLE_FRACTION`` of the candidates not excluded.
    """
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
