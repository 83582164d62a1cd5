"""Which stem keys which stem's dynamic cut, and how loud a key has to be (issue 22, item 2).

A stem's dynamic cut (``engine.dsp.unmask``) deepens only while its *key*, another stem, is loud
in the cut's band: the lead vocal over the guitars, keys, pads and synths, the kick over the bass
(the two moves an engineer reaches for first; iZotope Neutron's Unmask and Wavesfactory
Trackspacer are set up the same way). The defaults come from the stems' roles
(``evomix.io.audio.ROLES``, :data:`KEYED_BY_ROLE`); ``--key STEM=KEY`` (repeatable) overrides one
stem's key and ``--key STEM=none`` takes it away.

The key's signal (a choice, the same in both tiers): the key stem after its fixed trim and before
any of its own processing (EQ, compressor, fader, pan, its own cut). So a key never depends on
another candidate setting, a stem can key a stem that keys it back without a cycle, and the exact
tier reads it straight from the session's audio.

The threshold (the same number in both tiers, stored in the params JSON as
``stems.NAME.unmask_threshold_db`` like ``trim_db``): from the analysis, the key's *loud level* in
the cut's band, ``10 log10(sum_b |H_BP(f_b)|^2 P90_b)``, where ``P90_b`` is the 90th percentile
over the song's frames of the trimmed mono key's power in analysis band ``b`` and ``|H_BP|^2`` the
RBJ band-pass's power response at the cut's frequency and Q averaged over the band (the fast tier's
detector weighting, ``unmask.key_band_level_db``), minus ``KEY_THRESHOLD_BELOW_DB`` (12 dB, the
activity law's ``RANGE_DB``): the cut starts 12 dB under the key's loud level and is at full depth
there. A sum of per-band percentiles is not the percentile of the band-passed level; it is a
defined, cheap statistic of the key, computed once per stem.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evomix.engine.dsp.dynamics import LEVEL_FLOOR_DB
from evomix.engine.dsp.unmask import _band_mean_power, _band_points, bandpass_sos
from evomix.errors import ParameterError
from evomix.search.genome import UNMASK_NO_KEY

__all__ = ["KEYED_BY_ROLE", "KEY_PERCENTILE", "KEY_THRESHOLD_BELOW_DB", "NONE", "KeyMap", "parse_keys",
           "resolve_keys", "key_map", "key_loud_power"]

#: Each keyed role and the roles that key it, in order of preference (the first stem found with the
#: first role listed keys every stem of the keyed role).
KEYED_BY_ROLE: dict[str, tuple[str, ...]] = {
    "guitar": ("vocal",), "keys": ("vocal",), "piano": ("vocal",), "pad": ("vocal",), "synth": ("vocal",),
    "bass": ("kick",),
}
KEY_PERCENTILE = 90.0  # the key's loud level: this percentile of its frames' band powers
KEY_THRESHOLD_BELOW_DB = 12.0  # dB: the cut's threshold under the key's loud level (= unmask.RANGE_DB)
NONE = "none"  # --key STEM=none: no key, the stem is never cut


def parse_keys(entries: Sequence[str] | None, *, option: str = "--key") -> dict[str, str | None]:
    """``--key`` entries (``"bass=kick"``, ``"guitar=none"``) as ``{stem: key or None}``.

    Syntax only (the stems are checked by :func:`resolve_keys` once the session is loaded).

    Raises
    ------
    ParameterError
        A malformed entry, an empty name, or a stem given two different keys; the message names
        the option and the entry.

    Examples
    --------
    >>> parse_keys(["bass=kick", "guitar=none"])
    {'bass': 'kick', 'guitar': None}
    """
    out: dict[str, str | None] = {}
    for entry in entries or ():
        stem, sep, key = str(entry).partition("=")
        stem, key = stem.strip(), key.strip()
        if not sep or not stem or not key or "=" in key:
            raise ParameterError(f"{option} '{entry}': expected STEM=KEY (a stem name, then the stem that keys its "
                                 f"cut) or STEM={NONE}")
        value = None if key.lower() == NONE else key
        if stem in out and out[stem] != value:
            raise ParameterError(f"{option} '{entry}': {stem} already has the key {out[stem] or NONE}; "
                                 "give one key per stem")
        out[stem] = value
    return out


def resolve_keys(names: Sequence[str], roles: Sequence[str], overrides: Mapping[str, str | None] | None = None, *,
                 option: str = "--key") -> np.ndarray:
    """Each stem's key as an index into ``names`` (``UNMASK_NO_KEY``: none): the role defaults
    (:data:`KEYED_BY_ROLE`), then ``overrides`` (:func:`parse_keys`).

    Raises
    ------
    ParameterError
        An override naming a stem that is not in the session, or a stem keyed by itself.

    Examples
    --------
    >>> resolve_keys(["vox", "gtr", "kick", "bass"], ["vocal", "guitar", "kick", "bass"]).tolist()
    [-1, 0, -1, 2]
    """
    names = list(names)
    key = np.full(len(names), UNMASK_NO_KEY, dtype=np.int64)
    for s, role in enumerate(roles):
        for key_role in KEYED_BY_ROLE.get(role, ()):
            found = [k for k, r in enumerate(roles) if r == key_role and k != s]
            if found:
                key[s] = found[0]
                break
    for stem, k in (overrides or {}).items():
        if stem not in names:
            raise ParameterError(f"{option} '{stem}={k or NONE}': no stem named '{stem}'; stems are {', '.join(names)}")
        if k is None:
            key[names.index(stem)] = UNMASK_NO_KEY
            continue
        if k not in names:
            raise ParameterError(f"{option} '{stem}={k}': no stem named '{k}' to key {stem}'s cut; "
                                 f"stems are {', '.join(names)}")
        if k == stem:
            raise ParameterError(f"{option} '{stem}={k}': a stem cannot key its own cut; name another stem or {NONE}")
        key[names.index(stem)] = names.index(k)
    return key


def key_loud_power(analysis) -> np.ndarray:
    """(stems, B) each stem's loud band power as a key: the ``KEY_PERCENTILE`` percentile over its
    frames of the trimmed mono stem's power per band (``Analysis.key_power`` times the trim)."""
    trim_pow = 10.0 ** (np.asarray(analysis.trim_db, dtype=float) / 10.0)  # (s,)
    loud = np.percentile(analysis.key_power, KEY_PERCENTILE, axis=-1)  # (s, B, T) -> (s, B)
    return loud * trim_pow[:, None]


