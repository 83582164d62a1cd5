"""Fast tier vs exact tier: does the band-domain engine rank candidates like the real render?

For random populations (the search's own seeding distribution and uniform genomes) and for the
members of a searched front, every objective is computed on the fast tier (the whole population
at once) and on the exact render of each candidate (sample-accurate, then measured on the same
grid). Prints, per objective, the Spearman rank correlation between the tiers, and the absolute
error of the fast tier's integrated loudness (before normalisation, LU), and whether the exported
alternatives' exact scores lie within the spread of the front's fast scores (``evomix.mix`` replaces
a pick whose exact render falls outside it; the number replaced is the fast tier's misjudgement count).

Usage: python experiments/fidelity.py [--stems DIR] [--n 48] [--seed 0] [--genre pop] [--space | --dry]
(default stems: the synthesized demo song). The candidates come from the parameter space a run
searches by default (``evomix.search.constraints.default_constraints``: the reverb bus with each
role's send range and the genre's decay range, the low end centred); ``--space`` opens the reverb
bus wider (every send over its full range, -40 = off, every return setting over its full range);
``--dry`` is the search without the bus (every send off). ``--unmask`` adds dynamic unmasking
(issue 22, item 2) with its default ranges (``evomix.search.constraints.unmask_defaults``: each keyed
stem's cut from off to 9 dB around its role's band, Q and times over their full ranges; the keys by
role, ``evomix.search.keys``), to either.
``--song realsize`` / ``--song sectioned``
take the real-size session (16 stems x 210 s, ``evomix.testing.songs.cached_session``) or the same
with sections 10-20 LU apart (``sectioned=True``: quiet verse, loud chorus, a breakdown) instead of
``--stems``. A song past ``engine.segments.SEGMENT_BOUND_S`` is scored on its representative
segments; the same candidates are then also scored on every frame (``segments=None``), against the
same exact renders, and reported as ``full_frames`` (``--no-segments`` scores every frame only).
The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from evomix.engine.analysis import analyze_session
from evomix.engine.batch import render_features
from evomix.engine.render import features_from_render, render_exact
from evomix.engine.segments import SEGMENT_BOUND_S
from evomix.io.audio import expand_paths, load_session
from evomix.search.constraints import Constraints, default_constraints
from evomix.search.genome import GeneTable
from evomix.settings import Search
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile


def tiers(session, analysis, params, target, threads=1):
    """(fast F (n, m), exact F (n, m), fast raw LUFS (n,), exact raw LUFS (n,), in-pass exact F (n, m)).

    The exact scores are measured on each stem's finished contribution (``keep_stems``); the
    in-pass scores are those ``evomix mix`` computes (stem band powers measured in the render's
    one pass, the master gain applied per frame), from the same render.
    """
    fast = render_features(analysis, params, target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)
    F_fast = evaluate(fast, target, OBJECTIVE_NAMES)
    F_exact, raw_exact, F_pass = [], [], []
    for i in range(params.n_pop):
        r = render_exact(session, session.is_mono, session.sr, params, index=i, grid=analysis.grid, keep_stems=True,
                         target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp, threads=threads)
        F_pass.append(evaluate(features_from_render(r, analysis.grid, analysis.roles), target, OBJECTIVE_NAMES)[0])
        finished = dataclasses.replace(r, stem_power=None)
        F_exact.append(evaluate(features_from_render(finished, analysis.grid, analysis.roles), target,
                                OBJECTIVE_NAMES)[0])
        raw_exact.append(r.raw_loudness_lufs)
        del r, finished
    return F_fast, np.array(F_exact), fast.raw_loudness_lufs, np.array(raw_exact), np.array(F_pass)


def space_table(table: GeneTable) -> GeneTable:
    """``table`` with the reverb bus open: every stem's send over its full range and the return's
    four settings over theirs (``evomix.search.genome.REVERB_*_GENES``)."""
    from evomix.search.genome import REVERB_MASTER_GENES, REVERB_STEM_GENES

    for g in REVERB_STEM_GENES + REVERB_MASTER_GENES:
        table = table.with_gene(g.name, g.low, g.high)
    return table


def agreement(F_fast, F_exact) -> dict:
    return {n: round(float(spearmanr(F_fast[:, j], F_exact[:, j]).statistic), 3) for j, n in enumerate(OBJECTIVE_NAMES)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stems", type=Path, default=None)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--genre", default="pop")
    ap.add_argument("--threads", type=int, default=None, help="threads per exact render (default: all cores)")
    ap.add_argument("--no-front", action="store_true", help="skip the searched front (random populations only)")
    ap.add_argument("--space", action="store_true", help="open the reverb bus: every send and the return's settings")
    ap.add_argument("--dry", action="store_true", help="no reverb bus (every send off): the search before issue 22")
    ap.add_argument("--unmask", action="store_true", help="dynamic unmasking open with its default ranges")
    ap.add_argument("--song", choices=("realsize", "sectioned"), default=None,
                    help="the real-size session, or the same with sections 10-20 LU apart (instead of --stems)")
    ap.add_argument("--no-segments", action="store_true", help="score every frame, whatever the song's length")
    args = ap.parse_args()
    from evomix.core.runtime import available_cores

    threads = args.threads or available_cores()
    if args.song is not None:
        from evomix.testing.songs import cached_session, session_files

        folder, _ = cached_session(16, 210.0, seed=1234, sectioned=args.song == "sectioned")
        paths = session_files(folder)
    elif args.stems is None:
        from evomix.demo import write_demo_stems

        paths = write_demo_stems(Path(tempfile.mkdtemp()) / "demo")
    else:
        paths = expand_paths([args.stems])
    session = load_session(paths)
    analysis = analyze_session(session, segment_bound_s=None if args.no_segments else SEGMENT_BOUND_S)
    full = dataclasses.replace(analysis, segments=None) if analysis.segments is not None else None
    profile = load_profile(args.genre)
    table = GeneTable(session.n_stems)
    if args.space:
        table = space_table(table)
    elif not args.dry:
        table = default_constraints(profile, session.names, session.roles, space=True).apply(table, session.names)
    if args.unmask:
        from evomix.search.constraints import unmask_defaults
        from evomix.search.keys import key_map, resolve_keys

        key_index = resolve_keys(session.names, session.roles)
        table = unmask_defaults(session.names, session.roles, key_index >= 0).apply(table, session.names)
        table = table.with_keys(key_map(analysis, key_index))
    target = Target(profile, -14.0, -1.0, space=table.has_open_sends)
    rng = np.random.default_rng(args.seed)
    space = "full" if args.space else "dry" if args.dry else "default"
    out = {"stems": [str(p) for p in paths], "n": args.n, "space": space, "unmask": bool(args.unmask),
           "keyed_stems": int(table.has_unmask and (table.keys.key_index >= 0).sum()),
           "segments": None if analysis.segments is None else {
               "windows": analysis.segments.segments.tolist(),
               "weights": [round(float(w), 1) for w in analysis.segments.segment_weight],
               "fast_frames": analysis.segments.n_frames, "song_frames": analysis.n_frames}}
    t0 = time.perf_counter()
    for label, genomes in (("seeded", table.initial_population(args.n, rng)),
                           ("uniform", rng.uniform(size=(args.n, table.n_genes)))):
        params = table.decode(genomes, analysis.trim_db)
        Ff, Fe, lf, le, Fp = tiers(session, analysis, params, target, threads)
        err = np.abs(lf - le)
        rel = np.abs(Fp - Fe) / np.maximum(np.abs(Fe), 1e-9)  # in-pass vs finished stems, relative
        out[label] = {"spearman": agreement(Ff, Fe),
                      "loudness_abs_error_lu": {"mean": round(float(err.mean()), 3), "max": round(float(err.max()), 3)},
                      "in_pass_vs_finished": {"spearman": agreement(Fp, Fe),
                                              "rel_error_median": {n: round(float(np.median(rel[:, j])), 4)
                                                                   for j, n in enumerate(OBJECTIVE_NAMES)},
                                              "rel_error_max": {n: round(float(rel[:, j].max()), 4)
                                                                for j, n in enumerate(OBJECTIVE_NAMES)}}}
        print(f"{label:8s} Spearman " + "  ".join(f"{k} {v:.3f}" for k, v in out[label]["spearman"].items())
              + f"   |loudness error| mean {err.mean():.3f} max {err.max():.3f} LU")
        if full is not None:  # the same candidates on every frame, against the same exact renders
            ff = render_features(full, params, target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)
            e_full = np.abs(ff.raw_loudness_lufs - le)
            out[label]["full_frames"] = {"spearman": agreement(evaluate(ff, target, OBJECTIVE_NAMES), Fe),
                                         "loudness_abs_error_lu": {"mean": round(float(e_full.mean()), 3),
                                                                   "max": round(float(e_full.max()), 3)}}
            print(f"{'':8s} every frame: Spearman "
                  + "  ".join(f"{k} {v:.3f}" for k, v in out[label]["full_frames"]["spearman"].items())
                  + f"   |loudness error| mean {e_full.mean():.3f} max {e_full.max():.3f} LU")
        print(f"{'':8s} in-pass vs finished-stem exact scores: Spearman "
              + "  ".join(f"{k} {v:.3f}" for k, v in out[label]["in_pass_vs_finished"]["spearman"].items())
              + "   max relative error "
              + "  ".join(f"{k} {v:.3f}" for k, v in out[label]["in_pass_vs_finished"]["rel_error_max"].items()))
    if args.no_front:
        out["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(out))
        return

    # a searched front: do the exported members' exact scores lie within the front's spread?
    import evomix

    # a run with the bus (naming a send opens it with the defaults) or, with --dry, without it
    bus = (Constraints.parse(["*.reverb_send_db=off"]) if args.dry
           else Constraints.parse(ranges=["*.reverb_send_db=-40:0"]))
    if args.unmask:  # naming a cut's gene opens the cuts with their defaults (evomix.search.constraints.names_the_cuts)
        bus = Constraints(bus.entries + Constraints.parse(ranges=["*.unmask_q=0.5:4"]).entries)
    res = evomix.mix(paths, genre=args.genre, search=Search(population=32, generations=20, seed=args.seed),
                     session=session, constraints=bus)
    F = np.array([[m.objectives[n] for n in OBJECTIVE_NAMES] for m in res.front])
    lo, hi = F.min(axis=0), F.max(axis=0)
    fast_alt = np.array([[a.objectives[n] for n in OBJECTIVE_NAMES] for a in res.alternatives])
    exact_alt = np.array([[a.exact[n] for n in OBJECTIVE_NAMES] for a in res.alternatives])
    # outside the spread = how far (in units of the front's range) an exact score lies beyond it;
    # a score below the front's best is better than anything the fast tier promised, so only
    # scores worse than the front's worst count against the fast tier ("misleading")
    rng_ = np.where(hi > lo, hi - lo, 1.0)
    below = np.maximum(lo - exact_alt, 0.0) / rng_
    above = np.maximum(exact_alt - hi, 0.0) / rng_
    inside = [bool(np.all(above[i] <= 1e-9)) for i in range(len(res.alternatives))]
    out["front"] = {"size": len(res.front), "alternatives_not_worse_than_front": inside,
                    "replaced_alternatives": res.settings["replaced_alternatives"],
                    "beyond_best_fraction_of_range": {n: round(float(below[:, j].max()), 3)
                                                      for j, n in enumerate(OBJECTIVE_NAMES)},
                    "beyond_worst_fraction_of_range": {n: round(float(above[:, j].max()), 3)
                                                       for j, n in enumerate(OBJECTIVE_NAMES)},
                    "alternatives_abs_error": {n: round(float(np.abs(fast_alt[:, j] - exact_alt[:, j]).max()), 3)
                                               for j, n in enumerate(OBJECTIVE_NAMES)},
                    "front_spread": {n: [round(float(lo[j]), 3), round(float(hi[j]), 3)]
                                     for j, n in enumerate(OBJECTIVE_NAMES)}}
    print(f"front of {len(res.front)}: exported alternatives' exact scores no worse than the front's worst: {inside}"
          f" ({res.settings['replaced_alternatives']} pick(s) replaced after their exact render)")
    print("  largest excursion beyond the front's best (fraction of its range): "
          + "  ".join(f"{k} {v:.3f}" for k, v in out['front']['beyond_best_fraction_of_range'].items()))
    print("max |fast - exact| on exported alternatives: "
          + "  ".join(f"{k} {v:.3f}" for k, v in out['front']['alternatives_abs_error'].items()))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
