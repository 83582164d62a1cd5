"""A same-song reference's reverb (issue 22): estimated from what a dry model of the stems cannot
explain (``evomix.tools.reference.reference_return_lu``), and the alternatives made as wet as it.

The references are synthesized here: the tests' stems with gains, plus a stereo convolution reverb
whose tail is decaying noise (20 ms pre-delay, two independent channels): not evomix's own FDN.
The reverb's true level is read by pyloudnorm (BS.1770-4): the reverb's loudness minus the mix's.
"""
from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import fftconvolve

from evomix.engine.analysis import analyze_session
from evomix.tools.reference import FIT_MAX_FRAMES, reference_return_lu
from tests.support import SR, run_cli, search_flags, small_search

GAINS_DB = (0.0, -3.0, -6.0, 2.0)  # the reference's faders (drums, bass, keys, vocal: tests.support.song_stems)


def _dry(session) -> np.ndarray:
    """The reference's dry part (2, samples) float64."""
    return sum(10 ** (g / 20) * session.stem(s).astype(float) for s, g in enumerate(GAINS_DB))


def _reverb(dry: np.ndarray, rt60_s: float, level_lu: float, seed: int = 5) -> np.ndarray:
    """A stereo reverb of the dry mix's mono sum, scaled so that it is ``level_lu`` re the dry mix
    (pyloudnorm): decaying noise, 60 dB down after ``rt60_s``, 20 ms pre-delay."""
    rng = np.random.default_rng(seed)
    n = int(1.2 * rt60_s * SR)
    tail = rng.standard_normal((2, n)) * 10 ** (-3.0 * np.arange(n) / SR / rt60_s)
    tail[:, : int(0.02 * SR)] = 0.0
    wet = np.stack([fftconvolve(dry.mean(axis=0), tail[c])[: dry.shape[1]] for c in range(2)])
    meter = pyloudnorm.Meter(SR)
    now = meter.integrated_loudness(wet.T) - meter.integrated_loudness(dry.T)
    return wet * 10 ** ((level_lu - now) / 20)


def _true_level(wet, dry) -> float:
    meter = pyloudnorm.Meter(SR)
    return meter.integrated_loudness(wet.T) - meter.integrated_loudness((dry + wet).T)


@pytest.fixture(scope="module")
def session_and_analysis(stem_session):
    return stem_session, analyze_session(stem_session)


def _frames(analysis):
    return np.unique(np.linspace(0, analysis.n_frames - 1, min(analysis.n_frames, FIT_MAX_FRAMES)).round().astype(int))


@pytest.mark.parametrize("rt60_s", [0.8, 1.5, 3.0])
@pytest.mark.parametrize("level_lu", [-20.0, -11.0, -8.0])
def test_the_reverb_of_a_reference_is_read_within_1_lu(session_and_analysis, rt60_s, level_lu):
    """Measured when written: within 0.1-1.0 LU over these nine (the real gains absorb a little
    of a reverb of steady, repetitive parts: the estimate reads a little low)."""
    session, analysis = session_and_analysis
    dry = _dry(session)
    wet = _reverb(dry, rt60_s, level_lu)
    est = reference_return_lu(dry + wet, session, analysis, _frames(analysis))
    true = _true_level(wet, dry)
    assert abs(est - true) <= 1.2, (est, true)


def test_a_dry_reference_has_no_reverb_and_a_misaligned_one_reads_wet(session_and_analysis):
    session, analysis = session_and_analysis
    dry = _dry(session)
    assert reference_return_lu(dry, session, analysis, _frames(analysis)) < -60.0
    late = np.concatenate([np.zeros((2, 1)), dry[:, :-1]], axis=1)  # one sample late: not the dry model
    assert reference_return_lu(late, session, analysis, _frames(analysis)) > -30.0  # the documented limit


@pytest.mark.slow
def test_a_wet_same_song_reference_gives_alternatives_as_wet_within_3_lu(stem_dir, stem_session, tmp_path):
    """``evomix mix --reference`` with a same-song reference whose reverb lies at -11 LU: every
    exported alternative's return (``reverb-return.wav``, pyloudnorm) is within 3 LU of the
    reference's, and the run reports the estimate."""
    dry = _dry(stem_session)
    wet = _reverb(dry, 1.5, -11.0)
    true = _true_level(wet, dry)
    ref = tmp_path / "ref.wav"
    sf.write(ref, ((dry + wet) / np.abs(dry + wet).max() * 0.5).T, SR, subtype="FLOAT")
    out = tmp_path / "out"
    flags = [*search_flags(small_search(population=16, generations=20, seed=1, alternatives=3)), "--quiet"]
    res = run_cli("mix", stem_dir, "--out", out, "--reference", ref, "--export-stems", *flags, "--json")
    assert res.exit_code == 0, res.output
    meter = pyloudnorm.Meter(SR)
    levels = []
    for alt in sorted(out.glob("alt-??.wav")):
        mix, _ = sf.read(alt)
        ret, _ = sf.read(out / f"{alt.stem}-stems" / "reverb-return.wav")
        levels.append(meter.integrated_loudness(ret) - meter.integrated_loudness(mix))
    assert levels and all(abs(x - true) <= 3.0 for x in levels), (levels, true)
    assert abs(json.loads(res.stdout)["reference"]["return_lu"] - true) <= 1.2
