"""``evomix rank DIR --weights ...``: re-rank a finished run's saved front and re-export its
alternatives, without searching again: an instant loop.

A run's ``front.json`` keeps every front member's genome (``members[].genome``, in [0, 1]) and
params, its fast scores (``members[].objectives``) and fast listener descriptors
(``members[].descriptors_fast``), the genre profile, the loudness target and ceiling, each stem's
file and role, and for the alternatives it exported their exact scores, exact descriptors and their
``alt-NN.wav`` (its length and SHA-256, ``members[].audio``).

Re-ranking is three stages, each shown as soon as it is done:

1. **The new order** (:func:`plan`, :func:`ranking_table`). When the new weights only re-weight
   objectives the run scored, the saved fast scores are re-weighted, the front is filtered to its
   non-dominated members again (an objective switched off changes it) and the alternatives are
   chosen exactly as ``evomix mix`` chooses them (``evomix.choose.select``); no audio is read, so
   the table comes in well under a second. An objective the run did not score needs the stems
   analysed and the saved genomes scored in the fast tier first (one vectorized batch), decoded
   with the run's dynamic-cut keys (its stems' roles and recorded ``--key`` entries, then the keys its
   members' params name: ``pipeline.read_back_keys``), so a cut keeps its key and threshold.
2. **Each alternative, as soon as it is final** (:func:`export`). A member the run rendered
   (exported, or rendered and set aside) is verified by its saved exact scores and descriptors,
   without a render. One it exported is reused: its file is copied (linked and moved when ranking
   in place) after checking that it is the same member (its ``alt-NN.json`` holds the same params)
   and the same, intact file (length and SHA-256 as saved; an older run's file: its header and
   length). The stems are loaded only when a pick must be rendered, and not analysed: an exact
   render's scores need the band grid and the roles (anything more is taken from a real
   analysis, made then: :class:`_SavedAnalysis`). Every other pick is rendered exactly
   (``evomix.choose.verify.finish_one``), the strips of the next render running while the master
   chain of the current one finishes, and its file is written the moment its render is verified:
   the first new file after one render. The
   verification is the one ``evomix mix`` applies (``verify.verified_alternatives``): a pick whose
   exact scores fall outside the front's spread, or that sounds the same as an earlier one, is
   replaced by the next choice. Since the numbering follows the order of choice, alternative N is
   final once it and every earlier one are verified; it is written then, and never again.
3. ``front.json``, the alternatives' labels (relative to each other: known when all are
   rendered) and the listening report.

An interrupted rank keeps the files it has written (each complete: written to a temporary name,
then renamed); nothing else is touched.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from evomix import pipeline
from evomix.choose import verify
from evomix.choose.describe import jnd_matrix
from evomix.choose.select import choose_alternatives, label_alternatives
from evomix.choose.space import space_range_jnd
from evomix.core.runtime import available_cores
from evomix.engine.analysis import analyze_session
from evomix.engine.bands import band_grid
from evomix.engine.render import ExactRender, mix_strips
from evomix.errors import AudioFileError, OptionError, ParameterError, check_number
from evomix.io.audio import Session, expand_paths, read_audio, stem_names, write_audio
from evomix.io.files import atomic_file, json_text, write_text_atomic
from evomix.io.places import check_output_folder
from evomix.io.spill import materialise
from evomix.output.report import write_mix_report
from evomix.output.result import (
    FRONT_FORMAT,
    Member,
    MixResult,
    audio_record,
    load_params_file,
    params_file_dict,
)
from evomix.progress import NULL_PHASE, NULL_REPORTER, Phase, ProgressReporter
from evomix.search.algorithm import non_dominated
from evomix.search.checkpoint import file_sha256
from evomix.search.constraints import Constraints
from evomix.search.genome import GeneTable, Params
from evomix.settings import Master
from objectives import ALL_OBJECTIVES, OBJECTIVE_NAMES, REGISTRY, Target, load_profile, parse_weights
from objectives.genre import GenreProfile


def load_front(run_dir: str | Path) -> dict:
    """Read and check ``run_dir/front.json`` (a folder or the file itself).

    Raises
    ------
    ParameterError
        No such file, not a front file, or members without genomes (a run of an older evomix).
    """
    p = Path(run_dir)
    p = p / "front.json" if p.is_dir() or not p.suffix else p
    d = load_params_file(p)
    if d.get("format") != FRONT_FORMAT:
        raise ParameterError(f"{p}: not an evomix front file (format {d.get('format')!r}, expected {FRONT_FORMAT})")
    members = d.get("members") or []
    if not members:
        raise ParameterError(f"{p}: the front has no members")
    if any("genome" not in m for m in members):
        raise ParameterError(f"{p}: its members have no saved genomes (written by an older evomix); "
                             f"run 'evomix mix' again")
    return d


def _stem_paths(front: dict, paths: Sequence[str | Path], source: Path) -> tuple[list, dict]:
    """The stem files (``paths`` if given, else those saved) and the saved roles {name: role}."""
    stems = front.get("stems") or {}
    roles = {n: s.get("role", "other") for n, s in stems.items()}
    if paths:
        given = {Path(f).stem for f in expand_paths(paths)}
        return list(paths), {n: r for n, r in roles.items() if n in given}  # the check of the names follows
    files = [Path(s["file"]) for s in stems.values()]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ParameterError(f"{source}: stem file(s) {', '.join(missing)} not found; give the stems as PATH...")
    return files, roles


class _SavedAnalysis:
    """What the scores of an exact render need of an analysis (``verify.exact_scores``: the band
    grid and the roles), rebuilt from the session and what the run saved (its members' trims)
    without analysing the stems again. Anything else asked of it comes from a real analysis, made
    then, once: the scores stay those of ``evomix mix`` whatever they come to need."""

    def __init__(self, session: Session, trim_db: np.ndarray):
        self.grid = band_grid(session.sr)
        self.roles = tuple(session.roles)
        self.trim_db = trim_db
        self._session, self._full, self._lock = session, None, threading.Lock()

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        with self._lock:
            if self._full is None:
                self._full = analyze_session(self._session)
        return getattr(self._full, name)


def _profile(front: dict, source: Path) -> GenreProfile:
    if "profile" in front:
        return GenreProfile.from_dict(front["profile"], origin=f"{source} profile")
    return load_profile(front.get("genre", "pop"))


# ------------------------------------------------------------------------------------ the new order
@dataclass
class SavedFile:
    """An ``alt-NN.wav`` the run exported for a front member: where it is, its name in the run,
    and its saved ``{"frames", "sha256"}`` (None: a run of an older evomix, checked by its header)."""

    wav: Path
    alternative: str
    audio: dict | None


@dataclass
class Ranking:
    """A run's front re-ranked under new weights: everything :func:`export` needs, made from what
    the run saved (no audio read, unless an objective the run did not score needed the analysis).

    ``front`` holds the members best first (raw scores, lexicographic), ``G`` (n, genes) their
    genomes, ``F`` (n, n_obj) weighted and ``raw`` raw fast scores, ``D`` (n, d) their fast
    descriptors in JND units; ``saved_index`` (n,) each one's row in ``front.json``; ``scored``
    the members the run rendered (their exact scores and descriptors saved: exports, spares and
    set-aside picks), ``saved_files`` those of them whose exported file can be reused
    (:class:`SavedFile`); ``planned`` the alternatives chosen first (before any verification).
    """

    source: Path
    front_d: dict
    files: list
    roles: dict
    stem_order: list
    names: tuple
    weights: dict
    k: int
    target: Target
    profile: GenreProfile
    front: list
    G: np.ndarray
    F: np.ndarray
    raw: np.ndarray
    D: np.ndarray
    saved_index: np.ndarray
    known_bad: list
    scored: set
    saved_files: dict
    planned: list
    quick: bool
    settings: dict
    session: Session | None = None
    analysis: object | None = None
    warnings: list = field(default_factory=list)
    parents: np.ndarray | None = None  # (n,): -1 for a front member, else the front index a space copy copies
    space_range: tuple | None = None  # the genre's space range in JND units when the run searched the bus

    @property
    def wv(self) -> np.ndarray:
        """The weights (n_obj,) in the order of ``names``."""
        return np.array([self.weights[n] for n in self.names])

    def member_params(self, i: int) -> Params:
        """Front member ``i``'s saved params as a population of one, stems in session order."""
        return Params.from_dict(self.front[i].params, self.stem_order, source=f"{self.source} member {i}")


def _same_params(a: Mapping, b: Mapping, rtol: float = 1e-9) -> bool:
    """Two saved ``params`` objects hold the same mix (numbers equal to ``rtol``; JSON round-trips
    floats exactly, so the files of one run agree bit for bit)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same_params(a[k], b[k], rtol) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= rtol * max(1.0, abs(float(a)), abs(float(b)))
    return a == b


def _rendered_by_run(d: dict, names) -> bool:
    """The run rendered the saved member ``d`` exactly: its exact scores for every objective, its
    exact descriptors and measurements are saved."""
    return ("measured" in d and "descriptors" in d and isinstance(d.get("exact"), dict)
            and all(k in d["exact"] for k in names))


def _saved_file(d: dict, folder: Path, sr: int) -> SavedFile | None:
    """The run's export of the saved member ``d``, if it can be reused: its ``alt-NN.json`` holds
    the same params, and its ``alt-NN.wav`` is a stereo file at the run's rate (of the saved
    length, when saved; the content is checked when it is copied, :func:`_check_audio`)."""
    name = d.get("alternative")
    if not isinstance(name, str):
        return None
    wav, js = folder / f"{name}.wav", folder / f"{name}.json"
    if not wav.is_file() or not js.is_file():
        return None
    try:
        if not _same_params(load_params_file(js).get("params"), d.get("params")):
            return None  # the file was replaced by another mix (an interrupted rank in place, an edit)
        info = sf.info(str(wav))
    except (ParameterError, sf.LibsndfileError, RuntimeError):
        return None
    audio = d.get("audio") if isinstance(d.get("audio"), dict) else None
    if info.samplerate != sr or info.channels != 2:
        return None
    if audio is not None and info.frames != audio.get("frames"):
        return None
    return SavedFile(wav, name, audio)


def plan(run_dir: str | Path, paths: Sequence[str | Path] = (), *,
         weights: str | Mapping[str, float] | None = None, alternatives: int | None = None,
         reporter: ProgressReporter | None = None) -> Ranking:
    """The new order of ``run_dir``'s saved front under ``weights`` (module doc, stage 1).

    Parameters
    ----------
    run_dir : a folder written by ``evomix mix`` (or its ``front.json``).
    paths : the stems, overriding the files saved in front.json (matched by file stem name).
    weights : "name=value,..." or a mapping, as for :func:`evomix.mix` (default: all 1).
    alternatives : int >= 1, mixes to export (default: as many as the run exported).
    reporter : progress of the phases load, analysis, score (only when an objective the run did
        not score needs them).

    Raises
    ------
    ParameterError
        No front there, stems that are not the run's, saved genomes of another length.
    OptionError
        A bad ``weights`` or ``alternatives``.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    source = Path(run_dir)
    front_d = load_front(source)
    settings = dict(front_d.get("settings") or {})
    k = int(settings.get("alternatives", 5)) if alternatives is None else alternatives
    check_number("alternatives", k, low=1, integer=True)
    if isinstance(weights, Mapping):
        weights = ",".join(f"{a}={b}" for a, b in weights.items())
    w = parse_weights(weights, ALL_OBJECTIVES)
    names = tuple(n for n in ALL_OBJECTIVES if w[n] > 0 and n != "reference")  # a same-song reference is not re-fitted
    if not names or not any(w[n] > 0 for n in OBJECTIVE_NAMES):
        raise OptionError(pipeline.all_weights_off)
    files, roles = _stem_paths(front_d, paths, source)
    order = stem_names(files)  # the stems as the session will name them: no audio read
    saved = list((front_d.get("stems") or {}).keys())
    if saved:
        pipeline.check_stems_match(saved, order, source, what="run")
    members = front_d["members"]
    run_c = Constraints.from_dict(settings.get("constraints"), source=f"{source} settings")
    table = run_c.apply(GeneTable(len(order)), order)  # the run's locks and ranges: a locked gene is saved at 0.5
    G = np.array([m["genome"] for m in members], dtype=float)  # (n, genes)
    if G.shape[1] != table.n_genes:
        raise ParameterError(f"{source}: saved genomes have {G.shape[1]} genes; these stems need {table.n_genes}")
    if saved and order != saved:  # genomes are in the saved stem order: reorder the stem blocks
        n_k = len(table.stem_genes)
        cols = [saved.index(n) * n_k + j for n in order for j in range(n_k)]
        G = np.concatenate([G[:, cols], G[:, len(order) * n_k:]], axis=1)
    profile = _profile(front_d, source)
    default = Master()  # a front.json without a target: the defaults
    target = Target(profile=profile, target_lufs=float(front_d.get("target_lufs", default.target_lufs)),
                    ceiling_dbtp=float(front_d.get("ceiling_dbtp", default.ceiling_dbtp)), space=table.has_open_sends)
    wv = np.array([w[n] for n in names])
    quick = (set(names) <= set(front_d.get("objectives") or ()) and all("descriptors_fast" in m for m in members)
             and all(n in roles for n in order))
    session = analysis = None
    if quick:  # the saved fast scores and descriptors hold: no audio, no analysis, no fast render
        raw = np.array([[m["objectives"][n] for n in names] for m in members], dtype=float)  # (n, n_obj)
    else:  # an objective the run did not score: analyse and score the saved genomes in the fast tier
        session = pipeline.load(files, reporter, roles=roles, sr=front_d.get("sr"))
        analysis = pipeline.analyse(session, reporter, reverb=table.has_open_sends)
        # the dynamic cuts decode with the run's keys: its roles and recorded --key, then its members' saved keys
        _, key_index = pipeline.read_back_keys(session, run_c, [(f"{source} member {i}", m.get("params"))
                                                                for i, m in enumerate(members)])
        table = pipeline.with_keys(table, analysis, key_index)
        problem = pipeline.make_problem(analysis, table, target, names, tuple(wv))
        with reporter.phase("score", total=1, unit="fast batches", info=f"{len(G)} saved members") as ph:
            raw = problem.raw_scores(G)
            ph.advance()
        roles = dict(zip(session.names, session.roles))
    F = raw * wv[None, :]  # (n, n_obj) weighted
    is_copy = np.array(["space_copy_of" in m for m in members], dtype=bool)  # the run's space copies (choose.space)
    searched = np.flatnonzero(~is_copy)
    keep = searched[non_dominated(F[searched])]
    ordered = keep[np.lexsort(raw[keep].T[::-1])]  # saved member of each front member, best first
    position = {int(i): j for j, i in enumerate(ordered)}
    copies = [int(i) for i in np.flatnonzero(is_copy) if int(members[i]["space_copy_of"]) in position]
    idx = np.concatenate([ordered, copies]).astype(int)  # the front, then the copies of its members
    parents = np.array([-1] * len(ordered) + [position[int(members[i]["space_copy_of"])] for i in copies], dtype=int)
    G, F, raw = G[idx], F[idx], raw[idx]
    if quick:  # the params the run scored and rendered, bit for bit
        saved_params = [members[i]["params"] for i in idx]
    else:  # scored on this analysis: its trims (the stems given may be new files of the same names)
        params = table.decode(G, analysis.trim_db)
        saved_params = [params.to_dict(j, session.names, session.roles) for j in range(len(G))]
    front = [Member(genome=G[j], params=saved_params[j], objectives={n: float(raw[j, c]) for c, n in enumerate(names)},
                    copy_of=None if parents[j] < 0 else int(parents[j])) for j in range(len(G))]
    if quick:
        for m, i in zip(front, idx):
            m.fast_descriptors = members[i]["descriptors_fast"]
        D = jnd_matrix([m.fast_descriptors for m in front])
    else:
        D = verify.describe_front(front, analysis, table, target)
    scored: set = set()
    saved_files: dict = {}
    folder = source if source.is_dir() else source.parent
    if quick:  # what the run rendered: its exact scores hold (no render to verify), its exports may be reused
        for j, i in enumerate(idx):
            d = members[i]
            if _rendered_by_run(d, names):
                front[j].exact = {n: float(d["exact"][n]) for n in names}
                front[j].measured = dict(d["measured"], descriptors=d["descriptors"])
                scored.add(j)
                f = _saved_file(d, folder, int(front_d.get("sr") or 0))
                if f is not None:
                    saved_files[j] = f
    known_bad = []
    if quick:  # members the run rendered (spares, set-aside picks) whose exact scores miss the new front
        worst = raw.max(axis=0)
        for j, i in enumerate(idx):
            ex = members[i].get("exact") or {}
            if all(n in ex for n in names) and any(ex[n] > worst[c] for c, n in enumerate(names)):
                known_bad.append(j)
    budget = settings["max_limiting_db"] if "max_limiting_db" in settings else Master().max_limiting_db  # older runs
    squashed = [i for i in verify.squashed_members(front, k, budget) if i not in known_bad]
    known_bad += squashed[: max(0, len(front) - len(known_bad) - k)]
    carriers = settings.get("low_end_carriers")  # the run's, by name (a run of an older evomix: none saved)
    carriers = ([order.index(n) for n in carriers if n in order] if carriers is not None
                else [] if quick else list(verify.low_end_carriers(analysis)))
    errors = [i for i in verify.unusable_members(front, carriers, order) if i not in known_bad]
    if len(errors) < len(front) - len(known_bad):  # as evomix mix: errors are never picked, unless all are
        known_bad += errors
    space_range = space_range_jnd(profile) if table.has_open_sends else None
    planned = choose_alternatives(G, F, min(k, len(front)), wv, exclude=sorted(set(known_bad)), descriptors=D,
                                  parents=parents, space_range=space_range)
    return Ranking(source, front_d, files, roles, list(order), names, {n: float(w[n]) for n in names}, k, target,
                   profile, front, G, F, raw, D, idx, known_bad, scored, saved_files, planned, quick, settings,
                   session, analysis, list(session.warnings) if session is not None else [], parents, space_range)


