"""The session analysis (two passes on one thread pool, compiled kernels) equals the straightforward
definition it replaces, and does not depend on the number of threads."""
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import sosfilt

from evomix.core.meter import integrated_loudness, k_weighting_power
from evomix.engine.analysis import MASTER_DETECTOR_SUBSTEPS, STEM_REFERENCE_LUFS, TRIM_RANGE_DB, analyze_session
from evomix.engine.bands import _bin_weights, band_grid, band_sum, frame_spectra
from evomix.engine.dsp.pan import pan_gains
from evomix.engine.peaks import (
    DETECTOR_GROUP_BANDS,
    DETECTOR_WINDOW_S,
    PEAK_BLOCK_S,
    PEAK_CANDIDATES_SUM,
    PEAK_KERNEL,
    _kernels,
    _local_maxima,
    candidates_per_stem,
    search_block_maxima,
    search_filters,
)
from evomix.io.audio import Session
from tests.support import SR, song_stems


def _session(silence_s=(1.0, 2.5)):
    """The tiny synthetic song, its drums silent (exact zeros) over ``silence_s``: the filters
    ring out into the silence (the kernels' subnormal guards) and the song has quiet stretches."""
    stems = song_stems()
    rows = []
    for name, x in stems.items():
        x = np.broadcast_to(x, (2, x.shape[-1])).copy()
        if name == "drums":
            x[:, int(silence_s[0] * SR): int(silence_s[1] * SR)] = 0.0
        rows.append(x)
    names = tuple(stems)
    return Session(SR, names, ("drums", "bass", "keys", "vocal"), np.stack(rows).astype(np.float32),
                   np.array([stems[n].shape[0] == 1 for n in names]), tuple(Path(f"{n}.wav") for n in names))


# ---------------------------------------------------------------------------------------------
# The reference: the definitions, one stem and one numpy expression at a time
# ---------------------------------------------------------------------------------------------

