"""Python API: the same operations as the command line, for notebooks and scripts.

>>> import evomix
>>> result = evomix.mix(["stems/"], genre="pop", population=32, generations=20, seed=1)
>>> result.write("out/")                                  # alt-01.wav ..., front.json
>>> evomix.render("out/alt-01.json", ["stems/"], "again.wav")
>>> evomix.analyze(["out/alt-01.wav"])
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evomix import __version__
from evomix.choose.describe import UNITS as DESCRIPTOR_UNITS
from evomix.choose.describe import describe, distinct_rule, fast_descriptors, jnd_distance, jnd_matrix
from evomix.choose.describe import row as descriptor_row
from evomix.choose.select import choose_alternatives, label_alternatives
from evomix.engine.analysis import Analysis, analyze_session
from evomix.engine.render import ExactRender, features_from_render, finish_master, mix_strips, render_exact
from evomix.errors import AudioFileError, OptionError, ParameterError, check_number
from evomix.io.audio import Session, expand_paths, load_session, write_audio, write_text_atomic
from evomix.io.spill import SpilledArray, materialise
from evomix.output import export
from evomix.output.export.files import json_text, write_bytes_atomic
from evomix.output.report import write_mix_report
from evomix.output.report_data import features_summary
from evomix.progress import NULL_PHASE, NULL_REPORTER, Phase, ProgressReporter, format_seconds
from evomix.search import checkpoint as checkpoints
from evomix.search import parallel
from evomix.search.algorithm import (
    DEFAULT_ALGORITHM,
    DEFAULT_TIME_LIMIT_S,
    SearchResult,
    Termination,
    non_dominated,
    run_search,
)
from evomix.search.constraints import Constraints
from evomix.search.genome import GeneTable, Params
from evomix.search.hypervolume import Normaliser
from evomix.search.interrupt import InterruptGuard
from evomix.search.parallel import ParallelEvaluator
from evomix.search.parallel import check_options as check_parallel_options
from evomix.search.problem import INFEASIBLE, Problem
from evomix.search.seeding import smart_initial_population
from evomix.settings import Master, Parallel, Search
from evomix.tools.measure import MIN_AUDIO_S, measure_file
from evomix.tools.profile import learn_profile
from evomix.tools.reference import fit_reference
from objectives import (
    ALL_OBJECTIVES,
    OBJECTIVE_NAMES,
    REGISTRY,
    Target,
    builtin_genres,
    evaluate,
    load_profile,
    parse_weights,
)

REFERENCE_MODES = ("auto", "same-song", "style")

FRONT_FORMAT = "evomix-front/1"
PARAMS_FORMAT = "evomix-params/1"


def all_weights_off(k) -> str:
    """The :class:`~evomix.errors.OptionError` message for weights that switch every objective off."""
    return f"{k('weights')}: every objective is switched off; give at least one a weight > 0"


@dataclass
class Member:
    """One mix of the front: its genome, parameters and scores (lower is better)."""

    genome: np.ndarray
    params: dict
    objectives: dict
    exact: dict | None = None
    render: ExactRender | None = None
    measured: dict | None = None  # exported members: integrated_lufs, loudness_range_lu, true_peak_dbtp, descriptors
    fast_descriptors: dict | None = None  # listener descriptors in the fast tier (evomix.choose.describe)
    labels: list = field(default_factory=list)  # exported members: relative to the others (select.label_alternatives)


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
    call: dict | None = None  # the mix() call's arguments, for run.json
    before: tuple | None = None  # (ExactRender with a float32 master, report summary) of the equal-gain sum
    before_from: Path | None = None  # or a folder whose before.wav and report-data.json it may reuse (rank)
    checkpoint: Path | None = None  # the run's checkpoint file (evomix.search.checkpoint), if it made one
    checkpoint_bytes: bytes | None = None  # an interrupted run's checkpoint, for write() (no checkpoint= given)

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
                d["labels"] = list(m.labels)
            if m.measured is not None and "descriptors" in m.measured:
                d["descriptors"] = m.measured["descriptors"]
                d["measured"] = {k: v for k, v in m.measured.items() if k != "descriptors"}
            if m.fast_descriptors is not None:
                d["descriptors_fast"] = m.fast_descriptors
            d["genome"] = [round(float(v), 9) for v in m.genome]
            d["params"] = m.params
            members.append(d)
        return {
            "format": FRONT_FORMAT,
            "evomix_version": __version__,
            "objectives": list(self.names),
            "units": {n: REGISTRY[n].unit for n in self.names},
            "weights": self.weights,
            "genre": self.genre,
            "profile": self.target.profile.to_dict(),
            "target_lufs": self.target.target_lufs,
            "ceiling_dbtp": self.target.ceiling_dbtp,
            "sr": self.session.sr,
            "descriptor_units": dict(DESCRIPTOR_UNITS),
            "distinct": distinct_rule(),
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
            "labels": list(m.labels),
            "descriptors": (m.measured or {}).get("descriptors"),
            "constraints": self.settings.get("constraints"),  # the run's locks and ranges: `evomix vary` keeps them
            "params": m.params,
        }

    def write(self, out: str | Path, *, force: bool = False, reporter: ProgressReporter | None = None,
              export_stems: bool = False, pre_stems: bool = False, daw: Sequence[str] | str = (),
              command: Sequence[str] | None = None) -> list[Path]:
        """Write ``alt-NN.wav`` (24-bit), ``alt-NN.json`` and ``front.json`` into ``out``, the stem and
        DAW exports asked for, then the listening report (``before.wav``, ``report-data.json``,
        ``run.json``, ``report.html``, :func:`evomix.output.report.write_mix_report`; ``command`` is the
        command line for ``run.json``).

        Every file is complete before it appears (written to a temporary name, then renamed).
        Refuses a non-empty folder unless ``force``; never writes over an input stem.
        ``reporter`` (:mod:`evomix.progress`) gets a "write" phase, one unit per file.
        ``export_stems``: also ``alt-NN-stems/`` (each stem as it sounds in the mix, float WAV,
        summing to the master); ``pre_stems``: ``alt-NN-stems-pre/`` (before the master chain);
        ``daw``: DAW sessions, "dawproject" and/or "reaper" (imply ``export_stems``); see
        :mod:`evomix.output.export`. An interrupted search without ``checkpoint=`` also leaves
        ``checkpoint.npz`` (``evomix.search.checkpoint``) to resume from.
        """
        daw = export.parse_daw(daw)
        out = Path(out)
        check_output_folder(out, force=force, inputs=self.session.paths, ignore=[self.checkpoint] if self.checkpoint else ())
        out.mkdir(parents=True, exist_ok=True)
        written = []
        reporter = NULL_REPORTER if reporter is None else reporter
        per_alt = 2 + self.session.n_stems * (int(export_stems or bool(daw)) + int(pre_stems)) + len(daw)
        def master_wav(i: int, m) -> Path:
            return write_audio(out / f"alt-{i + 1:02d}.wav", materialise(m.render.mix), self.session.sr, subtype="PCM_24")

        with reporter.phase("write", total=per_alt * len(self.alternatives) + 1, unit="files") as ph, \
                ThreadPoolExecutor(max(1, min(2, render_threads())), thread_name_prefix="evomix-write") as pool:
            wavs = [pool.submit(master_wav, i, m) for i, m in enumerate(self.alternatives)]  # libsndfile: off the GIL
            for i, m in enumerate(self.alternatives):
                name = f"alt-{i + 1:02d}"
                written.append(wavs[i].result())
                ph.advance()
                written.append(write_text_atomic(out / f"{name}.json", json.dumps(self.alternative_dict(i), indent=1)))
                ph.advance()
                written += export.export_alternative(
                    self.session, m.params, name, out, target_lufs=self.target.target_lufs,
                    ceiling_dbtp=self.target.ceiling_dbtp, genre=self.genre, stems=export_stems, pre_stems=pre_stems,
                    daw=daw, threads=render_threads(), phase=ph, render=m.render)
            written.append(write_text_atomic(out / "front.json", json_text(self.front_dict(), "members")))
            ph.advance()
        if self.checkpoint_bytes is not None:
            written.append(write_bytes_atomic(out / checkpoints.DEFAULT_NAME, self.checkpoint_bytes))
        written += write_mix_report(self, out, reporter=reporter, command=command)
        return written


OUTPUT_NAMES = ("front.json", "before.wav", "report.html", "report-data.json", "run.json")


def check_output_folder(out: Path, *, force: bool, inputs: Sequence[Path] = (), ignore: Sequence[Path] = ()) -> None:
    """Fail early (before any search) if ``out`` cannot take the results.

    ``ignore``: files that may be in ``out`` without ``force`` (the run's own checkpoint).

    Raises
    ------
    ParameterError
        ``out`` is a file, or a non-empty folder without ``force``, or an output would replace a stem.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(lambda k: f"{k('out')}: {out} is a file, not a folder")
    own = {Path(p).resolve() for p in ignore if p is not None}
    if out.is_dir() and any(p.resolve() not in own for p in out.iterdir()) and not force:
        raise OptionError(lambda k: f"{k('out')}: {out} is not empty; choose a new folder or pass {k('force')}")
    resolved = {Path(p).resolve() for p in inputs}
    for p in out.glob("*") if out.is_dir() else []:
        if p.resolve() in resolved and (p.name.startswith("alt-") or p.name in OUTPUT_NAMES):
            raise OptionError(lambda k: f"{k('out')}: {p} is one of the input stems; refusing to overwrite it")


def _exact_scores(render: ExactRender, analysis: Analysis, target: Target, names) -> tuple[dict, dict]:
    """Objective scores of an exact render, and its measured loudness (LUFS), LRA (LU), true peak (dBTP)."""
    feats = features_from_render(render, analysis.grid, analysis.roles)
    F = evaluate(feats, target, tuple(names))[0]
    measured = {"integrated_lufs": float(feats.loudness_lufs[0]), "loudness_range_lu": float(feats.lra_lu[0]),
                "true_peak_dbtp": float(feats.true_peak_dbtp[0]), "descriptors": descriptor_row(describe(feats)),
                "report": features_summary(feats)}  # spectrum and masking for the listening report
    return {n: float(v) for n, v in zip(names, F)}, measured


def mix(
    paths: Sequence[str | Path],
    *,
    genre: str = "pop",
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    max_limiting_db: float | None = 6.0,
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
    constraints: Constraints | None = None,
    keep_master_gain: bool = False,
    algorithm: str = DEFAULT_ALGORITHM,
    time_limit: float | None = DEFAULT_TIME_LIMIT_S,
    search: Search | None = None,
    parallel: Parallel | None = None,
    master: Master | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
) -> MixResult:
    """Search for mixes of the stems at ``paths`` and render the chosen alternatives.

    Parameters
    ----------
    paths : files or folders of stems (WAV, FLAC, AIFF, OGG).
    genre : built-in genre name or a profile JSON path.
    target_lufs : LUFS in [-40, -5].  ceiling_dbtp : dBTP in [-9, 0].
    max_limiting_db : dB in [0, 40] (or None): the most gain reduction the master's true-peak
        limiter may apply to reach the target, a constraint of the search (candidates beyond it
        are dominated by every candidate within it, :class:`evomix.search.problem.Problem`).
    population : int >= 4 (rounded up to a multiple of 4).
    generations : int >= 0 runs exactly that many generations; None (default) stops when the
        front's hypervolume stops growing or at ``time_limit`` (:mod:`evomix.search.algorithm`).
    algorithm : "nsga2" (default), "nsga3" or "random" (:mod:`evomix.search.algorithm`).
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
        The front is identical whatever ``jobs``, ``threads`` and ``backend`` (see :mod:`evomix.search.parallel`).
    reporter : progress of the phases (load, analysis, reference, search, render), e.g. an
        ``evomix.progress.Reporter``; default none. The exact renders done (picks, spares and
        replacements) are counted in ``settings["exact_renders"]``.
    constraints : locks and ranges of parameters (:class:`evomix.search.constraints.Constraints`, e.g.
        ``Constraints.parse(locks=["vocal.gain_db=-3"], ranges={"*.eq.highpass_hz": (40, 120)})``);
        they edit the gene table, so every front member and export obeys them; recorded in
        ``settings["constraints"]``.
    keep_master_gain : keep each exported alternative's master-chain gain (4 bytes per sample: 37 MB
        for 210 s at 44.1 kHz), so that ``MixResult.write(export_stems=/daw=)`` need not render the
        master again (without it, the export renders it once more: the same samples).
    search, parallel, master : the settings objects of :mod:`evomix.settings` (validated when
        made, errors name their fields); each replaces its keywords above (algorithm, population,
        generations, time_limit, seed, alternatives / jobs, threads, backend, scheduler /
        target_lufs, ceiling_dbtp), which remain for backward compatibility.
    checkpoint : a file (``.npz``) the search state is saved to after every generation, atomically
        (:mod:`evomix.search.checkpoint`; replaced if it exists).
    resume : a checkpoint to continue from: the same stems and search settings are required
        (``CheckpointError`` names what differs); with the same ``generations`` budget the front is
        the one an uninterrupted run gives. The time limit counts the search time of every run.
    A first Ctrl-C (SIGINT, main thread) during the search finishes the generation, saves the
    checkpoint and stops the search (``settings["stop_reason"] == "interrupted"``); the front found
    so far is exported as usual (and, without ``checkpoint``, :meth:`MixResult.write` leaves
    ``checkpoint.npz`` in its folder). A second Ctrl-C raises ``KeyboardInterrupt`` at once.
    """
    search, parallel, master = settings_of(
        search, parallel, master, algorithm=algorithm, population=population, generations=generations,
        time_limit=time_limit, seed=seed, alternatives=alternatives, jobs=jobs, threads=threads, backend=backend,
        scheduler=scheduler, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, max_limiting_db=max_limiting_db)
    algorithm, population, generations, time_limit = search.algorithm, search.population, search.generations, search.time_limit
    seed, alternatives = search.seed, search.alternatives
    jobs, threads, backend, scheduler = parallel.jobs, parallel.threads, parallel.backend, parallel.scheduler
    target_lufs, ceiling_dbtp, max_limiting_db = master.target_lufs, master.ceiling_dbtp, master.max_limiting_db
    if reference_mode not in REFERENCE_MODES:
        raise OptionError(lambda k: f"{k('reference_mode')}: unknown mode '{reference_mode}'; choose from {', '.join(REFERENCE_MODES)}")
    check_parallel_options(jobs, backend, scheduler, threads)
    if constraints is not None and not isinstance(constraints, Constraints):
        raise ParameterError(f"constraints must be an evomix.search.constraints.Constraints (Constraints.parse(locks=..., "
                             f"ranges=...)), got {type(constraints).__name__}")
    profile = load_profile(genre)
    if isinstance(weights, Mapping):
        weights = ",".join(f"{k}={v}" for k, v in weights.items())
    w = parse_weights(weights, ALL_OBJECTIVES)
    if reference is None and weights and "reference=" in weights.replace(" ", ""):
        raise OptionError(lambda k: f"{k('weights')}: 'reference' needs {k('reference')} (a rough mix of the same stems)")
    if not any(w[n] > 0 for n in OBJECTIVE_NAMES) and reference is None:
        raise OptionError(all_weights_off)
    call = {"api": "evomix.mix", "arguments": {
        "paths": [str(p) for p in paths or []], "genre": str(genre), "target_lufs": target_lufs, "ceiling_dbtp": ceiling_dbtp,
        "max_limiting_db": max_limiting_db,
        "population": population, "generations": generations, "seed": seed, "weights": weights,
        "alternatives": alternatives, "roles": dict(roles or {}), "reference": None if reference is None else str(reference),
        "reference_mode": reference_mode, "jobs": jobs, "backend": backend, "scheduler": scheduler, "threads": threads,
        "algorithm": algorithm, "time_limit": time_limit,
        "checkpoint": None if checkpoint is None else str(checkpoint), "resume": None if resume is None else str(resume)}}
    ckpt = None if resume is None else checkpoints.load(resume)  # a bad file fails before any audio is read
    with ParallelEvaluator(n_jobs=jobs, backend=backend, scheduler=scheduler, threads=threads) as evaluator:  # connects now
        result = _mix(paths, evaluator, profile=profile, w=w, target_lufs=target_lufs,
                    ceiling_dbtp=ceiling_dbtp, max_limiting_db=max_limiting_db, population=population, generations=generations, seed=seed,
                    alternatives=alternatives, roles=roles, progress=progress, session=session,
                    reference=reference, reference_mode=reference_mode,
                    reporter=NULL_REPORTER if reporter is None else reporter, constraints=constraints,
                    keep_master_gain=keep_master_gain, algorithm=algorithm, time_limit=time_limit,
                    checkpoint=checkpoint, resume=ckpt)
    result.call = call
    return result


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


def _mix(paths, evaluator: ParallelEvaluator, *, profile, w, target_lufs, ceiling_dbtp, max_limiting_db, population,
         generations, seed, alternatives, roles, progress, session, reference, reference_mode,
         reporter: ProgressReporter = NULL_REPORTER, constraints: Constraints | None = None,
         keep_master_gain: bool = False, algorithm: str = "nsga2",
         time_limit: float | None = DEFAULT_TIME_LIMIT_S, checkpoint: str | Path | None = None,
         resume: checkpoints.Checkpoint | None = None) -> MixResult:
    """:func:`mix` after its checks; ``evaluator`` scores the generations; ``resume`` is loaded."""
    constraints = Constraints() if constraints is None else constraints
    session = session if session is not None else _load(paths, reporter, roles=roles)
    check_session_length(session)
    if checkpoint is not None:
        checkpoints.check_target(checkpoint, inputs=session.paths, resume=None if resume is None else resume.path, force=True)
    stems = checkpoints.stems_fingerprint(session) if (checkpoint is not None or resume is not None) else None
    if resume is not None:
        checkpoints.check_stems(resume, stems)  # before the analysis: other stems fail at once
    table = constraints.apply(GeneTable(session.n_stems), session.names)  # locks and ranges: before any analysis
    warnings = list(session.warnings)
    n_pop = int(population)
    if n_pop % 4:
        n_pop += 4 - n_pop % 4
        warnings.append(f"--population rounded up from {population} to {n_pop} (NSGA-II tournament needs a multiple of 4)")

    with reporter.phase("analysis", total=2 * session.n_stems, unit="stem passes") as ph:  # two passes per stem
        analysis = analyze_session(session, progress=lambda done, total: ph.update(done=done, total=total))
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
        raise OptionError(all_weights_off)
    target = Target(profile=profile, target_lufs=float(target_lufs), ceiling_dbtp=float(ceiling_dbtp),
                    reference_power=ref_power)
    problem = Problem(analysis, table, target, names, tuple(w[n] for n in names), max_limiting_db=max_limiting_db)
    rng = np.random.default_rng(seed)
    if base is None:  # unity, loudness-matched and role-template mixes, perturbations, random genomes
        initial = smart_initial_population(table, analysis, n_pop, rng)
    else:
        initial = table.initial_population(n_pop, rng, base=base, spread=0.05)
    termination = Termination(generations=None if generations is None else int(generations), time_limit=time_limit)
    normaliser = Normaliser.fixed(names, problem.weights)

    def search_settings() -> dict:  # what a checkpoint must match (evomix.search.checkpoint.search_settings)
        return checkpoints.search_settings(
            algorithm=algorithm, population=n_pop, seed=int(seed), objectives=names, weights=problem.weights,
            profile=profile.to_dict(), target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
            max_limiting_db=max_limiting_db, constraints=constraints.to_dict(), roles=dict(zip(session.names, session.roles)), sr=session.sr,
            n_genes=table.n_genes, normaliser=normaliser,
            reference=None if ref_report is None else {"mode": ref_report["mode"], "sha256": checkpoints.file_sha256(reference)})

    if resume is not None:
        checkpoints.check_matches(resume, settings=search_settings())
    saver = None if checkpoint is None else checkpoints.Saver(checkpoint, settings=search_settings(), stems=stems)
    notice = b"\nevomix: Ctrl-C: stopping after this generation (again to abort)\n"
    with InterruptGuard(message=notice if getattr(reporter, "mode", "quiet") != "quiet" else None) as guard, \
            reporter.phase("search", total=None if generations is None else int(generations), unit="generations",
                        info=f"{n_pop} candidates each, {algorithm}") as ph, \
            saver if saver is not None else contextlib.nullcontext():  # the last checkpoint is complete on leaving
        def on_generation(gen, n_gen, front_size, best):
            ph.update(done=gen, total=n_gen, info=_search_info(names, problem.weights, front_size, best))
            if progress is not None:
                progress(gen, n_gen, front_size, best)

        result = run_search(evaluator.ship(problem), initial, algorithm=algorithm, termination=termination,
                            seed=int(seed), progress=on_generation, normaliser=normaliser, steer=problem.weights,
                            resume=None if resume is None else resume.state, on_generation=saver,
                            stop_requested=lambda: guard.requested)
        ph.update(info=f"stopped by {result.stop_reason} after {result.generations} generations, front "
                       f"{len(result.front_F)}, hypervolume {result.hypervolume[-1]:.4f}")
    evaluator.close()  # workers are not needed for the exact renders

    # front: non-dominated, unique genomes, sorted by weighted sum for a stable order
    G, F = table.canonical(result.front_genomes), result.front_F  # locked genes at 0.5: same mix, same genome
    _, first = np.unique(G, axis=0, return_index=True)
    G, F = G[np.sort(first)], F[np.sort(first)]
    keep = non_dominated(F)
    G, F = G[keep], F[keep]
    raw = F / np.asarray(problem.weights)[None, :]
    over = (F >= INFEASIBLE).all(axis=1)  # only when no candidate met the limiter budget: the nearest
    if over.any():
        raw[over], gr_over = problem.scores_and_limiting(G[over])  # their real scores
        warnings.append(f"no mix reached {target_lufs:g} LUFS with at most {max_limiting_db:g} dB of limiting; the "
                        f"front holds the least limited found ({float(gr_over.min()):.1f} dB): pass --max-limiting "
                        f"{np.ceil(float(gr_over.min())):.0f} or more, or a lower --target-lufs")
        F = raw * np.asarray(problem.weights)[None, :]
    order = np.lexsort(raw.T[::-1])
    G, F, raw = G[order], F[order], raw[order]
    params = table.decode(G, analysis.trim_db)
    front = [
        Member(genome=G[i], params=params.to_dict(i, session.names, session.roles),
               objectives={n: float(raw[i, j]) for j, n in enumerate(names)})
        for i in range(len(G))
    ]
    D = describe_front(front, analysis, table, target)
    with reporter.phase("render", total=min(int(alternatives), len(front)), unit="exact renders") as ph:
        before_slot: list = []  # the report's "before" joins the first round of renders
        picks, replaced = _verified_alternatives(front, G, F, int(alternatives), session, analysis, params, target,
                                                 names, phase=ph, weights=problem.weights, descriptors=D,
                                                 known_bad=squashed_members(front, int(alternatives), max_limiting_db),
                                                 keep_master_gain=keep_master_gain, before_slot=before_slot)
    warnings += label_front(front, picks, int(alternatives), session.roles)
    exact_renders = sum(m.exact is not None for m in front)  # every member rendered (picks, spares, replacements)
    alts = [front[i] for i in picks]
    for i, m in enumerate(front):
        if i not in picks:
            m.render = None  # rendered as a spare or set aside: keep its exact scores, drop the audio
    worse = _beyond_front(front, picks, names)
    for i, n in worse:
        warnings.append(f"alt-{picks.index(i) + 1:02d}: its exact render scores {n} {front[i].exact[n]:.3g}, worse than "
                        f"every front member's fast score (the fast tier misjudged it; no better replacement was found)")
    if len(alts) < alternatives and len(front) < alternatives:
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
                "replaced_alternatives": len(replaced), "exact_renders": exact_renders,
                "constraints": constraints.to_dict(), "max_limiting_db": max_limiting_db}
    if resume is not None:
        settings["resumed_from"] = {"checkpoint": str(resume.path), "generation": int(resume.state.gen)}
    pending = None
    if result.stop_reason == "interrupted" and saver is None:  # MixResult.write leaves it beside the front
        pending = checkpoints.encode(result.state, settings=search_settings(),
                                     stems=stems if stems is not None else checkpoints.stems_fingerprint(session))
    return MixResult(session, target, profile.name, names, {n: w[n] for n in names}, front, alts,
                     result, settings, warnings, ref_report, before=before_slot[0] if before_slot else None,
                     checkpoint=None if checkpoint is None else Path(checkpoint), checkpoint_bytes=pending)


