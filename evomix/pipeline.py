"""The stages of a run, named: check -> load -> analyse -> prepare -> search -> front -> choose -> result.

``evomix.mix`` is these stages in order (:func:`run_mix`); ``rank``, ``vary`` and ``explore``
(:mod:`evomix.tools`) compose the same stages around a front they read or make another way. Each
stage takes and returns small objects (``Session``, ``Analysis``, :class:`Prepared`,
:class:`Front`), never a tuple of ten, and mutates nothing it was given except the front's members
(their renders and scores, set by :func:`choose`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evomix.choose.space import space_ladder, space_range_jnd
from evomix.choose.verify import (
    beyond_front,
    describe_front,
    label_front,
    low_end_carriers,
    squashed_members,
    unusable_members,
    verified_alternatives,
)
from evomix.engine.analysis import Analysis, analyze_session
from evomix.engine.batch import render_features
from evomix.errors import AudioFileError, OptionError, ParameterError
from evomix.io.audio import Session, load_session
from evomix.output.result import Member, MixResult
from evomix.progress import NULL_REPORTER, ProgressReporter, format_seconds
from evomix.search import checkpoint as checkpoints
from evomix.search.algorithm import SearchResult, Termination, non_dominated, run_search
from evomix.search.constraints import (
    SPACE_BY_DEFAULT,
    UNMASK_BY_DEFAULT,
    Constraints,
    default_constraints,
    names_the_bus,
    names_the_cuts,
    unmask_defaults,
)
from evomix.search.genome import GeneTable, Params
from evomix.search.hypervolume import Normaliser
from evomix.search.interrupt import InterruptGuard
from evomix.search.keys import key_map, resolve_keys
from evomix.search.parallel import ParallelEvaluator
from evomix.search.problem import INFEASIBLE, Problem
from evomix.search.seeding import smart_initial_population
from evomix.settings import Master, Search
from evomix.tools.measure import MIN_AUDIO_S
from evomix.tools.profile import learn_profile
from evomix.tools.reference import fit_reference
from objectives import ALL_OBJECTIVES, OBJECTIVE_NAMES, REGISTRY, Target, parse_weights
from objectives.balance import ROLE_ERROR_DB, gated_levels_db
from objectives.genre import SPACE_ERROR_LU

REFERENCE_MODES = ("auto", "same-song", "style")


def all_weights_off(k) -> str:
    """The :class:`~evomix.errors.OptionError` message for weights that switch every objective off."""
    return f"{k('weights')}: every objective is switched off; give at least one a weight > 0"


# ---------------------------------------------------------------------------------------------- check
def check_weights(weights: str | Mapping[str, float] | None, *, reference=None) -> dict:
    """``--weights`` as {objective: weight} over every objective (0: off), checked before any audio is read.

    Raises
    ------
    OptionError
        An unknown objective, a bad number, ``reference`` without a reference mix, or every weight 0.
    """
    if isinstance(weights, Mapping):
        weights = ",".join(f"{k}={v}" for k, v in weights.items())
    w = parse_weights(weights, ALL_OBJECTIVES)
    if reference is None and weights and "reference=" in weights.replace(" ", ""):
        raise OptionError(lambda k: f"{k('weights')}: 'reference' needs {k('reference')} "
                                    f"(a rough mix of the same stems)")
    if not any(w[n] > 0 for n in OBJECTIVE_NAMES) and reference is None:
        raise OptionError(all_weights_off)
    return w


def check_reference_mode(mode: str) -> None:
    """Raise :class:`OptionError` unless ``mode`` is one of :data:`REFERENCE_MODES`."""
    if mode not in REFERENCE_MODES:
        raise OptionError(lambda k: f"{k('reference_mode')}: unknown mode '{mode}'; "
                                    f"choose from {', '.join(REFERENCE_MODES)}")


def expect_instance(obj, cls: type, name: str, *, hint: str = ""):
    """``obj`` if it is a ``cls``, a default ``cls()`` for None; anything else is a :class:`ParameterError`
    naming the keyword ``name`` and the class expected (``search must be an evomix.settings.Search``)."""
    if obj is None:
        return cls()
    if not isinstance(obj, cls):
        raise ParameterError(f"{name} must be an {cls.__module__}.{cls.__name__}{hint}, got {type(obj).__name__}")
    return obj


def check_constraints(constraints) -> Constraints:
    """``constraints`` as a :class:`Constraints` (None: none); anything else is a :class:`ParameterError`."""
    return expect_instance(constraints, Constraints, "constraints", hint=" (Constraints.parse(locks=..., ranges=...))")


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
            f"{', '.join(Path(p).name for p in session.paths)} "
            f"(the longest is {session.n_samples / session.sr:.3f} s); "
            f"give at least one stem of {MIN_AUDIO_S} s ({need} samples at {session.sr} Hz) or more")


# ------------------------------------------------------------------------------------- load, analyse
def load(paths, reporter: ProgressReporter = NULL_REPORTER, **kw) -> Session:
    """:func:`~evomix.io.audio.load_session` as the "load" phase, then :func:`check_session_length`."""
    with reporter.phase("load", unit="files") as ph:
        session = load_session(paths, progress=lambda done, total, _path: ph.update(done=done, total=total), **kw)
        ph.update(info=f"{session.n_stems} stems, {format_seconds(session.duration_s)} at {session.sr} Hz")
    check_session_length(session)
    return session


def analyse(session: Session, reporter: ProgressReporter = NULL_REPORTER, *, reverb: bool = True) -> Analysis:
    """:func:`~evomix.engine.analysis.analyze_session` as the "analysis" phase (two passes per stem);
    ``reverb`` False: no stem's gain through the reverb measured (a search without the bus)."""
    with reporter.phase("analysis", total=2 * session.n_stems, unit="stem passes") as ph:
        return analyze_session(session, progress=lambda done, total: ph.update(done=done, total=total), reverb=reverb)


