"""The genetic search over [0, 1] genomes, scored one generation per call: NSGA-II, NSGA-III or random.

* ``nsga2`` follows DEAP ``examples/ga/nsga2.py`` (Deb et al. 2002, "A fast and elitist
  multiobjective genetic algorithm: NSGA-II", IEEE TEVC 6(2)): bounded simulated-binary crossover,
  bounded polynomial mutation, ``selTournamentDCD`` for mating and ``selNSGA2`` for survival.
* ``nsga3`` follows DEAP ``examples/ga/nsga3.py`` (Deb & Jain 2014, "An evolutionary many-objective
  optimization algorithm using reference-point-based nondominated sorting approach", IEEE TEVC
  18(4)): the same variation on randomly paired parents, ``selNSGA3`` survival around
  ``uniform_reference_points`` (Das & Dennis simplex lattice).
* ``random`` spends the same budget on uniform genomes, ``n_pop`` per generation: the baseline.

Only individuals whose fitness is invalid are evaluated, in one ``evaluate_population`` call per
generation. The front is the archive of every non-dominated genome evaluated (all generations).

**Hypervolume and termination.** After every generation the archive's hypervolume
(:mod:`evomix.search.hypervolume`, a normaliser frozen for the run) is recorded in the logbook (``hv``).
The run stops for one of three reasons (``SearchResult.stop_reason``):

* ``"generations"``: exactly ``Termination.generations`` were run (an explicit override), or the
  safety cap ``max_generations`` was reached;
* ``"converged"``: the hypervolume gained less than ``tol`` (relative to the current hypervolume)
  over the last ``window`` generations -- a sliding-window criterion in the spirit of pymoo's
  default multi-objective termination (which tracks the movement of the normalised front over a
  window of generations), here on the hypervolume itself;
* ``"time limit"``: the search has run ``time_limit`` seconds (checked after each generation, so
  a generation started is finished; generation 0 always runs);
* ``"interrupted"``: ``stop_requested()`` said so after a generation (the first Ctrl-C,
  :mod:`evomix.search.interrupt`).

**State and resume.** After every generation the loop's whole state (population with fitness and
crowding distance, archive, hypervolumes, logbook, counters, and the states of the three random
generators: ``random``, numpy's global one that ``selNSGA3`` draws from, and the random
algorithm's ``Generator``) is a :class:`SearchState`, handed to ``on_generation`` (which
:mod:`evomix.search.checkpoint` saves); ``run_search(..., resume=state)`` continues from it exactly, so a
run stopped after generation k and resumed ends with the same front as one never stopped
(unless the time limit stops it: the wall clock is not reproducible).

The defaults (:data:`HV_WINDOW`, :data:`HV_TOL`, :data:`DEFAULT_TIME_LIMIT_S`) come from
``experiments/search_quality.py`` and ``experiments/termination_sweep.py`` (every rule read off
3,000-generation runs: a 20-generation window stopped some runs on a passing plateau at 65 % of
the hypervolume of a 10x longer run; 40 generations never below 87 %; see the README's search section).

**Steering.** ``steer`` (n_obj,) > 0 (the ``--weights`` of the objectives; ``None`` or all equal:
no preference) moves the search toward where the weights point, in the normalised space:

* ``nsga2`` and ``nsga3``: half of each generation's survivors are the best by the augmented
  weighted Chebyshev achievement scalarising function ``max_i w_i z_i + RHO sum_i w_i z_i``
  (Wierzbicki 1980, "The use of reference objectives in multiobjective optimization"; ``z`` the
  objectives after the hypervolume's normaliser), the rest by ``selNSGA2`` / ``selNSGA3``;
* ``nsga3`` also pulls its reference points halfway toward the weighted direction
  ``c_i ∝ 1 / w_i`` (where the weighted normalised objectives are equal), so more niches lie where
  the heavily weighted objectives are low (after Deb & Sundar 2006, reference-point-based EMO);
* ``random``: no steering (the choice of alternatives still uses the weights).
"""
from __future__ import annotations

