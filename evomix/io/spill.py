"""Finished audio that waits for its export in a temporary file instead of the process's memory.

A mix run renders five or more alternatives (and the report's "before") long before it writes
them; at 16 stems x 210 s each master is 74 MB as float32. Held in memory they add up while the
next renders need room. :class:`SpilledArray` writes the array to a ``.npy`` file in the system's
temporary folder (``tempfile.gettempdir()``, ``$TMPDIR``) and reads it back, bit for bit, when the
export needs it; the file is removed when the object goes away (or at exit). The operating system
keeps recently written files in its page cache, which it can write out and reclaim under memory
pressure, unlike the process's own memory. If the file cannot be written (disk full, read-only
temp), the array simply stays in memory.
"""
from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np


class SpilledArray:
    """``array`` as ``dtype`` (default its own), kept in a temporary ``.npy`` file; :meth:`load`
    returns it. The conversion is written block by block (no converted copy in memory)."""

    BLOCK = 1 << 20  # samples per converted block

    def __init__(self, array: np.ndarray, dtype=None):
        dtype = np.dtype(array.dtype if dtype is None else dtype)
        self.shape, self.dtype = array.shape, dtype
        self._array = None
        self._path = None
        try:
            fd, path = tempfile.mkstemp(prefix="evomix-master-", suffix=".npy")
            weakref.finalize(self, _remove, path)
            with os.fdopen(fd, "wb") as f:
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": array.shape})
                rows = np.ascontiguousarray(array).reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
                for row in rows:  # C order: row after row
                    for a in range(0, row.shape[0], self.BLOCK):
                        f.write(row[a : a + self.BLOCK].astype(dtype).tobytes())
            self._path = path
        except OSError:
            self._array = array.astype(dtype, copy=False)  # no room on disk: keep it in memory

    def load(self) -> np.ndarray:
        """The array (read from its file, or the one held)."""
        if self._array is not None:
            return self._array
        return np.load(self._path, allow_pickle=False)


def materialise(a) -> np.ndarray:
    """``a`` itself if it is an array, else ``a.load()`` (a :class:`SpilledArray`)."""
    return a.load() if isinstance(a, SpilledArray) else a


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
