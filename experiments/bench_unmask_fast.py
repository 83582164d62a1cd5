"""What dynamic unmasking costs the fast tier (issue 22, item 2): ``Problem.evaluate_population`` (all
four objectives, populations of 64 uniform random genomes, one thread) on the standard workload (8
stereo stems x 30 s at 44.1 kHz, ``evomix.testing.songs.write_session(..., seed=1234)``), in one run:
the default table (no cut genes: the search before unmasking, the same code path), a table with the
cut genes at depth 0 (keys attached; the "nothing cuts" shortcut), and the default unmasking space
(``unmask_defaults``: every keyed stem's cut searched, 0-9 dB), alternating, 9 calls each (the first
dropped); evaluations per second = 64 / median call time, and the ratios to the first, in wall time
and per second of the process's CPU time (steadier on a shared, loaded machine). JSON last line.
No assertions: this only measures.

Usage: python experiments/bench_unmask_fast.py [--stems DIR] [--calls 9]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from evomix.engine.analysis import analyze_session
from evomix.io.audio import expand_paths, load_session
from evomix.search.constraints import Constraints, unmask_defaults
from evomix.search.genome import GeneTable
from evomix.search.keys import key_map, resolve_keys
from evomix.search.problem import Problem
from evomix.testing.songs import write_session
from objectives import OBJECTIVE_NAMES, Target, load_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stems", type=Path, default=None)
    ap.add_argument("--calls", type=int, default=9, help="calls per table, alternating (the first dropped)")
    args = ap.parse_args()
    if args.stems is None:
        folder = Path(tempfile.mkdtemp())
        write_session(folder, 8, 30.0, seed=1234)
    else:
        folder = args.stems
    session = load_session(expand_paths([folder]))
    analysis = analyze_session(session)
    prof = load_profile("pop")
    key_index = resolve_keys(session.names, session.roles)
    keys = key_map(analysis, key_index)
    bare = GeneTable(session.n_stems)
    off = Constraints.parse(["*.unmask_depth_db=off"]).apply(bare, session.names).with_keys(keys)
    cut = unmask_defaults(session.names, session.roles, key_index >= 0).apply(bare, session.names).with_keys(keys)
    target = Target(prof, space=False)
    problems = {k: Problem(analysis, t, target, OBJECTIVE_NAMES, (1.0,) * 4)
                for k, t in (("without", bare), ("depth_0", off), ("unmask", cut))}
    rng = np.random.default_rng(0)
    times = {k: [] for k in problems}
    cpu = {k: [] for k in problems}  # process CPU seconds: steadier than wall time on a shared, loaded machine
    for _ in range(args.calls):
        for k, p in problems.items():
            G = rng.uniform(size=(64, p.table.n_genes))
            t0, c0 = time.perf_counter(), time.process_time()
            p.evaluate_population(G)
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    rate = {k: 64 / float(np.median(v[1:])) for k, v in times.items()}
    ratio = {k: rate[k] / rate["without"] for k in rate}
    cpu_rate = {k: 64 / float(np.median(v[1:])) for k, v in cpu.items()}
    cpu_ratio = {k: cpu_rate[k] / cpu_rate["without"] for k in cpu_rate}
    print(f"evaluations/s: without {rate['without']:.0f}, depth 0 {rate['depth_0']:.0f}, unmasking {rate['unmask']:.0f}"
          f"; ratio {ratio['unmask']:.3f} (keyed stems: {int((key_index >= 0).sum())} of {session.n_stems}: "
          f"{', '.join(n for n, k in zip(session.names, key_index) if k >= 0)})")
    print(f"per CPU second: without {cpu_rate['without']:.0f}, depth 0 {cpu_rate['depth_0']:.0f}, unmasking "
          f"{cpu_rate['unmask']:.0f}; ratio {cpu_ratio['unmask']:.3f}")
    print(json.dumps({"benchmark": "unmask_fast", "keyed_stems": int((key_index >= 0).sum()), "evals_per_s": rate,
                      "ratio": ratio, "times_s": times, "evals_per_cpu_s": cpu_rate, "cpu_ratio": cpu_ratio,
                      "cpu_s": cpu}))


if __name__ == "__main__":
    main()
