"""The objective contract: rendered features in, one lower-is-better score per candidate out.

An objective is a pure function ``(features, target) -> ndarray (pop,)``, registered by name with
its unit and a one-line description (pymoo ``core/problem.py``: contracts in one place). The
registry wrapper checks the output shape and finiteness once, for every objective. Objectives never
see genomes, only :class:`~evomix.core.features.Features` (the leaf layer both tiers build), so the same function scores the fast tier (pop = N) and an
exact render (pop = 1).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evomix.core.features import Features
from evomix.errors import EvomixError, OptionError


@dataclass(frozen=True)
class Target:
    """What the mix aims at: a genre (or reference) profile, a loudness and a true-peak ceiling."""

    profile: object  # objectives.genre.GenreProfile
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    reference_power: np.ndarray | None = None  # (2, B, T) band powers of a same-song reference mix


@dataclass(frozen=True)
class Objective:
    name: str
    unit: str
    description: str
    func: Callable[[Features, Target], np.ndarray]

    def __call__(self, features: Features, target: Target) -> np.ndarray:
        out = np.asarray(self.func(features, target), dtype=float)
        if out.ndim == 0:
            out = out[None]
        if out.shape != (features.n_pop,):
            raise EvomixError(
                f"objective '{self.name}': expected shape ({features.n_pop},), got {out.shape}"
            )
        if not np.all(np.isfinite(out)):
            raise EvomixError(f"objective '{self.name}' returned a non-finite value")
        return out


REGISTRY: dict[str, Objective] = {}
DEFAULT_OBJECTIVES = ("masking", "loudness", "balance", "genre")


def register(name: str, *, unit: str, description: str):
    """Decorator: register ``func(features, target) -> (pop,)`` as objective ``name``."""

    def deco(func):
        REGISTRY[name] = Objective(name, unit, description, func)
        return func

    return deco


def parse_weights(text: str | None, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Parse ``"masking=2,genre=0.5"`` into weights for every registered objective (default 1).

    Raises
    ------
    ParameterError
        On an unknown name, a missing '=', a non-number, a negative weight, or all weights 0.
    """
    names = DEFAULT_OBJECTIVES if names is None else names
    weights = {n: 1.0 for n in names}
    if text:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise OptionError(lambda k: f"{k('weights')}: expected name=value, got '{item}'")
            key, _, val = item.partition("=")
            key = key.strip()
            if key not in weights:
                raise OptionError(lambda k: f"{k('weights')}: unknown objective '{key}'; choose from {', '.join(names)}")
            try:
                w = float(val)
            except ValueError:
                raise OptionError(lambda k: f"{k('weights')}: '{val.strip()}' for '{key}' is not a number") from None
            if not np.isfinite(w) or w < 0:
                raise OptionError(lambda k: f"{k('weights')}: weight for '{key}' must be a number >= 0, got {val.strip()}")
            weights[key] = w
    if not any(w > 0 for w in weights.values()):
        raise OptionError(lambda k: f"{k('weights')}: every objective is switched off; give at least one a weight > 0")
    return weights


def evaluate(features: Features, target: Target, names: tuple[str, ...]) -> np.ndarray:
    """Score a batch on the named objectives -> F (pop, len(names)), lower is better."""
    return np.stack([REGISTRY[n](features, target) for n in names], axis=1)
