"""The fast tier on representative segments against every frame, in the same run (issue 23, item 1).

Workloads: the real-size session (16 stems x 210 s, past ``engine.segments.SEGMENT_BOUND_S``) and
the standard workload (8 stems x 30 s, under it). Each is loaded and analysed once
(``benchlib.build_problem``); the real-size Problem is then scored two ways on the SAME analysis:
with its segment plan (``Analysis.segments``, today's default) and without it
(``dataclasses.replace(analysis, segments=None)``: every frame, the code before this change). The
standard workload has no plan (it is under the bound), so its figure is today's code path: it is
measured to show it did not slow down (and its F is checked bit for bit against a ``segments=None``
copy). Timing: ``benchlib.time_fast_tier`` (``evomix.search.parallel.score`` on all cores as
``evomix mix`` does, one warm-up, median of ``--reps`` populations of ``--pop``), the variants
interleaved round by round so that a load from other processes hits them alike; evaluations/s and
the ratio per round and overall. Also a one-thread stage profile of ``render_features`` on each
real-size variant (where the time goes).

Usage::

    python experiments/bench_segments.py [--realsize DIR] [--standard DIR] [--pop 64] [--reps 5] [--rounds 3]

The last line printed is JSON.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import build_problem, environment, random_population, time_fast_tier  # noqa: E402

STAGES = ("stem_gains", "_stem_compressors", "_pair_weights", "_reverb_return", "_master_compressor",
          "estimate_peaks", "_normalise_and_limit", "_heavy_tensors")


def with_space(problem):
    """The Problem with the search's default reverb bus open (``default_constraints(space=True)``)."""
    from evomix.pipeline import make_problem
    from evomix.search.constraints import default_constraints
    from objectives import Target

    a, prof = problem.analysis, problem.target.profile
    table = default_constraints(prof, a.names, a.roles, space=True).apply(problem.table, a.names)
    target = Target(prof, problem.target.target_lufs, problem.target.ceiling_dbtp, space=table.has_open_sends)
    return make_problem(a, table, target, problem.names, problem.weights)


def stage_profile(problem, *, pop: int, reps: int, seed: int) -> dict:
    """Milliseconds per evaluation of each stage of ``render_features`` and of the objectives, one thread."""
    import evomix.engine.batch as batch
    import evomix.search.problem as problem_mod

    acc = collections.defaultdict(float)
    saved = {}

    def wrap(mod, name):
        f = getattr(mod, name)
        saved[(mod, name)] = f

        def g(*args, **kw):
            t = time.perf_counter()
            r = f(*args, **kw)
            acc[name] += time.perf_counter() - t
            return r
        setattr(mod, name, g)

    for n in STAGES:
        wrap(batch, n)
    for n in ("render_features", "evaluate"):
        wrap(problem_mod, n)
    try:
        rng = np.random.default_rng(seed)
        problem.evaluate_population(random_population(problem, "initial", pop, rng))
        acc.clear()
        t0 = time.perf_counter()
        for r in range(reps):
            problem.evaluate_population(random_population(problem, "initial" if r % 2 == 0 else "uniform", pop, rng))
        total = time.perf_counter() - t0
    finally:
        for (mod, name), f in saved.items():
            setattr(mod, name, f)
    n = pop * reps
    out = {"total_ms_per_eval": round(total / n * 1e3, 4)}
    out.update({k: round(v / n * 1e3, 4) for k, v in sorted(acc.items(), key=lambda kv: -kv[1])})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realsize", type=Path, default=None, help="16 x 210 s session folder (default: cached_session)")
    ap.add_argument("--standard", type=Path, default=None, help="8 x 30 s session folder (default: cached_session)")
    ap.add_argument("--pop", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from evomix.core.runtime import available_cores
    from evomix.testing.songs import cached_session

    real_dir = args.realsize or cached_session(16, 210.0, seed=1234)[0]
    std_dir = args.standard or cached_session(8, 30.0, seed=1234)[0]
    out = {"benchmark": "segments", "environment": environment(), "pop": args.pop, "reps": args.reps,
           "rounds": args.rounds, "threads": available_cores(), "folders": [str(real_dir), str(std_dir)]}
    real, _, t_real = build_problem(real_dir)
    std, _, t_std = build_problem(std_dir)
    real, std = with_space(real), with_space(std)
    plan = real.analysis.segments
    out["plan"] = {"windows": plan.segments.tolist(), "weights": [round(float(w), 1) for w in plan.segment_weight],
                   "peak_window": plan.peak_segment.tolist(), "fast_frames": plan.n_frames,
                   "song_frames": real.analysis.n_frames, "instants": int(real.analysis.fast.peak_instants.size),
                   "instants_song": int(real.analysis.peak_instants.size),
                   "heavy_frames": int(real.analysis.fast.heavy_frames.size)}
    out["analysis_s"] = {"realsize": round(t_real["analyze_s"], 2), "standard": round(t_std["analyze_s"], 2)}
    print(f"real-size plan: {len(plan.segments)} windows {plan.segments.tolist()} weights "
          f"{[round(float(w)) for w in plan.segment_weight]}; {plan.n_frames} fast-tier frames of "
          f"{real.analysis.n_frames}; {out['plan']['instants']} of {out['plan']['instants_song']} instants", flush=True)
    every = dataclasses.replace(real, analysis=dataclasses.replace(real.analysis, segments=None))
    std_every = dataclasses.replace(std, analysis=dataclasses.replace(std.analysis, segments=None))
    G = random_population(std, "uniform", 32, np.random.default_rng(args.seed))
    out["standard_identical_to_every_frame"] = bool(np.array_equal(std.evaluate_population(G),
                                                                   std_every.evaluate_population(G)))
    variants = {"realsize_segments": real, "realsize_every_frame": every, "standard": std}
    rows = {k: [] for k in variants}
    threads = available_cores()
    for r in range(args.rounds):
        for name, prob in variants.items():
            res = time_fast_tier(prob, pop=args.pop, reps=args.reps, seed=args.seed + r, threads=threads)
            rows[name].append(res["evals_per_s"])
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}/s" for k, v in rows.items())
              + f"  -> segments / every frame {rows['realsize_segments'][-1] / rows['realsize_every_frame'][-1]:.2f}x",
              flush=True)
    out["evals_per_s"] = {k: [round(x, 1) for x in v] for k, v in rows.items()}
    out["evals_per_s_median"] = {k: round(statistics.median(v), 1) for k, v in rows.items()}
    med = out["evals_per_s_median"]
    out["speedup_segments_over_every_frame"] = round(med["realsize_segments"] / med["realsize_every_frame"], 2)
    out["realsize_segments_over_standard"] = round(med["realsize_segments"] / med["standard"], 2)
    print(f"median evaluations/s on {threads} thread(s): " + "  ".join(f"{k} {v:.0f}" for k, v in med.items())
          + f"; segments / every frame {out['speedup_segments_over_every_frame']:.2f}x; "
          f"real-size on segments / standard {out['realsize_segments_over_standard']:.2f}x; "
          f"standard bit-identical without a plan: {out['standard_identical_to_every_frame']}", flush=True)
    out["stage_ms_per_eval_one_thread"] = {}
    for name in ("realsize_segments", "realsize_every_frame", "standard"):
        prof = stage_profile(variants[name], pop=32, reps=4, seed=args.seed)
        out["stage_ms_per_eval_one_thread"][name] = prof
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in prof.items()) + " ms/eval", flush=True)
    out["environment"]["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
