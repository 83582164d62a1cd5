"""``evomix rank DIR --weights ...``: re-rank a finished run's saved front and re-export its
alternatives, without searching again.

A run's ``front.json`` keeps every front member's genome (``members[].genome``, in [0, 1]), the
genre profile, the loudness target and ceiling, and each stem's file and role. Re-ranking loads the
stems (from those paths, or from ``paths`` given here), analyses them once, scores the saved
genomes in the fast tier under the new weights (one vectorized batch: objectives switched on or off
by the weights change the front, so it is filtered to its non-dominated members again), and then
chooses, renders exactly, verifies and labels the alternatives exactly as ``evomix mix`` does
(``evomix.choose.verify``). The cost is the analysis, one fast batch and
the K exact renders: the search, by far the largest part of a run, is not repeated. When the new
weights only re-weight objectives the run scored, even the analysis is skipped: the saved fast
scores (``members[].objectives``) and fast descriptors (``members[].descriptors_fast``) are used
as they are, and only the exact renders of the alternatives remain.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from evomix import pipeline
from evomix.choose import verify
from evomix.choose.describe import jnd_matrix
from evomix.engine.bands import band_grid
from evomix.engine.render import ExactRender
from evomix.errors import OptionError, ParameterError, check_number
from evomix.io.audio import expand_paths, read_audio
from evomix.output.result import FRONT_FORMAT, MixResult, load_params_file
from evomix.progress import NULL_REPORTER, ProgressReporter
from evomix.search.algorithm import non_dominated
from evomix.search.genome import GeneTable
from evomix.settings import Master
from objectives import ALL_OBJECTIVES, OBJECTIVE_NAMES, Target, load_profile, parse_weights
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


def _profile(front: dict, source: Path) -> GenreProfile:
    if "profile" in front:
        return GenreProfile.from_dict(front["profile"], origin=f"{source} profile")
    return load_profile(front.get("genre", "pop"))


class _SavedAnalysis:
    """What the exact renders and their scores need of an analysis (band grid, roles, trim),
    rebuilt from a session and the saved members' trims without analysing the stems again."""

    def __init__(self, session, members: list):
        self.grid = band_grid(session.sr)
        self.roles = tuple(session.roles)
        stems = members[0]["params"]["stems"]
        self.trim_db = np.array([float(stems[n]["trim_db"]) for n in session.names])


def _reuse_exports(front: list, saved: list, source: Path, names) -> dict:
    """Give front members that the run exported their saved exact scores and descriptors, and a
    placeholder render, so they are not rendered again. Returns {front index: its alt-NN.wav}: the
    audio (the saved exact render; writing it again reproduces the same 24-bit samples) is read
    only for the members picked again (:func:`_read_reused`)."""
    folder = source if source.is_dir() else source.parent
    wavs = {}
    for j, (m, d) in enumerate(zip(front, saved)):
        wav = folder / f"{d.get('alternative', '')}.wav"
        if "alternative" not in d or "measured" not in d or "descriptors" not in d or not wav.is_file():
            continue
        if any(k not in (d.get("exact") or {}) for k in names):
            continue
        # a placeholder (mix None: not read yet) that keeps _verified_alternatives from rendering it again
        m.render = ExactRender(mix=None, stems=None, raw_loudness_lufs=float("nan"), normalise_db=0.0,
                               limiter_gr_db=0.0)
        m.exact = {k: float(d["exact"][k]) for k in names}
        m.measured = dict(d["measured"], descriptors=d["descriptors"])
        wavs[j] = wav
    return wavs


def _read_reused(front: list, picks: list, wavs: dict) -> None:
    """Read the saved audio of the picked members that reuse a run's export; drop the other
    placeholders (their scores stay)."""
    for j, wav in wavs.items():
        if j in picks:
            front[j].render = replace(front[j].render, mix=read_audio(wav, dtype="float32")[0])
        else:
            front[j].render = None


