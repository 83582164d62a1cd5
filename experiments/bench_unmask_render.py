"""What dynamic unmasking costs an exact render at real size (issue 22, item 2), in one run: the same
candidate dry (no cut, no send), with the reverb bus alone (each role's usual send, decay 1.6 s;
what ``bench_reverb_render.py`` measured until session 13, whose results file stays), with its
cuts (every keyed stem cut up to 6 dB at its role's
band centre, ``search.keys``), and with its cuts and the reverb bus. The cut's DSP alone
(``engine.render.cut_stem`` of every cut stem, one thread) is timed too, so the rest of the extra is
the change of path. Two render modes: with the analysis grid (as ``evomix mix``
renders an alternative: the per-stem strips) and mix only (as ``evomix render`` renders: the SIMD lanes,
with the cut stems computed ahead and read in their place, ``engine.render``). Each is rendered
``--reps`` times alternately after one round that warms the compiled kernels up (dropped); medians
and the extra seconds over dry are printed, in wall time and in the process's CPU time (both threads:
steadier than wall time on a shared, loaded machine), JSON last line. No
assertions: this only measures.

Workload: ``evomix.testing.songs.cached_session`` (16 stereo stems x 210 s at 44.1 kHz, seed 1234).

Usage: python experiments/bench_unmask_render.py [--reps 3] [--stems 16] [--duration 210]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from evomix.engine.analysis import analyze_session
from evomix.engine.render import cut_settings, cut_stem, render_exact
from evomix.io.audio import expand_paths, load_session
from evomix.search.constraints import UNMASK_ROLE_HZ, unmask_defaults
from evomix.search.genome import REVERB_SEND_OFF_DB, GeneTable
from evomix.search.keys import key_map, resolve_keys
from evomix.search.seeding import ROLE_SEND_DB
from evomix.testing.songs import cached_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stems", type=int, default=16)
    ap.add_argument("--duration", type=float, default=210.0)
    args = ap.parse_args()
    folder, _ = cached_session(args.stems, args.duration, sr=44100, seed=1234)
    session = load_session(expand_paths([folder]))
    analysis = analyze_session(session)
    key_index = resolve_keys(session.names, session.roles)
    table = unmask_defaults(session.names, session.roles, key_index >= 0).apply(GeneTable(session.n_stems),
                                                                                session.names)
    table = table.with_keys(key_map(analysis, key_index))
    keyed = key_index >= 0
    hz = np.array([[np.sqrt(np.prod(UNMASK_ROLE_HZ.get(r, (1000.0, 1000.0)))) for r in session.roles]])
    base = table.decode(table.neutral()[None], analysis.trim_db)
    cut = dataclasses.replace(base, unmask_depth_db=np.where(keyed, 6.0, 0.0)[None], unmask_hz=hz)
    cut = table.decode(table.encode(cut), analysis.trim_db)  # thresholds for these frequencies
    dry = dataclasses.replace(cut, unmask_depth_db=np.zeros_like(cut.unmask_depth_db))
    sends = np.array([[ROLE_SEND_DB.get(r, REVERB_SEND_OFF_DB) for r in session.roles]])
    both = dataclasses.replace(cut, reverb_send_db=sends, reverb_decay_s=np.array([1.6]))
    reverb = dataclasses.replace(dry, reverb_send_db=sends, reverb_decay_s=np.array([1.6]))
    cases = {"dry": dry, "reverb": reverb, "unmask": cut, "unmask_reverb": both}
    times = {f"{mode}/{k}": [] for mode in ("grid", "mix_only") for k in cases}
    times["cut_dsp"] = []
    cpu = {k: [] for k in times}  # process CPU seconds (every thread): steadier than wall time on a loaded machine
    audio = session.audio
    for rep in range(args.reps + 1):  # the first round warms the compiled kernels up and is dropped
        t0, c0 = time.perf_counter(), time.process_time()
        for s, c in cut_settings(cut).items():
            k = c["key"]
            cut_stem(audio[s][: 1 if session.is_mono[s] else 2], audio[k][: 1 if session.is_mono[k] else 2],
                     10.0 ** (float(cut.trim_db[0, k]) / 20.0), session.sr, c)
        if rep:
            times["cut_dsp"].append(time.perf_counter() - t0)
            cpu["cut_dsp"].append(time.process_time() - c0)
        for mode in ("grid", "mix_only"):
            for name, params in cases.items():
                t0, c0 = time.perf_counter(), time.process_time()
                r = render_exact(session, session.is_mono, session.sr, params, target_lufs=-14.0, ceiling_dbtp=-1.0,
                                 threads=2, **({"grid": analysis.grid} if mode == "grid" else {"keep_stems": False}))
                if rep:
                    times[f"{mode}/{name}"].append(time.perf_counter() - t0)
                    cpu[f"{mode}/{name}"].append(time.process_time() - c0)
                del r
    med = {k: float(np.median(v)) for k, v in times.items()}
    extra = {k: med[k] - med[k.split("/")[0] + "/dry"] for k in med if "/" in k}
    for mode in ("grid", "mix_only"):
        print(f"{mode}: dry {med[mode + '/dry']:.2f} s, reverb {extra[mode + '/reverb']:+.2f} s, unmask "
              f"{extra[mode + '/unmask']:+.2f} s, unmask + reverb {extra[mode + '/unmask_reverb']:+.2f} s "
              f"({int(keyed.sum())} of {session.n_stems} stems cut)")
    print(f"the cut's DSP alone (every cut stem, one thread): {med['cut_dsp']:.2f} s")
    cmed = {k: float(np.median(v)) for k, v in cpu.items()}
    cextra = {k: cmed[k] - cmed[k.split("/")[0] + "/dry"] for k in cmed if "/" in k}
    for mode in ("grid", "mix_only"):
        print(f"{mode}, CPU seconds (both threads): dry {cmed[mode + '/dry']:.2f} s, reverb "
              f"{cextra[mode + '/reverb']:+.2f} s, unmask {cextra[mode + '/unmask']:+.2f} s, unmask + reverb "
              f"{cextra[mode + '/unmask_reverb']:+.2f} s")
    print(json.dumps({"benchmark": "unmask_render", "stems": args.stems, "duration_s": args.duration,
                      "keyed_stems": int(keyed.sum()), "times_s": times, "median_s": med, "extra_s": extra,
                      "cpu_s": cpu, "cpu_median_s": cmed, "cpu_extra_s": cextra}))


if __name__ == "__main__":
    main()
