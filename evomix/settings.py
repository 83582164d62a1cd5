"""Settings objects of :func:`evomix.mix`: frozen dataclasses, validated when made.

After pymoo's algorithm / termination objects and matchering's ``Config``: a search is described
by a :class:`Search` (how to look), a :class:`Parallel` (where to score) and a :class:`Master`
(what every exported master must meet), each checked once, when it is made.

>>> import evomix
>>> from evomix.settings import Search, Parallel
>>> evomix.mix(["stems/"], search=Search(algorithm="nsga3", time_limit=20, seed=1), parallel=Parallel(jobs=2))

Errors name the Python field (``Search.population must be ...``); the command line maps each
field to its flag (:func:`evomix.errors.cli_flag`), so a CLI user reads ``--population must be ...``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from evomix.errors import ParameterError, cli_flag
from evomix.search.algorithm import ALGORITHMS, DEFAULT_ALGORITHM, DEFAULT_TIME_LIMIT_S

BACKENDS = ("local", "dask")
PICKS = ("best", "spread")  # which cells `evomix explore` exports: best quality first, or across the map

class SettingError(ParameterError):
    """A settings field has a bad value; ``owner``, ``field`` and ``detail`` say which and why."""

    def __init__(self, owner: str, field: str, detail: str):
        super().__init__(f"{owner}.{field} {detail}")
        self.owner, self.field, self.detail = owner, field, detail

    def for_cli(self) -> ParameterError:
        """The same error naming the command-line flag."""
        return ParameterError(f"{cli_flag(self.field)} {self.detail}")


def _number(owner: str, field: str, value, *, low=None, high=None, integer=False, strict_low=False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SettingError(owner, field, f"must be a {'whole' if integer else 'finite'} number, got {value!r}")
    if not math.isfinite(value):
        raise SettingError(owner, field, f"must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict_low else value < low):
        raise SettingError(owner, field, f"must be {'>' if strict_low else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise SettingError(owner, field, f"must be <= {high}, got {value}")


@dataclass(frozen=True)
class Search:
    """How the search looks (:mod:`evomix.search.algorithm`).

    algorithm : "nsga2", "nsga3" or "random".
    population : candidates per generation, int >= 4 (rounded up to a multiple of 4).
    generations : int >= 0 runs exactly that many generations; None stops when the best mix
        found stops improving (``Termination``'s convergence test), or at ``time_limit``.
    time_limit : seconds > 0 of search at most (None: no limit); ignored with ``generations``.
    seed : int >= 0; the same seed gives the same front (unless the time limit stops the search).
    alternatives : mixes to export, int >= 1.
    """

    algorithm: str = DEFAULT_ALGORITHM
    population: int = 64
    generations: int | None = None
    time_limit: float | None = DEFAULT_TIME_LIMIT_S
    seed: int = 0
    alternatives: int = 5

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise SettingError("Search", "algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {self.algorithm!r}")
        _number("Search", "population", self.population, low=4, integer=True)
        if self.generations is not None:
            _number("Search", "generations", self.generations, low=0, integer=True)
        if self.time_limit is not None:
            _number("Search", "time_limit", self.time_limit, low=0, strict_low=True)
        _number("Search", "seed", self.seed, low=0, integer=True)
        _number("Search", "alternatives", self.alternatives, low=1, integer=True)


@dataclass(frozen=True)
class Parallel:
    """Where candidates are scored (:mod:`evomix.search.parallel`); the front is the same for any of these.

    jobs : local worker processes, int >= 1 (1: this process only; ``backend="local"``).
    threads : threads scoring each generation on this machine, int >= 1 (None: every core).
    backend : "local" or "dask" (an existing cluster at ``scheduler``).
    scheduler : the dask scheduler's address, e.g. "tcp://10.0.0.5:8786" (``backend="dask"``).
    """

    jobs: int = 1
    threads: int | None = None
    backend: str = "local"
    scheduler: str | None = None

    def __post_init__(self):
        _number("Parallel", "jobs", self.jobs, low=1, integer=True)
        if self.threads is not None:
            _number("Parallel", "threads", self.threads, low=1, integer=True)
        if self.backend not in BACKENDS:
            raise SettingError("Parallel", "backend", f"must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if self.backend == "local" and self.scheduler is not None:
            raise SettingError("Parallel", "scheduler", "is for backend 'dask'")
        if self.backend == "dask" and not self.scheduler:
            raise SettingError("Parallel", "scheduler", "is needed with backend 'dask' (e.g. tcp://10.0.0.5:8786)")
        if self.backend == "dask" and self.jobs != 1:
            raise SettingError("Parallel", "jobs",
                               "is for backend 'local'; with dask every worker thread of the cluster takes a share")


@dataclass(frozen=True)
class Master:
    """What every exported master meets: integrated loudness ``target_lufs`` in [-40, -5] LUFS
    (BS.1770-4) and true peak at most ``ceiling_dbtp`` in [-9, 0] dBTP; and how hard its true-peak
    limiter may work to get there: ``max_limiting_db`` in [0, 40] dB of gain reduction (None: no
    budget), a constraint of the search (``evomix.search.problem.Problem``)."""

    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    max_limiting_db: float | None = 6.0

    def __post_init__(self):
        _number("Master", "target_lufs", self.target_lufs, low=-40.0, high=-5.0)
        _number("Master", "ceiling_dbtp", self.ceiling_dbtp, low=-9.0, high=0.0)
        if self.max_limiting_db is not None:
            _number("Master", "max_limiting_db", self.max_limiting_db, low=0.0, high=40.0)
