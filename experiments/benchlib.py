"""Shared pieces of the benchmarks in ``experiments/``: threads, the session and its Problem, the
exact tier timed per candidate, subprocesses measured for wall time and peak RSS, the environment,
and a run's common options, work folder and JSON report.

Import it FIRST in a benchmark script (before numpy): importing it applies ``--blas-threads N``
from ``sys.argv`` to the OpenBLAS/OMP/MKL thread variables, which only act before numpy loads.

The songs themselves come from :mod:`evomix.testing.songs` (one synthesizer for the whole project).
"""
from __future__ import annotations

import os
import sys


def blas_threads_from_argv(argv) -> None:
    """``--blas-threads N`` must act before numpy loads OpenBLAS: set the thread variables now
    (inherited by every subprocess the script starts)."""
    for i, a in enumerate(argv):
        n = (a.split("=", 1)[1] if a.startswith("--blas-threads=")
             else (argv[i + 1] if a == "--blas-threads" and i + 1 < len(argv) else None))
        if n is not None:
            for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[k] = str(int(n))


blas_threads_from_argv(sys.argv)

import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

try:  # optional (the ``bench`` extra): only used to cross-check peak RSS by polling
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


# ------------------------------------------------------------------------------------------------
# The session, its Problem, and the exact tier per candidate
# ------------------------------------------------------------------------------------------------

def build_problem(folder: Path, genre: str = "pop"):
    """load_session + analyze_session (timed) -> (problem, session, timings dict)."""
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session
    from evomix.pipeline import make_problem
    from evomix.search.genome import GeneTable
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    t0 = time.perf_counter()
    session = load_session([folder])
    t1 = time.perf_counter()
    analysis = analyze_session(session)
    t2 = time.perf_counter()
    target = Target(profile=load_profile(genre), target_lufs=-14.0, ceiling_dbtp=-1.0)
    names = tuple(OBJECTIVE_NAMES)
    problem = make_problem(analysis, GeneTable(session.n_stems), target, names, tuple(1.0 for _ in names))
    return problem, session, {"load_s": t1 - t0, "analyze_s": t2 - t1, "total_s": t2 - t0}


def analysis_nbytes(analysis) -> int:
    """Bytes held in the Analysis' numpy arrays (whatever fields the current engine defines)."""
    import dataclasses

    return sum(v.nbytes for f in dataclasses.fields(analysis)
               if isinstance(v := getattr(analysis, f.name), np.ndarray))


def session_audio_nbytes(session) -> int | None:
    """Bytes of the in-memory session audio, or None when the session streams from its files."""
    audio = getattr(session, "audio", None)
    return None if audio is None else int(audio.nbytes)


def exact_render(session, params, i: int, target, grid):
    """``render_exact`` called the way ``api.mix`` calls it in the engine version installed."""
    import inspect

    from evomix.engine.render import render_exact

    sig = inspect.signature(render_exact).parameters
    if "grid" in sig:  # newer engine: takes the Session
        kw = {}
        if "threads" in sig:  # newer still: a render's stems on threads, as many as api.mix gives it
            try:
                from evomix.core.runtime import available_cores as render_threads
            except ImportError:
                from evomix.core.runtime import available_cores as render_threads
            kw["threads"] = render_threads()
        return render_exact(session, session.is_mono, session.sr, params, index=i, grid=grid,
                            target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp, **kw)
    return render_exact(session.audio, session.is_mono, session.sr, params, index=i,
                        target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)


def random_population(problem, kind: str, n: int, rng) -> np.ndarray:
    if kind == "initial":
        return problem.table.initial_population(n, rng)
    return rng.uniform(0.0, 1.0, size=(n, problem.table.n_genes))


