"""A synthesized multitrack demo song, in pure numpy/scipy, for examples and tests.

The song is a short pop loop at 100 BPM in A minor (one chord per bar,
Am - F - C - G, repeated) rendered as five stems, each played by one of the
loop voices of :mod:`evomix.testing.songs` (the project's one song synthesizer); this
module sets their levels and fades and so makes the deliberate mix problems:

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

from pathlib import Path

import numpy as np
import soundfile as sf

from evomix.errors import ParameterError
from evomix.io.files import atomic_file
from evomix.testing.songs import LOOP_BPM, drum_kit, formant_vocal, saw_bass, saw_lead, saw_pad

__all__ = ["DEMO_STEMS", "synthesize_demo", "write_demo_stems"]

DEMO_STEMS: tuple[str, ...] = ("drums", "bass", "chords", "lead", "vocal")

BPM = LOOP_BPM
"""Tempo of the demo song, beats per minute."""

#: Target RMS level per stem after normalisation, dBFS (vocal is set relative).
_TARGET_RMS_DB = {"drums": -20.0, "bass": -20.0, "chords": -19.0, "lead": -20.0}
#: How far the vocal sits below the median of the other stems, dB.
VOCAL_DEFICIT_DB = 15.0
_PEAK_MAX = 0.99

#: The instrument of each stem (loop voices of :mod:`evomix.testing.songs`).
_VOICES = {"drums": drum_kit, "bass": saw_bass, "chords": saw_pad, "lead": saw_lead, "vocal": formant_vocal}


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
    raw = {name: _VOICES[name](rng, sr, n, beat) for name, rng in zip(DEMO_STEMS, rngs)}

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
        with atomic_file(final) as tmp:  # complete or absent, never half a file
            sf.write(tmp, stems[name].T, sr, subtype="PCM_24", format="WAV")
        paths.append(final)
    return paths