# --------------------------------------------------------------------------------------------- prepare
def make_problem(analysis: Analysis, table: GeneTable, target: Target, names, weights, *,
                 max_limiting_db: float | None = None, kind: type = Problem) -> Problem:
    """The one place a :class:`~evomix.search.problem.Problem` is made (``kind``: it or a subclass).

    ``names`` : objectives in column order; ``weights`` : their weights (> 0), a sequence in that
    order or a mapping by name; ``max_limiting_db`` : the limiter budget, dB (None: none).
    """
    names = tuple(names)
    wv = tuple(float(weights[n]) for n in names) if isinstance(weights, Mapping) else tuple(weights)
    return kind(analysis, table, target, names, wv, max_limiting_db=max_limiting_db)


@dataclass
class Prepared:
    """Everything the search needs, made once: the stems, their analysis, the gene table, the
    target, the Problem, the first generation, and what the reference fit found."""

    session: Session
    analysis: Analysis
    table: GeneTable
    target: Target
    problem: Problem
    initial: np.ndarray  # (population, genes) in [0, 1]
    population: int  # the search's population (rounded up to a multiple of 4)
    weights: dict  # {objective: weight} of the objectives searched
    constraints: Constraints
    reference: dict | None = None  # the reference report of front.json, or None
    fit: object | None = None  # the same-song reference fit (``evomix.tools.reference``), or None
    warnings: list = field(default_factory=list)

    @property
    def names(self) -> tuple:
        """Objectives searched, in column order."""
        return self.problem.names


def check_keys(session: Session, constraints: Constraints) -> np.ndarray:
    """Each stem's key (``search.keys.resolve_keys``: the roles' defaults, then ``--key``), (stems,) int;
    a lock or range that gives a stem a dynamic cut while nothing keys it is refused.

    Raises
    ------
    ParameterError
        A ``--key`` naming a missing stem or the stem itself, or ``--lock STEM.unmask_depth_db=D`` (D > 0)
        on a stem without a key.
    """
    key_index = resolve_keys(session.names, session.roles, dict(constraints.keys))
    for c in constraints.entries:
        if (c.gene.name == "unmask_depth_db" and c.high > 0.0 and c.stem not in (None, "*")
                and c.stem in session.names and key_index[session.names.index(c.stem)] < 0):
            raise ParameterError(f"{c.describe()}: nothing keys {c.stem}'s cut (its role has no default key); "
                                 f"give one with --key {c.stem}=STEM")
    return key_index


def with_keys(table: GeneTable, analysis: Analysis, key_index: np.ndarray) -> GeneTable:
    """``table`` with the session's keys and their loud levels (``search.keys.key_map``) when it has dynamic
    cuts to decode (an ``unmask_depth_db`` gene); else ``table`` unchanged (every cut off)."""
    if "unmask_depth_db" not in [g.name for g in table.stem_genes]:
        return table
    return table.with_keys(key_map(analysis, key_index))


