"""Everything per stem that does not depend on the mix parameters, computed once per session.

The fast tier (``engine.batch``) only ever touches these arrays; it never reads audio again.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evomix.audio import Session
from evomix.engine.bands import BandGrid, band_grid, band_sum, frame_spectra, _bin_weights
from evomix.engine.dsp import pan_gains
from objectives.meter import integrated_loudness, k_weighting_power

PEAK_GROUP_EDGES_HZ = (150.0, 1000.0, 5000.0)  # peak-candidate bands
PEAK_CANDIDATES_PER_STEM = 225  # instants (local maxima) kept per stem
PEAK_CANDIDATES_SUM = 1000
PEAK_HPF_HZ = tuple(np.geomspace(20.0, 400.0, 8))  # high-pass cutoffs precomputed (the gene's range)
PEAK_KERNEL = 4096  # samples of signal around each candidate instant  # instants kept from the unity-gain sum
STEM_REFERENCE_LUFS = -20.0  # dB: each stem's trim brings it to this loudness (panned centre)
TRIM_RANGE_DB = (-30.0, 40.0)


@dataclass(frozen=True)
class Analysis:
    """Mix-independent analysis of a session.

    Attributes
    ----------
    sr : int, Hz.  grid : BandGrid.  names, roles : tuple of str.  is_mono : (stems,) bool.
    band_power : (stems, 2, B, T) float32, band power per channel and frame (mean square per hop).
    cross_power : (stems, B, T) float32, Re(L R*) per band and frame (mono stems: equals band power).
    spread_power : (stems, 2, B, T') float32, ``band_power`` of the heavy frames spread across
        bands by the spreading function (masker side of the masking model).
    heavy_frames : (T',) int, frames used for the (pop, stems, ch, bands, frames) tensors.
    grid_weight : (stems, G, B) float32, normalised long-term power of each stem on the fine grid
        within each band: an EQ's effective band gain is ``sum_g |H(f_g)|^2 w[s, g, b]``.
    k_band : (stems, B) float32, K-weighting power gain per band, weighted by the stem's spectrum.
    trim_db : (stems,) dB, gain that brings each stem to ``STEM_REFERENCE_LUFS`` (0 for silent stems).
    stem_lufs : (stems,) LUFS of each raw stem panned centre (-200 for silence).
    peak_values : (stems, 2, J * G, K) float32, each stem's (centre-panned) signal high-passed at
        each of J cutoffs (``PEAK_HPF_HZ``) and split into G bands (``PEAK_GROUP_EDGES_HZ``,
        complementary masks) at K candidate instants: the local maxima of each stem and of the
        unity-gain sum. The fast tier sums them with each candidate's gains to estimate the peak.
    peak_frames : (K,) int, the frame of each candidate instant.
    band_group : (B,) int, the peak band of each analysis band.
    """

    sr: int
    grid: BandGrid
    names: tuple
    roles: tuple
    is_mono: np.ndarray
    band_power: np.ndarray
    cross_power: np.ndarray
    spread_power: np.ndarray
    heavy_frames: np.ndarray
    grid_weight: np.ndarray
    k_band: np.ndarray
    trim_db: np.ndarray
    stem_lufs: np.ndarray
    n_samples: int
    peak_values: np.ndarray
    peak_frames: np.ndarray
    band_group: np.ndarray

    @property
    def n_stems(self) -> int:
        return self.band_power.shape[0]

    @cached_property
    def heavy_power(self) -> np.ndarray:
        """``band_power`` on the heavy frames, contiguous (stems, 2, B, T')."""
        return np.ascontiguousarray(self.band_power[..., self.heavy_frames])

    @cached_property
    def heavy_cross(self) -> np.ndarray:
        """``cross_power`` on the heavy frames, contiguous (stems, B, T')."""
        return np.ascontiguousarray(self.cross_power[..., self.heavy_frames])

    @property
    def n_frames(self) -> int:
        return self.band_power.shape[-1]

    @cached_property
    def detector_power(self) -> np.ndarray:
        """Each stem's un-panned, stereo-linked mean square per band and frame (stems, B, T): what
        a stem compressor's RMS detector sees before EQ and trim."""
        centre = pan_gains(np.zeros(self.n_stems), self.is_mono)  # (s, 2): band_power is centre-panned
        return self.band_power.sum(axis=1) / (centre**2).sum(axis=1)[:, None, None]

    @cached_property
    def peak_group_share(self) -> np.ndarray:
        """(stems, G, B): each stem's long-term power share of every band within each peak band,
        to turn per-band EQ gains into per-peak-band gains."""
        share = self.band_power.sum(axis=(1, 3))  # (s, B)
        n_groups = len(PEAK_GROUP_EDGES_HZ) + 1
        g = np.stack([np.where(self.band_group == k, share, 0.0) for k in range(n_groups)], axis=1)
        return g / np.maximum(g.sum(axis=2, keepdims=True), 1e-20)


DEFAULT_HEAVY_FRAMES = 96  # frames (evenly spread) the fast tier's per-stem band tensors use


def analyze_session(session: Session, *, max_heavy_frames: int | None = DEFAULT_HEAVY_FRAMES) -> Analysis:
    """Analyse every stem once.

    Parameters
    ----------
    session : Session
    max_heavy_frames : int > 0 or None
        Cap on the frames the fast tier's per-stem band tensors (masking, balance, genre, reference)
        use, evenly spread over the song; None uses every frame. Compressors, loudness, LRA and
        peaks always use every frame. ``experiments/fidelity.py`` measures what the cap costs.
    """
    sr = session.sr
    grid = band_grid(sr)
    n_stems, n_samples = session.n_stems, session.n_samples
    n_frames = grid.n_frames(n_samples)
    n_bands = grid.n_bands
    w = _bin_weights(grid)
    freqs = np.fft.rfftfreq(grid.n_fft, 1.0 / sr)
    k_bins = k_weighting_power(freqs, sr).astype(np.float32)  # (bins,)
    centre = pan_gains(np.zeros(n_stems), np.asarray(session.is_mono))  # (stems, 2)

    band_power = np.empty((n_stems, 2, n_bands, n_frames), np.float32)
    cross_power = np.empty((n_stems, n_bands, n_frames), np.float32)
    grid_weight = np.empty((n_stems, grid.grid_hz.size, n_bands), np.float32)
    k_band = np.empty((n_stems, n_bands), np.float32)
    lufs = np.empty(n_stems)
    # fine-grid index of each FFT bin (nearest sub-band of its band); bins outside bands dropped
    sub_edges = np.sqrt(grid.grid_hz[:-1] * grid.grid_hz[1:])
    bin_grid = np.searchsorted(sub_edges, freqs)
    keep = grid.bin_band >= 0
    total = np.zeros((2, n_samples))  # unity-gain sum, for peak candidates
    instants = []
    for s in range(n_stems):  # one stem at a time: memory stays bounded for long sessions
        x = session.stem(s) * centre[s][:, None].astype(np.float32)  # (2, samples) centre-panned
        total += x
        spec = frame_spectra(x, grid)  # (2, T, bins)
        p = (spec.real**2 + spec.imag**2) * w  # (2, T, bins)
        band_power[s] = np.swapaxes(band_sum(p, grid), -1, -2)
        c = (spec[0] * np.conj(spec[1])).real * w  # (T, bins)
        cross_power[s] = band_sum(c, grid).T
        lts = p.sum(axis=(0, 1)) + 1e-20  # (bins,) long-term power
        del spec, p, c
        fine = np.zeros(grid.grid_hz.size)
        np.add.at(fine, bin_grid[keep], lts[keep])  # (G,)
        band_of_fine = np.repeat(np.arange(n_bands), grid.grid_hz.size // n_bands)
        gw = np.zeros((grid.grid_hz.size, n_bands))
        gw[np.arange(grid.grid_hz.size), band_of_fine] = fine
        grid_weight[s] = gw / np.maximum(gw.sum(axis=0, keepdims=True), 1e-30)
        kb = band_sum((lts * k_bins)[None, :], grid)[0] / np.maximum(band_sum(lts[None, :], grid)[0], 1e-30)
        k_band[s] = kb
        lufs[s] = float(integrated_loudness(x, sr))
        instants.append(stem_candidate_instants(x, grid))
    instants.append(_local_maxima(np.abs(total).max(axis=0), PEAK_CANDIDATES_SUM, max(1, int(0.005 * sr))))
    del total
    inst = np.unique(np.concatenate(instants))  # (K,)
    peak_values = np.empty((n_stems, 2, len(PEAK_HPF_HZ) * (len(PEAK_GROUP_EDGES_HZ) + 1), inst.size), np.float32)
    for s in range(n_stems):  # second pass (a view, or a re-read for a streaming session)
        peak_values[s] = peak_values_at(session.stem(s) * centre[s][:, None].astype(np.float32), inst, grid)
    peak_frames = np.minimum((inst + grid.hop // 2) // grid.hop, n_frames - 1)  # frame centred nearest

    if max_heavy_frames is None or max_heavy_frames >= n_frames:
        heavy = np.arange(n_frames)
    else:
        heavy = np.unique(np.linspace(0, n_frames - 1, max_heavy_frames).round().astype(int))
    # (B, B) @ (stems, 2, B, T') -> (stems, 2, B, T')
    spread_power = np.einsum("ij,scjt->scit", grid.spread.astype(np.float32), band_power[..., heavy])

    silent = lufs <= -199.0
    trim = np.clip(STEM_REFERENCE_LUFS - lufs, *TRIM_RANGE_DB)
    trim[silent] = 0.0
    return Analysis(
        sr=sr,
        grid=grid,
        names=tuple(session.names),
        roles=tuple(session.roles),
        is_mono=np.asarray(session.is_mono, bool),
        band_power=band_power,
        cross_power=cross_power,
        spread_power=spread_power.astype(np.float32),
        heavy_frames=heavy,
        grid_weight=grid_weight,
        k_band=k_band,
        trim_db=trim,
        stem_lufs=lufs,
        n_samples=n_samples,
        peak_values=peak_values,
        peak_frames=peak_frames,
        band_group=np.searchsorted(PEAK_GROUP_EDGES_HZ, grid.centres_hz),
    )


def _local_maxima(env: np.ndarray, k: int, hop: int) -> np.ndarray:
    """Indices of the k largest per-block maxima of ``env`` (samples,), blocks of ``hop`` samples."""
    n = env.size // hop * hop
    if n == 0:
        return np.array([int(np.argmax(env))])
    blocks = env[:n].reshape(-1, hop)
    arg = blocks.argmax(axis=1) + np.arange(blocks.shape[0]) * hop  # (blocks,)
    top = np.argsort(blocks.max(axis=1))[::-1][:k]
    return arg[top]


def _group_masks(freqs: np.ndarray) -> np.ndarray:
    """Complementary smooth band masks (G, F) summing to 1: raised-cosine crossovers, 1/2 octave wide,
    at ``PEAK_GROUP_EDGES_HZ``."""
    lf = np.log2(np.maximum(freqs, 1.0))
    lows = []  # low-pass shape of each crossover
    for edge in PEAK_GROUP_EDGES_HZ:
        x = np.clip((lf - np.log2(edge)) / 0.5 + 0.5, 0.0, 1.0)  # 0 below, 1 above the transition
        lows.append(0.5 + 0.5 * np.cos(np.pi * x))
    masks, prev = [], np.ones_like(freqs)
    for low in lows:
        masks.append(prev * low)
        prev = prev * (1.0 - low)
    masks.append(prev)
    return np.array(masks)


def _kernels(grid: BandGrid) -> np.ndarray:
    """(N, J * G) impulse responses: high-pass at each ``PEAK_HPF_HZ`` x band ``PEAK_GROUP_EDGES_HZ``,
    index i <-> lag i - N/2 (FFT-designed, ``PEAK_KERNEL`` samples)."""
    from scipy.signal import sosfreqz

    from evomix.engine.dsp import rbj_sos

    N = PEAK_KERNEL
    freqs = np.fft.rfftfreq(N, 1.0 / grid.sr)
    masks = _group_masks(freqs)  # (G, F)
    kernels = []
    for cut in PEAK_HPF_HZ:
        _, h = sosfreqz(np.asarray(rbj_sos("highpass", cut, 0.0, 0.707, grid.sr)).reshape(1, 6), worN=freqs, fs=grid.sr)
        for m in masks:
            kernels.append(np.roll(np.fft.irfft(h * m, n=N), N // 2))
    return np.array(kernels).T.astype(np.float32)


def stem_candidate_instants(x: np.ndarray, grid: BandGrid) -> np.ndarray:
    """Sample indices where stem ``x`` (2, samples) peaks, overall and in each peak band (an EQ boost
    in a band moves the mix's peak to where that band peaks)."""
    from scipy.signal import butter, sosfilt

    sr = grid.sr
    block = max(1, int(0.005 * sr))  # one candidate per 5 ms at most
    edges = (None,) + PEAK_GROUP_EDGES_HZ + (None,)
    per_group = max(1, PEAK_CANDIDATES_PER_STEM // len(edges))
    idx = [_local_maxima(np.abs(x).max(axis=0), per_group, block)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo is None:
            sos = butter(2, hi, "lowpass", fs=sr, output="sos")
        elif hi is None:
            sos = butter(2, lo, "highpass", fs=sr, output="sos")
        else:
            sos = butter(2, (lo, hi), "bandpass", fs=sr, output="sos")
        idx.append(_local_maxima(np.abs(sosfilt(sos.astype(np.float32), x, axis=-1)).max(axis=0), per_group, block))
    return np.concatenate(idx)


def peak_values_at(x: np.ndarray, inst: np.ndarray, grid: BandGrid) -> np.ndarray:
    """Stem ``x`` (2, samples) high-passed at each cutoff and band-split, at instants ``inst`` (K,).

    Each value is a dot product of the signal around the instant with the filter's impulse
    response: excerpts (K, N) @ kernels (N, J * G). Returns (2, J * G, K) float32.

    The high-pass cutoffs (``PEAK_HPF_HZ``, RBJ Q 0.707) are precomputed because a high-pass shifts
    the phase of the low end and so moves the peaks (measured: up to ~1.5 dB); the fast tier
    interpolates between the two nearest cutoffs.
    """
    N = PEAK_KERNEL
    n = x.shape[-1]
    K_mat = _kernels(grid)  # (N, J * G)
    pad = np.zeros((2, n + 2 * N), np.float32)
    pad[:, N : N + n] = x
    offs = (inst + N // 2 + N)[:, None] - np.arange(N)[None, :]  # (K, N): e_k[i] = x[t_k + N/2 - i]
    out = np.empty((2, K_mat.shape[1], inst.size), np.float32)
    for c in range(2):
        out[c] = (pad[c][offs] @ K_mat).T  # (K, J*G) -> (J*G, K)
    return out
