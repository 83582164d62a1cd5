"""``evomix explore``: a map of the mix space, one good mix per region of 2-3 listener descriptors.

A quality-diversity search (MAP-Elites, Mouret & Clune 2015, "Illuminating search spaces by
mapping elites", arXiv:1504.04909) fills a pyribs ``GridArchive`` whose axes are 2 or 3 listener
descriptors of :mod:`evomix.choose.describe` (names in :data:`MAP_DESCRIPTORS`: ``brightness`` = spectral
centroid, ``width`` = side/mid, ``vocal`` = vocal level vs the mix, ``low_end``, ``punch``,
``dynamics`` = PLR). Each cell keeps the best mix seen whose descriptors fall in it.

Scoring: every candidate is rendered once in the fast tier (``engine.batch.render_features``,
blocks of ``evaluate.block_size`` genomes, on the threads / processes / dask workers of
:class:`evomix.search.parallel.ParallelEvaluator`); the same features give its objectives and its
descriptors (:class:`DescribedProblem`), so a generation costs what a ``mix`` generation costs.

Quality (pyribs maximises it): minus the weighted mean of the normalised objectives,

    quality = - sum_k w_k * f_k / s_k / sum_k w_k,

with ``f_k`` the raw objective (masking dB, loudness LU, balance dB, genre dB), ``w_k`` its
``--weights`` weight and ``s_k`` its fixed scale (``hypervolume.OBJECTIVE_SCALES``: what a
poor-but-plausible mix scores). 0 is a mix on every target; -1 is, on average, a poor mix.

Variation: pyribs emitters on genomes in [0, 1] (bounds clip every child): an ``IsoLineEmitter``
(Vassiliades & Mouret, GECCO 2018, "Discovering the elite hypervolume by leveraging interspecies
correlation": iso sigma ``ISO_SIGMA``, line sigma ``LINE_SIGMA``) and a ``GaussianEmitter`` (sigma
``GAUSSIAN_SIGMA``), ``EMITTER_BATCH`` children each per iteration, under a ``Scheduler`` (ask /
tell). Iteration 0 is the smart first generation of :mod:`evomix.search.seeding` plus uniform random
genomes (``INITIAL_SAMPLE`` in all).

Grid ranges: taken from that initial sample, per descriptor from its minimum to its maximum,
widened by ``RANGE_MARGIN`` of the span on each side (the random genomes reach far, so this spans
what the gene ranges allow on this song); a mix found later beyond a range lands in the edge cell
(pyribs clips the index), so the edge cells mean "this far or beyond".

Export: the occupied cells best first (``pick="spread"``: spread over the map, :func:`pick_order`),
at most ``max_exports`` (exact renders cost seconds each on a real song), each rendered exactly
(``evomix.choose.verify.render_alternatives``: at the loudness target and
true-peak ceiling) as ``cell-NN.wav`` with ``cell-NN.json`` (the ``alt-NN.json`` format, so
``evomix render`` reproduces it, plus a ``cell`` object). A cell is skipped when its mix sounds the
same as one exported before it (``describe.DISTINCT_JND``, fast-tier descriptors before the render
and exact ones after). ``archive.json`` lists every occupied cell; ``map.png`` draws quality per
cell. Locks and ranges (:mod:`evomix.search.constraints`) edit the gene table, so every mix obeys them;
the genre's defaults join under them and the dynamic cuts' keys (``--key``, roles) are resolved as
``evomix mix`` does (``pipeline.searched_constraints``), and ``settings.constraints`` records the
result as ``mix`` does, so ``evomix vary cell-NN.json`` searches the same table.
"""
from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evomix import __version__, pipeline
from evomix.choose.describe import (
    DESCRIPTORS,
    DISTINCT_JND,
    LEAD_ROLES,
    describe,
    distinct_rule,
    jnd_distance,
    jnd_matrix,
)
from evomix.choose.describe import row as descriptor_row
from evomix.choose.select import label_alternatives
from evomix.choose.verify import render_alternatives
from evomix.engine.batch import render_features
from evomix.errors import OptionError, ParameterError, check_number
from evomix.io.audio import write_audio
from evomix.io.files import json_text, write_bytes_atomic, write_text_atomic
from evomix.io.places import check_output_folder
from evomix.io.spill import materialise
from evomix.output.result import PARAMS_FORMAT
from evomix.progress import NULL_REPORTER, ProgressReporter
from evomix.search.constraints import Constraints
from evomix.search.genome import GeneTable
from evomix.search.hypervolume import OBJECTIVE_SCALES, Normaliser
from evomix.search.parallel import ParallelEvaluator
from evomix.search.problem import Problem
from evomix.search.seeding import smart_initial_population
from evomix.settings import PICKS, Master, Parallel
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile, parse_weights