def searched_constraints(session: Session, profile, constraints: Constraints) -> tuple[Constraints, np.ndarray]:
    """A searching run's constraints and keys, as ``mix`` and ``explore`` make them (before any analysis):
    the genre's defaults (the reverb bus's when ``SPACE_BY_DEFAULT`` is on or a reverb gene is named; the
    dynamic cuts' when ``UNMASK_BY_DEFAULT`` is on, an ``unmask_*`` gene is named or a ``--key`` is given)
    under the run's own ``constraints``, and each stem's key (:func:`check_keys`), (stems,) int. The
    constraints returned are the ones the run records (``settings.constraints``), so ``rank`` and ``vary``
    rebuild the same gene table from them."""
    space = SPACE_BY_DEFAULT or names_the_bus(constraints)  # the reverb bus: by default, or when named
    key_index = check_keys(session, constraints)  # --key: before any analysis
    defaults = default_constraints(profile, session.names, session.roles, space=space)
    if UNMASK_BY_DEFAULT or names_the_cuts(constraints) or constraints.keys:  # the dynamic cuts: by default, or named
        defaults = Constraints(defaults.entries + unmask_defaults(session.names, session.roles, key_index >= 0).entries)
    return defaults.overridden_by(constraints), key_index


def saved_keys(saved: Sequence[tuple[str, Mapping]], *, explicit: Sequence[str] = ()) -> dict[str, str | None]:
    """The keys that saved mixes' params carry (``stems.NAME.unmask_key``, written for every stem whose
    cut was open: ``Params.to_dict``), ``{stem: key or None}``; ``saved`` is ``(source, params)`` pairs,
    ``explicit`` the stems whose key is given anew (their saved keys are not read).

    Raises
    ------
    ParameterError
        Two saved mixes with different keys for one stem (both files named; give ``--key STEM=KEY``).
    """
    found: dict[str, tuple[str, str | None]] = {}
    for source, params in saved:
        stems = params.get("stems") if isinstance(params, Mapping) else None
        for stem, st in (stems or {}).items():
            if not isinstance(st, Mapping) or "unmask_key" not in st or stem in explicit:
                continue
            key = st["unmask_key"]
            if stem in found and found[stem][1] != key:
                raise ParameterError(f"{found[stem][0]} and {source}: {stem}'s cut is keyed by "
                                     f"{found[stem][1] or 'none'} in one and {key or 'none'} in the other; "
                                     f"give one with --key {stem}=STEM")
            found[stem] = (source, key)
    return {stem: key for stem, (_, key) in found.items()}


def read_back_keys(session: Session, constraints: Constraints, saved: Sequence[tuple[str, Mapping]] = (), *,
                   explicit: Sequence[str] = ()) -> tuple[Constraints, np.ndarray]:
    """The keys of a tool that re-renders saved mixes (``rank``, ``vary``), as the run that made them had
    them: the roles' defaults, then the ``--key`` entries recorded with the run's ``constraints``, then the
    key each saved mix's params carry (:func:`saved_keys`), except for the ``explicit`` stems (a ``--key``
    given now, already in ``constraints``). Returns the constraints with those keys recorded (so a
    variation's file keeps them) and each stem's key (:func:`check_keys`), (stems,) int."""
    keys = dict(constraints.keys)
    keys.update(saved_keys(saved, explicit=explicit))
    constraints = Constraints(constraints.entries, tuple(keys.items()))
    return constraints, check_keys(session, constraints)


def gene_table(session: Session, constraints: Constraints) -> GeneTable:
    """The gene table of the session with the locks and ranges applied (before any analysis)."""
    return constraints.apply(GeneTable(session.n_stems), session.names)


# A same-song reference's space target: its reverb's estimated level +- this (LU; a choice: the
# estimate's error on synthetic references is within 1 LU, and the issue asks for 3 LU); an estimate
# above REFERENCE_RETURN_MAX_LU is taken for a misaligned or heavily processed reference, not a reverb.
REFERENCE_SPACE_LU = 1.5
REFERENCE_RETURN_MAX_LU = -4.0