def search_report(result: SearchResult | None) -> dict | None:
    """The search part of ``front.json``: algorithm, why it stopped, hypervolume per generation and
    how it is normalised (:mod:`evomix.search.hypervolume`). No wall times: the same seed gives the same file.
    None for a front that was not searched here (``evomix rank``: see its ``ranked_from`` run)."""
    if result is None:
        return None
    return {"algorithm": result.algorithm, "stop_reason": result.stop_reason, "generations": int(result.generations),
            "evaluations": int(result.evaluations),
            "hypervolume": [round(float(h), 6) for h in result.hypervolume],
            "hypervolume_space": None if result.normaliser is None else result.normaliser.to_dict()}


def reference_genome(table: GeneTable, analysis: Analysis, fit) -> np.ndarray:
    """The neutral genome with faders and pans set to a reference fit (n_genes,).

    Faders are ``fitted gain - trim``, shifted by a common offset (the master normalises level)
    that centres their span in the fader range (a span wider than the range is clipped at its ends);
    if an audible stem's fader is locked, the offset puts that stem exactly at its lock instead, so
    the others keep their fitted level relative to it. Each value is encoded in its stem's own
    range (locks and ranges of ``table``), clipped into it.
    """
    genome = table.neutral().copy()
    k = len(table.stem_genes)
    names = [g.name for g in table.stem_genes]
    jg, jp = names.index("gain_db"), names.index("pan")
    gain_gene = table.stem_genes[jg]  # the every-stem range (the per-stem ones may be narrower)
    audible = fit.gain_db > -120.0
    fader = np.where(audible, fit.gain_db - analysis.trim_db, gain_gene.low)
    locked = [s for s in range(table.n_stems) if audible[s] and table.genes_of_stem(s)[jg].low == table.genes_of_stem(s)[jg].high]
    if locked:  # anchor the balance on the first locked audible fader
        fader = fader + table.genes_of_stem(locked[0])[jg].low - fader[locked[0]]
    elif audible.any():  # common offset: centre the faders' span inside the gene range
        lo, hi = fader[audible].min(), fader[audible].max()
        fader = fader + (gain_gene.low + gain_gene.high) / 2.0 - (lo + hi) / 2.0
    for s in range(table.n_stems):
        genes = table.genes_of_stem(s)
        genome[s * k + jg] = genes[jg].encode(fader[s])
        genome[s * k + jp] = genes[jp].encode(fit.pan[s])
    return genome


