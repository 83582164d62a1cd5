"""Does the fast tier read the limiter's work right on a *searched* front?

A search drifts toward whatever the fast tier scores too kindly. The loudness objective charges
for limiting beyond 2 dB (``objectives/loudness.py``), and the fast tier's limiter gain reduction
comes from its true-peak estimate (``engine/peaks.py``): a mix whose peak the estimate misses
looks cheaper to make loud than it is, and the front fills with such mixes. This runs
``evomix.mix`` with its defaults on a song, takes ``--n`` front members spread evenly over the
range of their fast-tier gain reduction, renders each exactly, and prints the fast minus exact
limiter gain reduction (dB; ITU-R BS.1770-4 Annex 2 true peak in the exact tier), and the share
of the front whose fast gain reduction is above 6 dB.

Usage: python experiments/front_peaks.py [--stems N] [--duration S] [--n 16] [--seed 0]
(default song: ``songs.cached_session(6, 20.0)``, the issue's new user). Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from evomix import api
from evomix.engine.analysis import analyze_session
from evomix.engine.batch import render_features
from evomix.engine.render import render_exact
from evomix.search.genome import GeneTable
from evomix.settings import Search
from evomix.testing.songs import cached_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stems", type=int, default=6)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder, _ = cached_session(args.stems, args.duration)
    t0 = time.perf_counter()
    res = api.mix(sorted(Path(folder).glob("*.wav")), search=Search(seed=args.seed))
    search_s = time.perf_counter() - t0
    session, target = res.session, res.target
    analysis, table = analyze_session(session), GeneTable(session.n_stems)  # as the run made them
    G = np.stack([m.genome for m in res.front])  # (n, genes)
    gr = np.concatenate([render_features(analysis, table.decode(G[i:i + 16], analysis.trim_db),
                                         target_lufs=target.target_lufs,
                                         ceiling_dbtp=target.ceiling_dbtp).limiter_gr_db for i in range(0, len(G), 16)])
    order = np.argsort(gr)
    pick = order[np.unique(np.linspace(0, len(order) - 1, args.n).round().astype(int))]
    params = table.decode(G[pick], analysis.trim_db)
    rows = []
    for j, i in enumerate(pick):
        r = render_exact(session, session.is_mono, session.sr, params, index=j, target_lufs=target.target_lufs,
                         ceiling_dbtp=target.ceiling_dbtp, keep_stems=False, threads=2)
        rows.append({"fast_gr_db": float(gr[i]), "exact_gr_db": float(r.limiter_gr_db)})
        print(f"  member {i:4d}: limiter gain reduction fast {gr[i]:6.2f} dB, exact {r.limiter_gr_db:6.2f} dB",
              flush=True)
    err = [r["fast_gr_db"] - r["exact_gr_db"] for r in rows]
    out = {"song": f"{args.stems} stems x {args.duration:g} s", "seed": args.seed, "front": len(res.front),
           "search_s": round(search_s, 1), "front_share_fast_gr_over_6_db": round(float((gr > 6.0).mean()), 3),
           "gr_error_db": {"mean": round(statistics.fmean(err), 2),
                           "mean_abs": round(statistics.fmean(abs(e) for e in err), 2),
                           "most_low": round(min(err), 2), "most_high": round(max(err), 2)},
           "members": rows}
    print(f"front of {len(res.front)}: {100 * out['front_share_fast_gr_over_6_db']:.0f} % read above 6 dB of limiting; "
          f"fast - exact gain reduction on {len(rows)} members: mean {out['gr_error_db']['mean']:+.2f} dB, "
          f"mean |error| {out['gr_error_db']['mean_abs']:.2f} dB, from {out['gr_error_db']['most_low']:+.2f} to "
          f"{out['gr_error_db']['most_high']:+.2f} dB")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
