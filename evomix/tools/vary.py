"""``evomix vary``: mixes near a given one, or children of two given ones.

One parent (``vary A.json PATH...``): candidates are the parent's genome (in [0, 1]) perturbed by
DEAP's Gaussian mutation (``deap.tools.mutGaussian``, every gene, standard deviation
``SIGMA_PER_SPREAD * spread`` genome units, clipped to [0, 1]); ``spread`` in (0, 1] sets how far
(0.3: sigma 0.1, i.e. a fader moves by about 3.6 dB and a pan by 0.2 on average).

Two parents (``vary A.json B.json PATH...``): children by DEAP's blend crossover
(``deap.tools.cxBlend`` with alpha = 0: each gene drawn uniformly between the parents' values,
after Eshelman & Schaffer, "Real-coded genetic algorithms and interval-schemata", FOGA 2, 1993)
followed by the same Gaussian mutation at a quarter of the one-parent sigma, so the children stay
between the parents.

Every candidate is rendered exactly at the loudness target and true-peak ceiling (the parent's,
unless overridden), scored and described (:mod:`evomix.choose.describe`). A candidate is kept only if it
sounds distinct (``describe.DISTINCT_JND``) from the parent(s) and from every variation kept
before it: first on fast-tier descriptors (cheap, on ``CANDIDATES_PER_MIX`` x N candidates), then
on the exact ones. The variations are ordered by their distance from the input in genome space
(RMS gene change, genome units; for two parents, the distance to the nearer parent). Labels are
relative to the other variations (``select.label_alternatives``); ``settings["labels_vs_input"]``
gives each one's labels against the (first) input (``select.label_against``).

Locks and ranges (:mod:`evomix.search.constraints`) hold in every candidate, as in ``mix``: they edit
the gene table, so a locked parameter decodes to exactly its value. By default a variation keeps
the constraints its parent was made with (the ``constraints`` of ``alt-NN.json``; for a file
without one, ``settings.constraints`` of the ``front.json`` beside it if that run exported this very
file). Explicit ones (``constraints=``, ``--lock``/``--range``) are added and win per parameter: an
entry replaces the inherited one of the same name, and a ``*.PARAM`` entry every inherited
``STEM.PARAM`` one too (``--range vocal.gain_db=-24:12``, the full range, lifts an inherited lock).
Two parents: both files' constraints hold (one name in both: their intersection); two that no
value satisfies (different locks) are an error unless given explicitly. A dynamic cut (issue 22
item 2) keeps its key: the one the parent's params name (``stems.NAME.unmask_key``), else the
run's recorded ``--key`` or the stem's role (``pipeline.read_back_keys``); ``--key`` given here wins.
Its threshold follows from the key's loud level in the cut's band (``search.keys``), so a variation
with the parent's band has the parent's threshold; the keys used are recorded with the constraints.
A parent whose value lies outside a lock or range is moved into it (a warning lists the moves), and
that moved parent is the input the variations are compared with.

The parents are compared by the exact descriptors saved in their ``alt-NN.json`` when those
describe the mix this run would render (:func:`saved_descriptors`), else they are rendered first.
With ``out`` each variation is written the moment it is kept (numbered in that order): the first
file comes after one render when the first candidate rendered is kept.
"""
from __future__ import annotations

import array
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from deap import tools

from evomix import __version__, pipeline
from evomix.choose.describe import COMPARED, DISTINCT_JND, fast_descriptors, jnd_distance, jnd_matrix
from evomix.choose.describe import row as descriptor_row
from evomix.choose.select import label_against, label_alternatives
from evomix.choose.verify import render_alternatives
from evomix.engine.render import ExactRender
from evomix.errors import EvomixError, OptionError, ParameterError, check_number
from evomix.io.audio import read_audio, stem_names
from evomix.io.places import check_output_folder
from evomix.output.result import (
    Member,
    MixResult,
    load_params_file,
    params_file_dict,
    saved_master,
    saved_params,
    saved_rate,
)
from evomix.progress import NULL_REPORTER, ProgressReporter
from evomix.search.constraints import Constraints
from evomix.search.genome import (
    ALL_MASTER_GENES,
    ALL_STEM_GENES,
    MASTER_PARAM_PATHS,
    STEM_PARAM_PATHS,
    GeneTable,
    Params,
    format_value,
    shown,
)
from evomix.settings import Master
from evomix.tools.rank import AlternativeFiles, Written
from objectives import OBJECTIVE_NAMES, Target, load_profile, parse_weights

