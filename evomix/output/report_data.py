"""What the listening report needs, measured while the mix is made and saved in the output folder.

Three things come from here (``evomix.output.report`` draws the page from them and needs nothing else):

* :func:`features_summary`: from one rendered mix's :class:`~evomix.core.features.Features`, its
  long-term spectrum (level-normalised 1/3-octave-equivalent band levels, dB, as the ``genre``
  objective compares them), its masking matrix (who masks whom, dB, ``objectives.masking``) and
  its masking profile over frequency (dB per band);
* :func:`render_before`: the "before" of the A/B, the plain equal-gain sum of the raw stems
  (no trim, unity faders, centre pan, no EQ, no compression), through the exact tier's master
  chain so that it is normalised to the same integrated loudness as the alternatives (ITU-R
  BS.1770-4) and true-peak limited to the same ceiling;
* :func:`run_record`: ``run.json``, the record of a run (version, command line, seed, settings,
  phase timings, and per generation the front size, best objectives and hypervolume when the
  search's logbook has it).

Sources: ITU-R BS.1770-4 (loudness), EBU Tech 3342 (LRA); the masking model of
``objectives.masking`` (Hafezi & Reiss, JAES 63(5), 2015; Johnston, IEEE JSAC 6(2), 1988).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from evomix import __version__
from evomix.core.features import Features
from evomix.engine.bands import BandGrid, band_powers_chunked
from evomix.engine.dsp.pan import pan_gains
from evomix.engine.render import ExactRender, SummedStrips, features_from_render, finish_master
from evomix.io.spill import SpilledArray
from evomix.search.genome import Params
from objectives.genre import profile_on_bands
from objectives.masking import masking_by_band, masking_matrix, masking_per_stem
from objectives.spectrum import long_term_spectrum_db, normalise_level

REPORT_DATA_FORMAT = "evomix-report-data/1"
RUN_FORMAT = "evomix-run/1"


def _rounded(a, nd: int = 3) -> list:
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def features_summary(feats: Features) -> dict:
    """The report's view of one rendered mix (pop = 1 Features, the exact tier).

    Returns
    -------
    dict with ``spectrum_db`` (B,) level-normalised long-term 1/3-octave-equivalent levels, dB
    (mean over 40 Hz-16 kHz removed); ``masking_matrix_db`` (stems, stems), row i = masking of
    stem i split over its maskers j, dB (rows sum to ``masking_per_stem_db``);
    ``masking_per_stem_db`` (stems,); ``masking_by_band_db`` (B,), role-weighted masking per band, dB;
    ``integrated_lufs``, ``loudness_range_lu``, ``true_peak_dbtp``, ``plr_db``.
    """
    spec = normalise_level(long_term_spectrum_db(feats), feats.bands_hz)[0]  # (B,)
    lufs, tp = float(feats.loudness_lufs[0]), float(feats.true_peak_dbtp[0])
    return {
        "spectrum_db": _rounded(spec, 2),
        "masking_matrix_db": _rounded(masking_matrix(feats)[0], 3),
        "masking_per_stem_db": _rounded(masking_per_stem(feats)[0], 3),
        "masking_by_band_db": _rounded(masking_by_band(feats)[0], 3),
        "integrated_lufs": round(lufs, 3),
        "loudness_range_lu": round(float(feats.lra_lu[0]), 3),
        "true_peak_dbtp": round(tp, 3),
        "plr_db": round(tp - lufs, 3),
    }


def before_params(n_stems: int) -> Params:
    """Params (pop = 1) of the plain equal-gain sum: trim 0 dB, fader 0 dB, centre pan (constant
    power for mono stems, unity for stereo ones), every EQ gain 0 dB, compressors at ratio 1, and
    the master's shelves and compressor neutral (the high-pass at its lowest, 20 Hz, is not applied:
    :func:`before_strips` sums the raw stems)."""
    one = np.ones((1, n_stems))
    return Params(
        trim_db=0 * one, gain_db=0 * one, pan=0 * one, highpass_hz=20.0 * one,
        low_shelf_hz=150.0 * one, low_shelf_db=0 * one, peak_hz=1000.0 * one, peak_db=0 * one, peak_q=one,
        high_shelf_hz=6000.0 * one, high_shelf_db=0 * one, comp_threshold_db=0 * one, comp_ratio=one,
        comp_attack_ms=10.0 * one, comp_release_ms=150.0 * one,
        master_low_shelf_db=np.zeros(1), master_high_shelf_db=np.zeros(1),
        master_comp_threshold_db=np.zeros(1), master_comp_ratio=np.ones(1),
    )


def before_strips(session, grid: BandGrid, *, analysis=None, block: int = 1 << 20) -> SummedStrips:
    """Stage 1 of the "before": the plain sum of the raw stems, each panned centre (constant power
    for a mono stem, unity for a stereo one: ``engine.dsp.pan``), in float64, stem by stem in
    ``block``-sample pieces (no stem-length temporary); and each stem's band powers, which for a
    raw centre-panned stem are the analysis' own ``band_power`` (measured the same way, float32),
    else measured here. :func:`finish_master` takes it from there (its master compressor at
    ratio 1 is a gain of exactly 1)."""
    n, n_stems = session.n_samples, session.n_stems
    centre = pan_gains(np.zeros(n_stems), np.asarray(session.is_mono))  # (stems, 2)
    mix = np.zeros((2, n))
    power = None if analysis is not None else np.empty((n_stems, 2, grid.n_bands, grid.n_frames(n)), np.float32)
    for s in range(n_stems):
        x = session.stem(s)  # (2, samples) float32
        for a in range(0, n, block):
            mix[:, a : a + block] += x[:, a : a + block] * centre[s][:, None]
        if power is not None:
            power[s] = band_powers_chunked(x * centre[s][:, None].astype(np.float32), grid)
    power = np.array(analysis.band_power) if analysis is not None else power
    return SummedStrips(mix, None, power, grid, before_params(n_stems), 0, int(session.sr))


def finish_before(strips, grid: BandGrid, roles, *, target_lufs: float, ceiling_dbtp: float,
                  threads: int = 1) -> tuple[ExactRender, dict]:
    """Stage 2: the master chain to ``target_lufs`` / ``ceiling_dbtp``; (render with a float32
    master waiting in a temporary file, ``evomix.io.spill``; :func:`features_summary`)."""
    r = finish_master(strips, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, threads=threads)
    summary = features_summary(features_from_render(r, grid, roles))
    return dataclasses.replace(r, mix=SpilledArray(r.mix, np.float32), stem_power=None), summary


def render_before(session, grid: BandGrid, *, target_lufs: float, ceiling_dbtp: float,
                  threads: int = 1) -> tuple[ExactRender, dict]:
    """The "before": the equal-gain sum of the raw stems at ``target_lufs`` (LUFS) under
    ``ceiling_dbtp`` (dBTP), by the exact tier (``render_exact``: normalisation and look-ahead
    true-peak limiter, iterated to within 0.05 LU of the target), and its :func:`features_summary`.
    ``grid`` is the session's analysis grid (``engine.bands.band_grid(sr)``). ``evomix.api.mix``
    renders it in the pipeline of the alternatives' renders (:func:`before_strips`,
    :func:`finish_before`)."""
    return finish_before(before_strips(session, grid), grid, session.roles,
                         target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, threads=threads)


def report_data(grid: BandGrid, profile, names, roles, before: dict | None, alternatives: dict) -> dict:
    """``report-data.json``: band centres (Hz), the genre target on them (dB, level-normalised as the
    ``genre`` objective compares it), the stems, and a :func:`features_summary` per mix
    (``before`` and ``alternatives`` {"alt-01": summary, ...}; a missing one is left out)."""
    return {
        "format": REPORT_DATA_FORMAT,
        "evomix_version": __version__,
        "bands_hz": _rounded(grid.centres_hz, 2),
        "genre": profile.name,
        "genre_target_db": _rounded(profile_on_bands(profile, grid.centres_hz), 2),
        "stems": list(names),
        "roles": list(roles),
        "before": before,
        "alternatives": {k: v for k, v in alternatives.items() if v is not None},
    }


def generation_records(logbook, names, weights, hypervolumes=None) -> list[dict]:
    """Per generation of the search's DEAP logbook: ``gen``, ``evaluations``, ``front_size``,
    ``best`` {objective: lowest value in the population, unweighted, in the objective's unit} and
    ``hypervolume`` when the logbook records one (key ``hypervolume`` or ``hv``) or
    ``hypervolumes`` (one value per generation) gives it."""
    w = np.asarray([weights[n] for n in names], dtype=float)
    hv = list(hypervolumes) if hypervolumes is not None and np.ndim(hypervolumes) == 1 else []
    out = []
    for k, rec in enumerate(logbook):
        d = {"gen": int(rec["gen"]), "evaluations": int(rec.get("evals", 0)), "front_size": int(rec.get("front", 0))}
        mins = rec.get("min")
        if mins is not None:
            raw = np.atleast_1d(np.asarray(mins, dtype=float)) / w
            d["best"] = {n: round(float(v), 5) for n, v in zip(names, raw)}
        for key in ("hypervolume", "hv"):
            if rec.get(key) is not None:
                d["hypervolume"] = float(rec[key])
                break
        else:
            if k < len(hv) and hv[k] is not None:
                d["hypervolume"] = float(hv[k])
        out.append(d)
    return out


def run_record(*, command, seed: int, settings: dict, timings_s: dict, generations: list, genre: str,
               objectives, weights: dict, target_lufs: float, ceiling_dbtp: float, stems: dict) -> dict:
    """``run.json``: what was run and how long each phase took (s).

    command : the command line (``sys.argv``) for the CLI, or ``{"api": "evomix.mix", "arguments": {...}}``.
    """
    return {
        "format": RUN_FORMAT,
        "evomix_version": __version__,
        "command": command,
        "seed": int(seed),
        "genre": genre,
        "objectives": list(objectives),
        "weights": dict(weights),
        "target_lufs": float(target_lufs),
        "ceiling_dbtp": float(ceiling_dbtp),
        "stems": stems,
        "settings": dict(settings),
        "timings_s": dict(timings_s),
        "generations": generations,
    }
