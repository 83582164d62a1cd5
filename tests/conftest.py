"""Shared fixtures: a seeded rng and small synthetic signals (never ../shared audio)."""
import numpy as np
import pytest

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
    """A tiny synthetic multitrack: name -> (ch, samples) float32.

    kick-ish drums (stereo), a bass line (mono), keys chords (stereo) and a vocal-like harmonic
    tone (mono) that shares the keys' 300 Hz-2 kHz register; ``quiet_vocal_db`` lowers the vocal.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    t = np.arange(n) / sr
    beat = int(0.5 * sr)
    drums = np.zeros(n)
    for start in range(0, n - beat, beat):
        k = np.arange(min(beat, n - start))
        env = np.exp(-k / (0.08 * sr))
        drums[start : start + k.size] += 0.8 * env * np.sin(2 * np.pi * (50 + 80 * np.exp(-k / (0.02 * sr))) * k / sr)
        drums[start : start + k.size] += 0.1 * rng.standard_normal(k.size) * np.exp(-k / (0.01 * sr))
    drums = np.stack([drums, 0.9 * drums])
    bass = 0.4 * np.sign(np.sin(2 * np.pi * 55 * t)) * 0.5 + 0.3 * np.sin(2 * np.pi * 110 * t)
    keys = sum(0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (262, 330, 392, 523, 659))
    keys = np.stack([keys, np.roll(keys, 40)])
    f0 = 220 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    vocal = sum((0.3 / h) * np.sin(h * ph) for h in range(1, 10))
    vocal *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t) ** 2
    vocal *= 10 ** (-quiet_vocal_db / 20)
    out = {"drums": drums, "bass": bass[None], "keys": keys, "vocal": vocal[None]}
    fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * sr))
    return {k: (v * fade).astype(np.float32) for k, v in out.items()}


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