def render_threads() -> int:
    """Threads for one exact render: every core this process may use (the result is the same)."""
    return parallel.available_cores()


def _finish_one(strips, analysis, target, names, keep_master_gain: bool = False):
    """The master chain and the exact scores of one candidate's summed strips. Keeps only the
    master, as float32 (what the 24-bit file is written from) in a temporary file until the export
    (``evomix.io.spill``: a run's finished masters do not pile up in memory), and with ``keep_master_gain`` the
    master chain's gain (the processed stems' export needs it, ``evomix.output.export.stems``; limiter
    gain as float32, 4 bytes per sample): the per-stem band powers were needed for the scores alone."""
    r = finish_master(strips, target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp,
                      threads=render_threads(), keep_master_gain=keep_master_gain)
    scores = _exact_scores(r, analysis, target, names)
    gain = r.master_gain.compact() if r.master_gain is not None else None
    return (dataclasses.replace(r, mix=SpilledArray(r.mix, np.float32), stem_power=None, master_gain=gain),) + scores


REPLACEMENT_ROUNDS = 2  # rounds of exact renders spent replacing alternatives the fast tier misjudged


def _beyond_front(front: list, picks, names) -> list:
    """(index, objective) pairs where a pick's exact score is worse than every front member's fast
    score: the fast tier promised a mix inside the front's spread and the render did not keep it."""
    worst = {n: max(m.objectives[n] for m in front) for n in names}
    return [(i, n) for i in picks for n in names if front[i].exact[n] > worst[n]]