ARCHIVE_FORMAT = "evomix-archive/1"

#: map descriptor -> (evomix.choose.describe key, axis label, unit)
MAP_DESCRIPTORS = {
    "brightness": ("centroid_hz", "brightness: spectral centroid", "Hz"),
    "width": ("side_mid_db", "width: side / mid energy", "dB"),
    "vocal": ("vocal_lu", "vocal level vs the mix", "LU"),
    "low_end": ("low_end_db", "low end: energy below 120 Hz vs all", "dB"),
    "punch": ("punch_db", "punch: 95th / 50th percentile frame power", "dB"),
    "dynamics": ("plr_db", "dynamics: peak-to-loudness ratio", "dB"),
}
LOG_AXES = ("brightness",)  # gridded in octaves (log2 Hz), as describe.JND compares the centroid
ALIASES = {"low-end": "low_end", "lowend": "low_end", "bright": "brightness", "plr": "dynamics"}
DEFAULT_DESCRIPTORS = ("brightness", "width")
DEFAULT_BINS = {2: 12, 3: 6}  # cells per axis: 144 cells for a 2-d map, 216 for a 3-d one
DEFAULT_TIME_LIMIT_S = 20.0
DEFAULT_MAX_EXPORTS = 16

INITIAL_SAMPLE = 128  # iteration 0: smart first generation (75 %) + uniform random genomes (25 %)
RANGE_MARGIN = 0.05  # of the initial sample's span, on each side of each axis
ISO_SIGMA = 0.02  # genome units
LINE_SIGMA = 0.2
GAUSSIAN_SIGMA = 0.08  # genome units
EMITTER_BATCH = 32  # = evaluate.BLOCK: one fast-tier block (two for a large session) per emitter per iteration
BAD_QUALITY = -1e9  # a candidate whose scores are not finite (kept out of the exported cells)
RENDER_ROUNDS = 3  # rounds of exact renders spent replacing cells that render as near-duplicates

_CELL_FILE = re.compile(r"^cell-\d+\.(wav|json)$")


def parse_descriptors(spec: str | Sequence[str] | None, roles: Sequence[str] | None = None, *,
                      option: str = "--descriptors") -> tuple[str, ...]:
    """``"brightness,width"`` -> ``("brightness", "width")``: 2 or 3 distinct names of
    :data:`MAP_DESCRIPTORS` (aliases ``low-end``, ``plr``). With ``roles``, ``vocal`` needs a stem of
    role vocal or lead.

    Raises
    ------
    ParameterError
        Unknown name (the message lists the valid ones), a repeat, fewer than 2 or more than 3, or
        ``vocal`` without a vocal / lead stem.
    """
    if spec is None:
        return DEFAULT_DESCRIPTORS
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = []
    for raw in items:
        key = str(raw).strip().lower()
        key = ALIASES.get(key, key)
        if key not in MAP_DESCRIPTORS:
            raise ParameterError(f"{option}: unknown descriptor '{str(raw).strip()}'; "
                                 f"choose 2 or 3 of {', '.join(MAP_DESCRIPTORS)}")
        if key in names:
            raise ParameterError(f"{option}: '{key}' is given twice; "
                                 f"choose 2 or 3 different ones of {', '.join(MAP_DESCRIPTORS)}")
        names.append(key)
    if not 2 <= len(names) <= 3:
        raise ParameterError(f"{option}: give 2 or 3 descriptors (got {len(names)}), e.g. brightness,width; "
                             f"valid: {', '.join(MAP_DESCRIPTORS)}")
    if roles is not None and "vocal" in names and not any(r in roles for r in LEAD_ROLES):
        raise ParameterError(f"{option}: 'vocal' needs a stem of role vocal or lead (roles here: {', '.join(roles)}); "
                             f"set one with --role FILE=vocal or choose others of {', '.join(MAP_DESCRIPTORS)}")
    return tuple(names)