SIGMA_PER_SPREAD = 1.0 / 3.0
CHILD_SIGMA_FACTOR = 0.25
CANDIDATES_PER_MIX = 4
MAX_RENDERS_PER_MIX = 2  # exact renders spent per requested mix, at most


def genome_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS gene difference in genome units, (n, genes) x (genes,) -> (n,)."""
    return np.sqrt(((np.atleast_2d(a) - np.asarray(b)[None, :]) ** 2).mean(axis=-1))


def _mutate(g: np.ndarray, sigma: float, rnd: random.Random) -> np.ndarray:
    ind = array.array("d", g)
    tools.mutGaussian(ind, mu=0.0, sigma=sigma, indpb=1.0)  # DEAP draws from the global `random`
    return np.clip(np.asarray(ind), 0.0, 1.0)


def candidates(parents: Sequence[np.ndarray], n: int, spread: float, seed: int) -> np.ndarray:
    """``n`` candidate genomes (n, genes): mutants of one parent or children of two (module doc)."""
    state = random.getstate()
    random.seed(seed)  # DEAP's operators use the module-level generator
    try:
        sigma = SIGMA_PER_SPREAD * spread
        out = []
        if len(parents) == 1:
            for _ in range(n):
                out.append(_mutate(parents[0], sigma, random))
        else:
            while len(out) < n:
                a, b = array.array("d", parents[0]), array.array("d", parents[1])
                tools.cxBlend(a, b, alpha=0.0)
                for c in (a, b):
                    if len(out) < n:
                        out.append(_mutate(np.asarray(c), sigma * CHILD_SIGMA_FACTOR, random))
        return np.array(out).reshape(n, len(parents[0]))
    finally:
        random.setstate(state)


def parent_constraints(path: str | Path, d: dict) -> Constraints:
    """The constraints the saved mix ``d`` (read from ``path``) was made with: its ``constraints``;
    for a file without one (written before they were recorded there), the ``settings.constraints``
    of the ``front.json`` beside it if that run exported this very file (same name and params);
    else none."""
    if d.get("constraints") is not None:
        return Constraints.from_dict(d["constraints"], source=str(path))
    front_path = Path(path).with_name("front.json")
    if "name" not in d or "params" not in d or not front_path.is_file():
        return Constraints()
    try:
        front = load_params_file(front_path)
    except ParameterError:
        return Constraints()  # an unreadable neighbour is not this file's fault: nothing inherited
    members = front.get("members") if isinstance(front.get("members"), list) else []
    if not any(isinstance(m, dict) and m.get("alternative") == d["name"] and m.get("params") == d["params"]
               for m in members):
        return Constraints()
    return Constraints.from_dict((front.get("settings") or {}).get("constraints"), source=str(front_path))


def run_constraints(params_paths: Sequence[str | Path], files: Sequence[dict],
                    explicit: Constraints | None = None) -> Constraints:
    """The constraints of a ``vary`` run: each parent's (:func:`parent_constraints`), less those
    ``explicit`` replaces (``Constraints.without``), united (``Constraints.union``: both hold), then
    ``explicit`` added. Raises ParameterError when two parents' entries conflict (both files named)."""
    explicit = Constraints() if explicit is None else explicit
    parts = [(str(p), parent_constraints(p, d).without(explicit)) for p, d in zip(params_paths, files)]
    return Constraints.union(parts).overridden_by(explicit)


def saved_descriptors(d: dict, *, target: Target, sr: int, moved: bool) -> dict | None:
    """The exact listener descriptors saved in a parent's ``alt-NN.json`` (``d``), when they are
    those of the mix this run would render for it: written by this evomix, at this rate, loudness
    target and ceiling, and none of its values moved by the locks and ranges (``moved``). Else
    None: the parent is rendered. Spares a render before the first variation."""
    desc = d.get("descriptors")
    if moved or not isinstance(desc, dict) or any(k not in desc for k in COMPARED):
        return None
    same = [d.get("evomix_version") == __version__, d.get("sr") == sr]
    for key, value in (("target_lufs", target.target_lufs), ("ceiling_dbtp", target.ceiling_dbtp)):
        saved = d.get(key)
        same.append(isinstance(saved, (int, float)) and not isinstance(saved, bool)
                    and abs(float(saved) - float(value)) <= 1e-9)
    return dict(desc) if all(same) else None


