"""Real-size benchmark: a 16-stem, 3.5-minute song -- load, analysis, search, exact renders, end to end,
memory -- against a naive pedalboard render of the same candidate, in the same run (issue 11).

Workload
--------
``evomix.testing.songs.cached_session(16, 210.0, sr=44100, seed=1234)``: 16 stereo 24-bit WAV stems x 210 s
at 44.1 kHz (kick, bass, vocal, keys, guitar, pad, snare, lead, hihat, piano, arp, fx, kick_2,
bass_2, vocal_2, keys_2; 120 BPM, A minor, sections), 889 MB. The folder is cached
(``$EVOMIX_SONG_CACHE``, default ``<temp dir>/evomix-songs``) keyed by stems, duration, sr, seed and
the generator version, so later runs reuse it; synthesis (13 s here) is not part of any figure. Every
file is read once before the first measurement, so every step below reads from the page cache.
Search settings, passed explicitly: ``--population 32 --generations 30 --alternatives 5`` (the
budget the issue's figures are measured at), genre pop, all four objectives, weights 1, seed 0.

What is measured (wall clock ``time.perf_counter``; CPU time beside it where it is cheap to get)
----------------------------------------------------------------------------------------------
1. End to end: ``python -m evomix mix DIR --out OUT --population 32 --generations 30
   --alternatives 5 --quiet --json`` in a fresh process (imports, load, analysis, search, exact
   renders of the alternatives and their spares, writing): wall time; peak RSS as ``ru_maxrss``
   from ``os.wait4`` (the largest process of the tree; read by a small launcher process, since a
   child forked from this one would count this process's own high-water RSS) and as the summed
   RSS of the process tree polled every 50 ms by psutil (sees worker processes; None without
   psutil; ``benchlib.run_measured``); from the ``--json``
   summary, the phase times ``timings_s`` (load, analysis, search, render, write, total) and the
   number of exact renders ``exact_renders`` when the CLI reports them ("n/a" / null otherwise),
   evaluations and replaced alternatives. The CPU share used meanwhile by processes outside this
   session (other people's jobs; ``other_processes_cpu_share``, also given for steps 2-4 and the
   whole run) says how far to trust the run.
2. In this process: ``evomix.io.audio.load_session`` and ``evomix.engine.analysis.analyze_session``
   (each timed once); the fast tier at the search's population (``evomix.search.parallel.score`` on all
   cores, as ``evomix mix`` does; one warm-up, then the median of ``--reps`` calls), from which
   ``search_estimate_s`` = median call x (generations + 1) -- the search's scoring alone, for when
   the CLI does not report its search phase; then the exact tier per candidate: for 2 candidates
   (``GeneTable.initial_population(3, default_rng(seed + 1))[1:]``: one near the neutral mix, one
   uniform random) ``render_exact`` + ``features_from_render`` + ``objectives.evaluate`` (the
   work ``api.mix`` does per exported alternative), each stage timed, median over the two.
3. ``python -m evomix render OUT/alt-01.json DIR -o X.wav`` in a fresh process (imports, load,
   exact render, 24-bit write): wall time and peak RSS. (If step 1 failed or was skipped, the
   alternative is the uniform random candidate of step 2, saved in the same format.)
4. The peer, in this process: pedalboard renders the SAME candidate (the parameters of that
   alt-01.json), one stem at a time on one thread: per stem ``Gain(trim_db)`` ->
   ``HighpassFilter`` (pedalboard's is first order) -> ``LowShelfFilter`` -> ``PeakFilter`` ->
   ``HighShelfFilter`` -> ``Compressor(threshold, ratio, attack, release)``, then the fader and
   the pan law of evomix (constant power for mono, balance for stereo) in numpy, summed in
   float32. Master chain: ``LowShelfFilter(100 Hz)`` -> ``HighShelfFilter(8 kHz)`` ->
   ``Compressor(attack 20 ms, release 200 ms)`` -> loudness normalisation to the target with
   pyloudnorm (BS.1770) -> ``Limiter(threshold = ceiling)`` (JUCE's limiter adds make-up gain,
   so the peer ends a few LU above the target where evomix iterates normalisation and limiting
   until it is within 0.05 LU: a peer for the work done, not for the result; its output loudness
   is reported). Three timed runs:
   (i) load (``soundfile.read`` of every file as float32, counted) + full chain;
   (ii) render only, on the loaded audio: without the master chain (stems, sum, loudness
   normalisation) and with it (stems, sum, master EQ and compressor, normalisation, limiter).

Ratios (all from this run): ``render_cli_over_peer_load_render`` = step 3 wall / peer (i);
``exact_per_candidate_over_peer_render`` = step 2's exact tier per candidate (with its scores) /
peer (ii) with the master chain (the issue wants <= 1.5); ``render_exact_over_peer_render`` = the
same with ``render_exact`` alone.

Output: human-readable lines, then one JSON object as the LAST line of stdout (null for a figure
not measured). No timing assertions: this only measures. Memory: this process holds the session
(or streams it, as ``load_session`` decides), then the peer's 1.2 GB of float32 audio; run
nothing else heavy at the same time.

Usage::

    python experiments/bench_realsize.py                         # 16 x 210 s, ~10-15 minutes today
    python experiments/bench_realsize.py --stems 4 --duration 20 --generations 3   # smoke run
    nohup python experiments/bench_realsize.py > /tmp/realsize.txt 2>&1 &
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from benchlib import (  # noqa: E402  (first: applies --blas-threads before numpy loads OpenBLAS)
    TIMING_PHASES,
    add_run_args,
    build_problem,
    cpu_snapshot,
    environment,
    fmt_s,
    foreign_cpu_s,
    maxrss_mb,
    report,
    run_cli_mix,
    run_measured,
    session_audio_nbytes,
    time_exact_tier,
    time_fast_tier,
    work_folder,
)

from evomix.testing.songs import cached_session, session_files, write_session  # noqa: E402

SR = 44100


class OtherLoad:
    """Share of the machine's CPUs that processes outside this session used during a phase."""

    def __init__(self):
        self.snap, self.t0 = cpu_snapshot(), time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self.t0
        return round(foreign_cpu_s(self.snap, cpu_snapshot()) / wall / (os.cpu_count() or 1), 3)


