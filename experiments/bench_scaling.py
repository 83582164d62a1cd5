"""Scaling benchmark: fast-tier cost and memory as the session grows (stems x duration).

For every case (stems in 4, 8, 16, 32) x (duration in 30, 120, 300 s) -- ``--quick``: (4, 8) x (10, 30) --
this script

1. synthesises the stems (``evomix.testing.songs.write_session``, as ``bench_throughput.py``: stereo, 44.1 kHz,
   24-bit WAV, roles kick, bass, vocal, keys, guitar, pad, snare, lead, hihat, piano, arp, fx, then
   numbered variants) into a temporary folder -- in this (parent) process, so synthesis does not
   count towards the case's memory or time limit;
2. runs the case in a FRESH subprocess of this script (hidden ``--case STEMS DURATION`` flag), which
   times ``load_session`` and ``analyze_session``, then calls ``Problem.evaluate_population`` on
   ``--reps`` (3) fresh populations of 64 genomes (``GeneTable.initial_population``; no warm-up)
   and reports the median call time / 64 = seconds per candidate evaluation (all four objectives);
3. records the case's peak memory = ``ru_maxrss`` of that child (``os.wait4``; kB on Linux), and,
   when psutil is installed, its RSS polled every 0.1 s (used to enforce the limit). The child also
   reports its own ``ru_maxrss`` after loading, after analysis and after the timed calls, so the
   stage that sets the peak is visible.

Limits: a case whose RSS exceeds ``--mem-limit-gb`` (4 GB) is killed and reported as
``memory limit`` with the stage it had reached; a case running longer than ``--timeout`` (600 s) is
killed and reported as ``timeout``. Neither stops the script.

Growth exponent: least-squares slope of log(s per evaluation) against log(stems x duration) over
the cases that finished, on wall time and on process CPU time (1 = linear growth; less than 1 when
fixed per-call overheads still matter). The slope of log(peak RSS) is reported as well, and the
slope against each factor alone.

Output: a table, the fit, and a JSON list (one object per case) as the LAST line of stdout.
No timing assertions: this only measures.

Usage::

    python experiments/bench_scaling.py --quick
    nohup python experiments/bench_scaling.py > /tmp/scaling.log 2>&1 &
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# importing benchlib applies --blas-threads (it must act before numpy loads OpenBLAS)
import argparse
import json
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import analysis_nbytes, code_version, session_audio_nbytes  # noqa: E402

from evomix.pipeline import make_problem
from evomix.testing.songs import write_session

SR = 44100

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

FULL_STEMS = (4, 8, 16, 32)
FULL_DURATIONS = (30.0, 120.0, 300.0)
QUICK_STEMS = (4, 8)
QUICK_DURATIONS = (10.0, 30.0)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _emit(tag: str, payload) -> None:
    print(f"{tag} {json.dumps(payload, default=float)}", flush=True)


def run_case(stems: int, duration: float, folder: Path, *, pop: int, reps: int, seed: int) -> dict:
    """Child side: analyse the folder and time the fast tier. Prints STAGE lines and a RESULT line."""
    _emit("STAGE", {"stage": "import", "maxrss_mb": _maxrss_mb()})
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session  # imports outside the timed region
    from evomix.search.genome import GeneTable
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    _emit("STAGE", {"stage": "load_session", "maxrss_mb": _maxrss_mb()})
    t0 = time.perf_counter()
    session = load_session([folder])
    ta = {"load_s": time.perf_counter() - t0, "maxrss_after_load_mb": _maxrss_mb()}
    _emit("STAGE", {"stage": "analyze_session", "load_s": ta["load_s"], "maxrss_mb": _maxrss_mb()})
    t0 = time.perf_counter()
    a = analyze_session(session)
    ta["analyze_s"] = time.perf_counter() - t0
    names = tuple(OBJECTIVE_NAMES)
    problem = make_problem(a, GeneTable(session.n_stems), Target(profile=load_profile("pop")), names,
                           tuple(1.0 for _ in names))
    res = {
        "stems": stems, "duration_s": duration, "load_s": ta["load_s"], "analyze_s": ta["analyze_s"],
        "frames": int(a.n_frames), "heavy_frames": int(len(a.heavy_frames)), "genes": problem.table.n_genes,
        "session_audio_mb": None if session_audio_nbytes(session) is None else session_audio_nbytes(session) / 2**20,
        "analysis_arrays_mb": analysis_nbytes(a) / 2**20,
        "maxrss_after_load_mb": ta["maxrss_after_load_mb"], "maxrss_after_analysis_mb": _maxrss_mb(),
    }
    _emit("STAGE", {"stage": "evaluate", **res})
    rng = np.random.default_rng(seed)
    times, cpu = [], []
    for r in range(reps):
        G = problem.table.initial_population(pop, rng)
        c0, t0 = time.process_time(), time.perf_counter()
        F = problem.evaluate_population(G)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert F.shape == (pop, len(problem.names)) and np.isfinite(F).all()
        _emit("STAGE", {"stage": f"evaluate {r + 1}/{reps} done", "t_s": times[-1], "maxrss_mb": _maxrss_mb()})
    med = statistics.median(times)
    res.update({"pop": pop, "reps": reps, "call_times_s": times, "median_call_s": med, "call_cpu_s": cpu,
                "cpu_s_per_eval": statistics.median(cpu) / pop,
                "s_per_eval": med / pop, "evals_per_s": pop / med, "maxrss_self_mb": _maxrss_mb()})
    _emit("RESULT", res)
    return res


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def launch_case(stems: int, duration: float, folder: Path, *, pop: int, reps: int, seed: int,
                timeout_s: float, mem_limit_gb: float) -> dict:
    """Parent side: run one case in a fresh process; enforce the limits; collect the result."""
    limit = int(mem_limit_gb * 2**30)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", str(stems), repr(float(duration)),
           "--stems-dir", str(folder), "--population", str(pop), "--reps", str(reps), "--seed", str(seed)]
    preexec = None
    if psutil is None:  # no polling possible: cap the address space instead (coarser: virtual memory)
        def preexec():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryDirectory(prefix="evomix-case-") as td:
        out_p, err_p = Path(td) / "stdout", Path(td) / "stderr"
        with open(out_p, "wb") as fo, open(err_p, "wb") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, preexec_fn=preexec)
            ps = psutil.Process(proc.pid) if psutil is not None else None
            peak_poll, killed, status, ru = 0, None, None, None
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if ps is not None:
                    try:
                        rss = ps.memory_info().rss
                        peak_poll = max(peak_poll, rss)
                        if rss > limit:
                            killed = "memory limit"
                    except psutil.NoSuchProcess:
                        pass
                if killed is None and time.perf_counter() - t0 > timeout_s:
                    killed = "timeout"
                if killed:
                    proc.kill()
                    pid, status, ru = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.1)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
        lines = _read_lines(out_p)
        err = _read_lines(err_p)
    rec: dict = {"stems": stems, "duration_s": duration, "size": stems * duration, "wall_s": wall,
                 "peak_rss_mb": ru.ru_maxrss / 1024.0,
                 "peak_rss_mb_poll": peak_poll / 2**20 if ps is not None else None,
                 "returncode": proc.returncode}
    stage = None
    for line in lines:
        tag, _, payload = line.partition(" ")
        try:
            d = json.loads(payload)
        except json.JSONDecodeError:
            continue
        if tag == "STAGE":
            stage = d
        elif tag == "RESULT":
            rec.update({k: v for k, v in d.items() if k not in ("stems", "duration_s")})
    if killed:
        rec["status"] = killed
        rec["limit"] = f"> {mem_limit_gb:g} GB RSS" if killed == "memory limit" else f"> {timeout_s:g} s"
        rec["stage_reached"] = stage
    elif proc.returncode != 0 or "s_per_eval" not in rec:
        rec["status"] = "error"
        rec["stage_reached"] = stage
        rec["stderr_tail"] = "\n".join(err[-15:])
        if proc.returncode < 0 and -proc.returncode == 9:
            rec["status"] = "killed (SIGKILL, possibly the kernel OOM killer)"
    else:
        rec["status"] = "ok"
    return rec


def fit_slope(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(np.log(x)) == 0:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def summarise(records: list[dict]) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    fit = {
        "n_cases_fitted": len(ok),
        "slope_time_per_eval_vs_stems_x_duration": fit_slope([r["size"] for r in ok], [r["s_per_eval"] for r in ok]),
        "slope_cpu_time_per_eval_vs_stems_x_duration": fit_slope([r["size"] for r in ok],
                                                                 [r["cpu_s_per_eval"] for r in ok]),
        "slope_peak_rss_vs_stems_x_duration": fit_slope([r["size"] for r in ok], [r["peak_rss_mb"] for r in ok]),
        "slope_analyze_s_vs_stems_x_duration": fit_slope([r["size"] for r in ok],
                                                         [r["load_s"] + r["analyze_s"] for r in ok]),
        "slope_vs_stems_at_duration": {}, "slope_vs_duration_at_stems": {},
    }
    for d in sorted({r["duration_s"] for r in ok}):
        sub = [r for r in ok if r["duration_s"] == d]
        fit["slope_vs_stems_at_duration"][f"{d:g}"] = fit_slope([r["stems"] for r in sub],
                                                                [r["s_per_eval"] for r in sub])
    for s in sorted({r["stems"] for r in ok}):
        sub = [r for r in ok if r["stems"] == s]
        fit["slope_vs_duration_at_stems"][str(s)] = fit_slope([r["duration_s"] for r in sub],
                                                              [r["s_per_eval"] for r in sub])
    return fit


def print_row(r: dict, header: bool = False) -> None:
    if header:
        print(f"{'stems':>5} {'dur s':>6} {'stems*s':>8} {'frames/heavy':>12} {'status':<13} {'load s':>7} "
              f"{'anlz s':>7} {'call s':>8} {'cpu s':>8} {'ms/eval':>8} {'evals/s':>8} {'peakRSS MB':>10} "
              f"{'after anlz':>10}  note", flush=True)
        return
    if r["status"] == "ok":
        print(f"{r['stems']:>5} {r['duration_s']:>6g} {r['size']:>8g} "
              f"{str(r['frames']) + '/' + str(r['heavy_frames']):>12} {r['status']:<13} "
              f"{r['load_s']:>7.2f} {r['analyze_s']:>7.2f} {r['median_call_s']:>8.3f} "
              f"{r['cpu_s_per_eval'] * r['pop']:>8.3f} {1e3 * r['s_per_eval']:>8.2f} "
              f"{r['evals_per_s']:>8.1f} {r['peak_rss_mb']:>10.0f} {r['maxrss_after_analysis_mb']:>10.0f}", flush=True)
    else:
        st = r.get("stage_reached") or {}
        note = f"stage: {st.get('stage')}" if st else ""
        if r.get("limit"):
            note = f"{r['limit']}; {note}"
        print(f"{r['stems']:>5} {r['duration_s']:>6g} {r['size']:>8g} {'':>12} {r['status']:<13} "
              f"{'':>7} {'':>7} {'':>8} {'':>8} {'':>8} {'':>8} {r['peak_rss_mb']:>10.0f} {'':>10}  {note}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stems (4, 8) x duration (10, 30) s")
    ap.add_argument("--stems-list", type=int, nargs="+", default=None, help="override the stem counts")
    ap.add_argument("--durations", type=float, nargs="+", default=None, help="override the durations, s")
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3, help="timed evaluate_population calls per case (median)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-case limit, s (child process only)")
    ap.add_argument("--mem-limit-gb", type=float, default=4.0, help="per-case RSS limit, GB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP/MKL_NUM_THREADS for every case (default: leave unset)")
    ap.add_argument("--case", nargs=2, metavar=("STEMS", "DURATION"), help=argparse.SUPPRESS)
    ap.add_argument("--stems-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.case:  # hidden: one case, in a fresh process
        stems, duration = int(args.case[0]), float(args.case[1])
        tmp = None
        folder = args.stems_dir
        if folder is None:
            tmp = Path(tempfile.mkdtemp(prefix="evomix-scale-"))
            folder = tmp / "stems"
            write_session(folder, stems, duration, sr=SR, seed=1234 + args.seed)
        try:
            run_case(stems, duration, folder, pop=args.population, reps=args.reps, seed=args.seed)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return 0

    stems_list = args.stems_list or (QUICK_STEMS if args.quick else FULL_STEMS)
    durations = args.durations or (QUICK_DURATIONS if args.quick else FULL_DURATIONS)
    cases = sorted(((s, d) for s in stems_list for d in durations), key=lambda c: (c[0] * c[1], c[0]))
    print(f"scaling: {len(cases)} cases, population {args.population}, median of {args.reps} calls, "
          f"limits {args.mem_limit_gb:g} GB RSS / {args.timeout:g} s per case, "
          f"rss enforcement: {'psutil polling' if psutil else 'RLIMIT_AS'}, {SR} Hz stereo stems", flush=True)
    code = code_version()
    print(f"code: evomix {code['commit']}" + (f" + uncommitted changes in {', '.join(code['modified_files'])}"
                                             if code["modified_files"] else "") + f"; load average {os.getloadavg()}; "
          f"BLAS threads env: {os.environ.get('OPENBLAS_NUM_THREADS', 'unset (OpenBLAS default)')}")
    print_row({}, header=True)
    records = []
    t_all = time.perf_counter()
    for stems, duration in cases:
        work = Path(tempfile.mkdtemp(prefix="evomix-scale-"))
        try:
            t0 = time.perf_counter()
            write_session(work / "stems", stems, duration, sr=SR, seed=1234 + args.seed)
            synth_s = time.perf_counter() - t0
            rec = launch_case(stems, duration, work / "stems", pop=args.population, reps=args.reps,
                              seed=args.seed, timeout_s=args.timeout, mem_limit_gb=args.mem_limit_gb)
            rec["synthesis_s"] = synth_s
        except Exception as e:  # never let one case stop the sweep
            rec = {"stems": stems, "duration_s": duration, "size": stems * duration, "status": "error",
                   "error": f"{type(e).__name__}: {e}", "peak_rss_mb": float("nan")}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        records.append(rec)
        print_row(rec)
    fit = summarise(records)
    fit["code"] = code
    fit["blas_threads_env"] = os.environ.get("OPENBLAS_NUM_THREADS")
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s; load average at the end {os.getloadavg()}")
    s = fit["slope_time_per_eval_vs_stems_x_duration"]
    print(f"growth exponent: slope of log(s per eval) vs log(stems x duration) = "
          f"{'n/a' if s is None else f'{s:.3f}'} over {fit['n_cases_fitted']} finished cases (1 = linear)")
    c = fit["slope_cpu_time_per_eval_vs_stems_x_duration"]
    print(f"same fit on CPU time per eval (less sensitive to other load on the machine): "
          f"{'n/a' if c is None else f'{c:.3f}'}")
    m = fit["slope_peak_rss_vs_stems_x_duration"]
    print(f"peak RSS exponent vs stems x duration = {'n/a' if m is None else f'{m:.3f}'}; "
          f"load+analysis time exponent = {fit['slope_analyze_s_vs_stems_x_duration']}")
    print(f"slope vs stems at fixed duration: {fit['slope_vs_stems_at_duration']}; "
          f"vs duration at fixed stems: {fit['slope_vs_duration_at_stems']}")
    bad = [r for r in records if r["status"] != "ok"]
    for r in bad:
        print(f"not finished: {r['stems']} stems x {r['duration_s']:g} s -> {r['status']} "
              f"{r.get('limit', '')} (peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"stage {(r.get('stage_reached') or {}).get('stage')})"
              + (f"\n  {r.get('error') or r.get('stderr_tail', '')}" if r["status"] == "error" else ""))
    print("fit " + json.dumps(fit))
    print(json.dumps(records, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
