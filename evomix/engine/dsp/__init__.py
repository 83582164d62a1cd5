"""Pure DSP kernels shared by the fast (frame-rate, band-domain) and exact (sample-accurate) tiers.

Every function is stateless and vectorized over leading (population) axes: parameters such as
``gain_db`` of shape ``(pop, stems)`` broadcast against each other, time is on the last axis and
channels on the one before it (``(..., ch, samples)``). No function loops in Python over
candidates. The Python loops left are the time recursion of :func:`smooth_gain_db` (over all
leading axes at once), a loop over channels in :func:`rms_level_db` and over 32768-sample blocks
in the limiter's oversampled envelope (to bound memory).

One topic per module; this package re-exports their public names (``from evomix.engine.dsp
import compressor_gain`` works as it always did):

filters   rbj_sos, sos_power_response, cascade_power_response, sos_response, cascade_response
dynamics  compressor_static_db (compressor_static_rows: unchecked rows), smooth_gain_db,
          rms_level_db, compressor_gain, compress
limiter   true_peak_envelope, limiter_gain, true_peak_limit, true_peak_db
pan       pan_gains
"""
from evomix.engine.dsp.dynamics import (
    LEVEL_FLOOR_DB,
    compress,
    compressor_gain,
    compressor_static_db,
    compressor_static_rows,
    rms_level_db,
    smooth_gain_db,
)
from evomix.engine.dsp.filters import (
    FILTER_KINDS,
    MAX_FREQ_FRACTION,
    cascade_power_response,
    cascade_response,
    rbj_sos,
    sos_power_response,
    sos_response,
)
from evomix.engine.dsp.limiter import (
    LIMITER_RELEASE_MS,
    TRUE_PEAK_FLOOR_DB,
    limiter_gain,
    true_peak_db,
    true_peak_envelope,
    true_peak_limit,
)
from evomix.engine.dsp.pan import pan_gains

__all__ = [
    # filters
    "rbj_sos", "sos_power_response", "cascade_power_response", "sos_response", "cascade_response",
    "FILTER_KINDS", "MAX_FREQ_FRACTION",
    # pan
    "pan_gains",
    # dynamics
    "compressor_static_db", "compressor_static_rows", "smooth_gain_db", "rms_level_db", "compressor_gain", "compress",
    "LEVEL_FLOOR_DB",
    # limiter
    "true_peak_envelope", "limiter_gain", "true_peak_limit", "true_peak_db", "LIMITER_RELEASE_MS", "TRUE_PEAK_FLOOR_DB",
]