import array
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from deap import base, creator, tools

from evomix.errors import OptionError, ParameterError
from evomix.search.hypervolume import Normaliser, hypervolume

CROSSOVER_PROB = 0.9
ETA_CROSSOVER = 15.0
ETA_MUTATION = 20.0

ALGORITHMS = ("nsga2", "nsga3", "random")
# nsga2: its weights steer reliably (tests/test_search_api.py, the study); nsga3 reaches a higher
# hypervolume on every study song but its steering is weaker (README, Search)
DEFAULT_ALGORITHM = "nsga2"
STOP_REASONS = ("converged", "time limit", "generations", "interrupted")

HV_WINDOW = 40  # generations of the sliding window of the convergence test (experiments/termination_sweep.py)
HV_TOL = 0.005  # relative hypervolume gain over the window below which the search has converged
DEFAULT_TIME_LIMIT_S = 30.0  # wall-clock cap of the search, s
MAX_GENERATIONS = 2000  # safety cap when no generation count is given

# Survivors chosen by the achievement function when steering. Measured (masking=4 vs default
# weights, 3 study songs x 5 seeds, 64 x 41 generations, scratch run of 2026-12-02): front median
# masking 0.381 / 0.286 / 0.329 dB with a quarter, 0.334 / 0.269 / 0.255 with half, 0.287 / 0.270 /
# 0.271 with three quarters (default weights 0.501 / 0.265 / 0.387); the study is the figure of record.
STEER_ELITE_FRACTION = 0.5
STEER_PULL = 0.5  # nsga3: how far the reference points move toward the weighted direction (0..1)
RHO = 1e-3  # augmentation of the achievement function (keeps its minimisers Pareto-optimal)


def _classes(n_obj: int):
    """DEAP fitness/individual classes for ``n_obj`` minimised objectives (created once)."""
    fit, ind = f"FitnessMin{n_obj}", f"Individual{n_obj}"
    if not hasattr(creator, fit):
        creator.create(fit, base.Fitness, weights=(-1.0,) * n_obj)
        creator.create(ind, array.array, typecode="d", fitness=getattr(creator, fit))
    return getattr(creator, ind)


for _n in range(1, 6):  # the common cases exist at import (DEAP pickling needs module-level classes)
    _classes(_n)


@dataclass(frozen=True)
class Termination:
    """When the search stops (see the module docstring).

    generations : int >= 0, or None. When given, exactly this many generations after generation 0
        (no convergence test, no time limit).
    time_limit : seconds > 0, or None (no limit); ignored when ``generations`` is given.
    window : generations >= 1 of the convergence test.  tol : relative hypervolume gain >= 0.
    max_generations : cap when ``generations`` is None.
    """

    generations: int | None = None
    time_limit: float | None = DEFAULT_TIME_LIMIT_S
    window: int = HV_WINDOW
    tol: float = HV_TOL
    max_generations: int = MAX_GENERATIONS

    def check(self) -> None:
        if self.generations is not None and (int(self.generations) != self.generations or self.generations < 0):
            raise OptionError(lambda k: f"{k('generations')} must be >= 0, got {self.generations}")
        if self.time_limit is not None and not (self.time_limit > 0):
            raise OptionError(lambda k: f"{k('time_limit')} must be > 0 seconds, got {self.time_limit}")
        if self.window < 1 or self.tol < 0:
            raise ParameterError(f"termination window must be >= 1 and tol >= 0, got {self.window}, {self.tol}")

    def stop(self, gen: int, hv: list, elapsed_s: float) -> str | None:
        """The reason to stop after generation ``gen`` (hypervolumes ``hv`` of gens 0..gen), or None."""
        if self.generations is not None:
            return "generations" if gen >= self.generations else None
        if gen >= self.window and hv[gen] > 0.0 and hv[gen] - hv[gen - self.window] <= self.tol * hv[gen]:
            return "converged"
        if self.time_limit is not None and elapsed_s >= self.time_limit:
            return "time limit"
        if gen >= self.max_generations:
            return "generations"
        return None