@dataclass(frozen=True)
class KeyMap:
    """The keys of a session, for decoding (``GeneTable.with_keys``).

    key_index : (stems,) int, each stem's key (``UNMASK_NO_KEY``: none).
    key_loud : (stems, B) float, each stem's KEY's loud band power (:func:`key_loud_power` of the key), 0
        for a stem without a key.
    points_hz : (B, S) float, the analysis bands' fine grid (the band-pass is averaged over it).
    sr : int, Hz.
    """

    key_index: np.ndarray
    key_loud: np.ndarray
    points_hz: np.ndarray
    sr: int

    def decode(self, n_pop: int, freq_hz: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(unmask_key, unmask_threshold_db)``, each (pop, stems), for candidates whose cuts sit at
        ``freq_hz`` with ``q`` (pop, stems): the key's loud level in the cut's band (module docstring)
        minus ``KEY_THRESHOLD_BELOW_DB``; 0 dB for a stem without a key."""
        n_stems = self.key_index.size
        key = np.broadcast_to(self.key_index[None, :], (n_pop, n_stems)).copy()
        threshold = np.zeros((n_pop, n_stems))
        keyed = np.flatnonzero(self.key_index >= 0)
        if keyed.size:
            f = np.asarray(freq_hz, dtype=float)[:, keyed]  # (p, k)
            weight = _band_mean_power(bandpass_sos(f, np.asarray(q, dtype=float)[:, keyed], self.sr),
                                      self.points_hz, self.sr)  # (p, k, B)
            loud = np.einsum("pkb,kb->pk", weight, self.key_loud[keyed])  # (p, k) band-passed loud power
            loud_db = 10.0 * np.log10(np.maximum(loud, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))
            threshold[:, keyed] = loud_db - KEY_THRESHOLD_BELOW_DB
        return key, threshold


def key_map(analysis, key_index: np.ndarray) -> KeyMap:
    """The :class:`KeyMap` of ``analysis`` with each stem keyed by ``key_index`` (:func:`resolve_keys`)."""
    key_index = np.asarray(key_index, dtype=np.int64)
    loud = key_loud_power(analysis)  # (s, B)
    key_loud = np.where((key_index >= 0)[:, None], loud[np.maximum(key_index, 0)], 0.0)  # (s, B)
    return KeyMap(key_index=key_index, key_loud=key_loud, points_hz=_band_points(analysis.grid), sr=int(analysis.sr))
