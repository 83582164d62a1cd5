"""The genetic search: DEAP NSGA-II over [0, 1] genomes, scored one generation per call.

Follows DEAP ``examples/ga/nsga2.py``: bounded simulated-binary crossover, bounded polynomial
mutation, ``selTournamentDCD`` for mating and ``selNSGA2`` for survival; only individuals whose
fitness is invalid are evaluated, in one ``evaluate_population`` call per generation.
"""
from __future__ import annotations

import array
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from deap import base, creator, tools

from evomix.errors import ParameterError

CROSSOVER_PROB = 0.9
ETA_CROSSOVER = 15.0
ETA_MUTATION = 20.0


def _classes(n_obj: int):
    """DEAP fitness/individual classes for ``n_obj`` minimised objectives (created once)."""
    fit, ind = f"FitnessMin{n_obj}", f"Individual{n_obj}"
    if not hasattr(creator, fit):
        creator.create(fit, base.Fitness, weights=(-1.0,) * n_obj)
        creator.create(ind, array.array, typecode="d", fitness=getattr(creator, fit))
    return getattr(creator, ind)


for _n in range(1, 5):  # the common cases exist at import (DEAP pickling needs module-level classes)
    _classes(_n)


@dataclass
class SearchResult:
    """Outcome of a search.

    front_genomes : (n_front, genes) non-dominated genomes found (all generations).
    front_F : (n_front, n_obj) their weighted objective values (fast tier).
    population : (pop, genes) and population_F : (pop, n_obj), the final population.
    logbook : DEAP Logbook, one record per generation (gen, evals, front, min per objective).
    evaluations : total candidates evaluated.
    """

    front_genomes: np.ndarray
    front_F: np.ndarray
    population: np.ndarray
    population_F: np.ndarray
    logbook: tools.Logbook
    evaluations: int


ProgressFn = Callable[[int, int, int, np.ndarray], None]  # (gen, n_gen, front size, best F per objective)


def run_nsga2(evaluate_population: Callable[[np.ndarray], np.ndarray], initial: np.ndarray, *,
              generations: int, seed: int, progress: ProgressFn | None = None) -> SearchResult:
    """Evolve ``initial`` (pop, genes) for ``generations`` generations with NSGA-II.

    ``pop`` must be a multiple of 4 (``selTournamentDCD``); the caller rounds it.
    Same ``seed`` and inputs -> the same result.
    """
    n_pop, n_genes = initial.shape
    if n_pop < 4 or n_pop % 4:
        raise ParameterError(f"--population must be a multiple of 4 and >= 4, got {n_pop}")
    if generations < 0:
        raise ParameterError(f"--generations must be >= 0, got {generations}")
    random.seed(seed)
    probe = evaluate_population(initial[:1])
    n_obj = probe.shape[1]
    Individual = _classes(n_obj)
    tb = base.Toolbox()
    tb.register("mate", tools.cxSimulatedBinaryBounded, low=0.0, up=1.0, eta=ETA_CROSSOVER)
    tb.register("mutate", tools.mutPolynomialBounded, low=0.0, up=1.0, eta=ETA_MUTATION, indpb=1.0 / n_genes)
    tb.register("select", tools.selNSGA2)

    stats = tools.Statistics(lambda ind: ind.fitness.values)
    stats.register("min", np.min, axis=0)
    logbook = tools.Logbook()
    logbook.header = "gen", "evals", "front", "min"
    front = tools.ParetoFront(similar=lambda a, b: a == b)

    def score(inds) -> int:
        invalid = [ind for ind in inds if not ind.fitness.valid]
        if invalid:
            F = evaluate_population(np.asarray(invalid))
            for ind, f in zip(invalid, F):
                ind.fitness.values = tuple(float(v) for v in f)
        return len(invalid)

    pop = [Individual(row) for row in initial]
    evals = score(pop)
    pop = tb.select(pop, n_pop)  # assigns crowding distance for selTournamentDCD
    front.update(pop)
    logbook.record(gen=0, evals=evals, front=len(front), **stats.compile(pop))
    if progress:
        progress(0, generations, len(front), np.asarray(logbook[-1]["min"]))
    total = evals
    for gen in range(1, generations + 1):
        offspring = [tb.clone(ind) for ind in tools.selTournamentDCD(pop, n_pop)]
        for a, b in zip(offspring[::2], offspring[1::2]):
            if random.random() <= CROSSOVER_PROB:
                tb.mate(a, b)
            tb.mutate(a)
            tb.mutate(b)
            del a.fitness.values, b.fitness.values
        evals = score(offspring)
        total += evals
        pop = tb.select(pop + offspring, n_pop)
        front.update(pop)
        logbook.record(gen=gen, evals=evals, front=len(front), **stats.compile(pop))
        if progress:
            progress(gen, generations, len(front), np.asarray(logbook[-1]["min"]))
    return SearchResult(
        front_genomes=np.asarray([list(i) for i in front]),
        front_F=np.asarray([i.fitness.values for i in front]),
        population=np.asarray([list(i) for i in pop]),
        population_F=np.asarray([i.fitness.values for i in pop]),
        logbook=logbook,
        evaluations=total,
    )


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask (n,) of rows of F (n, m) that no other row dominates (minimisation)."""
    le = (F[:, None, :] <= F[None, :, :]).all(axis=2)  # le[i, j]: i <= j everywhere
    lt = (F[:, None, :] < F[None, :, :]).any(axis=2)
    dominates = le & lt  # dominates[i, j]: i dominates j
    return ~dominates.any(axis=0)
