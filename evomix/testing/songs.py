"""Synthetic songs: one seeded instrument library for the demo, the tests and the benchmarks.

Every song the project tries itself on is built here, so a figure measured by one benchmark and a
property checked by one test are about the same kind of signal. Three families of instruments:

Arrangement instruments (``synth_stem``, kinds in ``KINDS``)
    A 120 BPM song in A minor (Am - F - C - G, one chord per bar) with sections intro / verse /
    chorus / break / outro (``SECTIONS``, 28 bars = 56 s, then repeated), so levels and density
    change over time the way a real multitrack does (``SECTION_LEVEL``): kick, snare, hihat, bass,
    keys, piano, guitar, pad, arp, lead, vocal (an additive formant voice) and fx (risers and
    impacts at section changes). Additive synthesis with per-note caches, every stem stereo.
    ``write_session`` writes N of them as 24-bit WAVs whose names give their roles (``stem_plan``):
    the benchmarks' standard workload (8 stems x 30 s, seed 1234) and the real-size session
    (16 stems x 210 s) are two calls of it; ``cached_session`` keeps the folder for reuse.
Loop voices (``drum_kit``, ``saw_bass``, ``saw_pad``, ``saw_lead``, ``formant_vocal``)
    Subtractive voices of a 100 BPM loop in A minor (``LOOP_BPM``): band-limited (polyBLEP)
    saws and squares, Butterworth filters, a formant-filtered glottal source for the voice. They
    take ``(rng, sr, n, beat)`` and return unnormalised float64 ``(channels, n)``.
    :mod:`evomix.demo` mixes them into the demo song (vocal 15 dB low, chords and lead sharing
    300 Hz-2 kHz).
Tone voices (``tone_drums``, ``tone_bass``, ``tone_keys``, ``tone_vocal``)
    Steady sines (kick pulses, a square bass, a sustained chord, a harmonic "vocal" in the chord's
    register): :func:`mini_song`, the tests' 4 s song (``tests/conftest.py::song_stems``).

Randomness: every random choice (noise, velocities, phases, timing, patterns) comes from the
``np.random.Generator`` passed in; the session writers derive one per stem from the seed
(``default_rng([seed, i])``), so the same seed gives bit-identical stems on one machine, and stems
can be synthesised one at a time (memory: one stem).

Layout: audio arrays are ``(channels, samples)``, time last, like the rest of evomix.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from evomix.errors import ParameterError

__all__ = [
    "KINDS", "SECTIONS", "SECTION_LEVEL", "SECTIONED_GAIN_DB", "sectioned_gain", "SONG_BPM", "LOOP_BPM", "SONG_VERSION",
    "synth_stem", "stem_plan", "write_session", "cached_session", "session_key",
    "drum_kit", "saw_bass", "saw_pad", "saw_lead", "formant_vocal",
    "tone_drums", "tone_bass", "tone_keys", "tone_vocal", "mini_song", "MINI_SONG_STEMS",
    "midi_hz", "add_at",
]

SONG_VERSION = 1
"""Version of the generators' output; part of the cache key. Bump it when a change alters samples."""

# ------------------------------------------------------------------------------------------------
# Primitives (shared by both families)
# ------------------------------------------------------------------------------------------------


def midi_hz(midi):
    """Frequency of a MIDI note number, Hz (A4 = 69 = 440 Hz); float or array like ``midi``."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def add_at(buf: np.ndarray, start: int, seg: np.ndarray) -> None:
    """``buf[..., start:start + len(seg)] += seg`` along the last axis, cropped to the buffer."""
    n = buf.shape[-1]
    if start >= n or start + seg.shape[-1] <= 0:
        return
    s0 = max(start, 0)
    end = min(n, start + seg.shape[-1])
    buf[..., s0:end] += seg[..., s0 - start:end - start]


def butter_sos(kind: str, freq_hz, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth second-order sections; cut-offs clamped to 0.45 ``sr``.

    Parameters
    ----------
    kind : {"lowpass", "highpass", "bandpass"}
    freq_hz : float or (float, float)
        Cut-off frequency (or band edges), Hz.
    sr : int
        Sample rate, Hz.
    order : int > 0
    """
    from scipy import signal
    nyq = 0.5 * sr
    f = np.minimum(np.atleast_1d(np.asarray(freq_hz, dtype=float)), 0.45 * sr)
    wn = f / nyq
    return signal.butter(order, wn if wn.size > 1 else wn[0], btype=kind, output="sos")


# ------------------------------------------------------------------------------------------------
# Arrangement instruments: 120 BPM, A minor, sections (the benchmarks' song)
# ------------------------------------------------------------------------------------------------

SONG_BPM = 120.0
_BEAT_S = 60.0 / SONG_BPM
_BAR_S = 4 * _BEAT_S
_CHORDS = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G (MIDI triads)
_ROOTS = (45, 41, 48, 43)  # bass roots: A2 F2 C3 G2
SECTIONS = (("intro", 2), ("verse", 4), ("chorus", 4), ("break", 2), ("verse", 4), ("chorus", 4),
            ("chorus", 4), ("outro", 2))
"""(name, bars) of the arrangement: 28 bars = 56 s at 120 BPM, then repeated."""

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
"""Level of each arrangement instrument per section (0 = tacet)."""

SECTIONED_GAIN_DB = {"intro": -16.0, "verse": -12.0, "chorus": 0.0, "break": -20.0, "outro": -8.0}
"""Gain of every stem per section in a *sectioned* session (``write_session(..., sectioned=True)``):
a quiet verse 12 dB under a loud chorus, a breakdown 20 dB under it (drums and bass already tacet or
half there, :data:`SECTION_LEVEL`), so that the sections' loudness differs by 10 LU and more: the song
on which a fast tier working on representative segments (``evomix.engine.segments``) must still
match the whole song's loudness."""

KINDS = ("kick", "bass", "vocal", "keys", "guitar", "pad", "snare", "lead", "hihat", "piano", "arp", "fx")
"""Arrangement instruments, in the order ``stem_plan`` uses them (the first 8 are the standard workload)."""


def section_starts(n: int, sr: int = 44100) -> list[tuple[int, str]]:
    """(start sample, section name) of every section beginning before sample ``n``."""
    out, t, i = [], 0, 0
    while t < n:
        name, bars = SECTIONS[i % len(SECTIONS)]
        out.append((t, name))
        t += int(round(bars * _BAR_S * sr))
        i += 1
    return out