def _ref_instants(x, grid, n):
    block = int(PEAK_BLOCK_S * grid.sr)
    filters = search_filters(grid.sr)
    per = max(1, n // (len(filters) + 1))
    envs = [np.abs(x).max(axis=0)] + [np.abs(sosfilt(f.astype(np.float32), x, axis=-1)).max(axis=0) for f in filters]
    found = [_local_maxima(e, per, block) for e in envs]
    # raw, high-passes 60 / 150 / 400 Hz, bands < 150, 150-1k, 1k-5k, > 5k Hz: the instants found
    # after the 400 Hz high-pass and in the two top bands bring their neighbours (+-1 sample)
    near = [found[r] + d for r in (3, 6, 7) for d in (-1, 1)]
    return np.clip(np.concatenate(found + near), 0, x.shape[-1] - 1)


def _ref_peak_values(x, inst):
    N = PEAK_KERNEL
    pad = np.zeros((2, x.shape[-1] + 2 * N), np.float32)
    pad[:, N: N + x.shape[-1]] = x
    offs = (inst + N // 2 + N)[:, None] - np.arange(N)[None, :]
    return np.stack([(pad[c][offs] @ _kernels(band_grid(SR))).T for c in range(2)])


def _ref_detector(x, inst, grid, group_bands=DETECTOR_GROUP_BANDS, window_s=DETECTOR_WINDOW_S):
    L = int(round(window_s * grid.sr))
    n_fft = 1 << (L - 1).bit_length()
    freqs = np.fft.rfftfreq(n_fft, 1.0 / grid.sr)
    group = np.clip(np.searchsorted(grid.edges_hz, freqs) - 1, 0, grid.n_bands - 1) // group_bands
    w = np.full(freqs.size, 2.0)
    w[0] = w[-1] = 1.0
    onehot = (group[:, None] == np.arange(group.max() + 1)[None, :]) * (w / (n_fft * L))[:, None]
    pad = np.zeros((2, x.shape[-1] + L))
    pad[:, L // 2: L // 2 + x.shape[-1]] = x
    idx = inst[:, None] + np.arange(L)[None, :]
    return sum(((np.abs(np.fft.rfft(pad[c][idx], n=n_fft, axis=-1)) ** 2) @ onehot).T for c in range(2))


def _reference(session):
    sr, grid = session.sr, band_grid(session.sr)
    n_stems, n = session.n_stems, session.n_samples
    centre = pan_gains(np.zeros(n_stems), session.is_mono)
    freqs = np.fft.rfftfreq(grid.n_fft, 1.0 / sr)
    fine_of_bin = np.searchsorted(np.sqrt(grid.grid_hz[:-1] * grid.grid_hz[1:]), freqs)
    keep = grid.bin_band >= 0
    out = {k: [] for k in ("band_power", "cross_power", "grid_weight", "k_band", "lufs")}
    xs = [session.stem(s) * centre[s][:, None].astype(np.float32) for s in range(n_stems)]
    instants = []
    for x in xs:
        spec = frame_spectra(x, grid)
        p = np.abs(spec) ** 2 * _bin_weights(grid)
        out["band_power"].append(np.swapaxes(band_sum(p, grid), -1, -2))
        out["cross_power"].append(band_sum((spec[0] * np.conj(spec[1])).real * _bin_weights(grid), grid).T)
        lts = p.sum(axis=(0, 1)).astype(float) + 1e-20
        fine = np.bincount(fine_of_bin[keep], lts[keep], minlength=grid.grid_hz.size)
        band_of_fine = np.arange(grid.grid_hz.size) // (grid.grid_hz.size // grid.n_bands)
        gw = fine[:, None] * (band_of_fine[:, None] == np.arange(grid.n_bands)[None, :])
        out["grid_weight"].append(gw / np.maximum(gw.sum(axis=0), 1e-30))
        out["k_band"].append(band_sum(lts * k_weighting_power(freqs, sr), grid) / band_sum(lts, grid))
        out["lufs"].append(float(integrated_loudness(x, sr)))
        instants.append(_ref_instants(x, grid, candidates_per_stem(n_stems)))
    total = np.sum([x.astype(float) for x in xs], axis=0)
    instants.append(_local_maxima(np.abs(total).max(axis=0), PEAK_CANDIDATES_SUM, int(PEAK_BLOCK_S * sr)))
    out = {k: np.array(v) for k, v in out.items()}
    out["trim_db"] = np.clip(STEM_REFERENCE_LUFS - out["lufs"], *TRIM_RANGE_DB)
    inst = out["peak_instants"] = np.unique(np.concatenate(instants))
    R = MASTER_DETECTOR_SUBSTEPS
    sub_s = (np.arange(grid.n_frames(n) * R) / R - (R - 1) / (2 * R)) * grid.hop  # sub-step centres, samples
    sub_inst = np.clip(sub_s, 0, n - 1).round().astype(int)
    unpan = (centre**2).sum(axis=1)
    out["peak_values"] = np.array([_ref_peak_values(x, inst) for x in xs])
    out["peak_detector"] = np.array([_ref_detector(x, inst, grid) / u for x, u in zip(xs, unpan)])
    out["sub_power"] = np.array([_ref_detector(x, sub_inst, grid, 1, grid.hop_s / R) / u for x, u in zip(xs, unpan)])
    return out


@pytest.fixture(scope="module")
def analysed():
    session = _session()
    return session, analyze_session(session), _reference(session)


def _close(ours, ref, rtol):
    """Equal to ``rtol`` of each value, or of the array's largest value for values near 0."""
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_analysis_equals_the_reference(analysed):
    _, a, ref = analysed
    _close(a.band_power, ref["band_power"], 1e-5)
    _close(a.cross_power, ref["cross_power"], 1e-5)
    _close(a.grid_weight, ref["grid_weight"], 1e-5)
    _close(a.k_band, ref["k_band"], 1e-5)
    np.testing.assert_allclose(a.stem_lufs, ref["lufs"], atol=1e-6)
    np.testing.assert_allclose(a.trim_db, ref["trim_db"], atol=1e-6)


def test_peak_model_equals_the_reference(analysed):
    session, a, ref = analysed
    shared, ours, theirs = np.intersect1d(a.peak_instants, ref["peak_instants"], return_indices=True)
    # the filters' arithmetic is sosfilt's: the instants are the same (the search's subnormal
    # guard only changes blocks some 300 dB down, in the silence, where any instant will do)
    assert shared.size >= 0.95 * max(a.peak_instants.size, ref["peak_instants"].size)
    drums = np.abs(session.stem(0)).max(axis=0)
    for t in np.setxor1d(a.peak_instants, ref["peak_instants"]):
        assert drums[max(t - 1000, 0): t + 1000].max() == 0.0, t  # only in the drums' silences
    for name in ("peak_values", "peak_detector"):
        _close(getattr(a, name)[..., ours], ref[name][..., theirs], 1e-5)
    _close(a.sub_power, ref["sub_power"], 1e-5)


def test_analysis_does_not_depend_on_the_threads(analysed):
    session, _, _ = analysed
    one, three = analyze_session(session, threads=1), analyze_session(session, threads=3)
    for name in ("band_power", "cross_power", "spread_power", "grid_weight", "k_band", "trim_db", "stem_lufs",
                 "peak_values", "peak_instants", "peak_detector", "sub_power"):
        np.testing.assert_array_equal(getattr(one, name), getattr(three, name), err_msg=name)


def test_progress_counts_both_passes(analysed):
    session, _, _ = analysed
    for threads in (1, 2):
        calls = []
        analyze_session(session, threads=threads, progress=lambda done, total, calls=calls: calls.append((done, total)))
        n = 2 * session.n_stems
        assert calls == [(i, n) for i in range(1, n + 1)]


def test_a_failing_stem_raises_its_own_error(analysed):
    session, _, _ = analysed

    class Broken(Session):
        def stem(self, i):
            if i == 1:
                raise OSError("stem 1 unreadable")
            return super().stem(i)

    broken = Broken(session.sr, session.names, session.roles, session.audio, session.is_mono, session.paths)
    for threads in (1, 3):
        with pytest.raises(OSError, match="stem 1 unreadable"):
            analyze_session(broken, threads=threads)


def test_search_block_maxima_are_the_filtered_envelopes(rng):
    x = (rng.standard_normal((2, SR)) * 0.1).astype(np.float32)
    x[:, SR // 4: SR // 2] = 0.0  # a silence the filters ring out into
    block = int(PEAK_BLOCK_S * SR)
    nb = SR // block
    peak, arg = search_block_maxima(x, SR)
    for row, sos in enumerate([None] + search_filters(SR)):
        y = x if sos is None else sosfilt(sos.astype(np.float32), x, axis=-1)
        env = np.abs(y).max(axis=0)[: nb * block].reshape(nb, block)
        loud = env.max(axis=1) > 1e-25  # below, the states are set to 0 (no subnormal arithmetic)
        np.testing.assert_array_equal(peak[row][loud], env.max(axis=1)[loud])
        np.testing.assert_array_equal(arg[row][loud], (env.argmax(axis=1) + np.arange(nb) * block)[loud])
        assert np.all(peak[row][~loud] < 1e-25)
