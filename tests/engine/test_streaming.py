"""A session too large for memory streams its stems from disk and gives the same results."""
import numpy as np

from evomix.engine.analysis import analyze_session
from evomix.engine.render import features_from_render, render_exact
from evomix.io.audio import load_session
from evomix.search.genome import GeneTable
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile


def test_streaming_session_matches_in_memory(stem_dir):
    paths = sorted(stem_dir.glob("*.wav"))
    mem = load_session(paths, keep_audio=True)
    disk = load_session(paths, keep_audio=False)
    assert mem.audio is not None and disk.audio is None
    assert disk.n_samples == mem.n_samples and disk.n_stems == mem.n_stems
    np.testing.assert_array_equal(disk.stem(1), mem.stem(1))
    a_mem, a_disk = analyze_session(mem), analyze_session(disk)
    np.testing.assert_allclose(a_disk.band_power, a_mem.band_power, rtol=1e-6)
    np.testing.assert_allclose(a_disk.peak_values, a_mem.peak_values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a_disk.trim_db, a_mem.trim_db)
    table = GeneTable(mem.n_stems)
    params = table.decode(table.initial_population(2, np.random.default_rng(3), spread=0.3), a_mem.trim_db)
    target = Target(load_profile("pop"))
    r_mem = render_exact(mem, mem.is_mono, mem.sr, params, index=1, target_lufs=-14, ceiling_dbtp=-1, grid=a_mem.grid)
    r_disk = render_exact(disk, disk.is_mono, disk.sr, params, index=1, target_lufs=-14, ceiling_dbtp=-1,
                          grid=a_disk.grid)
    assert r_mem.stem_power is not None and r_disk.stem_power is not None  # scored the same way
    np.testing.assert_allclose(r_disk.mix, r_mem.mix, atol=1e-9)
    F_mem = evaluate(features_from_render(r_mem, a_mem.grid, a_mem.roles), target, OBJECTIVE_NAMES)
    F_disk = evaluate(features_from_render(r_disk, a_disk.grid, a_disk.roles), target, OBJECTIVE_NAMES)
    np.testing.assert_allclose(F_disk, F_mem, rtol=1e-4, atol=1e-6)
