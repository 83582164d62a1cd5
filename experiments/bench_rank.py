"""Time ``evomix rank`` and ``evomix vary`` as a musician meets them (issue 23, item 4): the new
order on screen within 2 s, the first new file after one exact render, the whole re-rank at most
25 % of the run it re-ranks; ``vary -n 8``: its first file after one render, and its total.

Workload: ``evomix.testing.songs.cached_session(STEMS, DURATION, sr=SR, seed=SEED)``; default
6 stems x 20 s (the issue-12 new user); ``--realsize``: 16 stems x 210 s at 44.1 kHz, seed 1234
(the issue-23 song, ~90 s and ~2.4 GB per ``evomix mix``: run it with ``nice``, once). Every stem
is read once first, so every step reads from the page cache.

Steps, each a fresh process (``python -m evomix ...``: imports, loading, JIT warm-up included, as
a user would see them), wall clock from just before the process starts:

1. ``evomix mix DIR --out RUN --quiet --json`` with the default search (or ``--population`` /
   ``--generations``): ``run_s``, its phase times, its exact renders, and ``render_s``, its
   render phase per exact render (the time one more render costs).
2. For each ``--weights`` (default ``masking=4`` and ``genre=4``): ``evomix rank RUN --weights W
   --out OUT --json``, reading its JSON lines as they come: ``table_s`` (the ``ranking`` line),
   ``first_file_s`` (the first ``written`` line), ``first_new_file_s`` and the exact renders
   finished by then (``renders_at_first_new_file``: 1 is "after one render") and that render's
   time (``first_render_s``, from the end of the load; compare ``render_s``), ``total_s``, the
   files reused and new, the renders made (``renders``: replacements of picks the fast tier
   misjudged included), ``ratio`` = ``total_s / run_s`` and ``cpu_ratio``, the same of the CPU
   times (on a shared machine other processes stretch wall times unevenly; the load average before
   each step is recorded).
3. ``evomix vary RUN/alt-01.json DIR --out V -n N`` (``--vary-n``, default 8; 0 skips it): the
   time each ``alt-NN.wav ready`` line appears on stderr with the renders finished by then,
   ``first_file_s``, ``total_s``.

    PYTHONPATH=$PWD python3 experiments/bench_rank.py [--stems 6 --duration 20] [--realsize]

Figures are printed as they come; the last line is the JSON of them all.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib

READY = re.compile(r"evomix: (?P<file>\S+\.wav) ready \((?:(?P<source>[^;]*); )?(?P<renders>\d+) exact render")


def _stream(cmd: list[str], *, timeout_s: float) -> dict:
    """Run ``cmd``; every stdout and stderr line with the seconds since the start, the exit code,
    the wall time and the CPU time (user + system, from the children's rusage: robust to other
    processes sharing the cores, which stretch the wall time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: dict = {"stdout": [], "stderr": []}

    def read(name, fh):
        for line in fh:
            lines[name].append((time.perf_counter() - t0, line.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(n, getattr(proc, n)), daemon=True) for n in ("stdout", "stderr")]
    for th in readers:
        th.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    wall = time.perf_counter() - t0
    for th in readers:
        th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"returncode": proc.returncode, "wall_s": wall, "cpu_s": cpu, **lines}


def _run(folder: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "evomix", "mix", str(folder), "--out", str(out), "--quiet", "--json"]
    if args.population is not None:
        cmd += ["--population", str(args.population)]
    if args.generations is not None:
        cmd += ["--generations", str(args.generations)]
    run = benchlib.run_measured(cmd, timeout_s=args.timeout)
    res = {"run_s": round(run["wall_s"], 2), "cpu_s": round(run["cpu_user_s"] + run["cpu_sys_s"], 1),
           "peak_rss_mb": round(run["peak_rss_mb"], 1), "returncode": run["returncode"],
           "loadavg_before": list(os.getloadavg())}
    if run["returncode"] != 0:
        res["stderr_tail"] = run["stderr"][-2000:]
        return res
    summary = json.loads(run["stdout"])
    res.update({"generations": summary.get("generations"), "stop_reason": summary.get("stop_reason"),
                "front_size": summary["front_size"], "alternatives": len(summary["alternatives"]),
                "exact_renders": summary["exact_renders"], "timings_s": summary["timings_s"]})
    render_phase = summary["timings_s"].get("render")
    res["render_s"] = round(render_phase / summary["exact_renders"], 2) if render_phase else None
    return res


def _rank(run_dir: Path, out: Path, weights: str, run: dict, args) -> dict:
    cmd = [sys.executable, "-m", "evomix", "rank", str(run_dir), "--weights", weights, "--out", str(out), "--json"]
    load = list(os.getloadavg())
    p = _stream(cmd, timeout_s=args.timeout)
    res = {"weights": weights, "returncode": p["returncode"], "total_s": round(p["wall_s"], 2),
           "cpu_s": round(p["cpu_s"], 1), "loadavg_before": load}
    if p["returncode"] != 0:
        res["stderr_tail"] = "\n".join(line for _, line in p["stderr"][-20:])
        return res
    events = [(t, json.loads(line)) for t, line in p["stdout"] if line.startswith("{")]
    table = next((t, e["ranking"]) for t, e in events if "ranking" in e)
    written = [(t, e["written"]) for t, e in events if "written" in e]
    summary = events[-1][1]
    new = [(t, w) for t, w in written if w["from_run"] is None]
    timings = summary.get("timings_s") or {}
    before_render = timings.get("load", 0.0) + timings.get("analysis", 0.0)  # an older rank analysed
    res.update({
        "table_s": round(table[0], 2), "planned": [row["from_run"] or "render" for row in table[1]["order"]],
        "first_file_s": round(written[0][0], 2) if written else None,
        "first_new_file_s": round(new[0][0], 2) if new else None,
        "renders_at_first_new_file": new[0][1]["renders"] if new else None,
        # the first render, from the end of the load to its file (the table and the load before it)
        "first_render_s": round(new[0][0] - table[0] - before_render, 2) if new else None,
        "files_s": [round(t, 2) for t, _ in written],
        "reused": sum(w["from_run"] is not None for _, w in written), "new_files": len(new),
        "renders": written[-1][1]["renders"] if written else 0,  # replacements of misjudged picks included
        "exact_renders": summary.get("exact_renders"), "timings_s": summary.get("timings_s"),
        "ratio": round(p["wall_s"] / run["run_s"], 3), "cpu_ratio": round(p["cpu_s"] / run["cpu_s"], 3),
    })
    return res


