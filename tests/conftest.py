"""Shared fixtures: a seeded rng and small synthetic signals (never ../shared audio)."""
import numpy as np
import pytest

from evomix.testing.songs import mini_song

SR = 44100


@pytest.fixture
def rng():
    return np.random.default_rng(440)


def sine(freq_hz, duration_s, sr=SR, amp=0.5, phase=0.0, fade_s=0.01):
    """A sine with short raised-cosine fades, shape (samples,), float64."""
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    x = amp * np.sin(2 * np.pi * freq_hz * t + phase)
    nf = int(fade_s * sr)
    if nf > 0 and 2 * nf < n:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf) / nf)
        x[:nf] *= ramp
        x[-nf:] *= ramp[::-1]
    return x


def song_stems(sr=SR, duration_s=4.0, seed=3, quiet_vocal_db=0.0):
    """A tiny synthetic multitrack, ``evomix.testing.songs.mini_song``: name -> (ch, samples) float32.

    kick-ish drums (stereo), a bass line (mono), keys chords (stereo) and a vocal-like harmonic
    tone (mono) that shares the keys' 300 Hz-2 kHz register; ``quiet_vocal_db`` lowers the vocal.
    """
    return mini_song(sr=sr, duration_s=duration_s, seed=seed, quiet_vocal_db=quiet_vocal_db)


def write_stems(folder, stems, sr=SR):
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, x in stems.items():
        p = folder / f"{name}.wav"
        sf.write(p, x.T, sr, subtype="PCM_24")
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def stem_dir(tmp_path_factory):
    """A folder with the tiny synthetic song's stems (4 s, 44.1 kHz)."""
    folder = tmp_path_factory.mktemp("stems")
    write_stems(folder, song_stems())
    return folder