def ranking_table(r: Ranking) -> dict:
    """The new order as JSON-ready data, before any render: per planned alternative (best first)
    its scores (``tier`` "exact" for a member the run rendered, else "fast", the estimate a render
    confirms), how it sounds (descriptors of the same tier) with labels relative to the others,
    and the run's file it reuses (``from_run``) or that it is still to render; and the run's
    alternatives that are no longer exported (``dropped``)."""
    rows = []
    for j in r.planned:
        m = r.front[j]
        exact = j in r.scored
        rows.append({"alternative": f"alt-{len(rows) + 1:02d}", "member": int(r.saved_index[j]),
                     "from_run": r.saved_files[j].alternative if j in r.saved_files else None,
                     "tier": "exact" if exact else "fast",
                     "scores": dict(m.exact) if exact else dict(m.objectives),
                     "descriptors": dict(m.measured["descriptors"] if exact else (m.fast_descriptors or {}))})
    lead = "vocal" if "vocal" in r.roles.values() else "lead"
    if len(rows) > 1:
        for row, labels in zip(rows, label_alternatives([row["descriptors"] for row in rows], lead_role=lead)):
            row["labels"] = labels
    else:
        for row in rows:
            row["labels"] = []
    kept = {r.front_d["members"][int(r.saved_index[j])].get("alternative") for j in r.planned}
    dropped = sorted(m["alternative"] for m in r.front_d["members"]
                     if isinstance(m.get("alternative"), str) and m["alternative"] not in kept)
    return {"run": str(r.source), "weights": dict(r.weights), "objectives": list(r.names),
            "units": {n: REGISTRY[n].unit for n in r.names}, "front_size": len(r.front), "alternatives": r.k,
            "order": rows, "dropped": dropped, "reused": sum(row["from_run"] is not None for row in rows),
            "to_render": sum(row["from_run"] is None for row in rows), "used_saved_scores": r.quick}


