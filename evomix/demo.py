"""A synthesized multitrack demo song, in pure numpy/scipy, for examples and tests.

The song is a short pop loop at 100 BPM in A minor (one chord per bar,
Am - F - C - G, repeated) rendered as five stems:

``drums`` (2 ch)
    Kick (sine sweep 120 -> 45 Hz with exponential decay and a click) on
    beats 1 and 3, snare (noise band-passed to 1-5 kHz plus a 180 Hz body)
    on 2 and 4, closed hi-hats on 8ths (high-passed noise, slightly spread
    in stereo) with an open hat at the end of every bar.
``bass`` (1 ch)
    Saw/square bass following the chord roots, fundamentals 43-110 Hz,
    low-passed, plucky envelope.
``chords`` (2 ch)
    A pad of detuned band-limited saws voicing the triads between 196 Hz
    and 523 Hz, low-passed at 2.5 kHz, stereo from different detunes per
    side, gently pumped on every beat.
``lead`` (1 ch)
    Saw/square synth lead melody, fundamentals 494-784 Hz, with delayed
    vibrato, low-passed at 3 kHz.
``vocal`` (1 ch)
    A formant "voice": a band-limited glottal-like sawtooth with vibrato,
    scoop and jitter (melody at 220-392 Hz) passed through a cascade of
    three vowel formant resonators (/a/ /e/ /i/ /o/ changing per syllable),
    syllable envelopes with gaps and a little breath noise.

Deliberate mix problems (what the genetic search is meant to fix):

* **The vocal is 15 dB too quiet.**  After synthesis every stem is
  normalised by RMS (over all channels and samples): drums, bass and lead
  to -20 dBFS, chords to -19 dBFS (all within +-2 dB of each other), and the
  vocal to 15 dB below the median of the other four, i.e. -35 dBFS.
* **Chords and lead fight in 300 Hz - 2 kHz**: both carry most of their
  energy in the same register (more than half of each in 200 Hz - 2.5 kHz).

All stems are float32 arrays of shape (channels, samples), peak <= 0.99,
with short fades at both ends.  Everything except kick and bass is
high-passed at 20 Hz.  The same ``seed`` gives bit-identical stems; every
random choice (noise, velocities, phases, timing, jitter) comes from
``np.random.default_rng`` generators derived from that seed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from evomix.errors import ParameterError

__all__ = ["DEMO_STEMS", "synthesize_demo", "write_demo_stems"]

DEMO_STEMS: tuple[str, ...] = ("drums", "bass", "chords", "lead", "vocal")

BPM = 100.0
"""Tempo of the demo song, beats per minute."""

#: Target RMS level per stem after normalisation, dBFS (vocal is set relative).
_TARGET_RMS_DB = {"drums": -20.0, "bass": -20.0, "chords": -19.0, "lead": -20.0}
#: How far the vocal sits below the median of the other stems, dB.
VOCAL_DEFICIT_DB = 15.0
_PEAK_MAX = 0.99

# Chords: (root MIDI note for the bass, pad voicing MIDI notes), one per bar.
_PROGRESSION = (
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


# --------------------------------------------------------------------------- helpers


def _midi_hz(note: float) -> float:
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


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


def _sos(kind: str, freq_hz, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth second-order sections, cut-offs clamped below Nyquist.

    Parameters
    ----------
    kind : {"lowpass", "highpass", "bandpass"}
    freq_hz : float or (float, float)
        Cut-off frequency (or band edges), Hz.
    sr : int
        Sample rate, Hz.
    """
    nyq = 0.5 * sr
    f = np.minimum(np.atleast_1d(np.asarray(freq_hz, dtype=float)), 0.45 * sr)
    wn = f / nyq
    return signal.butter(order, wn if wn.size > 1 else wn[0], btype=kind, output="sos")