def parent_before(path: str | Path, session, target: Target) -> tuple | None:
    """The listening report's "before" (the equal-gain sum of the stems) of the run that wrote the
    parent ``path``, as ``(render, summary)`` for :class:`MixResult`, when it is this one's: the
    ``front.json`` beside the parent names the same stem files, rate, loudness target and ceiling,
    and its ``before.wav`` and ``report-data.json`` are there. Else None (rendered again: one more
    render). The 24-bit file read back writes the same samples."""
    folder = Path(path).parent
    wav, data = folder / "before.wav", folder / "report-data.json"
    if not ((folder / "front.json").is_file() and wav.is_file() and data.is_file()):
        return None
    try:
        front, summary = load_params_file(folder / "front.json"), load_params_file(data).get("before")
        stems = front.get("stems") or {}
        same = (isinstance(stems, dict) and isinstance(summary, dict)
                and sorted(stems) == sorted(session.names) and front.get("sr") == session.sr
                and all(isinstance(stems[n], dict) and isinstance(stems[n].get("file"), str)
                        and Path(stems[n]["file"]).resolve() == Path(p).resolve()
                        for n, p in zip(session.names, session.paths))
                and front.get("target_lufs") == target.target_lufs and front.get("ceiling_dbtp") == target.ceiling_dbtp)
        if not same:
            return None
        x, sr = read_audio(wav, dtype="float32")
    except (EvomixError, OSError):  # unreadable: the report renders its own "before"
        return None
    if sr != session.sr or x.shape != (2, session.n_samples):
        return None
    return ExactRender(mix=x, stems=None, raw_loudness_lufs=float("nan"), normalise_db=0.0, limiter_gr_db=0.0), summary


# every gene, the reverb bus's too: a saved send that a table without the reverb genes turns off is reported
_GENE_NAMES = ([(g.name, STEM_PARAM_PATHS[g.name], g.unit, True) for g in ALL_STEM_GENES]
               + [(g.name, MASTER_PARAM_PATHS[g.name], g.unit, False) for g in ALL_MASTER_GENES])


def moved_by_constraints(saved: Params, table: GeneTable, trim_db: np.ndarray, names: Sequence[str]) -> list[str]:
    """``"vocal.gain_db -1.2 -> -3 dB (lock)"`` for each value of ``saved`` (one mix) that the
    table's locks and ranges move (beyond float rounding of the genome round trip)."""
    moved = table.decode(table.encode(saved), trim_db)
    out = []
    for gene, path, unit, per_stem in _GENE_NAMES:
        a, b = np.asarray(getattr(saved, gene))[0], np.asarray(getattr(moved, gene))[0]  # (stems,) or ()
        for s in range(len(names)) if per_stem else [None]:
            x, y = (float(a[s]), float(b[s])) if per_stem else (float(a), float(b))
            g = table.gene(gene, s)
            if abs(x - y) > 1e-9 * max(1.0, abs(x)):
                out.append(f"{'master' if s is None else names[s]}.{path} {x:.4g} -> {format_value(y)}"
                           + (f" {unit}" if unit else "") + (" (lock)" if g.low == g.high else " (range)"))
    return out