# ---------------------------------------------------------------------------------------- rendering
class RenderStream:
    """Exact renders of ``jobs`` [(index, Params of one)], handed out in order, each as soon as its
    master chain and scores are done (:func:`evomix.choose.verify.finish_one`).

    As ``verify.render_alternatives``, a two-stage pipeline: the strips of the next job
    (``mix_strips`` on every core) run on a thread of their own while the master chain of the
    current one finishes on another; at most one master is in flight. Unlike it, a finished
    render is handed out at once, not after the next job's strips: the caller can write its file
    while the next render runs; and the first job runs alone, so that the first file comes after
    one render's time (16 stems x 210 s, 2 cores: 5.3 s alone, 6.1 s beside the next strips).
    Progress is the caller's: it reports a render once its file is written. Use as a context
    manager: leaving it early stops the renders after the one running.
    """

    def __init__(self, session: Session, analysis, target: Target, names, jobs: Sequence[tuple[int, Params]]):
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._left = len(jobs)
        self._thread = threading.Thread(target=self._run, args=(session, analysis, target, tuple(names), list(jobs)),
                                        name="evomix-strips", daemon=True)
        self._thread.start()

    def _run(self, session, analysis, target, names, jobs) -> None:
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="evomix-master") as master:
                pending = None
                for n, (i, params) in enumerate(jobs):
                    if self._stop.is_set():
                        break
                    strips = mix_strips(session, session.is_mono, session.sr, params, index=0, grid=analysis.grid,
                                        threads=available_cores())
                    if pending is not None:
                        pending.exception()  # wait: one master in flight (its error reaches the caller in order)
                    if self._stop.is_set():
                        break
                    pending = master.submit(verify.finish_one, strips, analysis, target, names)
                    pending.add_done_callback(lambda f, i=i: self._queue.put((i, f)))
                    del strips
                    if n == 0:  # the first render alone: its file comes after one render, not one and a
                        pending.exception()  # share of the next (whose strips would take the cores meanwhile)
        except BaseException as e:  # any error, a Ctrl-C too: raised in the caller's thread (__next__)
            self._queue.put((None, e))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, ExactRender, dict, dict]:
        """(front index, render, exact scores, measured) of the next job."""
        if self._left <= 0:
            raise StopIteration
        i, f = self._queue.get()
        if i is None:
            self._left = 0
            raise f
        self._left -= 1
        return (i,) + tuple(f.result())

    def close(self, *, wait: bool = True) -> None:
        """Stop after the render running; ``wait`` for it (not after a Ctrl-C: the process ends)."""
        self._stop.set()
        if wait:
            self._thread.join()

    def __enter__(self) -> RenderStream:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(wait=kind is None or not issubclass(kind, KeyboardInterrupt))


