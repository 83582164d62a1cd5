"""Listener descriptors of a mix: what a musician hears as brighter, wider, louder vocal, ...

Every descriptor is computed from :class:`evomix.core.features.Features`, for a whole batch at
once (``describe(features) -> {name: (pop,)}``), so the same code describes an exact render
(``engine.render.features_from_render``, pop = 1, every frame) and every member of a front in the
fast tier (``engine.batch.render_features``, a subset of frames: an approximation used only to
*choose* alternatives; labels and exported values come from exact renders).

Powers are the features' band powers: mean squares per 50 ms hop in critical bands after the whole
chain (full-scale sine = 0.5), shapes ``(pop, [stems,] 2, B, T)``.

========================  =====  ===============================================================
descriptor                unit   definition
========================  =====  ===============================================================
``centroid_hz``           Hz     spectral centroid of the mix: power-weighted mean band centre
                                 (Peeters 2004, CUIDADO "A large set of audio descriptors",
                                 sec. 6.1.1; De Man et al. 2014, ISMIR, "An analysis and
                                 evaluation of audio features for multitrack music mixtures").
                                 Higher = brighter (Grey & Gordon, JASA 63(5), 1978).
``tilt_db_per_oct``       dB/oct least-squares slope of band level (dB) against log2 band centre,
                                 50 Hz-16 kHz (Pestana, Ma, Reiss, Barbosa & Black, AES 135th
                                 conv. 2013, "Spectral characteristics of popular commercial
                                 recordings 1950-2010"); higher (less negative) = brighter.
``side_mid_db``           dB     side/mid energy ratio, S = (L - R)/2, M = (L + R)/2, from the
                                 channel powers and Re(L R*): |S|^2 = (P_L + P_R - 2X)/4,
                                 |M|^2 = (P_L + P_R + 2X)/4 (De Man et al. 2014; Tzanetakis,
                                 Jones & McNally, ISMIR 2007, stereo panning features).
                                 Higher = wider.
``correlation``           1      inter-channel correlation X / sqrt(P_L P_R), in [-1, 1], X the
                                 summed Re(L R*) (the correlation meter of IEC 60268-18).
``vocal_lu``              LU     K-weighted energy of the lead vocal stems (role ``vocal``, else
                                 ``lead``; never ``backing_vocal``) relative to the K-weighted energy
                                 of the mix (BS.1770-4 K-weighting applied per band, ungated); NaN
                                 without such a stem.
                                 Higher = vocal-forward.
``low_end_db``            dB     energy below ``LOW_END_HZ`` (120 Hz; a band straddling it counts
                                 pro rata on a log-frequency scale) relative to the total energy
                                 (the "low-frequency energy ratio" of De Man et al. 2014, after
                                 Pestana et al. 2013). Higher = warmer / heavier.
``punch_db``              dB     short-term contrast: 95th over 50th percentile of the 50 ms frame
                                 powers of the mix (a frame-level crest, after the "punch" of
                                 Fenton, Lee & Wakefield, AES 2017, which compares onset energy
                                 to the sustained level). Higher = punchier.
``crest_db``              dB     true peak over RMS of the master, dB (De Man et al. 2014; the
                                 RMS from the band powers, the peak from BS.1770-4 Annex 2).
``plr_db``                dB     peak-to-loudness ratio, true peak - integrated loudness
                                 (EBU R128 s1 / AES TD1004). Higher = more dynamic.
``lra_lu``                LU     loudness range (EBU Tech 3342); 0 for songs under 3 s.
``space_lu``              LU     the reverb return's loudness relative to the mix's, each gated
                                 as BS.1770-4 gates it (``objectives.genre.space_level_lu``);
                                 -40 for a dry mix.
                                 Higher = wetter.
``limiter_gr_db``         dB     how hard the master's true-peak limiter works: by how much the
                                 normalised master's true peak (BS.1770-4 Annex 2) exceeds the
                                 ceiling. Not compared for distinctness; the search's limiter
                                 budget (``--max-limiting``) bounds it.
========================  =====  ===============================================================

Audible difference: ``JND`` gives, per descriptor used for comparison, the step we treat as one
just-noticeable difference (level-type descriptors 1 dB, after the ~1 dB intensity JND for music
of Zwicker & Fastl, "Psychoacoustics", 3rd ed., sec. 7.1; centroid 0.1 octave (~7 %); width 1 dB;
PLR 1 dB; LRA 1 LU; the return 3 LU, after the 2-3 dB just-noticeable change in
direct-to-reverberant ratio near 10 dB of E. Larsen, N. Iyer, C. R. Lansing & A. S. Feng, "On the
minimum audible difference in direct-to-reverberant energy ratio", JASA 124(1), 2008).
:func:`jnd_distance` is the largest descriptor difference in JND units (Chebyshev distance): two
mixes are *near-identical* when it is below ``DISTINCT_JND`` (1.0), i.e. no descriptor differs by one
JND.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evomix.core.features import Features
from evomix.core.meter import k_weighting_power
from evomix.core.runtime import available_cores
from evomix.engine.batch import render_features
from objectives.genre import space_level_lu

LOW_END_HZ = 120.0
TILT_RANGE_HZ = (50.0, 16000.0)
LEAD_ROLES = ("vocal", "lead")  # the first role present is "the vocal" of vocal_lu (a backing vocal never is)
EPS = 1e-20

#: descriptors reported for each mix, in this order
DESCRIPTORS = ("centroid_hz", "tilt_db_per_oct", "side_mid_db", "correlation", "vocal_lu", "low_end_db",
               "punch_db", "crest_db", "plr_db", "lra_lu", "space_lu", "limiter_gr_db")
UNITS = {"centroid_hz": "Hz", "tilt_db_per_oct": "dB/oct", "side_mid_db": "dB", "correlation": "",
         "vocal_lu": "LU", "low_end_db": "dB", "punch_db": "dB", "crest_db": "dB", "plr_db": "dB", "lra_lu": "LU",
         "space_lu": "LU", "limiter_gr_db": "dB"}


#: one just-noticeable difference per compared descriptor (centroid in octaves: compared as log2 Hz)
JND = {"centroid_hz": 0.1, "side_mid_db": 1.0, "vocal_lu": 1.0, "low_end_db": 1.0, "punch_db": 1.0,
       "plr_db": 1.0, "lra_lu": 1.0, "space_lu": 3.0}
COMPARED = tuple(JND)
DISTINCT_JND = 1.0


def _band_fraction_below(edges_hz: np.ndarray, f_hz: float) -> np.ndarray:
    """Share (B,) of each band [edge_b, edge_b+1) below ``f_hz``, on a log-frequency scale."""
    lo, hi = np.maximum(edges_hz[:-1], 1.0), np.maximum(edges_hz[1:], 1.0)
    frac = (np.log(f_hz) - np.log(lo)) / np.maximum(np.log(hi) - np.log(lo), 1e-12)
    return np.clip(frac, 0.0, 1.0)


def _sr_for(features: Features) -> float:
    """A sample rate that holds the band grid (the K-weighting curve is read below Nyquist)."""
    return float(max(2.0 * float(features.band_edges_hz[-1]), 44100.0))


def describe(features: Features) -> dict:
    """Listener descriptors of every mix in ``features``: ``{name: (pop,) float64}`` (see module).

    Examples
    --------
    >>> d = describe(features_from_render(render, analysis.grid, analysis.roles))
    >>> d["centroid_hz"][0], d["vocal_lu"][0]
    """
    f = features
    hz = np.asarray(f.bands_hz, dtype=float)  # (B,)
    mix = f.mix_power.astype(np.float64)  # (pop, 2, B, T)
    cross = f.mix_cross.astype(np.float64)  # (pop, B, T)
    band = mix.sum(axis=(1, 3))  # (pop, 2, B, T) -> (pop, B)
    total = band.sum(axis=-1) + EPS  # (pop,)
    out = {}
    out["centroid_hz"] = (band * hz[None, :]).sum(axis=-1) / total  # Peeters 2004 eq. (centroid)
    sel = (hz >= TILT_RANGE_HZ[0]) & (hz <= TILT_RANGE_HZ[1])
    x = np.log2(hz[sel])
    level_db = 10.0 * np.log10(band[:, sel] + EPS)  # (pop, B')
    xc = x - x.mean()
    out["tilt_db_per_oct"] = (level_db - level_db.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    p_l, p_r = mix[:, 0].sum(axis=(1, 2)), mix[:, 1].sum(axis=(1, 2))  # (pop,)
    xs = cross.sum(axis=(1, 2))  # (pop,)
    side = np.maximum(p_l + p_r - 2.0 * xs, 0.0) / 4.0
    mid = np.maximum(p_l + p_r + 2.0 * xs, 0.0) / 4.0
    out["side_mid_db"] = 10.0 * np.log10((side + EPS) / (mid + EPS))
    out["correlation"] = xs / np.sqrt(p_l * p_r + EPS)
    kw = k_weighting_power(np.minimum(hz, _sr_for(f) / 2.0 * 0.999), int(_sr_for(f)))  # (B,) BS.1770-4 Annex 1
    roles = tuple(f.roles)
    lead = next((r for r in LEAD_ROLES if r in roles), None)
    if lead is None:
        out["vocal_lu"] = np.full(f.n_pop, np.nan)
    else:
        idx = [s for s, r in enumerate(roles) if r == lead]
        voc = f.stem_power[:, idx].astype(np.float64).sum(axis=(1, 2, 4))  # (pop, k, 2, B, T) -> (pop, B)
        out["vocal_lu"] = 10.0 * np.log10(((voc @ kw) + EPS) / ((band @ kw) + EPS))
    below = _band_fraction_below(np.asarray(f.band_edges_hz, dtype=float), LOW_END_HZ)  # (B,)
    out["low_end_db"] = 10.0 * np.log10((band @ below + EPS) / total)
    frame = mix.sum(axis=(1, 2))  # (pop, 2, B, T) -> (pop, T)
    p95, p50 = np.percentile(frame, 95, axis=-1), np.percentile(frame, 50, axis=-1)
    out["punch_db"] = 10.0 * np.log10((p95 + EPS) / (p50 + EPS))
    ms = mix.sum(axis=2).mean(axis=(1, 2))  # (pop, 2, T) -> (pop,): broadband mean square, both channels
    out["crest_db"] = np.asarray(f.true_peak_dbtp, dtype=float) - 10.0 * np.log10(ms + EPS)
    out["plr_db"] = np.asarray(f.plr_db, dtype=float)
    out["lra_lu"] = np.asarray(f.lra_lu, dtype=float)
    out["space_lu"] = space_level_lu(f)
    out["limiter_gr_db"] = np.asarray(f.limiter_gr_db, dtype=float)
    return {k: np.asarray(out[k], dtype=float).reshape(f.n_pop) for k in DESCRIPTORS}


def row(descriptors: dict, i: int = 0) -> dict:
    """Mix ``i`` of :func:`describe`'s output as a JSON-ready dict (NaN -> None), rounded."""
    out = {}
    for k in DESCRIPTORS:
        v = float(descriptors[k][i])
        out[k] = None if not np.isfinite(v) else round(v, 3 if k == "correlation" else 2)
    return out


