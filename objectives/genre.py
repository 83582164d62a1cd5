"""Genre similarity: how far the mix's long-term spectrum and stereo width are from a profile.

``genre = RMS_b(LTAS_mix(b) - LTAS_profile(b)) + 10 * mean_r |W_mix(r) - W_profile(r)|``

* LTAS: the mix's long-term average spectrum as 1/3-octave-equivalent band levels (dB),
  level-normalised (mean over 40 Hz–16 kHz removed), compared at the analysis band centres with
  the profile's 1/3-octave levels interpolated in log frequency. Unit: dB RMS.
* W: side / (mid + side) energy fraction in the low (< 150 Hz), mid (150 Hz–4 kHz) and high
  (> 4 kHz) regions; 0.1 of width difference costs as much as 1 dB of spectral difference.

Profiles are JSON files (``objectives/profiles/*.json``; the format is documented in
``GenreProfile``). The built-in spectra follow the trends measured by Pestana et al.,
"Spectral characteristics of popular commercial recordings 1950–2010", AES 135th Conv., 2013
(≈ −4.5…−5 dB/octave above ≈ 200 Hz on per-Hz FFT spectra, i.e. ≈ −1.5…−2 dB/octave in 1/3-octave band
levels; genre differences in the low end and the top octave);
PLR after Deruty & Tardieu, JAES 62(1/2), 2014; LRA after Skovenborg, AES 132nd Conv., 2012.
Each file's ``source`` field says which numbers are measured and which are modelled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from evomix.core.features import Features
from evomix.core.meter import gated_loudness
from evomix.errors import ParameterError
from objectives.base import Target, register
from objectives.spectrum import k_weights, long_term_spectrum_db, normalise_level, side_fraction

SPACE_FLOOR_LU = -40.0  # LU: a return quieter than this (or none: a dry mix) reads as this
SPACE_WEIGHT = 0.5  # genre dB per LU of return level outside the profile's space range: a choice
SPACE_ERROR_LU = 3.0  # LU: a return further than this outside the range is an error (infeasible), a choice
# (at 0 LU short searches found few feasible, distinct mixes: most random genomes miss a 7 LU window)


WIDTH_REGIONS_HZ = {"low": (20.0, 150.0), "mid": (150.0, 4000.0), "high": (4000.0, 20000.0)}


@dataclass(frozen=True)
class GenreProfile:
    """A mix target.

    name : str.  description : str.  source : str (citations).
    third_octave_hz : (N,) band centres, Hz.  ltas_db : (N,) level-normalised 1/3-octave levels, dB.
    plr_db : typical peak-to-loudness ratio, dB.  lra_lu : typical loudness range, LU.
    loudness_lufs : typical loudness of commercial releases, LUFS (informative).
    width : side fraction per region {"low", "mid", "high"} in [0, 1].
    vocal_margin_db : how far the lead sits above the loudest other stem, dB.
    role_levels_db : {role: (low, high)}: where each role's stems sit relative to the lead, dB
        (gated levels; ``objectives.balance.role_level_penalty``); empty: the genre sets none.
    space_lu : (low, high) LU or None: where the reverb return sits relative to the mix
        (:func:`space_level_lu`); None: the genre sets no space target.
    decay_s : (low, high) s or None: the return's decay (RT60) range the search explores.
    """

    name: str
    description: str
    source: str
    third_octave_hz: np.ndarray
    ltas_db: np.ndarray
    plr_db: float
    lra_lu: float
    loudness_lufs: float
    width: dict
    vocal_margin_db: float = 0.0
    role_levels_db: dict = field(default_factory=dict)
    space_lu: tuple | None = None
    decay_s: tuple | None = None

    @classmethod
    def from_dict(cls, d: dict, *, origin: str) -> GenreProfile:
        """A profile from its JSON form (the fields above; ``description``, ``source``,
        ``loudness_lufs`` (-14) and ``vocal_margin_db`` (0) may be missing).

        Raises
        ------
        ParameterError
            Naming ``origin`` (a file or profile name) on a missing or malformed field, bands
            that are not rising or not as many as the levels, or non-finite numbers.
        """
        try:
            hz = np.asarray(d["third_octave_hz"], dtype=float)
            ltas = np.asarray(d["ltas_db"], dtype=float)
            prof = cls(
                name=str(d["name"]),
                description=str(d.get("description", "")),
                source=str(d.get("source", "")),
                third_octave_hz=hz,
                ltas_db=ltas,
                plr_db=float(d["plr_db"]),
                lra_lu=float(d["lra_lu"]),
                loudness_lufs=float(d.get("loudness_lufs", -14.0)),
                width={k: float(d["width"][k]) for k in WIDTH_REGIONS_HZ},
                vocal_margin_db=float(d.get("vocal_margin_db", 0.0)),
                role_levels_db={str(r): (float(lo), float(hi)) for r, (lo, hi) in d.get("role_levels_db", {}).items()},
                space_lu=None if d.get("space_lu") is None else tuple(float(v) for v in d["space_lu"]),
                decay_s=None if d.get("decay_s") is None else tuple(float(v) for v in d["decay_s"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ParameterError(f"{origin}: not a valid genre profile (missing or bad field {e})") from None
        if hz.shape != ltas.shape or hz.ndim != 1 or hz.size < 3 or np.any(np.diff(hz) <= 0):
            raise ParameterError(
                f"{origin}: third_octave_hz and ltas_db must be equal-length lists, frequencies rising"
            )
        if not (np.all(np.isfinite(ltas)) and np.isfinite(prof.plr_db) and np.isfinite(prof.lra_lu)):
            raise ParameterError(f"{origin}: profile contains non-finite numbers")
        for role, (lo, hi) in prof.role_levels_db.items():
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ParameterError(f"{origin}: role_levels_db[{role!r}] must be [low, high] dB with low <= high, "
                                     f"got [{lo:g}, {hi:g}]")
        for key, low_bound in (("space_lu", -60.0), ("decay_s", 0.0)):
            v = getattr(prof, key)
            if v is not None and not (len(v) == 2 and np.all(np.isfinite(v)) and low_bound < v[0] <= v[1]):
                raise ParameterError(f"{origin}: {key} must be [low, high] with {low_bound:g} < low <= high, "
                                     f"got {list(v)}")
        return prof

    def to_dict(self) -> dict:
        """The JSON form read by :meth:`from_dict` (frequencies and levels rounded to 0.01)."""
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "third_octave_hz": [round(float(f), 2) for f in self.third_octave_hz],
            "ltas_db": [round(float(v), 2) for v in self.ltas_db],
            "plr_db": self.plr_db, "lra_lu": self.lra_lu, "loudness_lufs": self.loudness_lufs,
            "width": dict(self.width), "vocal_margin_db": self.vocal_margin_db,
            **({"role_levels_db": {r: list(v) for r, v in self.role_levels_db.items()}} if self.role_levels_db else {}),
            **({"space_lu": list(self.space_lu)} if self.space_lu is not None else {}),
            **({"decay_s": list(self.decay_s)} if self.decay_s is not None else {}),
        }


def builtin_genres() -> list[str]:
    """Names of the built-in profiles, sorted."""
    files = resources.files("objectives").joinpath("profiles").iterdir()
    return sorted(Path(f.name).stem for f in files if f.name.endswith(".json"))


def load_profile(name_or_path: str | Path) -> GenreProfile:
    """A built-in profile by name, or a profile JSON file by path.

    Raises
    ------
    ParameterError
        Unknown name (lists the choices), unreadable file, or invalid content.
    """
    text = str(name_or_path)
    if text in builtin_genres():
        raw = resources.files("objectives").joinpath("profiles", f"{text}.json").read_text()
        return GenreProfile.from_dict(json.loads(raw), origin=f"profile '{text}'")
    path = Path(text)
    if path.suffix.lower() == ".json" or path.exists():
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ParameterError(f"{path}: no such profile file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ParameterError(f"{path}: cannot read profile ({e})") from None
        return GenreProfile.from_dict(d, origin=str(path))
    raise ParameterError(f"--genre: unknown genre '{text}'; choose from {', '.join(builtin_genres())}")


def profile_on_bands(profile: GenreProfile, bands_hz: np.ndarray) -> np.ndarray:
    """The profile's level-normalised LTAS interpolated (log frequency) at ``bands_hz``, dB."""
    v = np.interp(np.log(bands_hz), np.log(profile.third_octave_hz), profile.ltas_db)
    return normalise_level(v, bands_hz)