def _harmonic(f0: float, length: int, amps, *, sr: int, vib_hz=0.0, vib_st=0.0, vib_delay=0.0,
              inharm=0.0, phase_rng=None) -> np.ndarray:
    """Additive tone ``sum_k amps[k-1] sin(k * phase)``, band-limited to 0.45 ``sr``, (length,).

    ``vib_hz``/``vib_st``: vibrato rate (Hz) and depth (semitones), faded in over 0.15 s after
    ``vib_delay`` s; ``inharm``: stiff-string stretch, partial k at ``k f0 sqrt(1 + inharm k^2)``;
    ``phase_rng``: random start phase per partial (else 0).
    """
    t = np.arange(length) / sr
    if vib_hz:
        depth = vib_st * np.clip((t - vib_delay) / 0.15, 0.0, 1.0)
        f = f0 * 2.0 ** (depth * np.sin(2 * np.pi * vib_hz * t) / 12.0)
        phase = 2 * np.pi * np.cumsum(f) / sr
    else:
        phase = 2 * np.pi * f0 * t
    out = np.zeros(length)
    for k, a in enumerate(amps, start=1):
        fk = f0 * k * np.sqrt(1.0 + inharm * k * k)
        if fk >= 0.45 * sr or a == 0.0:
            continue
        ph = 0.0 if phase_rng is None else phase_rng.uniform(0, 2 * np.pi)
        out += a * np.sin(phase * (fk / f0) + ph)
    return out


def _decay_env(length: int, attack_s: float, decay_s: float, release_s: float = 0.02, *,
               sr: int) -> np.ndarray:
    """Linear attack, then exponential decay (time constant ``decay_s``), short linear release."""
    t = np.arange(length) / sr
    e = np.minimum(t / max(attack_s, 1e-4), 1.0) * np.exp(-np.maximum(t - attack_s, 0.0) / decay_s)
    r = max(1, int(release_s * sr))
    e[-r:] *= np.linspace(1.0, 0.0, r)
    return e