def prepare(session: Session, analysis: Analysis, table: GeneTable, *, profile, w: dict, master: Master,
            search: Search, constraints: Constraints, reference=None, reference_mode: str = "auto",
            reporter: ProgressReporter = NULL_REPORTER) -> Prepared:
    """The reference fit (if any), the target, the :class:`Problem` and the first generation.

    A same-song reference adds the ``reference`` objective and seeds the search around its fitted
    balance; any other reference replaces ``profile`` by one learned from it.
    """
    warnings = list(session.warnings)
    n_pop = int(search.population)
    if n_pop % 4:
        n_pop += 4 - n_pop % 4
        warnings.append(f"--population rounded up from {search.population} to {n_pop} "
                        f"(NSGA-II tournament needs a multiple of 4)")
    ref_power, base, ref_report, fit = None, None, None, None
    if reference is not None:
        with reporter.phase("reference", info=Path(reference).name):
            fit = fit_reference(reference, session, analysis)
        same = fit.same_song if reference_mode == "auto" else reference_mode == "same-song"
        ref_report = {"file": str(reference), "mode": "same-song" if same else "style",
                      "correlation": round(fit.correlation, 4)}
        if same:
            ref_power = fit.power
            base = reference_genome(table, analysis, fit)
            # the same song's reference is the balance to aim at: the genre's role ranges do not override it;
            # its space is the reference's own reverb (tools.reference.reference_return_lu) +- REFERENCE_SPACE_LU
            space = None
            if fit.return_lu is not None and fit.return_lu <= REFERENCE_RETURN_MAX_LU:
                space = (fit.return_lu - REFERENCE_SPACE_LU, fit.return_lu + REFERENCE_SPACE_LU)
                ref_report["return_lu"] = round(float(fit.return_lu), 2)
            elif fit.return_lu is not None:
                warnings.append(f"{Path(reference).name}: {fit.return_lu:.1f} LU of the reference is not explained by "
                                f"the stems' gains (more than {REFERENCE_RETURN_MAX_LU:g} LU: not sample-aligned with "
                                f"the stems, or heavily processed); its reverb is not estimated, the genre's space "
                                f"stays")
                space = profile.space_lu
            profile = dataclasses.replace(profile, role_levels_db={}, space_lu=space)
            ref_report["fitted"] = {n: {"gain_db": round(float(g), 2), "pan": round(float(p), 3)}
                                    for n, g, p in zip(session.names, fit.gain_db, fit.pan)}
        else:  # a stereo reference cannot tell its reverb from its dry sound: the genre's space target stays
            learned = learn_profile([reference], name=Path(reference).stem)
            profile, fit = dataclasses.replace(learned, space_lu=profile.space_lu, decay_s=profile.decay_s), None
    names = tuple(n for n in ALL_OBJECTIVES if w[n] > 0 and (n != "reference" or ref_power is not None))
    if not names:
        raise OptionError(all_weights_off)
    target = Target(profile=profile, target_lufs=float(master.target_lufs), ceiling_dbtp=float(master.ceiling_dbtp),
                    reference_power=ref_power, space=table.has_open_sends)
    problem = make_problem(analysis, table, target, names, w, max_limiting_db=master.max_limiting_db)
    rng = np.random.default_rng(search.seed)
    if base is None:  # unity, loudness-matched and role-template mixes, perturbations, random genomes
        initial = smart_initial_population(table, analysis, n_pop, rng, role_levels=profile.role_levels_db)
    else:
        initial = table.initial_population(n_pop, rng, base=base, spread=0.05)
    return Prepared(session, analysis, table, target, problem, initial, n_pop, {n: w[n] for n in names},
                    constraints, ref_report, fit, warnings)


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
    locked = [s for s in range(table.n_stems)
              if audible[s] and table.genes_of_stem(s)[jg].low == table.genes_of_stem(s)[jg].high]
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


# ---------------------------------------------------------------------------------------------- search
def search_info(names, weights, front_size: int, best) -> str:
    """``"front 12 | best masking 0.21 dB, loudness 0.4 LU"``: ``best`` (n_obj,) is weighted."""
    raw = np.asarray(best, dtype=float) / np.asarray(weights, dtype=float)
    return f"front {front_size} | best " + ", ".join(f"{n} {v:.3g} {REGISTRY[n].unit}" for n, v in zip(names, raw))


@dataclass
class Checkpointing:
    """What a run's checkpoint must match (``settings``) and the stems it was made from (``stems``),
    with the file to save to (``path``, or None) and the loaded checkpoint to resume (or None)."""

    settings: dict
    stems: list | None
    path: Path | None = None
    resume: checkpoints.Checkpoint | None = None

    def pending(self, result: SearchResult, session: Session) -> bytes | None:
        """An interrupted run without a checkpoint file: the bytes ``MixResult.write`` leaves beside the front."""
        if result.stop_reason != "interrupted" or self.path is not None:
            return None
        stems = self.stems if self.stems is not None else checkpoints.stems_fingerprint(session)
        return checkpoints.encode(result.state, settings=self.settings, stems=stems)


