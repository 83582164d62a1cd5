"""The search study: NSGA-II vs NSGA-III vs random search, smart vs random first generation, and the
default termination vs a 10x longer run, on synthetic multitrack songs (``evomix.testing.songs``).

For every song (``write_session(..., n_stems, duration_s, seed)``, each song with its own genre
target) and every seed, each configuration gets the same evaluation budget (``--population`` x
(``--generations`` + 1) candidates, fast tier):

* ``nsga2``, ``nsga3``, ``random``: uniform random generation 0 (the algorithms compared alone);
* ``nsga2-smart``, ``nsga3-smart``: from the smart generation 0 (``evomix.search.seeding``).

Hypervolume: of the archive of every non-dominated candidate evaluated, in the fixed normalised
space of ``evomix.search.hypervolume`` (f / OBJECTIVE_SCALES, reference point (1, 1, 1, 1)), so every
number of one song is comparable. Reported per configuration: the final hypervolume mean ± sd over
seeds, the convergence curve (mean hypervolume per generation, every 10th printed), and the
evaluations to reach 95 % of the final hypervolume; for the smart start also the evaluations it
needs to reach the *random start's* mean final hypervolume.

Termination: the default algorithm from the smart start with the default termination
(``evomix.search.algorithm.Termination()``: the hypervolume-gain window and the time cap) on every
seed, then the same seed run for 10x the generations the default used (``--long-seeds`` seeds per
song): the default's hypervolume as a percentage of the long run's.

Usage: python experiments/search_quality.py [--quick] [--seeds 5] [--generations 60]
       [--population 32] [--stems 6] [--duration 20] [--shared] [--long-seeds 2]
``--shared`` adds ../shared/stems (relative to the repository) as a song when it holds audio.
Human table first; the last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evomix.choose.select import choose_alternatives
from evomix.engine.analysis import analyze_session
from evomix.io.audio import AUDIO_SUFFIXES, load_session
from evomix.pipeline import make_problem
from evomix.search.algorithm import (
    DEFAULT_ALGORITHM,
    DEFAULT_TIME_LIMIT_S,
    Termination,
    evaluations_to_fraction,
    run_search,
)
from evomix.search.genome import GeneTable
from evomix.search.hypervolume import OBJECTIVE_SCALES, Normaliser
from evomix.search.problem import Problem
from evomix.search.seeding import random_initial_population, smart_initial_population
from evomix.settings import Master
from evomix.testing.songs import write_session
from objectives import OBJECTIVE_NAMES, Target, load_profile

SONGS = ((11, "pop"), (22, "rock"), (33, "edm"))  # (synthesis seed, genre target)
CONFIGS = ("nsga2", "nsga3", "random", "nsga2-smart", "nsga3-smart")
DEFAULT = f"{DEFAULT_ALGORITHM}-smart"  # what `evomix mix` runs


def song_problem(paths, genre: str) -> Problem:
    session = load_session(paths)
    analysis = analyze_session(session)
    target = Target(profile=load_profile(genre), target_lufs=-14.0, ceiling_dbtp=-1.0)
    return make_problem(analysis, GeneTable(session.n_stems), target, OBJECTIVE_NAMES, (1.0,) * len(OBJECTIVE_NAMES),
                        max_limiting_db=Master().max_limiting_db)  # the limiter budget of `evomix mix`


def first_generation(problem: Problem, smart: bool, n_pop: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    if smart:
        return smart_initial_population(problem.table, problem.analysis, n_pop, rng)
    return random_initial_population(problem.table, n_pop, rng)


def run(problem: Problem, config: str, seed: int, n_pop: int, termination: Termination):
    algorithm = config.split("-")[0]
    init = first_generation(problem, config.endswith("smart"), n_pop, seed)
    return run_search(problem.evaluate_population, init, algorithm=algorithm, termination=termination, seed=seed,
                      normaliser=Normaliser.fixed(problem.names, problem.weights), steer=problem.weights)


def steering(problem: Problem, args) -> dict:
    """masking=4 vs default weights, same seed and budget (the default algorithm, smart start): the top-ranked
    alternative's masking (``select.choose_alternatives``, as ``evomix mix`` ranks) and the front's
    median masking, dB."""
    w4 = tuple(4.0 if n == "masking" else 1.0 for n in problem.names)
    j = problem.names.index("masking")
    rows = []
    for seed in range(args.seeds):
        row = {"seed": seed}
        for label, w in (("default", problem.weights), ("masking=4", w4)):
            p = make_problem(problem.analysis, problem.table, problem.target, problem.names, w,
                             max_limiting_db=problem.max_limiting_db)
            r = run(p, DEFAULT, seed, args.population, Termination(generations=args.generations))
            raw = r.front_F / np.asarray(w)[None, :]
            top = choose_alternatives(r.front_genomes, r.front_F, 1, np.asarray(w))[0]
            row[label] = {"top_masking": float(raw[top, j]), "median_masking": float(np.median(raw[:, j]))}
        rows.append(row)
    agg = {lab: {k: statistics.fmean(r[lab][k] for r in rows) for k in ("top_masking", "median_masking")}
           for lab in ("default", "masking=4")}
    agg["seeds_top_lower"] = sum(r["masking=4"]["top_masking"] < r["default"]["top_masking"] for r in rows)
    agg["seeds_median_lower"] = sum(r["masking=4"]["median_masking"] < r["default"]["median_masking"] for r in rows)
    return {"per_seed": rows, "mean": agg}


def evals_to_reach(result, level: float) -> int | None:
    """Candidates evaluated until the archive's hypervolume first reached ``level`` (None: never)."""
    hv = np.asarray(result.hypervolume)
    evals = np.cumsum([r["evals"] for r in result.logbook])
    hit = np.flatnonzero(hv >= level)
    return int(evals[hit[0]]) if len(hit) else None


