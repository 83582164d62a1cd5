"""The dynamic cut (``evomix.engine.dsp.unmask``): cost of the exact tier on a real-size stem, cost of the
fast tier on a population, and the accuracy figures (depth, attack/release, fast vs exact, the fast
tier's response scaling). Prints the figures, then one JSON object on the last line.

    python experiments/bench_unmask.py [--repeats 5] [--seconds 210]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from scipy.signal import butter, hilbert, sosfilt, welch

from evomix.engine.bands import band_grid, band_powers
from evomix.engine.dsp.filters import rbj_sos
from evomix.engine.dsp.unmask import (
    MAX_DEPTH_DB,
    RANGE_DB,
    DynamicCutStream,
    _band_mean_power,
    cut_band_gain,
    dynamic_cut,
    key_band_level_db,
    mono_band_power,
)

SR = 44100
CUT = dict(freq_hz=2000.0, q=1.0, depth_db=9.0, threshold_db=-30.0, attack_ms=10.0, release_ms=150.0)


def timed(fn, repeats):
    """(median, min) wall seconds of ``fn()`` over ``repeats`` runs, after one warm-up (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def band_noise(rng, f0, n, level_db):
    z = sosfilt(butter(4, [f0 / 1.5, f0 * 1.5], btype="band", fs=SR, output="sos"), rng.normal(0, 1, n))
    return z / np.sqrt(np.mean(z**2)) * 10 ** (level_db / 20)


def gate(n, spans_s):
    env = np.zeros(n)
    for a, b in spans_s:
        env[int(round(a * SR)) : int(round(b * SR))] = 1.0
    return env


def cost_exact(seconds, repeats):
    n = int(round(seconds * SR))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (2, n)).astype(np.float32)  # (2, n) as decoded
    key = (band_noise(rng, 2000.0, n, -12.0) * np.repeat(rng.random(n // SR + 1) < 0.5, SR)[:n]).astype(np.float32)
    out = np.empty((2, n))
    chunk = 128 * band_grid(SR).hop  # the exact renderer's 6.4 s chunks (engine.strip.CHUNK_HOPS)

    def chunked():
        stream = DynamicCutStream(SR, **CUT)
        for a in range(0, n, chunk):
            stream.process(x[:, a : a + chunk], key[a : a + chunk], out=out[:, a : a + chunk])

    one_call, one_call_min = timed(lambda: dynamic_cut(x, key, SR, **CUT), repeats)
    into_out, into_out_min = timed(lambda: DynamicCutStream(SR, **CUT).process(x, key, out=out), repeats)
    in_chunks, in_chunks_min = timed(chunked, repeats)
    detector, _ = timed(lambda: DynamicCutStream(SR, **CUT, record=True).process(np.empty((0, n)), key), repeats)
    return {"samples": n, "channels": 2, "s_one_call_median": one_call, "s_one_call_min": one_call_min,
            "s_into_out_median": into_out, "s_into_out_min": into_out_min,
            "s_chunked_6_4s_median": in_chunks, "s_chunked_6_4s_min": in_chunks_min,
            "s_detector_only_median": detector}


def cost_fast(repeats, n_pop=64, n_stems=16, n_frames=600):
    grid = band_grid(SR)
    rng = np.random.default_rng(1)
    key_power = rng.gamma(1.0, 1e-3, (n_stems, grid.n_bands, n_frames))  # (stems, B, T)
    freq = rng.uniform(60, 12000, (n_pop, n_stems))
    q = rng.uniform(0.5, 4, (n_pop, n_stems))

    def run():
        level = key_band_level_db(key_power, freq_hz=freq, q=q, bands_hz=grid, sr=SR)  # (pop, stems, T)
        return cut_band_gain(level, freq_hz=freq, q=q, depth_db=rng.uniform(0, 12, (n_pop, n_stems)),
                             threshold_db=-30.0, attack_ms=rng.uniform(1, 100, (n_pop, n_stems)),
                             release_ms=rng.uniform(20, 1000, (n_pop, n_stems)), hop_s=grid.hop_s,
                             bands_hz=grid, sr=SR)

    median, best = timed(run, repeats)
    return {"pop": n_pop, "stems": n_stems, "bands": grid.n_bands, "frames": n_frames,
            "s_median": median, "s_min": best, "output_mb": n_pop * n_stems * grid.n_bands * n_frames * 8 / 2**20}


def depth_accuracy():
    rng = np.random.default_rng(2)
    f0, n = 2000.0, int(2.2 * SR)
    t = np.arange(n) / SR
    x = rng.normal(0, 0.1, (2, n))
    key = 0.5 * np.sin(2 * np.pi * f0 * t) * gate(n, [(0.0, 1.0)])

    def change_db(y, f_hz, part):
        freqs, p_in = welch(x[:, part], SR, nperseg=4096)
        _, p_out = welch(y[:, part], SR, nperseg=4096)
        i = np.argmin(np.abs(freqs - f_hz))
        return float(10 * np.log10(p_out[:, i].sum() / p_in[:, i].sum()))

    rows = []
    for depth in (3.0, 6.0, 12.0):
        y = dynamic_cut(x, key, SR, **{**CUT, "depth_db": depth, "q": 1.5, "threshold_db": -40.0, "release_ms": 100.0})
        on, after = slice(int(0.2 * SR), int(0.95 * SR)), slice(int(1.8 * SR), n)
        rows.append({"depth_db": depth, "at_freq_db": change_db(y, f0, on),
                     "two_octaves_below_db": change_db(y, f0 / 4, on), "two_octaves_above_db": change_db(y, f0 * 4, on),
                     "after_release_db": change_db(y, f0, after)})
    return rows


def attack_release():
    f0, depth, n = 2000.0, 9.0, int(3.0 * SR)
    t = np.arange(n) / SR
    x = np.stack([0.5 * np.sin(2 * np.pi * f0 * t)] * 2)
    key = np.sin(2 * np.pi * f0 * t + 1.0) * gate(n, [(0.5, 1.0)])
    rows = []
    for attack, release in ((1.0, 20.0), (5.0, 100.0), (20.0, 300.0), (100.0, 1000.0)):
        params = {**CUT, "depth_db": depth, "threshold_db": -3.0 - RANGE_DB - 10.0, "attack_ms": attack,
                  "release_ms": release}
        y = dynamic_cut(x, key, SR, **params)
        gain_db = 20 * np.log10(np.abs(hilbert(y[0])) / 0.5)
        window_ms = DynamicCutStream(SR, **params).window_samples / SR * 1000
        on, off = int(0.5 * SR), int(1.0 * SR)
        rows.append({"attack_ms": attack, "release_ms": release,
                     "t63_attack_ms": float(np.argmax(gain_db[on:] <= -(1 - np.exp(-1)) * depth) / SR * 1000),
                     "t90_attack_ms": float(np.argmax(gain_db[on:] <= -0.9 * depth) / SR * 1000),
                     "t63_release_after_window_ms": float(np.argmax(gain_db[off:] >= -np.exp(-1) * depth) / SR * 1000
                                                          - window_ms)})
    return rows


def fast_vs_exact():
    grid = band_grid(SR)
    rows = []
    cases = [(0.3, 0.5, 0.7, 10.0, 150.0), (0.31, 0.4, 0.6, 1.0, 20.0), (0.321, 0.31, 0.43, 2.0, 60.0),
             (0.337, 0.4, 0.6, 50.0, 600.0), (0.343, 0.4, 0.6, 100.0, 1000.0)]
    for f0, q in ((2000.0, 1.0), (500.0, 4.0), (8000.0, 0.5)):
        for onset, on_s, off_s, attack, release in cases:
            rng = np.random.default_rng(3)
            n = int(4.0 * SR)
            spans, t = [], onset
            while t + on_s < 3.7:
                spans.append((t, t + on_s))
                t += on_s + off_s
            key = band_noise(rng, f0, n, -10.0) * gate(n, spans)
            x = rng.normal(0, 0.1, (2, n))
            params = {**CUT, "freq_hz": f0, "q": q, "attack_ms": attack, "release_ms": release}
            y = dynamic_cut(x, key, SR, **params)
            p_in, _ = band_powers(x, grid)
            p_out, _ = band_powers(y, grid)
            exact_db = 10 * np.log10(p_out.sum(axis=0).astype(float) / p_in.sum(axis=0))  # (B, T)
            k_power, k_cross = band_powers(np.stack([key, key]), grid)
            level = key_band_level_db(mono_band_power(k_power, k_cross), freq_hz=f0, q=q, bands_hz=grid, sr=SR)
            fast_db = 10 * np.log10(cut_band_gain(level, **params, hop_s=grid.hop_s, bands_hz=grid, sr=SR))
            near = np.abs(np.log2(grid.centres_hz / f0)) <= 0.5
            err = (fast_db - exact_db)[near]
            frame_s = np.arange(err.shape[1]) * grid.hop_s
            switches = np.array([s for span in spans for s in span])
            far = np.min(np.abs(frame_s[:, None] - switches[None, :]), axis=1) > 3 * grid.hop_s + 1e-9
            # the measurement's own floor: a static cut at full depth, per-frame STFT ratio vs its band-mean response
            static = sosfilt(rbj_sos("peak", f0, -CUT["depth_db"], q, SR), x, axis=-1)
            p_static, _ = band_powers(static, grid)
            static_db = 10 * np.log10(p_static.sum(axis=0).astype(float) / p_in.sum(axis=0))  # (B, T)
            model_db = 10 * np.log10(_band_mean_power(rbj_sos("peak", f0, -CUT["depth_db"], q, SR),
                                                      grid.grid_hz.reshape(grid.n_bands, -1), SR))  # (B,)
            floor_db = float(np.abs(static_db - model_db[:, None])[near][:, 2:-2].max())
            rows.append({"freq_hz": f0, "q": q, "attack_ms": attack, "release_ms": release, "first_onset_s": onset,
                         "max_abs_db": float(np.abs(err).max()), "p95_abs_db": float(np.percentile(np.abs(err), 95)),
                         "max_abs_far_from_switch_db": float(np.abs(err[:, far]).max()),
                         "max_abs_near_switch_db": float(np.abs(err[:, ~far]).max()), "mean_db": float(err.mean()),
                         "static_cut_measurement_floor_db": floor_db})
    return rows


def scaling_error():
    grid = band_grid(SR)
    points = grid.grid_hz.reshape(grid.n_bands, -1)
    freq = np.geomspace(60.0, 12000.0, 25)[:, None, None, None]
    q = np.array([0.5, 1.0, 2.0, 4.0])[:, None, None]
    depth = np.array([1.0, 3.0, 6.0, 9.0, MAX_DEPTH_DB])[:, None]
    frac = np.linspace(0.05, 0.95, 19)
    full = 10 * np.log10(_band_mean_power(rbj_sos("peak", freq, -depth + 0 * frac, q, SR), points, SR))
    at_g = 10 * np.log10(_band_mean_power(rbj_sos("peak", freq, -depth * frac, q, SR), points, SR))
    err = np.abs(at_g - frac[:, None] * full)  # (F, Q, D, R, B)
    per_depth = {f"{d:g}": float(err[:, :, i].max()) for i, d in enumerate(depth[:, 0])}
    per_q = {f"{v:g}": float(err[:, i].max()) for i, v in enumerate(q[:, 0, 0])}
    return {"max_db": float(err.max()), "max_db_per_depth": per_depth, "max_db_per_q": per_q}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=210.0, help="stem length for the exact-tier timing (s)")
    args = ap.parse_args(argv)
    result = {"environment": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                              "loadavg_start": os.getloadavg()}}

    exact = cost_exact(args.seconds, args.repeats)
    result["exact_cost"] = exact
    print(f"exact tier, 2 x {exact['samples']:,} samples ({args.seconds:g} s at {SR} Hz, float32 in, float64 out): "
          f"one call {exact['s_one_call_median']:.3f} s (min {exact['s_one_call_min']:.3f}), into a preallocated "
          f"out {exact['s_into_out_median']:.3f} s, in 6.4 s chunks {exact['s_chunked_6_4s_median']:.3f} s, "
          f"detector alone {exact['s_detector_only_median']:.3f} s (medians of {args.repeats})", flush=True)
    fast = cost_fast(args.repeats)
    result["fast_cost"] = fast
    print(f"fast tier, key level + cut_band_gain for pop {fast['pop']} x {fast['stems']} stems x {fast['bands']} "
          f"bands x {fast['frames']} frames ({fast['output_mb']:.0f} MB out): {fast['s_median']:.3f} s", flush=True)

    result["depth"] = depth_accuracy()
    for r in result["depth"]:
        print(f"depth {r['depth_db']:4.1f} dB (Q 1.5): at freq {r['at_freq_db']:+.3f} dB, two octaves below "
              f"{r['two_octaves_below_db']:+.3f}, above {r['two_octaves_above_db']:+.3f}, after release "
              f"{r['after_release_db']:+.4f}")
    result["attack_release"] = attack_release()
    for r in result["attack_release"]:
        print(f"attack {r['attack_ms']:5.1f} ms: t63 {r['t63_attack_ms']:7.2f} ms, t90 {r['t90_attack_ms']:7.2f} ms"
              f" | release {r['release_ms']:6.1f} ms: t63 after the 50 ms window "
              f"{r['t63_release_after_window_ms']:7.1f} ms")
    result["fast_vs_exact"] = fast_vs_exact()
    worst = {k: max(abs(r[k]) for r in result["fast_vs_exact"])
             for k in ("max_abs_db", "p95_abs_db", "max_abs_far_from_switch_db", "max_abs_near_switch_db", "mean_db")}
    result["fast_vs_exact_worst"] = worst
    for r in result["fast_vs_exact"]:
        print(f"fast vs exact {r['freq_hz']:6.0f} Hz Q {r['q']:3.1f} attack {r['attack_ms']:5.1f} release "
              f"{r['release_ms']:6.1f}: max {r['max_abs_db']:.2f} dB (far from a switch "
              f"{r['max_abs_far_from_switch_db']:.2f}, near {r['max_abs_near_switch_db']:.2f}), p95 "
              f"{r['p95_abs_db']:.2f}, mean {r['mean_db']:+.3f}; a static cut measures within "
              f"{r['static_cut_measurement_floor_db']:.2f} dB of its response")
    print(f"fast vs exact, worst over cases: far from a switch {worst['max_abs_far_from_switch_db']:.2f} dB, near a "
          f"switch {worst['max_abs_near_switch_db']:.2f} dB, p95 {worst['p95_abs_db']:.2f} dB, "
          f"|mean| {worst['mean_db']:.3f} dB")
    result["scaling"] = scaling_error()
    print(f"fast tier's scaled response vs the bell at the frame's gain: max {result['scaling']['max_db']:.3f} dB; "
          f"per depth {result['scaling']['max_db_per_depth']}; per Q {result['scaling']['max_db_per_q']}")
    result["environment"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