def checkpointing(prep: Prepared, search: Search, master: Master, *, stems: list | None, checkpoint=None,
                  resume: checkpoints.Checkpoint | None = None, reference=None) -> Checkpointing:
    """The run's checkpoint plan (``stems``: the session's fingerprint, when a checkpoint is saved
    or resumed); a ``resume`` checkpoint that does not match fails here, before the search."""
    session = prep.session
    settings = checkpoints.search_settings(
        algorithm=search.algorithm, population=prep.population, seed=int(search.seed), objectives=prep.names,
        weights=prep.problem.weights, profile=prep.target.profile.to_dict(), target_lufs=master.target_lufs,
        ceiling_dbtp=master.ceiling_dbtp, max_limiting_db=master.max_limiting_db,
        constraints=prep.constraints.to_dict(), roles=dict(zip(session.names, session.roles)), sr=session.sr,
        n_genes=prep.table.n_genes, normaliser=Normaliser.fixed(prep.names, prep.problem.weights),
        reference=None if prep.reference is None else {"mode": prep.reference["mode"],
                                                       "sha256": checkpoints.file_sha256(reference)})
    if resume is not None:
        checkpoints.check_matches(resume, settings=settings)
    return Checkpointing(settings, stems, None if checkpoint is None else Path(checkpoint), resume)


def run_the_search(prep: Prepared, evaluator: ParallelEvaluator, search: Search, plan: Checkpointing, *,
                   reporter: ProgressReporter = NULL_REPORTER, progress: Callable | None = None) -> SearchResult:
    """The "search" phase: the evolutionary loop, checkpointed after every generation when asked,
    stopped cleanly by a first Ctrl-C (the front found so far is kept)."""
    names, weights = prep.names, prep.problem.weights
    saver = None if plan.path is None else checkpoints.Saver(plan.path, settings=plan.settings, stems=plan.stems)
    notice = b"\nevomix: Ctrl-C: stopping after this generation (again to abort)\n"
    generations = search.generations
    with InterruptGuard(message=notice if getattr(reporter, "mode", "quiet") != "quiet" else None) as guard, \
            reporter.phase("search", total=None if generations is None else int(generations), unit="generations",
                           info=f"{prep.population} candidates each, {search.algorithm}") as ph, \
            saver if saver is not None else contextlib.nullcontext():  # the last checkpoint is complete on leaving
        def on_generation(gen, n_gen, front_size, best):
            ph.update(done=gen, total=n_gen, info=search_info(names, weights, front_size, best))
            if progress is not None:
                progress(gen, n_gen, front_size, best)

        result = run_search(evaluator.ship(prep.problem), prep.initial, algorithm=search.algorithm,
                            termination=Termination(generations=None if generations is None else int(generations),
                                                    time_limit=search.time_limit),
                            seed=int(search.seed), progress=on_generation,
                            normaliser=Normaliser.fixed(names, weights), steer=weights,
                            resume=None if plan.resume is None else plan.resume.state, on_generation=saver,
                            stop_requested=lambda: guard.requested)
        ph.update(info=f"stopped by {result.stop_reason} after {result.generations} generations, front "
                       f"{len(result.front_F)}, hypervolume {result.hypervolume[-1]:.4f}")
    return result


# ----------------------------------------------------------------------------------------------- front
@dataclass
class Front:
    """The members of a front, best first, with their genomes ``G`` (n, genes), weighted scores
    ``F`` (n, n_obj) and decoded ``params``."""

    members: list
    G: np.ndarray
    F: np.ndarray
    params: Params
    warnings: list = field(default_factory=list)
    parents: np.ndarray | None = None  # (n,): -1 for a member of the search's front, else the member a copy copies


