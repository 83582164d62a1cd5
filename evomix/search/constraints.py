"""Locks and ranges: fix or narrow searched parameters by name, as an edit of the gene table.

``--lock STEM.PARAM=VALUE`` fixes a parameter; ``--range STEM.PARAM=LO:HI`` narrows it. Names are
the params JSON's (``Params.to_dict``, the ``params`` object of ``alt-NN.json``): ``vocal.gain_db``,
``bass.pan``, ``keys.eq.highpass_hz``, ``drums.comp.ratio``, ``master.comp.threshold_db``;
``*.PARAM`` means every stem (not the master). The reverb bus's names (``vocal.reverb_send_db``,
``master.reverb.decay_s``, ...; optional genes, ``evomix.search.genome.REVERB_STEM_GENES``) add
their gene to the table; a send's value may be ``off`` (-40 dB: no send), so
``--lock '*.reverb_send_db=off'`` is a dry mix and ``--range '*.reverb_send_db=-40:0'`` lets the
search open the sends. The dynamic cut's names (``guitar.unmask_depth_db``, ``guitar.unmask_hz``,
``unmask_q``, ``unmask_attack_ms``, ``unmask_release_ms``; ``evomix.search.genome.UNMASK_STEM_GENES``)
add their genes the same way; ``'*.unmask_depth_db=off'`` (0 dB) takes every cut away. Values are in
the parameter's unit (dB, Hz, ms, or none for pan, Q and ratios; the unit may be written after the
number, ``120Hz``) and must lie in the gene's full range (``evomix.search.genome``).

The edit goes into the :class:`~evomix.search.genome.GeneTable` (DESIGN.md: "Locks and ranges given on
the command line edit the table, never the code"), so every decoded genome obeys it: the fast
tier, the exact renders, ``front.json`` and ``alt-NN.json``. A locked gene decodes to exactly its
value (``low == high``: ``low + 0 * u``, ``low * 1 ** u``), and JSON floats round-trip, so the
exported value equals the given float64 bit for bit; a ranged gene is clipped to [LO, HI] after the
mapping, so rounding cannot leave the range.

Precedence, whatever the order on the command line:

1. A specific entry (``vocal.PARAM``) beats a wildcard one (``*.PARAM``) for that stem: it
   replaces it entirely, lock or range, narrower or wider.
2. Two different entries for the same name at the same level (``--lock vocal.pan=0`` and
   ``--range vocal.pan=-0.5:0``, or two wildcard entries) are an error; an exact repeat is allowed.
3. ``master.PARAM`` is the master bus (a stem named ``master`` cannot be constrained by name;
   rename its file).

Parsing (:meth:`Constraints.parse`) needs no stems and checks syntax, names and values; stem names
are resolved when the table is edited (:meth:`Constraints.apply`), once the session is loaded.
A command that searches (``mix``, and ``vary``/``explore`` alike) takes ``cli.LockOpt`` and
``cli.RangeOpt``, builds ``Constraints.parse(..., lock_option="--lock", range_option="--range")``
before reading any file, and edits its table with ``constraints.apply(GeneTable(n_stems),
session.names)`` (or :func:`constrain_table`); genomes it makes itself should be encoded with that
table (``table.encode(params)``, ``table.genes_of_stem(s)``), and every decode then obeys it.

A run records its constraints (:meth:`Constraints.to_dict`) in ``front.json`` and each
``alt-NN.json``; :meth:`Constraints.from_dict` reads them back (``evomix vary`` inherits them),
:meth:`Constraints.overridden_by` lets explicit entries win per parameter and
:meth:`Constraints.union` makes two records hold together.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from evomix.errors import ParameterError
from evomix.search.genome import (
    ALL_MASTER_GENES,
    ALL_STEM_GENES,
    FIXED_MASTER_PATHS,
    FIXED_STEM_PATHS,
    MASTER_PARAM_PATHS,
    REVERB_MASTER_GENES,
    REVERB_SEND_OFF_DB,
    REVERB_STEM_GENES,
    STEM_PARAM_PATHS,
    UNMASK_STEM_GENES,
    Gene,
    GeneTable,
    format_range,
    format_value,
)
from evomix.search.keys import parse_keys

WILDCARD = "*"
MASTER = "master"
_STEM_BY_PATH = {STEM_PARAM_PATHS[g.name]: g for g in ALL_STEM_GENES}  # "eq.highpass_hz" -> its gene
_MASTER_BY_PATH = {MASTER_PARAM_PATHS[g.name]: g for g in ALL_MASTER_GENES}
OFF = "off"  # a reverb send's value meaning no send at all (``REVERB_SEND_OFF_DB``): '*.reverb_send_db=off'
# gene -> the value "off" stands for: no send; no dynamic cut ('*.unmask_depth_db=off', 0 dB: no processing)
_HAS_OFF = {"reverb_send_db": REVERB_SEND_OFF_DB, "unmask_depth_db": 0.0}


def valid_names() -> str:
    """The names a lock or range accepts, in one line (per-stem parameters, then the master's)."""
    return (f"STEM.PARAM with PARAM one of {', '.join(_STEM_BY_PATH)} (STEM a stem name or * for every stem), "
            f"or master.PARAM with PARAM one of {', '.join(_MASTER_BY_PATH)}")


@dataclass(frozen=True)
class Constraint:
    """One lock or range, parsed.

    text : the entry as given (``"vocal.gain_db=-3"``).  option : where it came from (``--lock``).
    stem : a stem name, ``"*"`` (every stem) or ``None`` (the master bus).
    path : the parameter's path in the params JSON below the stem / master (``"eq.highpass_hz"``).
    gene : the template gene (full range, unit).  low, high : the new bounds in the gene's unit
    (equal for a lock).  kind : ``"lock"`` or ``"range"``.
    """

    text: str
    option: str
    stem: str | None
    path: str
    gene: Gene
    low: float
    high: float
    kind: str = "lock"  # "lock" or "range" (a range may have LO == HI)

    @property
    def name(self) -> str:
        """``"vocal.eq.highpass_hz"``, ``"*.pan"``, ``"master.comp.ratio"``."""
        return f"{MASTER if self.stem is None else self.stem}.{self.path}"

    @property
    def is_lock(self) -> bool:
        """Whether the entry pins one value (LO == HI), whatever its kind."""
        return self.low == self.high

    def describe(self) -> str:
        """``"--lock vocal.gain_db=-3"``: the entry with its option, for messages."""
        return f"{self.option} '{self.text}'"


def _number(text: str, entry: str, option: str, what: str, unit: str = "") -> float:
    """A finite number; a trailing unit equal to the gene's (``120Hz``, ``-3 dB``, ``5 ms``) is allowed."""
    number = text[: -len(unit)].strip() if unit and text.lower().endswith(unit.lower()) else text
    try:
        v = float(number)
    except ValueError:
        raise ParameterError(f"{option} '{entry}': {what} '{text}' is not a number"
                             + (f" (in {unit})" if unit else "")) from None
    if not math.isfinite(v):
        raise ParameterError(f"{option} '{entry}': {what} must be a finite number, got '{text}'")
    return v


def _resolve_name(name: str, entry: str, option: str) -> tuple[str | None, str, Gene]:
    """``"vocal.eq.highpass_hz"`` -> (stem, path, gene); the stem part may itself contain dots."""
    if name.startswith(MASTER + "."):
        path = name[len(MASTER) + 1:]
        if path in _MASTER_BY_PATH:
            return None, path, _MASTER_BY_PATH[path]
        if path in FIXED_MASTER_PATHS:
            raise ParameterError(f"{option} '{entry}': master.{path} is not searched ({FIXED_MASTER_PATHS[path]})")
        hint = difflib.get_close_matches(path, list(_MASTER_BY_PATH), n=1)
        raise ParameterError(f"{option} '{entry}': unknown master parameter '{path}'"
                             + (f" (did you mean master.{hint[0]}?)" if hint else "")
                             + f"; master parameters: {', '.join(_MASTER_BY_PATH)}")
    for path, gene in sorted(_STEM_BY_PATH.items(), key=lambda kv: -len(kv[0])):  # longest suffix first
        if name.endswith("." + path) and len(name) > len(path) + 1:
            return name[: -len(path) - 1], path, gene
    for path, why in FIXED_STEM_PATHS.items():
        if name.endswith("." + path):
            raise ParameterError(f"{option} '{entry}': {name} is not searched ({why})")
    stem, dot, param = name.partition(".")
    if not dot or not stem or not param:
        raise ParameterError(f"{option} '{entry}': expected STEM.PARAM=..., e.g. vocal.gain_db; names: {valid_names()}")
    flat = {g.name: p for p, g in _STEM_BY_PATH.items()}  # "highpass_hz" -> "eq.highpass_hz", "comp_ratio" -> ...
    guess = (flat.get(param.replace(".", "_"))
             or (difflib.get_close_matches(param, list(_STEM_BY_PATH), n=1) or [None])[0])
    raise ParameterError(f"{option} '{entry}': unknown parameter '{param}'"
                         + (f" (did you mean {stem}.{guess}?)" if guess else "") + f"; names: {valid_names()}")


def _check_within(gene: Gene, low: float, high: float, entry: str, option: str, name: str) -> None:
    for v in (low, high):
        if not gene.low <= v <= gene.high:
            raise ParameterError(f"{option} '{entry}': {format_value(v)} is outside the range of {name}, "
                                 f"{format_range(gene)}")


def parse_lock(entry: str, *, option: str = "--lock") -> Constraint:
    """``"STEM.PARAM=VALUE"`` -> :class:`Constraint` (``low == high == VALUE``).

    Raises
    ------
    ParameterError
        Bad syntax, unknown or unsearched parameter, or a value outside the gene's range; the
        message names ``option``, the entry and what is wrong.
    """
    return _parse(entry, option, lock=True)


def parse_range(entry: str, *, option: str = "--range") -> Constraint:
    """``"STEM.PARAM=LO:HI"`` -> :class:`Constraint` (``LO <= HI``, both inside the gene's range).

    Raises
    ------
    ParameterError
        As :func:`parse_lock`, and when ``LO > HI``.
    """
    return _parse(entry, option, lock=False)


def _parse(entry: str, option: str, *, lock: bool) -> Constraint:
    if not isinstance(entry, str):
        raise ParameterError(f"{option}: expected a string STEM.PARAM={'VALUE' if lock else 'LO:HI'}, got {entry!r}")
    form = "STEM.PARAM=VALUE" if lock else "STEM.PARAM=LO:HI"
    name, eq, value = entry.rpartition("=")  # a value has no "=", a stem name might
    name, value = name.strip(), value.strip()
    if not eq or not name or not value:
        raise ParameterError(f"{option} '{entry}': expected {form}, "
                             f"e.g. {'vocal.gain_db=-3' if lock else 'vocal.gain_db=-6:0'}")
    stem, path, gene = _resolve_name(name, entry, option)
    def number(text: str, what: str) -> float:  # "off" is the send's -40 dB, exactly
        if gene.name in _HAS_OFF and text.strip().lower() == OFF:
            return _HAS_OFF[gene.name]
        return _number(text, entry, option, what, gene.unit)

    if lock:
        low = high = number(value, "value")
    else:
        lo_text, colon, hi_text = value.partition(":")
        if not colon:
            raise ParameterError(f"{option} '{entry}': expected {form} (two numbers separated by ':'), "
                                 f"e.g. {name}=LO:HI")
        low = number(lo_text.strip(), "LO")
        high = number(hi_text.strip(), "HI")
        if low > high:
            raise ParameterError(f"{option} '{entry}': LO {format_value(low)} is above HI {format_value(high)} "
                                 f"(did you swap them?)")
    _check_within(gene, low, high, entry, option, name)
    return Constraint(text=entry, option=option, stem=stem, path=path, gene=gene, low=low, high=high,
                      kind="lock" if lock else "range")


def _entries(items, option: str, *, lock: bool) -> list[str]:
    """Strings from a sequence of ``"NAME=..."`` or a mapping ``{NAME: value}`` (lock) /
    ``{NAME: (lo, hi)}`` or ``{NAME: "lo:hi"}`` (range)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    if isinstance(items, Mapping):
        out = []
        for k, v in items.items():
            if lock or isinstance(v, str):
                out.append(f"{k}={v}")
            else:
                try:
                    lo, hi = v
                except (TypeError, ValueError):
                    raise ParameterError(f"{option}: {k}: expected (low, high), got {v!r}") from None
                out.append(f"{k}={lo}:{hi}")
        return out
    return list(items)


@dataclass(frozen=True)
class Constraints:
    """The locks and ranges of a run (parsed, checked against the full gene ranges).

    Build with :meth:`parse`; edit a table with :meth:`apply`; record with :meth:`to_dict`.
    """

    entries: tuple[Constraint, ...] = field(default=())
    #: ``--key`` overrides of the dynamic cuts' keys (``search.keys.parse_keys``): ((stem, key or None), ...)
    keys: tuple[tuple[str, str | None], ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.entries) or bool(self.keys)

    def with_keys(self, entries: Sequence[str] | None, *, option: str = "--key") -> Constraints:
        """These constraints with the ``--key`` entries ``entries`` (``"bass=kick"``, ``"guitar=none"``),
        parsed (:func:`evomix.search.keys.parse_keys`; stems are checked against the session later)."""
        return Constraints(self.entries, tuple(parse_keys(entries, option=option).items()))

    @classmethod
    def parse(cls, locks: Sequence[str] | Mapping[str, float] | None = None,
              ranges: Sequence[str] | Mapping[str, object] | None = None, *,
              lock_option: str = "locks", range_option: str = "ranges") -> Constraints:
        """Parse locks (``"vocal.gain_db=-3"`` or ``{"vocal.gain_db": -3}``) and ranges
        (``"bass.pan=-0.2:0.2"`` or ``{"bass.pan": (-0.2, 0.2)}``).

        ``lock_option`` / ``range_option`` name the source in messages: the CLI passes ``--lock``
        and ``--range``, Python callers get ``locks`` / ``ranges``.

        Raises
        ------
        ParameterError
            A bad entry (:func:`parse_lock`, :func:`parse_range`), or two different entries for the
            same name (rule 2 of the module docstring).
        """
        parsed = [_parse(e, lock_option, lock=True) for e in _entries(locks, lock_option, lock=True)]
        parsed += [_parse(e, range_option, lock=False) for e in _entries(ranges, range_option, lock=False)]
        seen: dict[str, Constraint] = {}
        unique = []
        for c in parsed:
            first = seen.get(c.name)
            if first is None:
                seen[c.name] = c
                unique.append(c)
            elif (first.low, first.high) != (c.low, c.high):
                raise ParameterError(f"{c.name} is given twice ({first.describe()} and {c.describe()}); give one "
                                     f"(a STEM.PARAM entry overrides *.PARAM, two entries for one name conflict)")
        return cls(tuple(unique))

    def apply(self, table: GeneTable, stem_names: Sequence[str]) -> GeneTable:
        """The table with every lock and range applied (``stem_names`` in the table's stem order).

        Raises
        ------
        ParameterError
            An unknown stem name (the message lists the stems), a stem named ``master`` addressed by
            a name that also fits the master bus, or a value outside the table's own range.
        """
        stem_names = list(stem_names)
        if len(stem_names) != table.n_stems:
            raise ParameterError(f"{len(stem_names)} stem names for a table of {table.n_stems} stems")
        for c in self.entries:
            if c.stem not in (None, WILDCARD) and c.stem not in stem_names:
                hint = difflib.get_close_matches(c.stem, stem_names, n=1)
                raise ParameterError(f"{c.describe()}: unknown stem '{c.stem}'"
                                     + (f" (did you mean {hint[0]}?)" if hint else "")
                                     + f"; stems are {', '.join(stem_names)} "
                                       f"(* for every stem, master for the master bus)")
            if c.stem is None and MASTER in stem_names and c.path in _STEM_BY_PATH:
                raise ParameterError(f"{c.describe()}: ambiguous, a stem is named 'master' too; master.PARAM means the "
                                     f"master bus (rename the stem's file to constrain it)")
        original = table
        for c in sorted(self.entries, key=lambda c: c.stem not in (None, WILDCARD)):  # wildcards first (rule 1)
            stems = ([None] if c.stem is None else range(table.n_stems) if c.stem == WILDCARD
                     else [stem_names.index(c.stem)])
            for s in stems:  # the table given may already be narrower than the full gene range
                _check_within(original.gene(c.gene.name, s), c.low, c.high, c.text, c.option, c.name)
            stem = None if c.stem in (None, WILDCARD) else stem_names.index(c.stem)
            table = table.with_gene(c.gene.name, c.low, c.high, stem=stem)  # sets low/high: replaces a wildcard's
        return table

    def to_dict(self) -> dict:
        """``{"locks": {"vocal.gain_db": -3.0}, "ranges": {"*.eq.highpass_hz": [40.0, 120.0]}}``:
        JSON-ready, and :meth:`parse` of it (``locks=d["locks"], ranges=d["ranges"]``) gives these
        constraints back."""
        d = {"locks": {c.name: c.low for c in self.entries if c.kind == "lock"},
             "ranges": {c.name: [c.low, c.high] for c in self.entries if c.kind == "range"}}
        if self.keys:
            d["keys"] = {stem: key for stem, key in self.keys}
        return d


    @classmethod
    def from_dict(cls, d: Mapping | None, *, source: str = "constraints") -> Constraints:
        """The constraints a :meth:`to_dict` record holds (``settings.constraints`` of ``front.json``,
        ``constraints`` of ``alt-NN.json``); ``None`` gives none. Locked values come back bit for bit
        (JSON floats round-trip). ``source`` (a file name) leads every message.

        Raises
        ------
        ParameterError
            Not a ``{"locks": {...}, "ranges": {...}}`` object, or a bad entry (as :meth:`parse`).
        """
        if d is None:
            return cls()
        if (not isinstance(d, Mapping) or not set(d) <= {"locks", "ranges", "keys"}
                or not all(isinstance(d.get(k) or {}, Mapping) for k in ("locks", "ranges", "keys"))):
            raise ParameterError(f"{source}: constraints must be {{\"locks\": {{NAME: VALUE}}, \"ranges\": "
                                 f"{{NAME: [LO, HI]}}}}, got {str(d)[:80]}")
        parsed = cls.parse(d.get("locks") or {}, d.get("ranges") or {}, lock_option=f"{source}: constraints.locks",
                           range_option=f"{source}: constraints.ranges")
        keys = [f"{stem}={key if key is not None else 'none'}" for stem, key in (d.get("keys") or {}).items()]
        return parsed.with_keys(keys, option=f"{source}: constraints.keys") if keys else parsed

    def without(self, other: Constraints) -> Constraints:
        """These entries less those ``other`` replaces: an entry of ``other`` replaces the entry of
        the same name, and a ``*.PARAM`` entry of ``other`` also replaces every ``STEM.PARAM`` one
        (it is meant for every stem)."""
        names = {c.name for c in other.entries}
        wild = {c.path for c in other.entries if c.stem == WILDCARD}
        return Constraints(tuple(c for c in self.entries
                                 if c.name not in names and not (c.stem is not None and c.path in wild)),
                           tuple((s, k) for s, k in self.keys if s not in dict(other.keys)))

    def overridden_by(self, other: Constraints) -> Constraints:
        """``other`` added to these, winning per parameter (:meth:`without`); the usual precedence of
        the module docstring then holds within the result (a STEM.PARAM entry beats ``*.PARAM``)."""
        rest = self.without(other)
        return Constraints(rest.entries + other.entries, rest.keys + other.keys)

    @classmethod
    def union(cls, parts: Sequence[tuple[str, Constraints]]) -> Constraints:
        """Every entry of every ``(source, constraints)`` part: both hold, so two entries of one name
        become their intersection (a lock inside the other's range stays the lock; two ranges give
        the overlap).

        Raises
        ------
        ParameterError
            Two entries of one name that no value satisfies (two different locks, a lock outside the
            other's range, disjoint ranges); the message names both sources and the parameter.
        """
        merged: dict[str, tuple[str, Constraint]] = {}
        keys: dict[str, str | None] = {}
        for _, constraints in parts:
            keys.update(constraints.keys)
        for source, constraints in parts:
            for c in constraints.entries:
                if c.name not in merged:
                    merged[c.name] = (source, c)
                    continue
                first_source, first = merged[c.name]
                low, high = max(first.low, c.low), min(first.high, c.high)
                if low > high:
                    what = (f"lock {c.name} to different values ({format_value(first.low)} and {format_value(c.low)})"
                            if first.is_lock and c.is_lock else
                            f"leave no value of {c.name} ({first.kind} {first.text} and {c.kind} {c.text})")
                    raise ParameterError(f"{first_source} and {source} {what}; set it on the command line "
                                         f"(--lock {c.name}=VALUE or --range {c.name}=LO:HI)")
                if (low, high) != (first.low, first.high):
                    kind = "lock" if low == high and (first.is_lock or c.is_lock) else "range"
                    text = (f"{c.name}={format_value(low)}" if kind == "lock"
                            else f"{c.name}={format_value(low)}:{format_value(high)}")
                    merged[c.name] = (f"{first_source} and {source}", Constraint(
                        text=text, option=f"{first_source} and {source}", stem=c.stem, path=c.path, gene=c.gene,
                        low=low, high=high, kind=kind))
        return cls(tuple(c for _, c in merged.values()), tuple(keys.items()))


# How far up each role's reverb send is searched by default, dB (from off): the low end stays nearly
# dry (a reverberant kick or bass muddies the low end), the kit below the melodic parts. A choice,
# after common practice; ``--range STEM.reverb_send_db=LO:HI`` or ``'*.reverb_send_db=...'`` opens more.
ROLE_SEND_MAX_DB = {"kick": -24.0, "bass": -24.0, "drums": -10.0, "hihat": -16.0, "overheads": -10.0,
                    "room": -16.0, "toms": -8.0, "snare": -4.0}


def space_defaults(profile, stem_names: Sequence[str] = (), roles: Sequence[str] = ()) -> Constraints:
    """The reverb bus a run searches by default (issue 22): every stem's send from off up to its
    role's ``ROLE_SEND_MAX_DB`` (0 dB for the roles not listed), the return's decay over the genre's
    ``decay_s`` range, pre-delay, damping and high-pass over their full ranges; no entries when the
    profile sets no space target (``space_lu``). The run's own locks and ranges override these
    (:meth:`Constraints.overridden_by`): ``--lock '*.reverb_send_db=off'`` is a dry search."""
    if getattr(profile, "space_lu", None) is None:
        return Constraints()
    ranges = {f"*.{g.name}": (g.low, g.high) for g in REVERB_STEM_GENES}
    send = REVERB_STEM_GENES[0]
    for name, role in zip(stem_names, roles):
        if role in ROLE_SEND_MAX_DB and name != MASTER and "." not in name and "=" not in name:
            ranges[f"{name}.{send.name}"] = (send.low, ROLE_SEND_MAX_DB[role])
    for g in REVERB_MASTER_GENES:
        lo, hi = g.low, g.high
        if g.name == "reverb_decay_s" and getattr(profile, "decay_s", None) is not None:
            lo, hi = max(lo, profile.decay_s[0]), min(hi, profile.decay_s[1])
        ranges["master." + g.name.replace("reverb_", "reverb.", 1)] = (lo, hi)
    return Constraints.parse(ranges=ranges, range_option="the genre's space target")


# Roles whose pan is held near the centre by default (the low end mono, kick, snare and bass in the
# middle: De Man & Reiss, "A knowledge-engineered autonomous mixing system", AES 135th Conv., 2013);
# the bound is issue 21's for a stem that carries the low end (``choose.verify.CARRIER_MAX_PAN``).
CENTRED_ROLES = ("kick", "bass", "snare", "drums")
CENTRED_PAN = 0.2


SPACE_BY_DEFAULT = True  # the reverb bus in every run's defaults (issue 22)


def default_constraints(profile, stem_names: Sequence[str] = (), roles: Sequence[str] = (), *,
                        space: bool | None = None) -> Constraints:
    """The ranges a run with the reverb bus searches (``space``, default ``SPACE_BY_DEFAULT``; none
    without it), before its own locks and ranges (which override them,
    :meth:`Constraints.overridden_by`): the bus (:func:`space_defaults`) and the pan of the
    ``CENTRED_ROLES`` within +-``CENTRED_PAN`` (``--range kick.pan=-1:1`` frees one; without it the
    search moved the low end aside to win masking against the return)."""
    if not (SPACE_BY_DEFAULT if space is None else space):
        return Constraints()
    pans = {f"{n}.pan": (-CENTRED_PAN, CENTRED_PAN) for n, r in zip(stem_names, roles)
            if r in CENTRED_ROLES and n != MASTER and "." not in n and "=" not in n}
    centred = Constraints.parse(ranges=pans, range_option="the centred low end") if pans else Constraints()
    return Constraints(space_defaults(profile, stem_names, roles).entries + centred.entries)


# Dynamic unmasking's default ranges (issue 22, item 2) for each stem that has a key (``search.keys``):
# depth from off to UNMASK_DEFAULT_DEPTH_DB, the cut's frequency over the band where the keyed role and its
# key overlap most (``UNMASK_ROLE_HZ``: a vocal's presence against guitars, keys, pads and synths, a kick's
# thump against the bass), Q and times over their full ranges. A choice, after where Trackspacer and
# Neutron's Unmask act by default; ``--range STEM.unmask_hz=LO:HI`` moves one.
UNMASK_DEFAULT_DEPTH_DB = 9.0
UNMASK_ROLE_HZ = {"guitar": (800.0, 5000.0), "keys": (800.0, 5000.0), "piano": (800.0, 5000.0),
                  "pad": (800.0, 5000.0), "synth": (800.0, 5000.0), "bass": (60.0, 200.0)}
UNMASK_BY_DEFAULT = False  # dynamic unmasking in every run's defaults (issue 22: not yet; see the README)


def unmask_defaults(stem_names: Sequence[str], roles: Sequence[str], keyed: Sequence[bool]) -> Constraints:
    """The dynamic cuts a run searches by default: for each stem with a key (``keyed``), depth 0 dB to
    ``UNMASK_DEFAULT_DEPTH_DB``, the frequency over its role's ``UNMASK_ROLE_HZ`` (else the full range), Q
    and times over their full ranges; every other stem's cut off. The run's own locks and ranges override
    these (:meth:`Constraints.overridden_by`)."""
    ranges: dict[str, tuple[float, float]] = {}
    depth, hz = UNMASK_STEM_GENES[0], UNMASK_STEM_GENES[1]
    ok = [k and n != MASTER and "." not in n and "=" not in n for n, k in zip(stem_names, keyed)]
    if not any(ok):
        return Constraints()
    ranges[f"*.{depth.name}"] = (0.0, 0.0)
    for g in UNMASK_STEM_GENES[1:]:
        ranges[f"*.{g.name}"] = (g.low, g.high)
    for name, role, on in zip(stem_names, roles, ok):
        if on:
            ranges[f"{name}.{depth.name}"] = (0.0, UNMASK_DEFAULT_DEPTH_DB)
            lo, hi = UNMASK_ROLE_HZ.get(role, (hz.low, hz.high))
            ranges[f"{name}.{hz.name}"] = (max(lo, hz.low), min(hi, hz.high))
    return Constraints.parse(ranges=ranges, range_option="the default dynamic unmasking")


def names_the_cuts(constraints: Constraints) -> bool:
    """Whether a run's own locks and ranges name a dynamic-cut gene (then it searches the cuts with
    :func:`unmask_defaults` under them, while ``UNMASK_BY_DEFAULT`` is off)."""
    return any(c.gene.name.startswith("unmask_") for c in constraints.entries)


def names_the_bus(constraints: Constraints) -> bool:
    """Whether a run's own locks and ranges name a reverb gene (then it searches the bus with
    :func:`default_constraints`' space defaults under them, while ``SPACE_BY_DEFAULT`` is off)."""
    return any(c.gene.name.startswith("reverb_") for c in constraints.entries)


def constrain_table(table: GeneTable, stem_names: Sequence[str], locks: Sequence[str] | None = None,
                    ranges: Sequence[str] | None = None, *, lock_option: str = "--lock",
                    range_option: str = "--range") -> GeneTable:
    """Parse ``locks`` and ``ranges`` (strings as on the command line) and return ``table`` edited by
    them (``stem_names`` in the table's stem order): :meth:`Constraints.parse` then :meth:`Constraints.apply`."""
    return Constraints.parse(locks, ranges, lock_option=lock_option, range_option=range_option).apply(table, stem_names)
