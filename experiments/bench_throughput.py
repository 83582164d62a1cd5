"""Throughput benchmark: how many candidate mixes per second each tier scores, and what a whole run costs.

Standard workload
-----------------
8 stereo stems x 30 s at 44.1 kHz, synthesised here from a seeded numpy generator (a 120 BPM song
in A minor, Am-F-C-G, with sections: intro / verse / chorus / break, so levels and density change
over time) and written as 24-bit WAVs into a temporary folder. File names give the roles:
kick, bass, vocal, keys, guitar, pad, snare, lead (then hihat, piano, arp, fx, and numbered variants
for more than 12 stems). Search settings: population 64, 50 generations, all four objectives
(masking, loudness, balance, genre; weights 1), 5 alternatives exported, genre "pop".

What is measured (wall-clock, ``time.perf_counter``; single process, whatever BLAS threads numpy uses)
---------------------------------------------------------------------------------------------------
1. Analysis: ``load_session`` + ``analyze_session`` on the stem folder (each timed, once).
2. Fast tier: ``Problem.evaluate_population`` on populations of 64 genomes on one thread, then the
   same split over all cores (``evomix.parallel.score``, the default of ``evomix mix``); after one untimed
   warm-up call, ``--reps`` (>= 5) calls on fresh populations alternating between
   ``GeneTable.initial_population`` (neutral mix + noise, 1/4 uniform) and uniform random genomes.
   Candidate evaluations per second = 64 / median call time (also reported per population kind).
3. Exact tier: for ``--exact-candidates`` random candidates, ``render_exact`` +
   ``features_from_render`` + ``objectives.evaluate`` (the work ``api.mix`` does per exported
   alternative); seconds per candidate = median (each stage also reported).
4. Naive per-candidate rate = 1 / (exact s per candidate), i.e. what a search scoring each
   candidate with the exact renderer would reach; RATIO = fast rate / naive rate, both measured
   in this run on the same session.
5. End to end: ``python -m evomix mix DIR --out OUT --population 64 --generations 50 --quiet --json``
   as a subprocess (fresh interpreter: imports, loading, analysis, search, exact renders of the
   alternatives, writing). Wall time, and peak RSS of that process from ``os.wait4``'s
   ``ru_maxrss`` (kB on Linux) -- cross-checked by psutil polling of the process tree when psutil
   is installed.
6. ``--profile``: cProfile of one ``evaluate_population`` call (64 genomes, standard session);
   top 12 functions by cumulative time (and, for where the self time goes, top 12 by tottime).

Process CPU time (``time.process_time``, all threads) is recorded next to wall time: the machine may
be shared, and CPU time is less sensitive to other processes (wall time is the headline figure).

Output: human-readable lines, then one JSON object as the LAST line of stdout. No timing
assertions: this only measures.

Usage::

    python experiments/bench_throughput.py            # standard workload
    python experiments/bench_throughput.py --quick    # 8 stems x 10 s, 10 generations
    python experiments/bench_throughput.py --stems 16 --duration 60 --profile
"""
from __future__ import annotations

import os
import sys


def _blas_threads_from_argv(argv) -> None:
    """``--blas-threads N`` must act before numpy loads OpenBLAS: set the thread variables now
    (inherited by every subprocess this script starts)."""
    for i, a in enumerate(argv):
        n = a.split("=", 1)[1] if a.startswith("--blas-threads=") else (argv[i + 1] if a == "--blas-threads" and i + 1 < len(argv) else None)
        if n is not None:
            for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[k] = str(int(n))


_blas_threads_from_argv(sys.argv)

import argparse
import cProfile
import io
import json
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

try:  # optional: only used to cross-check peak RSS by polling
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

SR = 44100
BPM = 120.0
BEAT = 60.0 / BPM
BAR = 4 * BEAT
PROGRESSION = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G (MIDI triads)
ROOTS = (45, 41, 48, 43)  # bass roots: A2 F2 C3 G2
SECTIONS = (("intro", 2), ("verse", 4), ("chorus", 4), ("break", 2), ("verse", 4), ("chorus", 4),
            ("chorus", 4), ("outro", 2))  # (name, bars): 28 bars = 56 s, then repeated


def section_starts(n: int) -> list[tuple[int, str]]:
    """(start sample, section name) of every section beginning before sample ``n``."""
    out, t, i = [], 0, 0
    while t < n:
        name, bars = SECTIONS[i % len(SECTIONS)]
        out.append((t, name))
        t += int(round(bars * BAR * SR))
        i += 1
    return out


