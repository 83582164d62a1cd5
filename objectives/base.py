"""The objective contract: rendered features in, one lower-is-better score per candidate out.

An objective is a pure function ``(features, target) -> ndarray (pop,)``, registered by name with
its unit and a one-line description (pymoo ``core/problem.py``: contracts in one place). The
registry wrapper checks the output shape and finiteness once, for every objective. Objectives never
see genomes, only :class:`Features`, so the same function scores the fast tier (pop = N) and an
exact render (pop = 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from evomix.engine.compiled import lazy_njit
from evomix.errors import EvomixError, ParameterError


@dataclass(frozen=True)
class Features:
    """What objectives may look at, for a batch of ``pop`` rendered mixes.

    Powers are mean squares per 50 ms hop in critical bands (full-scale sine = 0.5), after the whole
    chain (per-stem processing, master EQ/compressor, loudness normalisation).

    Attributes
    ----------
    bands_hz : (B,) band centre frequencies, Hz.
    band_edges_hz : (B + 1,) band edges, Hz.
    band_bark : (B,) band centres in Bark.
    spread : (B, B) linear power spreading matrix (masker band j -> band i).
    roles : tuple of str, one per stem.
    stem_power : (pop, stems, 2, B, T) float32, each stem's power in the mix.
    stem_spread : (pop, stems, 2, B, T) float32, ``stem_power`` spread across bands.
    mix_power : (pop, 2, B, T) float32, power of the mix (same frames as ``stem_power``).
    mix_cross : (pop, B, T) float32, Re(L R*) of the mix.
    loudness_lufs : (pop,) integrated loudness of the master, LUFS (BS.1770-4).
    raw_loudness_lufs : (pop,) integrated loudness before loudness normalisation, LUFS.
    lra_lu : (pop,) loudness range, LU (EBU Tech 3342).
    true_peak_dbtp : (pop,) true peak of the master, dBTP.
    frames : (T,) int, the analysis frames that the (…, T) arrays hold (the fast tier may use a
        subset; the exact tier uses every frame).
    limiter_gr_db : (pop,) >= 0, dB by which the normalised pre-limiter true peak exceeds the
        ceiling, i.e. the peak gain reduction the limiter must apply.
    """

    bands_hz: np.ndarray
    band_edges_hz: np.ndarray
    band_bark: np.ndarray
    spread: np.ndarray
    roles: tuple
    stem_power: np.ndarray
    stem_spread: np.ndarray
    mix_power: np.ndarray
    mix_cross: np.ndarray
    loudness_lufs: np.ndarray
    raw_loudness_lufs: np.ndarray
    lra_lu: np.ndarray
    true_peak_dbtp: np.ndarray
    limiter_gr_db: np.ndarray
    frames: np.ndarray | None = None

    @property
    def n_pop(self) -> int:
        return self.stem_power.shape[0]

    @cached_property
    def stem_band_power(self) -> np.ndarray:
        """Each stem's power per channel and band, summed over the frames, (pop, stems, 2, B)
        (computed once per batch; the objectives' per-stem levels come from it)."""
        return self.stem_power.sum(axis=-1)

    @cached_property
    def rest_threshold(self) -> np.ndarray:
        """Masking threshold that the rest of the mix puts on each stem, (pop, stems, 2, B, T).

        ``O(z) * (spread(mix) - spread(stem))``, computed once per batch and shared by the
        objectives that need it (masking, balance); see ``objectives.masking``.
        """
        from objectives.masking import threshold_offset_db

        y = np.ascontiguousarray(self.stem_spread)
        offset = (10.0 ** (-threshold_offset_db(self.band_bark) / 10.0)).astype(y.dtype)  # (B,)
        return _rest_of_mix(y, offset)

    @property
    def plr_db(self) -> np.ndarray:
        """Peak-to-loudness ratio, dB (true peak - integrated loudness)."""
        return self.true_peak_dbtp - self.loudness_lufs


@lazy_njit
def _rest_of_mix(spread, offset):  # (pop, stems, 2, B, T), (B,) -> (pop, stems, 2, B, T)
    """``max(sum_j spread_j - spread_s, 0) * offset[b]`` per cell, in one pass over the stems."""
    n_pop, n_stems, n_ch, n_bands, n_t = spread.shape
    out = np.empty_like(spread)
    total = np.empty(n_t, dtype=spread.dtype)
    for p in range(n_pop):
        for c in range(n_ch):
            for b in range(n_bands):
                total[:] = 0.0
                for s in range(n_stems):
                    for t in range(n_t):
                        total[t] += spread[p, s, c, b, t]
                o = offset[b]
                for s in range(n_stems):
                    for t in range(n_t):
                        r = total[t] - spread[p, s, c, b, t]
                        out[p, s, c, b, t] = max(r, 0.0) * o
    return out


@dataclass(frozen=True)
class Target:
    """What the mix aims at: a genre (or reference) profile, a loudness and a true-peak ceiling."""

    profile: "object"  # objectives.genre.GenreProfile
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
                raise ParameterError(f"--weights: expected name=value, got '{item}'")
            key, _, val = item.partition("=")
            key = key.strip()
            if key not in weights:
                raise ParameterError(f"--weights: unknown objective '{key}'; choose from {', '.join(names)}")
            try:
                w = float(val)
            except ValueError:
                raise ParameterError(f"--weights: '{val.strip()}' for '{key}' is not a number") from None
            if not np.isfinite(w) or w < 0:
                raise ParameterError(f"--weights: weight for '{key}' must be a number >= 0, got {val.strip()}")
            weights[key] = w
    if not any(w > 0 for w in weights.values()):
        raise ParameterError("--weights: every objective is switched off; give at least one a weight > 0")
    return weights


def evaluate(features: Features, target: Target, names: tuple[str, ...]) -> np.ndarray:
    """Score a batch on the named objectives -> F (pop, len(names)), lower is better."""
    return np.stack([REGISTRY[n](features, target) for n in names], axis=1)