def time_fast_tier(problem, *, pop: int, reps: int, seed: int, warmup: bool = True, threads: int = 1) -> dict:
    """Median wall time of scoring fresh populations of ``pop`` genomes on ``threads`` threads
    (``evomix.search.parallel.score``, as ``evomix mix`` does; 1 = ``Problem.evaluate_population``)."""
    from evomix.search.parallel import score

    rng = np.random.default_rng(seed)
    if warmup:
        score(problem, random_population(problem, "initial", pop, rng), threads)
    times = {"initial": [], "uniform": []}
    cpu = []
    for r in range(reps):
        kind = "initial" if r % 2 == 0 else "uniform"
        G = random_population(problem, kind, pop, rng)
        c0, t0 = time.process_time(), time.perf_counter()
        F = score(problem, G, threads)
        times[kind].append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert F.shape == (pop, len(problem.names)) and np.isfinite(F).all()
    all_t = times["initial"] + times["uniform"]
    med = statistics.median(all_t)
    return {
        "pop": pop, "reps": reps, "threads": threads, "times_s": [round(t, 5) for t in all_t],
        "median_s": med, "min_s": min(all_t), "max_s": max(all_t),
        "cpu_s_per_call_median": statistics.median(cpu),  # process CPU time (all threads)
        "evals_per_s": pop / med,
        "s_per_eval": med / pop,
        "median_s_initial": statistics.median(times["initial"]) if times["initial"] else None,
        "median_s_uniform": statistics.median(times["uniform"]) if times["uniform"] else None,
    }


def time_exact_tier(problem, session, *, n_candidates: int, seed: int, genomes: np.ndarray | None = None) -> dict:
    """render_exact + features_from_render + objectives.evaluate, per candidate (the work
    ``api.mix`` does per exported alternative), each stage timed; medians over the candidates.

    The candidates are ``genomes`` (n, genes) if given, else ``n_candidates - 1`` members of
    ``initial_population`` (seeded by ``seed + 1``) and the neutral mix.
    """
    from evomix.engine.render import features_from_render
    from objectives import evaluate

    if genomes is not None:
        G = np.atleast_2d(np.asarray(genomes, dtype=float))
        n_candidates = G.shape[0]
    else:
        rng = np.random.default_rng(seed + 1)
        G = np.concatenate([problem.table.initial_population(n_candidates, rng)[1:],
                            problem.table.neutral()[None]])[:n_candidates]
    params = problem.table.decode(G, problem.analysis.trim_db)
    t_render, t_feat, t_obj, t_total, cpu = [], [], [], [], []
    tgt = problem.target
    for i in range(n_candidates):
        c0, t0 = time.process_time(), time.perf_counter()
        r = exact_render(session, params, i, tgt, problem.analysis.grid)
        t1 = time.perf_counter()
        feats = features_from_render(r, problem.analysis.grid, problem.analysis.roles)
        t2 = time.perf_counter()
        F = evaluate(feats, tgt, problem.names)
        t3 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        assert np.isfinite(F).all()
        t_render.append(t1 - t0)
        t_feat.append(t2 - t1)
        t_obj.append(t3 - t2)
        t_total.append(t3 - t0)
        del r, feats
    med = statistics.median(t_total)
    return {
        "candidates": n_candidates, "times_s": [round(t, 4) for t in t_total],
        "s_per_candidate": med, "mean_s": statistics.fmean(t_total),
        "cpu_s_per_candidate_median": statistics.median(cpu),
        "render_exact_s": statistics.median(t_render),
        "features_from_render_s": statistics.median(t_feat),
        "objectives_s": statistics.median(t_obj),
    }


# ------------------------------------------------------------------------------------------------
# Subprocesses: wall time, peak RSS, and what `evomix mix --json` reports
# ------------------------------------------------------------------------------------------------

