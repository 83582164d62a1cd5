"""The mix's equalisers as biquad cascades, for every candidate at once (both tiers use these).

Each stem: high-pass (``highpass_hz``, Q 0.707), low shelf, peaking EQ and high shelf, in that
order; the master bus: a low shelf at ``MASTER_LOW_SHELF_HZ`` and a high shelf at
``MASTER_HIGH_SHELF_HZ``. Coefficients from the RBJ Audio EQ Cookbook (``engine.dsp.filters.rbj_sos``).
"""
from __future__ import annotations

import numpy as np

from evomix.engine.dsp.filters import rbj_sos
from evomix.search.genome import MASTER_HIGH_SHELF_HZ, MASTER_LOW_SHELF_HZ, SHELF_Q, Params


def stem_eq_sos(params: Params, sr: int, *, check: bool = True) -> np.ndarray:
    """Each stem's four biquads as sos rows -> (pop, stems, 4, 6) (``check``: see ``rbj_sos``)."""
    return np.stack([
        rbj_sos("highpass", params.highpass_hz, 0.0, SHELF_Q, sr, check=check),
        rbj_sos("lowshelf", params.low_shelf_hz, params.low_shelf_db, SHELF_Q, sr, check=check),
        rbj_sos("peak", params.peak_hz, params.peak_db, params.peak_q, sr, check=check),
        rbj_sos("highshelf", params.high_shelf_hz, params.high_shelf_db, SHELF_Q, sr, check=check),
    ], axis=-2)


def master_eq_sos(params: Params, sr: int, *, check: bool = True) -> np.ndarray:
    """The master's two shelves as sos rows -> (pop, 2, 6) (``check``: see ``rbj_sos``)."""
    return np.stack([
        rbj_sos("lowshelf", MASTER_LOW_SHELF_HZ, params.master_low_shelf_db, SHELF_Q, sr, check=check),
        rbj_sos("highshelf", MASTER_HIGH_SHELF_HZ, params.master_high_shelf_db, SHELF_Q, sr, check=check),
    ], axis=-2)