SECTION_LEVEL = {  # kind -> {section: level} (0 = tacet)
    "kick":   {"intro": 0.0, "verse": 1.0, "chorus": 1.0, "break": 0.0, "outro": 0.8},
    "snare":  {"intro": 0.0, "verse": 0.9, "chorus": 1.0, "break": 0.0, "outro": 0.7},
    "hihat":  {"intro": 0.6, "verse": 0.8, "chorus": 1.0, "break": 0.4, "outro": 0.6},
    "bass":   {"intro": 0.0, "verse": 1.0, "chorus": 1.0, "break": 0.5, "outro": 0.8},
    "vocal":  {"intro": 0.0, "verse": 0.9, "chorus": 1.0, "break": 0.7, "outro": 0.0},
    "keys":   {"intro": 1.0, "verse": 0.8, "chorus": 0.9, "break": 1.0, "outro": 1.0},
    "guitar": {"intro": 0.0, "verse": 0.7, "chorus": 1.0, "break": 0.0, "outro": 0.5},
    "pad":    {"intro": 0.6, "verse": 0.3, "chorus": 1.0, "break": 1.0, "outro": 0.8},
    "lead":   {"intro": 0.3, "verse": 0.4, "chorus": 1.0, "break": 0.6, "outro": 0.8},
    "piano":  {"intro": 1.0, "verse": 0.8, "chorus": 0.7, "break": 1.0, "outro": 1.0},
    "arp":    {"intro": 0.5, "verse": 0.6, "chorus": 1.0, "break": 0.0, "outro": 0.4},
    "fx":     {"intro": 1.0, "verse": 0.5, "chorus": 0.8, "break": 1.0, "outro": 1.0},
}
KINDS = ("kick", "bass", "vocal", "keys", "guitar", "pad", "snare", "lead", "hihat", "piano", "arp", "fx")


# ------------------------------------------------------------------------------------------------
# Stem synthesis (seeded numpy; every stem is stereo float64 (2, n) before writing)
# ------------------------------------------------------------------------------------------------

def _hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _add(buf: np.ndarray, start: int, seg: np.ndarray) -> None:
    """buf[..., start:start+len] += seg (clipped to the buffer)."""
    n = buf.shape[-1]
    if start >= n or start + seg.shape[-1] <= 0:
        return
    s0 = max(start, 0)
    end = min(n, start + seg.shape[-1])
    buf[..., s0:end] += seg[..., s0 - start:end - start]


def _harmonic(f0: float, length: int, amps, *, vib_hz=0.0, vib_st=0.0, vib_delay=0.0,
              inharm=0.0, phase_rng=None) -> np.ndarray:
    """Additive tone: sum_k amps[k-1] sin(k * phase) (band-limited to 0.45 sr), (length,)."""
    t = np.arange(length) / SR
    if vib_hz:
        depth = vib_st * np.clip((t - vib_delay) / 0.15, 0.0, 1.0)
        f = f0 * 2.0 ** (depth * np.sin(2 * np.pi * vib_hz * t) / 12.0)
        phase = 2 * np.pi * np.cumsum(f) / SR
    else:
        phase = 2 * np.pi * f0 * t
    out = np.zeros(length)
    for k, a in enumerate(amps, start=1):
        fk = f0 * k * np.sqrt(1.0 + inharm * k * k)
        if fk >= 0.45 * SR or a == 0.0:
            continue
        ph = 0.0 if phase_rng is None else phase_rng.uniform(0, 2 * np.pi)
        out += a * np.sin(phase * (fk / f0) + ph)
    return out


def _env(length: int, attack: float, decay: float, release: float = 0.02) -> np.ndarray:
    """Attack (linear) then exponential decay, short linear release at the end."""
    t = np.arange(length) / SR
    e = np.minimum(t / max(attack, 1e-4), 1.0) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    r = max(1, int(release * SR))
    e[-r:] *= np.linspace(1.0, 0.0, r)
    return e