@dataclass
class SearchResult:
    """Outcome of a search.

    front_genomes : (n_front, genes) non-dominated genomes found (all generations).
    front_F : (n_front, n_obj) their objective values as scored (fast tier, weighted).
    population : (pop, genes) and population_F : (pop, n_obj), the final population.
    logbook : DEAP Logbook, one record per generation (gen, evals, front, hv, min per objective).
    evaluations : total candidates evaluated.
    algorithm : "nsga2", "nsga3" or "random".  generations : generations run after generation 0.
    stop_reason : one of :data:`STOP_REASONS`.  elapsed_s : wall time of the search, s (across resumes).
    hypervolume : (generations + 1,) archive hypervolume after each generation.
    normaliser : the :class:`Normaliser` of the hypervolume.
    state : the :class:`SearchState` after the last generation (to save and resume from).
    resumed_from : the generation the search was resumed after, or None.
    """

    front_genomes: np.ndarray
    front_F: np.ndarray
    population: np.ndarray
    population_F: np.ndarray
    logbook: tools.Logbook
    evaluations: int
    algorithm: str = "nsga2"
    generations: int = 0
    stop_reason: str = "generations"
    elapsed_s: float = 0.0
    hypervolume: np.ndarray = field(default_factory=lambda: np.zeros(0))
    normaliser: Normaliser | None = None
    state: SearchState | None = None
    resumed_from: int | None = None


@dataclass
class SearchState:
    """Everything :func:`run_search` needs to continue after generation ``gen`` (plain data).

    gen : generations run after generation 0.  evaluations : candidates evaluated so far.
    elapsed_s : search wall time so far, s.
    population : (pop, genes) in [0, 1], in the loop's order.  population_F : (pop, n_obj).
    crowding : (pop,) DEAP ``fitness.crowding_dist`` (``selTournamentDCD`` reads it), NaN where unset.
    archive_G : (n, genes) and archive_F : (n, n_obj), the :class:`Archive` in its order.
    hypervolume : (gen + 1,).  logbook_evals, logbook_front : (gen + 1,) ints of the logbook.
    logbook_min : (gen + 1, n_obj).  normaliser : of the hypervolume.
    random_state : ``random.getstate()``.  numpy_state : ``np.random.get_state()``.
    uniform_state : the random algorithm's ``Generator.bit_generator.state``.
    """

    gen: int
    evaluations: int
    elapsed_s: float
    population: np.ndarray
    population_F: np.ndarray
    crowding: np.ndarray
    archive_G: np.ndarray
    archive_F: np.ndarray
    hypervolume: np.ndarray
    logbook_evals: np.ndarray
    logbook_front: np.ndarray
    logbook_min: np.ndarray
    normaliser: Normaliser
    random_state: tuple
    numpy_state: tuple
    uniform_state: dict


StateFn = Callable[[SearchState], None]


ProgressFn = Callable[[int, "int | None", int, np.ndarray], None]  # (gen, n_gen or None, front size, best F)


class Archive:
    """Every non-dominated (genome, F) evaluated so far (minimisation), as numpy arrays.

    A new point enters unless an archived point is at least as good everywhere (so of equal
    scores the first found is kept); archived points that a new one dominates leave. Does what
    DEAP's ``tools.ParetoFront`` does, vectorised (the archive grows to hundreds of points and is
    updated every generation).
    """

    def __init__(self, n_genes: int, n_obj: int):
        self.G = np.empty((0, n_genes))  # (n, genes)
        self.F = np.empty((0, n_obj))  # (n, n_obj)

    def __len__(self) -> int:
        return len(self.F)

    def update(self, G: np.ndarray, F: np.ndarray) -> None:
        for g, f in zip(np.asarray(G, dtype=float), np.asarray(F, dtype=float)):  # few per call: pop
            if len(self.F) and (self.F <= f).all(axis=1).any():
                continue
            keep = ~((f <= self.F).all(axis=1) & (f < self.F).any(axis=1))
            self.G = np.concatenate([self.G[keep], g[None]])
            self.F = np.concatenate([self.F[keep], f[None]])


