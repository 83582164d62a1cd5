"""Which rule should stop the search? Judged on what the musician takes away: the exported mixes.

For every song and seed ONE long search runs (``--generations`` for the study songs,
``--real-generations`` at real size): the search is deterministic per seed and does not depend on
when it stops (``tests/test_checkpoint.py``), so the state after generation g of the long run is
the state a rule stopping at g leaves. Every rule is checked every ``--every`` generations (so its
stop and 10x its stop are both on that grid); at each of those generations the archive is taken
as ``evomix mix`` takes it (``pipeline.front``) and the alternatives are chosen as
``pipeline.choose`` chooses them before any exact render (``with_space_copies`` ->
``choose.space.space_ladder``, ``describe_front``, the squashed and unusable members set aside,
``select.choose_alternatives`` with descriptors, parents and the genre's space range). **The
exact renders and their replacements are skipped** (they cost
seconds each at real size): the scores below are the fast tier's. Two measures of the export:

* (a) each objective of the **first-ranked alternative** (raw units: dB, LU, dB, dB);
* (b) the **weighted achievement** of the ``--alternatives`` exported ones: the mean over them of the
  augmented weighted Chebyshev achievement ``max_i w_i z_i + rho sum_i w_i z_i`` (Wierzbicki 1980,
  "The use of reference objectives in multiobjective optimization"; ``rho`` = ``algorithm.RHO``;
  ``w`` the ``--weights``, all 1 by default), with ``z = f / OBJECTIVE_SCALES``
  (``Normaliser.fixed``: masking 3 dB, loudness 3 LU, balance 40 dB, genre 12 dB; ideal 0): a
  normaliser fixed per song that does not move with the front. Lower is better.

A rule is judged by the improvement a 10x longer run would bring, ``100 (x_stop - x_10x) / x_stop``
(positive: the longer run is better), for (b) and for every objective of (a); for (a) the
improvement is also counted against the objective's fixed scale (``100 (a_stop - a_10x) / scale``),
since a relative change of an objective already near 0 (loudness 0.02 LU) says nothing a listener
hears. When 10x the stop lies past the long run, the comparison is against its last generation
(marked "≥": the long run's end, not 10x).

Candidate rules:

* ``hv w/t``: today's rule family -- the archive's hypervolume gained less than ``t`` (relative)
  over the last ``w`` generations (``Termination`` as it was);
* ``best w/t``: the best (lowest) weighted achievement in the archive (same fixed normaliser; cheap:
  one pass over the archive per generation, nothing rendered) improved by less than ``t`` (relative)
  over the last ``w`` generations;
* ``export w/t``: measure (b) itself improved by less than ``t`` over the last ``w`` generations, checked
  every ``--every`` generations (costs the choice's fast-tier evaluations, measured below as a fraction
  of a generation).

With ``--time-limit S`` every rule is also capped at the generation the run's own seconds per
generation reach S (by default no cap: the machine is shared, so read generation counts, not
seconds; the time cap ``DEFAULT_TIME_LIMIT_S`` of each run is printed as a generation).

Songs: the study songs of ``search_quality.py`` (``SONGS``: 6 stems x 12 s, pop / rock / edm) and
the real-size session (``--real``: 16 stems x 210 s at 44.1 kHz, ``experiments/bench_realsize.py``'s
cache), each prepared exactly as ``evomix mix`` prepares it (``pipeline``: default constraints, keys,
analysis, ``prepare`` with ``Search(seed=seed)``, population 64, default weights and master).

Usage: python experiments/stopping_rule.py [--seeds 2] [--generations 2000] [--every 10]
       [--real DIR] [--real-seeds 1] [--real-generations 1500] [--real-every 20] [--songs 3]
Human table first; saved to experiments/results/stopping_rule.txt; the last line printed is JSON.
The figures of record (README, Search) ran as two processes, ``--seeds 1 --generations 600 --every 20
--real '' --runs-out a.json`` and ``--only real-16x210s --real-generations 500 --runs-out b.json``,
then ``--merge a.json b.json --seeds 1 --generations 600 --real-generations 500 --every 20``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from evomix import pipeline
from evomix.choose.select import choose_alternatives
from evomix.choose.space import space_range_jnd
from evomix.choose.verify import describe_front, low_end_carriers, squashed_members, unusable_members
from evomix.io.audio import load_session
from evomix.search.algorithm import DEFAULT_TIME_LIMIT_S, RHO, Termination, run_search
from evomix.search.constraints import (
    SPACE_BY_DEFAULT,
    UNMASK_BY_DEFAULT,
    Constraints,
    default_constraints,
    unmask_defaults,
)
from evomix.search.hypervolume import OBJECTIVE_SCALES, Normaliser
from evomix.search.parallel import ParallelEvaluator
from evomix.search.problem import INFEASIBLE
from evomix.settings import Master, Search
from evomix.testing.songs import write_session
from objectives import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import SONGS  # noqa: E402

REAL = Path("/tmp/evomix-songs/16x210s-44100Hz-seed1234-v1-1b2f2de214")
HV_RULES = ((20, 0.005), (40, 0.005), (80, 0.005), (80, 0.002), (160, 0.002))
BEST_RULES = ((20, 0.01), (40, 0.01), (40, 0.005), (80, 0.01), (80, 0.005), (160, 0.005))
EXPORT_RULES = ((20, 0.02), (40, 0.02), (40, 0.01), (80, 0.02), (80, 0.01), (160, 0.01))  # windows: multiples of
# --every and --real-every
RESULTS = Path(__file__).resolve().parent / "results" / "stopping_rule.txt"


# --------------------------------------------------------------------------------------- preparation
def prepare_like_mix(session, genre: str, seed: int, population: int = 64):
    """The :class:`pipeline.Prepared` of ``evomix mix`` with default options (``run_mix`` up to ``prepare``)."""
    profile = load_profile(genre)
    w = pipeline.check_weights(None)
    master, search = Master(), Search(seed=seed, population=population)
    constraints = Constraints()
    key_index = pipeline.check_keys(session, constraints)
    defaults = default_constraints(profile, session.names, session.roles, space=SPACE_BY_DEFAULT)
    if UNMASK_BY_DEFAULT:  # as run_mix: the dynamic cuts only when they are a default
        defaults = Constraints(defaults.entries + unmask_defaults(session.names, session.roles,
                                                                  key_index >= 0).entries)
    constraints = defaults.overridden_by(constraints)
    table = pipeline.gene_table(session, constraints)
    analysis = pipeline.analyse(session, reverb=table.has_open_sends)
    table = pipeline.with_keys(table, analysis, key_index)
    return pipeline.prepare(session, analysis, table, profile=profile, w=w, master=master, search=search,
                            constraints=constraints)


def exported(prep, archive_G: np.ndarray, archive_F: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` alternatives ``evomix mix`` would choose from this archive, fast tier only (no exact
    render, no replacement): their raw scores (k, n_obj) and weighted scores (k, n_obj), first-ranked first."""
    master = Master()
    fr = pipeline.front(prep, SimpleNamespace(front_genomes=archive_G, front_F=archive_F), master)
    fr = pipeline.with_space_copies(prep, fr, k)
    members = fr.members
    D = describe_front(members, prep.analysis, prep.table, prep.target)
    bad = squashed_members(members, k, master.max_limiting_db)
    levels = pipeline.stem_levels(prep, fr.G) if prep.session.n_stems == 2 else None
    carriers = [int(s) for s in low_end_carriers(prep.analysis)]
    errors = [i for i in unusable_members(members, carriers, prep.session.names, levels) if i not in bad]
    if len(errors) < len(members) - len(bad):
        bad = sorted(set(bad) | set(errors))
    space = space_range_jnd(prep.target.profile) if prep.table.has_open_sends else None
    picks = choose_alternatives(fr.G, fr.F, k, np.asarray(prep.problem.weights), exclude=bad, descriptors=D,
                                parents=fr.parents, space_range=space)
    raw = np.array([[members[i].objectives[n] for n in prep.names] for i in picks])
    return raw, fr.F[picks]