def describe_front(front: list, analysis: Analysis, table: GeneTable, target: Target) -> np.ndarray:
    """Fast-tier listener descriptors of every front member (set as ``Member.fast_descriptors``)
    and their (n, d) matrix in JND units (``describe.jnd_matrix``) for the choice of alternatives."""
    if not front:
        return np.zeros((0, 0))
    d = fast_descriptors(analysis, table, np.stack([m.genome for m in front]), target_lufs=target.target_lufs,
                         ceiling_dbtp=target.ceiling_dbtp)
    for i, m in enumerate(front):
        m.fast_descriptors = descriptor_row(d, i)
    return jnd_matrix(d)


def squashed_members(front: list, k: int, budget_db: float | None = 6.0) -> list:
    """Front members whose fast-tier limiter gain reduction exceeds ``budget_db`` (the run's
    ``max_limiting_db``; most squashed first), leaving at least ``k`` others to choose from: never
    exported (``known_bad`` of :func:`_verified_alternatives`). The search keeps them out of its
    front already (:class:`evomix.search.problem.Problem`); this holds for a re-ranked front of a run
    made without the budget. Members without the descriptor (a front.json of an older evomix) are
    never counted; ``budget_db`` None: none."""
    if budget_db is None:
        return []
    gr = [float((m.fast_descriptors or {}).get("limiter_gr_db") or 0.0) for m in front]
    over = sorted((i for i, g in enumerate(gr) if g > budget_db), key=lambda i: -gr[i])
    return over[: max(0, len(front) - k)]