def steered_reference_points(n_obj: int, steer: np.ndarray | None, p: int | None = None) -> np.ndarray:
    """NSGA-III reference points (R, n_obj) on the unit simplex; with ``steer`` (n_obj,) pulled
    ``STEER_PULL`` of the way toward ``c ∝ 1 / steer`` (so they crowd where the heavily weighted
    objectives are low). ``p``: divisions of the lattice (default: 12 for 2 objectives, 6 for 3,
    4 for 4, 3 above)."""
    if p is None:
        p = {1: 1, 2: 12, 3: 6, 4: 4}.get(n_obj, 3)
    ref = tools.uniform_reference_points(n_obj, p)  # (R, n_obj), rows sum to 1
    if steer is not None and not np.allclose(steer, steer[0]):
        c = 1.0 / np.asarray(steer, dtype=float)
        c /= c.sum()
        ref = c + (ref - c) * (1.0 - STEER_PULL)
    return ref


def achievement(Z: np.ndarray, steer: np.ndarray) -> np.ndarray:
    """Augmented weighted Chebyshev achievement (n,) of normalised objectives Z (n, n_obj), ideal 0."""
    WZ = Z * np.asarray(steer)[None, :]
    return WZ.max(axis=1) + RHO * WZ.sum(axis=1)


def run_search(evaluate_population: Callable[[np.ndarray], np.ndarray], initial: np.ndarray, *,
               algorithm: str = "nsga2", termination: Termination | None = None, seed: int = 0,
               progress: ProgressFn | None = None, normaliser: Normaliser | None = None,
               steer=None, clock: Callable[[], float] = time.monotonic, resume: SearchState | None = None,
               on_generation: StateFn | None = None, stop_requested: Callable[[], bool] | None = None) -> SearchResult:
    """Evolve ``initial`` (pop, genes) with ``algorithm`` until ``termination`` says stop.

    ``pop`` must be a multiple of 4 (``selTournamentDCD``); the caller rounds it.
    ``normaliser``: of the hypervolume (default: frozen from generation 0).
    ``steer``: (n_obj,) weights that move the search (module docstring), None for none.
    ``resume``: a :class:`SearchState` to continue from (``initial`` is then only checked for its
    shape, and may be None; ``seed`` is not used: the saved generator states are).
    ``on_generation``: called with the :class:`SearchState` after every generation (0 included).
    ``stop_requested``: () -> bool, asked after every generation; True stops with "interrupted".
    Same ``seed`` and inputs -> the same result (unless the time limit stops it), resumed or not.
    """
    termination = Termination() if termination is None else termination
    if algorithm not in ALGORITHMS:
        raise OptionError(lambda k: f"{k('algorithm')}: unknown algorithm '{algorithm}'; choose from {', '.join(ALGORITHMS)}")
    n_pop, n_genes = (resume.population if initial is None else initial).shape
    if n_pop < 4 or n_pop % 4:
        raise OptionError(lambda k: f"{k('population')} must be a multiple of 4 and >= 4, got {n_pop}")
    if resume is not None and resume.population.shape != (n_pop, n_genes):
        raise ParameterError(f"resume: the saved population is {resume.population.shape[0]} x "
                             f"{resume.population.shape[1]} genes, this search's {n_pop} x {n_genes}")
    termination.check()
    t_start = clock() - (0.0 if resume is None else float(resume.elapsed_s))
    random.seed(seed)
    np.random.seed(seed % 2**32)  # selNSGA3's niching draws from numpy's global generator
    uniform = np.random.default_rng(seed)  # the random algorithm's genomes
    Individual = None
    tb = base.Toolbox()
    tb.register("mate", tools.cxSimulatedBinaryBounded, low=0.0, up=1.0, eta=ETA_CROSSOVER)
    tb.register("mutate", tools.mutPolynomialBounded, low=0.0, up=1.0, eta=ETA_MUTATION, indpb=1.0 / n_genes)

    stats = tools.Statistics(lambda ind: ind.fitness.values)
    stats.register("min", np.min, axis=0)
    logbook = tools.Logbook()
    logbook.header = "gen", "evals", "front", "hv", "min"

    def score(inds) -> int:
        invalid = [ind for ind in inds if not ind.fitness.valid]
        if invalid:
            F = evaluate_population(np.asarray(invalid))
            for ind, f in zip(invalid, F):
                ind.fitness.values = tuple(float(v) for v in f)
        return len(invalid)

    if resume is None:
        F0 = evaluate_population(np.asarray(initial))
        pop_G = np.asarray(initial)
    else:
        F0, pop_G = resume.population_F, resume.population
    n_obj = F0.shape[1]
    front = Archive(n_genes, n_obj)
    Individual = _classes(n_obj)
    pop = [Individual(row) for row in pop_G]
    for ind, f in zip(pop, F0):
        ind.fitness.values = tuple(float(v) for v in f)
    if resume is None:
        norm = Normaliser.frozen(F0) if normaliser is None else normaliser
    else:
        norm = resume.normaliser
        if normaliser is not None and not (np.array_equal(normaliser.ideal, norm.ideal)
                                           and np.array_equal(normaliser.scale, norm.scale)):
            raise ParameterError("resume: the saved hypervolume normaliser differs from this search's")
    w = None if steer is None else np.asarray(steer, dtype=float)
    if w is not None and (w.shape != (n_obj,) or np.allclose(w, w[0])):
        w = None
    ref_points = steered_reference_points(n_obj, w) if algorithm == "nsga3" else None

    def select(candidates: list, k: int) -> list:
        if algorithm == "nsga3":
            return tools.selNSGA3(candidates, k, ref_points)
        return tools.selNSGA2(candidates, k)

    def survive(candidates: list) -> list:
        if w is None:
            return select(candidates, n_pop)
        n_elite = int(round(STEER_ELITE_FRACTION * n_pop))
        a = achievement(norm(np.asarray([c.fitness.values for c in candidates])), w)
        order = np.argsort(a, kind="stable")
        elite = [candidates[i] for i in order[:n_elite]]
        rest = select([candidates[i] for i in order[n_elite:]], n_pop - n_elite)
        tools.emo.assignCrowdingDist(elite)
        return elite + rest

    def offspring_of(pop: list) -> list:
        if algorithm == "random":
            return [Individual(row) for row in uniform.uniform(0.0, 1.0, size=(n_pop, n_genes))]
        parents = tools.selTournamentDCD(pop, n_pop) if algorithm == "nsga2" else tools.selRandom(pop, n_pop)
        off = [tb.clone(ind) for ind in parents]
        for a, b in zip(off[::2], off[1::2]):
            if random.random() <= CROSSOVER_PROB:
                tb.mate(a, b)
            tb.mutate(a)
            tb.mutate(b)
            del a.fitness.values, b.fitness.values
        return off

    hv: list = []

    def record(gen: int, evals: int) -> None:
        hv.append(hypervolume(front.F, norm))
        logbook.record(gen=gen, evals=evals, front=len(front), hv=hv[-1], **stats.compile(pop))
        if progress:
            progress(gen, termination.generations, len(front), np.asarray(logbook[-1]["min"]))

    def state(gen: int, total: int) -> SearchState:
        return SearchState(
            gen=gen, evaluations=total, elapsed_s=clock() - t_start,
            population=np.asarray([list(i) for i in pop], dtype=float).reshape(n_pop, n_genes),
            population_F=np.asarray([i.fitness.values for i in pop], dtype=float),
            crowding=np.asarray([getattr(i.fitness, "crowding_dist", np.nan) for i in pop], dtype=float),
            archive_G=front.G.copy(), archive_F=front.F.copy(), hypervolume=np.asarray(hv, dtype=float),
            logbook_evals=np.asarray(logbook.select("evals"), dtype=np.int64),
            logbook_front=np.asarray(logbook.select("front"), dtype=np.int64),
            logbook_min=np.asarray(logbook.select("min"), dtype=float).reshape(len(logbook), n_obj),
            normaliser=norm, random_state=random.getstate(), numpy_state=np.random.get_state(),
            uniform_state=uniform.bit_generator.state)

    def stop(gen: int, total: int) -> str | None:
        if on_generation is not None:
            on_generation(state(gen, total))
        reason = termination.stop(gen, hv, clock() - t_start)
        if reason is None and stop_requested is not None and stop_requested():
            reason = "interrupted"
        return reason

    if resume is None:
        total = len(pop)
        if algorithm != "random":
            pop = survive(pop)  # assigns crowding distance for selTournamentDCD
        front.update(pop, [i.fitness.values for i in pop])
        record(0, total)
        gen = 0
        reason = stop(gen, total)
    else:  # the loop's state after generation resume.gen, exactly
        for ind, c in zip(pop, resume.crowding):
            if not np.isnan(c):
                ind.fitness.crowding_dist = float(c)
        front.G, front.F = np.array(resume.archive_G, dtype=float), np.array(resume.archive_F, dtype=float)
        hv.extend(float(h) for h in resume.hypervolume)
        for g, (e, n, m, h) in enumerate(zip(resume.logbook_evals, resume.logbook_front, resume.logbook_min, hv)):
            logbook.record(gen=g, evals=int(e), front=int(n), hv=h, min=np.array(m, dtype=float))
        random.setstate(resume.random_state)
        np.random.set_state(resume.numpy_state)
        uniform.bit_generator.state = resume.uniform_state
        gen, total = int(resume.gen), int(resume.evaluations)
        reason = termination.stop(gen, hv, clock() - t_start)  # resumed with a budget already spent
        if reason is None and stop_requested is not None and stop_requested():
            reason = "interrupted"
    while reason is None:
        gen += 1
        offspring = offspring_of(pop)
        evals = score(offspring)
        total += evals
        pop = offspring if algorithm == "random" else survive(pop + offspring)
        front.update(offspring, [i.fitness.values for i in offspring])  # every candidate evaluated
        record(gen, evals)
        reason = stop(gen, total)
    return SearchResult(
        front_genomes=front.G,
        front_F=front.F,
        population=np.asarray([list(i) for i in pop]),
        population_F=np.asarray([i.fitness.values for i in pop]),
        logbook=logbook,
        evaluations=total,
        algorithm=algorithm,
        generations=gen,
        stop_reason=reason,
        elapsed_s=clock() - t_start,
        hypervolume=np.asarray(hv),
        normaliser=norm,
        state=state(gen, total),
        resumed_from=None if resume is None else int(resume.gen),
    )


