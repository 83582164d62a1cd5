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