def vary(params_paths: Sequence[str | Path], paths: Sequence[str | Path], *, spread: float = 0.3, n: int = 8,
         seed: int = 0, genre: str | None = None, weights: str | None = None, target_lufs: float | None = None,
         ceiling_dbtp: float | None = None, constraints: Constraints | None = None,
         max_limiting_db: float | None = Master().max_limiting_db,
         reporter: ProgressReporter | None = None, out: str | Path | None = None, force: bool = False,
         on_written: Callable[[Written], None] | None = None, command=None) -> MixResult:
    """N mixes near one saved mix (one ``params_paths``) or children of two; see the module doc.

    Parameters
    ----------
    params_paths : one or two ``alt-NN.json`` files.
    paths : the stems they were made from.
    spread : float in (0, 1], how far from the parent(s), genome units (x ``SIGMA_PER_SPREAD``).
    n : int >= 1, variations to export.  seed : int >= 0.
    genre : profile for the scores (default: the first file's genre).
    weights : objectives to score and their weights (as ``mix``); scores are reported, not used
        to choose.
    target_lufs, ceiling_dbtp : default: the first file's.
    max_limiting_db : dB in [0, 40] or None, as for :func:`evomix.mix`: a candidate whose limiter
        must take more off its peaks (fast tier) than this, or than its most limited parent, is
        not rendered.
    constraints : :class:`evomix.search.constraints.Constraints`, added to the parents' saved ones and
        winning per parameter (module doc); every variation obeys the result (a lock exactly), and
        ``settings["constraints"]`` (so each ``alt-NN.json``) records it.
    out : a folder to write into as the variations come: each ``alt-NN.wav`` and ``.json`` the
        moment its render is kept (the first after one render, when the parents' saved
        descriptors hold: :func:`saved_descriptors`), then ``front.json`` and the report. A
        non-empty folder needs ``force``. None: nothing is written (``MixResult.write`` it).
    on_written : called with each :class:`evomix.tools.rank.Written` once its files are complete.
    command : the command line for ``run.json`` (with ``out``).

    Returns a :class:`evomix.output.result.MixResult` (``search`` None): ``alternatives`` are the variations,
    closest first; ``front`` all candidates rendered. Fewer than ``n`` come back (with a warning)
    when not enough distinct candidates were found.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    if len(params_paths) not in (1, 2):
        raise ParameterError(f"vary: give one or two params files (got {len(params_paths)})")
    check_number("spread", spread, low=1e-6, high=1.0)
    check_number("n", n, low=1, integer=True)
    check_number("seed", seed, low=0, integer=True)
    constraints = pipeline.check_constraints(constraints)
    files = [load_params_file(p) for p in params_paths]
    first = files[0]
    # every saved value checked, field by field, before any audio is read
    saved_d = [saved_params(d, str(p)) for p, d in zip(params_paths, files)]
    sr = saved_rate(first, str(params_paths[0]))
    run_c = run_constraints(params_paths, files, constraints)
    master = saved_master(first, str(params_paths[0]), target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
                          max_limiting_db=max_limiting_db)  # validated here, once: the same ranges as evomix.mix
    if genre is None and not isinstance(first.get("genre", "pop"), str):
        raise OptionError(lambda k: f"{params_paths[0]}: genre must be a genre name or profile file, got "
                                    f"{shown(first['genre'])} (pass {k('genre')})")
    try:
        profile = load_profile(genre if genre is not None else first.get("genre", "pop"))
    except ParameterError as e:
        why = str(e)
        raise OptionError(lambda k: f"{why} (pass {k('genre')})") from None
    w = parse_weights(weights, OBJECTIVE_NAMES)
    names = tuple(k for k in OBJECTIVE_NAMES if w[k] > 0)
    if not names:
        raise OptionError(pipeline.all_weights_off)
    given = stem_names(paths)
    for path, (_, names_saved) in zip(params_paths, saved_d):  # the stems it was made from, no more, no fewer
        pipeline.check_stems_match(names_saved, given, path)
    session = pipeline.load(paths, reporter, sr=sr)
    # the dynamic cuts' keys as the parents were made with them (their saved keys; a --key given now wins)
    run_c, key_index = pipeline.read_back_keys(session, run_c, [(str(path), p) for path, (p, _) in
                                                                zip(params_paths, saved_d)],
                                               explicit=[stem for stem, _ in constraints.keys])
    table = run_c.apply(GeneTable(session.n_stems), session.names)  # an unknown stem name: before the analysis
    analysis = pipeline.analyse(session, reporter, reverb=table.has_open_sends)
    table = pipeline.with_keys(table, analysis, key_index)  # a cut's key and threshold, as the parent's
    saved = [Params.from_dict(p, session.names, source=str(path)) for path, (p, _) in zip(params_paths, saved_d)]
    parents = [table.encode(p)[0] for p in saved]  # a locked gene encodes to 0.5, a value beyond a range to its end
    if out is not None:
        check_output_folder(Path(out), force=force, inputs=session.paths)  # never over an input stem
    warnings = list(session.warnings)
    moved_any = []
    for path, p in zip(params_paths, saved):
        moved = moved_by_constraints(p, table, analysis.trim_db, session.names)
        moved_any.append(bool(moved))
        if moved:
            warnings.append(f"{path}: the locks and ranges replace {len(moved)} of its values, in every variation: "
                            f"{', '.join(moved)}")
    target = Target(profile=profile, target_lufs=float(master.target_lufs), ceiling_dbtp=float(master.ceiling_dbtp),
                    space=table.has_open_sends)
    problem = pipeline.make_problem(analysis, table, target, names, w)

    pool = table.canonical(candidates(parents, CANDIDATES_PER_MIX * n, spread, seed))  # (m, genes); locked genes 0.5
    dist = np.min([genome_distance(pool, p) for p in parents], axis=0)  # (m,)
    order = np.argsort(dist, kind="stable")
    pool, dist = pool[order], dist[order]
    with reporter.phase("score", total=1, unit="fast batches", info=f"{len(pool)} candidates") as ph:
        raw = problem.raw_scores(pool)  # (m, n_obj)
        fd = fast_descriptors(analysis, table, np.concatenate([pool, np.stack(parents)]),
                              target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)
        ph.advance()
    Dfast = jnd_matrix(fd)  # (m + parents, d)
    all_g = np.concatenate([pool, np.stack(parents)])
    params = table.decode(all_g, analysis.trim_db)
    members = [Member(genome=all_g[i], params=params.to_dict(i, session.names, session.roles),
                          objectives={k: float(raw[i, j]) for j, k in enumerate(names)} if i < len(pool) else {},
                          fast_descriptors=descriptor_row(fd, i)) for i in range(len(all_g))]
    parent_idx = list(range(len(pool), len(all_g)))
    limiting = np.asarray(fd["limiter_gr_db"], dtype=float)  # (m + parents,) dB, fast tier
    allowed = None if max_limiting_db is None else max(float(max_limiting_db), float(limiting[parent_idx].max()))
    kept: list = []
    rendered: list = []
    budget = MAX_RENDERS_PER_MIX * n
    for i, d, moved in zip(parent_idx, files, moved_any):  # the parents' exact descriptors, as saved
        desc = saved_descriptors(d, target=target, sr=session.sr, moved=moved)
        if desc is not None:
            members[i].measured = {"descriptors": desc}
    parents_todo = [i for i in parent_idx if members[i].measured is None]
    writer = None if out is None else AlternativeFiles(
        out, sr=session.sr, json_of=lambda m, name: params_file_dict(m, name, sr=session.sr, genre=profile.name,
                                                                      target=target, constraints=run_c.to_dict()))
    with reporter.phase("render", total=len(parents_todo) + n, unit="exact renders") as ph:
        for i, (_, exact, measured) in zip(parents_todo, render_alternatives(session, analysis, params, parents_todo,
                                                                               target, names, phase=ph)):
            members[i].render, members[i].exact, members[i].measured = None, exact, measured
        exact_rows = [members[i].measured["descriptors"] for i in parent_idx]
        for i in range(len(pool)):
            if len(kept) >= n or len(rendered) - len(kept) >= budget - n:
                break
            if allowed is not None and limiting[i] > allowed:
                continue  # squashed: more limiting than the budget and the parents
            refs = parent_idx + kept
            if jnd_distance(Dfast[i], Dfast[refs]).min() < DISTINCT_JND:
                continue  # sounds like the parent or a kept variation even in the fast tier
            (r, exact, measured), = render_alternatives(session, analysis, params, [i], target, names, phase=ph)
            rendered.append(i)
            M = jnd_matrix(exact_rows + [measured["descriptors"]])
            if jnd_distance(M[-1], M[:-1]).min() < DISTINCT_JND:
                continue  # too close once rendered exactly
            members[i].render, members[i].exact, members[i].measured = r, exact, measured
            exact_rows.append(measured["descriptors"])
            kept.append(i)
            ph.update(total=len(parents_todo) + len(rendered) + max(0, n - len(kept)))
            if writer is not None:  # final: the variations are numbered in the order they are kept
                writer.rendered(members[i], len(kept))
                ph.update(info=f"alt-{len(kept):02d}.wav written")
                if on_written is not None:
                    on_written(Written(len(kept), Path(out) / f"alt-{len(kept):02d}.wav", None, members[i],
                                       len(rendered) + len(parents_todo)))
    if len(kept) < n:
        warnings.append(f"only {len(kept)} of {n} variations sound distinct from the input and each other at "
                        f"--spread {spread:g}; try a larger --spread")
    alts = [members[i] for i in kept]
    lead = "vocal" if "vocal" in session.roles else "lead"
    for m, labels in zip(alts, label_alternatives([m.measured["descriptors"] for m in alts], lead_role=lead)):
        m.labels = labels
    vs_input = [label_against(m.measured["descriptors"], members[parent_idx[0]].measured["descriptors"], lead_role=lead)
                for m in alts]  # each variation against the (first) input
    front = alts + [members[i] for i in rendered if i not in kept]
    settings = {"mode": "breed" if len(parents) == 2 else "vary", "parents": [str(p) for p in params_paths],
                "spread": float(spread), "n": int(n), "seed": int(seed), "alternatives": int(n),
                "evaluations": len(pool), "exact_renders": len(rendered) + len(parents_todo),
                "parents_rendered": len(parents_todo), "replaced_alternatives": 0,
                "genome_distance": [round(float(dist[i]), 5) for i in kept], "labels_vs_input": vs_input,
                "constraints": run_c.to_dict(), "max_limiting_db": max_limiting_db}
    result = MixResult(session, target, profile.name, names, {k: w[k] for k in names}, front, alts, None,
                       settings, warnings, None, before=parent_before(params_paths[0], session, target))
    if writer is not None:
        writer.finish(result, reporter=reporter, command=command)
    return result
