"""Correlated stems add in amplitude: the fast tier's loudness follows the exact render when two
stems carry the same part (a doubled bass), and the cross terms are what makes it do so."""
import dataclasses

import numpy as np
import pytest

from evomix.engine.analysis import analyze_session, heavy_frame_count
from evomix.engine.batch import render_features
from evomix.engine.render import render_exact
from evomix.io.audio import Session
from evomix.search.genome import GeneTable
from evomix.testing.songs import mini_song

SR = 44100


def _doubled_session():
    st = mini_song(sr=SR, duration_s=4.0, seed=3)
    bass = st["bass"]  # (1, n) mono
    n = bass.shape[1]
    audio = np.zeros((4, 2, n), np.float32)
    audio[0] = bass[0]
    audio[1] = 0.8 * bass[0]  # the same part again, a little quieter: fully coherent with stem 0
    audio[2] = st["keys"]
    audio[3] = st["drums"]
    names = ("bass", "bass_double", "keys", "drums")
    return Session(sr=SR, names=names, roles=("bass", "bass", "keys", "drums"), audio=audio,
                   is_mono=np.array([True, True, False, False]), paths=tuple(f"{x}.wav" for x in names), length=n)


def test_a_doubled_part_is_found_and_its_loudness_follows_the_exact_render():
    session = _doubled_session()
    a = analyze_session(session)
    assert (0, 1) in {tuple(p) for p in a.pairs}  # the double is found
    table = GeneTable(4)
    params = table.decode(table.initial_population(8, np.random.default_rng(1)), a.trim_db)
    fast = render_features(a, params, target_lufs=-14, ceiling_dbtp=-1).raw_loudness_lufs
    exact = np.array([render_exact(session, session.is_mono, SR, params, index=i, target_lufs=-14, ceiling_dbtp=-1,
                                   grid=a.grid).raw_loudness_lufs for i in range(8)])
    blind = dataclasses.replace(a, pairs=np.zeros((0, 2), int), pair_cross=a.pair_cross[:0])
    power_sum = render_features(blind, params, target_lufs=-14, ceiling_dbtp=-1).raw_loudness_lufs
    assert np.abs(fast - exact).max() < 0.5, (fast, exact)  # the fidelity bound the README states
    assert np.abs(power_sum - exact).mean() > 2 * np.abs(fast - exact).mean()  # the cross terms do the work


def test_independent_stems_have_no_pairs(rng):
    n = SR * 3
    audio = (0.1 * rng.standard_normal((3, 2, n))).astype(np.float32)  # independent noises
    session = Session(sr=SR, names=("a", "b", "c"), roles=("other",) * 3, audio=audio, is_mono=np.zeros(3, bool),
                      paths=("a.wav", "b.wav", "c.wav"), length=n)
    assert analyze_session(session).pairs.shape == (0, 2)


@pytest.mark.parametrize("duration_s, frames", [(4.0, 32), (30.0, 32), (60.0, 38), (210.0, 128), (600.0, 128)])
def test_long_songs_get_more_heavy_frames(duration_s, frames):
    assert heavy_frame_count(duration_s) == frames
