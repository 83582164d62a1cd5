"""Benchmark and fidelity figures of the reverb bus's reverb (``evomix.engine.dsp.reverb``).

1. Cost of the exact tier (the FDN) on a 210 s stereo song at 44.1 kHz (2 x 9.26 M samples): one
   call, and in 2^16-sample chunks through ``ReverbStream`` (wall and process CPU time, best and
   median of ``--reps``; the machine's other load shows in the spread).
2. RT60 by Schroeder backward integration (ISO 3382-1, T20 from -5 to -25 dB, x3) of the impulse
   response in the 500 Hz octave and the 8 kHz third octave, against ``decay_s`` and
   ``decay_s * damping``, for several seeds.
3. Energy calibration: white noise in, band power out over band power in (ERB bands of
   ``engine.bands``, 100 Hz to 10 kHz, Welch spectra), per network and averaged over networks.
4. Fast model vs exact: band power per frame of noise bursts through the FDN against
   ``reverb_band_power`` of the bursts' band powers, in frames within 40 dB of each band's peak.

Output: a table of figures, and a JSON object as the LAST line of stdout. No assertions: this only
measures (tests/test_reverb.py holds the tolerances).

Usage::

    python experiments/bench_reverb.py            # about a minute on two cores
    python experiments/bench_reverb.py --quick
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from scipy.signal import butter, sosfilt, welch

from evomix.engine.bands import band_grid, band_powers
from evomix.engine.dsp.reverb import (
    ReverbStream,
    band_decay_s,
    return_highpass_power,
    reverb,
    reverb_band_power,
)

SR = 44100
SONG_S = 210.0  # 9.26 M samples at 44.1 kHz
CHUNK = 1 << 16


def time_exact(reps):
    """Wall and CPU seconds of the FDN on 2 x 9.26 M samples: one call and chunked."""
    x = (np.random.default_rng(0).standard_normal((2, int(SONG_S * SR))) * 0.1).astype(np.float32)
    reverb(x[:, :1000], SR)  # compile (or load the cached kernel) outside the timing
    out = {}
    for name in ("one_call", "chunked"):
        wall, cpu = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "one_call":
                reverb(x, SR, decay_s=2.0, predelay_ms=20.0, damping=0.5, highpass_hz=100.0, seed=1)
            else:
                stream = ReverbStream(SR, decay_s=2.0, predelay_ms=20.0, damping=0.5, highpass_hz=100.0, seed=1)
                for i in range(0, x.shape[1], CHUNK):
                    stream.process(x[:, i:i + CHUNK])
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[name] = dict(wall_best_s=min(wall), wall_median_s=statistics.median(wall),
                         cpu_best_s=min(cpu), cpu_median_s=statistics.median(cpu))
    out["samples"] = int(x.shape[1])
    return out


def schroeder_rt60(ir, lo_hz, hi_hz):
    """ISO 3382-1 T20 (x3) of the band ``lo_hz..hi_hz`` (4th-order Butterworth), channels summed."""
    sos = butter(4, [lo_hz, hi_hz], btype="bandpass", fs=SR, output="sos")
    energy = np.sum(sosfilt(sos, ir, axis=-1) ** 2, axis=0)
    decay_db = 10 * np.log10(np.cumsum(energy[::-1])[::-1] / energy.sum())
    i5, i25 = np.argmax(decay_db <= -5.0), np.argmax(decay_db <= -25.0)
    return -60.0 / np.polyfit(np.arange(i5, i25) / SR, decay_db[i5:i25], 1)[0]


def rt60_errors(seeds):
    """Relative RT60 errors (%) at 500 Hz vs decay_s and at 8 kHz vs decay_s * damping."""
    rows = []
    for decay_s in (0.5, 1.5, 4.0):
        for damping in (0.3, 0.5, 1.0):
            e500, e8k = [], []
            for seed in range(seeds):
                x = np.zeros((2, int((1.5 * decay_s + 0.3) * SR)))
                x[:, 0] = 1.0
                ir = reverb(x, SR, decay_s=decay_s, damping=damping, seed=seed)
                e500.append(schroeder_rt60(ir, 500 / 2**0.5, 500 * 2**0.5) / decay_s - 1)
                e8k.append(schroeder_rt60(ir, 8000 / 2 ** (1 / 6), 8000 * 2 ** (1 / 6)) / (decay_s * damping) - 1)
            rows.append(dict(decay_s=decay_s, damping=damping,
                             rt500_mean_pct=100 * float(np.mean(e500)), rt500_max_pct=100 * float(np.max(np.abs(e500))),
                             rt8k_mean_pct=100 * float(np.mean(e8k)), rt8k_max_pct=100 * float(np.max(np.abs(e8k)))))
    return rows


def calibration(seeds):
    """Band gain (dB) of white noise, ERB bands 100 Hz-10 kHz: per network and the mean of networks."""
    grid = band_grid(SR)
    keep = (grid.centres_hz >= 100) & (grid.centres_hz <= 10000)
    highpass_db = 10 * np.log10(return_highpass_power(grid, 20.0, SR))
    rng = np.random.default_rng(1)
    rows = []
    for decay_s in (0.5, 2.0, 6.0):
        for send in ("stereo", "mono"):
            warm = int(1.5 * decay_s * SR)
            gains = []
            for seed in range(seeds):
                x = rng.standard_normal((2, warm + 6 * SR)) * 0.1
                if send == "mono":
                    x[1] = x[0]
                y = reverb(x, SR, decay_s=decay_s, damping=0.5, seed=seed)
                f, p_in = welch(x[:, warm:], SR, nperseg=8192)
                _, p_out = welch(y[:, warm:], SR, nperseg=8192)
                band = np.searchsorted(grid.edges_hz, f, side="right") - 1
                ok = (band >= 0) & (band < grid.n_bands)
                b_in = np.bincount(band[ok], p_in.sum(0)[ok], minlength=grid.n_bands)
                b_out = np.bincount(band[ok], p_out.sum(0)[ok], minlength=grid.n_bands)
                gains.append((10 * np.log10(b_out / b_in) - highpass_db)[keep])
            gains = np.array(gains)
            rows.append(dict(decay_s=decay_s, send=send, mean_of_networks_max_db=float(np.abs(gains.mean(0)).max()),
                             one_network_max_db=float(np.abs(gains).max()),
                             one_network_rms_db=float(np.sqrt(np.mean(gains**2)))))
    return rows


def fast_vs_exact(n_bursts):
    """Largest |error| (dB) of the fast model per kind of frame, bursts with edges anywhere in a frame."""
    grid = band_grid(SR)
    keep = (grid.centres_hz >= 100) & (grid.centres_hz <= 10000)
    rows = []
    for decay_s, damping, predelay_ms, highpass_hz in [(0.3, 0.5, 0.0, 20.0), (0.5, 0.5, 0.0, 20.0),
                                                       (1.0, 0.5, 0.0, 20.0), (1.5, 0.5, 0.0, 20.0),
                                                       (1.5, 0.2, 50.0, 200.0), (4.0, 0.5, 20.0, 100.0),
                                                       (8.0, 0.7, 0.0, 20.0)]:
        lead = 2 * grid.hop
        n = lead + int((1.0 + 0.8 * decay_s + 0.4) * SR)
        rng = np.random.default_rng(2024)
        x = np.zeros((n_bursts, 2, n))
        for k in range(n_bursts):
            start = lead + rng.integers(grid.hop)
            stop = start + SR + rng.integers(grid.hop)
            x[k, :, start:stop] = rng.standard_normal((2, stop - start)) * 0.1
        y = np.stack([reverb(x[k], SR, decay_s=decay_s, damping=damping, predelay_ms=predelay_ms,
                             highpass_hz=highpass_hz, seed=k) for k in range(n_bursts)])
        send = band_powers(x, grid)[0].astype(float).mean(axis=(0, 1))  # (B, T)
        exact = band_powers(y, grid)[0].astype(float).mean(axis=(0, 1))
        model = reverb_band_power(send, band_decay_s(grid.centres_hz, decay_s, damping, SR),
                                  predelay_ms / 1000 / grid.hop_s, grid.hop_s)
        model *= return_highpass_power(grid, highpass_hz, SR)[:, None]
        err = 10 * np.log10(np.maximum(exact[keep], 1e-30) / np.maximum(model[keep], 1e-30))
        loud = exact[keep] >= 1e-4 * exact[keep].max(axis=1, keepdims=True)
        frames = np.arange(send.shape[1])
        onset = 2 + predelay_ms / 1000 / grid.hop_s + 2
        offset = 2 + (1.0 + predelay_ms / 1000) / grid.hop_s + 1
        kinds = dict(onset=frames <= onset, steady=(frames > onset) & (frames <= offset),
                     after_offset=(frames > offset) & (frames <= offset + 3), tail=frames > offset + 3)
        row = dict(decay_s=decay_s, damping=damping, predelay_ms=predelay_ms, highpass_hz=highpass_hz)
        for name, sel in kinds.items():
            e = err[loud & sel[None, :]]
            row[f"{name}_max_db"] = float(np.abs(e).max()) if e.size else None
            row[f"{name}_mean_db"] = float(e.mean()) if e.size else None
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, seeds and bursts")
    parser.add_argument("--reps", type=int, default=None, help="timing repetitions (default 5, --quick 2)")
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    seeds = 3 if args.quick else 8
    report = dict(cost=time_exact(reps))
    c = report["cost"]
    print(f"FDN on 2 x {c['samples'] / 1e6:.2f} M samples: one call {c['one_call']['wall_best_s']:.2f} s best, "
          f"{c['one_call']['wall_median_s']:.2f} s median (cpu {c['one_call']['cpu_best_s']:.2f} s); "
          f"chunks of {CHUNK}: {c['chunked']['wall_best_s']:.2f} s best")
    report["rt60"] = rt60_errors(seeds)
    print("\nRT60 error, % (ISO 3382-1 T20): decay damping | 500 Hz mean max | 8 kHz (1/3 oct) mean max")
    for r in report["rt60"]:
        print(f"  {r['decay_s']:4.1f} {r['damping']:4.1f} | {r['rt500_mean_pct']:6.1f} {r['rt500_max_pct']:5.1f} | "
              f"{r['rt8k_mean_pct']:6.1f} {r['rt8k_max_pct']:5.1f}")
    report["calibration"] = calibration(seeds)
    print(f"\nEnergy gain, dB, ERB bands 100 Hz-10 kHz ({seeds} networks): decay send | mean of networks max | "
          "one network max, rms")
    for r in report["calibration"]:
        print(f"  {r['decay_s']:4.1f} {r['send']:6s} | {r['mean_of_networks_max_db']:5.2f} | "
              f"{r['one_network_max_db']:5.2f} {r['one_network_rms_db']:5.2f}")
    report["fast_vs_exact"] = fast_vs_exact(8 if args.quick else 16)
    print("\nFast model vs exact, max |error| dB (frames within 40 dB of the peak, 100 Hz-10 kHz):")
    print("  decay damping predelay highpass | onset steady after_offset tail")
    for r in report["fast_vs_exact"]:
        print(f"  {r['decay_s']:4.1f} {r['damping']:4.1f} {r['predelay_ms']:5.0f} {r['highpass_hz']:5.0f} | "
              f"{r['onset_max_db']:5.1f} {r['steady_max_db']:5.2f} {r['after_offset_max_db']:5.2f} "
              f"{r['tail_max_db']:5.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
