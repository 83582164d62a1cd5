"""A reference mix of the same stems: read it onto the analysis grid and fit its balance.

The fit models the reference as a power sum of the (centre-panned) stems with one non-negative
weight per stem and channel, ``ref[c, b, t] ≈ sum_s w[s, c] P[s, c, b, t]``, solved per channel by
non-negative least squares over every band and frame (scipy ``nnls``). The weights give each
stem's gain (dB, relative: the reference's overall level is arbitrary) and pan. How well the model
explains the reference decides whether it is a mix of the same song:
``explained = 1 - ||ref - fit||^2 / ||ref||^2`` on dB-compressed envelopes' correlation.

How wet the reference is (issue 22, :func:`reference_return_lu`): the dry part of the reference is
the stems times one *real* gain per stem, channel and frequency region (the mix's faders, pans and
a broad EQ: no delay, no phase), fitted by least squares on the complex short-time spectra of the
same frames; what the dry model cannot explain is the reverb (its random phase response cannot be
matched by real gains), read as the residual's K-weighted level re the reference's, each gated
relative to its own mean as BS.1770-4 gates blocks. Measured on synthetic references (the tests'
stems mixed with gains, plus a stereo convolution reverb of decaying noise, not evomix's FDN):
within 1 LU of the reverb's true level for RT60 0.8-3 s and -20..-8 LU
(``tests/test_reference_space.py``). What it cannot tell from reverb: processing that changes phase
or is not a gain (a +6 dB peaking EQ on one stem of four reads as reverb at about -19 LU in a dry
reference; compression likewise) and a reference that is not sample-aligned with the stems (one
sample late reads -20 LU). A complex gain per band would absorb the EQ but also most of the reverb
of steady, repetitive parts (measured: 2-7 LU low), so the real gains are a choice.

Source: least-squares gain estimation of a mixture from its sources, as in reverse-engineering of
mixes (D. Barchiesi, J. Reiss, "Reverse engineering of a mix", JAES 58(7/8), 2010; C. L. Lawson,
R. J. Hanson, *Solving Least Squares Problems*, 1974, for NNLS); the residual of a linear model
of the dry path as the diffuse part (the idea behind coherent-to-diffuse and reverberation
estimation, e.g. E. A. P. Habets, "Single- and multi-microphone speech dereverberation using
spectral enhancement", PhD thesis, TU Eindhoven, 2007, ch. 3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from evomix.core.meter import k_weighting_power
from evomix.engine.analysis import Analysis
from evomix.engine.bands import band_powers, frame_spectra
from evomix.engine.dsp.pan import pan_gains
from evomix.errors import AudioFileError
from evomix.io.audio import Session, read_audio

FIT_REGION_EDGES_HZ = (250.0, 4000.0)  # the fit allows each stem a different gain below/between/above
FIT_BIN_MERGE = 2  # FFT bins merged per fit row (10 Hz bins -> 20 Hz)
FIT_MAX_FRAMES = 200  # frames (evenly spaced) used by the fit
SAME_SONG_CORRELATION = 0.8  # dB-envelope correlation above which a reference is the same song
EQ_FIT_GAIN = 0.005  # per-region gains are used only if they explain the reference this much better
FIT_FLOOR = 1e-12  # the fit's floor on energies and amplitude gains: its own value, not core.constants.POWER_FLOOR


@dataclass(frozen=True)
class ReferenceFit:
    """A reference mix on the analysis grid and the stem balance that explains it.

    power : (2, B, T) band powers of the reference (level as in the file).
    gain_db : (stems,) fitted total gain of each stem (trim + fader) relative to the raw file, dB,
        shifted so that the loudest audible stem is at 0 dB (only differences are meaningful).
    pan : (stems,) fitted pan in [-1, 1].
    correlation : Pearson correlation of the dB envelopes of fit and reference (1 = explained).
    same_song : correlation >= SAME_SONG_CORRELATION.
    return_lu : the reference's reverb (what a dry model of the stems cannot explain) re the
        reference, LU (:func:`reference_return_lu`); None when not estimated.
    """

    path: Path
    power: np.ndarray
    gain_db: np.ndarray
    pan: np.ndarray
    correlation: float
    same_song: bool
    return_lu: float | None = None


def read_reference(path: str | Path, session: Session) -> np.ndarray:
    """The reference audio as (2, samples) at the session rate, cut or zero-padded to its length."""
    from scipy.signal import resample_poly
    path = Path(path)
    x, sr = read_audio(path)
    if sr != session.sr:
        g = np.gcd(int(sr), int(session.sr))
        x = resample_poly(x, session.sr // g, sr // g, axis=-1)
    if x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0) * pan_gains(np.zeros(1), np.array([True]))[0][:, None]
    out = np.zeros((2, session.n_samples))
    n = min(session.n_samples, x.shape[-1])
    out[:, :n] = x[:, :n]
    if not np.any(out):
        raise AudioFileError(f"{path}: the reference is silent over the stems' duration")
    return out


def _fine_powers(x: np.ndarray, analysis: Analysis, frames: np.ndarray) -> np.ndarray:
    """Power per (merged) FFT bin and frame: (..., 2, F, T') float32, bins 20 Hz .. 16 kHz merged
    in pairs (about 20 Hz wide), on the frames ``frames`` of the analysis grid."""
    grid = analysis.grid
    spec = frame_spectra(x, grid)[..., frames, :]  # (..., 2, T', bins)
    p = spec.real**2 + spec.imag**2
    freqs = np.fft.rfftfreq(grid.n_fft, 1.0 / grid.sr)
    keep = np.nonzero((freqs >= 20.0) & (freqs <= min(16000.0, 0.45 * grid.sr)))[0]
    keep = keep[: keep.size // FIT_BIN_MERGE * FIT_BIN_MERGE]
    p = p[..., keep].reshape(p.shape[:-1] + (-1, FIT_BIN_MERGE)).sum(axis=-1)  # (..., 2, T', F)
    return np.swapaxes(p, -1, -2).astype(np.float32), freqs[keep].reshape(-1, FIT_BIN_MERGE).mean(axis=1)


def _nnls_fit(P: np.ndarray, R: np.ndarray, region: np.ndarray, n_reg: int):
    """Non-negative weights per stem and channel explaining R (2, F, T') by stems P (s, 2, F, T').

    Each stem may have a different weight in each of ``n_reg`` frequency regions (``region`` (F,));
    the returned per-channel weight (s, 2) is the region weights averaged with the stem's energy
    per region. Also returns the correlation of fit and reference in dB over audible cells.
    """
    n_stems = P.shape[0]
    w = np.zeros((n_stems, n_reg, 2))
    corr = np.zeros(2)
    scale = float(R.max())
    for c in range(2):  # rows = bins x frames, columns = stems x regions
        cols = np.zeros((n_stems, n_reg) + R.shape[1:])
        for r in range(n_reg):
            cols[:, r, region == r] = P[:, c, region == r]
        A = cols.reshape(n_stems * n_reg, -1).T / scale  # (F*T', s*R)
        b = R[c].ravel().astype(float) / scale
        sol, _ = nnls(A, b)  # plain power-domain least squares (measured: re-weighting rows biases quiet stems)
        w[:, :, c] = sol.reshape(n_stems, n_reg)
        fit_c = A @ sol
        cells = b > 1e-6 * b.max()
        corr[c] = np.corrcoef(10 * np.log10(np.maximum(fit_c[cells], 1e-12)), 10 * np.log10(b[cells]))[0, 1]
    energy = np.stack([P[:, :, region == r].sum(axis=(1, 2, 3)) for r in range(n_reg)], axis=1)  # (s, R)
    share = energy / np.maximum(energy.sum(axis=1, keepdims=True), FIT_FLOOR)
    return (w * share[:, :, None]).sum(axis=1), float(np.nan_to_num(corr).mean())


def _spectra_at(x: np.ndarray, grid, frames: np.ndarray) -> np.ndarray:
    """Short-time spectra of ``x`` (2, samples) at the analysis frames ``frames`` only (the same
    framing as ``engine.bands.frame_spectra``): (2, T', bins) complex64."""
    hop, n_fft = grid.hop, grid.n_fft
    pad = np.zeros(x.shape[:-1] + ((int(frames.max()) + 2) * hop + n_fft,), dtype=np.float32)
    n = min(x.shape[-1], pad.shape[-1] - hop)
    pad[..., hop : hop + n] = x[..., :n]
    idx = frames[:, None] * hop + np.arange(n_fft)[None, :]  # (T', n_fft)
    win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    return np.fft.rfft(pad[..., idx] * win, axis=-1).astype(np.complex64)


RETURN_GATE = 0.1  # frames under this fraction of the mean K-weighted power are gated out (-10 dB, as BS.1770-4)


def reference_return_lu(ref_audio: np.ndarray, session: Session, analysis: Analysis, frames: np.ndarray) -> float:
    """The reference's reverb re the reference, LU: the K-weighted, gated level of what the stems
    through one real gain per stem, channel and region (``FIT_REGION_EDGES_HZ``) cannot explain
    (module docstring). ``frames``: the analysis frames to use (T' >> stems x regions)."""
    grid = analysis.grid
    freqs = np.fft.rfftfreq(grid.n_fft, 1.0 / grid.sr)
    region = np.searchsorted(FIT_REGION_EDGES_HZ, freqs)  # (K,)
    Y = _spectra_at(ref_audio.astype(np.float32), grid, frames)  # (2, T', K)
    X = np.stack([_spectra_at(session.stem(s), grid, frames) for s in range(session.n_stems)])  # (s, 2, T', K)
    residual = np.zeros(Y.shape, dtype=np.float64)  # (2, T', K) power
    for c in range(2):
        for r in np.unique(region):
            k = region == r
            A = X[:, c][:, :, k].reshape(X.shape[0], -1).T  # (T' K_r, s) complex
            b = Y[c][:, k].ravel()
            gains, *_ = np.linalg.lstsq(np.concatenate([A.real, A.imag]).astype(np.float64),
                                        np.concatenate([b.real, b.imag]).astype(np.float64), rcond=None)
            e = b - A @ gains.astype(np.float32)
            power = e.real.astype(np.float64) ** 2 + e.imag.astype(np.float64) ** 2
            residual[c][:, k] = power.reshape(len(frames), -1)
    kw = k_weighting_power(freqs, grid.sr)  # (K,)
    ref_k = ((Y.real.astype(np.float64) ** 2 + Y.imag.astype(np.float64) ** 2) * kw).sum(axis=(0, 2))  # (T',)
    res_k = (residual * kw).sum(axis=(0, 2))  # (T',)

    def gated(p):
        return float(p[p > RETURN_GATE * p.mean()].mean())

    return 10.0 * np.log10(max(gated(res_k), FIT_FLOOR) / max(gated(ref_k), FIT_FLOOR))


def fit_reference(path: str | Path, session: Session, analysis: Analysis) -> ReferenceFit:
    """Read ``path`` and fit per-stem gains and pans to it (see module docstring).

    The fit runs on fine spectra (about 20 Hz resolution, at most ``FIT_MAX_FRAMES`` frames) so that
    stems playing in the same critical band but on different partials are still told apart.
    """
    ref_audio = read_reference(path, session)
    ref, _ = band_powers(ref_audio, analysis.grid)  # (2, B, T) for the reference objective
    n_frames = ref.shape[-1]
    frames = np.unique(np.linspace(0, n_frames - 1, min(n_frames, FIT_MAX_FRAMES)).round().astype(int))
    n_stems = session.n_stems
    centre = pan_gains(np.zeros(n_stems), np.asarray(session.is_mono)).astype(np.float32)  # (s, 2)
    R, fine_hz = _fine_powers(ref_audio.astype(np.float32), analysis, frames)  # (2, F, T')
    P = np.stack([_fine_powers(session.stem(s) * centre[s][:, None], analysis, frames)[0]
                  for s in range(n_stems)])  # (s, 2, F, T'), one stem at a time
    w, corr_plain = _nnls_fit(P, R, np.zeros(fine_hz.size, int), 1)
    regions = np.searchsorted(FIT_REGION_EDGES_HZ, fine_hz)  # (F,) in 0..R-1
    w_eq, corr_eq = _nnls_fit(P, R, regions, len(FIT_REGION_EDGES_HZ) + 1)
    if corr_eq > corr_plain + EQ_FIT_GAIN:  # the reference was clearly EQ'd: allow per-region gains
        w, corr = w_eq, corr_eq
    else:
        corr = corr_plain
    centre = pan_gains(np.zeros(n_stems), analysis.is_mono)  # (s, 2)
    # w[s, c] = g^2 (pan_c / centre_c)^2  ->  per-channel amplitude a_c = sqrt(w) centre_c
    amp = np.sqrt(np.maximum(w, 0.0)) * centre  # (s, 2) = g * pan_c
    total = np.sqrt((amp**2).sum(axis=1))  # mono: g (constant power)
    theta = np.arctan2(amp[:, 1], amp[:, 0])  # mono law: theta = (pan + 1) pi / 4
    pan = np.clip(theta * 4.0 / np.pi - 1.0, -1.0, 1.0)
    stereo = ~analysis.is_mono
    # stereo balance law: the louder side keeps unity, g = max(a_L, a_R)
    total[stereo] = amp[stereo].max(axis=1)
    ratio = np.where(amp[:, 0] >= amp[:, 1], amp[:, 1], amp[:, 0]) / np.maximum(amp.max(axis=1), FIT_FLOOR)
    bal = np.arccos(np.clip(ratio / np.sqrt(2.0), 0.0, 1.0))  # weaker side = sqrt(2) cos(theta')
    pan_st = (bal * 4.0 / np.pi - 1.0) * np.where(amp[:, 1] > amp[:, 0], 1.0, -1.0)
    pan[stereo] = np.clip(pan_st[stereo], -1.0, 1.0)
    with np.errstate(divide="ignore"):
        gain_db = 20.0 * np.log10(np.maximum(total, FIT_FLOOR))
    audible = total > 1e-6 * total.max()
    gain_db = np.where(audible, gain_db - gain_db[audible].max(), -120.0)
    return_lu = reference_return_lu(ref_audio, session, analysis, frames)  # used for a same-song reference
    return ReferenceFit(Path(path), ref, gain_db, pan, corr, corr >= SAME_SONG_CORRELATION, return_lu)