def width_by_region(features: Features) -> dict:
    """Side fraction of the mix per width region, {region: (pop,)}."""
    out = {}
    for r, (lo, hi) in WIDTH_REGIONS_HZ.items():
        sel = (features.bands_hz >= lo) & (features.bands_hz < hi)
        p = features.mix_power[:, :, sel].sum(axis=(1, 2, 3))  # (pop,)
        c = features.mix_cross[:, sel].sum(axis=(1, 2))
        out[r] = side_fraction(p, c)
    return out


def spectral_distance_db(features: Features, profile: GenreProfile) -> np.ndarray:
    """RMS difference (dB) of level-normalised 1/3-octave LTAS, 40 Hz–16 kHz, (pop,)."""
    sel = (features.bands_hz >= 40.0) & (features.bands_hz <= 16000.0)
    mix = normalise_level(long_term_spectrum_db(features), features.bands_hz)[:, sel]
    ref = profile_on_bands(profile, features.bands_hz)[sel]
    return np.sqrt(((mix - ref[None, :]) ** 2).mean(axis=1))


def space_level_lu(features: Features) -> np.ndarray:
    """The reverb return's loudness relative to the mix's, LU, (pop,), at least ``SPACE_FLOOR_LU``
    (a dry mix reads as the floor). With the features' 400 ms blocks (``return_block_k``,
    ``mix_block_k``) each is gated as BS.1770-4 gates it (``evomix.core.meter.gated_loudness``), as
    a meter reads the exported return and master; otherwise the ratio of their K-weighted energies
    (BS.1770-4 K-weighting at the band centres, channels, bands and frames summed), ungated."""
    n_pop = features.mix_power.shape[0]
    if features.return_power is None:
        return np.full(n_pop, SPACE_FLOOR_LU)
    if features.return_block_k is not None and features.mix_block_k is not None:
        ret = gated_loudness(np.asarray(features.return_block_k, dtype=np.float64)[:, None, :])
        mix = gated_loudness(np.asarray(features.mix_block_k, dtype=np.float64)[:, None, :])
        lu = np.asarray(ret, dtype=float) - np.asarray(mix, dtype=float)
        return np.maximum(np.nan_to_num(lu, nan=SPACE_FLOOR_LU, neginf=SPACE_FLOOR_LU), SPACE_FLOOR_LU)
    k = k_weights(features)  # (B,)
    ret = np.einsum("pcbt,b->p", features.return_power.astype(np.float64), k)
    mix = np.einsum("pcbt,b->p", features.mix_power.astype(np.float64), k)
    with np.errstate(divide="ignore"):
        lu = 10.0 * np.log10(np.maximum(ret, 1e-30) / np.maximum(mix, 1e-30))
    return np.maximum(lu, SPACE_FLOOR_LU)


