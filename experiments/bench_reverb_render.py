"""What the reverb bus costs an exact render at real size (issue 22): the same candidate rendered
with every send off (bit for bit the render without the bus) and with its sends on, in one run.

Workload: the real-size session of ``evomix.testing.songs.cached_session`` (16 stereo stems x 210 s
at 44.1 kHz, seed 1234, cached under /tmp/evomix-songs). The candidate: the neutral mix of the
default parameter space (``default_constraints``: the reverb bus, the low end centred) with each
role's usual send (``search.seeding.ROLE_SEND_DB``), decay 1.6 s; the dry one the same with every
send off. Each is rendered ``--reps`` times alternately (``render_exact`` with the analysis grid, as
``evomix mix`` renders an alternative); the median wall time of each and their difference are
printed, JSON last line. No assertions: this only measures.

Usage: python experiments/bench_reverb_render.py [--reps 3] [--stems 16] [--duration 210]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from evomix.engine.analysis import analyze_session
from evomix.engine.render import render_exact
from evomix.io.audio import expand_paths, load_session
from evomix.search.constraints import default_constraints
from evomix.search.genome import REVERB_SEND_OFF_DB, GeneTable
from evomix.search.seeding import ROLE_SEND_DB
from evomix.testing.songs import cached_session
from objectives import load_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stems", type=int, default=16)
    ap.add_argument("--duration", type=float, default=210.0)
    args = ap.parse_args()
    folder, _ = cached_session(args.stems, args.duration, sr=44100, seed=1234)
    session = load_session(expand_paths([folder]))
    analysis = analyze_session(session)
    table = default_constraints(load_profile("pop"), session.names, session.roles, space=True).apply(
        GeneTable(session.n_stems), session.names)
    p = table.decode(table.neutral()[None], analysis.trim_db)
    sends = np.array([[ROLE_SEND_DB.get(r, REVERB_SEND_OFF_DB) for r in session.roles]])
    wet = dataclasses.replace(p, reverb_send_db=sends, reverb_decay_s=np.array([1.6]))
    dry = dataclasses.replace(p, reverb_send_db=np.full_like(sends, REVERB_SEND_OFF_DB))
    times = {"dry": [], "wet": []}
    for _ in range(args.reps):
        for name, params in (("dry", dry), ("wet", wet)):
            t0 = time.perf_counter()
            r = render_exact(session, session.is_mono, session.sr, params, grid=analysis.grid, target_lufs=-14.0,
                             ceiling_dbtp=-1.0, threads=2)
            times[name].append(time.perf_counter() - t0)
            del r
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{args.stems} stems x {args.duration:g} s: exact render dry {med['dry']:.2f} s, with the reverb bus "
          f"{med['wet']:.2f} s (+{med['wet'] - med['dry']:.2f} s; medians of {args.reps})")
    print(json.dumps({"benchmark": "reverb_render", "stems": args.stems, "duration_s": args.duration,
                      "times_s": times, "median_s": med, "extra_s": med["wet"] - med["dry"]}))


if __name__ == "__main__":
    main()
