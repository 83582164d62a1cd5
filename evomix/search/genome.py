"""The parameter space: a declarative gene table and the decoder from [0, 1] genomes to real units.

A genome is a flat vector in [0, 1] (DEAP works on it unchanged); ``GeneTable`` says which gene
means what. Per stem the genes are, in order, ``STEM_GENES``; the master chain adds
``MASTER_GENES``. Ranges can be edited or locked (``low == high``) without touching code.

Layout of a genome: ``[stem0 genes..., stem1 genes..., ..., master genes...]``.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from evomix.errors import ParameterError


@dataclass(frozen=True)
class Gene:
    """One gene: name (with unit suffix), low/high in real units, and the mapping scale.

    ``scale`` is ``"linear"`` or ``"log"`` (geometric between low and high, both > 0).
    ``neutral`` is the value that leaves the sound unchanged (used to seed the population).
    ``step``: the smallest change of this setting that counts as a different setting (two mixes
    whose every setting is within a step of the other's are near-duplicates,
    :func:`within_a_step`): real units for a linear gene, a factor (> 1) for a log gene; None is
    ``STEP_DEFAULT`` of the span. ``audible_with``: the gene without which this one does nothing
    (a peak's frequency while its gain is 0 dB, a compressor's threshold at ratio 1), or "".
    """

    name: str
    low: float
    high: float
    scale: str = "linear"
    neutral: float = 0.0
    unit: str = ""
    step: float | None = None
    audible_with: str = ""

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Map u in [0, 1] to real units."""
        u = np.clip(u, 0.0, 1.0)
        if self.scale == "log":
            return self.low * (self.high / self.low) ** u
        return self.low + (self.high - self.low) * u

    def encode(self, value: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`decode` (clipped to the range); 0.5 for a locked gene."""
        value = np.clip(np.asarray(value, dtype=float), min(self.low, self.high), max(self.low, self.high))
        if self.high == self.low:
            return np.full_like(value, 0.5)
        if self.scale == "log":
            return np.log(value / self.low) / np.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)

    def apart(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance between values ``a`` and ``b`` in steps (``step``), elementwise, >= 0."""
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if self.scale == "log":
            return np.abs(np.log(a / b)) / np.log(self.step or (self.high / self.low) ** STEP_DEFAULT)
        return np.abs(a - b) / (self.step or STEP_DEFAULT * abs(self.high - self.low))


STEP_DEFAULT = 0.05  # of a gene's span (or of its log span): a step where a gene names none
THIRD_OCTAVE = 2.0 ** (1.0 / 3.0)


# Steps (``Gene.step``, a choice): 1 dB for a stem's level or EQ gain (about the level difference a
# listener notices in music, the same 1 dB as ``evomix.choose.describe.JND``), 0.5 dB for the
# master's shelves (they move the whole mix), 0.1 of pan, a third of an octave for a frequency or a
# Q (about a critical band), 2 dB of threshold, and a 25 % ratio or 50 % time constant.
# Per-stem genes. Signal flow per stem: trim (fixed by the analysis, brings the stem to a common
# reference loudness) -> EQ -> compressor -> fader ``gain_db`` -> pan. So 0 dB of ``gain_db`` means
# "this stem at the common reference loudness", and compressor thresholds mean the same for every stem.
STEM_GENES: tuple[Gene, ...] = (
    Gene("gain_db", -24.0, 12.0, neutral=0.0, unit="dB", step=1.0),
    Gene("pan", -1.0, 1.0, neutral=0.0, step=0.1),
    Gene("highpass_hz", 20.0, 400.0, "log", neutral=20.0, unit="Hz", step=THIRD_OCTAVE),
    Gene("low_shelf_hz", 60.0, 400.0, "log", neutral=150.0, unit="Hz", step=THIRD_OCTAVE,
         audible_with="low_shelf_db"),
    Gene("low_shelf_db", -12.0, 12.0, neutral=0.0, unit="dB", step=1.0),
    Gene("peak_hz", 120.0, 10000.0, "log", neutral=1000.0, unit="Hz", step=THIRD_OCTAVE, audible_with="peak_db"),
    Gene("peak_db", -12.0, 12.0, neutral=0.0, unit="dB", step=1.0),
    Gene("peak_q", 0.5, 5.0, "log", neutral=1.0, step=THIRD_OCTAVE, audible_with="peak_db"),
    Gene("high_shelf_hz", 2000.0, 12000.0, "log", neutral=6000.0, unit="Hz", step=THIRD_OCTAVE,
         audible_with="high_shelf_db"),
    Gene("high_shelf_db", -12.0, 12.0, neutral=0.0, unit="dB", step=1.0),
    Gene("comp_threshold_db", -40.0, 0.0, neutral=0.0, unit="dB", step=2.0, audible_with="comp_ratio"),
    Gene("comp_ratio", 1.0, 10.0, "log", neutral=1.0, step=1.25),
    Gene("comp_attack_ms", 1.0, 100.0, "log", neutral=10.0, unit="ms", step=1.5, audible_with="comp_ratio"),
    Gene("comp_release_ms", 30.0, 1000.0, "log", neutral=150.0, unit="ms", step=1.5,
         audible_with="comp_ratio"),
)

MASTER_GENES: tuple[Gene, ...] = (
    Gene("master_low_shelf_db", -6.0, 6.0, neutral=0.0, unit="dB", step=0.5),
    Gene("master_high_shelf_db", -6.0, 6.0, neutral=0.0, unit="dB", step=0.5),
    Gene("master_comp_threshold_db", -30.0, 0.0, neutral=0.0, unit="dB", step=2.0,
         audible_with="master_comp_ratio"),
    Gene("master_comp_ratio", 1.0, 4.0, "log", neutral=1.0, step=1.15),
)

# The reverb bus (issue 22): a send per stem (post-fader, post-pan) into one stereo return
# (``engine.dsp.reverb``, a feedback delay network after Jot & Chaigne 1991) that joins the mix bus
# before the master chain. These genes are *optional* in the table: a bare ``GeneTable`` leaves them
# out (every candidate then has its send off, ``REVERB_SEND_OFF_DB``, exactly zero send, and the
# return at its neutral settings); a lock or range that names one of them adds that gene
# (:meth:`GeneTable.with_gene`), locked at its default in every stem and then edited. A run adds
# them through its default ranges (``search.constraints.default_constraints``: each role's send
# range, the genre's decay range), which the run's own locks and ranges override. Steps: 1 dB of
# send, a 25 % decay, 10 ms of pre-delay, 0.1 of damping, a third of an octave of return high-pass.
REVERB_SEND_OFF_DB = -40.0  # dB: a send at (or below) this is off, no signal at all (not 10^(-40/20))
REVERB_SEED = 0  # the return's fixed seed (delay-line lengths, ``engine.dsp.reverb.line_delays``): not searched
REVERB_STEM_GENES: tuple[Gene, ...] = (
    Gene("reverb_send_db", REVERB_SEND_OFF_DB, 0.0, neutral=REVERB_SEND_OFF_DB, unit="dB", step=1.0),
)
REVERB_MASTER_GENES: tuple[Gene, ...] = (
    Gene("reverb_decay_s", 0.3, 4.0, "log", neutral=1.5, unit="s", step=1.25),
    Gene("reverb_predelay_ms", 0.0, 80.0, neutral=20.0, unit="ms", step=10.0),
    Gene("reverb_damping", 0.2, 1.0, neutral=0.5, step=0.1),
    Gene("reverb_highpass_hz", 50.0, 600.0, "log", neutral=150.0, unit="Hz", step=THIRD_OCTAVE),
)
# Dynamic unmasking (issue 22, item 2): a sidechain-keyed dynamic EQ cut per stem
# (``engine.dsp.unmask``: an RBJ peaking cut at ``unmask_hz``, width ``unmask_q``, that deepens to
# ``-unmask_depth_db`` only while the stem's key, another stem chosen by role or ``--key``
# (``search.keys``), is loud in that band). Optional like the reverb genes: a bare table leaves them
# out and every candidate's depth is 0 dB, exactly no processing (the renders are bit for bit those
# without the genes). Ranges: depth 0..12 dB (``unmask.MAX_DEPTH_DB``: Trackspacer and Neutron's
# Unmask work within about this much; deeper cuts hollow a part out), the cut's frequency over the
# DSP block's ``FREQ_RANGE_HZ`` (60 Hz-12 kHz: the kick/bass overlap up to a vocal's sibilance), Q
# 0.5..4 (an octave-and-a-half-wide cut to a third-octave notch), attack 1..100 ms and release
# 20..1000 ms (a compressor's usual spans: the duck follows a kick's 10 ms onset, or breathes with a
# phrase). Steps as for the EQ and compressor genes: 1 dB, a third of an octave, 50 % of a time constant.
UNMASK_FREQ_RANGE_HZ = (60.0, 12000.0)  # as engine.dsp.unmask.FREQ_RANGE_HZ (tests/test_unmask_search.py checks)
UNMASK_MAX_DEPTH_DB = 12.0  # as engine.dsp.unmask.MAX_DEPTH_DB
UNMASK_NO_KEY = -1  # ``Params.unmask_key`` of a stem that nothing keys
UNMASK_STEM_GENES: tuple[Gene, ...] = (
    Gene("unmask_depth_db", 0.0, UNMASK_MAX_DEPTH_DB, neutral=0.0, unit="dB", step=1.0),
    Gene("unmask_hz", *UNMASK_FREQ_RANGE_HZ, "log", neutral=2000.0, unit="Hz", step=THIRD_OCTAVE,
         audible_with="unmask_depth_db"),
    Gene("unmask_q", 0.5, 4.0, "log", neutral=1.0, step=THIRD_OCTAVE, audible_with="unmask_depth_db"),
    Gene("unmask_attack_ms", 1.0, 100.0, "log", neutral=10.0, unit="ms", step=1.5, audible_with="unmask_depth_db"),
    Gene("unmask_release_ms", 20.0, 1000.0, "log", neutral=150.0, unit="ms", step=1.5,
         audible_with="unmask_depth_db"),
)
#: The optional genes (left out of a bare table): the reverb bus's and the dynamic cut's.
OPTIONAL_STEM_GENES: tuple[Gene, ...] = REVERB_STEM_GENES + UNMASK_STEM_GENES
OPTIONAL_MASTER_GENES: tuple[Gene, ...] = REVERB_MASTER_GENES
#: Every stem gene (searched by default, then optional) and every master gene, with their full ranges.
ALL_STEM_GENES: tuple[Gene, ...] = STEM_GENES + OPTIONAL_STEM_GENES
ALL_MASTER_GENES: tuple[Gene, ...] = MASTER_GENES + OPTIONAL_MASTER_GENES
#: An optional gene's value in a table that leaves it out: the send off, the return neutral, the cut off.
OPTIONAL_DEFAULTS: dict[str, float] = {g.name: g.neutral for g in OPTIONAL_STEM_GENES + OPTIONAL_MASTER_GENES}


def within_a_step(params: Params, i: int, j: int) -> bool:
    """Whether candidates ``i`` and ``j`` of ``params`` have every setting within one ``Gene.step``
    of each other (near-duplicates by their settings). A gene whose ``audible_with`` gene is within
    a step of its neutral value in both (a peak's frequency while both peaks are flat) is not compared."""
    def apart(gene: Gene, s: int | None) -> float:
        a, b = (np.asarray(getattr(params, gene.name))[k] for k in (i, j))
        a, b = (a, b) if s is None else (a[s], b[s])
        if gene.audible_with:
            with_gene = by_name[gene.audible_with]
            w = [np.asarray(getattr(params, with_gene.name))[k] for k in (i, j)]
            w = w if s is None else [x[s] for x in w]
            if all(with_gene.apart(x, with_gene.neutral) < 1.0 for x in w):
                return 0.0
        return float(gene.apart(a, b))

    by_name = {g.name: g for g in ALL_STEM_GENES + ALL_MASTER_GENES}
    return (all(apart(g, s) <= 1.0 for g in ALL_STEM_GENES for s in range(params.n_stems))
            and all(apart(g, None) <= 1.0 for g in ALL_MASTER_GENES))


# Fixed settings of the master chain (not searched).
MASTER_LOW_SHELF_HZ = 100.0
MASTER_HIGH_SHELF_HZ = 8000.0
MASTER_COMP_ATTACK_MS = 20.0
MASTER_COMP_RELEASE_MS = 200.0
KNEE_DB = 6.0
SHELF_Q = 0.707
TRIM_RANGE_DB = (-30.0, 40.0)  # dB: the analysis' fixed input gain is clipped to this (``engine.analysis``)

# Where each gene sits in the params JSON (``Params.to_dict``): a stem gene's path below
# ``stems.NAME``, a master gene's path below ``master``. Command-line names are ``STEM.PATH`` and
# ``master.PATH`` (``evomix.search.constraints``).
STEM_PARAM_PATHS: dict[str, str] = {
    "gain_db": "gain_db", "pan": "pan",
    "highpass_hz": "eq.highpass_hz", "low_shelf_hz": "eq.low_shelf_hz", "low_shelf_db": "eq.low_shelf_db",
    "peak_hz": "eq.peak_hz", "peak_db": "eq.peak_db", "peak_q": "eq.peak_q",
    "high_shelf_hz": "eq.high_shelf_hz", "high_shelf_db": "eq.high_shelf_db",
    "comp_threshold_db": "comp.threshold_db", "comp_ratio": "comp.ratio",
    "comp_attack_ms": "comp.attack_ms", "comp_release_ms": "comp.release_ms",
    "reverb_send_db": "reverb_send_db",
    "unmask_depth_db": "unmask_depth_db", "unmask_hz": "unmask_hz", "unmask_q": "unmask_q",
    "unmask_attack_ms": "unmask_attack_ms", "unmask_release_ms": "unmask_release_ms",
}
MASTER_PARAM_PATHS: dict[str, str] = {
    "master_low_shelf_db": "eq.low_shelf_db", "master_high_shelf_db": "eq.high_shelf_db",
    "master_comp_threshold_db": "comp.threshold_db", "master_comp_ratio": "comp.ratio",
    "reverb_decay_s": "reverb.decay_s", "reverb_predelay_ms": "reverb.predelay_ms",
    "reverb_damping": "reverb.damping", "reverb_highpass_hz": "reverb.highpass_hz",
}
# Values in the params JSON that are not searched (fixed by the analysis or by the master chain), with
# their value or origin, for error messages.
FIXED_STEM_PATHS: dict[str, str] = {"trim_db": "set by the analysis", "comp.knee_db": f"fixed at {KNEE_DB:g} dB",
                                    "unmask_key": "set by the stem's role or --key",
                                    "unmask_threshold_db": "set by the analysis (the key's loud level)"}
FIXED_MASTER_PATHS: dict[str, str] = {
    "eq.low_shelf_hz": f"fixed at {MASTER_LOW_SHELF_HZ:g} Hz",
    "eq.high_shelf_hz": f"fixed at {MASTER_HIGH_SHELF_HZ:g} Hz",
    "comp.attack_ms": f"fixed at {MASTER_COMP_ATTACK_MS:g} ms",
    "comp.release_ms": f"fixed at {MASTER_COMP_RELEASE_MS:g} ms",
    "comp.knee_db": f"fixed at {KNEE_DB:g} dB",
    "reverb.seed": f"fixed at {REVERB_SEED}",
}
RANGE_TOLERANCE = 1e-9  # relative to a gene's span: a JSON value this far outside the range is rounding


def format_value(v: float) -> str:
    """A number for messages: short (``1e+09``, ``-3``) unless that hides a digit (``1000.001``)."""
    short = f"{float(v):g}"
    return short if float(short) == float(v) else repr(float(v))


def format_range(gene: Gene) -> str:
    """``"-24..12 dB"``: a gene's range with its unit, for messages."""
    return f"{gene.low:g}..{gene.high:g}" + (f" {gene.unit}" if gene.unit else "")


@dataclass(frozen=True)
class Params:
    """A population's mix settings in real units.

    Every per-stem field has shape (pop, stems); every ``master_*`` field has shape (pop,).
    ``trim_db`` is the fixed input gain from the analysis; ``gain_db`` is the searched fader, dB.
    """

    trim_db: np.ndarray
    gain_db: np.ndarray
    pan: np.ndarray
    highpass_hz: np.ndarray
    low_shelf_hz: np.ndarray
    low_shelf_db: np.ndarray
    peak_hz: np.ndarray
    peak_db: np.ndarray
    peak_q: np.ndarray
    high_shelf_hz: np.ndarray
    high_shelf_db: np.ndarray
    comp_threshold_db: np.ndarray
    comp_ratio: np.ndarray
    comp_attack_ms: np.ndarray
    comp_release_ms: np.ndarray
    master_low_shelf_db: np.ndarray
    master_high_shelf_db: np.ndarray
    master_comp_threshold_db: np.ndarray
    master_comp_ratio: np.ndarray
    # The reverb bus (optional: None means the send off and the return neutral, ``OPTIONAL_DEFAULTS``)
    reverb_send_db: np.ndarray | None = None
    reverb_decay_s: np.ndarray | None = None
    reverb_predelay_ms: np.ndarray | None = None
    reverb_damping: np.ndarray | None = None
    reverb_highpass_hz: np.ndarray | None = None
    # Dynamic unmasking (optional: None means the cut off, ``OPTIONAL_DEFAULTS``), (pop, stems)
    unmask_depth_db: np.ndarray | None = None
    unmask_hz: np.ndarray | None = None
    unmask_q: np.ndarray | None = None
    unmask_attack_ms: np.ndarray | None = None
    unmask_release_ms: np.ndarray | None = None
    #: (pop, stems) int: the stem whose signal keys each stem's cut (``UNMASK_NO_KEY``: none); not searched
    unmask_key: np.ndarray | None = None
    #: (pop, stems) dB: the cut's threshold, absolute level of the band-passed key (``search.keys``); not searched
    unmask_threshold_db: np.ndarray | None = None

    def __post_init__(self):
        """Fill an optional field left out (None) with its default: sends (pop, stems) off, the return's
        settings (pop,) neutral, the cut off (depth 0, no key)."""
        shape = np.shape(self.gain_db)
        for g in OPTIONAL_STEM_GENES + OPTIONAL_MASTER_GENES:
            if getattr(self, g.name) is None:
                s = shape if g in OPTIONAL_STEM_GENES else shape[:1]
                object.__setattr__(self, g.name, np.full(s, OPTIONAL_DEFAULTS[g.name]))
        if self.unmask_key is None:
            object.__setattr__(self, "unmask_key", np.full(shape, UNMASK_NO_KEY, dtype=np.int64))
        if self.unmask_threshold_db is None:
            object.__setattr__(self, "unmask_threshold_db", np.zeros(shape))

    @property
    def has_unmask(self) -> bool:
        """Whether any candidate has a dynamic cut at work (a depth above 0 dB on a stem with a key)."""
        return bool(np.any((np.asarray(self.unmask_depth_db) > 0.0) & (np.asarray(self.unmask_key) >= 0)))

    @property
    def has_reverb(self) -> bool:
        """Whether any candidate sends anything to the reverb (any send above ``REVERB_SEND_OFF_DB``)."""
        return bool(np.any(np.asarray(self.reverb_send_db) > REVERB_SEND_OFF_DB))

    @property
    def n_pop(self) -> int:
        """The number of candidates (rows)."""
        return self.gain_db.shape[0]

    @property
    def n_stems(self) -> int:
        """The number of stems (columns of the per-stem arrays)."""
        return self.gain_db.shape[1]

    def member(self, i: int) -> Params:
        """Candidate ``i`` as a population of one (shapes (1, stems) and (1,))."""
        return Params(**{k: np.asarray(v)[i : i + 1] for k, v in self.__dict__.items()})

    def to_dict(self, i: int, names: Sequence[str], roles: Sequence[str]) -> dict:
        """Candidate ``i`` as the JSON-ready ``params`` object of front.json / alt-NN.json."""
        stems = {}
        for s, (name, role) in enumerate(zip(names, roles)):
            v = {k: float(np.asarray(getattr(self, k))[i, s]) for k in (g.name for g in ALL_STEM_GENES)}
            stems[name] = {
                "role": role,
                "trim_db": float(np.asarray(self.trim_db)[i, s]),
                "gain_db": v["gain_db"],
                "pan": v["pan"],
                "eq": {
                    "highpass_hz": v["highpass_hz"],
                    "low_shelf_hz": v["low_shelf_hz"],
                    "low_shelf_db": v["low_shelf_db"],
                    "peak_hz": v["peak_hz"],
                    "peak_db": v["peak_db"],
                    "peak_q": v["peak_q"],
                    "high_shelf_hz": v["high_shelf_hz"],
                    "high_shelf_db": v["high_shelf_db"],
                },
                "comp": {
                    "threshold_db": v["comp_threshold_db"],
                    "ratio": v["comp_ratio"],
                    "attack_ms": v["comp_attack_ms"],
                    "release_ms": v["comp_release_ms"],
                    "knee_db": KNEE_DB,
                },
                "reverb_send_db": v["reverb_send_db"],
            }
            key = int(np.asarray(self.unmask_key)[i, s])
            if key >= 0 or v["unmask_depth_db"] > 0.0:  # a dry file stays as it was before unmasking existed
                stems[name].update({k: v[k] for k in (g.name for g in UNMASK_STEM_GENES)})
                stems[name]["unmask_key"] = names[key] if key >= 0 else None
                stems[name]["unmask_threshold_db"] = float(np.asarray(self.unmask_threshold_db)[i, s])
        master = {
            "eq": {
                "low_shelf_hz": MASTER_LOW_SHELF_HZ,
                "low_shelf_db": float(self.master_low_shelf_db[i]),
                "high_shelf_hz": MASTER_HIGH_SHELF_HZ,
                "high_shelf_db": float(self.master_high_shelf_db[i]),
            },
            "comp": {
                "threshold_db": float(self.master_comp_threshold_db[i]),
                "ratio": float(self.master_comp_ratio[i]),
                "attack_ms": MASTER_COMP_ATTACK_MS,
                "release_ms": MASTER_COMP_RELEASE_MS,
                "knee_db": KNEE_DB,
            },
            "reverb": {
                "decay_s": float(np.asarray(self.reverb_decay_s)[i]),
                "predelay_ms": float(np.asarray(self.reverb_predelay_ms)[i]),
                "damping": float(np.asarray(self.reverb_damping)[i]),
                "highpass_hz": float(np.asarray(self.reverb_highpass_hz)[i]),
                "seed": REVERB_SEED,
            },
        }
        return {"stems": stems, "master": master}

    @classmethod
    def from_dict(cls, d: Mapping, names: Sequence[str], *, source: str = "params") -> Params:
        """Inverse of :meth:`to_dict` for one candidate; ``names`` gives the stem order.

        Every value is checked field by field before any is used: a missing field or one of the
        wrong type is refused naming ``source``, its place in the JSON and the expected type
        (``alt-01.json: stems.vocal.gain_db must be a number (dB), got 'loud'``); booleans are not
        numbers. Values must then lie in their gene's range (:func:`_check_ranges`). The reverb
        fields (``stems.NAME.reverb_send_db``, ``master.reverb``) are optional: a file written before
        the reverb bus existed loads as a dry mix (every send off, the return neutral).

        Raises
        ------
        ParameterError
            If a stem is missing from ``d`` or a value is missing, not a finite number, or out of range.
        """
        stems_d = _stems_object(d, source)
        missing = [n for n in names if n not in stems_d]
        if missing:
            raise ParameterError(
                f"{source}: no settings for stem(s) {', '.join(missing)}; it has {', '.join(stems_d)}"
            )
        cols: dict[str, list] = {key: [] for key, _, _ in STEM_FIELDS}
        cols.update({key: [] for key, _, _ in OPTIONAL_STEM_FIELDS})
        keys, thresholds = [], []
        for n in names:
            for key, path, unit in STEM_FIELDS:
                cols[key].append(_number_at(stems_d[n], path, f"stems.{n}", source, unit, STEM_FIELDS))
            for key, path, unit in OPTIONAL_STEM_FIELDS:
                cols[key].append(_optional_number_at(stems_d[n], path, f"stems.{n}", source, unit, key))
            k, t = _unmask_key_at(stems_d[n], n, names, source)
            keys.append(k)
            thresholds.append(t)
        master = _object_at(d, "master", source, "an object of the master chain's settings (eq, comp)")
        m = {key: _number_at(master, path, "master", source, unit, MASTER_FIELDS) for key, path, unit in MASTER_FIELDS}
        m.update({key: _optional_number_at(master, path, "master", source, unit, key)
                  for key, path, unit in OPTIONAL_MASTER_FIELDS})
        arrays = {k: np.asarray([v], dtype=float) for k, v in cols.items()}
        arrays.update({k: np.asarray([v], dtype=float) for k, v in m.items()})
        _check_ranges(arrays, names, source)
        return cls(**arrays, unmask_key=np.asarray([keys], dtype=np.int64),
                   unmask_threshold_db=np.asarray([thresholds]))


def _unmask_key_at(st: Mapping, name: str, names: Sequence[str], source: str) -> tuple[int, float]:
    """Stem ``name``'s key (index into ``names``, ``UNMASK_NO_KEY`` when absent or null) and threshold
    (dB; 0 when absent) from its params object ``st``; a key naming no stem of ``names`` or the stem
    itself is refused (one line naming the field), as is a cut with a depth but no threshold."""
    key = st.get("unmask_key")
    if key is None:
        return UNMASK_NO_KEY, 0.0
    if not isinstance(key, str) or key not in names:
        raise ParameterError(f"{source}: stems.{name}.unmask_key must be the name of another stem "
                             f"({', '.join(n for n in names if n != name)}) or null, got {shown(key)}")
    if key == name:
        raise ParameterError(f"{source}: stems.{name}.unmask_key names the stem itself; a stem cannot key its own cut")
    if "unmask_threshold_db" not in st:
        raise ParameterError(f"{source}: stems.{name}.unmask_threshold_db is missing; it must be a number (dB)")
    threshold = checked_number(st["unmask_threshold_db"], f"stems.{name}.unmask_threshold_db", source, "dB")
    return list(names).index(key), threshold


# The numbers ``Params.from_dict`` reads: (column, path below ``stems.NAME`` or ``master``, unit).
STEM_FIELDS: tuple[tuple[str, str, str], ...] = (("trim_db", "trim_db", "dB"),) + tuple(
    (g.name, STEM_PARAM_PATHS[g.name], g.unit) for g in STEM_GENES)
MASTER_FIELDS: tuple[tuple[str, str, str], ...] = tuple((g.name, MASTER_PARAM_PATHS[g.name], g.unit)
                                                        for g in MASTER_GENES)
# The optional numbers (the reverb bus): their default (``OPTIONAL_DEFAULTS``) when the file has none.
OPTIONAL_STEM_FIELDS: tuple[tuple[str, str, str], ...] = tuple(
    (g.name, STEM_PARAM_PATHS[g.name], g.unit) for g in OPTIONAL_STEM_GENES)
OPTIONAL_MASTER_FIELDS: tuple[tuple[str, str, str], ...] = tuple(
    (g.name, MASTER_PARAM_PATHS[g.name], g.unit) for g in OPTIONAL_MASTER_GENES)


def _optional_number_at(obj: Mapping, path: str, where: str, source: str, unit: str, key: str) -> float:
    """The number at dotted ``path`` below ``obj`` as :func:`_number_at` checks it, or the default of
    gene ``key`` (``OPTIONAL_DEFAULTS``) when the path's first part is absent (a file written before
    it existed)."""
    node = obj
    for part in path.split(".")[:-1]:
        if part not in node:
            return OPTIONAL_DEFAULTS[key]
        node = node[part]
        if not isinstance(node, Mapping):
            raise ParameterError(f"{source}: {where}.{path.rsplit('.', 1)[0]} must be an object of numbers, "
                                 f"got {shown(node)}")
    last = path.rsplit(".", 1)[-1]
    if last not in node:
        if node is obj:
            return OPTIONAL_DEFAULTS[key]
        raise ParameterError(f"{source}: {where}.{path} is missing; it must be {_number_kind(unit)}")
    return checked_number(node[last], f"{where}.{path}", source, unit)


def shown(value, limit: int = 60) -> str:
    """A JSON value for messages, as the file spells it (``null``, ``true``, ``[1, 2]``), a string
    quoted (``'loud'``); cut to ``limit`` characters."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, allow_nan=True, default=repr)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number_kind(unit: str, integer: bool = False) -> str:
    return ("a whole number" if integer else "a number") + (f" ({unit})" if unit else "")


def checked_number(value, label: str, source: str, unit: str = "", *, integer: bool = False) -> float:
    """``value`` (a JSON value at ``label`` in ``source``) as a finite float (an int with ``integer``).

    Raises
    ------
    ParameterError
        ``source: LABEL must be a number (UNIT), got VALUE``: not a number (a boolean is not one),
        not finite, or (``integer``) not whole.
    """
    kind = _number_kind(unit, integer)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{source}: {label} must be {kind}, got {shown(value)}")
    try:
        x = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        x = math.inf
    if not math.isfinite(x):
        raise ParameterError(f"{source}: {label} must be a finite number{f' ({unit})' if unit else ''}, "
                             f"got {shown(value)}")
    if integer:
        if x != int(x):
            raise ParameterError(f"{source}: {label} must be {kind}, got {shown(value)}")
        return int(x)
    return x


def saved_number(d: Mapping, key: str, source: str, default, *, unit: str = "", integer: bool = False):
    """The top-level number ``d[key]`` of a saved file (``target_lufs``, ``sr``, ...), checked as by
    :func:`checked_number`; ``default`` when the file has no such key (or it is ``null`` for a
    ``default`` of None)."""
    if key not in d or (d[key] is None and default is None):
        return default
    return checked_number(d[key], key, source, unit, integer=integer)


def _object_at(d: Mapping, key: str, source: str, kind: str) -> Mapping:
    """``d[key]``, which must be a JSON object (``kind`` describes it); errors name ``source`` and ``key``."""
    if key not in d:
        raise ParameterError(f"{source}: {key} is missing; it must be {kind}")
    value = d[key]
    if not isinstance(value, Mapping):
        raise ParameterError(f"{source}: {key} must be {kind}, got {shown(value)}")
    return value


def _stems_object(d: Mapping, source: str) -> Mapping:
    """The ``stems`` object of a params object ``d``, checked to be ``{stem name: {settings}}``."""
    if not isinstance(d, Mapping) or ("stems" not in d and "master" not in d):
        raise ParameterError(f"{source}: expected an object with 'stems' and 'master'")
    stems_d = _object_at(d, "stems", source, "an object {stem name: settings}")
    for n, st in stems_d.items():
        if not isinstance(st, Mapping):
            raise ParameterError(f"{source}: stems.{n} must be an object of settings (trim_db, gain_db, pan, eq, "
                                 f"comp), got {shown(st)}")
    return stems_d


def params_stem_names(d: Mapping, source: str = "params") -> list[str]:
    """The stem names of a params object (``alt-NN.json``'s ``params``), in its order.

    Raises
    ------
    ParameterError
        ``d`` is not an object with ``stems`` of ``{stem name: {settings}}``.
    """
    return list(_stems_object(d, source))


def _number_at(obj: Mapping, path: str, where: str, source: str, unit: str, fields) -> float:
    """The number at dotted ``path`` below ``obj`` (itself at ``where``), checked field by field."""
    def an_object(depth: int) -> str:  # what the object at parts[:depth] holds
        prefix = ".".join(parts[:depth]) + "."
        return f"an object of numbers ({', '.join(p[len(prefix):] for _, p, _ in fields if p.startswith(prefix))})"

    node = obj
    parts = path.split(".")
    for depth, key in enumerate(parts):
        if depth and not isinstance(node, Mapping):  # an object (eq, comp) of the wrong type
            raise ParameterError(f"{source}: {'.'.join([where, *parts[:depth]])} must be {an_object(depth)}, "
                                 f"got {shown(node)}")
        if key not in node:
            kind = _number_kind(unit) if depth == len(parts) - 1 else an_object(depth + 1)
            raise ParameterError(f"{source}: {'.'.join([where, *parts[:depth + 1]])} is missing; it must be {kind}")
        node = node[key]
    return checked_number(node, f"{where}.{path}", source, unit)


def _check_ranges(arrays: dict, names: Sequence[str], source: str) -> None:
    """Refuse (one line, naming ``source``, the parameter and its range) any value outside its gene's
    range (``STEM_GENES``/``MASTER_GENES``, ``TRIM_RANGE_DB`` for ``trim_db``), before any DSP sees it.
    Values within ``RANGE_TOLERANCE`` of the span outside are rounding (files written before decode
    clipped, e.g. a release of 1000.0000000000001 ms) and are kept as they are, so such a file still
    renders exactly as it was exported."""
    checks = [(g, arrays[g.name][0], [f"{n}.{STEM_PARAM_PATHS[g.name]}" for n in names]) for g in ALL_STEM_GENES]
    checks.append((Gene("trim_db", *TRIM_RANGE_DB, unit="dB"), arrays["trim_db"][0], [f"{n}.trim_db" for n in names]))
    checks += [(g, arrays[g.name], [f"master.{MASTER_PARAM_PATHS[g.name]}"]) for g in ALL_MASTER_GENES]
    for gene, values, labels in checks:  # values (stems,) or (1,)
        slack = RANGE_TOLERANCE * (gene.high - gene.low)
        for v, label in zip(values, labels):
            if not gene.low - slack <= v <= gene.high + slack:
                raise ParameterError(f"{source}: {label} = {format_value(v)} is outside its range {format_range(gene)}")


@dataclass(frozen=True)
class GeneTable:
    """The genes of a session: ``STEM_GENES`` for each of ``n_stems`` stems, then ``MASTER_GENES``.

    ``stem_genes`` may differ from the defaults (edited ranges / locks for every stem; the optional
    reverb genes join the end of ``stem_genes`` / ``master_genes`` once a lock or range names them,
    :meth:`with_gene`; until then every decoded candidate has its send off and the return neutral);
    ``per_stem`` is ``()`` (every stem uses ``stem_genes``) or one gene tuple per stem, the same
    genes in the same order with each stem's own low/high (``with_gene(..., stem=s)``). A locked
    gene has ``low == high`` and decodes to exactly that value whatever the genome holds.
    """

    n_stems: int
    stem_genes: tuple[Gene, ...] = STEM_GENES
    master_genes: tuple[Gene, ...] = MASTER_GENES
    per_stem: tuple[tuple[Gene, ...], ...] = ()
    #: Which stem keys each stem's dynamic cut and how loud each key is (``evomix.search.keys.KeyMap``,
    #: from the analysis), or None: every cut off. Decoding fills ``Params.unmask_key`` and
    #: ``Params.unmask_threshold_db`` from it (:meth:`with_keys`).
    keys: object = field(default=None, compare=False)

    def with_keys(self, keys) -> GeneTable:
        """A copy whose decoded candidates have the keys and thresholds of ``keys`` (a
        ``search.keys.KeyMap``, or None for no cut at all)."""
        return replace(self, keys=keys)

    @property
    def has_unmask(self) -> bool:
        """Whether some stem with a key has its cut's depth searched or set above 0 dB."""
        if self.keys is None:
            return False
        key = np.asarray(self.keys.key_index)
        return any(g.name == "unmask_depth_db" and g.high > 0.0 and key[s] >= 0
                   for s in range(self.n_stems) for g in self.genes_of_stem(s))

    @property
    def n_genes(self) -> int:
        """The genome length: every stem's genes, then the master's."""
        return self.n_stems * len(self.stem_genes) + len(self.master_genes)

    def genes_of_stem(self, s: int) -> tuple[Gene, ...]:
        """The genes of stem ``s`` (its own ranges if it has any)."""
        return self.per_stem[s] if self.per_stem else self.stem_genes

    def gene(self, name: str, stem: int | None = None) -> Gene:
        """Gene ``name`` of stem ``stem`` (a stem gene), or the master gene ``name`` (``stem=None``)."""
        genes = self.master_genes if stem is None else self.genes_of_stem(stem)
        for g in genes:
            if g.name == name:
                return g
        optional = OPTIONAL_MASTER_GENES if stem is None else OPTIONAL_STEM_GENES
        for g in optional:  # not in this table (its value is its default): its full range
            if g.name == name:
                return g
        raise ParameterError(f"unknown gene '{name}'; choose from {', '.join(g.name for g in genes)}")

    def with_range(self, name: str, low: float, high: float | None = None) -> GeneTable:
        """A copy with gene ``name`` restricted to [low, high] (``high=None`` locks it at ``low``)."""
        return self.with_gene(name, low, high)

    def with_gene(self, name: str, low: float, high: float | None = None, *, stem: int | None = None) -> GeneTable:
        """A copy with gene ``name`` restricted to [low, high] (``high=None`` locks it at ``low``),
        in every stem (``stem=None``; or the master gene of that name) or in stem ``stem`` only.

        Raises
        ------
        ParameterError
            Unknown gene, ``low > high``, a non-finite bound, or a bound <= 0 on a log-scale gene.
        """
        high = low if high is None else high
        if name in OPTIONAL_DEFAULTS and name not in [g.name for g in self.stem_genes + self.master_genes]:
            return self._with_optional(name).with_gene(name, low, high, stem=stem)
        stem_names = [g.name for g in self.stem_genes]
        all_names = stem_names + [g.name for g in self.master_genes]
        if name not in all_names:
            raise ParameterError(f"unknown gene '{name}'; choose from {', '.join(all_names)}")
        low, high = float(low), float(high)
        template = (self.stem_genes + self.master_genes)[all_names.index(name)]
        if not (np.isfinite(low) and np.isfinite(high)) or low > high:
            raise ParameterError(f"{name}: the range must be finite with low <= high, got {low:g}..{high:g}")
        if template.scale == "log" and low <= 0.0:
            raise ParameterError(f"{name}: a log-scale gene needs low > 0, got {low:g}")

        def edit(g: Gene) -> Gene:
            return replace(g, low=low, high=high) if g.name == name else g

        if name not in stem_names:
            return replace(self, master_genes=tuple(edit(g) for g in self.master_genes))
        if stem is None:
            return replace(self, stem_genes=tuple(edit(g) for g in self.stem_genes),
                           per_stem=tuple(tuple(edit(g) for g in genes) for genes in self.per_stem))
        if not 0 <= stem < self.n_stems:
            raise ParameterError(f"stem index {stem} out of range 0..{self.n_stems - 1}")
        per_stem = [self.genes_of_stem(s) for s in range(self.n_stems)]
        per_stem[stem] = tuple(edit(g) for g in per_stem[stem])
        return replace(self, per_stem=tuple(per_stem))

    def _with_optional(self, name: str) -> GeneTable:
        """A copy with the optional gene ``name`` (``REVERB_STEM_GENES``/``REVERB_MASTER_GENES``) added
        at the end of the stem's or the master's genes, locked at its default (``OPTIONAL_DEFAULTS``:
        a send off) in every stem: the same mixes as without it, in a longer genome."""
        value = OPTIONAL_DEFAULTS[name]
        for g in OPTIONAL_STEM_GENES:
            if g.name == name:
                added = replace(g, low=value, high=value)
                return replace(self, stem_genes=self.stem_genes + (added,),
                               per_stem=tuple(genes + (added,) for genes in self.per_stem))
        template = next(g for g in OPTIONAL_MASTER_GENES if g.name == name)
        return replace(self, master_genes=self.master_genes + (replace(template, low=value, high=value),))

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.stem_bounds()

    def stem_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stem gene's low and high, each (stems, genes per stem), in real units."""
        lows = np.array([[g.low for g in self.genes_of_stem(s)] for s in range(self.n_stems)], dtype=float)
        highs = np.array([[g.high for g in self.genes_of_stem(s)] for s in range(self.n_stems)], dtype=float)
        return lows.reshape(self.n_stems, -1), highs.reshape(self.n_stems, -1)

    def decode(self, genomes: np.ndarray, trim_db: np.ndarray) -> Params:
        """Decode genomes (pop, n_genes) in [0, 1] into :class:`Params`.

        ``trim_db`` (stems,) dB is the analysis' fixed input gain, copied into every candidate.
        Every value lies in its gene's [low, high] (clipped after the mapping, so rounding cannot
        leave the range); a locked gene decodes to exactly its value.
        """
        genomes = np.atleast_2d(np.asarray(genomes, dtype=float))
        n_pop, n_genes = genomes.shape
        if n_genes != self.n_genes:
            raise ParameterError(f"genome has {n_genes} genes; this session needs {self.n_genes}")
        k = len(self.stem_genes)
        stem_part = np.clip(genomes[:, : self.n_stems * k].reshape(n_pop, self.n_stems, k), 0.0, 1.0)  # (pop, stems, k)
        lows, highs = self._bounds  # (stems, k), computed once per table
        out = {}
        for j, g in enumerate(self.stem_genes):
            lo, hi, u = lows[:, j], highs[:, j], stem_part[:, :, j]  # (stems,), (stems,), (pop, stems)
            v = lo * (hi / lo) ** u if g.scale == "log" else lo + (hi - lo) * u
            out[g.name] = np.minimum(np.maximum(v, lo), hi)  # rounding cannot leave [lo, hi] (np.clip is slower)
        out["trim_db"] = np.broadcast_to(np.asarray(trim_db, dtype=float)[None, :], (n_pop, self.n_stems)).copy()
        master_part = genomes[:, self.n_stems * k :]  # (pop, master genes)
        out.update({g.name: np.minimum(np.maximum(g.decode(master_part[:, j]), g.low), g.high)
                    for j, g in enumerate(self.master_genes)})
        if self.keys is not None and "unmask_depth_db" in out:  # the cut's key and threshold (search.keys)
            out["unmask_key"], out["unmask_threshold_db"] = self.keys.decode(
                n_pop, out.get("unmask_hz", np.full((n_pop, self.n_stems), OPTIONAL_DEFAULTS["unmask_hz"])),
                out.get("unmask_q", np.full((n_pop, self.n_stems), OPTIONAL_DEFAULTS["unmask_q"])))
        return Params(**out)

    def encode(self, params: Params) -> np.ndarray:
        """Inverse of :meth:`decode`: (pop, n_genes) in [0, 1] (values outside a range are clipped)."""
        cols = []
        for j, g in enumerate(self.stem_genes):
            v = np.asarray(getattr(params, g.name), dtype=float)  # (pop, stems)
            cols.append(np.stack([self.genes_of_stem(s)[j].encode(v[:, s]) for s in range(self.n_stems)], axis=-1))
        stem_part = np.stack(cols, axis=-1).reshape(params.n_pop, -1)  # (pop, stems, k) -> (pop, stems * k)
        master_part = np.stack([g.encode(getattr(params, g.name)) for g in self.master_genes], axis=-1)
        return np.concatenate([stem_part, master_part], axis=1)

    def locked(self) -> np.ndarray:
        """Boolean mask (n_genes,) of the locked genes (``low == high``)."""
        stem = [g.low == g.high for s in range(self.n_stems) for g in self.genes_of_stem(s)]
        return np.array(stem + [g.low == g.high for g in self.master_genes], dtype=bool)

    def gene_mask(self, stem_gene_names) -> np.ndarray:
        """Boolean mask (n_genes,) of the named stem genes of every stem (master genes: False)."""
        stem = [g.name in stem_gene_names for s in range(self.n_stems) for g in self.genes_of_stem(s)]
        return np.array(stem + [False] * len(self.master_genes), dtype=bool)

    def canonical(self, genomes: np.ndarray) -> np.ndarray:
        """Genomes (pop, n_genes) with every locked gene set to 0.5: a locked gene's value in the
        genome has no effect, so two genomes that differ only there are the same mix."""
        genomes = np.array(genomes, dtype=float, ndmin=2)
        genomes[:, self.locked()] = 0.5
        return genomes

    @property
    def has_open_sends(self) -> bool:
        """Whether some stem's reverb send is searched or set above off (the table has a bus to set)."""
        for s in range(self.n_stems):
            for g in self.genes_of_stem(s):
                if g.name == "reverb_send_db" and g.high > REVERB_SEND_OFF_DB:
                    return True
        return False

    def neutral(self) -> np.ndarray:
        """The genome (n_genes,) that leaves every stem at its trim with flat EQ and no compression
        (each neutral value clipped into its stem's range)."""
        stem = [g.encode(g.neutral) for s in range(self.n_stems) for g in self.genes_of_stem(s)]
        master = [g.encode(g.neutral) for g in self.master_genes]
        return np.array(stem + master, dtype=float)

    def initial_population(self, n_pop: int, rng: np.random.Generator, *, spread: float = 0.15,
                           random_fraction: float = 0.25, base: np.ndarray | None = None) -> np.ndarray:
        """Seed population (n_pop, n_genes): most members are ``base`` (default: the neutral mix)
        plus Gaussian noise of std ``spread`` (in genome units); ``random_fraction`` are uniform
        in [0, 1]; member 0 is ``base`` itself."""
        base = self.neutral() if base is None else np.clip(np.asarray(base, dtype=float), 0.0, 1.0)
        pop = np.clip(base + rng.normal(0.0, spread, size=(n_pop, self.n_genes)), 0.0, 1.0)
        n_rand = int(round(random_fraction * n_pop))
        if n_rand:
            pop[-n_rand:] = rng.uniform(0.0, 1.0, size=(n_rand, self.n_genes))
        pop[0] = base
        return pop
