"""Exact verification of the chosen alternatives: render each one, score it exactly, and replace a
pick the fast tier misjudged or one that sounds like an earlier pick; then label them."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evomix.choose.describe import DISTINCT_JND, describe, distinct_rule, fast_descriptors, jnd_distance, jnd_matrix
from evomix.choose.describe import row as descriptor_row
from evomix.choose.select import choose_alternatives, label_alternatives
from evomix.core.runtime import available_cores
from evomix.engine.analysis import Analysis
from evomix.engine.render import ExactRender, features_from_render, finish_master, mix_strips
from evomix.io.spill import SpilledArray
from evomix.output.report_data import before_strips, features_summary
from evomix.output.report_data import finish_before as finish_before_master
from evomix.progress import NULL_PHASE, Phase
from evomix.search.genome import GeneTable, Params, within_a_step
from objectives import Target, evaluate


def exact_scores(render: ExactRender, analysis: Analysis, target: Target, names) -> tuple[dict, dict]:
    """Objective scores of an exact render, and its measured loudness (LUFS), LRA (LU), true peak (dBTP)."""
    feats = features_from_render(render, analysis.grid, analysis.roles)
    F = evaluate(feats, target, tuple(names))[0]
    measured = {"integrated_lufs": float(feats.loudness_lufs[0]), "loudness_range_lu": float(feats.lra_lu[0]),
                "true_peak_dbtp": float(feats.true_peak_dbtp[0]), "descriptors": descriptor_row(describe(feats)),
                "report": features_summary(feats)}  # spectrum and masking for the listening report
    return {n: float(v) for n, v in zip(names, F)}, measured


def finish_one(strips, analysis, target, names, keep_master_gain: bool = False):
    """The master chain and the exact scores of one candidate's summed strips. Keeps only the
    master, as float32 (what the 24-bit file is written from) in a temporary file until the export
    (``evomix.io.spill``: a run's finished masters do not pile up in memory), and with ``keep_master_gain`` the
    master chain's gain (the processed stems' export needs it, ``evomix.output.export.stems``; limiter
    gain as float32, 4 bytes per sample): the per-stem band powers were needed for the scores alone."""
    r = finish_master(strips, target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp,
                      threads=available_cores(), keep_master_gain=keep_master_gain)
    scores = exact_scores(r, analysis, target, names)
    gain = r.master_gain.compact() if r.master_gain is not None else None
    return (dataclasses.replace(r, mix=SpilledArray(r.mix, np.float32), stem_power=None, master_gain=gain),) + scores


REPLACEMENT_ROUNDS = 2  # rounds of exact renders spent replacing alternatives the fast tier misjudged


def beyond_front(front: list, picks, names) -> list:
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


def squashed_members(front: list, k: int, budget_db: float | None) -> list:
    """Front members whose fast-tier limiter gain reduction exceeds ``budget_db`` (the run's
    ``max_limiting_db``; most squashed first), leaving at least ``k`` others to choose from: never
    exported (``known_bad`` of :func:`verified_alternatives`). The search keeps them out of its
    front already (:class:`evomix.search.problem.Problem`); this holds for a re-ranked front of a run
    made without the budget. Members without the descriptor (a front.json of an older evomix) are
    never counted; ``budget_db`` None: none."""
    if budget_db is None:
        return []
    gr = [float((m.fast_descriptors or {}).get("limiter_gr_db") or 0.0) for m in front]
    over = sorted((i for i, g in enumerate(gr) if g > budget_db), key=lambda i: -gr[i])
    return over[: max(0, len(front) - k)]


LOW_END_HZ = 120.0  # the low end that stays centred (De Man & Reiss 2013: low end mono)
LOW_END_CARRIER_SHARE = 0.3  # a stem with this share of the session's low end carries the song: a choice
CARRIER_MAX_PAN = 0.2  # how far a stem that carries the low end may be panned (issue 21's bound)
BURIED_LEAD_LU = -12.0  # a lead vocal (or lead) further under the mix than this is buried: a choice


def low_end_carriers(analysis: Analysis) -> np.ndarray:
    """Indices of the stems that carry the song's low end: each holding at least
    ``LOW_END_CARRIER_SHARE`` of the unity-gain sum's energy under ``LOW_END_HZ`` (a kick, a bass,
    or a stereo bed with drums and bass in it)."""
    low = analysis.grid.centres_hz < LOW_END_HZ  # (B,)
    energy = analysis.band_power[:, :, low, :].astype(np.float64).sum(axis=(1, 2, 3))  # (stems,)
    total = energy.sum()
    return np.flatnonzero(energy >= LOW_END_CARRIER_SHARE * total) if total > 0 else np.zeros(0, int)


# a two-stem session's lead re its bed, LU: issue 21's bounds [-12, +3] less 0.5 LU on each side for
# the fast tier's reading (its stem levels agree with the exact render's within about 0.5 LU)
LEAD_OVER_BED_LU = (-11.5, 2.5)


def unusable_members(front: list, carrier_idx, names, levels: np.ndarray | None = None) -> list:
    """Front members that are errors, not alternatives (issue 21): a stem that carries the low end
    (``carrier_idx``, :func:`low_end_carriers`) panned beyond ``CARRIER_MAX_PAN`` (the song's foundation pulled to one
    side: it wins masking by moving the bed out of the lead's way), or the lead buried more than
    ``BURIED_LEAD_LU`` under the mix (fast-tier ``vocal_lu``). In a two-stem session whose one stem
    carries the low end (a bed: an instrumental with a vocal or a lead over it) the other is the
    lead, whatever its name: with ``levels`` (n, 2) each stem's fast-tier level re the mix, dB, it
    must sit within ``LEAD_OVER_BED_LU`` of the bed. They stay in the front (the search's record)
    and are never picked (``known_bad`` of :func:`verified_alternatives`)."""
    carrier_idx = [int(s) for s in carrier_idx]
    carriers = [names[s] for s in carrier_idx]
    bed = carrier_idx[0] if len(names) == 2 and len(carrier_idx) == 1 and levels is not None else None
    bad = []
    for i, m in enumerate(front):
        pans = [abs(float(m.params["stems"][n]["pan"])) for n in carriers]
        lead = (m.fast_descriptors or {}).get("vocal_lu")
        over_bed = None if bed is None else float(levels[i, 1 - bed] - levels[i, bed])
        if (any(p > CARRIER_MAX_PAN for p in pans) or (lead is not None and float(lead) < BURIED_LEAD_LU)
                or (over_bed is not None and not LEAD_OVER_BED_LU[0] <= over_bed <= LEAD_OVER_BED_LU[1])):
            bad.append(i)
    return bad


def label_front(front: list, picks: list, k: int, roles, errors: int = 0) -> list:
    """Label the exported members relative to each other (``select.label_alternatives``); returns a
    warning when fewer than ``k`` distinct mixes could be exported (``errors``: front members kept
    out of the picks as errors, not alternatives, which the warning names when they are the reason)."""
    rows = [front[i].measured["descriptors"] for i in picks if front[i].measured and "descriptors" in front[i].measured]
    if len(rows) == len(picks):
        lead = "vocal" if "vocal" in roles else "lead"
        for i, labels in zip(picks, label_alternatives(rows, lead_role=lead)):
            front[i].labels = labels
    if len(picks) < k and len(front) - errors < k <= len(front):
        return [f"only {len(front) - errors} of the front's {len(front)} members are alternatives (the others are "
                f"errors, not options: a part buried, pushed or panned far from the genre's balance, or squashed past "
                f"the limiting budget); exported {len(picks)} of {k} (a longer search, or fewer locks, finds more)"]
    if len(picks) < k and len(front) >= k:
        return [f"only {len(picks)} of the front's {len(front)} members sound distinct ({distinct_rule()}); "
                f"exported {len(picks)} of {k} alternatives rather than near-duplicates"]
    return []


def duplicates(front, rendered) -> set:
    """Rendered members whose exact descriptors are within ``describe.DISTINCT_JND`` of an earlier
    rendered, non-duplicate one (in ``rendered`` order)."""
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


def _params_of(params) -> Callable:
    """``params`` (Params of the front, or a callable front index -> Params of one) as the callable."""
    return params if callable(params) else params.member


def same_labels_and_settings(front, picks, params, roles) -> set:
    """Picks that are near-duplicates of an earlier pick by what a musician reads and sets: the same
    labels (``select.label_alternatives`` of the picks, exact descriptors) and every setting within a
    step of the other's (``genome.within_a_step``). Two such mixes are one option twice (issue 21),
    even when one listener descriptor differs by a JND. ``params``: the front's Params, or a callable
    front index -> Params of that member."""
    rows = [front[i].measured["descriptors"] for i in picks if front[i].measured and "descriptors" in front[i].measured]
    if len(rows) != len(picks) or len(picks) < 2 or params is None:
        return set()
    of = _params_of(params)
    labels = label_alternatives(rows, lead_role="vocal" if "vocal" in roles else "lead")
    same: set = set()
    for b in range(1, len(picks)):
        for a in range(b):
            if picks[a] in same or labels[a] != labels[b]:
                continue
            pa, pb = of(picks[a]), of(picks[b])
            pair = Params(**{f: np.concatenate([np.asarray(getattr(pa, f)), np.asarray(getattr(pb, f))])
                             for f in pa.__dict__})
            if within_a_step(pair, 0, 1):
                same.add(picks[b])
                break
    return same


def verified_alternatives(front, G, F, k, session, analysis, params, target, names,
                           phase: Phase = NULL_PHASE, weights=None, descriptors=None,
                           known_bad=(), keep_master_gain: bool = False,
                           before_slot: list | None = None, *, renders: Callable | None = None,
                           on_final: Callable[[int, int], None] | None = None, roles=None,
                           parents: np.ndarray | None = None, space_range: tuple | None = None) -> tuple[list, list]:
    """Choose ``k`` alternatives (``select.choose_alternatives``), render each exactly, and replace
    any whose exact scores fall outside the front's spread (:func:`beyond_front`) or whose exact
    listener descriptors are within ``describe.DISTINCT_JND`` of an earlier pick (:func:`duplicates`)
    or that has an earlier pick's labels and settings (:func:`same_labels_and_settings`).

    ``weights`` (n_obj,) rank the candidates; ``descriptors`` (n, d) are the fast-tier descriptors
    in JND units (:func:`describe_front`) in which the picks are spread. A misjudged pick is
    replaced by new choices in up to ``REPLACEMENT_ROUNDS`` more rounds (and one more round each
    time duplicates were found). A near-duplicate is never exported: with too few distinct members
    fewer than ``k`` come back. ``known_bad``: members never chosen (errors, squashed, or known to
    be misjudged). A member that comes with exact scores (``exact`` set: ``evomix.tools.rank``'s
    saved ones) is not rendered. Sets ``render``, ``exact`` and ``measured`` on every member
    rendered; only the exported members keep their audio; ``phase`` counts the renders.

    Each member's verdict depends on itself and the members verified before it, so the picks only
    grow at their end: ``on_final(front index, position)`` is called for each the moment it is
    final. ``renders(indices)``: an iterator of ``(index, render, exact, measured)`` in that order
    (default: :func:`render_alternatives`, a round at a time); ``evomix.tools.rank`` streams them.
    ``params``: the front's Params (or a callable front index -> Params of one); ``roles``
    (default the analysis'): for the labels. ``parents`` (n,): -1 for a front member, else the member
    a candidate copies (``choose.space``; ``select.choose_alternatives``); ``space_range``: the
    genre's space range in JND units, where the driest and wettest picks are taken. Returns (exported
    indices, rejected misjudged indices).
    """
    k = min(k, len(front))
    roles = tuple(getattr(analysis, "roles", ()) if roles is None else roles)
    if renders is None:
        def renders(new):
            out = render_alternatives(session, analysis, params, new, target, names, phase=phase,
                                      keep_master_gain=keep_master_gain, before_slot=before_slot)
            return ((i, *res) for i, res in zip(new, out))
    rendered: list = []
    picks: list = []
    bad: set = set()
    dup: set = set()  # rendered, and sounding the same as an earlier pick (or its twin): never exported
    twins: set = set()  # rendered, with an earlier pick's labels and settings: never exported

    def settle() -> None:  # after each verdict: the picks so far, and those that became final
        nonlocal bad, dup
        bad = {i for i, _ in beyond_front(front, rendered, names)}
        dup = duplicates(front, [i for i in rendered if i not in bad] + [i for i in rendered if i in bad]) | twins
        for i in rendered:
            if len(picks) >= k:
                break
            if i in picks or i in bad or i in dup:
                continue
            if i in same_labels_and_settings(front, picks + [i], params, roles):  # one option twice: it goes
                twins.add(i)
                dup.add(i)
                continue
            picks.append(i)
            if on_final is not None:
                on_final(i, len(picks) - 1)

    rounds, limit = 0, REPLACEMENT_ROUNDS + 1
    while rounds < limit:
        rounds += 1
        todo = choose_alternatives(G, F, k, weights, keep=picks, exclude=sorted(bad | dup | set(known_bad)),
                                   descriptors=descriptors, parents=parents,
                                   space_range=space_range)[len(picks):]
        if not todo:  # nothing left to try
            break
        phase.update(total=len(rendered) + len(todo))
        n_dup = len(dup)
        results = iter(renders([i for i in todo if front[i].exact is None]))
        for i in todo:
            if front[i].exact is None:
                j, r, exact, measured = next(results)
                front[j].render, front[j].exact, front[j].measured = r, exact, measured
            rendered.append(i)
            settle()
        if len(dup) > n_dup:
            limit += 1  # a round spent on duplicates does not count against the misjudged ones
        if len(picks) >= k:
            break
    rejected = [i for i in rendered if i in bad and i not in dup]
    for i in list(rejected):  # still short: take misjudged ones back rather than export fewer (never a duplicate)
        if len(picks) >= k:
            break
        picks.append(i)
        rejected.remove(i)
        if on_final is not None:
            on_final(i, len(picks) - 1)
    for i in rendered:  # set aside for good: keep the scores, not the audio
        if i not in picks:
            front[i].render = None
    return picks, rejected


def finish_before(strips, analysis, target):
    """The master chain of the equal-gain sum ("before") and its summary for the listening report."""
    return finish_before_master(strips, analysis.grid, analysis.roles, target_lufs=target.target_lufs,
                         ceiling_dbtp=target.ceiling_dbtp, threads=available_cores())


def render_alternatives(session, analysis, params, picks, target, names, phase: Phase = NULL_PHASE,
                         keep_master_gain: bool = False, before_slot: list | None = None) -> list:
    """Exact renders (and exact scores) of the chosen members, as a two-stage pipeline: the strips
    of candidate k+1 (``mix_strips``, on every core) run while the master chain and scores of
    candidate k (``finish_master``, ``exact_scores``) finish on one more thread, so the cores the
    mostly serial master chain leaves idle are used. At most one master is in flight (one
    candidate's strips and one's master in memory); the session's audio is shared, never copied;
    each render's result is the same as alone. ``phase`` advances once per finished render;
    ``keep_master_gain``: as for :func:`finish_one`. With an empty list ``before_slot``, the
    listening report's "before" (the equal-gain sum, ``evomix.output.report_data``) joins the pipeline
    first and its (render, summary) is appended to the list."""
    jobs = [(lambda i=i: mix_strips(session, session.is_mono, session.sr, params, index=i, grid=analysis.grid,
                                    threads=available_cores()),
             lambda strips: finish_one(strips, analysis, target, names, keep_master_gain)) for i in picks]
    with_before = before_slot is not None and not before_slot
    if with_before:  # first: its master and summary then run beside the first candidate's strips
        jobs.insert(0, (lambda: before_strips(session, analysis.grid, analysis=analysis),
                        lambda strips: finish_before(strips, analysis, target)))
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