def read_through(files) -> tuple[float, int]:
    """Read every file once (16 MiB chunks) so that later reads come from the page cache."""
    t0, n = time.perf_counter(), 0
    for p in files:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                n += len(chunk)
    return time.perf_counter() - t0, n


# ------------------------------------------------------------------------------------------------
# evomix in this process
# ------------------------------------------------------------------------------------------------

def in_process(folder: Path, *, population: int, generations: int, reps: int, seed: int) -> dict:
    """Load + analysis, the fast tier at the search's population, and the exact tier on 2 candidates."""
    from evomix.core.runtime import available_cores

    c0 = time.process_time()
    problem, session, ta = build_problem(folder)
    res = {"load_s": ta["load_s"], "analysis_s": ta["analyze_s"], "load_analysis_cpu_s": time.process_time() - c0,
           "session_audio_mb": None if session_audio_nbytes(session) is None else session_audio_nbytes(session) / 2**20,
           "maxrss_after_analysis_mb": maxrss_mb(), "names": list(session.names), "roles": list(session.roles)}
    audio_txt = ("streamed from files" if res["session_audio_mb"] is None
                 else f"{res['session_audio_mb']:.0f} MB in memory")
    print(f"in-process load_session {ta['load_s']:.2f} s, analyze_session {ta['analyze_s']:.2f} s "
          f"(session audio {audio_txt}; "
          f"this process's peak RSS so far {res['maxrss_after_analysis_mb']:.0f} MB)", flush=True)

    cores = available_cores()
    fast = time_fast_tier(problem, pop=population, reps=reps, seed=seed, threads=cores)
    res["fast_tier"] = fast
    res["search_estimate_s"] = fast["median_s"] * (generations + 1)
    print(f"fast tier: evaluate {population} candidates on {cores} thread(s) in {fast['median_s'] * 1e3:.1f} ms "
          f"(median of {reps}) -> search estimate {res['search_estimate_s']:.2f} s for {generations + 1} populations "
          f"({fast['evals_per_s']:.0f} evaluations/s)", flush=True)

    G = problem.table.initial_population(3, np.random.default_rng(seed + 1))[1:]  # near-neutral, uniform
    exact = time_exact_tier(problem, session, n_candidates=len(G), seed=seed, genomes=G)
    res["exact_tier"] = exact
    res["maxrss_after_exact_mb"] = maxrss_mb()
    print(f"exact tier in-process: {exact['s_per_candidate']:.2f} s per candidate (median of {exact['candidates']}: "
          f"{', '.join(f'{t:.2f}' for t in exact['times_s'])} s; render_exact {exact['render_exact_s']:.2f} s + "
          f"features_from_render {exact['features_from_render_s']:.2f} s + objectives {exact['objectives_s']:.3f} s; "
          f"CPU {exact['cpu_s_per_candidate_median']:.2f} s); "
          f"this process's peak RSS {res['maxrss_after_exact_mb']:.0f} MB",
          flush=True)
    # the uniform random candidate, in alt-NN.json form, for when the end-to-end run gave none
    params = problem.table.decode(G, problem.analysis.trim_db)
    res["fallback_alt"] = {"name": "bench-candidate", "sr": session.sr, "target_lufs": problem.target.target_lufs,
                           "ceiling_dbtp": problem.target.ceiling_dbtp,
                           "params": params.to_dict(1, session.names, session.roles)}
    del problem, session, params
    gc.collect()
    return res