def label_front(front: list, picks: list, k: int, roles) -> list:
    """Label the exported members relative to each other (``select.label_alternatives``); returns a
    warning when fewer than ``k`` distinct mixes could be exported."""
    rows = [front[i].measured["descriptors"] for i in picks if front[i].measured and "descriptors" in front[i].measured]
    if len(rows) == len(picks):
        lead = "vocal" if "vocal" in roles else "lead"
        for i, labels in zip(picks, label_alternatives(rows, lead_role=lead)):
            front[i].labels = labels
    if len(picks) < k and len(front) >= k:
        return [f"only {len(picks)} of the front's {len(front)} members sound distinct ({distinct_rule()}); "
                f"exported {len(picks)} of {k} alternatives rather than near-duplicates"]
    return []


def _duplicates(front, rendered) -> set:
    """Rendered members whose exact descriptors are within ``describe.DISTINCT_JND`` of an earlier
    rendered, non-duplicate one (in ``rendered`` order)."""
    from evomix.choose.describe import DISTINCT_JND

    have = [i for i in rendered if front[i].measured and "descriptors" in front[i].measured]
    if len(have) < 2:
        return set()
    M = jnd_matrix([front[i].measured["descriptors"] for i in have])
    dup: set = set()
    kept: list = []
    for a, i in enumerate(have):
        if kept and jnd_distance(M[a], M[kept]).min() < DISTINCT_JND:
            dup.add(i)
        else:
            kept.append(a)
    return dup


