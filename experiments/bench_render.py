"""The exact renderer near the floor (issue 23, item 2): `evomix render` against the pedalboard peer, and
today's renders against a reference commit's, in one run.

Workload
--------
``evomix.testing.songs.cached_session(16, 210.0, sr=44100, seed=1234)``: 16 stereo 24-bit WAV stems x 210 s
at 44.1 kHz (889 MB, reused from the song cache; every file is read through once first, so every step reads
from the page cache). Candidates: ``--candidates`` random ones of ``GeneTable(16)``
(``initial_population(n + 1, default_rng(seed))[1:]``: near-neutral and uniform members; every reverb send
off, as in a search that leaves the reverb alone) and ``--reverb-candidates`` of a table whose sends range
over -40..0 dB (``*.reverb_send_db=-40:0``, as ``--range`` does; several sends on, so the reverb bus runs),
each saved as an ``alt-NN.json`` (``Params.to_dict``, target -14 LUFS, ceiling -1 dBTP).

What is measured
----------------
1. Accuracy against a reference commit (``--base``, default the commit this work started from): the
   reference code is checked out into a ``git worktree`` and every candidate is rendered by
   ``engine.render.render_exact`` (``keep_stems=False``, 2 threads: what ``evomix render`` runs) in a fresh
   process of each code (after one untimed render each, so numba's caches are warm), the masters saved as
   float64 ``.npy``. Per candidate: integrated loudness
   difference (LU, BS.1770-4, both measured by this checkout's meter), true-peak difference (dB), the
   largest sample difference (dBFS; -inf when the masters are equal bit for bit) and whether they are
   equal. The tolerance this work holds itself to (the issue's): loudness +-0.01 LU, true peak +-0.01 dB,
   sample error below -120 dBFS; float64 throughout, so the measured error is expected to be 0.
2. Reproducibility: each candidate rendered again by this checkout on 1 thread; equal bit for bit?
3. Speed, in the same run: ``python -m evomix render alt.json DIR -o X.wav`` as a fresh process (wall time,
   CPU, peak RSS via ``benchlib.run_measured``), for this checkout and the reference, on the first plain
   candidate and the first reverb candidate (one untimed run of each code first, so numba's on-disk caches
   are warm; then ``--reps`` rounds with the two codes alternating; fastest and median wall time, median
   CPU time), and the pedalboard peer of ``bench_realsize.py`` (``peer_load`` +
   ``peer_render`` with the master chain, in this process) on the same plain candidate: load + render.
   The in-process stage times of this checkout's render (``mix_strips`` and ``finish_master``) come from
   step 1's subprocess.

Ratios: ``render_cli_over_peer_load_render`` (fastest run; issue: <= 0.25x; before this work 0.44-0.72x)
and its median twin, for this checkout and for the reference, and this checkout / reference in wall and
CPU time. The machine is shared: compare ratios from the same run, and see
``other_processes_cpu_share``.

Output: human-readable lines, then one JSON object as the LAST line of stdout. No assertions: this only
measures.

Usage::

    python experiments/bench_render.py                      # ~3-5 minutes
    python experiments/bench_render.py --base 68ac141 --reps 3 --candidates 3 --reverb-candidates 2
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import add_run_args, cpu_snapshot, environment, foreign_cpu_s, report, run_measured, work_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE_DEFAULT = "68ac141"  # the commit issue 23's renderer work started from
SR = 44100
TARGET_LUFS, CEILING_DBTP = -14.0, -1.0

# Run in a fresh process with the code under test first on sys.path: render each alt-NN.json with
# render_exact as `evomix render` does (keep_stems=False, 2 threads), save the master, time the stages.
_RENDER_SNIPPET = r"""
import json, sys, time
import numpy as np
from evomix.io.audio import load_session
from evomix.engine import render as R
from evomix.search.genome import Params
folder, out_dir, threads, *alts = sys.argv[1:]
t0 = time.perf_counter()
s = load_session([folder])
res = {"evomix_file": R.__file__, "load_s": time.perf_counter() - t0, "renders": []}
for a in alts:
    d = json.load(open(a))
    p = Params.from_dict(d["params"], s.names)
    t = time.perf_counter()
    st = R.mix_strips(s, s.is_mono, s.sr, p, keep_stems=False, threads=int(threads))
    t1 = time.perf_counter()
    r = R.finish_master(st, target_lufs=d["target_lufs"], ceiling_dbtp=d["ceiling_dbtp"], threads=int(threads))
    t2 = time.perf_counter()
    path = out_dir + "/" + a.rsplit("/", 1)[-1].replace(".json", ".npy")
    np.save(path, r.mix)
    res["renders"].append({"alt": a, "npy": path, "strips_s": t1 - t, "master_s": t2 - t1, "total_s": t2 - t})