class _Renderer:
    """The session, analysis and renders of a :class:`Ranking`, made when first needed: the
    stems are loaded (the "load" phase), their :class:`_SavedAnalysis` made and the "render"
    phase opened (on ``stack``, closed by the caller) at the first render, so that the run's files
    reused before it wait for none of them."""

    def __init__(self, r: Ranking, reporter: ProgressReporter, stack: contextlib.ExitStack):
        self.r, self.reporter, self.stack = r, reporter, stack
        self.count = 0  # renders finished
        self.phase: Phase = NULL_PHASE
        self._opened = False

    def loaded(self) -> Session:
        """The session (loaded now if it was not)."""
        r = self.r
        if r.session is None:
            r.session = pipeline.load(r.files, self.reporter, roles=r.roles, sr=r.front_d.get("sr"))
            if list(r.session.names) != r.stem_order:
                raise ParameterError(f"{r.source}: the stems load as {', '.join(r.session.names)}, "
                                     f"not {', '.join(r.stem_order)}")
            r.warnings += list(r.session.warnings)
        return r.session

    def ready(self) -> tuple[Session, object]:
        """The session and its analysis (made now if they were not; from what the run saved,
        :class:`_SavedAnalysis`)."""
        session, r = self.loaded(), self.r
        if r.analysis is None:
            trims = np.array([float(r.front[0].params["stems"][n]["trim_db"]) for n in r.stem_order])
            r.analysis = _SavedAnalysis(session, trims)
        return session, r.analysis

    def stream(self, todo: Sequence[int]) -> RenderStream:
        session, analysis = self.ready()
        if not self._opened:
            self.phase = self.stack.enter_context(self.reporter.phase("render", total=len(todo), unit="exact renders"))
            self._opened = True
        self.phase.update(total=self.count + len(todo))
        return RenderStream(session, analysis, self.r.target, self.r.names,
                            [(i, self.r.member_params(i)) for i in todo])

    def one(self, i: int) -> ExactRender:
        """Front member ``i`` rendered alone (its run's file could not be reused): the audio only."""
        with self.stream([i]) as s:
            render = next(s)[1]
        self.count += 1
        return render