def achievement_fixed(Fw: np.ndarray, names, weights) -> np.ndarray:
    """(n,) augmented weighted Chebyshev achievement (Wierzbicki 1980) of weighted scores Fw (n, n_obj)
    in the fixed normaliser (``Normaliser.fixed``: f / OBJECTIVE_SCALES; ideal 0)."""
    w = np.asarray(weights, dtype=float)
    Z = Normaliser.fixed(names)(np.asarray(Fw, dtype=float) / w[None, :])  # (n, n_obj) raw / scale
    WZ = Z * w[None, :]
    return WZ.max(axis=1) + RHO * WZ.sum(axis=1)


# -------------------------------------------------------------------------------------------- one run
def stop_on(curve: dict, window: int, tol: float, gens) -> int | None:
    """First generation g of ``gens`` (g >= window) with ``curve[g - window] - curve[g] <= tol * curve[g]``
    (a quantity to minimise); None: never within ``gens``."""
    for g in gens:
        if g >= window and (g - window) in curve and curve[g - window] - curve[g] <= tol * abs(curve[g]):
            return g
    return None


def long_run(prep, seed: int, generations: int, every: int, k: int, label: str) -> dict:
    """One search of ``generations`` generations; the hypervolume and the archive's best achievement recorded
    every generation, the export measured every ``every`` generations."""
    names, weights = prep.names, prep.problem.weights
    hv: list = []
    best: dict = {}  # gen -> lowest achievement in the archive
    measured: dict = {}  # gen -> {"first": raw (n_obj,), "b": float}
    cost = {"export_s": 0.0, "n_export": 0, "cb_s": 0.0}

    def measure(state) -> None:
        t0 = time.perf_counter()
        raw, Fw = exported(prep, state.archive_G, state.archive_F, k)
        b = float(achievement_fixed(Fw, names, weights).mean()) if len(Fw) else float("inf")
        measured[state.gen] = {"first": raw[0].tolist(), "b": b, "n": len(Fw), "front": len(state.archive_F)}
        cost["export_s"] += time.perf_counter() - t0
        cost["n_export"] += 1

    def on_generation(state) -> None:
        t0 = time.perf_counter()
        g = state.gen
        hv.append(float(state.hypervolume[-1]))
        F = state.archive_F
        feas = F[(F < INFEASIBLE).all(axis=1)]
        best[g] = float(achievement_fixed(feas, names, weights).min()) if len(feas) else float("inf")
        cost["cb_s"] += time.perf_counter() - t0
        if g % every == 0 or g == generations:
            measure(state)
        if g % 100 == 0:
            print(f"    {label}: generation {g}, front {len(F)}, hv {hv[-1]:.4f}, "
                  f"{cost['n_export']} exports in {cost['export_s']:.1f} s", file=sys.stderr, flush=True)

    evaluator = ParallelEvaluator()
    t0 = time.perf_counter()
    r = run_search(evaluator.ship(prep.problem), prep.initial, algorithm="nsga2",
                   termination=Termination(generations=generations), seed=seed,
                   normaliser=Normaliser.fixed(names, weights), steer=weights, on_generation=on_generation)
    wall = time.perf_counter() - t0
    evaluator.close()
    search_s = wall - cost["export_s"] - cost["cb_s"]
    return {"hv": hv, "best": best, "measured": measured, "generations": r.generations,
            "s_per_gen": search_s / (r.generations + 1), "export_s_each": cost["export_s"] / max(cost["n_export"], 1),
            "wall_s": wall, "names": list(names)}


