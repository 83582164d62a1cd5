"""Parallel evaluation benchmark: seconds per generation of the fast tier on one thread, two threads, --jobs 2.

Standard workload
-----------------
8 stereo stems x 30 s at 44.1 kHz (kick, bass, vocal, keys, guitar, pad, snare, lead), the same
session as ``bench_throughput.py``'s standard workload: ``evomix.testing.songs.write_session(folder, 8,
30.0, seed=1234)`` (the project's one song synthesizer: 120 BPM, A minor, sections), 24-bit WAVs in
a temporary folder; ``load_session`` + ``analyze_session`` as ``evomix mix`` does; all four
objectives (weights 1), genre "pop"; population 64. (Until this script used ``evomix.testing.songs`` it had
a simpler synthesizer of its own: figures from before then were measured on other signals.)

What is measured (wall clock, ``time.perf_counter``)
----------------------------------------------------
For each configuration (``jobs1``: one process, one thread, a plain call; ``threads2``: one process,
the population split over two threads (the default of ``evomix mix`` on 2 cores); ``jobs2``: two
local worker processes of one thread each, ``evomix.search.parallel.ParallelEvaluator``; with ``--dask``,
also a ``distributed.LocalCluster`` of 2 single-threaded worker processes):

- ``ship_s``: creating the evaluator and sending the Problem (dump / scatter);
- ``first_s``: the first generation (workers start, import evomix and load the Problem);
- ``per_generation_s``: the median of ``--generations`` (default 20, >= 5) further generations, each a fresh
  population of 64 genomes (``GeneTable.initial_population`` with a new seed), i.e. what each
  generation of the search costs once the pool is warm;
- ``payload_bytes`` per generation vs ``problem_bytes`` (what travels once).

``speedup`` = per-generation time of ``jobs1`` / of the configuration. Scoring runs BLAS
single-threaded (threadpoolctl) in this process and in every worker alike, so the ratio is the
gain from the threads or processes alone.
Other processes on the machine skew the timings: each configuration reports the share of the CPUs
that processes outside this session used while it ran (``other_processes_cpu_share``, from /proc);
trust only runs where it is near 0. Every configuration's F is checked to
be bitwise identical to jobs=1's. Human-readable lines, then one JSON object as the LAST line.

Usage::

    python experiments/bench_parallel.py              # standard workload
    python experiments/bench_parallel.py --dask       # also a 2-worker LocalCluster
    python experiments/bench_parallel.py --duration 10 --generations 5
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import cpu_snapshot, foreign_cpu_s  # noqa: E402

from evomix.testing.songs import write_session  # noqa: E402

SR = 44100
N_STEMS = 8


def build_problem(folder: Path):
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session
    from evomix.pipeline import make_problem
    from evomix.search.genome import GeneTable
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    t0 = time.perf_counter()
    session = load_session([folder])
    analysis = analyze_session(session)
    target = Target(profile=load_profile("pop"), target_lufs=-14.0, ceiling_dbtp=-1.0)
    problem = make_problem(analysis, GeneTable(session.n_stems), target, OBJECTIVE_NAMES, (1.0,) * len(OBJECTIVE_NAMES))
    return problem, time.perf_counter() - t0


def run_config(problem, populations, **options) -> tuple[dict, list[np.ndarray]]:
    from evomix.search.parallel import ParallelEvaluator

    t0 = time.perf_counter()
    with ParallelEvaluator(problem, **options) as ev:
        ship = time.perf_counter() - t0
        out, times = [], []
        for g in populations:
            t = time.perf_counter()
            out.append(ev(g))
            times.append(time.perf_counter() - t)
        rec = {"ship_s": round(ship, 4), "first_s": round(times[0], 4),
               "per_generation_s": round(statistics.median(times[1:]), 4),
               "generations_s": [round(x, 4) for x in times[1:]],
               "payload_bytes": ev.payload_bytes, "problem_bytes": ev.problem_bytes,
               "worker_loads": sorted(ev.loads.values())}
    return rec, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of audio per stem (30)")
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--generations", type=int, default=20,
                    help="timed generations (>= 5), after one warm-up; a generation takes ~30 ms, "
                         "so a median of 20 is steadier than of 5")
    ap.add_argument("--dask", action="store_true", help="also a 2-worker distributed.LocalCluster")
    args = ap.parse_args(argv)
    if args.generations < 5:
        ap.error("--generations must be >= 5")

    with tempfile.TemporaryDirectory(prefix="evomix-bench-") as tmp:
        write_session(Path(tmp) / "stems", N_STEMS, args.duration, sr=SR, seed=1234)
        problem, analysis_s = build_problem(Path(tmp) / "stems")
    print(f"workload: {N_STEMS} stereo stems x {args.duration:g} s @ {SR} Hz, population {args.population}; "
          f"load + analysis {analysis_s:.2f} s", flush=True)
    table = problem.table
    populations = [table.initial_population(args.population, np.random.default_rng(100 + i))
                   for i in range(args.generations + 1)]

    configs = ["jobs1", "threads2", "jobs2"] + (["dask2"] if args.dask else [])
    results, reference = {}, None
    for name in configs:
        cluster = None
        if name == "dask2":  # started only now: an idle cluster on the same cores skews the local timings
            from distributed import LocalCluster

            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0")
            print(f"LocalCluster of 2 workers started in {time.perf_counter() - t0:.2f} s", flush=True)
            opts = {"backend": "dask", "scheduler": cluster.scheduler_address}
        elif name == "threads2":
            opts = {"n_jobs": 1, "threads": 2}
        else:
            opts = {"n_jobs": int(name[-1]), "threads": int(name[-1])}  # one thread per process
        try:
            snap = cpu_snapshot()
            t0 = time.perf_counter()
            rec, out = run_config(problem, populations, **opts)
            rec["other_processes_cpu_share"] = round(foreign_cpu_s(snap, cpu_snapshot()) / (time.perf_counter() - t0)
                                                     / (os.cpu_count() or 1), 3)
        finally:
            if cluster is not None:
                cluster.close()
        if reference is None:
            reference = out
        rec["identical_to_jobs1"] = all(np.array_equal(a, b) for a, b in zip(out, reference))
        results[name] = rec
        print(f"{name}: {rec['per_generation_s']:.3f} s per generation (median of {args.generations}; "
              f"{args.population / rec['per_generation_s']:.0f} candidates/s), first generation "
              f"{rec['first_s']:.2f} s, ship {rec['ship_s']:.2f} s, payload {rec['payload_bytes'] / 1e3:.1f} kB "
              f"per generation vs Problem {rec['problem_bytes'] / 1e6:.1f} MB once, identical F: "
              f"{rec['identical_to_jobs1']}; other processes used {100 * rec['other_processes_cpu_share']:.0f}% "
              f"of the CPUs meanwhile",
              flush=True)

    speedup = results["jobs1"]["per_generation_s"] / results["jobs2"]["per_generation_s"]
    speedup_threads = results["jobs1"]["per_generation_s"] / results["threads2"]["per_generation_s"]
    print(f"speedup vs one thread: jobs=2 {speedup:.2f}x, two threads {speedup_threads:.2f}x", flush=True)
    summary = {
        "bench": "parallel", "stems": N_STEMS, "duration_s": args.duration, "sr": SR,
        "population": args.population, "generations_timed": args.generations,
        "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "analysis_s": round(analysis_s, 3), "results": results, "speedup_jobs2": round(speedup, 3),
        "speedup_threads2": round(speedup_threads, 3),
    }
    if "dask2" in results:
        summary["speedup_dask2"] = round(results["jobs1"]["per_generation_s"] / results["dask2"]["per_generation_s"], 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