print(json.dumps(res))
"""


def make_candidates(folder: Path, work: Path, n_plain: int, n_reverb: int, seed: int) -> list[Path]:
    """The candidates as alt-NN.json files in ``work``: ``n_plain`` with every send off, ``n_reverb`` with sends."""
    from evomix.io.audio import load_session
    from evomix.search.constraints import constrain_table
    from evomix.search.genome import GeneTable

    s = load_session([folder], keep_audio=False)
    rng = np.random.default_rng(seed)
    out = []
    with_sends = constrain_table(GeneTable(s.n_stems), list(s.names), [], ["*.reverb_send_db=-40:0"])
    tables = [("plain", GeneTable(s.n_stems), n_plain), ("reverb", with_sends, n_reverb)]
    for kind, table, n in tables:
        if n <= 0:
            continue
        g = table.initial_population(n + 1, rng, random_fraction=0.5)[1:]
        params = table.decode(g, rng.uniform(-3.0, 3.0, s.n_stems))
        for i in range(n):
            d = {"name": f"{kind}-{i}", "sr": s.sr, "target_lufs": TARGET_LUFS, "ceiling_dbtp": CEILING_DBTP,
                 "params": params.to_dict(i, s.names, s.roles)}
            p = work / f"alt-{kind}-{i}.json"
            p.write_text(json.dumps(d, indent=1))
            out.append(p)
    return out


def render_with(code_root: Path, folder: Path, out_dir: Path, alts: list[Path], threads: int) -> dict:
    """Render ``alts`` with the evomix at ``code_root`` in a fresh process (see ``_RENDER_SNIPPET``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code_root))
    cmd = [sys.executable, "-c", _RENDER_SNIPPET, str(folder), str(out_dir), str(threads), *map(str, alts)]
    # from out_dir: `python -c` puts the working folder first on sys.path, before PYTHONPATH
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, cwd=out_dir)
    if p.returncode != 0:
        raise RuntimeError(f"render with {code_root} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if not Path(res["evomix_file"]).resolve().is_relative_to(Path(code_root).resolve()):
        raise RuntimeError(f"render with {code_root} imported {res['evomix_file']}")
    return res


def measure(mix: np.ndarray) -> tuple[float, float]:
    """(integrated loudness LUFS, true peak dBTP) of a master (2, n), by this checkout's meter."""
    from evomix.core.meter import true_peak_dbtp
    from evomix.engine.render import _Grid

    lufs = _Grid(SR, mix.shape[-1]).loudness(mix, np.zeros(0), 1.0)
    return float(lufs), float(true_peak_dbtp(mix, SR))


def cli_render(code_root: Path, alt: Path, folder: Path, out: Path) -> dict:
    # from out's folder (env -C): `python -m` puts the working folder first on sys.path, before PYTHONPATH
    cmd = ["env", "-C", str(out.parent), f"PYTHONPATH={code_root}", sys.executable, "-m", "evomix", "render", str(alt),
           str(folder), "-o", str(out), "--force"]
    r = run_measured(cmd, timeout_s=1800)
    if r["returncode"] != 0:
        raise RuntimeError(f"evomix render failed: {r['stderr'][-2000:]}")
    check = subprocess.run(["env", "-C", str(out.parent), f"PYTHONPATH={code_root}", sys.executable, "-c",
                            "import evomix; print(evomix.__file__)"], capture_output=True, text=True)
    if not Path(check.stdout.strip()).resolve().is_relative_to(Path(code_root).resolve()):
        raise RuntimeError(f"evomix render with {code_root} would import {check.stdout.strip()}")
    phases = {}
    for line in r["stderr"].splitlines():  # "evomix: load: done in 1.40 s (...)"
        parts = line.split()
        if len(parts) >= 5 and parts[2] == "done" and parts[3] == "in":
            phases[parts[1].rstrip(":")] = float(parts[4])
    return {"wall_s": r["wall_s"], "cpu_s": r["cpu_user_s"] + r["cpu_sys_s"], "cpu_sys_s": r["cpu_sys_s"],
            "peak_rss_mb": r["peak_rss_mb"], "phases_s": phases}


def timed_cli(roots: dict, alt: Path, folder: Path, work: Path, reps: int) -> dict:
    """``evomix render alt`` with each code of ``roots`` ({label: checkout}), one untimed run each first (numba's
    caches, the page cache), then ``reps`` rounds, the codes alternating within each round (so a burst of
    other work on the machine hits both alike): per code the runs, the median and the fastest wall time and
    the median CPU time (user + system)."""
    for root in roots.values():
        cli_render(root, alt, folder, work / "warm.wav")
    runs: dict = {k: [] for k in roots}
    for _ in range(reps):
        for k, root in roots.items():
            runs[k].append(cli_render(root, alt, folder, work / "timed.wav"))
    out = {}
    for k, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        out[k] = {"median_wall_s": statistics.median(walls), "min_wall_s": min(walls), "walls_s": walls,
                  "median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
                  "fastest_run": rs[walls.index(min(walls))]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=BASE_DEFAULT, help=f"reference commit (default {BASE_DEFAULT})")
    ap.add_argument("--candidates", type=int, default=3, help="candidates with every send off (3)")
    ap.add_argument("--reverb-candidates", type=int, default=2, help="candidates with reverb sends on (2)")
    ap.add_argument("--reps", type=int, default=3, help="timed `evomix render` runs per code (median; 3)")
    ap.add_argument("--seed", type=int, default=0, help="candidate seed (0)")
    ap.add_argument("--stems", type=int, default=16)
    ap.add_argument("--duration", type=float, default=210.0)
    ap.add_argument("--no-peer", action="store_true", help="skip the pedalboard peer")
    add_run_args(ap, keep_help="keep the work folder (worktree, candidates, renders) here")
    args = ap.parse_args(argv)

    from bench_realsize import peer_load, peer_render, read_through

    from evomix.testing.songs import cached_session

    folder, reused = cached_session(args.stems, args.duration, sr=SR, seed=1234)
    files = sorted(folder.glob("*.wav"))
    read_s, nbytes = read_through(files)
    result: dict = {"benchmark": "render", "workload": {
        "stems": args.stems, "duration_s": args.duration, "sr": SR, "folder": str(folder), "cache_reused": reused,
        "wav_mb": nbytes / 1e6, "candidates": args.candidates, "reverb_candidates": args.reverb_candidates,
        "reps": args.reps, "seed": args.seed, "base": args.base}, "environment": environment(),
        "tolerance": {"loudness_lu": 0.01, "true_peak_db": 0.01, "sample_error_dbfs": -120.0}}
    print(f"workload: {args.stems} stems x {args.duration:.0f} s @ {SR} Hz in {folder} ({nbytes / 1e6:.0f} MB, "
          f"read through in {read_s:.1f} s); reference commit {args.base}", flush=True)
    snap0 = cpu_snapshot()
    t_run = time.perf_counter()
    with work_folder("evomix-bench-render-", args.keep) as work:
        base_root = work / "base"
        if not base_root.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_root), args.base],
                           check=True, capture_output=True)
        try:
            alts = make_candidates(folder, work, args.candidates, args.reverb_candidates, args.seed)
            # 1-2. accuracy and reproducibility
            for root in (ROOT, base_root):  # numba compiles into each checkout's cache: not in the timed renders
                render_with(root, folder, work / "warm", alts[:1], threads=2)
            new = render_with(ROOT, folder, work / "new", alts, threads=2)
            old = render_with(base_root, folder, work / "old", alts, threads=2)
            again = render_with(ROOT, folder, work / "again", alts, threads=1)
            rows = []
            for a, rn, ro, ra in zip(alts, new["renders"], old["renders"], again["renders"]):
                xn, xo, xa = np.load(rn["npy"]), np.load(ro["npy"]), np.load(ra["npy"])
                (ln, pn), (lo, po) = measure(xn), measure(xo)
                err = float(np.max(np.abs(xn - xo)))
                row = {"alt": a.name, "loudness_new_lufs": ln, "loudness_diff_lu": ln - lo, "true_peak_new_dbtp": pn,
                       "true_peak_diff_db": pn - po,
                       "max_sample_error_dbfs": (20.0 * np.log10(err) if err > 0 else float("-inf")),
                       "equal_to_reference": bool(np.array_equal(xn, xo)),
                       "reproducible_1_vs_2_threads": bool(np.array_equal(xn, xa)),
                       "new_strips_s": rn["strips_s"], "new_master_s": rn["master_s"],
                       "ref_strips_s": ro["strips_s"], "ref_master_s": ro["master_s"]}
                rows.append(row)
                print(f"  {a.name}: {ln:.3f} LUFS ({row['loudness_diff_lu']:+.4f} LU), {pn:.3f} dBTP "
                      f"({row['true_peak_diff_db']:+.4f} dB), max sample error "
                      f"{row['max_sample_error_dbfs']:.1f} dBFS, "
                      f"equal {row['equal_to_reference']}, reproducible {row['reproducible_1_vs_2_threads']}; "
                      f"in-process strips {rn['strips_s']:.2f} s + master {rn['master_s']:.2f} s "
                      f"(reference {ro['strips_s']:.2f} + {ro['master_s']:.2f} s)", flush=True)
                for f in (rn["npy"], ro["npy"], ra["npy"]):
                    os.unlink(f)
            result["accuracy"] = rows
            result["load_in_process_s"] = {"new": new["load_s"], "reference": old["load_s"]}
            result["evomix_files"] = {"new": new["evomix_file"], "reference": old["evomix_file"]}
            tol = result["tolerance"]
            result["within_tolerance"] = all(
                abs(r["loudness_diff_lu"]) <= tol["loudness_lu"] and abs(r["true_peak_diff_db"]) <= tol["true_peak_db"]
                and r["max_sample_error_dbfs"] <= tol["sample_error_dbfs"] for r in rows)
            result["all_reproducible"] = all(r["reproducible_1_vs_2_threads"] for r in rows)
            # 3. speed, in the same run
            timing: dict = {}
            picks = [alts[0]] + [a for a in alts if "reverb" in a.name][:1]
            for a in picks:
                snap = cpu_snapshot()
                t = time.perf_counter()
                both = timed_cli({"new": ROOT, "reference": base_root}, a, folder, work, args.reps)
                share = foreign_cpu_s(snap, cpu_snapshot()) / (time.perf_counter() - t) / (os.cpu_count() or 1)
                timing[a.name] = dict(both, other_processes_cpu_share=round(share, 3))
                tn, tb = both["new"], both["reference"]
                print(f"`evomix render {a.name}`: this checkout {tn['min_wall_s']:.2f} s fastest, "
                      f"{tn['median_wall_s']:.2f} s median, CPU {tn['median_cpu_s']:.1f} s (fastest run's phases "
                      f"{tn['fastest_run']['phases_s']}); reference {tb['min_wall_s']:.2f} s fastest, "
                      f"{tb['median_wall_s']:.2f} s median, CPU {tb['median_cpu_s']:.1f} s (phases "
                      f"{tb['fastest_run']['phases_s']}); other processes used {share:.0%} of the CPUs", flush=True)
            result["render_cli"] = timing
            if not args.no_peer:
                alt_d = json.loads(alts[0].read_text())
                names = [f.stem for f in files]
                t0 = time.perf_counter()
                audio, sr, load_s = peer_load(files)
                mix, stages = peer_render(audio, names, sr, alt_d, master=True)
                peer_s = time.perf_counter() - t0
                del audio, mix
                result["peer"] = {"load_s": load_s, "load_render_s": peer_s, "stages_s": stages}
                plain = timing[alts[0].name]
                pn, pb_ = plain["new"], plain["reference"]
                result["ratios"] = {
                    "render_cli_over_peer_load_render": pn["min_wall_s"] / peer_s,
                    "render_cli_median_over_peer_load_render": pn["median_wall_s"] / peer_s,
                    "reference_render_cli_over_peer_load_render": pb_["min_wall_s"] / peer_s,
                    "reference_render_cli_median_over_peer_load_render": pb_["median_wall_s"] / peer_s,
                    "render_cli_new_over_reference": pn["min_wall_s"] / pb_["min_wall_s"],
                    "render_cli_cpu_new_over_reference": pn["median_cpu_s"] / pb_["median_cpu_s"]}
                r_ = result["ratios"]
                print(f"peer (pedalboard) load {load_s:.2f} s + render -> {peer_s:.2f} s; `evomix render` / peer: "
                      f"{r_['render_cli_over_peer_load_render']:.2f}x fastest, "
                      f"{r_['render_cli_median_over_peer_load_render']:.2f}x median (reference "
                      f"{r_['reference_render_cli_over_peer_load_render']:.2f}x, "
                      f"{r_['reference_render_cli_median_over_peer_load_render']:.2f}x; issue: <= 0.25x); this "
                      f"checkout / reference: wall {r_['render_cli_new_over_reference']:.2f}x, "
                      f"CPU {r_['render_cli_cpu_new_over_reference']:.2f}x", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_root)],
                           capture_output=True)
    result["run_s"] = time.perf_counter() - t_run
    result["other_processes_cpu_share"] = round(
        foreign_cpu_s(snap0, cpu_snapshot()) / result["run_s"] / (os.cpu_count() or 1), 3)
    print(f"accuracy: within tolerance {result.get('within_tolerance')}, "
          f"reproducible {result.get('all_reproducible')}; "
          f"other processes used {result['other_processes_cpu_share']:.0%} of the CPUs over the run", flush=True)
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