# ------------------------------------------------------------------------------------------- the table
def judge(run: dict, kind: str, window: int, tol: float, every: int, time_limit: float) -> dict:
    """The stop generation of one rule on one run, and (a), (b) at the stop and 10x it."""
    G = run["generations"]
    meas = run["measured"]
    grid = [gen for gen in sorted(meas) if gen % every == 0]
    if kind == "hv":
        g = stop_on({gen: -h for gen, h in enumerate(run["hv"])}, window, tol, grid)  # gain <= tol * hv
    elif kind == "best":
        g = stop_on(run["best"], window, tol, grid)
    else:
        g = stop_on({gen: meas[gen]["b"] for gen in grid}, window, tol, grid)
    cap = int(time_limit / run["s_per_gen"]) // every * every if time_limit else G + 1
    why = "converged"
    if g is None or g > cap:
        g, why = (min(cap, G), "time limit") if cap <= G else (G, "not by the end")
    ten = 10 * g
    bound = ten > G
    if bound:
        ten = G
    if g not in meas or ten not in meas:
        return {"kind": kind, "window": window, "tol": tol, "stop": g, "why": why, "missing": True}
    a0, a1 = np.asarray(meas[g]["first"]), np.asarray(meas[ten]["first"])
    b0, b1 = meas[g]["b"], meas[ten]["b"]
    scale = np.array([OBJECTIVE_SCALES.get(n, 1.0) for n in run["names"]])
    return {"kind": kind, "window": window, "tol": tol, "stop": g, "why": why, "ten": ten, "bound": bound,
            "a_stop": a0.tolist(), "a_10x": a1.tolist(),
            "a_improve_pct": (100.0 * (a0 - a1) / np.maximum(np.abs(a0), 1e-12)).tolist(),
            "a_improve_pct_scale": (100.0 * (a0 - a1) / scale).tolist(),
            "b_stop": b0, "b_10x": b1, "b_improve_pct": 100.0 * (b0 - b1) / b0}