def with_space_copies(prep: Prepared, fr: Front, k: int) -> Front:
    """The front and, after its members, their copies at ``k`` return levels over the genre's space
    range (:func:`evomix.choose.space.space_ladder`), each ``Member.copy_of`` its member; the
    front itself when no copy is made (no open send, no space target, or none feasible)."""
    Gc, Fc, parents = space_ladder(prep.problem, prep.table, prep.analysis, prep.target, fr.G, fr.F, k)
    n = len(fr.members)
    if len(Gc) == 0:
        return dataclasses.replace(fr, parents=np.full(n, -1))
    G, F = np.concatenate([fr.G, Gc]), np.concatenate([fr.F, Fc])
    params = prep.table.decode(G, prep.analysis.trim_db)
    copies = members_of(Gc, Fc / np.asarray(prep.problem.weights)[None, :], prep.names, prep.session,
                        prep.table.decode(Gc, prep.analysis.trim_db))
    for m, j in zip(copies, parents):
        m.copy_of = int(j)
    return Front(fr.members + copies, G, F, params, fr.warnings, np.concatenate([np.full(n, -1), parents]))


def members_of(G: np.ndarray, raw: np.ndarray, names, session: Session, params: Params) -> list:
    """One :class:`Member` per genome: its params by stem name and its raw scores by objective."""
    return [Member(genome=G[i], params=params.to_dict(i, session.names, session.roles),
                   objectives={n: float(raw[i, j]) for j, n in enumerate(names)}) for i in range(len(G))]


def front(prep: Prepared, result: SearchResult, master: Master) -> Front:
    """The search's archive as a front: canonical genomes (locked genes at 0.5), unique,
    non-dominated, sorted by raw scores (a stable order). When no candidate met the limiter
    budget, the least limited ones with their real scores and a warning."""
    table, problem = prep.table, prep.problem
    G, F = table.canonical(result.front_genomes), result.front_F  # locked genes at 0.5: same mix, same genome
    _, first = np.unique(G, axis=0, return_index=True)
    G, F = G[np.sort(first)], F[np.sort(first)]
    keep = non_dominated(F)
    G, F = G[keep], F[keep]
    raw = F / np.asarray(problem.weights)[None, :]
    warnings = []
    over = (F >= INFEASIBLE).all(axis=1)  # only when no candidate met the constraints: the nearest
    if over.any():
        raw[over], limiting, roles, space = problem.scores_and_violations(G[over])  # their real scores
        if space.any() and not (limiting.any() or roles.any()):
            lo, hi = prep.target.profile.space_lu
            warnings.append(f"no mix found kept its reverb return within {SPACE_ERROR_LU:g} LU of the "
                            f"{prep.target.profile.name} space ({lo:g}..{hi:g} LU re the mix); the front holds the "
                            f"nearest ({float(space.min()):.1f} LU outside): search longer, set the sends "
                            f"(--range STEM.reverb_send_db=LO:HI) or lock them off for a dry mix "
                            f"(--lock '*.reverb_send_db=off')")
        if roles.any() and not limiting.any():
            warnings.append(f"no mix found kept every role within {ROLE_ERROR_DB:g} dB of the "
                            f"{prep.target.profile.name} balance (objectives/profiles: role_levels_db); the front "
                            f"holds the nearest ({float(roles.min()):.1f} dB outside): check the stems' roles "
                            f"(--role), search longer, or try another --genre")
        if limiting.any():
            gr_over = float(limiting[limiting > 0].min()) + float(master.max_limiting_db)
            warnings.append(f"no mix reached {master.target_lufs:g} LUFS with at most {master.max_limiting_db:g} dB of "
                            f"limiting; the front holds the least limited found ({gr_over:.1f} dB): pass "
                            f"--max-limiting {np.ceil(gr_over):.0f} or more, or a lower --target-lufs")
        F = raw * np.asarray(problem.weights)[None, :]
    order = np.lexsort(raw.T[::-1])
    G, F, raw = G[order], F[order], raw[order]
    params = table.decode(G, prep.analysis.trim_db)
    return Front(members_of(G, raw, prep.names, prep.session, params), G, F, params, warnings)


# ---------------------------------------------------------------------------------------------- choose
def stem_levels(prep: Prepared, G: np.ndarray, block: int = 64) -> np.ndarray:
    """Each stem's gated K-weighted level re the mix (fast tier), dB, (n, stems), for the genomes ``G`` (n, genes)."""
    out = []
    for a in range(0, len(G), block):
        params = prep.table.decode(G[a:a + block], prep.analysis.trim_db)
        f = render_features(prep.analysis, params, target_lufs=prep.target.target_lufs,
                            ceiling_dbtp=prep.target.ceiling_dbtp)
        out.append(gated_levels_db(f))  # each stem where it plays (BS.1770 gating), as a meter reads it
    return np.concatenate(out) if out else np.zeros((0, prep.session.n_stems))