def _add(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``out`` (last axis) starting at sample ``start``, cropping at the ends."""
    n = out.shape[-1]
    if start >= n or start + x.shape[-1] <= 0:
        return
    a = max(start, 0)
    b = min(start + x.shape[-1], n)
    out[..., a:b] += x[..., a - start:b - start]


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
    x = signal.sosfilt(_sos("lowpass", cutoff_hz, sr), rng.standard_normal(n + sr // 10))[sr // 10:]
    return x / (np.std(x) + 1e-12)


# --------------------------------------------------------------------------- stems


def _drums(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Stereo drum kit, shape (2, n), float64 (unnormalised)."""
    out = np.zeros((2, n))
    hp20 = _sos("highpass", 20.0, sr)
    snare_bp = _sos("bandpass", (1000.0, 5000.0), sr)
    hat_hp = _sos("highpass", 7000.0, sr, order=4)
    click_hp = _sos("highpass", 2000.0, sr)

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
            _add(out, np.vstack([k, k]), start)
        if pos == 3 and (b // 4) % 2 == 1:  # pickup kick on the "and" of 4 every other bar
            _add(out, np.vstack([kick_body, kick_body]) * 0.6, start + beat // 2)
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
            _add(out, hit, start + int(rng.normal(0.0, 0.002) * sr))
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
            _add(out, hat * vel * pan, start + half * (beat // 2) + jitter)
    # Bus saturation: tame the kick/snare transients (crest factor) like a drum-bus clipper.
    out /= np.max(np.abs(out)) + 1e-12
    return np.tanh(2.0 * out) / np.tanh(2.0)


def _bass(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono bass following the chord roots, shape (1, n), float64 (unnormalised)."""
    out = np.zeros(n)
    bar = 4 * beat
    for bar_i in range(int(np.ceil(n / bar))):
        root = _PROGRESSION[bar_i % 4][0]
        for start_b, len_b, octave in _BASS_PATTERN:
            note = root + (12 if octave and _midi_hz(root + 12) <= 110.0 else 0)
            m = int(len_b * beat)
            freq = np.full(m, _midi_hz(note)) * (1.0 + 0.002 * rng.standard_normal())
            x = _osc(freq, sr, rng.random(), square_mix=0.35)
            x *= _adsr(m, sr, 0.004, 0.02, decay_tau_s=0.18, sustain=0.35)
            x *= 10 ** (rng.normal(0.0, 0.8) / 20) * (0.8 if octave else 1.0)
            _add(out, x, bar_i * bar + int(start_b * beat))
    # Low-pass (2nd-order Butterworth at 450 Hz) plus a little drive.
    out = signal.sosfilt(_sos("lowpass", 450.0, sr, order=2), out)
    out = np.tanh(1.5 * out) / 1.5
    return out[None, :]


def _chords(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Stereo pad of detuned saws, shape (2, n), float64 (unnormalised)."""
    out = np.zeros((2, n))
    bar = 4 * beat
    tail = int(0.25 * sr)
    cents = np.array([[-9.0, 4.0], [-3.0, 10.0]])  # per side, two voices each
    for bar_i in range(int(np.ceil(n / bar))):
        voicing = _PROGRESSION[bar_i % 4][1]
        m = min(bar + tail, n - bar_i * bar)
        seg = np.zeros((2, m))
        for note in voicing:
            f0 = _midi_hz(note)
            for side in (0, 1):
                for c in cents[side]:
                    seg[side] += _osc(np.full(m, f0 * 2 ** (c / 1200.0)), sr, rng.random())
        seg *= _adsr(m, sr, 0.03, min(tail, m // 2) / sr, decay_tau_s=0.6, sustain=0.75)
        _add(out, seg, bar_i * bar)
    out = signal.sosfilt(_sos("lowpass", 2500.0, sr, order=4), out, axis=-1)
    out = signal.sosfilt(_sos("highpass", 20.0, sr), out, axis=-1)
    # Sidechain-like pump: dips of about 4 dB on every beat, recovering within ~0.25 s.
    t_beat = np.mod(np.arange(n), beat) / sr
    out *= 1.0 - 0.37 * np.exp(-t_beat / 0.12)
    return out


def _lead(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono synth lead melody, shape (1, n), float64 (unnormalised)."""
    out = np.zeros(n)
    cycle = 16 * beat
    for cyc in range(int(np.ceil(n / cycle))):
        for start_b, len_b, note in _LEAD_MELODY:
            m = int(len_b * beat * 0.92)
            t = np.arange(m) / sr
            vib_depth = 0.006 * np.clip((t - 0.12) / 0.2, 0.0, 1.0)  # ~10 cents, delayed
            freq = _midi_hz(note) * (1.0 + vib_depth * np.sin(2 * np.pi * 5.6 * t + rng.random() * 6.28))
            x = 0.6 * _osc(freq, sr, rng.random(), square_mix=0.5)
            x += 0.4 * _osc(freq * 1.003, sr, rng.random())
            x *= _adsr(m, sr, 0.008, 0.04, decay_tau_s=0.25, sustain=0.7)
            x *= 10 ** (rng.normal(0.0, 1.0) / 20)
            _add(out, x, cyc * cycle + int(start_b * beat))
    out = signal.sosfilt(_sos("lowpass", 3000.0, sr, order=2), out)
    out = signal.sosfilt(_sos("highpass", 20.0, sr), out)
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


def _vocal(rng: np.random.Generator, sr: int, n: int, beat: int) -> np.ndarray:
    """Mono formant voice singing vowels, shape (1, n), float64 (unnormalised)."""
    out = np.zeros(n)
    cycle = 16 * beat
    breath_hp = _sos("highpass", 1500.0, sr)
    for cyc in range(int(np.ceil(n / cycle))):
        for start_b, len_b, note, vowel in _VOCAL_MELODY:
            m = int(len_b * beat * 0.9)
            t = np.arange(m) / sr
            scoop = -0.03 * np.exp(-t / 0.05)  # starts ~50 cents flat
            vib = 0.012 * np.clip((t - 0.15) / 0.25, 0.0, 1.0) * np.sin(2 * np.pi * 5.2 * t)
            jitter = 0.004 * _smooth_noise(rng, m, sr, 30.0)
            freq = _midi_hz(note) * (1.0 + scoop + vib + jitter)
            src = _osc(freq, sr, rng.random())
            src = signal.lfilter([0.3], [1.0, -0.7], src)  # extra glottal spectral tilt
            breath = signal.sosfilt(breath_hp, rng.standard_normal(m)) * 0.05
            b, a = _formant_filter(vowel, sr)
            x = signal.lfilter(b, a, src + breath)
            x *= _adsr(m, sr, 0.04, 0.08)
            x *= 10 ** (rng.normal(0.0, 1.0) / 20)
            _add(out, x, cyc * cycle + int(start_b * beat))
    out = signal.sosfilt(_sos("highpass", 20.0, sr), out)
    return out[None, :]


# --------------------------------------------------------------------------- public API


def _rms_db(x: np.ndarray) -> float:
    """RMS level over all channels and samples, dBFS (full scale sine peak = 1.0)."""
    return 20.0 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def synthesize_demo(*, sr: int = 44100, duration_s: float = 12.0, seed: int = 7) -> dict[str, np.ndarray]:
    """Render the demo song as separate stems.

    Parameters
    ----------
    sr : int
        Sample rate, Hz (at least 8000).
    duration_s : float
        Length of every stem, seconds (at least 0.5).
    seed : int
        Seed for all random choices; the same seed gives identical arrays.

    Returns
    -------
    dict of str to ndarray
        Stem name (in ``DEMO_STEMS`` order) to float32 audio of shape
        (channels, samples) in [-0.99, 0.99]: drums and chords have 2
        channels, bass, lead and vocal 1.  RMS levels: drums, bass and lead
        -20 dBFS, chords -19 dBFS, vocal 15 dB below the median of the
        others (-35 dBFS), unless all had to be lowered together to keep
        peaks at or below 0.99.

    Raises
    ------
    ParameterError
        If ``sr`` or ``duration_s`` is too small.
    """
    if int(sr) != sr or sr < 8000:
        raise ParameterError(f"sr must be an integer sample rate of at least 8000 Hz, got {sr!r}")
    if not np.isfinite(duration_s) or duration_s < 0.5:
        raise ParameterError(f"duration_s must be at least 0.5 seconds, got {duration_s!r}")
    sr = int(sr)
    n = int(round(duration_s * sr))
    beat = int(round(60.0 / BPM * sr))
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(DEMO_STEMS))]
    makers = {"drums": _drums, "bass": _bass, "chords": _chords, "lead": _lead, "vocal": _vocal}
    raw = {name: makers[name](rng, sr, n, beat) for name, rng in zip(DEMO_STEMS, rngs)}

    targets = dict(_TARGET_RMS_DB)
    targets["vocal"] = float(np.median(list(_TARGET_RMS_DB.values()))) - VOCAL_DEFICIT_DB
    nf_in, nf_out = min(int(0.02 * sr), n // 4), min(int(0.05 * sr), n // 4)
    fade = np.ones(n)
    fade[:nf_in] = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf_in) / nf_in)
    fade[n - nf_out:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(nf_out) / nf_out)

    stems = {}
    for name in DEMO_STEMS:
        x = raw[name] * fade
        stems[name] = x * 10 ** ((targets[name] - _rms_db(x)) / 20.0)
    peak = max(float(np.max(np.abs(x))) for x in stems.values())
    common = min(1.0, _PEAK_MAX / peak)  # lower everything together, keeping level relations
    return {name: (stems[name] * common).astype(np.float32) for name in DEMO_STEMS}


def write_demo_stems(folder: Path, *, sr: int = 44100, duration_s: float = 12.0, seed: int = 7) -> list[Path]:
    """Render the demo and write each stem as ``<name>.wav`` (24-bit PCM) into ``folder``.

    Each file is first written to ``.<name>.wav.tmp`` in the same folder and
    then moved into place with ``os.replace``, so readers never see a
    half-written WAV.

    Parameters
    ----------
    folder : Path
        Output directory; created (with parents) if missing.
    sr : int
        Sample rate, Hz.
    duration_s : float
        Length of every stem, seconds.
    seed : int
        Seed passed to :func:`synthesize_demo`.

    Returns
    -------
    list of Path
        The written files, in ``DEMO_STEMS`` order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stems = synthesize_demo(sr=sr, duration_s=duration_s, seed=seed)
    paths = []
    for name in DEMO_STEMS:
        final = folder / f"{name}.wav"
        tmp = folder / f".{name}.wav.tmp"
        try:
            sf.write(tmp, stems[name].T, sr, subtype="PCM_24", format="WAV")
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        paths.append(final)
    return paths