def rules() -> list:
    return ([("hv", w, t) for w, t in HV_RULES] + [("best", w, t) for w, t in BEST_RULES]
            + [("export", w, t) for w, t in EXPORT_RULES])


def table(runs: list, args) -> tuple[str, list]:
    lines, rows = [], []
    for rr in runs:
        every = rr["every"]
        for kind, w, t in rules():
            j = judge(rr, kind, w, t, every, args.time_limit)
            j.update(song=rr["song"], seed=rr["seed"])
            rows.append(j)
    names = runs[0]["names"] if runs else []
    head = (f"{'song':<14}{'seed':>4} {'rule':<16}{'stop':>6} {'why':<10}{'10x':>6}  "
            + " ".join(f"{n[:7]:>16}" for n in names) + f"{'(b) stop -> 10x':>22}{'(b) %':>8}")
    lines.append("(a) first-ranked alternative at stop -> 10x, raw units [improvement % of the value; % of the "
                 "objective's fixed scale]; (b) mean weighted achievement of the exported alternatives")
    lines.append(head)
    lines.append("-" * len(head))
    for j in rows:
        rule = f"{j['kind']} {j['window']}/{j['tol']:g}"
        if j.get("missing"):
            lines.append(f"{j['song']:<14}{j['seed']:>4} {rule:<16}{j['stop']:>6} {j['why']:<10}  (not measured)")
            continue
        ten = ("≥" if j["bound"] else "") + str(j["ten"])
        cells = " ".join(f"{x:>5.3g}>{y:<5.3g}[{p:+.0f};{q:+.1f}]"[:16].rjust(16)
                         for x, y, p, q in zip(j["a_stop"], j["a_10x"], j["a_improve_pct"], j["a_improve_pct_scale"]))
        lines.append(f"{j['song']:<14}{j['seed']:>4} {rule:<16}{j['stop']:>6} {j['why']:<10}{ten:>6}  {cells}"
                     f"{j['b_stop']:>11.4f} -> {j['b_10x']:<7.4f}{j['b_improve_pct']:>+8.1f}")
    lines.append("")
    lines.append("per rule, over every song and seed: worst (b) improvement %, worst (a) improvement % of the "
                 "value and of the scale, stop generations (min-max), runs stopped by the rule")
    for kind, w, t in rules():
        sel = [j for j in rows if j["kind"] == kind and j["window"] == w and j["tol"] == t and not j.get("missing")]
        if not sel:
            continue
        wb = max(j["b_improve_pct"] for j in sel)
        wa = max(max(j["a_improve_pct"]) for j in sel)
        ws = max(max(j["a_improve_pct_scale"]) for j in sel)
        st = [j["stop"] for j in sel]
        conv = sum(j["why"] == "converged" for j in sel)
        every_gen = ""
        if kind == "best":  # as Termination checks it: after every generation
            g1 = [stop_on(r["best"], w, t, range(r["generations"] + 1)) for r in runs]
            every_gen = "  (checked every generation: " + ", ".join(str(g) for g in g1) + ")"
        lines.append(f"  {kind + ' ' + str(w) + '/' + format(t, 'g'):<16} (b) {wb:+6.1f} %  (a) {wa:+7.1f} % of value, "
                     f"{ws:+5.1f} % of scale  stops {min(st)}-{max(st)}  converged {conv}/{len(sel)}"
                     + ("  ≥" if any(j["bound"] for j in sel) else "") + every_gen)
    return "\n".join(lines), rows


def encode_run(r: dict) -> dict:
    """A run as JSON-ready data (integer generation keys as strings)."""
    out = {k: v for k, v in r.items() if k not in ("best", "measured")}
    out["best"] = [r["best"][g] for g in sorted(r["best"])]
    out["measured"] = {str(g): m for g, m in sorted(r["measured"].items())}
    return out


