"""Processed-stem and DAW export at real size: wall time and peak RSS of one alternative's export.

Workload: ``evomix.testing.songs.cached_session(16, 210.0, sr=44100, seed=1234)`` (16 stereo stems x 210 s,
the real-size session of ``bench_realsize.py``), one candidate drawn uniformly
(``GeneTable.initial_population(3, default_rng(seed))[1]``, trims 0 dB: the master normalises).

Two fresh processes, each measured by ``benchlib.run_measured`` (wall, peak RSS ``ru_maxrss``):

1. ``render``: load the session, ``render_exact(keep_stems=False)``: what ``evomix render`` holds.
2. ``export``: load the session, ``evomix.output.export.export_alternative(stems=True, pre_stems=False,
   daw=("dawproject", "reaper"))``: the master render with its per-sample gain kept, then each
   stem's strip one at a time, written as float32 WAV, then both sessions.

The difference of the peaks is the export's own memory; keeping every stem's contribution
instead (``render_exact(keep_stems=True)``) would add stems x 2 x samples x 8 bytes (2.37 GB
here), reported as ``keep_stems_gb`` for comparison (computed, not run).

Output: lines, then one JSON object as the last line of stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import benchlib  # noqa: F401  (first: BLAS threads)

from evomix.testing.songs import cached_session

CHILD = r"""
import sys, json, time, resource
import numpy as np
from pathlib import Path
from evomix.io.audio import load_session
from evomix.search.genome import GeneTable
mode, folder, out, seed = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
session = load_session([folder])
table = GeneTable(session.n_stems)
genome = table.initial_population(3, np.random.default_rng(seed))[1]
params = table.decode(genome[None], np.zeros(session.n_stems))
t0 = time.perf_counter()
if mode == "render":
    from evomix.core.runtime import available_cores as render_threads
    from evomix.engine.render import render_exact
    r = render_exact(session, session.is_mono, session.sr, params, target_lufs=-14.0, ceiling_dbtp=-1.0,
                     keep_stems=False, threads=render_threads())
else:
    from evomix.core.runtime import available_cores as render_threads
    from evomix.output.export import export_alternative
    out.mkdir(parents=True, exist_ok=True)
    export_alternative(session, params.to_dict(0, session.names, session.roles), "alt-01", out,
                       target_lufs=-14.0, ceiling_dbtp=-1.0, genre="pop", stems=True,
                       daw=("dawproject", "reaper"), threads=render_threads())
print(json.dumps({"work_s": time.perf_counter() - t0, "n_samples": session.n_samples,
                  "n_stems": session.n_stems}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stems", type=int, default=16)
    ap.add_argument("--duration", type=float, default=210.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder, _ = cached_session(args.stems, args.duration, sr=44100, seed=1234)
    result = {}
    with tempfile.TemporaryDirectory(prefix="evomix-export-") as td:
        for mode in ("render", "export"):
            run = benchlib.run_measured([sys.executable, "-c", CHILD, mode, str(folder), str(Path(td) / "out"),
                                         str(args.seed)], timeout_s=600)
            child = json.loads(run["stdout"].splitlines()[-1]) if run.get("returncode") == 0 else None
            result[mode] = {"wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"],
                            "work_s": child and child["work_s"]}
            print(f"{mode}: wall {run['wall_s']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
                  f"work {child and round(child['work_s'], 1)} s", flush=True)
            if child is None:
                print(run.get("stderr", "")[-2000:], file=sys.stderr)
        files = sorted((Path(td) / "out").rglob("*"))
        result["files"] = len(files)
        result["written_mb"] = round(sum(f.stat().st_size for f in files if f.is_file()) / 1e6, 1)
    n = 44100 * args.duration
    result["keep_stems_gb"] = round(args.stems * 2 * n * 8 / 1e9, 2)
    result["workload"] = {"stems": args.stems, "duration_s": args.duration, "sr": 44100}
    result["environment"] = benchlib.environment()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
