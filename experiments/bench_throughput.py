"""Throughput benchmark: how many candidate mixes per second each tier scores, and what a whole run costs.

Standard workload
-----------------
8 stereo stems x 30 s at 44.1 kHz, synthesised by ``evomix.testing.songs.write_session(folder, 8, 30.0,
seed=1234)`` (the project's one song synthesizer: a 120 BPM song in A minor, Am-F-C-G, with
sections: intro / verse / chorus / break, so levels and density change over time) as 24-bit WAVs
in a temporary folder. File names give the roles:
kick, bass, vocal, keys, guitar, pad, snare, lead (then hihat, piano, arp, fx, and numbered variants
for more than 12 stems). Search settings: population 64, 50 generations, all four objectives
(masking, loudness, balance, genre; weights 1), 5 alternatives exported, genre "pop".

What is measured (wall-clock, ``time.perf_counter``; single process, whatever BLAS threads numpy uses)
---------------------------------------------------------------------------------------------------
1. Analysis: ``load_session`` + ``analyze_session`` on the stem folder (each timed, once).
2. Fast tier: ``Problem.evaluate_population`` on populations of 64 genomes on one thread, then the
   same split over all cores (``evomix.search.parallel.score``, the default of ``evomix mix``); after one untimed
   warm-up call, ``--reps`` (>= 5) calls on fresh populations alternating between
   ``GeneTable.initial_population`` (neutral mix + noise, 1/4 uniform) and uniform random genomes.
   Candidate evaluations per second = 64 / median call time (also reported per population kind).
3. Exact tier: for ``--exact-candidates`` random candidates, ``render_exact`` +
   ``features_from_render`` + ``objectives.evaluate`` (the work ``api.mix`` does per exported
   alternative); seconds per candidate = median (each stage also reported).
4. Naive per-candidate rate = 1 / (exact s per candidate), i.e. what a search scoring each
   candidate with the exact renderer would reach; RATIO = fast rate / naive rate, both measured
   in this run on the same session.
5. End to end: ``python -m evomix mix DIR --out OUT --population 64 --generations 50 --quiet --json``
   as a subprocess (fresh interpreter: imports, loading, analysis, search, exact renders of the
   alternatives, writing). Wall time, and peak RSS of that process from ``os.wait4``'s
   ``ru_maxrss`` (kB on Linux; read by a small launcher process, since a child forked from this
   one would count this process's own high-water RSS) -- cross-checked by psutil polling of the
   process tree when psutil is installed (``benchlib.run_measured``).
6. ``--profile``: cProfile of one ``evaluate_population`` call (64 genomes, standard session);
   top 12 functions by cumulative time (and, for where the self time goes, top 12 by tottime).

Process CPU time (``time.process_time``, all threads) is recorded next to wall time: the machine may
be shared, and CPU time is less sensitive to other processes (wall time is the headline figure).

Output: human-readable lines, then one JSON object as the LAST line of stdout. No timing
assertions: this only measures.

Usage::

    python experiments/bench_throughput.py            # standard workload
    python experiments/bench_throughput.py --quick    # 8 stems x 10 s, 10 generations
    python experiments/bench_throughput.py --stems 16 --duration 60 --profile
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import (  # noqa: E402  (first: applies --blas-threads before numpy loads OpenBLAS)
    add_run_args,
    analysis_nbytes,
    build_problem,
    environment,
    random_population,
    report,
    run_cli_mix,
    session_audio_nbytes,
    time_exact_tier,
    time_fast_tier,
    work_folder,
)

from evomix.testing.songs import write_session  # noqa: E402

SR = 44100


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------


def profile_fast_tier(problem, *, pop: int, seed: int, top: int = 12) -> dict:
    """CProfile one evaluate_population(pop) call -> text tables (cumulative and tottime)."""
    rng = np.random.default_rng(seed + 2)
    problem.evaluate_population(random_population(problem, "initial", pop, rng))  # warm-up
    G = random_population(problem, "initial", pop, rng)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    problem.evaluate_population(G)
    prof.disable()
    wall = time.perf_counter() - t0
    tables = {}
    rows = {}
    for key in ("cumulative", "tottime"):
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key)
        st.print_stats(top)
        tables[key] = s.getvalue()
        stats = st.stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
        order = sorted(stats.items(), key=lambda kv: kv[1][3 if key == "cumulative" else 2], reverse=True)[:top]
        rows[key] = [{"function": f"{k[0]}:{k[1]}({k[2]})", "ncalls": v[1],
                      "tottime_s": round(v[2], 4), "cumtime_s": round(v[3], 4)} for k, v in order]
    return {"wall_s": wall, "tables": tables, "top_cumulative": rows["cumulative"], "top_tottime": rows["tottime"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 stems x 10 s, 10 generations")
    ap.add_argument("--stems", type=int, default=None, help="number of stems (default 8)")
    ap.add_argument("--duration", type=float, default=None, help="stem length, s (default 30; 10 with --quick)")
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--generations", type=int, default=None, help="default 50 (10 with --quick)")
    ap.add_argument("--alternatives", type=int, default=5)
    ap.add_argument("--reps", type=int, default=7, help="timed evaluate_population calls (>= 5)")
    ap.add_argument("--exact-candidates", type=int, default=5, help="candidates rendered by the exact tier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile one evaluate_population call")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end CLI run")
    add_run_args(ap, keep_help="write the stems (and CLI output) here and keep them")
    args = ap.parse_args(argv)

    stems = args.stems if args.stems is not None else 8
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 30.0)
    generations = args.generations if args.generations is not None else (10 if args.quick else 50)
    reps = max(5, args.reps)
    if stems < 1 or duration <= 0:
        ap.error("--stems must be >= 1 and --duration > 0")

    result: dict = {"benchmark": "throughput", "workload": {
        "stems": stems, "duration_s": duration, "sr": SR, "population": args.population,
        "generations": generations, "alternatives": args.alternatives, "objectives": "all four",
        "quick": args.quick}, "environment": environment()}
    with work_folder("evomix-bench-", args.keep) as work:
        stem_dir, out_dir = work / "stems", work / "out"
        t0 = time.perf_counter()
        files = write_session(stem_dir, stems, duration, sr=SR, seed=1234 + args.seed)
        result["synthesis_s"] = time.perf_counter() - t0
        print(f"workload: {stems} stereo stems x {duration:g} s @ {SR} Hz, 24-bit WAV in {stem_dir} "
              f"({', '.join(p.name for p in files)}); synthesised in {result['synthesis_s']:.2f} s", flush=True)

        problem, session, ta = build_problem(stem_dir)
        result["analysis"] = ta
        a = problem.analysis
        result["workload"]["roles"] = dict(zip(session.names, session.roles))
        result["workload"]["analysis_shape"] = {"band_power": list(a.band_power.shape),
                                                "heavy_frames": int(len(a.heavy_frames)),
                                                "genes": problem.table.n_genes}
        analysis_mb = analysis_nbytes(a) / 2**20
        audio_b = session_audio_nbytes(session)
        result["analysis"]["arrays_mb"] = analysis_mb
        result["analysis"]["session_audio_mb"] = None if audio_b is None else audio_b / 2**20
        audio_txt = "streamed from files" if audio_b is None else f"{audio_b / 2**20:.1f} MB"
        print(f"analysis: load_session {ta['load_s']:.3f} s + analyze_session {ta['analyze_s']:.3f} s "
              f"= {ta['total_s']:.3f} s  (band_power {tuple(a.band_power.shape)}, {len(a.heavy_frames)} heavy frames, "
              f"analysis arrays {analysis_mb:.1f} MB, session audio {audio_txt})", flush=True)
        print(f"roles: {', '.join(f'{n}={r}' for n, r in zip(session.names, session.roles))}", flush=True)

        fast = time_fast_tier(problem, pop=args.population, reps=reps, seed=args.seed)
        result["fast_tier"] = fast
        print(f"fast tier: evaluate_population({args.population}) median {fast['median_s']:.4f} s over {reps} calls "
              f"(min {fast['min_s']:.4f}, max {fast['max_s']:.4f}; "
              f"initial_population {fast['median_s_initial']:.4f} s, "
              f"uniform {fast['median_s_uniform']:.4f} s; CPU {fast['cpu_s_per_call_median']:.4f} s per call) -> "
              f"{fast['evals_per_s']:.1f} candidate evaluations/s ({1e3 * fast['s_per_eval']:.2f} ms per candidate)",
              flush=True)
        from evomix.core.runtime import available_cores

        cores = available_cores()
        if cores > 1:  # what `evomix mix` uses by default: the population split over threads
            fast_all = time_fast_tier(problem, pop=args.population, reps=reps, seed=args.seed, threads=cores)
            result["fast_tier_all_cores"] = fast_all
            print(f"fast tier on {cores} threads (the default of `evomix mix`): median {fast_all['median_s']:.4f} s -> "
                  f"{fast_all['evals_per_s']:.1f} candidate evaluations/s "
                  f"({fast_all['evals_per_s'] / fast['evals_per_s']:.2f}x one thread)",
                  flush=True)

        exact = time_exact_tier(problem, session, n_candidates=args.exact_candidates, seed=args.seed)
        result["exact_tier"] = exact
        print(f"exact tier: {exact['s_per_candidate']:.3f} s per candidate (median of {exact['candidates']}; "
              f"render_exact {exact['render_exact_s']:.3f} s "
              f"+ features_from_render {exact['features_from_render_s']:.3f} s "
              f"+ objectives {exact['objectives_s']:.4f} s; CPU {exact['cpu_s_per_candidate_median']:.3f} s)",
              flush=True)

        naive = 1.0 / exact["s_per_candidate"]
        ratio = fast["evals_per_s"] / naive
        result["naive_evals_per_s"] = naive
        result["fast_over_naive_ratio"] = ratio
        cpu_ratio = (exact["cpu_s_per_candidate_median"]) / (fast["cpu_s_per_call_median"] / args.population)
        result["fast_over_naive_ratio_cpu_time"] = cpu_ratio
        print(f"naive (exact per candidate) rate: {naive:.3f} candidates/s; "
              f"fast tier (one thread) / naive = {ratio:.1f}x "
              f"(by CPU time: {cpu_ratio:.1f}x)", flush=True)

        if args.profile:
            prof = profile_fast_tier(problem, pop=args.population, seed=args.seed)
            result["profile"] = {"wall_s": prof["wall_s"], "top_cumulative": prof["top_cumulative"],
                                 "top_tottime": prof["top_tottime"]}
            print(f"\ncProfile of one evaluate_population({args.population}) call "
                  f"({prof['wall_s']:.3f} s under the profiler), top 12 by cumulative time:")
            print(prof["tables"]["cumulative"].rstrip())
            print("\ntop 12 by own (tottime) time:")
            print(prof["tables"]["tottime"].rstrip(), flush=True)

        del problem, session, a
        if not args.no_e2e:
            e2e = run_cli_mix(stem_dir, out_dir, population=args.population, generations=generations,
                              alternatives=args.alternatives)
            result["e2e"] = e2e
            extra = (f" (psutil tree poll {e2e['peak_rss_mb_psutil_poll']:.1f} MB)"
                     if e2e.get("peak_rss_mb_psutil_poll") else "")
            print(f"end to end: `evomix mix` pop {args.population} x {generations} generations -> "
                  f"{e2e['wall_s']:.2f} s wall, peak RSS {e2e['peak_rss_mb']:.1f} MB{extra}, "
                  f"return code {e2e['returncode']}, {e2e.get('evaluations')} evaluations, "
                  f"front {e2e.get('front_size')}, {e2e.get('alternatives_written')} alternatives written", flush=True)
            if e2e["returncode"] != 0:
                print(f"end to end FAILED: {e2e.get('stderr_tail', '')}", flush=True)
        result["environment"]["loadavg_end"] = os.getloadavg()
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
