"""Which convergence test should stop the search? One long run per song and seed, every rule
read off its hypervolume curve.

The search's trajectory does not depend on when it is stopped (the same seed gives the same
generations in the same order; ``tests/test_checkpoint.py`` shows a run stopped and resumed ends
where an uninterrupted one does), so one run of ``--generations`` generations holds the answer for
every stopping rule at once. A rule (``window`` w, ``tol`` t) stops at the first generation g >= w
with ``hv[g] - hv[g - w] <= t * hv[g]`` (``evomix.search.algorithm.Termination.reason``), or at the time
cap: g <= ``--time-limit`` / (seconds per generation of this run, unloaded machine assumed). It is
judged against the same seed run 10x longer: ``hv[g] / hv[min(10 g, G)]`` (a "≥" marks a
10x run longer than the long run, so the percentage is an upper bound).

Songs and settings are those of ``search_quality.py`` (``SONGS``, 6 stems x 12 s, population 64,
the default algorithm from the smart first generation, hypervolume in its fixed normalised space).

Usage: python experiments/termination_sweep.py [--seeds 2] [--generations 3000] [--songs 3]
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

from evomix.search.algorithm import DEFAULT_TIME_LIMIT_S, HV_TOL, HV_WINDOW, Termination
from evomix.testing.songs import write_session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import DEFAULT, SONGS, run, song_problem  # noqa: E402

WINDOWS = (20, 40, 80, 160)
TOLS = (0.005, 0.002, 0.001)


def stop_generation(hv: np.ndarray, window: int, tol: float, cap: int) -> tuple[int, str]:
    """First generation the rule stops at (and why), as ``Termination.reason`` decides it."""
    for g in range(window, min(cap, hv.size - 1) + 1):
        if hv[g] > 0.0 and hv[g] - hv[g - window] <= tol * hv[g]:
            return g, "converged"
    return min(cap, hv.size - 1), "time limit" if cap < hv.size - 1 else "end of the long run"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--generations", type=int, default=3000)
    ap.add_argument("--songs", type=int, default=len(SONGS))
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--stems", type=int, default=6)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S)
    args = ap.parse_args()
    t_start = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for song_seed, genre in SONGS[: args.songs]:
            folder = Path(tmp) / f"song{song_seed}"
            write_session(folder, args.stems, args.duration, seed=song_seed)
            problem = song_problem(sorted(folder.glob("*.wav")), genre)
            for seed in range(args.seeds):
                r = run(problem, DEFAULT, seed, args.population, Termination(generations=args.generations))
                hv = np.asarray(r.hypervolume, dtype=float)
                runs.append({"song": f"synth{song_seed}-{genre}", "seed": seed, "hv": hv,
                             "s_per_gen": r.elapsed_s / max(r.generations, 1)})
                print(f"  synth{song_seed}-{genre} seed {seed}: {r.generations} generations in {r.elapsed_s:.0f} s, "
                      f"hv {hv[-1]:.4f}", file=sys.stderr, flush=True)
    rules = []
    for window in WINDOWS:
        for tol in TOLS:
            rows = []
            for rr in runs:
                hv, n = rr["hv"], rr["hv"].size - 1
                cap = int(args.time_limit / rr["s_per_gen"])
                g, why = stop_generation(hv, window, tol, cap)
                ten = min(10 * g, n)
                rows.append({"song": rr["song"], "seed": rr["seed"], "stop": g, "why": why,
                             "seconds": g * rr["s_per_gen"], "percent_of_10x": 100.0 * hv[g] / hv[ten],
                             "bound": 10 * g > n})
            pct = [x["percent_of_10x"] for x in rows]
            rules.append({"window": window, "tol": tol, "runs": rows, "worst_percent": min(pct),
                          "mean_percent": statistics.fmean(pct),
                          "mean_seconds": statistics.fmean(x["seconds"] for x in rows),
                          "max_seconds": max(x["seconds"] for x in rows),
                          "time_limited": sum(x["why"] == "time limit" for x in rows),
                          "default": window == HV_WINDOW and tol == HV_TOL})
    print(f"termination rules on {len(runs)} long runs ({args.generations} generations, population {args.population}, "
          f"{args.stems} stems x {args.duration:g} s, time cap {args.time_limit:g} s)")
    head = f"{'window':>7}{'tol':>8}{'worst % of 10x':>16}{'mean %':>8}{'mean s':>8}{'max s':>7}{'capped':>8}"
    print(head)
    print("-" * len(head))
    for ru in rules:
        bound = "≥" if any(x["bound"] for x in ru["runs"]) else " "
        print(f"{ru['window']:>7}{ru['tol']:>8}{bound:>3}{ru['worst_percent']:>13.1f}{ru['mean_percent']:>8.1f}"
              f"{ru['mean_seconds']:>8.1f}{ru['max_seconds']:>7.1f}{ru['time_limited']:>8}"
              + ("  (default)" if ru["default"] else ""))
    out = {"settings": vars(args),
           "runs": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rr.items()} for rr in runs],
           "rules": rules, "wall_s": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