def _section_gain(kind: str, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """(n,) per-sample level of ``kind`` from the section plan, with 0.5 s ramps between sections."""
    levels = SECTION_LEVEL[kind]
    g = np.empty(n)
    starts = section_starts(n, sr)
    for (start, name), (end, _) in zip(starts, starts[1:] + [(n, "")]):
        g[start:end] = levels[name] * rng.uniform(0.85, 1.0)
    k = int(0.5 * sr)
    if n > 2 * k:  # moving average (cumulative sum: O(n))
        c = np.concatenate([[0.0], np.cumsum(np.pad(g, (k // 2, k - k // 2 - 1), mode="edge"))])
        g = (c[k:] - c[:-k]) / k
    return g[:n]


def sectioned_gain(n: int, sr: int = 44100) -> np.ndarray:
    """(n,) linear gain following :data:`SECTIONED_GAIN_DB` per section, with 0.5 s ramps between
    sections (the same moving average as the section levels)."""
    g = np.empty(n)
    starts = section_starts(n, sr)
    for (start, name), (end, _) in zip(starts, starts[1:] + [(n, "")]):
        g[start:end] = 10.0 ** (SECTIONED_GAIN_DB[name] / 20.0)
    k = int(0.5 * sr)
    if n > 2 * k:
        c = np.concatenate([[0.0], np.cumsum(np.pad(g, (k // 2, k - k // 2 - 1), mode="edge"))])
        g = (c[k:] - c[:-k]) / k
    return g[:n]


def _filtered_noise(rng: np.random.Generator, length: int, lo_hz: float, hi_hz: float | None = None, *,
                    sr: int) -> np.ndarray:
    """White noise, 4th-order high-passed at ``lo_hz`` or (with ``hi_hz``) band-passed, (length,)."""
    from scipy import signal
    x = rng.standard_normal(length)
    if hi_hz is None:
        sos = butter_sos("highpass", lo_hz, sr, order=4)
    else:
        sos = butter_sos("bandpass", (lo_hz, hi_hz), sr, order=2)
    return signal.sosfilt(sos, x)


@dataclass
class _Voice:
    """What an arrangement instrument writes into: the stem buffer and its per-stem settings."""

    out: np.ndarray  # (2, n) float64, accumulated
    rng: np.random.Generator
    sr: int
    variant: int
    shift: int  # octave shift of numbered variants, semitones
    pan: float  # base pan of numbered variants, -1..1
    n_beats: int
    cache: dict = field(default_factory=dict)  # rendered notes, by key

    @property
    def n(self) -> int:
        return self.out.shape[-1]

    def place(self, seg: np.ndarray, t_s: float, p: float = 0.0, vel: float = 1.0) -> None:
        """Add mono ``seg`` at time ``t_s`` (s), constant-power panned to ``p``, scaled by ``vel``."""
        a = np.pi / 4 * (p + 1.0)
        stereo = np.stack([np.cos(a) * seg, np.sin(a) * seg]) * vel * np.sqrt(2.0)  # (2, len)
        add_at(self.out, int(round(t_s * self.sr)), stereo)

    def harmonic(self, f0, length, amps, **kw) -> np.ndarray:
        return _harmonic(f0, length, amps, sr=self.sr, **kw)

    def env(self, length, attack_s, decay_s, release_s=0.02) -> np.ndarray:
        return _decay_env(length, attack_s, decay_s, release_s, sr=self.sr)

    def noise(self, length, lo_hz, hi_hz=None) -> np.ndarray:
        return _filtered_noise(self.rng, length, lo_hz, hi_hz, sr=self.sr)


def _kick(v: _Voice) -> None:
    """Pitch-swept sine body + noise click on 1 and 3 (variants: four on the floor), random pickups."""
    sr, rng = v.sr, v.rng
    L = int(0.4 * sr)
    t = np.arange(L) / sr
    f = 48.0 + (110.0 + 20 * v.variant) * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.16)
    click = v.noise(L, 1500.0, 6000.0) * np.exp(-t / 0.004) * 0.6
    seg = body + click
    for b in range(v.n_beats):
        pos = b % 4
        if pos in (0, 2) or (pos == 1 and rng.random() < 0.25) or (v.variant % 2 == 0 and pos in (1, 3)):
            v.place(seg, b * _BEAT_S + rng.normal(0, 0.002), v.pan * 0.2, rng.uniform(0.85, 1.0))
        if pos == 3 and rng.random() < 0.3:
            v.place(seg, (b + 0.5) * _BEAT_S, v.pan * 0.2, 0.6)


def _snare(v: _Voice) -> None:
    """Band-passed noise + 185 Hz body on 2 and 4, four alternating hits, occasional ghost notes."""
    sr, rng = v.sr, v.rng
    L = int(0.35 * sr)
    t = np.arange(L) / sr
    segs = [(v.noise(L, 900.0, 7000.0) * np.exp(-t / 0.09)
             + 0.7 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)) for _ in range(4)]
    for b in range(v.n_beats):
        if b % 4 in (1, 3):
            v.place(segs[rng.integers(4)], b * _BEAT_S + rng.normal(0, 0.003), v.pan + rng.normal(0, 0.05),
                    rng.uniform(0.8, 1.0))
        elif rng.random() < 0.08:  # ghost note
            v.place(segs[rng.integers(4)], (b + 0.75) * _BEAT_S, v.pan, 0.25)


def _hihat(v: _Voice) -> None:
    """High-passed noise on 8ths (odd variants: 16ths), an open hat on the last 8th of the bar."""
    sr, rng = v.sr, v.rng
    L = int(0.12 * sr)
    t = np.arange(L) / sr
    segs = [v.noise(L, 7000.0) * np.exp(-t / 0.025) for _ in range(6)]
    open_seg = v.noise(int(0.4 * sr), 6000.0) * np.exp(-np.arange(int(0.4 * sr)) / sr / 0.15)
    step = 0.25 if v.variant % 2 else 0.5
    for i in range(int(v.n_beats / step)):
        tt = i * step * _BEAT_S
        if (i * step) % 4 == 3.5:
            v.place(open_seg, tt, 0.3 + v.pan, 0.7)
        else:
            v.place(segs[rng.integers(6)], tt + rng.normal(0, 0.003), 0.3 + v.pan + rng.normal(0, 0.1),
                    rng.uniform(0.4, 0.9) * (1.0 if (i * step) % 1 == 0 else 0.7))


def _bass(v: _Voice) -> None:
    """Harmonic bass on 8ths following the chord roots, octave jumps and rests at random."""
    sr, rng = v.sr, v.rng
    amps = [1.0 / k * np.exp(-k / 6.0) for k in range(1, 13)]
    for b8 in range(2 * v.n_beats):
        bar = int(b8 // 8)
        root = _ROOTS[bar % 4] + v.shift + (12 if (b8 % 8 == 7 and rng.random() < 0.4) else 0)
        if rng.random() < 0.1:
            continue  # rest
        key = ("b", root)
        if key not in v.cache:
            L = int(0.3 * sr)
            v.cache[key] = v.harmonic(midi_hz(root), L, amps) * v.env(L, 0.004, 0.22)
        v.place(v.cache[key], b8 * _BEAT_S / 2, v.pan * 0.3, rng.uniform(0.75, 1.0))


def _keys_or_piano(v: _Voice, kind: str) -> None:
    """Chord hits: keys every beat (soft harmonics), piano every 2 beats (inharmonic, longer decay)."""
    sr, rng = v.sr, v.rng
    amps = [1.0, 0.5, 0.25, 0.12, 0.06, 0.03] if kind == "keys" else [1.0, 0.6, 0.4, 0.25, 0.15, 0.1, 0.06, 0.04]
    inharm = 0.0 if kind == "keys" else 2e-4
    decay = 0.7 if kind == "keys" else 1.2
    every = 1.0 if kind == "keys" else 2.0  # beats between chord hits
    for i in range(int(v.n_beats / every)):
        tt = i * every * _BEAT_S
        chord = _CHORDS[int(tt // _BAR_S) % 4]
        for j, m in enumerate(chord):
            m = m + v.shift + (12 if kind == "piano" and j == 2 else 0)
            key = (kind, m)
            if key not in v.cache:
                L = int((every * _BEAT_S + 0.6) * sr)
                v.cache[key] = v.harmonic(midi_hz(m), L, amps, inharm=inharm) * v.env(L, 0.003, decay, 0.1)
            v.place(v.cache[key], tt + 0.008 * j, v.pan + (m - 60) / 24.0, rng.uniform(0.5, 0.8))


def _guitar(v: _Voice) -> None:
    """Strummed five-note chords on an 8th pattern, panned to one side."""
    sr, rng = v.sr, v.rng
    amps = [1.0 / k ** 0.7 for k in range(1, 25)]
    pattern = (1, 0, 1, 1, 0, 1, 1, 1) if v.variant % 2 == 0 else (1, 1, 0, 1, 1, 0, 1, 0)
    gp = -0.55 if v.variant % 2 == 0 else 0.55
    for b8 in range(2 * v.n_beats):
        if not pattern[b8 % 8]:
            continue
        tt = b8 * _BEAT_S / 2
        chord = _CHORDS[int(tt // _BAR_S) % 4]
        down = b8 % 2 == 0
        notes = (chord[0] - 12, chord[0] - 5, chord[0], chord[1], chord[2])
        for j, m in enumerate(notes if down else notes[::-1]):
            m = m + v.shift
            key = ("g", m)
            if key not in v.cache:
                L = int(0.35 * sr)
                v.cache[key] = v.harmonic(midi_hz(m), L, amps, phase_rng=rng) * v.env(L, 0.002, 0.12, 0.05)
            v.place(v.cache[key], tt + 0.012 * j, gp + v.pan * 0.3, rng.uniform(0.3, 0.55))


def _pad(v: _Voice) -> None:
    """Slow-attack chord per bar, left and right detuned by -6 / +7 cents."""
    sr, rng = v.sr, v.rng
    amps = [1.0 / k * np.exp(-k / 5.0) for k in range(1, 11)]
    for bar in range(int(np.ceil(v.n / (_BAR_S * sr))) + 1):
        chord = _CHORDS[bar % 4]
        key = ("pad", chord)
        if key not in v.cache:
            L = int((_BAR_S + 0.8) * sr)
            e = v.env(L, 0.35, 6.0, 0.8)
            left = sum(v.harmonic(midi_hz(m + v.shift) * 2 ** (-6 / 1200), L, amps, phase_rng=rng) for m in chord)
            right = sum(v.harmonic(midi_hz(m + v.shift) * 2 ** (7 / 1200), L, amps, phase_rng=rng) for m in chord)
            v.cache[key] = np.stack([left * e, right * e])
        add_at(v.out, int(bar * _BAR_S * sr), v.cache[key] * rng.uniform(0.8, 1.0))


def _vocal_or_lead(v: _Voice, kind: str) -> None:
    """Phrases of random scale notes with gaps: vocal = formant-shaped harmonics with vibrato and
    breath noise (A3..A4); lead = square-ish tone (A4..A5) with a ping-pong echo."""
    sr, rng = v.sr, v.rng
    if kind == "vocal":
        formants = [((730, 1090, 2440), (80, 90, 120)), ((530, 1840, 2480), (60, 100, 120)),
                    ((270, 2290, 3010), (60, 90, 100)), ((570, 840, 2410), (70, 80, 100))]
        base = 57 + v.shift  # A3..A4 melody
        scale = (0, 2, 3, 5, 7, 8, 10, 12)
    else:
        base = 69 + v.shift  # A4..A5
        scale = (0, 3, 5, 7, 10, 12, 15)
    t_s = 0.0
    dur_total = v.n / sr
    while t_s < dur_total:
        phrase_end = t_s + rng.choice([2.0, 4.0]) * _BAR_S / 2
        while t_s < phrase_end:
            steps = rng.choice([1, 1, 2, 2, 3, 4]) if kind == "vocal" else rng.choice([1, 1, 2])
            length = steps * _BEAT_S / 2
            note = base + scale[rng.integers(len(scale))]
            if kind == "vocal":
                vowel = int(rng.integers(len(formants)))
                key = ("v", note, vowel, steps)
                if key not in v.cache:
                    L = int(length * sr * 0.92)
                    f0 = float(midi_hz(note))
                    fc, bw = formants[vowel]
                    ks = np.arange(1, int(5000 / f0) + 1)
                    amps = sum(np.exp(-0.5 * ((ks * f0 - c) / (1.5 * w)) ** 2) * g
                               for c, w, g in zip(fc, bw, (1.0, 0.6, 0.3))) / ks ** 0.3 + 0.02 / ks
                    seg = v.harmonic(f0, L, amps, vib_hz=5.5, vib_st=0.4, vib_delay=0.2) * v.env(L, 0.04, 1.5, 0.06)
                    seg += 0.02 * v.noise(L, 3000.0) * v.env(L, 0.01, 0.2)
                    v.cache[key] = seg
                v.place(v.cache[key], t_s + rng.normal(0, 0.01), v.pan * 0.3, rng.uniform(0.7, 1.0))
            else:
                key = ("l", note, steps)
                if key not in v.cache:
                    L = int(length * sr * 0.95)
                    amps = [(1.0 / k if k % 2 else 0.15 / k) for k in range(1, 16)]
                    v.cache[key] = (v.harmonic(float(midi_hz(note)), L, amps, vib_hz=6.0, vib_st=0.2, vib_delay=0.25)
                                    * v.env(L, 0.01, 0.8, 0.04))
                vel = rng.uniform(0.6, 0.9)
                v.place(v.cache[key], t_s, 0.25 + v.pan, vel)
                v.place(v.cache[key], t_s + 0.75 * _BEAT_S, -0.6, vel * 0.3)  # ping-pong echo
            t_s += length
        t_s += rng.choice([1.0, 2.0, 4.0]) * _BEAT_S  # breath / gap between phrases


def _arp(v: _Voice) -> None:
    """16th-note arpeggio of the chord, an octave up, slowly auto-panned."""
    sr, rng = v.sr, v.rng
    amps = [1.0 / k for k in range(1, 20)]
    for i in range(4 * v.n_beats):
        tt = i * _BEAT_S / 4
        chord = _CHORDS[int(tt // _BAR_S) % 4]
        m = chord[i % 3] + 12 + v.shift + (12 if i % 8 >= 6 else 0)
        key = ("a", m)
        if key not in v.cache:
            L = int(0.18 * sr)
            e = v.env(L, 0.002, 0.06, 0.02)
            v.cache[key] = v.harmonic(midi_hz(m), L, amps) * e
        v.place(v.cache[key], tt, np.sin(2 * np.pi * tt / (2 * _BAR_S)) * 0.7, rng.uniform(0.5, 0.7))


def _fx(v: _Voice) -> None:
    """A noise riser over the bar before each section change, then a low impact on the downbeat."""
    sr = v.sr
    for start, _name in section_starts(v.n, sr)[1:]:
        L = int(_BAR_S * sr)
        ramp = np.linspace(0.0, 1.0, L) ** 2
        noise = np.stack([v.noise(L, 2000.0), v.noise(L, 2000.0)])
        add_at(v.out, start - L, noise * ramp * 0.5)
        Li = int(1.5 * sr)
        ti = np.arange(Li) / sr
        boom = np.sin(2 * np.pi * (40 + 60 * np.exp(-ti / 0.1)) * ti) * np.exp(-ti / 0.4)
        imp = boom + 0.3 * v.noise(Li, 300.0, 4000.0) * np.exp(-ti / 0.3)
        add_at(v.out, start, np.stack([imp, imp * 0.8]) * 0.8)


_INSTRUMENTS = {"kick": _kick, "snare": _snare, "hihat": _hihat, "bass": _bass,
                "keys": partial(_keys_or_piano, kind="keys"), "piano": partial(_keys_or_piano, kind="piano"),
                "guitar": _guitar, "pad": _pad,
                "vocal": partial(_vocal_or_lead, kind="vocal"), "lead": partial(_vocal_or_lead, kind="lead"),
                "arp": _arp, "fx": _fx}
"""Arrangement kind -> instrument, called with the stem's :class:`_Voice`."""


def synth_stem(kind: str, n: int, rng: np.random.Generator, variant: int = 0, *, sr: int = 44100) -> np.ndarray:
    """One arrangement stem: instrument ``kind`` playing the 120 BPM song for ``n`` samples.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    n : int > 0
        Length, samples.
    rng : numpy.random.Generator
        Source of every random choice (consumed; pass a fresh one per stem for reproducibility).
    variant : int >= 0
        0 for the first stem of a kind; numbered copies (> 0) shift octave, pan and pattern so
        that they differ.
    sr : int
        Sample rate, Hz.

    Returns
    -------
    ndarray, (2, n) float64
        Unnormalised stereo stem, its level following :data:`SECTION_LEVEL`, high-passed at 30 Hz
        (except kick and bass), with 10 ms linear fades at both ends.

    Raises
    ------
    ParameterError
        If ``kind`` is not one of :data:`KINDS`.

    Examples
    --------
    >>> x = synth_stem("bass", 44100, np.random.default_rng(0))
    >>> x.shape, x.dtype
    ((2, 44100), dtype('float64'))
    """
    from scipy import signal
    if kind not in _INSTRUMENTS:
        raise ParameterError(f"synth_stem: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    out = np.zeros((2, n))
    n_beats = int(np.ceil(n / (_BEAT_S * sr))) + 1
    shift = (variant % 3 - 1) * 12 if variant else 0  # octave shift for variants
    pan = np.clip(rng.uniform(-0.6, 0.6) if variant else 0.0, -1, 1)
    _INSTRUMENTS[kind](_Voice(out, rng, sr, variant, shift, pan, n_beats))

    out *= _section_gain(kind, n, rng, sr)[None, :]
    if kind not in ("kick", "bass"):
        out = signal.sosfilt(butter_sos("highpass", 30.0, sr), out, axis=-1)
    fade = min(n // 4, int(0.01 * sr))
    if fade:
        out[:, :fade] *= np.linspace(0, 1, fade)
        out[:, -fade:] *= np.linspace(1, 0, fade)
    return out


# ------------------------------------------------------------------------------------------------
# Loop voices: 100 BPM, A minor, one chord per bar (the demo song)
# ------------------------------------------------------------------------------------------------

LOOP_BPM = 100.0
"""Tempo of the loop voices, beats per minute."""

# Chords: (root MIDI note for the bass, pad voicing MIDI notes), one per bar.
_LOOP_PROGRESSION = (
    (33, (57, 60, 64, 69)),  # Am: bass A1 55 Hz; pad A3 C4 E4 A4
    (29, (57, 60, 65, 69)),  # F:  bass F1 43.7 Hz; pad A3 C4 F4 A4
    (36, (55, 60, 64, 67, 72)),  # C: bass C2 65.4 Hz; pad G3 C4 E4 G4 C5
    (31, (59, 62, 67, 71)),  # G:  bass G1 49 Hz; pad B3 D4 G4 B4
)

# Bass rhythm per bar: (start in beats, length in beats, octave up?).
_BASS_PATTERN = (
    (0.0, 1.4, False), (1.5, 0.45, False), (2.0, 0.45, True),
    (2.5, 0.9, False), (3.5, 0.45, True),
)

# Lead melody over the 4-bar cycle: (start beat, length beats, MIDI note).
_LEAD_MELODY = (
    (0.0, 1.0, 76), (1.0, 0.5, 74), (1.5, 0.5, 72), (2.0, 1.0, 71), (3.0, 0.5, 72), (3.5, 0.5, 74),
    (4.0, 1.5, 77), (5.5, 0.5, 76), (6.0, 1.0, 72), (7.0, 1.0, 74),
    (8.0, 1.0, 72), (9.0, 0.5, 74), (9.5, 0.5, 76), (10.0, 1.5, 79), (11.5, 0.5, 76),
    (12.0, 1.0, 74), (13.0, 1.0, 71), (14.0, 1.5, 74), (15.5, 0.5, 76),
)

# Vocal melody over the 4-bar cycle: (start beat, length beats, MIDI, vowel).
_VOCAL_MELODY = (
    (0.5, 1.0, 64, "a"), (1.5, 0.5, 62, "e"), (2.0, 1.5, 60, "o"),
    (4.5, 1.0, 60, "i"), (5.5, 0.5, 62, "a"), (6.0, 1.5, 65, "e"),
    (8.5, 1.0, 64, "o"), (9.5, 0.5, 67, "a"), (10.0, 1.5, 64, "i"),
    (12.5, 1.0, 62, "e"), (13.5, 0.5, 59, "o"), (14.0, 1.5, 57, "a"),
)

# Vowel formants: ((F1, F2, F3) in Hz, (B1, B2, B3) bandwidths in Hz).
_FORMANTS = {
    "a": ((700.0, 1220.0, 2600.0), (80.0, 90.0, 120.0)),
    "e": ((530.0, 1840.0, 2480.0), (60.0, 100.0, 120.0)),
    "i": ((300.0, 2250.0, 2950.0), (50.0, 100.0, 130.0)),
    "o": ((570.0, 840.0, 2410.0), (70.0, 80.0, 120.0)),
}


def _polyblep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """PolyBLEP correction for a unit step at phase 0 of a phase ramp.

    Parameters
    ----------
    t : ndarray
        Oscillator phase in cycles, in [0, 1).
    dt : ndarray
        Phase increment per sample, cycles (frequency / sample rate).
    """
    out = np.zeros_like(t)
    lo = t < dt
    x = t[lo] / dt[lo]
    out[lo] = x + x - x * x - 1.0
    hi = t > 1.0 - dt
    x = (t[hi] - 1.0) / dt[hi]
    out[hi] = x * x + x + x + 1.0
    return out


def _osc(freq_hz: np.ndarray, sr: int, phase0: float, square_mix: float = 0.0) -> np.ndarray:
    """Band-limited saw (optionally blended with a square), float64, range about [-1, 1].

    Parameters
    ----------
    freq_hz : ndarray
        Instantaneous frequency per sample, Hz.
    sr : int
        Sample rate, Hz.
    phase0 : float
        Start phase, cycles.
    square_mix : float
        0 gives a pure saw, 1 a pure square.
    """
    dt = np.asarray(freq_hz, dtype=np.float64) / sr
    t = np.mod(phase0 + np.cumsum(dt), 1.0)
    out = 0.0
    if square_mix < 1.0:
        saw = 2.0 * t - 1.0 - _polyblep(t, dt)
        out = (1.0 - square_mix) * saw
    if square_mix > 0.0:
        sq = np.where(t < 0.5, 1.0, -1.0) + _polyblep(t, dt) - _polyblep(np.mod(t + 0.5, 1.0), dt)
        out = out + square_mix * sq
    return out


def _adsr(n: int, sr: int, attack_s: float, release_s: float, decay_tau_s: float | None = None,
          sustain: float = 1.0) -> np.ndarray:
    """Amplitude envelope of ``n`` samples: linear attack, exp decay to sustain, cosine release.

    Times in seconds; ``decay_tau_s`` None means no decay phase.
    """
    t = np.arange(n) / sr
    env = np.ones(n)
    if decay_tau_s is not None:
        env = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack_s, 0.0) / decay_tau_s)
    na = min(max(int(attack_s * sr), 1), n)
    env[:na] *= np.linspace(0.0, 1.0, na, endpoint=False)
    nr = min(max(int(release_s * sr), 1), n - na)
    if nr > 0:
        env[n - nr:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(nr) / nr)
    return env


def _smooth_noise(rng: np.random.Generator, n: int, sr: int, cutoff_hz: float) -> np.ndarray:
    """Unit-variance white noise low-passed at ``cutoff_hz`` (Hz), length ``n``."""
    from scipy import signal
    x = signal.sosfilt(butter_sos("lowpass", cutoff_hz, sr), rng.standard_normal(n + sr // 10))[sr // 10:]
    return x / (np.std(x) + 1e-12)


def drum_kit(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Stereo drum kit, shape (2, n), float64 (unnormalised, bus-saturated, peak 1).

    Kick (sine sweep 120 -> 45 Hz with exponential decay and a click) on beats 1 and 3 (a pickup
    kick every other bar), snare (noise band-passed to 1-5 kHz plus a 180 Hz body) on 2 and 4,
    closed hi-hats on 8ths (high-passed noise, slightly spread) with an open hat at the end of
    every bar. ``beat``: samples per beat.
    """
    from scipy import signal
    out = np.zeros((2, n))
    hp20 = butter_sos("highpass", 20.0, sr)
    snare_bp = butter_sos("bandpass", (1000.0, 5000.0), sr)
    hat_hp = butter_sos("highpass", 7000.0, sr, order=4)
    click_hp = butter_sos("highpass", 2000.0, sr)

    # Kick: pitch sweep 120 -> 45 Hz, exponential decay, short click.
    nk = int(0.45 * sr)
    t = np.arange(nk) / sr
    f = 45.0 + 75.0 * np.exp(-t / 0.035)
    kick_body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.22)
    kick_body *= _adsr(nk, sr, 0.001, 0.03)

    n_beats = int(np.ceil(n / beat)) + 1
    for b in range(n_beats):
        pos = b % 4
        start = b * beat
        if pos in (0, 2):
            click = signal.sosfilt(click_hp, rng.standard_normal(int(0.006 * sr)))
            click *= np.exp(-np.arange(click.size) / (0.0015 * sr)) * 0.5
            k = kick_body.copy()
            k[:click.size] += click
            k *= 10 ** (rng.normal(0.0, 0.5) / 20)
            add_at(out, start, np.vstack([k, k]))
        if pos == 3 and (b // 4) % 2 == 1:  # pickup kick on the "and" of 4 every other bar
            add_at(out, start + beat // 2, np.vstack([kick_body, kick_body]) * 0.6)
        if pos in (1, 3):
            ns = int(0.3 * sr)
            ts = np.arange(ns) / sr
            noise = signal.sosfilt(snare_bp, rng.standard_normal((2, ns)), axis=-1)
            noise = 0.8 * noise[0] + 0.2 * noise  # mostly centred, a little width
            noise *= np.exp(-ts / 0.09)
            body = np.sin(2 * np.pi * np.cumsum(180.0 + 40.0 * np.exp(-ts / 0.01)) / sr)
            body *= np.exp(-ts / 0.07)
            hit = 1.6 * noise + 0.7 * body
            hit = signal.sosfilt(hp20, hit, axis=-1) * 10 ** (rng.normal(0.0, 0.7) / 20)
            add_at(out, start + int(rng.normal(0.0, 0.002) * sr), hit)
        # Hats on 8ths, open hat on the last 8th of the bar.
        for half in (0, 1):
            is_open = pos == 3 and half == 1
            nh = int((0.35 if is_open else 0.07) * sr)
            th = np.arange(nh) / sr
            hat = signal.sosfilt(hat_hp, rng.standard_normal((2, nh)), axis=-1)
            hat = 0.6 * hat[0] + 0.4 * hat  # partially decorrelated sides
            hat *= np.exp(-th / (0.12 if is_open else 0.018))
            vel = (0.55 if half == 0 else 0.35) * 10 ** (rng.normal(0.0, 1.5) / 20)
            pan = np.array([[0.8], [1.0]]) if half == 0 else np.array([[1.0], [0.85]])
            jitter = int(rng.normal(0.0, 0.003) * sr)
            add_at(out, start + half * (beat // 2) + jitter, hat * vel * pan)
    # Bus saturation: tame the kick/snare transients (crest factor) like a drum-bus clipper.
    out /= np.max(np.abs(out)) + 1e-12
    return np.tanh(2.0 * out) / np.tanh(2.0)


def saw_bass(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono saw/square bass following the chord roots (43-110 Hz), low-passed at 450 Hz, plucky
    envelope, a little drive; shape (1, n), float64 (unnormalised)."""
    from scipy import signal
    out = np.zeros(n)
    bar = 4 * beat
    for bar_i in range(int(np.ceil(n / bar))):
        root = _LOOP_PROGRESSION[bar_i % 4][0]
        for start_b, len_b, octave in _BASS_PATTERN:
            note = root + (12 if octave and midi_hz(root + 12) <= 110.0 else 0)
            m = int(len_b * beat)
            freq = np.full(m, midi_hz(note)) * (1.0 + 0.002 * rng.standard_normal())
            x = _osc(freq, sr, rng.random(), square_mix=0.35)
            x *= _adsr(m, sr, 0.004, 0.02, decay_tau_s=0.18, sustain=0.35)
            x *= 10 ** (rng.normal(0.0, 0.8) / 20) * (0.8 if octave else 1.0)
            add_at(out, bar_i * bar + int(start_b * beat), x)
    # Low-pass (2nd-order Butterworth at 450 Hz) plus a little drive.
    out = signal.sosfilt(butter_sos("lowpass", 450.0, sr, order=2), out)
    out = np.tanh(1.5 * out) / 1.5
    return out[None, :]


def saw_pad(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Stereo pad of detuned band-limited saws voicing the triads (196-523 Hz), low-passed at
    2.5 kHz, stereo from different detunes per side, pumped on every beat; (2, n) float64."""
    from scipy import signal
    out = np.zeros((2, n))
    bar = 4 * beat
    tail = int(0.25 * sr)
    cents = np.array([[-9.0, 4.0], [-3.0, 10.0]])  # per side, two voices each
    for bar_i in range(int(np.ceil(n / bar))):
        voicing = _LOOP_PROGRESSION[bar_i % 4][1]
        m = min(bar + tail, n - bar_i * bar)
        seg = np.zeros((2, m))
        for note in voicing:
            f0 = midi_hz(note)
            for side in (0, 1):
                for c in cents[side]:
                    seg[side] += _osc(np.full(m, f0 * 2 ** (c / 1200.0)), sr, rng.random())
        seg *= _adsr(m, sr, 0.03, min(tail, m // 2) / sr, decay_tau_s=0.6, sustain=0.75)
        add_at(out, bar_i * bar, seg)
    out = signal.sosfilt(butter_sos("lowpass", 2500.0, sr, order=4), out, axis=-1)
    out = signal.sosfilt(butter_sos("highpass", 20.0, sr), out, axis=-1)
    # Sidechain-like pump: dips of about 4 dB on every beat, recovering within ~0.25 s.
    t_beat = np.mod(np.arange(n), beat) / sr
    out *= 1.0 - 0.37 * np.exp(-t_beat / 0.12)
    return out


def saw_lead(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono saw/square synth lead melody (494-784 Hz) with delayed vibrato, low-passed at 3 kHz;
    (1, n) float64 (unnormalised)."""
    from scipy import signal
    out = np.zeros(n)
    cycle = 16 * beat
    for cyc in range(int(np.ceil(n / cycle))):
        for start_b, len_b, note in _LEAD_MELODY:
            m = int(len_b * beat * 0.92)
            t = np.arange(m) / sr
            vib_depth = 0.006 * np.clip((t - 0.12) / 0.2, 0.0, 1.0)  # ~10 cents, delayed
            freq = midi_hz(note) * (1.0 + vib_depth * np.sin(2 * np.pi * 5.6 * t + rng.random() * 6.28))
            x = 0.6 * _osc(freq, sr, rng.random(), square_mix=0.5)
            x += 0.4 * _osc(freq * 1.003, sr, rng.random())
            x *= _adsr(m, sr, 0.008, 0.04, decay_tau_s=0.25, sustain=0.7)
            x *= 10 ** (rng.normal(0.0, 1.0) / 20)
            add_at(out, cyc * cycle + int(start_b * beat), x)
    out = signal.sosfilt(butter_sos("lowpass", 3000.0, sr, order=2), out)
    out = signal.sosfilt(butter_sos("highpass", 20.0, sr), out)
    return out[None, :]


def _formant_filter(vowel: str, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of three 2-pole resonators for ``vowel``, unity gain at DC, as (b, a)."""
    a = np.array([1.0])
    b = 1.0
    for fc, bw in zip(*_FORMANTS[vowel]):
        fc = min(fc, 0.45 * sr)
        r = np.exp(-np.pi * bw / sr)
        ak = np.array([1.0, -2.0 * r * np.cos(2 * np.pi * fc / sr), r * r])
        a = np.convolve(a, ak)
        b *= ak.sum()
    return np.array([b]), a


def formant_vocal(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono formant voice: a band-limited glottal-like saw with vibrato, scoop and jitter (melody
    220-392 Hz) through three vowel formant resonators (/a/ /e/ /i/ /o/ per syllable), syllable
    envelopes with gaps, a little breath noise; (1, n) float64 (unnormalised)."""
    from scipy import signal
    out = np.zeros(n)
    cycle = 16 * beat
    breath_hp = butter_sos("highpass", 1500.0, sr)
    for cyc in range(int(np.ceil(n / cycle))):
        for start_b, len_b, note, vowel in _VOCAL_MELODY:
            m = int(len_b * beat * 0.9)
            t = np.arange(m) / sr
            scoop = -0.03 * np.exp(-t / 0.05)  # starts ~50 cents flat
            vib = 0.012 * np.clip((t - 0.15) / 0.25, 0.0, 1.0) * np.sin(2 * np.pi * 5.2 * t)
            jitter = 0.004 * _smooth_noise(rng, m, sr, 30.0)
            freq = midi_hz(note) * (1.0 + scoop + vib + jitter)
            src = _osc(freq, sr, rng.random())
            src = signal.lfilter([0.3], [1.0, -0.7], src)  # extra glottal spectral tilt
            breath = signal.sosfilt(breath_hp, rng.standard_normal(m)) * 0.05
            b, a = _formant_filter(vowel, sr)
            x = signal.lfilter(b, a, src + breath)
            x *= _adsr(m, sr, 0.04, 0.08)
            x *= 10 ** (rng.normal(0.0, 1.0) / 20)
            add_at(out, cyc * cycle + int(start_b * beat), x)
    out = signal.sosfilt(butter_sos("highpass", 20.0, sr), out)
    return out[None, :]


# ------------------------------------------------------------------------------------------------
# Tone voices: steady sines for the tests' mini song
# ------------------------------------------------------------------------------------------------
# Steady spectra that the engine tests' tolerances were set on (peak-basis error, limiter loudness
# cost, reference fit): built from the loop voices instead, six tests miss their (unchanged)
# limits, so the mini song keeps these.


def tone_drums(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Kick-ish pulses every 0.5 s (sine sweep 130 -> 50 Hz, 80 ms decay, noise click), stereo
    with the right channel at 0.9; (2, n) float64."""
    beat = int(0.5 * sr)
    drums = np.zeros(n)
    for start in range(0, n - beat, beat):
        k = np.arange(min(beat, n - start))
        env = np.exp(-k / (0.08 * sr))
        drums[start : start + k.size] += 0.8 * env * np.sin(2 * np.pi * (50 + 80 * np.exp(-k / (0.02 * sr))) * k / sr)
        drums[start : start + k.size] += 0.1 * rng.standard_normal(k.size) * np.exp(-k / (0.01 * sr))
    return np.stack([drums, 0.9 * drums])


def tone_bass(sr: int, n: int) -> np.ndarray:
    """55 Hz square plus a 110 Hz sine, mono; (1, n) float64."""
    t = np.arange(n) / sr
    bass = 0.4 * np.sign(np.sin(2 * np.pi * 55 * t)) * 0.5 + 0.3 * np.sin(2 * np.pi * 110 * t)
    return bass[None]


def tone_keys(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Sustained C major chord of five sines (262-659 Hz) at random phases; the right channel is
    the left delayed by 40 samples (circularly); (2, n) float64."""
    t = np.arange(n) / sr
    keys = sum(0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (262, 330, 392, 523, 659))
    return np.stack([keys, np.roll(keys, 40)])


def tone_vocal(sr: int, n: int) -> np.ndarray:
    """Vocal-like harmonic tone: 220 Hz with 5 Hz vibrato, 9 harmonics at 1/h, swelling at
    0.5 Hz; it shares the keys' 300 Hz-2 kHz register; mono (1, n) float64."""
    t = np.arange(n) / sr
    f0 = 220 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    vocal = sum((0.3 / h) * np.sin(h * ph) for h in range(1, 10))
    vocal *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t) ** 2
    return vocal[None]


MINI_SONG_STEMS = ("drums", "bass", "keys", "vocal")
"""Stems of :func:`mini_song`, in order."""


def mini_song(*, sr: int = 44100, duration_s: float = 4.0, seed: int = 3,
              quiet_vocal_db: float = 0.0) -> dict[str, np.ndarray]:
    """The tests' small song of tone voices: name -> (channels, samples) float32.

    ``drums`` (:func:`tone_drums`, 2 ch), ``bass`` (:func:`tone_bass`, 1 ch), ``keys``
    (:func:`tone_keys`, 2 ch) and ``vocal`` (:func:`tone_vocal`, 1 ch), which shares the keys'
    300 Hz-2 kHz register; every stem faded in and out over 10 ms. Unnormalised: peaks about
    0.97, 0.5, 0.7, 0.5.

    Parameters
    ----------
    sr : int
        Sample rate, Hz.
    duration_s : float > 0
        Length, s (``int(duration_s * sr)`` samples).
    seed : int
        Seed of the one generator the drums' noise and then the keys' phases are drawn from.
    quiet_vocal_db : float
        Attenuation of the vocal, dB (0 leaves it level with the keys).

    Returns
    -------
    dict of str to ndarray
        In :data:`MINI_SONG_STEMS` order.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    drums = tone_drums(rng, sr, n)  # draws first: the order of draws is part of the song
    bass = tone_bass(sr, n)
    keys = tone_keys(rng, sr, n)
    vocal = tone_vocal(sr, n) * 10 ** (-quiet_vocal_db / 20)
    out = {"drums": drums, "bass": bass, "keys": keys, "vocal": vocal}
    fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * sr))
    return {k: (v * fade).astype(np.float32) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------
# Sessions of arrangement stems, as files
# ------------------------------------------------------------------------------------------------


def stem_plan(n_stems: int) -> list[tuple[str, str, int]]:
    """(file name, kind, variant) for ``n_stems`` stems: :data:`KINDS` in order, then numbered
    variants (``kick_2.wav``, ...) -- the names give ``evomix.io.audio.guess_role`` the roles."""
    plan = []
    for i in range(n_stems):
        kind = KINDS[i % len(KINDS)]
        variant = i // len(KINDS)
        name = f"{kind}.wav" if variant == 0 else f"{kind}_{variant + 1}.wav"
        plan.append((name, kind, variant))
    return plan


def _check_session_args(n_stems, duration_s, sr) -> None:
    if int(n_stems) != n_stems or n_stems < 1:
        raise ParameterError(f"n_stems must be an integer >= 1, got {n_stems!r}")
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ParameterError(f"duration_s must be > 0 seconds, got {duration_s!r}")
    if int(sr) != sr or sr < 8000:
        raise ParameterError(f"sr must be an integer sample rate of at least 8000 Hz, got {sr!r}")


def _mono_kinds(mono: bool | Collection[str]) -> frozenset:
    if mono is True:
        return frozenset(KINDS)
    if mono is False:
        return frozenset()
    bad = [k for k in mono if k not in KINDS]
    if bad:
        raise ParameterError(f"mono: unknown kind {bad[0]!r}; choose from {', '.join(KINDS)}")
    return frozenset(mono)


def write_session(folder: str | Path, n_stems: int = 8, duration_s: float = 30.0, *, sr: int = 44100,
                  seed: int = 1234, mono: bool | Collection[str] = False, sectioned: bool = False) -> list[Path]:
    """Synthesise ``n_stems`` arrangement stems of ``duration_s`` s into ``folder`` as 24-bit WAVs.

    Stem ``i`` is ``synth_stem(kind, n, default_rng([seed, i]), variant)`` for the ``i``-th entry
    of :func:`stem_plan`, level-set to an RMS drawn from [-28, -16] dBFS (so the analysis' trims
    differ; drawn from ``default_rng(seed)`` in stem order), then lowered if needed to peak <= 0.98.
    The benchmarks' standard workload is ``write_session(folder, 8, 30.0, seed=1234)``.

    Parameters
    ----------
    folder : path
        Output directory; created (with parents) if missing. Existing files of the same names are
        replaced.
    n_stems : int >= 1
    duration_s : float > 0
        Length of every stem, s.
    sr : int >= 8000
        Sample rate, Hz.
    seed : int
        The same seed gives bit-identical files (on one machine and numpy/scipy version).
    mono : bool or collection of str
        Kinds written as one channel (the mid, (L + R) / 2, before level-setting); True for all,
        False (default) for none.
    sectioned : bool, default False
        Every stem also follows :data:`SECTIONED_GAIN_DB` (:func:`sectioned_gain`, applied before
        level-setting): quiet verses, loud choruses, a breakdown 20 dB down.

    Returns
    -------
    list of Path
        The written files, in :func:`stem_plan` order.

    Raises
    ------
    ParameterError
        If an argument is out of range or ``mono`` names an unknown kind.

    Notes
    -----
    Memory: one stem at a time (float64 (2, samples) and a few temporaries, ~150 MB per stem of
    210 s at 44.1 kHz). Time: about 0.8 s per stem of 210 s, writing included.
    """
    _check_session_args(n_stems, duration_s, sr)
    mono_kinds = _mono_kinds(mono)
    sr = int(sr)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(duration_s * sr))
    root = np.random.default_rng(seed)
    paths = []
    for i, (name, kind, variant) in enumerate(stem_plan(int(n_stems))):
        rng = np.random.default_rng([seed, i])
        x = synth_stem(kind, n, rng, variant, sr=sr)  # (2, n)
        if sectioned:
            x *= sectioned_gain(n, sr)[None, :]
        if kind in mono_kinds:
            x = 0.5 * (x[:1] + x[1:])  # (2, n) -> (1, n)
        rms = float(np.sqrt(np.mean(x ** 2)))
        if rms > 0:
            x *= 10 ** (root.uniform(-28.0, -16.0) / 20.0) / rms
        paths.append(write_stem(folder / name, x, sr))
        del x
    return paths


def write_stem(path: Path, x: np.ndarray, sr: int, *, peak_max: float = 0.98) -> Path:
    """Write ``x`` (ch, samples) as a 24-bit WAV at ``path``, scaled down first if its sample peak
    is over ``peak_max`` (linear full scale): a stem as a recording would hand it over."""
    peak = float(np.max(np.abs(x)))
    if peak > peak_max:
        x = x * (peak_max / peak)
    sf.write(str(path), x.T.astype(np.float32), sr, subtype="PCM_24")
    return Path(path)


def _source_digest() -> str:
    """Short hash of this module's source: any edit of the generators invalidates cached sessions."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    except OSError:  # pragma: no cover - frozen or zipped install
        return "nosource"


def session_key(n_stems: int, duration_s: float, *, sr: int = 44100, seed: int = 1234,
                mono: bool | Collection[str] = False, sectioned: bool = False) -> dict:
    """The cache key of a session: everything that determines its files' samples.

    ``numpy`` and ``scipy`` versions are part of it: their sin, cumsum and filters may differ by an
    ulp between versions, and a cached session must be the one this machine would synthesise.
    """
    import scipy

    key = {"n_stems": int(n_stems), "duration_s": float(duration_s), "sr": int(sr), "seed": int(seed),
           "mono": sorted(_mono_kinds(mono)), "version": SONG_VERSION, "source": _source_digest(),
           "numpy": np.__version__, "scipy": scipy.__version__}
    if sectioned:
        key["sectioned"] = True
    return key


def default_cache_dir() -> Path:
    """``$EVOMIX_SONG_CACHE`` if set, else ``<system temp dir>/evomix-songs``."""
    env = os.environ.get("EVOMIX_SONG_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "evomix-songs"


def _manifest_ok(folder: Path, key: dict) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("key") != key:
        return False
    files = manifest.get("files", {})
    try:
        return bool(files) and all((folder / name).stat().st_size == size for name, size in files.items())
    except OSError:
        return False


def cached_session(n_stems: int, duration_s: float, *, sr: int = 44100, seed: int = 1234,
                   mono: bool | Collection[str] = False, cache_dir: str | Path | None = None,
                   sectioned: bool = False) -> tuple[Path, bool]:
    """The folder of ``write_session(..., n_stems, duration_s, sr=sr, seed=seed, mono=mono,
    sectioned=sectioned)``, synthesised once and reused.

    The folder lives under ``cache_dir`` (default :func:`default_cache_dir`), named after the
    arguments and keyed by :func:`session_key` (arguments, :data:`SONG_VERSION`, a hash of this
    module's source, numpy/scipy versions) in its ``manifest.json``; it is reused only when the key
    matches and every file has the recorded size. A new session is written into a temporary
    sibling folder and renamed into place, so concurrent callers never see a half-written session.
    Nothing is pruned: delete the cache folder to reclaim the space (16 stems x 210 s is 889 MB).

    Parameters
    ----------
    n_stems, duration_s, sr, seed, mono, sectioned
        As for :func:`write_session`.
    cache_dir : path, optional

    Returns
    -------
    (Path, bool)
        The folder holding only the stems' WAVs and ``manifest.json``, and whether it was reused
        (False: synthesised by this call).
    """
    _check_session_args(n_stems, duration_s, sr)
    key = session_key(n_stems, duration_s, sr=sr, seed=seed, mono=mono, sectioned=sectioned)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    mono_tag = ("" if not key["mono"]
                else ("-mono" if len(key["mono"]) == len(KINDS) else "-mono-" + "-".join(key["mono"])))
    mono_tag += "-sectioned" if sectioned else ""
    name = (f"{key['n_stems']}x{key['duration_s']:g}s-{key['sr']}Hz-seed{key['seed']}{mono_tag}"
            f"-v{SONG_VERSION}-{key['source']}")
    folder = cache / name
    if _manifest_ok(folder, key):
        return folder, True
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
    try:
        paths = write_session(tmp, n_stems, duration_s, sr=sr, seed=seed, mono=mono, sectioned=sectioned)
        manifest = {"key": key, "files": {p.name: p.stat().st_size for p in paths}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache is for every user of the machine
        if folder.exists():  # stale (other key) or incomplete: replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its copy into place first
            if not _manifest_ok(folder, key):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, False


def session_files(folder: str | Path) -> list[Path]:
    """The WAV stems of a session folder written by :func:`write_session` / :func:`cached_session`,
    in :func:`stem_plan` order."""
    folder = Path(folder)
    order = {name: i for i, (name, _, _) in enumerate(stem_plan(len(list(folder.glob("*.wav")))))}
    return sorted(folder.glob("*.wav"), key=lambda p: order.get(p.name, len(order)))