def run_nsga2(evaluate_population: Callable[[np.ndarray], np.ndarray], initial: np.ndarray, *,
              generations: int, seed: int, progress: ProgressFn | None = None) -> SearchResult:
    """NSGA-II for exactly ``generations`` generations (:func:`run_search` with that override)."""
    if generations < 0:
        raise OptionError(lambda k: f"{k('generations')} must be >= 0, got {generations}")
    return run_search(evaluate_population, initial, algorithm="nsga2", seed=seed, progress=progress,
                      termination=Termination(generations=generations, time_limit=None))


def evaluations_to_fraction(result: SearchResult, fraction: float = 0.95) -> int:
    """Candidates evaluated until the archive's hypervolume first reached ``fraction`` of its final value."""
    hv = np.asarray(result.hypervolume)
    evals = np.cumsum([r["evals"] for r in result.logbook])
    if len(hv) == 0 or hv[-1] <= 0:
        return int(evals[-1]) if len(evals) else 0
    return int(evals[int(np.argmax(hv >= fraction * hv[-1]))])


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask (n,) of rows of F (n, m) that no other row dominates (minimisation)."""
    le = (F[:, None, :] <= F[None, :, :]).all(axis=2)  # le[i, j]: i <= j everywhere
    lt = (F[:, None, :] < F[None, :, :]).any(axis=2)
    dominates = le & lt  # dominates[i, j]: i dominates j
    return ~dominates.any(axis=0)