def rank(run_dir: str | Path, paths: Sequence[str | Path] = (), *, weights: str | Mapping[str, float] | None = None,
         alternatives: int | None = None, reporter: ProgressReporter | None = None) -> MixResult:
    """Re-rank the saved front of ``run_dir`` under ``weights`` and render its alternatives.

    Parameters
    ----------
    run_dir : a folder written by ``evomix mix`` (or its ``front.json``).
    paths : the stems, overriding the files saved in front.json (matched by file stem name).
    weights : "name=value,..." or a mapping, as for :func:`evomix.mix` (default: all 1).
    alternatives : int >= 1, mixes to export (default: as many as the run exported).
    reporter : progress of the phases load, analysis, score, render.

    Returns a :class:`evomix.output.result.MixResult` (``search`` is None); ``write`` it to export.
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
    files, roles = _stem_paths(front_d, paths, source)
    session = pipeline.load(files, reporter, roles=roles, sr=front_d.get("sr"))
    saved = list((front_d.get("stems") or {}).keys())
    if saved:
        pipeline.check_stems_match(saved, session.names, source, what="run")
    table = GeneTable(session.n_stems)
    members = front_d["members"]
    G = np.array([m["genome"] for m in members], dtype=float)  # (n, genes)
    if G.shape[1] != table.n_genes:
        raise ParameterError(f"{source}: saved genomes have {G.shape[1]} genes; these stems need {table.n_genes}")
    if saved and list(session.names) != saved:  # genomes are in the saved stem order: reorder the stem blocks
        n_k = len(table.stem_genes)
        cols = [saved.index(n) * n_k + j for n in session.names for j in range(n_k)]
        G = np.concatenate([G[:, cols], G[:, session.n_stems * n_k:]], axis=1)
    profile = _profile(front_d, source)
    names = tuple(n for n in ALL_OBJECTIVES if w[n] > 0 and n != "reference")  # a same-song reference is not re-fitted
    if not names or not any(w[n] > 0 for n in OBJECTIVE_NAMES):
        raise OptionError(pipeline.all_weights_off)
    default = Master()  # a front.json without a target: the defaults
    target = Target(profile=profile, target_lufs=float(front_d.get("target_lufs", default.target_lufs)),
                    ceiling_dbtp=float(front_d.get("ceiling_dbtp", default.ceiling_dbtp)))
    wv = np.array([w[n] for n in names])
    saved_names = set(front_d.get("objectives") or ())
    quick = set(names) <= saved_names and all("descriptors_fast" in m for m in members)
    if quick:  # the saved fast scores and descriptors hold: no analysis, no fast render
        analysis = _SavedAnalysis(session, members)
        raw = np.array([[m["objectives"][n] for n in names] for m in members], dtype=float)  # (n, n_obj)
        fast_rows = [m["descriptors_fast"] for m in members]
    else:  # an objective the run did not score: analyse and score the saved genomes in the fast tier
        analysis = pipeline.analyse(session, reporter)
        problem = pipeline.make_problem(analysis, table, target, names, tuple(wv))
        with reporter.phase("score", total=1, unit="fast batches", info=f"{len(G)} saved members") as ph:
            raw = problem.raw_scores(G)
            ph.advance()
        fast_rows = None
    F = raw * wv[None, :]  # (n, n_obj) weighted
    keep = non_dominated(F)
    G, F, raw = G[keep], F[keep], raw[keep]
    order = np.lexsort(raw.T[::-1])
    G, F, raw = G[order], F[order], raw[order]
    params = table.decode(G, analysis.trim_db)
    front = pipeline.members_of(G, raw, names, session, params)
    idx = np.flatnonzero(keep)[order]  # saved member of each front member
    reused = _reuse_exports(front, [members[i] for i in idx], source, names) if quick else {}
    if fast_rows is not None:
        for m, i in zip(front, idx):
            m.fast_descriptors = fast_rows[i]
        D = jnd_matrix([m.fast_descriptors for m in front])
    else:
        D = verify.describe_front(front, analysis, table, target)
    known_bad = []
    if quick:  # members the run rendered (spares, set-aside picks) whose exact scores miss the new front
        worst = raw.max(axis=0)
        for j, d in enumerate(members[i] for i in idx):
            ex = d.get("exact") or {}
            if all(n in ex for n in names) and any(ex[n] > worst[c] for c, n in enumerate(names)):
                known_bad.append(j)
    budget = settings["max_limiting_db"] if "max_limiting_db" in settings else Master().max_limiting_db  # older runs
    squashed = [i for i in verify.squashed_members(front, k, budget) if i not in known_bad]
    known_bad += squashed[: max(0, len(front) - len(known_bad) - k)]
    carriers = settings.get("low_end_carriers")  # the run's, by name (a run of an older evomix: none saved)
    carriers = ([session.names.index(n) for n in carriers if n in session.names] if carriers is not None
                else [] if quick else list(verify.low_end_carriers(analysis)))
    errors = [i for i in verify.unusable_members(front, carriers, session.names) if i not in known_bad]
    if len(errors) < len(front) - len(known_bad):  # as evomix mix: errors are never picked, unless all are
        known_bad += errors
    with reporter.phase("render", total=min(k, len(front)), unit="exact renders") as ph:
        picks, replaced = verify.verified_alternatives(front, G, F, k, session, analysis, params, target, names,
                                                       phase=ph, weights=tuple(wv), descriptors=D,
                                                       known_bad=known_bad)
    warnings = list(session.warnings) + verify.label_front(front, picks, k, session.roles)
    for i, n in verify.beyond_front(front, picks, names):  # as api.mix reports them
        warnings.append(f"alt-{picks.index(i) + 1:02d}: its exact render scores {n} {front[i].exact[n]:.3g}, "
                        f"worse than every front member's fast score "
                        f"(the fast tier misjudged it; no better replacement was found)")
    _read_reused(front, picks, reused)
    settings.update({"alternatives": k, "ranked_from": str(source), "rank_used_saved_scores": quick,
                     "reused_renders": len(reused), "replaced_alternatives": len(replaced),
                     "exact_renders": sum(m.exact is not None for m in front), "rank_scored": len(G)})
    settings.setdefault("evaluations", len(G))
    return MixResult(session, target, profile.name, names, {n: w[n] for n in names}, front,
                         [front[i] for i in picks], None, settings, warnings, front_d.get("reference"),
                         before_from=Path(source))  # the same stems and target: the run's before.wav fits


def write_ranked(result: MixResult, out: str | Path, *, in_place: bool,
                 reporter: ProgressReporter | None = None) -> list[Path]:
    """Write a re-ranked result; ``in_place`` (``out`` is the run's own folder) replaces its
    alt-NN files and front.json and removes alternatives beyond the new count."""
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