def jnd_matrix(rows) -> np.ndarray:
    """Descriptor rows (list of dicts or ``describe`` output) -> (n, len(COMPARED)) in JND units.

    The centroid is compared as log2 Hz (octaves); a descriptor missing (None/NaN) in any row is
    left out of every comparison (set to 0).
    """
    if isinstance(rows, dict):
        n = len(next(iter(rows.values())))
        rows = [{k: rows[k][i] for k in rows} for i in range(n)]
    M = np.array([[np.nan if r.get(k) is None else float(r[k]) for k in COMPARED] for r in rows], dtype=float)
    M = M.reshape(len(rows), len(COMPARED))
    j = COMPARED.index("centroid_hz")
    M[:, j] = np.log2(np.maximum(M[:, j], 1.0))
    M = M / np.array([JND[k] for k in COMPARED])[None, :]
    M[:, ~np.all(np.isfinite(M), axis=0)] = 0.0
    return M


def jnd_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev distance in JND units between rows of :func:`jnd_matrix`: (n, d), (m, d) -> (n, m)."""
    return np.abs(np.atleast_2d(a)[:, None, :] - np.atleast_2d(b)[None, :, :]).max(axis=-1)


def fast_descriptors(analysis, table, genomes: np.ndarray, *, target_lufs: float, ceiling_dbtp: float,
                     block: int = 32, threads: int | None = None) -> dict:
    """Fast-tier descriptors of genomes (n, genes): ``{name: (n,)}``, rendered ``block`` at a time
    (``engine.batch.render_features``; the fast tier's subset of frames), the blocks on ``threads``
    threads (default: every core this process may use; the fast tier's kernels release the GIL,
    and each block's result is the same on any thread)."""
    genomes = np.atleast_2d(np.asarray(genomes, dtype=float))

    def one(start: int) -> dict:
        g = genomes[start : start + block]
        n = g.shape[0]
        if n == 1:
            g = np.concatenate([g, g])  # a block of one renders beside a copy (see evaluate.Problem)
        feats = render_features(analysis, table.decode(g, analysis.trim_db), target_lufs=target_lufs,
                                ceiling_dbtp=ceiling_dbtp)
        return {k: v[:n] for k, v in describe(feats).items()}

    starts = list(range(0, genomes.shape[0], block))
    if not starts:
        return {k: np.zeros(0) for k in DESCRIPTORS}
    workers = max(1, min(len(starts), available_cores() if threads is None else int(threads)))
    if workers == 1:
        parts = [one(a) for a in starts]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="evomix-describe") as pool:
            parts = list(pool.map(one, starts))
    return {k: np.concatenate([p[k] for p in parts]) for k in DESCRIPTORS}


def distinct_rule() -> str:
    """The near-identical rule in words (for front.json and warnings)."""
    steps = ", ".join(f"{k} {v:g} {'oct' if k == 'centroid_hz' else UNITS[k]}" for k, v in JND.items())
    return f"two mixes are distinct when at least one descriptor differs by >= {DISTINCT_JND:g} JND ({steps})"
