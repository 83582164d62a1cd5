"""Time ``evomix rank`` (re-rank a saved front, re-export K exact renders) against the run it
re-ranks (issue 12, item 4: < 10 % of the original run's time).

Workload: ``songs.cached_session(N_STEMS, DURATION_S)`` (default 6 stems x 20 s, the issue's new
user), ``evomix mix`` with its default search settings; then ``rank --weights masking=4`` and
``rank --weights genre=4`` from the saved front.json. Wall times from ``time.perf_counter``,
in this process (imports and JIT warm-up excluded from both: a tiny mix runs first).

    PYTHONPATH=$PWD python3 experiments/bench_rank.py [n_stems duration_s [generations]]

Last line: JSON with run_s, rank_s (per weighting) and the ratio.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

from evomix import api
from evomix.settings import Search
from evomix.testing.songs import cached_session
from evomix.tools.rank import rank, write_ranked


def main(n_stems: int = 6, duration_s: float = 20.0, generations: int | None = None) -> dict:
    folder, _ = cached_session(n_stems, duration_s)
    paths = sorted(Path(folder).glob("*.wav"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        api.mix(paths[:2], search=Search(population=4, generations=0)).write(tmp / "warm")  # JIT warm-up
        t0 = time.perf_counter()
        res = api.mix(paths) if generations is None else api.mix(paths, search=Search(generations=generations))
        res.write(tmp / "run")
        run_s = time.perf_counter() - t0
        out = {"workload": f"{n_stems} stems x {duration_s:g} s", "generations": res.settings["generations"],
               "run_s": round(run_s, 2),
               "alternatives": len(res.alternatives), "front": len(res.front), "rank_s": {}}
        for w in ("masking=4", "genre=4"):
            t0 = time.perf_counter()
            r = rank(tmp / "run", weights=w)
            write_ranked(r, tmp / w, in_place=False)
            out["rank_s"][w] = round(time.perf_counter() - t0, 2)
            out.setdefault("new_renders", {})[w] = r.settings["exact_renders"] - r.settings["reused_renders"]
        out["ratio"] = round(max(out["rank_s"].values()) / run_s, 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(*[int(sys.argv[1]), float(sys.argv[2]), *map(int, sys.argv[3:4])] if len(sys.argv) > 2 else [])