def space_penalty(features: Features, profile: GenreProfile) -> np.ndarray:
    """``SPACE_WEIGHT`` per LU of :func:`space_level_lu` outside ``profile.space_lu``, (pop,) >= 0;
    0 everywhere when the profile sets no space target."""
    if profile.space_lu is None:
        return np.zeros(features.mix_power.shape[0])
    lo, hi = profile.space_lu
    s = space_level_lu(features)
    return SPACE_WEIGHT * np.maximum(np.maximum(lo - s, s - hi), 0.0)


def space_errors_lu(features: Features, target: Target) -> np.ndarray:
    """How far (LU) each mix's return lies more than ``SPACE_ERROR_LU`` outside the profile's
    ``space_lu``, (pop,) >= 0: 0 inside the range and its margin, and everywhere when the run has no
    reverb bus to set (``target.space`` False) or the profile no space target. The search treats a
    positive value as a constraint violation (``evomix.search.problem``): a mix drowned in reverb,
    or bone dry where the genre wants space, is an error, not an alternative."""
    prof = target.profile
    if not target.space or prof.space_lu is None:
        return np.zeros(features.mix_power.shape[0])
    lo, hi = prof.space_lu
    s = space_level_lu(features)
    return np.maximum(np.maximum(lo - s, s - hi) - SPACE_ERROR_LU, 0.0)


@register("genre", unit="dB", description="long-term spectrum and stereo width distance to the genre profile")
def genre(features: Features, target: Target) -> np.ndarray:
    """Distance of the mix's long-term spectrum and stereo width from the genre profile.

    ``RMS_b(LTAS_mix(b) - LTAS_profile(b)) + 10 mean_r |W_mix(r) - W_profile(r)|``: the
    :func:`spectral_distance_db` of the level-normalised 1/3-octave spectra over 40 Hz-16 kHz,
    plus the mean absolute difference of the side fractions in the ``WIDTH_REGIONS_HZ``.

    Source: P. D. Pestana et al., "Spectral characteristics of popular commercial recordings
    1950-2010", AES 135th Conv., 2013 (genre LTAS, the basis of the built-in profiles). The RMS
    over bands and the weight 10 of the width term (0.1 of width costs as much as 1 dB of
    spectrum) are a choice. With a reverb bus to set (``target.space``) it adds
    :func:`space_penalty`: the return's level re the mix outside the profile's ``space_lu`` (centred
    after Pestana & Reiss, AES 53rd Conf., 2014: reverb about 9 LU under the dry signal).

    Parameters
    ----------
    features : Features
        A batch of ``pop`` mixes. Reads ``mix_power`` (pop, 2, B, T) and ``mix_cross``
        (pop, B, T), float32 mean square per 50 ms hop (full-scale sine = 0.5), and the band
        layout ``bands_hz`` (B,), ``band_edges_hz`` (B + 1,) in Hz.
    target : Target
        ``profile``: a :class:`GenreProfile` (``third_octave_hz``, ``ltas_db``, ``width``).

    Returns
    -------
    genre_db : np.ndarray, shape (pop,), float64, dB >= 0
        0 for a mix whose spectral shape and width equal the profile's; independent of the
        mix's overall level.
    """
    prof = target.profile
    w = width_by_region(features)
    width_term = np.mean([np.abs(w[r] - prof.width[r]) for r in WIDTH_REGIONS_HZ], axis=0)
    out = spectral_distance_db(features, prof) + 10.0 * width_term
    if target.space:
        out = out + space_penalty(features, prof)
    return out
