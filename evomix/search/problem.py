"""``evaluate_population``: genomes (n, genes) -> objective matrix F (n, n_obj), one call per generation.

The population is scored in blocks of ``block_size`` genomes (32, or 16 for a large session),
counted from its first row, one vectorized
render per block (this also bounds memory: the fast tier's per-stem tensors grow with
pop x stems x bands x frames). A genome's F depends on its block and nothing else: the matrix
products of a block round the same way whenever the block is the same, but BLAS may round a row
differently in a batch of another size, so a block is never cut. Threads and workers get whole
blocks (``evomix.search.parallel.split``), which makes F bitwise the same for any number of them.
Objectives with weight 0 are not computed; the others are multiplied by their weight (NSGA-II is
invariant to that scaling, but the choice of alternatives and any scalarisation use it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomix.core.runtime import single_threaded_blas
from evomix.engine.analysis import Analysis
from evomix.engine.batch import render_features
from evomix.search.genome import GeneTable
from objectives import Target, evaluate
from objectives.balance import role_errors_db
from objectives.base import MAX_WEIGHT
from objectives.genre import space_errors_lu

INFEASIBLE = 1e6  # added to every objective of a candidate that violates a constraint (with the violation, dB)
RAW_SCORE_CAP = 1e3  # a raw score above this ranks as this in the search (none comes near: each is dB or LU)
if MAX_WEIGHT * RAW_SCORE_CAP >= INFEASIBLE:  # a feasible weighted score never reaches the infeasible marker
    raise RuntimeError("INFEASIBLE must exceed MAX_WEIGHT * RAW_SCORE_CAP")
BLOCK = 32  # genomes per vectorized render; also the unit of work of a thread or worker
LARGE_BLOCK_STEM_FRAMES = 32768  # above this many stems x frames a session is scored in blocks of SMALL_BLOCK
SMALL_BLOCK = 16  # ... whose arrays stay in cache, and which let a population of 32 use two threads; on a smaller
# session, blocks of 16 cost more than they save (the timings are in the README)


def block_size(analysis: Analysis) -> int:
    """Genomes per block for this session: ``BLOCK``, or ``SMALL_BLOCK`` for a large session
    (more than ``LARGE_BLOCK_STEM_FRAMES`` stems x the fast tier's frames: the song's, or its
    representative segments', ``Analysis.fast``). Fixed by the session, so a
    genome's F still depends on nothing but its block."""
    return SMALL_BLOCK if analysis.n_stems * analysis.fast.n_frames > LARGE_BLOCK_STEM_FRAMES else BLOCK


@dataclass(frozen=True)
class Problem:
    """Everything needed to score genomes; plain data, picklable (sent once to each worker)."""

    analysis: Analysis
    table: GeneTable
    target: Target
    names: tuple  # objectives in the search, in column order
    weights: tuple  # weight of each objective in ``names``, > 0
    max_limiting_db: float | None = None  # limiter budget, dB of gain reduction (None: none)

    @property
    def block(self) -> int:
        """Genomes per vectorized render (:func:`block_size`)."""
        return block_size(self.analysis)

    def raw_scores(self, genomes: np.ndarray) -> np.ndarray:
        """Unweighted objective values (n, len(names)) of genomes (n, genes), fast tier, rendered
        block by block (:attr:`block` genomes; a block of one is rendered beside a copy of itself,
        because numpy's matrix-vector kernels round differently from the matrix-matrix ones)."""
        return self.scores_and_violations(genomes)[0]

    def scores_and_violations(self, genomes: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`raw_scores` and each candidate's three constraint violations (n,) >= 0, fast tier:
        the limiter's gain reduction beyond the budget (dB; ``max_limiting_db``, 0 without one);
        while balance is an objective, the roles more than ``ROLE_ERROR_DB`` outside the genre's
        ranges (dB; :func:`objectives.balance.role_errors_db`: a buried bass is an error, not an
        alternative); while genre is one and the run has a reverb bus, the return more than
        ``SPACE_ERROR_LU`` outside the genre's space (LU; :func:`objectives.genre.space_errors_lu`).
        Each makes a mix infeasible (:meth:`weighted_scores`)."""
        genomes = np.atleast_2d(np.asarray(genomes, dtype=float))
        out = np.empty((genomes.shape[0], len(self.names)))
        limiting, roles, space = (np.zeros(genomes.shape[0]) for _ in range(3))
        size = self.block
        for start in range(0, genomes.shape[0], size):
            block = genomes[start : start + size]
            n = block.shape[0]
            if n == 1:
                block = np.concatenate([block, block])
            params = self.table.decode(block, self.analysis.trim_db)
            feats = render_features(self.analysis, params, target_lufs=self.target.target_lufs,
                                    ceiling_dbtp=self.target.ceiling_dbtp)
            out[start : start + n] = evaluate(feats, self.target, self.names)[:n]
            if self.max_limiting_db is not None:
                limiting[start : start + n] = np.maximum(feats.limiter_gr_db[:n] - float(self.max_limiting_db), 0.0)
            if "balance" in self.names:
                roles[start : start + n] = role_errors_db(feats, self.target)[:n]
            if "genre" in self.names:
                space[start : start + n] = space_errors_lu(feats, self.target)[:n]
        return out, limiting, roles, space

    def evaluate_population(self, genomes: np.ndarray) -> np.ndarray:
        """Weighted objective matrix F (n, len(names)), lower is better.

        BLAS runs single-threaded here: the fast tier's matrix products are small and batched, so BLAS
        threads cost more than they save (far more when another process competes for a core);
        ``evomix.search.parallel.score`` spreads the population over threads instead.
        """
        with single_threaded_blas():
            return self.weighted_scores(genomes)

    def weighted_scores(self, genomes: np.ndarray) -> np.ndarray:
        """:meth:`evaluate_population` without touching the BLAS thread limit (the caller sets it;
        ``evomix.search.parallel.score`` does, once, around its threads).

        A candidate that violates a constraint (:meth:`scores_and_violations`: the limiter taking more off its
        peaks than ``max_limiting_db``, a role buried or pushed far outside the genre's range, a return far
        outside the genre's space) scores ``INFEASIBLE + score + violation`` (dB or LU) on each objective: any
        candidate without a violation dominates it (Deb's constrained domination: Deb, Pratap, Agarwal &
        Meyarivan 2002, "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEVC 6(2), sec.
        VI), and two with one compare by score plus violation (Deb compares the violation alone, which leaves a
        search that has found no feasible mix yet a front of one). A search that has found only a few feasible
        mixes (a few generations in, or locks that rule most of the genre's balance out) has a front of those
        few. Expressed in the objective values, so DEAP's selection, the archive and the checkpoints need
        nothing else; such a point lies beyond the hypervolume's reference point and adds no volume."""
        raw, limiting, roles, space = self.scores_and_violations(genomes)
        over = limiting + roles + space  # (n,) dB and LU
        F = np.minimum(raw, RAW_SCORE_CAP) * np.asarray(self.weights)[None, :]  # < INFEASIBLE: weights <= 100
        bad = over > 0.0
        F[bad] = INFEASIBLE + F[bad] + over[bad, None]  # every feasible F < INFEASIBLE <= every infeasible one
        return F