def _section_gain(kind: str, n: int, rng) -> np.ndarray:
    """(n,) per-sample level from the section plan, with 0.5 s ramps between sections."""
    levels = SECTION_LEVEL[kind]
    g = np.empty(n)
    starts = section_starts(n)
    for (start, name), (end, _) in zip(starts, starts[1:] + [(n, "")]):
        g[start:end] = levels[name] * rng.uniform(0.85, 1.0)
    k = int(0.5 * SR)
    if n > 2 * k:  # moving average (cumulative sum: O(n))
        c = np.concatenate([[0.0], np.cumsum(np.pad(g, (k // 2, k - k // 2 - 1), mode="edge"))])
        g = (c[k:] - c[:-k]) / k
    return g[:n]


def _filtered_noise(rng, length: int, lo: float, hi: float | None = None) -> np.ndarray:
    x = rng.standard_normal(length)
    if hi is None:
        sos = butter(4, lo, btype="highpass", fs=SR, output="sos")
    else:
        sos = butter(2, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return sosfilt(sos, x)


def synth_stem(kind: str, n: int, rng: np.random.Generator, variant: int = 0) -> np.ndarray:
    """One stem of ``kind`` (see ``KINDS``), n samples, (2, n) float64. ``variant`` > 0 shifts
    octave/pan/pattern so numbered copies differ."""
    out = np.zeros((2, n))
    n_beats = int(np.ceil(n / (BEAT * SR))) + 1
    shift = (variant % 3 - 1) * 12 if variant else 0  # octave shift for variants
    pan = np.clip(rng.uniform(-0.6, 0.6) if variant else 0.0, -1, 1)
    cache: dict = {}

    def place(seg, t_s, p=0.0, vel=1.0):
        a = np.pi / 4 * (p + 1.0)
        stereo = np.stack([np.cos(a) * seg, np.sin(a) * seg]) * vel * np.sqrt(2.0)
        _add(out, int(round(t_s * SR)), stereo)

    if kind == "kick":
        L = int(0.4 * SR)
        t = np.arange(L) / SR
        f = 48.0 + (110.0 + 20 * variant) * np.exp(-t / 0.035)
        body = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.16)
        click = _filtered_noise(rng, L, 1500.0, 6000.0) * np.exp(-t / 0.004) * 0.6
        seg = body + click
        for b in range(n_beats):
            pos = b % 4
            if pos in (0, 2) or (pos == 1 and rng.random() < 0.25) or (variant % 2 == 0 and pos in (1, 3)):
                place(seg, b * BEAT + rng.normal(0, 0.002), pan * 0.2, rng.uniform(0.85, 1.0))
            if pos == 3 and rng.random() < 0.3:
                place(seg, (b + 0.5) * BEAT, pan * 0.2, 0.6)
    elif kind == "snare":
        L = int(0.35 * SR)
        t = np.arange(L) / SR
        segs = [(_filtered_noise(rng, L, 900.0, 7000.0) * np.exp(-t / 0.09)
                 + 0.7 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)) for _ in range(4)]
        for b in range(n_beats):
            if b % 4 in (1, 3):
                place(segs[rng.integers(4)], b * BEAT + rng.normal(0, 0.003), pan + rng.normal(0, 0.05),
                      rng.uniform(0.8, 1.0))
            elif rng.random() < 0.08:  # ghost note
                place(segs[rng.integers(4)], (b + 0.75) * BEAT, pan, 0.25)
    elif kind == "hihat":
        L = int(0.12 * SR)
        t = np.arange(L) / SR
        segs = [_filtered_noise(rng, L, 7000.0) * np.exp(-t / 0.025) for _ in range(6)]
        open_seg = _filtered_noise(rng, int(0.4 * SR), 6000.0) * np.exp(-np.arange(int(0.4 * SR)) / SR / 0.15)
        step = 0.25 if variant % 2 else 0.5
        for i in range(int(n_beats / step)):
            tt = i * step * BEAT
            if (i * step) % 4 == 3.5:
                place(open_seg, tt, 0.3 + pan, 0.7)
            else:
                place(segs[rng.integers(6)], tt + rng.normal(0, 0.003), 0.3 + pan + rng.normal(0, 0.1),
                      rng.uniform(0.4, 0.9) * (1.0 if (i * step) % 1 == 0 else 0.7))
    elif kind == "bass":
        amps = [1.0 / k * np.exp(-k / 6.0) for k in range(1, 13)]
        for b8 in range(2 * n_beats):
            bar = int(b8 // 8)
            root = ROOTS[bar % 4] + shift + (12 if (b8 % 8 == 7 and rng.random() < 0.4) else 0)
            if rng.random() < 0.1:
                continue  # rest
            key = ("b", root)
            if key not in cache:
                L = int(0.3 * SR)
                cache[key] = _harmonic(_hz(root), L, amps) * _env(L, 0.004, 0.22)
            place(cache[key], b8 * BEAT / 2, pan * 0.3, rng.uniform(0.75, 1.0))
    elif kind in ("keys", "piano"):
        amps = [1.0, 0.5, 0.25, 0.12, 0.06, 0.03] if kind == "keys" else [1.0, 0.6, 0.4, 0.25, 0.15, 0.1, 0.06, 0.04]
        inharm = 0.0 if kind == "keys" else 2e-4
        decay = 0.7 if kind == "keys" else 1.2
        every = 1.0 if kind == "keys" else 2.0  # beats between chord hits
        for i in range(int(n_beats / every)):
            tt = i * every * BEAT
            chord = PROGRESSION[int(tt // BAR) % 4]
            for j, m in enumerate(chord):
                m = m + shift + (12 if kind == "piano" and j == 2 else 0)
                key = (kind, m)
                if key not in cache:
                    L = int((every * BEAT + 0.6) * SR)
                    cache[key] = _harmonic(_hz(m), L, amps, inharm=inharm) * _env(L, 0.003, decay, 0.1)
                place(cache[key], tt + 0.008 * j, pan + (m - 60) / 24.0, rng.uniform(0.5, 0.8))
    elif kind == "guitar":
        amps = [1.0 / k ** 0.7 for k in range(1, 25)]
        pattern = (1, 0, 1, 1, 0, 1, 1, 1) if variant % 2 == 0 else (1, 1, 0, 1, 1, 0, 1, 0)
        gp = -0.55 if variant % 2 == 0 else 0.55
        for b8 in range(2 * n_beats):
            if not pattern[b8 % 8]:
                continue
            tt = b8 * BEAT / 2
            chord = PROGRESSION[int(tt // BAR) % 4]
            down = b8 % 2 == 0
            notes = (chord[0] - 12, chord[0] - 5, chord[0], chord[1], chord[2])
            for j, m in enumerate(notes if down else notes[::-1]):
                m = m + shift
                key = ("g", m)
                if key not in cache:
                    L = int(0.35 * SR)
                    cache[key] = _harmonic(_hz(m), L, amps, phase_rng=rng) * _env(L, 0.002, 0.12, 0.05)
                place(cache[key], tt + 0.012 * j, gp + pan * 0.3, rng.uniform(0.3, 0.55))
    elif kind == "pad":
        amps = [1.0 / k * np.exp(-k / 5.0) for k in range(1, 11)]
        for bar in range(int(np.ceil(n / (BAR * SR))) + 1):
            chord = PROGRESSION[bar % 4]
            key = ("pad", chord)
            if key not in cache:
                L = int((BAR + 0.8) * SR)
                e = _env(L, 0.35, 6.0, 0.8)
                left = sum(_harmonic(_hz(m + shift) * 2 ** (-6 / 1200), L, amps, phase_rng=rng) for m in chord)
                right = sum(_harmonic(_hz(m + shift) * 2 ** (7 / 1200), L, amps, phase_rng=rng) for m in chord)
                cache[key] = np.stack([left * e, right * e])
            _add(out, int(bar * BAR * SR), cache[key] * rng.uniform(0.8, 1.0))
    elif kind in ("vocal", "lead"):
        if kind == "vocal":
            formants = [((730, 1090, 2440), (80, 90, 120)), ((530, 1840, 2480), (60, 100, 120)),
                        ((270, 2290, 3010), (60, 90, 100)), ((570, 840, 2410), (70, 80, 100))]
            base = 57 + shift  # A3..A4 melody
            scale = (0, 2, 3, 5, 7, 8, 10, 12)
        else:
            base = 69 + shift  # A4..A5
            scale = (0, 3, 5, 7, 10, 12, 15)
        t_s = 0.0
        dur_total = n / SR
        while t_s < dur_total:
            phrase_end = t_s + rng.choice([2.0, 4.0]) * BAR / 2
            while t_s < phrase_end:
                steps = rng.choice([1, 1, 2, 2, 3, 4]) if kind == "vocal" else rng.choice([1, 1, 2])
                length = steps * BEAT / 2
                note = base + scale[rng.integers(len(scale))]
                if kind == "vocal":
                    vowel = int(rng.integers(len(formants)))
                    key = ("v", note, vowel, steps)
                    if key not in cache:
                        L = int(length * SR * 0.92)
                        f0 = float(_hz(note))
                        fc, bw = formants[vowel]
                        ks = np.arange(1, int(5000 / f0) + 1)
                        amps = sum(np.exp(-0.5 * ((ks * f0 - c) / (1.5 * w)) ** 2) * g
                                   for c, w, g in zip(fc, bw, (1.0, 0.6, 0.3))) / ks ** 0.3 + 0.02 / ks
                        seg = _harmonic(f0, L, amps, vib_hz=5.5, vib_st=0.4, vib_delay=0.2) * _env(L, 0.04, 1.5, 0.06)
                        seg += 0.02 * _filtered_noise(rng, L, 3000.0) * _env(L, 0.01, 0.2)
                        cache[key] = seg
                    place(cache[key], t_s + rng.normal(0, 0.01), pan * 0.3, rng.uniform(0.7, 1.0))
                else:
                    key = ("l", note, steps)
                    if key not in cache:
                        L = int(length * SR * 0.95)
                        amps = [(1.0 / k if k % 2 else 0.15 / k) for k in range(1, 16)]
                        cache[key] = _harmonic(float(_hz(note)), L, amps, vib_hz=6.0, vib_st=0.2, vib_delay=0.25) * _env(L, 0.01, 0.8, 0.04)
                    vel = rng.uniform(0.6, 0.9)
                    place(cache[key], t_s, 0.25 + pan, vel)
                    place(cache[key], t_s + 0.75 * BEAT, -0.6, vel * 0.3)  # ping-pong echo
                t_s += length
            t_s += rng.choice([1.0, 2.0, 4.0]) * BEAT  # breath / gap between phrases
    elif kind == "arp":
        amps = [1.0 / k for k in range(1, 20)]
        for i in range(4 * n_beats):
            tt = i * BEAT / 4
            chord = PROGRESSION[int(tt // BAR) % 4]
            m = chord[i % 3] + 12 + shift + (12 if i % 8 >= 6 else 0)
            key = ("a", m)
            if key not in cache:
                L = int(0.18 * SR)
                e = _env(L, 0.002, 0.06, 0.02)
                cache[key] = _harmonic(_hz(m), L, amps) * e
            place(cache[key], tt, np.sin(2 * np.pi * tt / (2 * BAR)) * 0.7, rng.uniform(0.5, 0.7))
    elif kind == "fx":
        for start, _name in section_starts(n)[1:]:
            L = int(BAR * SR)  # riser over the last bar before each section, then an impact
            ramp = np.linspace(0.0, 1.0, L) ** 2
            noise = np.stack([_filtered_noise(rng, L, 2000.0), _filtered_noise(rng, L, 2000.0)])
            _add(out, start - L, noise * ramp * 0.5)
            Li = int(1.5 * SR)
            ti = np.arange(Li) / SR
            boom = np.sin(2 * np.pi * (40 + 60 * np.exp(-ti / 0.1)) * ti) * np.exp(-ti / 0.4)
            imp = boom + 0.3 * _filtered_noise(rng, Li, 300.0, 4000.0) * np.exp(-ti / 0.3)
            _add(out, start, np.stack([imp, imp * 0.8]) * 0.8)
    else:
        raise ValueError(kind)

    out *= _section_gain(kind, n, rng)[None, :]
    if kind not in ("kick", "bass"):
        out = sosfilt(butter(2, 30.0, btype="highpass", fs=SR, output="sos"), out, axis=-1)
    fade = min(n // 4, int(0.01 * SR))
    if fade:
        out[:, :fade] *= np.linspace(0, 1, fade)
        out[:, -fade:] *= np.linspace(1, 0, fade)
    return out


def stem_plan(n_stems: int) -> list[tuple[str, str, int]]:
    """(file name, kind, variant) for ``n_stems`` stems: the 8 standard ones first."""
    plan = []
    for i in range(n_stems):
        kind = KINDS[i % len(KINDS)]
        variant = i // len(KINDS)
        name = f"{kind}.wav" if variant == 0 else f"{kind}_{variant + 1}.wav"
        plan.append((name, kind, variant))
    return plan


def make_stems(folder: Path, n_stems: int, duration_s: float, *, seed: int = 1234) -> list[Path]:
    """Synthesise ``n_stems`` stereo stems of ``duration_s`` s into ``folder`` as 24-bit WAVs.

    Each stem is level-set to an RMS drawn from [-28, -16] dBFS (so trims differ), peak <= 0.98.
    Memory: one stem at a time.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(duration_s * SR))
    root = np.random.default_rng(seed)
    paths = []
    for i, (name, kind, variant) in enumerate(stem_plan(n_stems)):
        rng = np.random.default_rng([seed, i])
        x = synth_stem(kind, n, rng, variant)
        rms = float(np.sqrt(np.mean(x ** 2)))
        if rms > 0:
            x *= 10 ** (root.uniform(-28.0, -16.0) / 20.0) / rms
        peak = float(np.max(np.abs(x)))
        if peak > 0.98:
            x *= 0.98 / peak
        p = folder / name
        sf.write(str(p), x.T.astype(np.float32), SR, subtype="PCM_24")
        paths.append(p)
        del x
    return paths


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------

def build_problem(folder: Path, genre: str = "pop"):
    """load_session + analyze_session (timed) -> (problem, session, timings dict)."""
    from evomix.audio import load_session
    from evomix.engine.analysis import analyze_session
    from evomix.evaluate import Problem
    from evomix.genome import GeneTable
    from objectives import OBJECTIVE_NAMES, Target, load_profile

    t0 = time.perf_counter()
    session = load_session([folder])
    t1 = time.perf_counter()
    analysis = analyze_session(session)
    t2 = time.perf_counter()
    target = Target(profile=load_profile(genre), target_lufs=-14.0, ceiling_dbtp=-1.0)
    names = tuple(OBJECTIVE_NAMES)
    problem = Problem(analysis, GeneTable(session.n_stems), target, names, tuple(1.0 for _ in names))
    return problem, session, {"load_s": t1 - t0, "analyze_s": t2 - t1, "total_s": t2 - t0}


def analysis_nbytes(analysis) -> int:
    """Bytes held in the Analysis' numpy arrays (whatever fields the current engine defines)."""
    import dataclasses

    return sum(v.nbytes for f in dataclasses.fields(analysis)
               if isinstance(v := getattr(analysis, f.name), np.ndarray))


def session_audio_nbytes(session) -> int | None:
    """Bytes of the in-memory session audio, or None when the session streams from its files."""
    audio = getattr(session, "audio", None)
    return None if audio is None else int(audio.nbytes)


def exact_render(session, params, i: int, target, grid):
    """``render_exact`` called the way ``api.mix`` calls it in the engine version installed."""
    import inspect

    from evomix.engine.render import render_exact

    if "grid" in inspect.signature(render_exact).parameters:  # newer engine: takes the Session
        return render_exact(session, session.is_mono, session.sr, params, index=i, grid=grid,
                            target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)
    return render_exact(session.audio, session.is_mono, session.sr, params, index=i,
                        target_lufs=target.target_lufs, ceiling_dbtp=target.ceiling_dbtp)


def random_population(problem, kind: str, n: int, rng) -> np.ndarray:
    if kind == "initial":
        return problem.table.initial_population(n, rng)
    return rng.uniform(0.0, 1.0, size=(n, problem.table.n_genes))


def time_fast_tier(problem, *, pop: int, reps: int, seed: int, warmup: bool = True, threads: int = 1) -> dict:
    """Median wall time of scoring fresh populations of ``pop`` genomes on ``threads`` threads
    (``evomix.parallel.score``, as ``evomix mix`` does; 1 = ``Problem.evaluate_population``)."""
    from evomix.parallel import score

    rng = np.random.default_rng(seed)
    if warmup:
        score(problem, random_population(problem, "initial", pop, rng), threads)
    times = {"initial": [], "uniform": []}
    cpu = []
    for r in range(reps):
        kind = "initial" if r % 2 == 0 else "uniform"
        G = random_population(problem, kind, pop, rng)
        c0, t0 = time.process_time(), time.perf_counter()
        F = score(problem, G, threads)
        times[kind].append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert F.shape == (pop, len(problem.names)) and np.isfinite(F).all()
    all_t = times["initial"] + times["uniform"]
    med = statistics.median(all_t)
    return {
        "pop": pop, "reps": reps, "threads": threads, "times_s": [round(t, 5) for t in all_t],
        "median_s": med, "min_s": min(all_t), "max_s": max(all_t),
        "cpu_s_per_call_median": statistics.median(cpu),  # process CPU time (all threads)
        "evals_per_s": pop / med,
        "s_per_eval": med / pop,
        "median_s_initial": statistics.median(times["initial"]) if times["initial"] else None,
        "median_s_uniform": statistics.median(times["uniform"]) if times["uniform"] else None,
    }


def time_exact_tier(problem, session, *, n_candidates: int, seed: int) -> dict:
    """render_exact + features_from_render + objectives.evaluate, per candidate."""
    from evomix.engine.render import features_from_render
    from objectives import evaluate

    rng = np.random.default_rng(seed + 1)
    G = np.concatenate([problem.table.initial_population(n_candidates, rng)[1:],
                        problem.table.neutral()[None]])[:n_candidates]
    params = problem.table.decode(G, problem.analysis.trim_db)
    t_render, t_feat, t_obj, t_total, cpu = [], [], [], [], []
    tgt = problem.target
    for i in range(n_candidates):
        c0, t0 = time.process_time(), time.perf_counter()
        r = exact_render(session, params, i, tgt, problem.analysis.grid)
        t1 = time.perf_counter()
        feats = features_from_render(r, problem.analysis.grid, problem.analysis.roles)
        t2 = time.perf_counter()
        F = evaluate(feats, tgt, problem.names)
        t3 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        assert np.isfinite(F).all()
        t_render.append(t1 - t0)
        t_feat.append(t2 - t1)
        t_obj.append(t3 - t2)
        t_total.append(t3 - t0)
        del r, feats
    med = statistics.median(t_total)
    return {
        "candidates": n_candidates, "times_s": [round(t, 4) for t in t_total],
        "s_per_candidate": med, "mean_s": statistics.fmean(t_total),
        "cpu_s_per_candidate_median": statistics.median(cpu),
        "render_exact_s": statistics.median(t_render),
        "features_from_render_s": statistics.median(t_feat),
        "objectives_s": statistics.median(t_obj),
    }


def profile_fast_tier(problem, *, pop: int, seed: int, top: int = 12) -> dict:
    """cProfile one evaluate_population(pop) call -> text tables (cumulative and tottime)."""
    rng = np.random.default_rng(seed + 2)
    problem.evaluate_population(random_population(problem, "initial", pop, rng))  # warm-up
    G = random_population(problem, "initial", pop, rng)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    problem.evaluate_population(G)
    prof.disable()
    wall = time.perf_counter() - t0
    tables = {}
    rows = {}
    for key in ("cumulative", "tottime"):
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key)
        st.print_stats(top)
        tables[key] = s.getvalue()
        stats = st.stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
        order = sorted(stats.items(), key=lambda kv: kv[1][3 if key == "cumulative" else 2], reverse=True)[:top]
        rows[key] = [{"function": f"{k[0]}:{k[1]}({k[2]})", "ncalls": v[1],
                      "tottime_s": round(v[2], 4), "cumtime_s": round(v[3], 4)} for k, v in order]
    return {"wall_s": wall, "tables": tables, "top_cumulative": rows["cumulative"], "top_tottime": rows["tottime"]}


def _poll_tree_rss(pid: int, stop: threading.Event, out: dict) -> None:
    """Peak of the summed RSS of process ``pid`` and its descendants (psutil), every 50 ms."""
    try:
        proc = psutil.Process(pid)
    except Exception:
        return
    peak = 0
    while not stop.is_set():
        try:
            procs = [proc] + proc.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            break
        out["peak_rss_bytes"] = peak
        stop.wait(0.05)


def run_cli_mix(folder: Path, out: Path, *, population: int, generations: int, alternatives: int,
                timeout_s: float = 7200.0) -> dict:
    """Run ``python -m evomix mix`` as a fresh process; wall time and peak RSS (wait4 ru_maxrss)."""
    cmd = [sys.executable, "-m", "evomix", "mix", str(folder), "--out", str(out),
           "--population", str(population), "--generations", str(generations),
           "--alternatives", str(alternatives), "--quiet", "--json"]
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
        polled: dict = {}
        stop = threading.Event()
        th = None
        if psutil is not None:
            th = threading.Thread(target=_poll_tree_rss, args=(proc.pid, stop, polled), daemon=True)
            th.start()
        status, ru, timed_out = None, None, False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
                timed_out = True
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen consistent
        stop.set()
        if th is not None:
            th.join()
        fo.seek(0)
        fe.seek(0)
        stdout, stderr = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
    res = {
        "command": " ".join(cmd), "returncode": proc.returncode, "timed_out": timed_out,
        "wall_s": wall,
        "peak_rss_mb": ru.ru_maxrss / 1024.0,  # Linux: kB
        "peak_rss_mb_psutil_poll": polled.get("peak_rss_bytes", 0) / 2**20 if psutil is not None else None,
        "cpu_user_s": ru.ru_utime, "cpu_sys_s": ru.ru_stime,
    }
    try:
        summary = json.loads(stdout)
        res["front_size"] = summary.get("front_size")
        res["evaluations"] = summary.get("evaluations")
        res["alternatives_written"] = len(summary.get("alternatives", []))
        res["alternatives_exact"] = [a.get("exact") for a in summary.get("alternatives", [])]
        res["replaced_alternatives"] = summary.get("replaced_alternatives")
        res["alternatives_lufs_dbtp"] = [(round(a["integrated_lufs"], 2), round(a["true_peak_dbtp"], 2))
                                         for a in summary.get("alternatives", [])]
        res["warnings"] = summary.get("warnings")
    except (json.JSONDecodeError, TypeError, KeyError):
        res["stdout_tail"] = stdout[-2000:]
    if proc.returncode != 0:
        res["stderr_tail"] = stderr[-2000:]
    return res


def code_version() -> dict:
    """git commit of the evomix checkout and whether the working tree differs from it."""
    import evomix

    root = Path(evomix.__file__).resolve().parent.parent
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "modified_files": dirty.splitlines() if dirty else []}


def environment() -> dict:
    import numpy
    import scipy

    return {"code": code_version(), "loadavg_start": os.getloadavg(),
            "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(),
            "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                            if os.environ.get(k) is not None}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 stems x 10 s, 10 generations")
    ap.add_argument("--stems", type=int, default=None, help="number of stems (default 8)")
    ap.add_argument("--duration", type=float, default=None, help="stem length, s (default 30; 10 with --quick)")
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--generations", type=int, default=None, help="default 50 (10 with --quick)")
    ap.add_argument("--alternatives", type=int, default=5)
    ap.add_argument("--reps", type=int, default=7, help="timed evaluate_population calls (>= 5)")
    ap.add_argument("--exact-candidates", type=int, default=5, help="candidates rendered by the exact tier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile one evaluate_population call")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end CLI run")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP/MKL_NUM_THREADS for this run and its subprocesses (default: leave unset)")
    ap.add_argument("--keep", type=Path, default=None, help="write the stems (and CLI output) here and keep them")
    args = ap.parse_args(argv)

    stems = args.stems if args.stems is not None else 8
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 30.0)
    generations = args.generations if args.generations is not None else (10 if args.quick else 50)
    reps = max(5, args.reps)
    if stems < 1 or duration <= 0:
        ap.error("--stems must be >= 1 and --duration > 0")

    work = Path(tempfile.mkdtemp(prefix="evomix-bench-")) if args.keep is None else args.keep
    stem_dir, out_dir = work / "stems", work / "out"
    result: dict = {"benchmark": "throughput", "workload": {
        "stems": stems, "duration_s": duration, "sr": SR, "population": args.population,
        "generations": generations, "alternatives": args.alternatives, "objectives": "all four",
        "quick": args.quick}, "environment": environment()}
    try:
        t0 = time.perf_counter()
        files = make_stems(stem_dir, stems, duration, seed=1234 + args.seed)
        result["synthesis_s"] = time.perf_counter() - t0
        print(f"workload: {stems} stereo stems x {duration:g} s @ {SR} Hz, 24-bit WAV in {stem_dir} "
              f"({', '.join(p.name for p in files)}); synthesised in {result['synthesis_s']:.2f} s", flush=True)

        problem, session, ta = build_problem(stem_dir)
        result["analysis"] = ta
        a = problem.analysis
        result["workload"]["roles"] = dict(zip(session.names, session.roles))
        result["workload"]["analysis_shape"] = {"band_power": list(a.band_power.shape),
                                                "heavy_frames": int(len(a.heavy_frames)),
                                                "genes": problem.table.n_genes}
        analysis_mb = analysis_nbytes(a) / 2**20
        audio_b = session_audio_nbytes(session)
        result["analysis"]["arrays_mb"] = analysis_mb
        result["analysis"]["session_audio_mb"] = None if audio_b is None else audio_b / 2**20
        audio_txt = "streamed from files" if audio_b is None else f"{audio_b / 2**20:.1f} MB"
        print(f"analysis: load_session {ta['load_s']:.3f} s + analyze_session {ta['analyze_s']:.3f} s "
              f"= {ta['total_s']:.3f} s  (band_power {tuple(a.band_power.shape)}, {len(a.heavy_frames)} heavy frames, "
              f"analysis arrays {analysis_mb:.1f} MB, session audio {audio_txt})", flush=True)
        print(f"roles: {', '.join(f'{n}={r}' for n, r in zip(session.names, session.roles))}", flush=True)

        fast = time_fast_tier(problem, pop=args.population, reps=reps, seed=args.seed)
        result["fast_tier"] = fast
        print(f"fast tier: evaluate_population({args.population}) median {fast['median_s']:.4f} s over {reps} calls "
              f"(min {fast['min_s']:.4f}, max {fast['max_s']:.4f}; initial_population {fast['median_s_initial']:.4f} s, "
              f"uniform {fast['median_s_uniform']:.4f} s; CPU {fast['cpu_s_per_call_median']:.4f} s per call) -> "
              f"{fast['evals_per_s']:.1f} candidate evaluations/s ({1e3 * fast['s_per_eval']:.2f} ms per candidate)", flush=True)
        from evomix.parallel import available_cores

        cores = available_cores()
        if cores > 1:  # what `evomix mix` uses by default: the population split over threads
            fast_all = time_fast_tier(problem, pop=args.population, reps=reps, seed=args.seed, threads=cores)
            result["fast_tier_all_cores"] = fast_all
            print(f"fast tier on {cores} threads (the default of `evomix mix`): median {fast_all['median_s']:.4f} s -> "
                  f"{fast_all['evals_per_s']:.1f} candidate evaluations/s ({fast_all['evals_per_s'] / fast['evals_per_s']:.2f}x one thread)",
                  flush=True)

        exact = time_exact_tier(problem, session, n_candidates=args.exact_candidates, seed=args.seed)
        result["exact_tier"] = exact
        print(f"exact tier: {exact['s_per_candidate']:.3f} s per candidate (median of {exact['candidates']}; "
              f"render_exact {exact['render_exact_s']:.3f} s + features_from_render {exact['features_from_render_s']:.3f} s "
              f"+ objectives {exact['objectives_s']:.4f} s; CPU {exact['cpu_s_per_candidate_median']:.3f} s)", flush=True)

        naive = 1.0 / exact["s_per_candidate"]
        ratio = fast["evals_per_s"] / naive
        result["naive_evals_per_s"] = naive
        result["fast_over_naive_ratio"] = ratio
        cpu_ratio = (exact["cpu_s_per_candidate_median"]) / (fast["cpu_s_per_call_median"] / args.population)
        result["fast_over_naive_ratio_cpu_time"] = cpu_ratio
        print(f"naive (exact per candidate) rate: {naive:.3f} candidates/s; fast tier (one thread) / naive = {ratio:.1f}x "
              f"(by CPU time: {cpu_ratio:.1f}x)", flush=True)

        if args.profile:
            prof = profile_fast_tier(problem, pop=args.population, seed=args.seed)
            result["profile"] = {"wall_s": prof["wall_s"], "top_cumulative": prof["top_cumulative"],
                                 "top_tottime": prof["top_tottime"]}
            print(f"\ncProfile of one evaluate_population({args.population}) call "
                  f"({prof['wall_s']:.3f} s under the profiler), top 12 by cumulative time:")
            print(prof["tables"]["cumulative"].rstrip())
            print("\ntop 12 by own (tottime) time:")
            print(prof["tables"]["tottime"].rstrip(), flush=True)

        del problem, session, a
        if not args.no_e2e:
            e2e = run_cli_mix(stem_dir, out_dir, population=args.population, generations=generations,
                              alternatives=args.alternatives)
            result["e2e"] = e2e
            extra = f" (psutil tree poll {e2e['peak_rss_mb_psutil_poll']:.1f} MB)" if e2e.get("peak_rss_mb_psutil_poll") else ""
            print(f"end to end: `evomix mix` pop {args.population} x {generations} generations -> "
                  f"{e2e['wall_s']:.2f} s wall, peak RSS {e2e['peak_rss_mb']:.1f} MB{extra}, "
                  f"return code {e2e['returncode']}, {e2e.get('evaluations')} evaluations, "
                  f"front {e2e.get('front_size')}, {e2e.get('alternatives_written')} alternatives written", flush=True)
            if e2e["returncode"] != 0:
                print(f"end to end FAILED: {e2e.get('stderr_tail', '')}", flush=True)
        result["environment"]["loadavg_end"] = os.getloadavg()
        result["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