def _verified_alternatives(front, G, F, k, session, analysis, params, target, names,
                           phase: Phase = NULL_PHASE, weights=None, descriptors=None,
                           known_bad=(), keep_master_gain: bool = False,
                           before_slot: list | None = None) -> tuple[list, list]:
    """Choose ``k`` alternatives (``select.choose_alternatives``), render each exactly, and replace
    any whose exact scores fall outside the front's spread (:func:`_beyond_front`) or whose exact
    listener descriptors are within ``describe.DISTINCT_JND`` of an earlier pick (:func:`_duplicates`).

    ``weights`` (n_obj,) rank the candidates; ``descriptors`` (n, d) are the fast-tier descriptors
    in JND units (:func:`describe_front`) in which the picks are spread. A misjudged pick is
    replaced by new choices in up to ``REPLACEMENT_ROUNDS`` more rounds (and one more round each
    time duplicates were found). A near-duplicate is never exported: with too few distinct members
    fewer than ``k`` come back. ``known_bad``: members already known to be misjudged (never
    chosen, never rendered; ``evomix.tools.rank``). Sets ``render``, ``exact`` and ``measured`` on every member
    rendered; only the exported members keep their audio; ``phase`` counts the renders. Returns
    (exported indices, rejected misjudged indices).
    """
    k = min(k, len(front))
    rendered: list = []
    picks: list = []
    bad: set = set()
    dup: set = set()  # rendered, and sounding the same as an earlier pick: never exported
    rounds, limit = 0, REPLACEMENT_ROUNDS + 1
    while rounds < limit:
        rounds += 1
        todo = choose_alternatives(G, F, k, weights, keep=picks, exclude=sorted(bad | dup | set(known_bad)),
                                   descriptors=descriptors)[len(picks):]
        if not todo:  # nothing left to try
            break
        phase.update(total=len(rendered) + len(todo))
        new = [i for i in todo if front[i].render is None]  # a member may come with its render (evomix.tools.rank)
        for i, (r, exact, measured) in zip(new, _render_alternatives(session, analysis, params, new, target, names,
                                                                     phase=phase, keep_master_gain=keep_master_gain,
                                                                     before_slot=before_slot)):
            front[i].render, front[i].exact, front[i].measured = r, exact, measured
        rendered += todo
        bad = {i for i, _ in _beyond_front(front, rendered, names)}
        n_dup = len(dup)
        dup = _duplicates(front, [i for i in rendered if i not in bad] + [i for i in rendered if i in bad])
        if len(dup) > n_dup:
            limit += 1  # a round spent on duplicates does not count against the misjudged ones
        picks = [i for i in rendered if i not in bad and i not in dup][:k]
        if len(picks) >= k:
            break
    rejected = [i for i in rendered if i in bad and i not in dup]
    for i in list(rejected):  # still short: take misjudged ones back rather than export fewer (never a duplicate)
        if len(picks) >= k:
            break
        picks.append(i)
        rejected.remove(i)
    for i in rendered:  # set aside for good: keep the scores, not the audio
        if i not in picks:
            front[i].render = None
    return picks, rejected


