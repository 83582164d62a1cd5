"""The objective contract: rendered features in, one lower-is-better score per candidate out.

An objective is a pure function ``(features, target) -> ndarray (pop,)``, registered by name with
its unit and a one-line description (pymoo ``core/problem.py``: contracts in one place). The
registry wrapper checks the output shape and finiteness once, for every objective. Objectives never
see genomes, only :class:`~evomix.core.features.Features` (the leaf layer both tiers build), so the
same function scores the fast tier (pop = N) and an exact render (pop = 1).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evomix.core.features import Features
from evomix.errors import EvomixError, OptionError


@dataclass(frozen=True)
class Target:
    """What the mix aims at: a genre (or reference) profile, a loudness and a true-peak ceiling.

    Attributes
    ----------
    profile : GenreProfile
        Spectrum, width, PLR, LRA and vocal margin the mix aims at (:mod:`objectives.genre`).
    target_lufs : float, LUFS, default -14.0
        Integrated loudness (BS.1770-4) the master is normalised to.
    ceiling_dbtp : float, dBTP, default -1.0
        True-peak ceiling of the limiter.
    reference_power : np.ndarray, shape (2, B, T), float, optional
        Band powers of a same-song reference mix on the analysis grid (every frame), full-scale
        sine = 0.5; None when there is no reference (the ``reference`` objective is then 0).
    space : bool, default False
        Whether the mixes have a reverb bus to set (some send is searched): then the genre
        objective holds the return's level to the profile's ``space_lu``, and a dry mix pays for
        it (``objectives.genre``). False for a dry search (every send locked off, or none opened).
    """

    profile: object  # objectives.genre.GenreProfile
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    reference_power: np.ndarray | None = None  # (2, B, T) band powers of a same-song reference mix
    space: bool = False


@dataclass(frozen=True)
class Objective:
    """A registered objective: ``func`` with its name, unit and one-line description.

    Calling it scores a batch and checks the result once for every objective (pymoo
    ``Problem.evaluate``: the contract is enforced by the wrapper, not by each implementation).
    """

    name: str
    unit: str
    description: str
    func: Callable[[Features, Target], np.ndarray]

    def __call__(self, features: Features, target: Target) -> np.ndarray:
        """Score ``features`` against ``target``.

        Parameters
        ----------
        features : Features
            A batch of ``pop`` rendered mixes (shapes in :class:`~evomix.core.features.Features`).
        target : Target
            Profile, loudness target and ceiling the mixes aim at.

        Returns
        -------
        score : np.ndarray, shape (pop,), float64, finite
            One value per candidate in the objective's ``unit``, lower is better; a 0-d result of
            ``func`` is promoted to shape (1,).

        Raises
        ------
        EvomixError
            If ``func`` returns another shape than (pop,) or a non-finite value.
        """
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
    """Decorator: register ``func(features, target) -> (pop,)`` as objective ``name``.

    Parameters
    ----------
    name : str
        Key in :data:`REGISTRY` and the objective's name on the command line (``--weights``).
    unit : str, keyword-only
        Unit of the scores, e.g. ``"dB"`` or ``"LU"``.
    description : str, keyword-only
        One line saying what the objective measures.

    Returns
    -------
    deco : callable
        Registers its argument as an :class:`Objective` and returns it unchanged.
    """

    def deco(func):
        REGISTRY[name] = Objective(name, unit, description, func)
        return func

    return deco


MAX_WEIGHT = 100.0  # the largest weight --weights takes: a choice (a 100:1 preference is already absolute)


def parse_weights(text: str | None, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Parse ``"masking=2,genre=0.5"`` into weights for every registered objective (default 1).

    Parameters
    ----------
    text : str or None
        Comma-separated ``name=weight`` items; None or ``""`` leaves every weight at 1.
    names : tuple of str, optional
        The objectives that may be weighted; default :data:`DEFAULT_OBJECTIVES`.

    Returns
    -------
    weights : dict of str to float
        One weight in [0, :data:`MAX_WEIGHT`] per name of ``names``, in that order; at least one is > 0.

    Raises
    ------
    ParameterError
        On an unknown name, a missing '=', a non-number, a weight outside [0, 100], or all weights 0
        (an :class:`~evomix.errors.OptionError` that names ``--weights`` on the command line).
    """
    names = DEFAULT_OBJECTIVES if names is None else names
    weights = {n: 1.0 for n in names}
    if text:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise _weights_error(f"expected name=value, got '{item}'")
            key, _, val = item.partition("=")
            key = key.strip()
            if key not in weights:
                raise _weights_error(f"unknown objective '{key}'; choose from {', '.join(names)}")
            try:
                w = float(val)
            except ValueError:
                raise _weights_error(f"'{val.strip()}' for '{key}' is not a number") from None
            if not np.isfinite(w) or w < 0 or w > MAX_WEIGHT:
                raise _weights_error(f"weight for '{key}' must be a number in [0, {MAX_WEIGHT:g}], got {val.strip()}")
            weights[key] = w
    if not any(w > 0 for w in weights.values()):
        raise _weights_error("every objective is switched off; give at least one a weight > 0")
    return weights


def _weights_error(detail: str) -> OptionError:
    """``"weights: <detail>"`` from Python, ``"--weights: <detail>"`` on the command line."""
    return OptionError(lambda k: f"{k('weights')}: {detail}")


def evaluate(features: Features, target: Target, names: tuple[str, ...]) -> np.ndarray:
    """Score a batch on the named objectives.

    Parameters
    ----------
    features : Features
        A batch of ``pop`` rendered mixes.
    target : Target
        What the mixes aim at.
    names : tuple of str
        Registered objectives, in the column order wanted.

    Returns
    -------
    F : np.ndarray, shape (pop, len(names)), float64, finite
        Unweighted scores, each column in its objective's unit, lower is better.

    Raises
    ------
    KeyError
        If a name is not registered (callers check names with :func:`parse_weights` first).
    EvomixError
        If an objective returns a wrong shape or a non-finite value.
    """
    return np.stack([REGISTRY[n](features, target) for n in names], axis=1)