def _poll_tree_rss(pid: int, stop: threading.Event, out: dict, *, include_root: bool = True) -> None:
    """Peak of the summed RSS of process ``pid``'s descendants (and of ``pid`` itself when
    ``include_root``), polled every 50 ms with psutil, into ``out["peak_rss_bytes"]``."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    peak = 0
    while not stop.is_set():
        try:
            procs = ([proc] if include_root else []) + proc.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            break
        out["peak_rss_bytes"] = peak
        stop.wait(0.05)


# A small fresh interpreter that starts the measured command, waits for it with os.wait4 and
# writes its rusage as JSON. Why not wait4 from here: on Linux a child's ru_maxrss includes the
# high-water RSS of the address space it was forked (or vforked) from, i.e. of THIS process, which
# may hold gigabytes by then; the launcher's own address space is ~10 MB.
_LAUNCHER = """
import json, os, subprocess, sys, time
out, timeout_s, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
t0 = time.perf_counter()
p = subprocess.Popen(cmd)
timed_out = False
while True:
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    if time.perf_counter() - t0 > timeout_s:
        p.kill()
        timed_out = True
        pid, status, ru = os.wait4(p.pid, 0)
        break
    time.sleep(0.02)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    json.dump({"wall_s": wall, "maxrss_kb": ru.ru_maxrss, "utime_s": ru.ru_utime, "stime_s": ru.ru_stime,
               "returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out}, f)
"""


def run_measured(cmd: list[str], *, timeout_s: float = 7200.0) -> dict:
    """Run ``cmd`` as a fresh process: wall time, peak RSS, CPU time, stdout and stderr.

    The command is started by a small launcher interpreter (see ``_LAUNCHER``), which times it
    (``wall_s``: from just before its start to its exit) and reads its rusage with ``os.wait4``:
    ``peak_rss_mb`` is its ``ru_maxrss`` (kB on Linux; the largest single process of its tree,
    since its children are reaped by it). ``peak_rss_mb_psutil_poll`` is the summed RSS of the
    command and its descendants polled every 50 ms by psutil (None without psutil), which also
    counts worker processes. A command still running after ``timeout_s`` is killed.
    """
    with tempfile.TemporaryDirectory(prefix="evomix-run-") as td:
        usage_p = Path(td) / "rusage.json"
        with open(Path(td) / "stdout", "w+b") as fo, open(Path(td) / "stderr", "w+b") as fe:
            proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(usage_p), str(timeout_s), *cmd],
                                    stdout=fo, stderr=fe)
            polled: dict = {}
            stop = threading.Event()
            th = None
            if psutil is not None:
                th = threading.Thread(target=_poll_tree_rss, args=(proc.pid, stop, polled),
                                      kwargs={"include_root": False}, daemon=True)
                th.start()
            proc.wait()
            stop.set()
            if th is not None:
                th.join()
            fo.seek(0)
            fe.seek(0)
            stdout, stderr = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
        try:
            usage = json.loads(usage_p.read_text())
        except (OSError, ValueError):
            usage = {"wall_s": float("nan"), "maxrss_kb": 0, "utime_s": float("nan"), "stime_s": float("nan"),
                     "returncode": proc.returncode, "timed_out": False}
            stderr += f"\n[launcher failed with return code {proc.returncode}]"
    return {
        "command": " ".join(cmd), "returncode": usage["returncode"], "timed_out": usage["timed_out"],
        "wall_s": usage["wall_s"],
        "peak_rss_mb": usage["maxrss_kb"] / 1024.0,  # Linux: kB
        "peak_rss_mb_psutil_poll": polled.get("peak_rss_bytes", 0) / 2**20 if psutil is not None else None,
        "cpu_user_s": usage["utime_s"], "cpu_sys_s": usage["stime_s"],
        "stdout": stdout, "stderr": stderr,
    }


TIMING_PHASES = ("load", "analysis", "search", "render", "write", "total")
"""Phases of ``evomix mix --json``'s ``timings_s`` (when the CLI reports them)."""


def run_cli_mix(folder: Path, out: Path, *, population: int, generations: int, alternatives: int,
                timeout_s: float = 7200.0, extra_args: tuple = ()) -> dict:
    """Run ``python -m evomix mix FOLDER --out OUT ... --quiet --json`` as a fresh process.

    Returns :func:`run_measured`'s figures (without the full stdout/stderr) and, from the ``--json``
    summary: front size, evaluations, alternatives, replaced alternatives, and -- when the CLI
    reports them -- ``timings_s`` (per phase, see :data:`TIMING_PHASES`) and ``exact_renders``;
    those are None when absent (an older CLI).
    """
    cmd = [sys.executable, "-m", "evomix", "mix", str(folder), "--out", str(out),
           "--population", str(population), "--generations", str(generations),
           "--alternatives", str(alternatives), "--quiet", "--json", *extra_args]
    run = run_measured(cmd, timeout_s=timeout_s)
    stdout, stderr = run.pop("stdout"), run.pop("stderr")
    res = dict(run)
    res["timings_s"] = None
    res["exact_renders"] = None
    try:
        summary = json.loads(stdout)
        res["front_size"] = summary.get("front_size")
        res["evaluations"] = summary.get("evaluations")
        res["alternatives_written"] = len(summary.get("alternatives", []))
        res["alternatives_exact"] = [a.get("exact") for a in summary.get("alternatives", [])]
        res["alternative_params"] = [a.get("params") for a in summary.get("alternatives", [])]
        res["replaced_alternatives"] = summary.get("replaced_alternatives")
        res["alternatives_lufs_dbtp"] = [(round(a["integrated_lufs"], 2), round(a["true_peak_dbtp"], 2))
                                         for a in summary.get("alternatives", [])]
        res["warnings"] = summary.get("warnings")
        timings = summary.get("timings_s")
        if isinstance(timings, dict):
            res["timings_s"] = {k: (float(v) if isinstance(v, (int, float)) else None) for k, v in timings.items()}
        if isinstance(summary.get("exact_renders"), int):
            res["exact_renders"] = summary["exact_renders"]
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
        res["stdout_tail"] = stdout[-2000:]
    if res["returncode"] != 0:
        res["stderr_tail"] = stderr[-2000:]
    return res


def fmt_s(x, digits: int = 2) -> str:
    """Seconds for a report line, or "n/a" for a figure that was not measured."""
    return "n/a" if x is None else f"{x:.{digits}f} s"


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------

def cpu_snapshot() -> dict:
    """What :func:`foreign_cpu_s` compares ({} off Linux): the machine's busy CPU time from
    ``/proc/stat`` (which counts processes that came and went in between), this process's CPU
    time, that of its reaped children (``RUSAGE_CHILDREN``: they include grandchildren reaped by
    their parents, e.g. a command run through :func:`run_measured`), and the CPU ticks of every
    other live process of this session (worker pools that are not reaped yet)."""
    import resource

    try:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]  # user nice system irq softirq (not idle, iowait, steal)
    mine, me = os.getsid(0), os.getpid()
    session = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == mine and int(d.name) != me:  # session id
                session[int(d.name)] = int(fields[11]) + int(fields[12])  # utime + stime, ticks
        except (OSError, IndexError, ValueError):
            continue
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"busy_ticks": busy, "self_s": time.process_time(), "children_s": ch.ru_utime + ch.ru_stime,
            "session_ticks": session}


