"""Pan laws: constant power for mono sources, balance for stereo sources."""
from __future__ import annotations

import numpy as np

from evomix.errors import ParameterError


def pan_gains(pan, is_mono):
    """Left/right amplitude gains: constant power for mono sources, balance for stereo sources.

    Source: constant-power (sine/cosine) pan law, U. Zölzer (ed.), *DAFX: Digital Audio Effects*,
    2nd ed., Wiley 2011, ch. 5 (spatial effects; V. Pulkki et al.); D. Griesinger, "Stereo and
    surround panning in practice", AES 112th Convention, 2002.

    Mono:   ``theta = (pan + 1) pi / 4``, ``L = cos(theta)``, ``R = sin(theta)``, so
    ``L^2 + R^2 = 1`` everywhere and each side is -3.01 dB at the centre.
    Stereo (balance): ``L = min(1, sqrt(2) cos(theta))``, ``R = min(1, sqrt(2) sin(theta))``:
    unity on both sides at the centre, the far side fades out while the near side stays at 1.

    Parameters
    ----------
    pan : float or ndarray, broadcastable, in [-1, 1]
        -1 hard left, 0 centre, +1 hard right.
    is_mono : bool or ndarray of bool, broadcastable against ``pan``
        True where the source is mono (one channel duplicated to both sides).

    Returns
    -------
    gains : ndarray, shape (..., 2)
        Linear amplitude gains ``[left, right]``; ``...`` is the broadcast shape.

    Raises
    ------
    ParameterError
        ``pan`` outside [-1, 1] or not finite.

    Examples
    --------
    >>> np.round(pan_gains(0.0, True), 4)
    array([0.7071, 0.7071])
    >>> np.round(pan_gains(-1.0, False), 4)
    array([1., 0.])
    """
    pan = np.asarray(pan, dtype=float)
    if not np.all(np.isfinite(pan) & (np.abs(pan) <= 1.0)):
        raise ParameterError(f"pan must be in [-1, 1], got {pan!r}; clip it with np.clip(pan, -1, 1)")
    pan, is_mono = np.broadcast_arrays(pan, np.asarray(is_mono, dtype=bool))

    theta = (pan + 1.0) * (np.pi / 4.0)  # [-1, 1] -> [0, pi/2]
    const_power = np.stack([np.cos(theta), np.sin(theta)], axis=-1)  # (..., 2)
    balance = np.minimum(1.0, np.sqrt(2.0) * const_power)  # (..., 2), unity at centre
    return np.where(is_mono[..., None], const_power, balance)