# ----------------------------------------------------------------------------------- verification
def _verified(r: Ranking, renderer: _Renderer, emit: Callable[[int, int], None]) -> tuple[list, list]:
    """``verify.verified_alternatives`` with the renders streamed (:class:`RenderStream`, one
    handed out as soon as it is done) and ``emit(front index, position)`` called for each
    alternative the moment it is final. Members the run rendered come with their exact scores
    (``r.scored``): no render. ``emit`` must give a scored member without audio its render
    (``_Renderer.one``). Returns (exported indices, rejected misjudged indices)."""
    def renders(new):
        if not new:
            return
        with renderer.stream(new) as stream:
            for _ in new:
                j, render, exact, measured = next(stream)
                renderer.count += 1
                yield j, render, exact, measured

    return verify.verified_alternatives(r.front, r.G, r.F, r.k, None, None, r.member_params, r.target, r.names,
                                        weights=r.wv, descriptors=r.D, known_bad=r.known_bad, renders=renders,
                                        on_final=emit, roles=tuple(r.roles[n] for n in r.stem_order),
                                        parents=r.parents, space_range=r.space_range)


def _result(r: Ranking, picks: list, replaced: list, renders: int, reused: int) -> MixResult:
    """The :class:`MixResult` of a ranking whose alternatives are ``picks`` (``renders`` made now,
    ``reused`` of the run's files taken as they are)."""
    front, names = r.front, r.names
    warnings = list(r.warnings) + verify.label_front(front, picks, r.k, r.session.roles)
    for i, n in verify.beyond_front(front, picks, names):  # as api.mix reports them
        warnings.append(f"alt-{picks.index(i) + 1:02d}: its exact render scores {n} {front[i].exact[n]:.3g}, "
                        f"worse than every front member's fast score "
                        f"(the fast tier misjudged it; no better replacement was found)")
    settings = dict(r.settings)
    settings.update({"alternatives": r.k, "ranked_from": str(r.source), "rank_used_saved_scores": r.quick,
                     "reusable_renders": len(r.saved_files), "reused_renders": reused,
                     "new_renders": renders,
                     "replaced_alternatives": len(replaced),
                     "exact_renders": sum(m.exact is not None for m in front), "rank_scored": len(front)})
    settings.setdefault("evaluations", len(front))
    return MixResult(r.session, r.target, r.profile.name, names, dict(r.weights), front, [front[i] for i in picks],
                     None, settings, warnings, r.front_d.get("reference"),
                     before_from=Path(r.source if r.source.is_dir() else r.source.parent))  # same stems and target