def mean_sd(xs) -> tuple[float, float]:
    xs = [float(x) for x in xs]
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def study_song(name: str, problem: Problem, args) -> dict:
    fixed = Termination(generations=args.generations)
    out = {"song": name, "configs": {}}
    results = {}
    for config in CONFIGS:
        rs = [run(problem, config, seed, args.population, fixed) for seed in range(args.seeds)]
        results[config] = rs
        hv = [r.hypervolume[-1] for r in rs]
        m, sd = mean_sd(hv)
        curve = np.mean([r.hypervolume for r in rs], axis=0)
        out["configs"][config] = {
            "hv_mean": m, "hv_sd": sd, "hv": [float(h) for h in hv],
            "evals": int(rs[0].evaluations),
            "evals_to_95": mean_sd([evaluations_to_fraction(r, 0.95) for r in rs])[0],
            "curve": [float(c) for c in curve],
            "seconds": mean_sd([r.elapsed_s for r in rs])[0],
        }
        print(f"  {name} {config}: hv {m:.4f} ± {sd:.4f}", file=sys.stderr, flush=True)
    out["smart_evals_to_random_final"] = {}
    for alg in ("nsga2", "nsga3"):
        rand_final = out["configs"][alg]["hv_mean"]
        reach = [evals_to_reach(r, rand_final) for r in results[f"{alg}-smart"]]
        out["smart_evals_to_random_final"][alg] = {
            "random_start_evals": out["configs"][alg]["evals"],
            "smart_evals": reach,
            "smart_evals_mean": (statistics.fmean([r for r in reach if r is not None])
                                 if any(r is not None for r in reach) else None),
            "reached": sum(r is not None for r in reach),
        }
    out["steering"] = steering(problem, args)
    st = out["steering"]["mean"]
    print(f"  {name} steering: top masking {st['default']['top_masking']:.3f} -> {st['masking=4']['top_masking']:.3f}, "
          f"median {st['default']['median_masking']:.3f} -> {st['masking=4']['median_masking']:.3f}",
          file=sys.stderr, flush=True)
    # default termination vs 10x longer
    term = []
    for seed in range(args.term_seeds):
        d = run(problem, DEFAULT, seed, args.population, Termination(time_limit=args.time_limit))
        row = {"seed": seed, "generations": d.generations, "stop_reason": d.stop_reason, "hv": float(d.hypervolume[-1]),
               "seconds": d.elapsed_s, "evals": d.evaluations}
        if seed < args.long_seeds and args.song_index < args.long_songs:
            long = run(problem, DEFAULT, seed, args.population, Termination(generations=10 * max(d.generations, 1)))
            row.update(long_generations=long.generations, long_hv=float(long.hypervolume[-1]),
                       percent_of_long=100.0 * float(d.hypervolume[-1]) / float(long.hypervolume[-1]),
                       long_seconds=long.elapsed_s)
        term.append(row)
        print(f"  {name} default termination seed {seed}: {d.stop_reason} after {d.generations} gens, "
              f"{row.get('percent_of_long', float('nan')):.1f} % of 10x", file=sys.stderr, flush=True)
    out["termination"] = term
    return out