# ------------------------------------------------------------------------------------------------
# The peer: pedalboard, one candidate, one stem at a time
# ------------------------------------------------------------------------------------------------

def _pan_gains(pan: float, mono: bool) -> np.ndarray:
    """Evomix's pan law: constant power for mono sources, balance for stereo ones -> (2,) [L, R]."""
    th = (pan + 1.0) * np.pi / 4.0
    if mono:
        return np.array([np.cos(th), np.sin(th)])
    return np.minimum(1.0, np.sqrt(2.0) * np.array([np.cos(th), np.sin(th)]))


def peer_load(files) -> tuple[list[np.ndarray], int, float]:
    """Soundfile float32 reads -> list of (ch, samples) float32, sr, seconds."""
    t0 = time.perf_counter()
    audio, sr = [], None
    for p in files:
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)  # (samples, ch)
        audio.append(np.ascontiguousarray(x.T))  # (samples, ch) -> (ch, samples)
    return audio, sr, time.perf_counter() - t0


def peer_render(audio, names, sr: int, alt: dict, *, master: bool) -> tuple[np.ndarray, dict]:
    """Render the candidate ``alt`` (an alt-NN.json dict) with pedalboard -> ((2, samples) float32, stage times)."""
    import pedalboard as pb
    import pyloudnorm as pyln

    p = alt.get("params", alt)
    target_lufs, ceiling_dbtp = float(alt.get("target_lufs", -14.0)), float(alt.get("ceiling_dbtp", -1.0))
    times = {}
    t0 = time.perf_counter()
    mix = None
    for x, name in zip(audio, names):
        st = p["stems"][name]
        eq, comp = st["eq"], st["comp"]
        board = pb.Pedalboard([
            pb.Gain(gain_db=st["trim_db"]),
            pb.HighpassFilter(cutoff_frequency_hz=eq["highpass_hz"]),
            pb.LowShelfFilter(cutoff_frequency_hz=eq["low_shelf_hz"], gain_db=eq["low_shelf_db"], q=0.707),
            pb.PeakFilter(cutoff_frequency_hz=eq["peak_hz"], gain_db=eq["peak_db"], q=eq["peak_q"]),
            pb.HighShelfFilter(cutoff_frequency_hz=eq["high_shelf_hz"], gain_db=eq["high_shelf_db"], q=0.707),
            pb.Compressor(threshold_db=comp["threshold_db"], ratio=comp["ratio"], attack_ms=comp["attack_ms"],
                          release_ms=comp["release_ms"]),
        ])
        y = board(x, sr)  # (ch, samples) float32
        g = (10.0 ** (st["gain_db"] / 20.0) * _pan_gains(st["pan"], x.shape[0] == 1)).astype(np.float32)
        y = y * g[:, None]  # (1 or 2, n) * (2, 1) -> (2, n)
        mix = y if mix is None else mix + y
    times["stems_s"] = time.perf_counter() - t0
    if master:
        t = time.perf_counter()
        m = p["master"]
        board = pb.Pedalboard([
            pb.LowShelfFilter(cutoff_frequency_hz=m["eq"]["low_shelf_hz"], gain_db=m["eq"]["low_shelf_db"], q=0.707),
            pb.HighShelfFilter(cutoff_frequency_hz=m["eq"]["high_shelf_hz"], gain_db=m["eq"]["high_shelf_db"], q=0.707),
            pb.Compressor(threshold_db=m["comp"]["threshold_db"], ratio=m["comp"]["ratio"],
                          attack_ms=m["comp"]["attack_ms"], release_ms=m["comp"]["release_ms"]),
        ])
        mix = board(mix, sr)
        times["master_eq_comp_s"] = time.perf_counter() - t
    t = time.perf_counter()
    loud = pyln.Meter(sr).integrated_loudness(mix.T)  # pyloudnorm wants (samples, ch)
    mix = mix * np.float32(10.0 ** ((target_lufs - loud) / 20.0))
    times["loudness_normalise_s"] = time.perf_counter() - t
    if master:
        t = time.perf_counter()
        mix = pb.Limiter(threshold_db=ceiling_dbtp, release_ms=100.0)(mix, sr)
        times["limiter_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    return mix, times


def run_peer(files, alt: dict) -> dict:
    """(i) load + full chain; (ii) render only, without and with the master chain."""
    import pedalboard
    import pyloudnorm as pyln

    names = [Path(f).stem for f in files]
    c0 = time.process_time()
    t0 = time.perf_counter()
    audio, sr, load_s = peer_load(files)
    mix, full = peer_render(audio, names, sr, alt, master=True)
    load_render_s = time.perf_counter() - t0
    load_render_cpu_s = time.process_time() - c0
    del mix
    _, plain = peer_render(audio, names, sr, alt, master=False)
    mix, mastered = peer_render(audio, names, sr, alt, master=True)
    out_lufs = float(pyln.Meter(sr).integrated_loudness(mix.T))  # not timed: a check that it rendered
    res = {"pedalboard": pedalboard.__version__, "load_s": load_s, "load_render_s": load_render_s,
           "load_render_cpu_s": load_render_cpu_s, "load_render_stages_s": full,
           "render_no_master_s": plain["total_s"], "render_no_master_stages_s": plain,
           "render_master_s": mastered["total_s"], "render_master_stages_s": mastered,
           "output_integrated_lufs": out_lufs,
           "output_sample_peak_dbfs": float(20 * np.log10(np.abs(mix).max() + 1e-12)),
           "audio_mb": sum(x.nbytes for x in audio) / 2**20}
    del audio, mix
    gc.collect()
    return res


# ------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stems", type=int, default=16, help="number of stereo stems (16)")
    ap.add_argument("--duration", type=float, default=210.0, help="stem length, s (210)")
    ap.add_argument("--seed", type=int, default=0, help="search seed; the song's seed is 1234 + this (0)")
    ap.add_argument("--population", type=int, default=32, help="passed to `evomix mix` (32)")
    ap.add_argument("--generations", type=int, default=30, help="passed to `evomix mix` (30)")
    ap.add_argument("--alternatives", type=int, default=5, help="passed to `evomix mix` (5)")
    ap.add_argument("--reps", type=int, default=5, help="timed fast-tier calls (median; 5)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="limit for each subprocess, s (3600)")
    ap.add_argument("--no-e2e", action="store_true", help="skip `evomix mix` (render and peer use a random candidate)")
    ap.add_argument("--no-cache", action="store_true", help="synthesise into the work folder instead of the song cache")
    add_run_args(ap, keep_help="keep the work folder (mix output, renders) here")
    args = ap.parse_args(argv)
    if args.stems < 1 or args.duration <= 0 or args.population < 2 or args.generations < 0 or args.alternatives < 1:
        ap.error("need --stems >= 1, --duration > 0, --population >= 2, --generations >= 0, --alternatives >= 1")

    song_seed = 1234 + args.seed
    result: dict = {"benchmark": "realsize", "workload": {
        "stems": args.stems, "duration_s": args.duration, "sr": SR, "song_seed": song_seed, "channels": 2,
        "format": "WAV PCM_24", "population": args.population, "generations": args.generations,
        "alternatives": args.alternatives, "search_seed": args.seed}, "environment": environment()}
    with work_folder("evomix-realsize-", args.keep) as work:
        run_load = OtherLoad()
        t0 = time.perf_counter()
        if args.no_cache:
            folder, reused = work / "stems", False
            write_session(folder, args.stems, args.duration, sr=SR, seed=song_seed)
        else:
            folder, reused = cached_session(args.stems, args.duration, sr=SR, seed=song_seed)
        files = session_files(folder)
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        result["workload"].update({"folder": str(folder), "cache_reused": reused,
                                   "synthesis_s": time.perf_counter() - t0,
                                   "wav_mb": size_mb, "files": [p.name for p in files]})
        warm_s, _ = read_through(files)
        print(f"workload: {args.stems} stereo stems x {args.duration:g} s @ {SR} Hz, 24-bit WAV, "
              f"{size_mb:.0f} MB in {folder} "
              f"({'reused from the cache' if reused else 'synthesised'} in {result['workload']['synthesis_s']:.1f} s; "
              f"read through in {warm_s:.1f} s); search: population {args.population}, {args.generations} generations, "
              f"{args.alternatives} alternatives", flush=True)
        code = result["environment"]["code"]
        print(f"code: evomix {code['commit']} ({result['environment']['evomix_file']})"
              + (f" + uncommitted changes in {', '.join(code['modified_files'])}" if code["modified_files"] else "")
              + f"; load average {os.getloadavg()}", flush=True)

        # 1. end to end ------------------------------------------------------------------------
        alt_path = None
        if not args.no_e2e:
            load = OtherLoad()
            e2e = run_cli_mix(folder, work / "out", population=args.population, generations=args.generations,
                              alternatives=args.alternatives, timeout_s=args.timeout,
                              extra_args=("--seed", str(args.seed)))
            e2e["other_processes_cpu_share"] = load.share()
            result["e2e"] = e2e
            tm = e2e.get("timings_s") or {}
            poll = e2e.get("peak_rss_mb_psutil_poll")
            print(f"end to end: `evomix mix` {e2e['wall_s']:.1f} s wall, peak RSS {e2e['peak_rss_mb']:.0f} MB (wait4)"
                  + (f", {poll:.0f} MB (psutil tree poll)" if poll else "")
                  + f", CPU {e2e['cpu_user_s'] + e2e['cpu_sys_s']:.0f} s, return code {e2e['returncode']}; "
                  f"{e2e.get('evaluations')} evaluations, front {e2e.get('front_size')}, "
                  f"{e2e.get('alternatives_written')} alternatives, replaced {e2e.get('replaced_alternatives')}; "
                  f"other processes used {100 * e2e['other_processes_cpu_share']:.0f}% of the CPUs meanwhile",
                  flush=True)
            print("  phases (CLI --json timings_s): " + ", ".join(f"{k} {fmt_s(tm.get(k))}" for k in TIMING_PHASES)
                  + f"; exact renders: {'n/a' if e2e.get('exact_renders') is None else e2e['exact_renders']}",
                  flush=True)
            if e2e["returncode"] != 0:
                print(f"end to end FAILED: {e2e.get('stderr_tail', '')}", flush=True)
            cand = work / "out" / "alt-01.json"
            if cand.exists():
                alt_path = cand

        # 2. in this process --------------------------------------------------------------------
        load = OtherLoad()
        ip = in_process(folder, population=args.population, generations=args.generations, reps=max(3, args.reps),
                        seed=args.seed)
        ip["other_processes_cpu_share"] = load.share()
        fallback = ip.pop("fallback_alt")
        result["in_process"] = ip
        if alt_path is None:
            alt_path = work / "bench-candidate.json"
            alt_path.write_text(json.dumps(fallback))
            result["alt_source"] = "random candidate (no end-to-end alt-01.json)"
        else:
            result["alt_source"] = str(alt_path)
        alt = json.loads(alt_path.read_text())

        # 3. `evomix render` --------------------------------------------------------------------
        load = OtherLoad()
        rnd = run_measured([sys.executable, "-m", "evomix", "render", str(alt_path), str(folder),
                            "-o", str(work / "render.wav"), "--force"], timeout_s=args.timeout)
        rnd.pop("stdout")
        err = rnd.pop("stderr")
        if rnd["returncode"] != 0:
            rnd["stderr_tail"] = err[-2000:]
        rnd["other_processes_cpu_share"] = load.share()
        result["render_cli"] = rnd
        print(f"`evomix render {alt_path.name}` (load + exact render + write): {rnd['wall_s']:.1f} s wall, "
              f"peak RSS {rnd['peak_rss_mb']:.0f} MB, CPU {rnd['cpu_user_s'] + rnd['cpu_sys_s']:.1f} s, "
              f"return code {rnd['returncode']}", flush=True)
        if rnd["returncode"] != 0:
            print(f"evomix render FAILED: {rnd.get('stderr_tail', '')}", flush=True)

        # 4. the peer ---------------------------------------------------------------------------
        load = OtherLoad()
        peer = run_peer(files, alt)
        peer["other_processes_cpu_share"] = load.share()
        result["peer"] = peer
        print(f"peer (pedalboard {peer['pedalboard']}, the same candidate): load {peer['load_s']:.1f} s "
              f"+ full chain -> {peer['load_render_s']:.1f} s; "
              f"render only: {peer['render_no_master_s']:.1f} s without the master chain, "
              f"{peer['render_master_s']:.1f} s with it (stems {peer['render_master_stages_s']['stems_s']:.1f} s, "
              f"master EQ+comp {peer['render_master_stages_s']['master_eq_comp_s']:.1f} s, loudness "
              f"{peer['render_master_stages_s']['loudness_normalise_s']:.1f} s, "
              f"limiter {peer['render_master_stages_s']['limiter_s']:.1f} s); "
              f"output {peer['output_integrated_lufs']:.1f} LUFS", flush=True)

        # ratios ----------------------------------------------------------------------------------
        ex = ip["exact_tier"]
        ratios = {
            "render_cli_over_peer_load_render": (rnd["wall_s"] / peer["load_render_s"] if rnd["returncode"] == 0
                                                 else None),
            "exact_per_candidate_over_peer_render": ex["s_per_candidate"] / peer["render_master_s"],
            "render_exact_over_peer_render": ex["render_exact_s"] / peer["render_master_s"],
        }
        result["ratios"] = ratios
        print(f"ratios: evomix render / peer load+render = "
              f"{ratios['render_cli_over_peer_load_render'] or float('nan'):.2f}x "
              f"(issue: < 1); exact tier per candidate (with scores) / peer render with master = "
              f"{ratios['exact_per_candidate_over_peer_render']:.2f}x (issue: <= 1.5); render_exact alone / peer = "
              f"{ratios['render_exact_over_peer_render']:.2f}x", flush=True)

        e2e = result.get("e2e") or {}
        tm = e2e.get("timings_s") or {}
        result["summary"] = {
            "e2e_wall_s": e2e.get("wall_s"), "e2e_peak_rss_mb": e2e.get("peak_rss_mb"),
            "e2e_peak_rss_mb_psutil_poll": e2e.get("peak_rss_mb_psutil_poll"),
            "e2e_exact_renders": e2e.get("exact_renders"),
            "e2e_timings_s": {k: tm.get(k) for k in TIMING_PHASES},
            "load_s": ip["load_s"], "analysis_s": ip["analysis_s"],
            "search_s": tm.get("search"), "search_estimate_s": ip["search_estimate_s"],
            "exact_per_candidate_s": ex["s_per_candidate"], "render_exact_s": ex["render_exact_s"],
            "render_cli_wall_s": rnd["wall_s"], "render_cli_peak_rss_mb": rnd["peak_rss_mb"],
            "peer_load_render_s": peer["load_render_s"], "peer_render_no_master_s": peer["render_no_master_s"],
            "peer_render_master_s": peer["render_master_s"], **ratios,
        }
        s = result["summary"]
        rss_txt = "n/a" if s["e2e_peak_rss_mb"] is None else f"{s['e2e_peak_rss_mb']:.0f} MB"
        print(f"SUMMARY: end to end {fmt_s(s['e2e_wall_s'], 1)}, peak RSS {rss_txt}, "
              f"exact renders {'n/a' if s['e2e_exact_renders'] is None else s['e2e_exact_renders']}; "
              f"load {fmt_s(s['load_s'])}, analysis {fmt_s(s['analysis_s'])}, search {fmt_s(s['search_s'])} "
              f"(estimate {fmt_s(s['search_estimate_s'])}), exact per candidate {fmt_s(s['exact_per_candidate_s'])}, "
              f"evomix render {fmt_s(s['render_cli_wall_s'])}, peer load+render {fmt_s(s['peer_load_render_s'])}, "
              f"peer render {fmt_s(s['peer_render_master_s'])}", flush=True)
        result["environment"]["loadavg_end"] = os.getloadavg()
        result["other_processes_cpu_share"] = run_load.share()
        print(f"other processes used {100 * result['other_processes_cpu_share']:.0f}% of the CPUs over the whole run "
              f"(end to end {100 * (result.get('e2e') or {}).get('other_processes_cpu_share', float('nan')):.0f}%, "
              f"in-process {100 * ip['other_processes_cpu_share']:.0f}%, "
              f"render {100 * rnd['other_processes_cpu_share']:.0f}%, "
              f"peer {100 * peer['other_processes_cpu_share']:.0f}%)", flush=True)
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
