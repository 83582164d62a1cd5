"""Argument checks shared by the DSP kernels (each raises ParameterError naming the value)."""
from __future__ import annotations

import math

import numpy as np

from evomix.errors import ParameterError


def _require_positive(name, value):
    """Raise ParameterError unless every element of ``value`` is finite and > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # the common scalar case, without numpy calls
        if not (math.isfinite(value) and value > 0):
            raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
        return np.asarray(float(value))
    arr = np.asarray(value, dtype=float)
    if not (arr.size and np.isfinite(arr).all() and arr.min() > 0) and arr.size:
        raise ParameterError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def _require_signal(x, name="x"):
    """Return ``x`` as float array with at least (ch, samples) axes."""
    x = np.asarray(x, dtype=float)
    if x.ndim < 2 or x.shape[-1] == 0:
        raise ParameterError(
            f"{name} must have shape (..., ch, samples) with samples > 0, got shape {x.shape}; "
            "add a channel axis with x[None, :] for a mono signal"
        )
    return x
