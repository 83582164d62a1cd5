"""Python API: the same operations as the command line, for notebooks and scripts.

>>> import evomix
>>> result = evomix.mix(["stems/"], genre="pop", population=32, generations=20, seed=1)
>>> result.write("out/")                                  # alt-01.wav ..., front.json
>>> evomix.render("out/alt-01.json", ["stems/"], "again.wav")
>>> evomix.analyze(["out/alt-01.wav"])
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from evomix import __version__, parallel
from evomix.audio import Session, expand_paths, load_session, write_audio, write_text_atomic
from evomix.engine.analysis import Analysis, analyze_session
from evomix.engine.render import ExactRender, features_from_render, render_exact
from evomix.errors import AudioFileError, ParameterError
from evomix.evaluate import Problem
from evomix.genome import GeneTable, Params
from evomix.parallel import ParallelEvaluator
from evomix.parallel import check_options as check_parallel_options
from evomix.measure import MIN_AUDIO_S, measure_file
from evomix.progress import NULL_PHASE, NULL_REPORTER, Phase, ProgressReporter, format_seconds
from evomix.profiling import learn_profile
from evomix.reference import fit_reference
from evomix.hypervolume import Normaliser
from evomix.search import DEFAULT_ALGORITHM, DEFAULT_TIME_LIMIT_S, SearchResult, Termination, non_dominated, run_search
from evomix.seeding import smart_initial_population
from evomix.settings import Master, Parallel, Search
from evomix.select import choose_alternatives
from objectives import ALL_OBJECTIVES, OBJECTIVE_NAMES, REGISTRY, Target, builtin_genres, evaluate, load_profile, parse_weights

REFERENCE_MODES = ("auto", "same-song", "style")

FRONT_FORMAT = "evomix-front/1"
PARAMS_FORMAT = "evomix-params/1"


def _check_number(name: str, value, *, low=None, high=None, integer=False):
    if integer and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
        raise ParameterError(f"{name} must be a whole number, got {value!r}")
    if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise ParameterError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be <= {high}, got {value}")


@dataclass
class Member:
    """One mix of the front: its genome, parameters and scores (lower is better)."""

    genome: np.ndarray
    params: dict
    objectives: dict
    exact: dict | None = None
    render: ExactRender | None = None
    measured: dict | None = None  # exported members: integrated_lufs, loudness_range_lu, true_peak_dbtp


@dataclass
class MixResult:
    """The outcome of :func:`mix`.

    front : all non-dominated members (fast-tier scores).
    alternatives : the K exported members, rendered exactly (``render`` and ``exact`` set).
    """

    session: Session
    target: Target
    genre: str
    names: tuple
    weights: dict
    front: list
    alternatives: list
    search: SearchResult
    settings: dict
    warnings: list = field(default_factory=list)
    reference: dict | None = None

    def front_dict(self) -> dict:
        """The documented ``front.json`` content."""
        alt_of = {id(m): i + 1 for i, m in enumerate(self.alternatives)}
        members = []
        for m in self.front:
            d = {"objectives": m.objectives}
            if m.exact is not None:
                d["exact"] = m.exact
            if id(m) in alt_of:
                d["alternative"] = f"alt-{alt_of[id(m)]:02d}"
            d["params"] = m.params
            members.append(d)
        return {
            "format": FRONT_FORMAT,
            "evomix_version": __version__,
            "objectives": list(self.names),
            "units": {n: REGISTRY[n].unit for n in self.names},
            "weights": self.weights,
            "genre": self.genre,
            "target_lufs": self.target.target_lufs,
            "ceiling_dbtp": self.target.ceiling_dbtp,
            "sr": self.session.sr,
            "stems": {n: {"file": str(p), "role": r} for n, p, r in zip(self.session.names, self.session.paths, self.session.roles)},
            "settings": self.settings,
            "reference": self.reference,
            "search": search_report(self.search),
            "members": members,
        }

    def alternative_dict(self, i: int) -> dict:
        m = self.alternatives[i]
        return {
            "format": PARAMS_FORMAT,
            "evomix_version": __version__,
            "name": f"alt-{i + 1:02d}",
            "sr": self.session.sr,
            "genre": self.genre,
            "target_lufs": self.target.target_lufs,
            "ceiling_dbtp": self.target.ceiling_dbtp,
            "objectives": m.objectives,
            "exact": m.exact,
            "params": m.params,
        }

    def write(self, out: str | Path, *, force: bool = False, reporter: ProgressReporter | None = None) -> list[Path]:
        """Write ``alt-NN.wav`` (24-bit), ``alt-NN.json`` and ``front.json`` into ``out``.

        Every file is complete before it appears (written to a temporary name, then renamed).
        Refuses a non-empty folder unless ``force``; never writes over an input stem.
        ``reporter`` (:mod:`evomix.progress`) gets a "write" phase, one unit per file.
        """
        out = Path(out)
        check_output_folder(out, force=force, inputs=self.session.paths)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        reporter = NULL_REPORTER if reporter is None else reporter
        with reporter.phase("write", total=2 * len(self.alternatives) + 1, unit="files") as ph:
            for i, m in enumerate(self.alternatives):
                name = f"alt-{i + 1:02d}"
                written.append(write_audio(out / f"{name}.wav", m.render.mix, self.session.sr, subtype="PCM_24"))
                ph.advance()
                written.append(write_text_atomic(out / f"{name}.json", json.dumps(self.alternative_dict(i), indent=1)))
                ph.advance()
            written.append(write_text_atomic(out / "front.json", json.dumps(self.front_dict(), indent=1)))
            ph.advance()
        return written


OUTPUT_NAMES = ("front.json",)


def check_output_folder(out: Path, *, force: bool, inputs: Sequence[Path] = ()) -> None:
    """Fail early (before any search) if ``out`` cannot take the results.

    Raises
    ------
    ParameterError
        ``out`` is a file, or a non-empty folder without ``force``, or an output would replace a stem.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out: {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ParameterError(f"--out: {out} is not empty; choose a new folder or pass --force")
    resolved = {Path(p).resolve() for p in inputs}
    for p in out.glob("*") if out.is_dir() else []:
        if p.resolve() in resolved and (p.name.startswith("alt-") or p.name in OUTPUT_NAMES):
            raise ParameterError(f"--out: {p} is one of the input stems; refusing to overwrite it")


def _exact_scores(render: ExactRender, analysis: Analysis, target: Target, names) -> tuple[dict, dict]:
    """Objective scores of an exact render, and its measured loudness (LUFS), LRA (LU), true peak (dBTP)."""
    feats = features_from_render(render, analysis.grid, analysis.roles)
    F = evaluate(feats, target, tuple(names))[0]
    measured = {"integrated_lufs": float(feats.loudness_lufs[0]), "loudness_range_lu": float(feats.lra_lu[0]),
                "true_peak_dbtp": float(feats.true_peak_dbtp[0])}
    return {n: float(v) for n, v in zip(names, F)}, measured


def mix(
    paths: Sequence[str | Path],
    *,
    genre: str = "pop",
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    population: int = 64,
    generations: int | None = None,
    seed: int = 0,
    weights: str | Mapping[str, float] | None = None,
    alternatives: int = 5,
    roles: Mapping[str, str] | None = None,
    progress: Callable | None = None,
    session: Session | None = None,
    reference: str | Path | None = None,
    reference_mode: str = "auto",
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    threads: int | None = None,
    reporter: ProgressReporter | None = None,
    algorithm: str = DEFAULT_ALGORITHM,
    time_limit: float | None = DEFAULT_TIME_LIMIT_S,
    search: Search | None = None,
    parallel: Parallel | None = None,
    master: Master | None = None,
) -> MixResult:
    """Search for mixes of the stems at ``paths`` and render the chosen alternatives.

    Parameters
    ----------
    paths : files or folders of stems (WAV, FLAC, AIFF, OGG).
    genre : built-in genre name or a profile JSON path.
    target_lufs : LUFS in [-40, -5].  ceiling_dbtp : dBTP in [-9, 0].
    population : int >= 4 (rounded up to a multiple of 4).
    generations : int >= 0 runs exactly that many generations; None (default) stops when the
        front's hypervolume stops growing or at ``time_limit`` (:mod:`evomix.search`).
    algorithm : "nsga2" (default), "nsga3" or "random" (:mod:`evomix.search`).
    time_limit : seconds > 0 (or None) of search at most, when ``generations`` is None.
    seed : int, same seed -> same result.
    weights : "name=value,..." or a mapping; 0 drops an objective.
    alternatives : int >= 1, mixes to export.
    roles : {file or stem name: role} overrides.
    progress : callback(gen, n_gen, front_size, best (n_obj,)).
    session : an already loaded Session (then ``paths`` is ignored).
    reference : a reference mix. A rough mix of the same stems ("same-song", detected when the
        stems explain it, or forced) adds the ``reference`` objective and seeds the search with its
        fitted balance; any other track ("style") replaces the genre profile by one learned from it.
    reference_mode : "auto", "same-song" or "style".
    jobs : int >= 1, local worker processes scoring each generation (1: this process only).
    backend : "local" (``jobs`` processes on this machine) or "dask" (an existing dask cluster).
    scheduler : the dask scheduler's address, e.g. "tcp://10.0.0.5:8786" (``backend="dask"``);
        it is connected to before the stems are loaded, so a bad address fails at once.
    threads : int >= 1, threads scoring each generation on this machine, shared by the ``jobs``
        processes (default: every core this process may use).
        The front is identical whatever ``jobs``, ``threads`` and ``backend`` (see :mod:`evomix.parallel`).
    reporter : progress of the phases (load, analysis, reference, search, render), e.g. an
        ``evomix.progress.Reporter``; default none. The exact renders done (picks, spares and
        replacements) are counted in ``settings["exact_renders"]``.
    search, parallel, master : the settings objects of :mod:`evomix.settings` (validated when
        made, errors name their fields); each replaces its keywords above (algorithm, population,
        generations, time_limit, seed, alternatives / jobs, threads, backend, scheduler /
        target_lufs, ceiling_dbtp), which remain for backward compatibility.
    """
    search, parallel, master = settings_of(
        search, parallel, master, algorithm=algorithm, population=population, generations=generations,
        time_limit=time_limit, seed=seed, alternatives=alternatives, jobs=jobs, threads=threads, backend=backend,
        scheduler=scheduler, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)
    algorithm, population, generations, time_limit = search.algorithm, search.population, search.generations, search.time_limit
    seed, alternatives = search.seed, search.alternatives
    jobs, threads, backend, scheduler = parallel.jobs, parallel.threads, parallel.backend, parallel.scheduler
    target_lufs, ceiling_dbtp = master.target_lufs, master.ceiling_dbtp
    if reference_mode not in REFERENCE_MODES:
        raise ParameterError(f"--reference-mode: unknown mode '{reference_mode}'; choose from {', '.join(REFERENCE_MODES)}")
    check_parallel_options(jobs, backend, scheduler, threads)
    profile = load_profile(genre)
    if isinstance(weights, Mapping):
        weights = ",".join(f"{k}={v}" for k, v in weights.items())
    w = parse_weights(weights, ALL_OBJECTIVES)
    if reference is None and weights and "reference=" in weights.replace(" ", ""):
        raise ParameterError("--weights: 'reference' needs --reference (a rough mix of the same stems)")
    if not any(w[n] > 0 for n in OBJECTIVE_NAMES) and reference is None:
        raise ParameterError("--weights: every objective is switched off; give at least one a weight > 0")
    with ParallelEvaluator(n_jobs=jobs, backend=backend, scheduler=scheduler, threads=threads) as evaluator:  # connects now
        return _mix(paths, evaluator, profile=profile, w=w, target_lufs=target_lufs,
                    ceiling_dbtp=ceiling_dbtp, population=population, generations=generations, seed=seed,
                    alternatives=alternatives, roles=roles, progress=progress, session=session,
                    reference=reference, reference_mode=reference_mode,
                    reporter=NULL_REPORTER if reporter is None else reporter,
                    algorithm=algorithm, time_limit=time_limit)


_KEYWORD_DEFAULTS = {"search": Search(), "parallel": Parallel(), "master": Master()}
_GROUPS = {"search": Search, "parallel": Parallel, "master": Master}


def settings_of(search, parallel, master, **keywords) -> tuple:
    """(Search, Parallel, Master) of :func:`mix`: the objects given, else made from the keywords.

    Raises
    ------
    ParameterError
        A keyword of a group was also given as an object (``search=`` and ``population=``), or a
        value is bad (:class:`evomix.settings.SettingError`, naming the field).
    """
    out = []
    for group, obj in (("search", search), ("parallel", parallel), ("master", master)):
        cls = _GROUPS[group]
        fields = [f.name for f in dataclasses.fields(cls)]
        given = {k: keywords[k] for k in fields}
        if obj is None:
            out.append(cls(**given))
            continue
        if not isinstance(obj, cls):
            raise ParameterError(f"{group} must be an evomix.settings.{cls.__name__}, got {type(obj).__name__}")
        clash = [k for k, v in given.items() if v != getattr(_KEYWORD_DEFAULTS[group], k)]
        if clash:
            raise ParameterError(f"give {', '.join(clash)} in {group}={cls.__name__}(...) or as keywords, not both")
        out.append(obj)
    return tuple(out)


def check_session_length(session: Session) -> None:
    """Fail before any analysis when even the longest stem is shorter than one loudness block.

    Raises
    ------
    AudioFileError
        Naming the files and the length needed.
    """
    need = int(round(MIN_AUDIO_S * session.sr))
    if session.n_samples < need:
        raise AudioFileError(
            f"every stem is shorter than one {MIN_AUDIO_S} s loudness block (BS.1770): "
            f"{', '.join(Path(p).name for p in session.paths)} (the longest is {session.n_samples / session.sr:.3f} s); "
            f"give at least one stem of {MIN_AUDIO_S} s ({need} samples at {session.sr} Hz) or more")


def _load(paths, reporter: ProgressReporter, **kw) -> Session:
    """:func:`load_session` as the "load" phase."""
    with reporter.phase("load", unit="files") as ph:
        session = load_session(paths, progress=lambda done, total, _path: ph.update(done=done, total=total), **kw)
        ph.update(info=f"{session.n_stems} stems, {format_seconds(session.duration_s)} at {session.sr} Hz")
    return session


def _search_info(names, weights, front_size: int, best) -> str:
    """``"front 12 | best masking 0.21 dB, loudness 0.4 LU"``: ``best`` (n_obj,) is weighted."""
    raw = np.asarray(best, dtype=float) / np.asarray(weights, dtype=float)
    return f"front {front_size} | best " + ", ".join(f"{n} {v:.3g} {REGISTRY[n].unit}" for n, v in zip(names, raw))


def _mix(paths, evaluator: ParallelEvaluator, *, profile, w, target_lufs, ceiling_dbtp, population,
         generations, seed, alternatives, roles, progress, session, reference, reference_mode,
         reporter: ProgressReporter = NULL_REPORTER, algorithm: str = "nsga2",
         time_limit: float | None = DEFAULT_TIME_LIMIT_S) -> MixResult:
    """:func:`mix` after its checks; ``evaluator`` scores the generations."""
    session = session if session is not None else _load(paths, reporter, roles=roles)
    check_session_length(session)
    warnings = list(session.warnings)
    n_pop = int(population)
    if n_pop % 4:
        n_pop += 4 - n_pop % 4
        warnings.append(f"--population rounded up from {population} to {n_pop} (NSGA-II tournament needs a multiple of 4)")

    with reporter.phase("analysis", total=2 * session.n_stems, unit="stem passes") as ph:  # two passes per stem
        analysis = analyze_session(session, progress=lambda done, total: ph.update(done=done, total=total))
    table = GeneTable(session.n_stems)
    ref_power, base, ref_report = None, None, None
    if reference is not None:
        with reporter.phase("reference", info=Path(reference).name):
            fit = fit_reference(reference, session, analysis)
        same = fit.same_song if reference_mode == "auto" else reference_mode == "same-song"
        ref_report = {"file": str(reference), "mode": "same-song" if same else "style",
                      "correlation": round(fit.correlation, 4)}
        if same:
            ref_power = fit.power
            base = reference_genome(table, analysis, fit)
            ref_report["fitted"] = {n: {"gain_db": round(float(g), 2), "pan": round(float(p), 3)}
                                    for n, g, p in zip(session.names, fit.gain_db, fit.pan)}
        else:
            profile = learn_profile([reference], name=Path(reference).stem)
    names = tuple(n for n in ALL_OBJECTIVES if w[n] > 0 and (n != "reference" or ref_power is not None))
    if not names:
        raise ParameterError("--weights: every objective is switched off; give at least one a weight > 0")
    target = Target(profile=profile, target_lufs=float(target_lufs), ceiling_dbtp=float(ceiling_dbtp),
                    reference_power=ref_power)
    problem = Problem(analysis, table, target, names, tuple(w[n] for n in names))
    rng = np.random.default_rng(seed)
    if base is None:  # unity, loudness-matched and role-template mixes, perturbations, random genomes
        initial = smart_initial_population(table, analysis, n_pop, rng)
    else:
        initial = table.initial_population(n_pop, rng, base=base, spread=0.05)
    termination = Termination(generations=None if generations is None else int(generations), time_limit=time_limit)
    with reporter.phase("search", total=None if generations is None else int(generations), unit="generations",
                        info=f"{n_pop} candidates each, {algorithm}") as ph:
        def on_generation(gen, n_gen, front_size, best):
            ph.update(done=gen, total=n_gen, info=_search_info(names, problem.weights, front_size, best))
            if progress is not None:
                progress(gen, n_gen, front_size, best)

        result = run_search(evaluator.ship(problem), initial, algorithm=algorithm, termination=termination,
                            seed=int(seed), progress=on_generation,
                            normaliser=Normaliser.fixed(names, problem.weights), steer=problem.weights)
        ph.update(info=f"stopped by {result.stop_reason} after {result.generations} generations, front "
                       f"{len(result.front_F)}, hypervolume {result.hypervolume[-1]:.4f}")
    evaluator.close()  # workers are not needed for the exact renders

    # front: non-dominated, unique genomes, sorted by weighted sum for a stable order
    G, F = result.front_genomes, result.front_F
    keep = non_dominated(F)
    G, F = G[keep], F[keep]
    raw = F / np.asarray(problem.weights)[None, :]
    order = np.lexsort(raw.T[::-1])
    G, F, raw = G[order], F[order], raw[order]
    params = table.decode(G, analysis.trim_db)
    front = [
        Member(genome=G[i], params=params.to_dict(i, session.names, session.roles),
               objectives={n: float(raw[i, j]) for j, n in enumerate(names)})
        for i in range(len(G))
    ]
    with reporter.phase("render", total=min(int(alternatives), len(front)), unit="exact renders") as ph:
        picks, replaced = _verified_alternatives(front, G, F, int(alternatives), session, analysis, params, target,
                                                 names, phase=ph)
    exact_renders = sum(m.exact is not None for m in front)  # every member rendered (picks, spares, replacements)
    alts = [front[i] for i in picks]
    for i, m in enumerate(front):
        if i not in picks:
            m.render = None  # rendered as a spare or set aside: keep its exact scores, drop the audio
    worse = _beyond_front(front, picks, names)
    for i, n in worse:
        warnings.append(f"alt-{picks.index(i) + 1:02d}: its exact render scores {n} {front[i].exact[n]:.3g}, worse than "
                        f"every front member's fast score (the fast tier misjudged it; no better replacement was found)")
    if len(alts) < alternatives:
        warnings.append(f"the front has only {len(alts)} member(s); exported {len(alts)} of {alternatives} alternatives")
    if ref_report is not None and ref_power is not None:
        j = int(np.argmin([m.objectives["reference"] for m in front])) if "reference" in names else 0
        total = np.array([front[j].params["stems"][n]["trim_db"] + front[j].params["stems"][n]["gain_db"] for n in session.names])
        total -= total[np.asarray(fit.gain_db) > -120].max() if np.any(np.asarray(fit.gain_db) > -120) else total.max()
        ref_report["closest_member"] = {n: {"gain_db": round(float(g), 2), "pan": round(front[j].params["stems"][n]["pan"], 3)}
                                        for n, g in zip(session.names, total)}
    settings = {"population": n_pop, "generations": int(result.generations), "seed": int(seed),
                "algorithm": algorithm, "stop_reason": result.stop_reason, "time_limit": time_limit,
                "hypervolume": float(result.hypervolume[-1]),
                "alternatives": int(alternatives), "evaluations": int(result.evaluations),
                "replaced_alternatives": len(replaced), "exact_renders": exact_renders}
    return MixResult(session, target, profile.name, names, {n: w[n] for n in names}, front, alts,
                     result, settings, warnings, ref_report)


def search_report(result: SearchResult) -> dict:
    """The search part of ``front.json``: algorithm, why it stopped, hypervolume per generation and
    how it is normalised (:mod:`evomix.hypervolume`). No wall times: the same seed gives the same file."""
    return {"algorithm": result.algorithm, "stop_reason": result.stop_reason, "generations": int(result.generations),
            "evaluations": int(result.evaluations),
            "hypervolume": [round(float(h), 6) for h in result.hypervolume],
            "hypervolume_space": None if result.normaliser is None else result.normaliser.to_dict()}


def reference_genome(table: GeneTable, analysis: Analysis, fit) -> np.ndarray:
    """The neutral genome with faders and pans set to a reference fit (n_genes,).

    Faders are ``fitted gain - trim``, shifted by a common offset (the master normalises level)
    that centres their span in the fader range (a span wider than the range is clipped at its ends).
    """

    genome = table.neutral().copy()
    k = len(table.stem_genes)
    names = [g.name for g in table.stem_genes]
    gain_gene, pan_gene = table.stem_genes[names.index("gain_db")], table.stem_genes[names.index("pan")]
    audible = fit.gain_db > -120.0
    fader = np.where(audible, fit.gain_db - analysis.trim_db, gain_gene.low)
    if audible.any():  # common offset: centre the faders' span inside the gene range
        lo, hi = fader[audible].min(), fader[audible].max()
        fader = fader + (gain_gene.low + gain_gene.high) / 2.0 - (lo + hi) / 2.0
    for s in range(table.n_stems):
        genome[s * k + names.index("gain_db")] = gain_gene.encode(fader[s])
        genome[s * k + names.index("pan")] = pan_gene.encode(fit.pan[s])
    return genome


def render_threads() -> int:
    """Threads for one exact render: every core this process may use (the result is the same)."""
    return parallel.available_cores()


def _render_one(session, analysis, params, i, target, names):
    r = render_exact(session, session.is_mono, session.sr, params, index=i, grid=analysis.grid,
                     target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp, threads=render_threads())
    scores = _exact_scores(r, analysis, target, names)
    # keep only the master, as float32 (what the 24-bit file is written from): the per-stem band
    # powers were needed for the scores alone
    return (dataclasses.replace(r, mix=r.mix.astype(np.float32), stem_power=None),) + scores


REPLACEMENT_ROUNDS = 2  # rounds of exact renders spent replacing alternatives the fast tier misjudged


def _beyond_front(front: list, picks, names) -> list:
    """(index, objective) pairs where a pick's exact score is worse than every front member's fast
    score: the fast tier promised a mix inside the front's spread and the render did not keep it."""
    worst = {n: max(m.objectives[n] for m in front) for n in names}
    return [(i, n) for i in picks for n in names if front[i].exact[n] > worst[n]]


def _verified_alternatives(front, G, F, k, session, analysis, params, target, names,
                           phase: Phase = NULL_PHASE) -> tuple[list, list]:
    """Choose ``k`` alternatives (``select.choose_alternatives``), render each exactly, and replace
    any whose exact scores fall outside the front's spread (:func:`_beyond_front`).

    A misjudged pick is replaced by new choices in up to ``REPLACEMENT_ROUNDS`` more rounds. Sets
    ``render``, ``exact`` and ``measured`` on every member rendered; only the exported members keep
    their audio; ``phase`` counts the renders. Returns (exported indices, rejected indices).
    """
    k = min(k, len(front))
    rendered: list = []
    picks: list = []
    bad: set = set()
    for _ in range(REPLACEMENT_ROUNDS + 1):
        todo = choose_alternatives(G, F, k, keep=picks, exclude=sorted(bad))[len(picks):]
        if not todo:  # nothing left to try
            break
        phase.update(total=len(rendered) + len(todo))
        for i, (r, exact, measured) in zip(todo, _render_alternatives(session, analysis, params, todo, target, names,
                                                                      phase=phase)):
            front[i].render, front[i].exact, front[i].measured = r, exact, measured
        rendered += todo
        bad = {i for i, _ in _beyond_front(front, rendered, names)}
        picks = [i for i in rendered if i not in bad][:k]
        if len(picks) >= k:
            for i in bad:  # set aside for good: keep the scores, not the audio
                front[i].render = None
            break
    rejected = [i for i in rendered if i in bad]
    for i in list(rejected):  # still short: take misjudged ones back rather than export fewer
        if len(picks) >= k:
            break
        picks.append(i)
        rejected.remove(i)
    return picks, rejected


def _render_alternatives(session, analysis, params, picks, target, names, phase: Phase = NULL_PHASE) -> list:
    """Exact renders (and exact scores) of the chosen members, one after the other, each on every
    core (``render_exact(threads=)``): the stems of one render share the cores, so one render's
    buffers are in memory at a time, and the session's audio is shared, never copied. ``phase``
    advances once per render."""
    out = []
    for i in picks:
        out.append(_render_one(session, analysis, params, i, target, names))
        phase.advance()
    return out


def load_params_file(path: str | Path) -> dict:
    """Read an ``alt-NN.json`` (or a bare params object)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParameterError(f"{path}: not a readable JSON params file ({e})") from None
    if not isinstance(d, dict):
        raise ParameterError(f"{path}: expected a JSON object")
    return d


def render(params_path: str | Path, paths: Sequence[str | Path], out: str | Path, *,
           target_lufs: float | None = None, ceiling_dbtp: float | None = None,
           force: bool = False, reporter: ProgressReporter | None = None) -> Path:
    """Re-render a saved solution (``alt-NN.json``) from the stems into ``out`` (24-bit).

    The stems are matched by file stem name; the target and ceiling default to the saved ones,
    so the output reproduces the exported ``alt-NN.wav``. ``reporter`` (:mod:`evomix.progress`)
    gets the phases load, render and write.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    d = load_params_file(params_path)
    p = d.get("params", d)
    target_lufs = float(d.get("target_lufs", -14.0)) if target_lufs is None else target_lufs
    ceiling_dbtp = float(d.get("ceiling_dbtp", -1.0)) if ceiling_dbtp is None else ceiling_dbtp
    _check_number("--target-lufs", target_lufs, low=-40.0, high=-5.0)
    _check_number("--ceiling", ceiling_dbtp, low=-9.0, high=0.0)
    out = Path(out)
    if out.exists() and not force:
        raise ParameterError(f"-o: {out} exists; pass --force to replace it")
    session = _load(paths, reporter, sr=d.get("sr"))
    if any(out.resolve() == Path(sp).resolve() for sp in session.paths):
        raise ParameterError(f"-o: {out} is one of the input stems; refusing to overwrite it")
    check_session_length(session)
    params = Params.from_dict(p, session.names, source=str(params_path))
    with reporter.phase("render", total=1, unit="exact renders") as ph:
        r = render_exact(session, session.is_mono, session.sr, params, target_lufs=target_lufs,
                         ceiling_dbtp=ceiling_dbtp, keep_stems=False, threads=render_threads())
        ph.advance()
    with reporter.phase("write", total=1, unit="files") as ph:
        path = write_audio(out, r.mix.astype(np.float32), session.sr, subtype="PCM_24")  # as mix() writes it
        ph.advance()
    return path


def analyze(paths: Sequence[str | Path], *, genre: str | None = None) -> list[dict]:
    """Measure audio files (loudness, LRA, peaks, crest, tilt, width, correlation) and rank each
    against the genre profiles (``genre_similarity``: closest first, built-in profiles).

    genre : optional built-in name or profile JSON file; adds ``genre_distance`` to it, and a
        file profile also joins the ranking (its name gets the file name appended if it clashes
        with a built-in one).
    """
    names = builtin_genres()
    profiles = [load_profile(n) for n in names]
    target = None
    if genre is not None:
        target = load_profile(genre)
        if str(genre) not in names:
            if target.name in names:
                target = dataclasses.replace(target, name=f"{target.name} ({Path(genre).name})")
            profiles.append(target)
    return [measure_file(p, genre=target, profiles=profiles) for p in expand_paths(paths)]