def _finish_before(strips, analysis, target):
    """The master chain of the equal-gain sum ("before") and its summary for the listening report."""
    from evomix.output.report_data import finish_before

    return finish_before(strips, analysis.grid, analysis.roles, target_lufs=target.target_lufs,
                         ceiling_dbtp=target.ceiling_dbtp, threads=render_threads())


def _render_alternatives(session, analysis, params, picks, target, names, phase: Phase = NULL_PHASE,
                         keep_master_gain: bool = False, before_slot: list | None = None) -> list:
    """Exact renders (and exact scores) of the chosen members, as a two-stage pipeline: the strips
    of candidate k+1 (``mix_strips``, on every core) run while the master chain and scores of
    candidate k (``finish_master``, ``_exact_scores``) finish on one more thread, so the cores the
    mostly serial master chain leaves idle are used. At most one master is in flight (one
    candidate's strips and one's master in memory); the session's audio is shared, never copied;
    each render's result is the same as alone. ``phase`` advances once per finished render;
    ``keep_master_gain``: as for :func:`_finish_one`. With an empty list ``before_slot``, the
    listening report's "before" (the equal-gain sum, ``evomix.output.report_data``) joins the pipeline
    first and its (render, summary) is appended to the list."""
    from evomix.output.report_data import before_strips

    jobs = [(lambda i=i: mix_strips(session, session.is_mono, session.sr, params, index=i, grid=analysis.grid,
                                    threads=render_threads()),
             lambda strips: _finish_one(strips, analysis, target, names, keep_master_gain)) for i in picks]
    with_before = before_slot is not None and not before_slot
    if with_before:  # first: its master and summary then run beside the first candidate's strips
        jobs.insert(0, (lambda: before_strips(session, analysis.grid, analysis=analysis),
                        lambda strips: _finish_before(strips, analysis, target)))
    out: list = []

    def collect(future) -> None:
        out.append(future.result())
        if len(out) > int(with_before):  # a candidate (not the before) is done
            phase.advance()

    with ThreadPoolExecutor(1, thread_name_prefix="evomix-master") as master:
        pending = None
        for strips_of, finish in jobs:
            strips = strips_of()
            if pending is not None:
                collect(pending)
            pending = master.submit(finish, strips)
            del strips
        if pending is not None:
            collect(pending)
    if with_before:
        before_slot.append(out.pop(0))
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
    stems_d = p.get("stems") if isinstance(p, dict) else None
    Params.from_dict(p, list(stems_d) if isinstance(stems_d, dict) else [], source=str(params_path))  # values in range: before any audio is read
    target_lufs = float(d.get("target_lufs", -14.0)) if target_lufs is None else target_lufs
    ceiling_dbtp = float(d.get("ceiling_dbtp", -1.0)) if ceiling_dbtp is None else ceiling_dbtp
    check_number("target_lufs", target_lufs, low=-40.0, high=-5.0)
    check_number("ceiling_dbtp", ceiling_dbtp, low=-9.0, high=0.0)
    out = Path(out)
    if out.exists() and not force:
        raise OptionError(lambda k: f"{k('out')}: {out} exists; pass {k('force')} to replace it", flags={"out": "-o"})
    session = _load(paths, reporter, sr=d.get("sr"))
    if any(out.resolve() == Path(sp).resolve() for sp in session.paths):
        raise OptionError(lambda k: f"{k('out')}: {out} is one of the input stems; refusing to overwrite it", flags={"out": "-o"})
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
