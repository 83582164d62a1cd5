"""The demo, end to end: wall time of `evomix demo`, and how its exports compare with the raw sum.

Runs `evomix demo` (default settings) in a subprocess and times it, then scores, on the exact tier,
the plain equal-gain sum of the demo stems (every stem at unity gain, centred, no EQ or compression,
the same master normalisation and limiter) and compares it with the exported alternatives:

* masking: the best-masking alternative vs the equal-gain sum (lower is better);
* balance: the equal-gain sum (whose vocal is 15 dB too quiet) vs every exported alternative;
* the front: size, non-dominance, and the pairwise differences of the exported masters
  (RMS of the sample difference relative to the RMS of the mix, dB).

Usage: python experiments/demo_quality.py [--out DIR] [--population N] [--generations N] [--seed N]
The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from evomix.engine.analysis import analyze_session
from evomix.engine.render import features_from_render, render_exact
from evomix.io.audio import load_session
from evomix.search.algorithm import non_dominated
from evomix.search.genome import GeneTable
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile


def equal_gain_scores(stem_paths, target: Target) -> dict:
    """Exact-tier objectives of the plain sum: trim 0 dB, fader 0 dB, centred, flat, no compression."""
    session = load_session(stem_paths)
    analysis = analyze_session(session)
    table = GeneTable(session.n_stems)
    params = table.decode(table.neutral()[None], np.zeros(session.n_stems))
    r = render_exact(session, session.is_mono, session.sr, params,
                     target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)
    F = evaluate(features_from_render(r, analysis.grid, analysis.roles), target, OBJECTIVE_NAMES)[0]
    return {n: float(v) for n, v in zip(OBJECTIVE_NAMES, F)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="evomix-demo-")) / "demo"
    cmd = [sys.executable, "-m", "evomix", "demo", "--out", str(out), "--json", "--force"]
    for flag in ("population", "generations", "seed"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag}", str(getattr(args, flag))]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"evomix demo failed: {res.stderr.strip()}")
    summary = json.loads(res.stdout)
    front = json.loads((out / "mixes" / "front.json").read_text())
    target = Target(load_profile(front["genre"]), front["target_lufs"], front["ceiling_dbtp"])
    base = equal_gain_scores(sorted((out / "stems").glob("*.wav")), target)

    alts = sorted((m for m in front["members"] if "alternative" in m), key=lambda m: m["alternative"])
    best_masking = min(a["exact"]["masking"] for a in alts)
    balances = [a["exact"]["balance"] for a in alts]
    F = np.array([[m["objectives"][n] for n in front["objectives"]] for m in front["members"]])
    mixes = [sf.read(out / "mixes" / f"alt-{k:02d}.wav")[0] for k in range(1, len(alts) + 1)]
    diffs = [20 * np.log10(np.sqrt(np.mean((mixes[i] - mixes[j]) ** 2)) / np.sqrt(np.mean(mixes[i] ** 2)))
             for i in range(len(mixes)) for j in range(i + 1, len(mixes))]
    fig = {
        "demo_wall_s": round(wall, 2),
        "front_size": len(front["members"]),
        "front_non_dominated": bool(non_dominated(F).all()),
        "evaluations": summary["evaluations"],
        "equal_gain_sum": {k: round(v, 3) for k, v in base.items()},
        "best_masking_alternative": round(best_masking, 3),
        "alternatives_balance": [round(b, 3) for b in balances],
        "alternatives_exact": [{k: round(v, 3) for k, v in a["exact"].items()} for a in alts],
        "alternatives_lufs": [round(a["integrated_lufs"], 2) for a in summary["alternatives"]],
        "alternatives_true_peak_dbtp": [round(a["true_peak_dbtp"], 2) for a in summary["alternatives"]],
        "pairwise_difference_db": {"min": round(min(diffs), 1), "max": round(max(diffs), 1)},
    }
    print(f"evomix demo: {wall:.1f} s wall, front {fig['front_size']} (non-dominated: {fig['front_non_dominated']})")
    print(f"masking: equal-gain sum {base['masking']:.3f} dB vs best alternative {best_masking:.3f} dB")
    print(f"balance: equal-gain sum {base['balance']:.2f} vs alternatives {min(balances):.2f}..{max(balances):.2f}")
    print(f"pairwise difference of exported masters: {min(diffs):.1f} .. {max(diffs):.1f} dB re mix RMS")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