@dataclass
class Chosen:
    """The exported members' indices into the front (``picks``), the misjudged ones set aside
    (``replaced``), the listening report's "before" render, and warnings."""

    picks: list
    replaced: list
    before: tuple | None
    warnings: list
    low_end_carriers: list = field(default_factory=list)  # the stems that carry the low end, by name
    members: list | None = None  # the front's members and the space copies the choice could take (picks index it)


def choose(prep: Prepared, fr: Front, k: int, *, max_limiting_db: float | None,
           reporter: ProgressReporter = NULL_REPORTER, keep_master_gain: bool = False,
           with_before: bool = True, known_bad=()) -> Chosen:
    """The "render" phase: ``k`` alternatives chosen from the front, rendered exactly, misjudged
    picks and near-duplicates replaced (:func:`~evomix.choose.verify.verified_alternatives`), labelled."""
    fr = with_space_copies(prep, fr, int(k))  # the genre's space range spanned by copies of good mixes
    members, session, names = fr.members, prep.session, prep.names
    D = describe_front(members, prep.analysis, prep.table, prep.target)
    bad = sorted(set(known_bad) | {i for i in squashed_members(members, k, max_limiting_db) if i not in known_bad})
    levels = stem_levels(prep, fr.G) if session.n_stems == 2 else None  # a bed and its lead: their balance
    carriers = [int(s) for s in low_end_carriers(prep.analysis)]
    errors = [i for i in unusable_members(members, carriers, session.names, levels) if i not in bad]
    warnings: list = []  # (a role error is infeasible in the search: the front holds one only when all are)
    if len(errors) < len(members) - len(bad):  # never all of them: then the least bad are still mixes
        bad = sorted(set(bad) | set(errors))
    with reporter.phase("render", total=min(int(k), len(members)), unit="exact renders") as ph:
        before_slot: list | None = [] if with_before else None  # the report's "before" joins the first round
        picks, replaced = verified_alternatives(members, fr.G, fr.F, int(k), session, prep.analysis, fr.params,
                                                prep.target, names, phase=ph, weights=prep.problem.weights,
                                                descriptors=D, known_bad=bad, keep_master_gain=keep_master_gain,
                                                before_slot=before_slot, parents=fr.parents,
                                                space_range=space_range_jnd(prep.target.profile)
                                                if prep.table.has_open_sends else None)
    warnings += label_front(members, picks, int(k), session.roles, errors=len(set(bad) - set(known_bad)))
    for i, m in enumerate(members):
        if i not in picks:
            m.render = None  # rendered as a spare or set aside: keep its exact scores, drop the audio
    for i, n in beyond_front(members, picks, names):
        warnings.append(f"alt-{picks.index(i) + 1:02d}: its exact render scores {n} {members[i].exact[n]:.3g}, worse "
                        f"than every front member's fast score (the fast tier misjudged it; no better replacement "
                        f"was found)")
    n_front = int((fr.parents < 0).sum())  # the search's front, without the space copies
    if len(picks) < k and n_front < k:
        warnings.append(f"the front has only {n_front} member(s); exported {len(picks)} of {k} alternatives")
    kept = [i for i, m in enumerate(members) if m.copy_of is None or m.exact is not None]  # copies never rendered go
    position = {i: j for j, i in enumerate(kept)}
    members = [members[i] for i in kept]
    picks, replaced = [position[i] for i in picks], [position[i] for i in replaced]
    return Chosen(picks, replaced, before_slot[0] if before_slot else None, warnings,
                  [session.names[s] for s in carriers], members)


# ---------------------------------------------------------------------------------------------- result
def closest_member(prep: Prepared, members: list) -> dict:
    """The reference report's ``closest_member``: the front member nearest the fitted reference
    balance (best ``reference`` score), as total gains relative to the loudest audible stem."""
    names, fit = prep.session.names, prep.fit
    j = int(np.argmin([m.objectives["reference"] for m in members])) if "reference" in prep.names else 0
    stems = members[j].params["stems"]
    total = np.array([stems[n]["trim_db"] + stems[n]["gain_db"] for n in names])
    audible = np.asarray(fit.gain_db) > -120
    total -= total[audible].max() if np.any(audible) else total.max()
    return {n: {"gain_db": round(float(g), 2), "pan": round(members[j].params["stems"][n]["pan"], 3)}
            for n, g in zip(names, total)}