@dataclass(frozen=True)
class DescribedProblem(Problem):
    """A :class:`~evomix.search.problem.Problem` whose scores also carry every listener descriptor.

    ``weighted_scores(genomes (n, genes)) -> (n, n_obj + len(DESCRIPTORS))``: the weighted
    objectives, then :data:`evomix.choose.describe.DESCRIPTORS` in their order and units, all from one
    fast-tier render per block; so :class:`~evomix.search.parallel.ParallelEvaluator` (threads, jobs,
    dask) scores it unchanged and bit for bit as one thread would.
    """

    def weighted_scores(self, genomes: np.ndarray) -> np.ndarray:
        """The weighted objectives, then the descriptors, of genomes (n, genes): (n, n_obj + len(DESCRIPTORS))."""
        genomes = np.atleast_2d(np.asarray(genomes, dtype=float))
        k = len(self.names)
        out = np.empty((genomes.shape[0], k + len(DESCRIPTORS)))
        w = np.asarray(self.weights, dtype=float)[None, :]
        size = self.block
        for start in range(0, genomes.shape[0], size):
            block = genomes[start : start + size]
            n = block.shape[0]
            if n == 1:  # rendered beside a copy, as Problem.raw_scores does
                block = np.concatenate([block, block])
            feats = render_features(self.analysis, self.table.decode(block, self.analysis.trim_db),
                                    target_lufs=self.target.target_lufs, ceiling_dbtp=self.target.ceiling_dbtp)
            out[start : start + n, :k] = evaluate(feats, self.target, self.names)[:n] * w
            d = describe(feats)
            out[start : start + n, k:] = np.stack([d[key] for key in DESCRIPTORS], axis=-1)[:n]  # (n, d)
        return out


def quality(F_weighted: np.ndarray, names: Sequence[str], weights: Sequence[float]) -> np.ndarray:
    """Quality (n,) of weighted objectives (n, n_obj): minus the weighted mean of the normalised
    objectives (module doc); 0 = every objective on target, higher is better."""
    w = np.asarray(weights, dtype=float)
    Z = Normaliser.fixed(names, w)(F_weighted)  # (n, n_obj): raw / scale
    return -(Z @ w) / w.sum()


@dataclass
class ExploreResult:
    """The outcome of :func:`explore`.

    cells : every occupied cell, best quality first: dicts with ``index``, ``grid``, ``measures``
        (the map descriptors, fast tier), ``quality``, ``objectives`` (raw, fast), ``genome``,
        ``params``, ``descriptors_fast``; exported ones also ``export``, ``exact``, ``descriptors``
        (exact), ``labels``, ``measured``.
    exports : indices into ``cells`` of the exported ones, in export order (``cell-01`` first).
    renders : their exact renders (``evomix.engine.render.ExactRender``), in the same order.
    """

    session: object
    target: Target
    genre: str
    names: tuple
    weights: dict
    descriptors: tuple
    axes: list  # per map descriptor: {"name", "key", "label", "unit", "scale", "range", "bins", "edges"} in its
    # unit, and "grid_range", the archive's own range (log2 Hz for a "log" axis, see to_grid)
    cells: list
    exports: list
    renders: list
    settings: dict
    warnings: list

    def archive_dict(self) -> dict:
        """The documented ``archive.json`` content."""
        return {
            "format": ARCHIVE_FORMAT,
            "evomix_version": __version__,
            "descriptors": self.axes,
            "quality": "-(sum_k w_k f_k / s_k) / sum_k w_k: minus the weighted mean of the normalised objectives "
                       "(f_k raw, s_k its scale); 0 = every objective on target, higher is better",
            "objectives": list(self.names),
            "weights": self.weights,
            "scales": {n: OBJECTIVE_SCALES.get(n, 1.0) for n in self.names},
            "genre": self.genre,
            "target_lufs": self.target.target_lufs,
            "ceiling_dbtp": self.target.ceiling_dbtp,
            "sr": self.session.sr,
            "stems": {n: {"file": str(p), "role": r} for n, p, r in zip(self.session.names, self.session.paths,
                                                                         self.session.roles)},
            "distinct": distinct_rule(),
            "settings": self.settings,
            "cells": self.cells,
        }

    def cell_params_dict(self, k: int) -> dict:
        """``cell-NN.json`` of the k-th export: the ``alt-NN.json`` format plus ``cell``."""
        c = self.cells[self.exports[k]]
        return {"format": PARAMS_FORMAT, "evomix_version": __version__, "name": c["export"],
                "sr": self.session.sr, "genre": self.genre, "target_lufs": self.target.target_lufs,
                "ceiling_dbtp": self.target.ceiling_dbtp, "objectives": c["objectives"], "exact": c["exact"],
                "labels": c["labels"], "descriptors": c["descriptors"],
                "constraints": self.settings.get("constraints"),  # `evomix vary cell-NN.json` keeps them
                "cell": {"index": c["index"], "grid": c["grid"], "measures": c["measures"], "quality": c["quality"],
                         "bounds": {a["name"]: [a["edges"][g], a["edges"][g + 1]]
                                    for a, g in zip(self.axes, c["grid"])}},
                "params": c["params"]}

    def write(self, out: str | Path, *, force: bool = False, reporter: ProgressReporter | None = None) -> list[Path]:
        """Write ``cell-NN.wav`` (24-bit) and ``cell-NN.json`` per export, ``archive.json`` and
        ``map.png`` into ``out``, each atomically. Refuses a non-empty folder unless ``force`` (then
        earlier ``cell-NN`` files are removed first, so the folder matches ``archive.json``)."""
        out = Path(out)
        check_output_folder(out, force=force, inputs=self.session.paths)
        out.mkdir(parents=True, exist_ok=True)
        inputs = {Path(p).resolve() for p in self.session.paths}
        for p in out.iterdir():
            if _CELL_FILE.match(p.name) and p.resolve() not in inputs:
                p.unlink()
        reporter = NULL_REPORTER if reporter is None else reporter
        written = []
        with reporter.phase("write", total=2 * len(self.exports) + 2, unit="files") as ph:
            for k, r in enumerate(self.renders):
                name = self.cells[self.exports[k]]["export"]
                written.append(write_audio(out / f"{name}.wav", materialise(r.mix), self.session.sr, subtype="PCM_24"))
                written.append(write_text_atomic(out / f"{name}.json", json.dumps(self.cell_params_dict(k), indent=1)))
                ph.advance(2)
            written.append(write_text_atomic(out / "archive.json", json_text(self.archive_dict(), "cells")))
            written.append(write_bytes_atomic(out / "map.png", map_png(self)))
            ph.advance(2)
        return written


