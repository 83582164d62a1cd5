"""Finished masters wait in temporary files (evomix.io.spill): read back bit for bit, removed after."""
import gc
import os

import numpy as np

from evomix.io import spill


def test_a_spilled_array_reads_back_as_its_float32_values_and_its_file_goes_away(rng):
    x = rng.standard_normal((2, spill.SpilledArray.BLOCK * 2 + 17))  # blocks and a remainder
    s = spill.SpilledArray(x, np.float32)
    path = s._path
    assert path is not None and os.path.getsize(path) >= x.size * 4
    y = s.load()
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, x.astype(np.float32))
    np.testing.assert_array_equal(spill.materialise(s), y)
    del s
    gc.collect()
    assert not os.path.exists(path)


def test_without_a_writable_temp_folder_the_array_stays_in_memory(rng, monkeypatch, tmp_path):
    monkeypatch.setattr(spill.tempfile, "tempdir", str(tmp_path / "missing"))  # mkstemp fails: no such folder
    x = rng.standard_normal((2, 1000))
    s = spill.SpilledArray(x, np.float32)
    assert s._path is None
    np.testing.assert_array_equal(s.load(), x.astype(np.float32))
