"""Hypervolume of a front in a normalised objective space with a fixed reference point.

The hypervolume indicator (Zitzler & Thiele 1998, "Multiobjective optimization using evolutionary
algorithms - a comparative case study", PPSN V) is the volume of objective space that a set of
points dominates, bounded by a reference point; it grows when the front moves forward or spreads.
It is computed by ``moocore.hypervolume`` (López-Ibáñez et al., the WFG / HV3D+ / HV4D+ algorithms).

Normalisation (minimisation, every objective >= 0):

    f_norm = (f - ideal) / scale,    reference point r = (1, 1, ..., 1)

For evomix's own objectives ``ideal`` is 0 (each is a distance to a goal, 0 = on target) and the
scales are fixed per objective from its unit and from what a poor-but-plausible mix scores
(:data:`OBJECTIVE_SCALES`, roughly the median score of a uniformly random genome on the study
songs). A mix at or beyond the scale on any objective adds no volume. Because nothing in the
normaliser depends on the run, hypervolumes are comparable across generations, seeds, algorithms
and first generations of one song (not across songs). The volume is in [0, 1].

For other problems (the tests' ZDT functions) :meth:`Normaliser.frozen` takes the ideal and nadir
of the first generation and keeps them for the whole run.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import moocore
import numpy as np

# Fixed scale of each objective, in its unit (masking dB, loudness LU, balance dB, genre dB,
# reference dB): the normalised reference point 1 sits at these raw values.
OBJECTIVE_SCALES = {"masking": 3.0, "loudness": 3.0, "balance": 40.0, "genre": 12.0, "reference": 12.0}


@dataclass(frozen=True)
class Normaliser:
    """``(F - ideal) / scale`` with the reference point at 1 in every normalised objective.

    ideal, scale : (n_obj,) in the units of the F it is applied to; scale > 0.
    """

    ideal: np.ndarray
    scale: np.ndarray

    @classmethod
    def fixed(cls, names: Sequence[str], weights: Sequence[float] | None = None) -> Normaliser:
        """The fixed normaliser of evomix objectives ``names``, for F already multiplied by
        ``weights`` (as :meth:`evomix.search.problem.Problem.evaluate_population` returns it), so the
        hypervolume does not depend on the weights."""
        w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=float)
        scale = np.array([OBJECTIVE_SCALES.get(n, 1.0) for n in names]) * w
        return cls(np.zeros(len(names)), scale)

    @classmethod
    def frozen(cls, F0: np.ndarray) -> Normaliser:
        """Ideal and nadir of a first population F0 (n, n_obj), frozen for the run."""
        F0 = np.asarray(F0, dtype=float)
        lo, hi = F0.min(axis=0), F0.max(axis=0)
        return cls(lo, np.where(hi > lo, hi - lo, 1.0))

    def __call__(self, F: np.ndarray) -> np.ndarray:
        """The normalised objectives (n, n_obj) of F (n, n_obj)."""
        return (np.asarray(F, dtype=float) - self.ideal) / self.scale

    def to_dict(self) -> dict:
        """``{"ideal", "scale", "reference_point"}`` as lists of floats (for the reports)."""
        return {"ideal": [float(v) for v in self.ideal], "scale": [float(v) for v in self.scale],
                "reference_point": [1.0] * len(self.scale)}


def hypervolume(F: np.ndarray, normaliser: Normaliser) -> float:
    """Hypervolume of the points F (n, n_obj) after ``normaliser``, reference point 1 (in [0, 1] when
    no point is better than the ideal, as with :meth:`Normaliser.fixed`)."""
    Z = normaliser(np.atleast_2d(np.asarray(F, dtype=float)))  # (n, n_obj)
    Z = Z[(Z < 1.0).all(axis=1)]  # points on or beyond the reference point add nothing
    if len(Z) == 0:
        return 0.0
    return float(moocore.hypervolume(Z, ref=np.ones(Z.shape[1])))