def foreign_cpu_s(before: dict, after: dict) -> float:
    """CPU seconds used between two :func:`cpu_snapshot` calls by processes outside this session
    (other people's jobs on the machine: they skew the timings): the machine's busy time minus
    this process's, its reaped children's and its session's live processes' (nan off Linux)."""
    if not before or not after:
        return float("nan")
    hz = os.sysconf("SC_CLK_TCK")
    busy = (after["busy_ticks"] - before["busy_ticks"]) / hz
    live = sum(t - before["session_ticks"].get(pid, 0) for pid, t in after["session_ticks"].items()) / hz
    own = (after["self_s"] - before["self_s"]) + (after["children_s"] - before["children_s"]) + live
    return max(0.0, busy - own)


def code_version() -> dict:
    """Git commit of the evomix checkout and whether the working tree differs from it."""
    import evomix

    root = Path(evomix.__file__).resolve().parent.parent
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "modified_files": dirty.splitlines() if dirty else []}


def environment() -> dict:
    import numpy
    import scipy

    import evomix

    return {"code": code_version(), "evomix_file": evomix.__file__, "loadavg_start": os.getloadavg(),
            "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(),
            "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                            if os.environ.get(k) is not None}}


# ------------------------------------------------------------------------------------------------
# The run: its common options, work folder and report
# ------------------------------------------------------------------------------------------------

def add_run_args(ap, *, keep_help: str) -> None:
    """Add the options every benchmark run takes: ``--blas-threads`` (acted on when this module is
    imported, see :func:`blas_threads_from_argv`; declared here for ``--help`` and checking) and
    ``--keep`` (see :func:`work_folder`), whose help is ``keep_help``."""
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP/MKL_NUM_THREADS for this run and its subprocesses (default: leave unset)")
    ap.add_argument("--keep", type=Path, default=None, help=keep_help)


@contextlib.contextmanager
def work_folder(prefix: str, keep: Path | None):
    """The run's work folder: ``keep`` (created if missing, left in place) when given, else a fresh
    temporary folder named ``prefix...``, removed when the block exits (also on an error)."""
    work = Path(tempfile.mkdtemp(prefix=prefix)) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def maxrss_mb() -> float:
    """Peak RSS of this process so far, MB (``ru_maxrss`` is kB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(result: dict) -> int:
    """End a run: this process's peak RSS into ``result["self_peak_rss_mb"]``, then ``result`` as the
    JSON object on the LAST line of stdout. Returns 0, the exit code."""
    result["self_peak_rss_mb"] = maxrss_mb()
    print(json.dumps(result, default=float))
    return 0