def to_grid(descriptors: Sequence[str], M: np.ndarray) -> np.ndarray:
    """Map descriptor values (n, m) in their units -> the archive's measure space: log2 for
    :data:`LOG_AXES` (equal cells are equal ratios), as is otherwise."""
    M = np.array(M, dtype=float, ndmin=2)
    for j, name in enumerate(descriptors):
        if name in LOG_AXES:
            M[:, j] = np.log2(np.maximum(M[:, j], 1.0))
    return M


def from_grid(descriptors: Sequence[str], M: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_grid`."""
    M = np.array(M, dtype=float, ndmin=2)
    for j, name in enumerate(descriptors):
        if name in LOG_AXES:
            M[:, j] = 2.0 ** M[:, j]
    return M


def _axes(descriptors: Sequence[str], Mg: np.ndarray, bins: int) -> list:
    """Grid axes from the initial sample's measures Mg (n, len(descriptors)) in grid space
    (:func:`to_grid`); ``range`` and ``edges`` are stored in the descriptors' units."""
    axes = []
    for j, name in enumerate(descriptors):
        key, label, unit = MAP_DESCRIPTORS[name]
        x = Mg[:, j][np.isfinite(Mg[:, j])]
        lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 1.0)
        span = max(hi - lo, 1e-3)
        lo, hi = lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span
        edges = np.linspace(lo, hi, bins + 1)
        if name in LOG_AXES:
            edges = 2.0 ** edges
        axes.append({"name": name, "key": key, "label": label, "unit": unit,
                     "scale": "log" if name in LOG_AXES else "linear", "grid_range": [lo, hi],
                     "range": [round(float(edges[0]), 4), round(float(edges[-1]), 4)],
                     "bins": int(bins), "edges": [round(float(e), 4) for e in edges]})
    return axes


def explore(paths: Sequence[str | Path], *, descriptors: str | Sequence[str] | None = None, bins: int | None = None,
            genre: str = "pop", weights: str | Mapping[str, float] | None = None, master: Master | None = None,
            time_limit: float | None = DEFAULT_TIME_LIMIT_S, iterations: int | None = None,
            max_exports: int = DEFAULT_MAX_EXPORTS, pick: str = "best", seed: int = 0,
            roles: Mapping[str, str] | None = None, constraints: Constraints | None = None,
            parallel: Parallel | None = None, reporter: ProgressReporter | None = None) -> ExploreResult:
    """Map the mix space of the stems at ``paths`` (module doc) and render the best mix of the best cells.

    Parameters
    ----------
    paths : stem files or folders.
    descriptors : 2 or 3 of :data:`MAP_DESCRIPTORS`, ``"brightness,width"`` (default) or a sequence.
    bins : cells per axis, int in [2, 50] (default 12 for 2 descriptors, 6 for 3).
    genre, weights : as :func:`evomix.mix`; the weights set the quality (module doc).
    master : :class:`evomix.settings.Master`, as for :func:`evomix.mix` (target, ceiling, limiter budget):
        the map keeps every cell, but cells whose mix needs more limiting than the budget (fast tier)
        are offered for export only after all the others.
    time_limit : seconds > 0 of search at most (None: no limit, then ``iterations`` is needed).
    iterations : int >= 0, emitter iterations after the initial sample (None: until ``time_limit``).
        With ``iterations`` and no time limit the same seed gives the same archive.
    max_exports : int >= 0, cells rendered exactly and exported at most.
    pick : which cells are exported: "best" (best quality first) or "spread" (across the map,
        :func:`pick_order`).
    seed : int >= 0.  roles : {file or stem name: role}.
    constraints : :class:`evomix.search.constraints.Constraints`: locks and ranges hold in every mix.
    parallel : :class:`evomix.settings.Parallel`, local processes / threads scoring each iteration
        (backend "local" only).

    Returns an :class:`ExploreResult`; ``result.write(out)`` writes the files.

    Raises
    ------
    ParameterError
        A bad option (naming it), before any file is read where possible.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    names_d = parse_descriptors(descriptors)
    n_bins = DEFAULT_BINS[len(names_d)] if bins is None else bins
    check_number("bins", n_bins, low=2, high=50, integer=True)
    check_number("max_exports", max_exports, low=0, integer=True)
    master = Master() if master is None else master
    parallel = Parallel() if parallel is None else parallel
    if parallel.backend != "local":
        raise OptionError(lambda k: f"{k('backend')}: explore scores on this machine only (backend 'local')")
    max_limiting_db = master.max_limiting_db
    if pick not in PICKS:
        raise OptionError(lambda k: f"{k('pick')}: unknown choice {pick!r}; choose from {', '.join(PICKS)}")
    check_number("seed", seed, low=0, integer=True)
    if iterations is not None:
        check_number("iterations", iterations, low=0, integer=True)
    if time_limit is not None:
        check_number("time_limit", time_limit, low=1e-6)
    if time_limit is None and iterations is None:
        raise OptionError(lambda k: f"give {k('time_limit')} or {k('iterations')} (or both): "
                                    f"the exploration needs a budget")
    constraints = pipeline.check_constraints(constraints)
    profile = load_profile(genre)
    if isinstance(weights, Mapping):
        weights = ",".join(f"{k}={v}" for k, v in weights.items())
    w = parse_weights(weights, OBJECTIVE_NAMES)
    names = tuple(k for k in OBJECTIVE_NAMES if w[k] > 0)
    if not names:
        raise OptionError(pipeline.all_weights_off)

    with ParallelEvaluator(n_jobs=parallel.jobs, threads=parallel.threads) as evaluator:
        session = pipeline.load(paths, reporter, roles=roles)
        parse_descriptors(names_d, session.roles)  # vocal needs a vocal / lead stem
        # the defaults under the run's own constraints, and the dynamic cuts' keys, as evomix mix makes them
        constraints, key_index = pipeline.searched_constraints(session, profile, constraints)
        table = pipeline.gene_table(session, constraints)
        analysis = pipeline.analyse(session, reporter, reverb=table.has_open_sends)
        table = pipeline.with_keys(table, analysis, key_index)
        target = Target(profile=profile, target_lufs=float(master.target_lufs), ceiling_dbtp=float(master.ceiling_dbtp),
                        space=table.has_open_sends)
        problem = pipeline.make_problem(analysis, table, target, names, w, kind=DescribedProblem)
        evaluate_population = evaluator.ship(problem)
        archive, axes, stats = _search(evaluate_population, table, analysis, problem, names_d, n_bins,
                                       time_limit=time_limit, iterations=iterations, seed=int(seed), reporter=reporter)
    cells = _cells(archive, axes, table, analysis, session, names)
    stats["cells_filled"] = len(cells)
    exports, renders, n_rendered, n_dup = _export(cells, axes, max_exports, pick, session, analysis, table, target,
                                                  names, reporter, max_limiting_db=max_limiting_db)
    warnings = list(session.warnings)
    if len(cells) < 10:
        warnings.append(f"only {len(cells)} cells of the map are filled; "
                        f"a longer --time-limit or fewer --bins fill more")
    if n_dup:
        warnings.append(f"{n_dup} cell(s) rendered as near-duplicates of a better exported cell and were not exported "
                        f"({distinct_rule()})")
    settings = stats | {"seed": int(seed), "time_limit": time_limit, "iterations_asked": iterations,
                        "max_exports": int(max_exports), "pick": pick, "exact_renders": n_rendered, "bins": int(n_bins),
                        "constraints": constraints.to_dict(),
                        "emitters": {"isoline": {"iso_sigma": ISO_SIGMA, "line_sigma": LINE_SIGMA,
                                                 "batch": EMITTER_BATCH},
                                     "gaussian": {"sigma": GAUSSIAN_SIGMA, "batch": EMITTER_BATCH}},
                        "initial_sample": INITIAL_SAMPLE, "range_margin": RANGE_MARGIN}
    return ExploreResult(session, target, profile.name, names, {k: w[k] for k in names}, names_d, axes, cells,
                         exports, renders, settings, warnings)


def _search(evaluate_population, table: GeneTable, analysis, problem: DescribedProblem, names_d, n_bins: int, *,
            time_limit, iterations, seed: int, reporter: ProgressReporter):
    """MAP-Elites with pyribs: the initial sample sets the ranges, then emitters ask / tell until
    the budget is spent. Returns (archive, axes, stats)."""
    from ribs.archives import GridArchive
    from ribs.emitters import GaussianEmitter, IsoLineEmitter
    from ribs.schedulers import Scheduler

    k = len(problem.names)
    cols = [k + DESCRIPTORS.index(MAP_DESCRIPTORS[n][0]) for n in names_d]  # columns of the map descriptors

    def score(G: np.ndarray, low_corner=None):
        """(quality (n,), map measures (n, m), raw objectives (n, n_obj), all descriptors (n, d)).
        A non-finite score cannot be placed: it gets ``BAD_QUALITY`` in the first cell (never exported)."""
        S = evaluate_population(G)  # (n, n_obj + n_desc)
        F, D, M = S[:, :k], S[:, k:], to_grid(names_d, S[:, cols])
        q = quality(F, problem.names, problem.weights)
        bad = ~(np.isfinite(q) & np.isfinite(M).all(axis=1))
        if bad.any():
            q = np.where(bad, BAD_QUALITY, q)
            M = np.where(bad[:, None], np.nanmin(M, axis=0, initial=0.0)[None, :] if low_corner is None
                         else low_corner[None, :], M)
        return q, M, F / np.asarray(problem.weights)[None, :], D

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    initial = smart_initial_population(table, analysis, INITIAL_SAMPLE, rng)  # (n, genes)
    with reporter.phase("explore", total=iterations, unit="iterations",
                        info=f"{'x'.join([str(n_bins)] * len(names_d))} cells over {', '.join(names_d)}") as ph:
        q0, M0, R0, D0 = score(initial)
        axes = _axes(names_d, M0[q0 > BAD_QUALITY], n_bins)
        low_corner = np.array([a["grid_range"][0] for a in axes])
        archive = GridArchive(solution_dim=table.n_genes, dims=[n_bins] * len(names_d),
                              ranges=[tuple(a["grid_range"]) for a in axes], seed=seed,
                              extra_fields={"objectives": ((k,), np.float64),
                                            "descriptors": ((len(DESCRIPTORS),), np.float64)})
        archive.add(initial, q0, M0, objectives=R0, descriptors=D0)
        bounds = [(0.0, 1.0)] * table.n_genes
        emitters = [IsoLineEmitter(archive, iso_sigma=ISO_SIGMA, line_sigma=LINE_SIGMA, x0=table.neutral(),
                                   bounds=bounds, batch_size=EMITTER_BATCH, seed=seed + 1),
                    GaussianEmitter(archive, sigma=GAUSSIAN_SIGMA, x0=table.neutral(), bounds=bounds,
                                    batch_size=EMITTER_BATCH, seed=seed + 2)]
        scheduler = Scheduler(archive, emitters)
        evaluations, it, stop = len(initial), 0, "iterations"
        while True:
            if iterations is not None and it >= iterations:
                stop = "iterations"
                break
            if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                stop = "time limit"
                break
            G = scheduler.ask()  # (2 * EMITTER_BATCH, genes) in [0, 1]
            q, M, R, D = score(G, low_corner)
            scheduler.tell(q, M, objectives=R, descriptors=D)
            evaluations += len(G)
            it += 1
            ph.update(done=it, info=f"{len(archive)} cells filled, best quality {archive.stats.obj_max:.3f}")
    st = archive.stats
    stats = {"iterations": it, "evaluations": int(evaluations), "stop_reason": stop,
             "search_s": round(time.perf_counter() - t0, 3), "cells_filled": int(st.num_elites),
             "cells_total": int(np.prod(archive.dims)), "coverage": round(float(st.coverage), 4)}
    return archive, axes, stats


def _cells(archive, axes, table: GeneTable, analysis, session, names) -> list:
    """Every occupied cell as a JSON-ready dict, best quality first."""
    d = archive.data()
    order = np.argsort(-d["objective"], kind="stable")
    order = order[d["objective"][order] > BAD_QUALITY]
    G = table.canonical(d["solution"][order])  # locked genes at 0.5: the same mix, the same genome
    params = table.decode(G, analysis.trim_db)
    grid = archive.int_to_grid_index(d["index"][order])  # (n, len(axes))
    desc = {key: d["descriptors"][order][:, j] for j, key in enumerate(DESCRIPTORS)}
    measures = from_grid([a["name"] for a in axes], d["measures"])  # (n, m) in the descriptors' units
    cells = []
    for i in range(len(order)):
        o = order[i]
        cells.append({"index": int(d["index"][o]), "grid": [int(v) for v in grid[i]],
                      "measures": {a["name"]: round(float(measures[o, j]), 4) for j, a in enumerate(axes)},
                      "quality": round(float(d["objective"][o]), 6),
                      "objectives": {n: round(float(d["objectives"][o, j]), 6) for j, n in enumerate(names)},
                      "descriptors_fast": descriptor_row(desc, i), "export": None,
                      "genome": [round(float(v), 9) for v in G[i]],
                      "params": params.to_dict(i, session.names, session.roles)})
    return cells


def pick_order(cells: list, axes: list, pick: str) -> list[int]:
    """The order (indices into ``cells``, which are sorted best first) in which cells are offered
    for export. ``"best"``: best quality first. ``"spread"``: the best cell, then farthest-point
    sampling (Gonzalez 1985) over the grid coordinates (each axis scaled to [0, 1]) among the
    better half of the occupied cells, so the exports cover the map; the other cells follow, best first."""
    if pick == "best" or len(cells) < 3:
        return list(range(len(cells)))
    X = np.array([c["grid"] for c in cells], dtype=float) / np.maximum([a["bins"] - 1 for a in axes], 1)  # (n, m)
    eligible = int(np.ceil(len(cells) / 2))
    order = [0]
    gap = np.linalg.norm(X[:eligible] - X[0], axis=1)  # (eligible,): distance to the nearest chosen
    for _ in range(eligible - 1):
        j = int(np.argmax(gap))
        order.append(j)
        gap = np.minimum(gap, np.linalg.norm(X[:eligible] - X[j], axis=1))
    return order + list(range(eligible, len(cells)))


def _export(cells: list, axes: list, max_exports: int, pick: str, session, analysis, table: GeneTable, target, names,
            reporter, max_limiting_db: float | None = None):
    """Render distinct cells exactly, offered in :func:`pick_order` (module doc); sets ``export``,
    ``exact``, ``descriptors``, ``measured``, ``labels`` on them. Returns (cell indices, best first;
    renders; renders done; near-duplicates found after rendering)."""
    if max_exports == 0 or not cells:
        return [], [], 0, 0
    offer = pick_order(cells, axes, pick)
    if max_limiting_db is not None:  # squashed mixes (over the limiter budget) only when nothing else is left
        squashed = {i for i, c in enumerate(cells)
                    if (c["descriptors_fast"].get("limiter_gr_db") or 0.0) > max_limiting_db}
        offer = [i for i in offer if i not in squashed] + [i for i in offer if i in squashed]
    G = np.array([c["genome"] for c in cells])
    params = table.decode(G, analysis.trim_db)
    Dfast = jnd_matrix([c["descriptors_fast"] for c in cells])  # (n, d) JND units
    kept, renders, exact_rows = [], [], []
    tried: set = set()
    n_rendered = n_dup = 0
    with reporter.phase("render", total=min(max_exports, len(cells)), unit="exact renders") as ph:
        for _ in range(RENDER_ROUNDS):
            todo = []
            for i in offer:
                if len(kept) + len(todo) >= max_exports:
                    break
                if i in tried:
                    continue
                refs = kept + todo
                if refs and jnd_distance(Dfast[i], Dfast[refs]).min() < DISTINCT_JND:
                    continue  # sounds like a better cell already chosen, even in the fast tier
                todo.append(i)
            if not todo:
                break
            tried.update(todo)
            ph.update(total=n_rendered + len(todo))
            for i, (r, exact, measured) in zip(todo, render_alternatives(session, analysis, params, todo, target,
                                                                             names, phase=ph)):
                n_rendered += 1
                if exact_rows:
                    M = jnd_matrix(exact_rows + [measured["descriptors"]])
                    if jnd_distance(M[-1], M[:-1]).min() < DISTINCT_JND:
                        n_dup += 1
                        continue
                cells[i]["exact"] = exact
                cells[i]["descriptors"] = measured["descriptors"]
                cells[i]["measured"] = {k: measured[k]
                                        for k in ("integrated_lufs", "loudness_range_lu", "true_peak_dbtp")}
                exact_rows.append(measured["descriptors"])
                kept.append(i)
                renders.append(r)
            if len(kept) >= max_exports:
                break
    order = sorted(range(len(kept)), key=lambda j: kept[j])  # best cell first
    kept, renders = [kept[j] for j in order], [renders[j] for j in order]
    lead = "vocal" if "vocal" in session.roles else "lead"
    labels = label_alternatives([cells[i]["descriptors"] for i in kept], lead_role=lead) if kept else []
    for n, (i, lab) in enumerate(zip(kept, labels)):
        cells[i]["export"] = f"cell-{n + 1:02d}"
        cells[i]["labels"] = list(lab)
    return kept, renders, n_rendered, n_dup


def map_png(result: ExploreResult, *, dpi: int = 110) -> bytes:
    """``map.png``: quality per cell over the first two map descriptors (a heat map, empty cells
    blank, exported cells numbered); with a third descriptor, one panel per bin of it."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax0, ax1 = result.axes[0], result.axes[1]
    third = result.axes[2] if len(result.axes) > 2 else None
    n_panels = third["bins"] if third else 1
    shape = [a["bins"] for a in result.axes]
    Q = np.full(shape, np.nan)  # (bins0, bins1[, bins2])
    for c in result.cells:
        Q[tuple(c["grid"])] = c["quality"]
    if third is None:
        Q = Q[..., None]
    finite = Q[np.isfinite(Q)]
    norm = Normalize(vmin=float(finite.min()) if len(finite) else -1.0,
                     vmax=float(finite.max()) if len(finite) else 0.0)
    cols = min(n_panels, 3)
    rows = -(-n_panels // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(6.4 if cols == 1 else 4.2 * cols, 5.0 if rows == 1 else 3.8 * rows),
                            squeeze=False, sharex=True, sharey=True, constrained_layout=True)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # empty cells blank
    x, y = np.asarray(ax0["edges"]), np.asarray(ax1["edges"])
    exported = {tuple(c["grid"]): c["export"] for c in result.cells if c.get("export")}
    mesh = None
    for p in range(rows * cols):
        a = axs[p // cols][p % cols]
        if p >= n_panels:
            a.set_visible(False)
            continue
        mesh = a.pcolormesh(x, y, np.ma.masked_invalid(Q[:, :, p].T), cmap=cmap, norm=norm, edgecolors="0.85",
                            linewidth=0.3)
        for axis, spec in ((a.xaxis, ax0), (a.yaxis, ax1)):
            if spec["scale"] == "log":  # Hz ticks at 1-2-5 steps
                (a.set_xscale if axis is a.xaxis else a.set_yscale)("log")
                lo, hi = spec["range"]
                ticks = [t for t in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if lo <= t <= hi]
                axis.set_major_locator(FixedLocator(ticks))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_locator(NullLocator())
        for g, name in exported.items():
            if third is None or g[2] == p:
                cx = np.sqrt(x[g[0]] * x[g[0] + 1]) if ax0["scale"] == "log" else (x[g[0]] + x[g[0] + 1]) / 2
                cy = np.sqrt(y[g[1]] * y[g[1] + 1]) if ax1["scale"] == "log" else (y[g[1]] + y[g[1] + 1]) / 2
                a.text(cx, cy, name[5:], ha="center", va="center",
                       fontsize=7, color="white" if norm(Q[g[0], g[1], g[2] if third else 0]) < 0.6 else "black")
        if third is not None:
            e = third["edges"]
            f = "{:.0f}" if third["unit"] == "Hz" else "{:.1f}"
            a.set_title(f"{third['name']} {f.format(e[p])} to {f.format(e[p + 1])} {third['unit']}", fontsize=9)
        if p % cols == 0:
            a.set_ylabel(f"{ax1['label']} ({ax1['unit']})")
        if p // cols == rows - 1 or p + cols >= n_panels:
            a.set_xlabel(f"{ax0['label']} ({ax0['unit']})")
    s = result.settings
    fig.suptitle(f"evomix explore: {s['cells_filled']} of {s['cells_total']} cells filled "
                 f"({s['evaluations']} mixes scored); numbers = exported cell-NN", fontsize=10)
    if mesh is not None:
        fig.colorbar(mesh, ax=axs, label="quality (0 = every objective on target; higher is better)", shrink=0.9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
