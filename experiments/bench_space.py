"""What the reverb bus costs the fast tier (issue 22): ``Problem.evaluate_population`` (all four
objectives, populations of 64 uniform random genomes, one thread) on the standard workload (8 stereo
stems x 30 s at 44.1 kHz, ``evomix.testing.songs.write_session(..., seed=1234)``), the dry genome
(every send off: the search before the bus, the same code path as before it) against the default
parameter space with the reverb bus (``default_constraints``; genre objective with its space term),
alternating, 9 calls each (the first dropped); evaluations per second = 64 / median call time, and
their ratio. JSON last line. No assertions: this only measures.

Usage: python experiments/bench_space.py
"""
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from evomix.engine.analysis import analyze_session
from evomix.io.audio import expand_paths, load_session
from evomix.search.constraints import default_constraints
from evomix.search.genome import GeneTable
from evomix.search.problem import Problem
from evomix.testing.songs import write_session
from objectives import OBJECTIVE_NAMES, Target, load_profile


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    write_session(folder, 8, 30.0, seed=1234)
    session = load_session(expand_paths([folder]))
    analysis = analyze_session(session)
    prof = load_profile("pop")
    dry_table = GeneTable(session.n_stems)
    wet_table = default_constraints(prof, session.names, session.roles, space=True).apply(
        GeneTable(session.n_stems), session.names)
    problems = {"dry": Problem(analysis, dry_table, Target(prof, space=False), OBJECTIVE_NAMES, (1.0,) * 4),
                "space": Problem(analysis, wet_table, Target(prof, space=True), OBJECTIVE_NAMES, (1.0,) * 4)}
    rng = np.random.default_rng(0)
    times = {k: [] for k in problems}
    for _ in range(9):
        for k, p in problems.items():
            G = rng.uniform(size=(64, p.table.n_genes))
            t0 = time.perf_counter()
            p.evaluate_population(G)
            times[k].append(time.perf_counter() - t0)
    rate = {k: 64 / float(np.median(v[1:])) for k, v in times.items()}
    print(f"evaluations/s: dry {rate['dry']:.0f}, with the reverb bus {rate['space']:.0f}, "
          f"ratio {rate['space'] / rate['dry']:.3f}")
    print(json.dumps({"benchmark": "space", "evals_per_s": rate, "ratio": rate["space"] / rate["dry"],
                      "times_s": times}))


if __name__ == "__main__":
    main()
