"""The strips as SIMD lanes (``engine.strip.LaneStrips``, issue 23): bit for bit the mix of the stems' streams.

The lane kernels (``chain.eq_detect_lanes``, ``chain.gain_pan_eq_sum_lanes``) do each stem's arithmetic in
the order of the one-stem kernels and add the stems from 0 in stem order, so the mix they give must equal,
sample for sample, the one ``engine.render`` builds from :class:`engine.strip.StripStream` chunks
(``_Mixer._run_lockstep``) -- for any chunk length, thread count, mono and stereo stems, more stems than
one lane group, reverb sends on, and stretches of digital silence (the subnormal flush).
"""
from __future__ import annotations

import numpy as np
import pytest

from evomix.engine import render as R
from evomix.engine.strip import LaneStrips
from evomix.search.constraints import constrain_table
from evomix.search.genome import GeneTable

SR = 22050


def _audio(n_stems: int, seconds: float, mono, seed: int) -> np.ndarray:
    """(stems, 2, samples) float32 noise with silent stretches; a mono stem's row 1 is not its signal."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = (0.3 * rng.standard_normal((n_stems, 2, n))).astype(np.float32)
    x[:, :, n // 3 : n // 2] = 0.0  # digital silence: the filter states decay towards subnormals
    x[1, :, : n // 4] = 0.0
    for s in np.flatnonzero(mono):
        x[s, 1] = 0.5 * x[s, 0] + 0.1  # not its row: a mono stem's row 0 feeds both sides
    return x


def _params(n_stems: int, seed: int, sends: bool):
    names = [f"s{k}" for k in range(n_stems)]
    table = GeneTable(n_stems)
    if sends:
        table = constrain_table(table, names, [], ["*.reverb_send_db=-40:0"])
    g = table.initial_population(4, np.random.default_rng(seed), random_fraction=0.75)
    return table.decode(g, np.random.default_rng(seed + 1).uniform(-6, 6, n_stems))


def _mixers(audio, mono, params, i, threads):
    g = R._Grid(SR, audio.shape[-1])
    lanes = R._Mixer(audio, mono, params, i, g, None, False, threads)
    lanes.run()
    ref = R._Mixer(audio, mono, params, i, g, None, False, threads)
    ref._run_lockstep()
    return lanes, ref


@pytest.mark.parametrize("n_stems,sends", [(3, False), (11, False), (11, True)])
def test_lanes_mix_is_the_streams_mix_bit_for_bit(n_stems, sends):
    mono = np.zeros(n_stems, bool)
    mono[::3] = True
    audio = _audio(n_stems, 2.5, mono, seed=n_stems)
    params = _params(n_stems, seed=7, sends=sends)
    with_reverb = 0
    for i in range(4):
        lanes, ref = _mixers(audio, mono, params, i, threads=1)
        assert np.any(ref.mix != 0.0)
        np.testing.assert_array_equal(lanes.mix, ref.mix)
        with_reverb += lanes.reverb is not None
    assert (with_reverb > 0) == sends  # with sends, some candidates ran the reverb bus


@pytest.mark.parametrize("chunk", [1, 777, 4096, 10**7])
def test_lanes_mix_does_not_depend_on_the_chunk_or_the_threads(chunk):
    n_stems = 10
    mono = np.zeros(n_stems, bool)
    mono[4] = True
    audio = _audio(n_stems, 1.0 if chunk == 1 else 2.0, mono, seed=3)
    params = _params(n_stems, seed=11, sends=True)
    g = R._Grid(SR, audio.shape[-1])
    ref = R._Mixer(audio, mono, params, 1, g, None, False, 1)
    ref._run_lockstep()
    m = R._Mixer(audio, mono, params, 1, g, None, False, 2)
    p = params
    lanes = LaneStrips(audio, g, m.stem_sos, m.master_sos,
                       [10.0 ** (float(p.trim_db[1, s]) / 20.0) for s in range(n_stems)],
                       [10.0 ** (float(p.gain_db[1, s]) / 20.0) for s in range(n_stems)], m.pans, m.sends,
                       p.comp_threshold_db[1], p.comp_ratio[1], p.comp_attack_ms[1], p.comp_release_ms[1], chunk=chunk,
                       is_mono=mono)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        lanes.run(m.mix, pool, (lambda send, a: m._add_return(m.reverb.process(send), a)) if m.reverb else None)
    np.testing.assert_array_equal(m.mix, ref.mix)


def test_render_exact_takes_the_lanes_and_gives_the_same_master():
    n_stems = 9
    mono = np.zeros(n_stems, bool)
    mono[[0, 5]] = True
    audio = _audio(n_stems, 3.0, mono, seed=5)
    params = _params(n_stems, seed=2, sends=True)
    for i in range(2):
        fast = R.render_exact(audio, mono, SR, params, index=i, target_lufs=-14.0, ceiling_dbtp=-1.0,
                              keep_stems=False, threads=2)
        ref = R.render_exact(audio, mono, SR, params, index=i, target_lufs=-14.0, ceiling_dbtp=-1.0,
                             keep_stems=True, threads=1)  # keeps the stems: the streams' path
        np.testing.assert_array_equal(fast.mix, ref.mix)
        assert fast.true_peak_dbtp == ref.true_peak_dbtp and fast.normalise_db == ref.normalise_db


def _with_cuts(params, cut_stems, key_stems):
    """``params`` with a dynamic cut on each of ``cut_stems`` keyed by ``key_stems`` (values not round; the
    threshold low enough that the noise keys cut)."""
    import dataclasses

    n_pop, n_stems = params.gain_db.shape
    on = np.zeros((n_pop, n_stems), bool)
    on[:, cut_stems] = True
    key = np.full((n_pop, n_stems), -1, np.int64)
    key[:, cut_stems] = key_stems
    return dataclasses.replace(params, unmask_depth_db=np.where(on, 7.5, 0.0), unmask_hz=np.full(on.shape, 1234.5),
                               unmask_q=np.full(on.shape, 1.3), unmask_attack_ms=np.full(on.shape, 4.0),
                               unmask_release_ms=np.full(on.shape, 90.0), unmask_key=key,
                               unmask_threshold_db=np.full(on.shape, -30.0))


def test_lanes_with_dynamic_cuts_are_the_streams_mix_bit_for_bit():
    """Cut stems (a mono one, one in each lane group) read their cut from the buffers the lanes are given: the
    mix is the per-stem strips' bit for bit, and the cut is at work (it differs from the uncut mix)."""
    n_stems = 11
    mono = np.zeros(n_stems, bool)
    mono[[0, 9]] = True
    audio = _audio(n_stems, 2.5, mono, seed=4)
    base = _params(n_stems, seed=5, sends=True)
    params = _with_cuts(base, [0, 3, 9], [1, 9, 2])
    for i in range(2):
        lanes, ref = _mixers(audio, mono, params, i, threads=2)
        assert lanes.cuts and np.any(ref.mix != 0.0)
        np.testing.assert_array_equal(lanes.mix, ref.mix)
        dry, _ = _mixers(audio, mono, base, i, threads=2)
        assert not np.allclose(dry.mix, lanes.mix)  # a guard: the cut changed the mix
        fast = R.render_exact(audio, mono, SR, params, index=i, target_lufs=-14.0, ceiling_dbtp=-1.0,
                              keep_stems=False, threads=2)
        slow = R.render_exact(audio, mono, SR, params, index=i, target_lufs=-14.0, ceiling_dbtp=-1.0,
                              keep_stems=True, threads=1)
        np.testing.assert_array_equal(fast.mix, slow.mix)