def mix_result(prep: Prepared, result: SearchResult, fr: Front, chosen: Chosen, search: Search, master: Master,
               plan: Checkpointing) -> MixResult:
    """The :class:`MixResult` of a searched run: its front, exported alternatives, settings and warnings."""
    members = fr.members if chosen.members is None else chosen.members
    if prep.reference is not None and prep.fit is not None:
        prep.reference["closest_member"] = closest_member(prep, members)
    settings = {"population": prep.population, "generations": int(result.generations), "seed": int(search.seed),
                "algorithm": search.algorithm, "stop_reason": result.stop_reason, "time_limit": search.time_limit,
                "hypervolume": float(result.hypervolume[-1]),
                "alternatives": int(search.alternatives), "evaluations": int(result.evaluations),
                "replaced_alternatives": len(chosen.replaced),
                "exact_renders": sum(m.exact is not None for m in members),  # picks, spares and replacements
                "constraints": prep.constraints.to_dict(), "max_limiting_db": master.max_limiting_db,
                "low_end_carriers": list(chosen.low_end_carriers)}  # rank keeps the same picks out
    if plan.resume is not None:
        settings["resumed_from"] = {"checkpoint": str(plan.resume.path), "generation": int(plan.resume.state.gen)}
    return MixResult(prep.session, prep.target, prep.target.profile.name, prep.names, dict(prep.weights), members,
                     [members[i] for i in chosen.picks], result, settings,
                     prep.warnings + fr.warnings + chosen.warnings, prep.reference, before=chosen.before,
                     checkpoint=plan.path, checkpoint_bytes=plan.pending(result, prep.session))


def run_mix(paths, evaluator: ParallelEvaluator, *, profile, w: dict, search: Search, master: Master,
            constraints: Constraints, roles=None, session: Session | None = None, reference=None,
            reference_mode: str = "auto", checkpoint=None, resume: checkpoints.Checkpoint | None = None,
            reporter: ProgressReporter = NULL_REPORTER, progress: Callable | None = None,
            keep_master_gain: bool = False) -> MixResult:
    """``evomix.mix`` after its checks: every stage in order; ``evaluator`` scores the generations."""
    if session is None:
        session = load(paths, reporter, roles=roles)
    else:
        check_session_length(session)
    if checkpoint is not None:
        checkpoints.check_target(checkpoint, inputs=session.paths, resume=None if resume is None else resume.path,
                                 force=True)
    stems = checkpoints.stems_fingerprint(session) if (checkpoint is not None or resume is not None) else None
    if resume is not None:  # before the analysis: other stems fail at once
        checkpoints.check_stems(resume, stems)
    constraints, key_index = searched_constraints(session, profile, constraints)  # --key: before any analysis
    table = gene_table(session, constraints)  # locks and ranges: before any analysis
    analysis = analyse(session, reporter, reverb=table.has_open_sends)
    table = with_keys(table, analysis, key_index)
    prep = prepare(session, analysis, table, profile=profile, w=w, master=master, search=search,
                   constraints=constraints, reference=reference, reference_mode=reference_mode, reporter=reporter)
    plan = checkpointing(prep, search, master, stems=stems, checkpoint=checkpoint, resume=resume,
                         reference=reference)
    result = run_the_search(prep, evaluator, search, plan, reporter=reporter, progress=progress)
    evaluator.close()  # workers are not needed for the exact renders
    fr = front(prep, result, master)
    chosen = choose(prep, fr, int(search.alternatives), max_limiting_db=master.max_limiting_db, reporter=reporter,
                    keep_master_gain=keep_master_gain)
    return mix_result(prep, result, fr, chosen, search, master, plan)


def check_stems_match(saved, given, source, *, what: str = "mix") -> None:
    """Refuse stems that are not the ones a saved ``what`` (a mix, a run) was made from.

    ``saved`` are the stem names the file ``source`` holds settings for, ``given`` those of the stems
    passed now (:func:`evomix.io.audio.stem_names`); order does not matter.

    Raises
    ------
    ParameterError
        ``source: the mix was made from stems a, b, c; missing: b, c; not in it: d``, naming every
        missing and every extra stem.
    """
    saved, given = list(saved), list(given)
    missing = [n for n in saved if n not in given]
    extra = [n for n in given if n not in saved]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"missing: {', '.join(missing)} (give every stem it was made from)")
    if extra:
        parts.append(f"not in it: {', '.join(extra)}")
    raise ParameterError(f"{source}: the {what} was made from stems {', '.join(saved)}; {'; '.join(parts)}")