def print_table(songs: list, args) -> None:
    print(f"search study: {args.seeds} seeds, population {args.population}, {args.generations} generations "
          f"({args.population * (args.generations + 1)} evaluations per run), hypervolume in f / {OBJECTIVE_SCALES} "
          f"with reference point 1")
    head = f"{'song':<14}{'config':<13}{'HV mean ± sd':>20}{'evals to 95%':>14}{'s/run':>8}"
    print(head)
    print("-" * len(head))
    for s in songs:
        for c, v in s["configs"].items():
            print(f"{s['song']:<14}{c:<13}{v['hv_mean']:>11.4f} ± {v['hv_sd']:<6.4f}{v['evals_to_95']:>14.0f}"
                  f"{v['seconds']:>8.2f}")
        rnd = s["configs"]["random"]
        beats = {a: (s["configs"][a]["hv_mean"] - rnd["hv_mean"]) / max(rnd["hv_sd"], 1e-12)
                 for a in ("nsga2", "nsga3")}
        print(f"{'':<14}margin over random, in random's sd: " + ", ".join(f"{a} {b:.1f}" for a, b in beats.items()))
        st = s["steering"]["mean"]
        print(f"{'':<14}steering masking=4 vs default: top-ranked masking {st['default']['top_masking']:.3f} -> "
              f"{st['masking=4']['top_masking']:.3f} dB ({st['seeds_top_lower']}/{args.seeds} seeds lower), "
              f"front median "
              f"{st['default']['median_masking']:.3f} -> {st['masking=4']['median_masking']:.3f} dB "
              f"({st['seeds_median_lower']}/{args.seeds} lower)")
        for alg, sm in s["smart_evals_to_random_final"].items():
            print(f"{'':<14}{alg}: smart start reaches the random start's mean final HV in {sm['smart_evals_mean']} "
                  f"evaluations (mean of the {sm['reached']}/{args.seeds} seeds that reach it) "
                  f"vs {sm['random_start_evals']}")
        for t in s["termination"]:
            extra = (f", {t['percent_of_long']:.2f} % of the HV after {t['long_generations']} generations"
                     if "percent_of_long" in t else "")
            print(f"{'':<14}default termination seed {t['seed']}: {t['stop_reason']} "
                  f"after {t['generations']} generations "
                  f"({t['evals']} evals, {t['seconds']:.2f} s){extra}")
    print("\nmean hypervolume per generation (every 10th):")
    for s in songs:
        for c, v in s["configs"].items():
            pts = " ".join(f"{x:.3f}" for x in v["curve"][::10])
            print(f"  {s['song']:<14}{c:<13}{pts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 song, 2 seeds, 10 generations, 4 s stems")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--stems", type=int, default=6)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--term-seeds", type=int, default=3, help="seeds per song of the default-termination runs")
    ap.add_argument("--long-seeds", type=int, default=1, help="seeds per song of the 10x longer run")
    ap.add_argument("--long-songs", type=int, default=1, help="songs (the first N) with a 10x longer run")
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, help="of the default-termination runs, s")
    ap.add_argument("--shared", action="store_true", help="add ../shared/stems as a song when it holds audio")
    args = ap.parse_args()
    songs = SONGS
    if args.quick:
        args.seeds, args.generations, args.duration, args.term_seeds, songs = 2, 8, 10.0, 1, SONGS[:1]
        args.population, args.time_limit, args.long_songs = 32, 3.0, 0
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="evomix-search-"))
    problems = []
    for seed, genre in songs:
        paths = write_session(tmp / f"song{seed}", args.stems, args.duration, seed=seed)
        problems.append((f"synth{seed}-{genre}", song_problem(paths, genre)))
    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "stems"
    if args.shared and shared.is_dir():
        files = sorted(p for p in shared.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if files:
            problems.append(("shared-stems", song_problem(files, "pop")))
        else:
            print(f"--shared: {shared} holds no audio; skipped", file=sys.stderr)
    results = []
    for i, (name, p) in enumerate(problems):
        args.song_index = i
        results.append(study_song(name, p, args))
    print_table(results, args)
    summary = {"settings": {k: getattr(args, k) for k in ("seeds", "generations", "population", "stems", "duration",
                                                          "term_seeds", "long_seeds", "long_songs", "time_limit")},
               "objective_scales": OBJECTIVE_SCALES, "reference_point": 1.0,
               "termination_defaults": Termination().__dict__, "songs": results,
               "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