def _check_audio(path: Path, saved: SavedFile, n_samples: int | None) -> bool:
    """``path`` (a copy of ``saved``) is the file the run wrote: its SHA-256 as saved, or for a run
    that saved none, a readable stereo file of the session's length."""
    if saved.audio is not None and saved.audio.get("sha256"):
        return file_sha256(path) == saved.audio["sha256"]
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return False
    return n_samples is not None and info.frames == n_samples and info.channels == 2


def rank(run_dir: str | Path, paths: Sequence[str | Path] = (), *, weights: str | Mapping[str, float] | None = None,
         alternatives: int | None = None, reporter: ProgressReporter | None = None) -> MixResult:
    """Re-rank the saved front of ``run_dir`` under ``weights`` and render its alternatives, in
    memory: :func:`plan`, then every pick verified and rendered (or read back from the run's
    file); ``write_ranked`` exports it. The command line streams instead (:func:`export`).

    Parameters are those of :func:`plan`. Returns a :class:`evomix.output.result.MixResult`
    (``search`` is None).
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    r = plan(run_dir, paths, weights=weights, alternatives=alternatives, reporter=reporter)

    reused: list = []

    def keep(i: int, pos: int) -> None:  # the audio stays in memory until the result is written
        if r.front[i].render is None:  # rendered by the run: its file read back, or rendered again
            f = r.saved_files.get(i)
            session = renderer.loaded()
            mix = (read_audio(f.wav, dtype="float32")[0] if f is not None and _check_audio(f.wav, f, session.n_samples)
                   else None)
            if mix is not None:
                reused.append(i)
            r.front[i].render = (ExactRender(mix=mix, stems=None, raw_loudness_lufs=float("nan"), normalise_db=0.0,
                                             limiter_gr_db=0.0) if mix is not None else renderer.one(i))
        renderer.phase.update(done=renderer.count)

    with contextlib.ExitStack() as stack:
        renderer = _Renderer(r, reporter, stack)
        picks, replaced = _verified(r, renderer, keep)
    renderer.loaded()  # every pick reused: the session is still needed for the result
    return _result(r, picks, replaced, renderer.count, len(reused))


# ------------------------------------------------------------------------------------------ export
@dataclass
class Written:
    """One alternative written by :func:`export` (or ``vary``): its number (1-based), file, the
    run's file it reuses (or None: rendered now), the front member it is, and the exact renders
    finished when it was written."""

    number: int
    wav: Path
    from_run: str | None
    member: Member
    renders: int = 0


class AlternativeFiles:
    """``alt-NN.wav`` and ``alt-NN.json`` written into ``out`` one alternative at a time, each file
    complete when it appears (``evomix.io.files``), then ``front.json`` and the listening report
    (:meth:`finish`). Used by ``rank`` and ``vary`` to stream their results.

    ``in_place``: ``out`` is the folder the reused files come from (``evomix rank`` in place):
    they are linked to hidden names first (:meth:`keep_sources`), so that writing alternative 1
    never destroys the run's file that becomes alternative 3. ``json_of(member, name)`` gives an
    ``alt-NN.json`` (:func:`evomix.output.result.params_file_dict`).
    """

    def __init__(self, out: str | Path, *, sr: int, json_of: Callable[[Member, str], dict], in_place: bool = False):
        self.out, self.sr, self.json_of, self.in_place = Path(out), int(sr), json_of, in_place
        self.written: list[Path] = []
        self._sources: dict = {}  # front index -> a hidden link to the run's file (in place)

    def _folder(self) -> Path:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AudioFileError(f"{self.out}: cannot write ({e.strerror or e})") from e
        return self.out

    def keep_sources(self, saved_files: Mapping[int, SavedFile]) -> None:
        """In place: link each reusable file to a hidden name beside it (a copy where the file
        system has no links), the source of :meth:`reused`."""
        if not self.in_place:
            return
        for i, f in saved_files.items():
            link = f.wav.with_name(f".{f.wav.name}.rank-{os.getpid()}-{i}.tmp")
            link.unlink(missing_ok=True)
            try:
                os.link(f.wav, link)
            except OSError:
                shutil.copyfile(f.wav, link)
            self._sources[i] = link

    def drop_sources(self) -> None:
        """Remove the hidden links :meth:`keep_sources` made that were not moved into place."""
        for link in self._sources.values():
            link.unlink(missing_ok=True)
        self._sources.clear()

    def _json(self, m: Member, name: str) -> Path:
        return write_text_atomic(self._folder() / f"{name}.json", json.dumps(self.json_of(m, name), indent=1))

    def reused(self, i: int, m: Member, number: int, saved: SavedFile, n_samples: int | None) -> bool:
        """Write the run's file ``saved`` as alternative ``number``, with its json; False (nothing
        written) when the file is not the one the run wrote (:func:`_check_audio`)."""
        wav = self._folder() / f"alt-{number:02d}.wav"
        link = self._sources.get(i)
        if link is not None:  # in place: the hidden link is moved into place (no copy)
            if not _check_audio(link, saved, n_samples):
                return False  # (the link goes with drop_sources)
            os.replace(link, wav)
            link.unlink(missing_ok=True)  # a link to the file already at that name: rename(2) leaves both
            del self._sources[i]
        else:
            try:
                with atomic_file(wav) as tmp:
                    shutil.copyfile(saved.wav, tmp)
                    if not _check_audio(tmp, saved, n_samples):
                        raise _NotTheRunsFile(saved.wav)
            except _NotTheRunsFile:
                return False
        m.audio = audio_record(wav) if saved.audio is None else dict(saved.audio)
        self.written += [wav, self._json(m, f"alt-{number:02d}")]
        return True

    def rendered(self, m: Member, number: int) -> None:
        """Write the render of ``m`` (a 24-bit master) as alternative ``number``, with its json;
        its audio is dropped from memory once written."""
        wav = write_audio(self._folder() / f"alt-{number:02d}.wav", materialise(m.render.mix), self.sr,
                          subtype="PCM_24")
        m.audio = audio_record(wav)
        m.render = None  # written: the file holds it now
        self.written += [wav, self._json(m, f"alt-{number:02d}")]

    def finish(self, result: MixResult, *, reporter: ProgressReporter | None = None, command=None,
               remove_beyond: bool = False) -> list[Path]:
        """The alternatives' json files again (their labels are final now), ``front.json`` and the
        listening report (``evomix.output.report.write_mix_report``); ``remove_beyond``: remove
        ``alt-NN`` files numbered beyond the alternatives (an earlier result in this folder)."""
        out = self._folder()
        reporter = NULL_REPORTER if reporter is None else reporter
        with reporter.phase("write", total=len(result.alternatives) + 1, unit="files") as ph:
            for i in range(len(result.alternatives)):
                self._json(result.alternatives[i], f"alt-{i + 1:02d}")
                ph.advance()
            self.written.append(write_text_atomic(out / "front.json", json_text(result.front_dict(), "members")))
            ph.advance()
        self.written += write_mix_report(result, out, reporter=reporter, command=command)
        if remove_beyond:
            n = len(result.alternatives)
            for p in sorted(out.glob("alt-*")):
                stem = p.stem.split("-", 1)[-1]
                if p.suffix in (".wav", ".json") and stem.isdigit() and int(stem) > n:
                    p.unlink()
        return self.written


class _NotTheRunsFile(Exception):
    """A copied file is not the one the run wrote: the copy is discarded (``atomic_file``)."""


def export(r: Ranking, out: str | Path, *, in_place: bool, reporter: ProgressReporter | None = None,
           on_written: Callable[[Written], None] | None = None, command=None) -> MixResult:
    """Stages 2 and 3 of the module doc: verify, render or reuse, and write each alternative of
    ``r`` into ``out`` the moment it is final, then ``front.json`` and the report.

    ``in_place``: ``out`` is the run's own folder (its alt-NN files and front.json are replaced,
    alternatives beyond the new count removed); otherwise ``out`` must have been checked by the
    caller (``evomix.io.places.check_output_folder``). ``on_written`` is called after each
    alternative's files are complete. A Ctrl-C (KeyboardInterrupt) stops after the file being
    written: those written stay, complete; nothing else is written.

    Returns the :class:`MixResult` written.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    out = Path(out)
    check_output_folder(out, force=True, inputs=expand_paths(r.files))  # never over an input stem
    constraints = r.settings.get("constraints")
    files = AlternativeFiles(out, sr=int(r.front_d.get("sr") or 0), in_place=in_place,
                             json_of=lambda m, name: params_file_dict(m, name, sr=int(r.front_d.get("sr") or 0),
                                                                      genre=r.profile.name, target=r.target,
                                                                      constraints=constraints))
    done: list = []

    def emit(i: int, pos: int) -> None:
        m, number = r.front[i], pos + 1
        from_run = None
        if i in r.saved_files:
            f = r.saved_files[i]
            n = r.session.n_samples if r.session is not None else None
            if f.audio is None and n is None:  # an older run's file: its length is checked against the stems
                n = renderer.loaded().n_samples
            if files.reused(i, m, number, f, n):
                from_run = f.alternative
        if from_run is None:
            if m.render is None:  # rendered by the run, its file gone or not the one it wrote: the audio
                m.render = renderer.one(i)  # (its saved scores stand)
            files.rendered(m, number)
        done.append(Written(number, out / f"alt-{number:02d}.wav", from_run, m, renderer.count))
        renderer.phase.update(done=renderer.count, info=f"alt-{number:02d}.wav written"
                  + (f" (the run's {from_run})" if from_run else " (rendered)"))
        if on_written is not None:
            on_written(done[-1])

    files.keep_sources(r.saved_files)
    try:
        with contextlib.ExitStack() as stack:
            renderer = _Renderer(r, reporter, stack)
            picks, replaced = _verified(r, renderer, emit)
    finally:
        files.drop_sources()
    renderer.loaded()  # every pick reused: the session is still needed for the report
    result = _result(r, picks, replaced, renderer.count, sum(w.from_run is not None for w in done))
    files.finish(result, reporter=reporter, command=command, remove_beyond=in_place)
    return result


def write_ranked(result: MixResult, out: str | Path, *, in_place: bool,
                 reporter: ProgressReporter | None = None) -> list[Path]:
    """Write a re-ranked result made by :func:`rank`; ``in_place`` (``out`` is the run's own
    folder) replaces its alt-NN files and front.json and removes alternatives beyond the new count."""
    out = Path(out)
    written = result.write(out, force=in_place, reporter=reporter)
    if in_place:
        n = len(result.alternatives)
        for p in sorted(out.glob("alt-*")):
            stem = p.stem.split("-", 1)[-1]
            if p.suffix in (".wav", ".json") and stem.isdigit() and int(stem) > n:
                p.unlink()
    return written


def front_genomes(front_json: str | Path) -> np.ndarray:
    """The saved genomes (n, genes) of a front.json."""
    return np.array([m["genome"] for m in json.loads(Path(front_json).read_text())["members"]], dtype=float)