def load_runs(path: Path) -> list:
    """The runs :func:`encode_run` saved in ``path``."""
    runs = json.loads(Path(path).read_text())
    for r in runs:
        r["best"] = dict(enumerate(r["best"]))
        r["measured"] = {int(g): m for g, m in r["measured"].items()}
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds --first-seed .. --first-seed + --seeds - 1")
    ap.add_argument("--songs", type=int, default=len(SONGS))
    ap.add_argument("--generations", type=int, default=2000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--stems", type=int, default=6)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--real", type=Path, default=REAL, help="the real-size session folder ('' to skip)")
    ap.add_argument("--real-seeds", type=int, default=1)
    ap.add_argument("--real-generations", type=int, default=1500)
    ap.add_argument("--real-every", type=int, default=20)
    ap.add_argument("--alternatives", type=int, default=5)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="cap every rule at this many seconds of the run's own pace (0: no cap; the machine is shared)")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated song names to run (e.g. synth11-pop,real-16x210s)")
    ap.add_argument("--runs-out", type=Path, help="also save the runs (JSON) here, for --merge")
    ap.add_argument("--merge", type=Path, nargs="*", help="no search: the table of runs saved by --runs-out")
    args = ap.parse_args()
    t_start = time.perf_counter()
    runs = [] if not args.merge else [load_runs(p) for p in args.merge]
    runs = [r for rs in runs for r in rs]
    only = {x for x in args.only.split(",") if x}
    with tempfile.TemporaryDirectory() as tmp:
        songs = []
        for song_seed, genre in SONGS[: args.songs]:
            paths = write_session(Path(tmp) / f"song{song_seed}", args.stems, args.duration, seed=song_seed)
            songs.append((f"synth{song_seed}-{genre}", paths, genre, args.seeds, args.generations, args.every))
        if str(args.real) not in ("", ".") and args.real.is_dir() and args.real_seeds > 0:
            songs.append(("real-16x210s", [args.real], "pop", args.real_seeds, args.real_generations, args.real_every))
        for name, paths, genre, n_seeds, gens, every in songs:
            if args.merge or (only and name not in only):
                continue
            session = load_session(paths)
            for seed in range(args.first_seed, args.first_seed + n_seeds):
                prep = prepare_like_mix(session, genre, seed)
                rr = long_run(prep, seed, gens, every, args.alternatives, f"{name} seed {seed}")
                rr.update(song=name, seed=seed, every=every)
                print(f"  {name} seed {seed}: {rr['generations']} generations in {rr['wall_s']:.0f} s "
                      f"({rr['s_per_gen'] * 1e3:.0f} ms per generation searching; one choice of the export "
                      f"{rr['export_s_each'] * 1e3:.0f} ms = {rr['export_s_each'] / rr['s_per_gen']:.1f} generations)",
                      file=sys.stderr, flush=True)
                runs.append(rr)
            del session
    if args.runs_out is not None:
        args.runs_out.write_text(json.dumps([encode_run(r) for r in runs]))
    text, rows = table(runs, args)
    speed = "\n".join(f"{r['song']} seed {r['seed']}: {r['generations']} generations, {r['s_per_gen'] * 1e3:.0f} ms "
                      f"per generation (the {DEFAULT_TIME_LIMIT_S:g} s default cap ~ generation "
                      f"{int(DEFAULT_TIME_LIMIT_S / r['s_per_gen'])} at this pace), one choice of the export "
                      f"{r['export_s_each'] * 1e3:.0f} ms = "
                      f"{r['export_s_each'] / r['s_per_gen']:.2f} generations" for r in runs)
    header = (f"stopping rules on the exported alternatives (fast-tier scores; no exact render): "
              f"{args.songs} study songs x {args.seeds} seeds x {args.generations} generations (export measured "
              f"every {args.every}), real size {args.real_seeds} seed(s) x {args.real_generations} generations "
              f"(every {args.real_every}); population 64, defaults of `evomix mix`")
    out = "\n".join([header, speed, "", text])
    print(out)
    summary = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k not in ("merge", "runs_out")},
               "runs": [encode_run(r) for r in runs],
               "rows": rows, "wall_s": round(time.perf_counter() - t_start, 1)}
    line = json.dumps(summary)
    if not args.no_save:
        RESULTS.write_text(out + "\n" + line + "\n")
    print(line)


if __name__ == "__main__":
    main()