def _vary(run_dir: Path, folder: Path, out: Path, n: int, args) -> dict:
    cmd = [sys.executable, "-m", "evomix", "vary", str(run_dir / "alt-01.json"), str(folder), "--out", str(out),
           "-n", str(n)]
    load = list(os.getloadavg())
    p = _stream(cmd, timeout_s=args.timeout)
    res = {"n": n, "returncode": p["returncode"], "total_s": round(p["wall_s"], 2), "cpu_s": round(p["cpu_s"], 1),
           "loadavg_before": load}
    if p["returncode"] != 0:
        res["stderr_tail"] = "\n".join(line for _, line in p["stderr"][-20:])
        return res
    ready = [(t, READY.search(line)) for t, line in p["stderr"] if READY.search(line)]
    phases = {m.group(1): float(m.group(2)) for _, line in p["stderr"]
              for m in [re.search(r"evomix: (\w+): done in ([\d.]+) s", line)] if m}
    res.update({"first_file_s": round(ready[0][0], 2) if ready else None,
                "renders_at_first_file": int(ready[0][1]["renders"]) if ready else None,
                "files_s": [round(t, 2) for t, _ in ready], "renders": int(ready[-1][1]["renders"]) if ready else None,
                "phases_s": phases})
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stems", type=int, default=6)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per stem")
    ap.add_argument("--sr", type=int, default=44100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--realsize", action="store_true", help="16 stems x 210 s at 44.1 kHz, seed 1234 (issue 23)")
    ap.add_argument("--population", type=int, default=None, help="evomix mix --population (default: its own)")
    ap.add_argument("--generations", type=int, default=None, help="evomix mix --generations (default: its rule)")
    ap.add_argument("--weights", nargs="+", default=["masking=4", "genre=4"])
    ap.add_argument("--vary-n", type=int, default=8, help="variations for the vary step (0: skip it)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per command")
    benchlib.add_run_args(ap, keep_help="keep the run and the re-ranked folders here")
    args = ap.parse_args()
    if args.realsize:
        args.stems, args.duration, args.sr, args.seed = 16, 210.0, 44100, 1234

    from evomix.testing.songs import cached_session

    folder, _ = cached_session(args.stems, args.duration, sr=args.sr, seed=args.seed)
    for p in sorted(Path(folder).glob("*.wav")):  # into the page cache: no step pays the first read
        p.read_bytes()
    result = {"workload": f"{args.stems} stems x {args.duration:g} s at {args.sr} Hz, seed {args.seed}",
              "environment": benchlib.environment()}
    with benchlib.work_folder("evomix-bench-rank-", args.keep) as work:
        run = _run(Path(folder), work / "run", args)
        result["run"] = run
        print(f"mix: {run['run_s']:.1f} s, {run.get('exact_renders')} exact renders "
              f"({benchlib.fmt_s(run.get('render_s'))} each), peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
        if run["returncode"] != 0:
            print(run.get("stderr_tail", ""), file=sys.stderr)
            return benchlib.report(result)
        result["rank"] = []
        for w in args.weights:
            r = _rank(work / "run", work / f"rank-{w.replace('=', '-')}", w, run, args)
            result["rank"].append(r)
            if r["returncode"] != 0:
                print(f"rank {w}: failed\n{r.get('stderr_tail', '')}", file=sys.stderr)
                continue
            print(f"rank --weights {w}: table {r['table_s']:.2f} s, first file {benchlib.fmt_s(r['first_file_s'])}, "
                  f"first new file {benchlib.fmt_s(r['first_new_file_s'])} after "
                  f"{r['renders_at_first_new_file']} render(s) (that render {benchlib.fmt_s(r['first_render_s'])}), "
                  f"total {r['total_s']:.2f} s ({100 * r['ratio']:.1f} % of the run; CPU time "
                  f"{100 * r['cpu_ratio']:.1f} %); {r['reused']} reused, {r['new_files']} new ({r['renders']} renders)",
                  flush=True)
        if args.vary_n > 0:
            v = _vary(work / "run", Path(folder), work / "vary", args.vary_n, args)
            result["vary"] = v
            if v["returncode"] == 0:
                print(f"vary -n {args.vary_n}: first file {benchlib.fmt_s(v['first_file_s'])} after "
                      f"{v['renders_at_first_file']} render(s), total {v['total_s']:.2f} s, {v['renders']} renders; "
                      f"phases {v['phases_s']}", flush=True)
            else:
                print(f"vary: failed\n{v.get('stderr_tail', '')}", file=sys.stderr)
    return benchlib.report(result)


if __name__ == "__main__":
    sys.exit(main())
