"""The analysis grid shared by both tiers: critical bands, framing and the spreading function.

Frames are 50 ms hops (``hop_s``) with a 100 ms periodic sqrt-Hann window; because Hann is
constant-overlap-add at 50 % overlap, the frame energies sum to the signal energy (Parseval),
so a band power summed over bands and averaged over frames is the signal's mean square.

Bands are equally spaced on the ERB-number scale of Glasberg & Moore (1990),
``E(f) = 21.4 log10(1 + 0.00437 f)``, between 20 Hz and min(20 kHz, sr/2).

Source: B. R. Glasberg, B. C. J. Moore, "Derivation of auditory filter shapes from notched-noise
data", Hearing Research 47, 1990 (ERB scale); M. R. Schroeder, B. S. Atal, J. L. Hall,
"Optimizing digital speech coders by exploiting masking properties of the human ear",
JASA 66(6), 1979 (spreading function); E. Zwicker, E. Terhardt, JASA 68(5), 1980 (Bark).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from evomix.core.compiled import lazy_njit
from evomix.core.constants import GATING_BLOCK_S

HOP_S = 0.05  # s, frame hop (<= 50 ms as masking models need)
N_BANDS = 32  # critical bands (>= 24)
STFT_CHUNK_FRAMES = 256  # frames per chunk of band_powers_chunked: no full-length spectrogram in memory
SUBBANDS = 8  # fine-grid points per band, for EQ responses


def erb_number(f_hz):
    """ERB-number (Cam) of frequency ``f_hz``; Glasberg & Moore 1990."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f_hz, dtype=float))


def erb_number_inverse(e):
    """Frequency in Hz of ERB-number ``e`` (Cam): the inverse of :func:`erb_number`."""
    return (10 ** (np.asarray(e, dtype=float) / 21.4) - 1.0) / 0.00437


def bark(f_hz):
    """Critical-band rate in Bark; Zwicker & Terhardt 1980: 13 atan(0.00076 f) + 3.5 atan((f/7500)^2)."""
    f = np.asarray(f_hz, dtype=float)
    return 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)


@dataclass(frozen=True)
class BandGrid:
    """Frame and band layout for one sample rate.

    Attributes
    ----------
    sr : int, Hz.  hop : int, samples per frame (``HOP_S`` s).  n_fft : int, 2 * hop.
    edges_hz : (B + 1,) band edges.  centres_hz : (B,) geometric centres.
    bin_band : (n_fft // 2 + 1,) band index of each FFT bin, -1 outside 20 Hz..top edge.
    grid_hz : (B * SUBBANDS,) fine frequency grid (log-spaced sub-band centres).
    spread : (B, B) linear power spreading matrix, ``spread[i, j]`` = masker band j -> band i.
    """

    sr: int
    hop: int
    n_fft: int
    edges_hz: np.ndarray
    centres_hz: np.ndarray
    bin_band: np.ndarray
    grid_hz: np.ndarray
    spread: np.ndarray

    @property
    def n_bands(self) -> int:
        """Bands B, int > 0."""
        return len(self.centres_hz)

    @property
    def hop_s(self) -> float:
        """Frame hop in s (``hop / sr``: ``HOP_S`` rounded to whole samples)."""
        return self.hop / self.sr

    def n_frames(self, n_samples: int) -> int:
        """Frames T of a signal of ``n_samples`` samples: frame t is centred on sample ``t hop``,
        from 0 to one hop past the end (``ceil(n_samples / hop) + 1``)."""
        return int(np.ceil(n_samples / self.hop)) + 1


def band_grid(sr: int, n_bands: int = N_BANDS) -> BandGrid:
    """Build the :class:`BandGrid` for sample rate ``sr`` (Hz)."""
    hop = int(round(HOP_S * sr))
    n_fft = 2 * hop
    top = min(20000.0, 0.5 * sr * 0.999)
    edges = erb_number_inverse(np.linspace(erb_number(20.0), erb_number(top), n_bands + 1))
    centres = np.sqrt(edges[:-1] * edges[1:])
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    bin_band = np.searchsorted(edges, freqs, side="right") - 1
    bin_band[(freqs < edges[0]) | (freqs >= edges[-1])] = -1
    # fine grid: SUBBANDS log-spaced points inside each band (sub-band geometric centres)
    frac = (np.arange(SUBBANDS) + 0.5) / SUBBANDS
    lo, hi = np.log(edges[:-1])[:, None], np.log(edges[1:])[:, None]
    grid = np.exp(lo + (hi - lo) * frac[None, :]).ravel()  # (B * SUBBANDS,)
    # Schroeder et al. 1979 spreading function in dB, dz = z_maskee - z_masker (Bark)
    z = bark(centres)
    dz = z[:, None] - z[None, :]
    sf_db = 15.81 + 7.5 * (dz + 0.474) - 17.5 * np.sqrt(1.0 + (dz + 0.474) ** 2)
    spread = 10.0 ** (sf_db / 10.0)
    return BandGrid(sr, hop, n_fft, edges, centres, bin_band, grid, spread)


def _window(n_fft: int) -> np.ndarray:
    """Periodic sqrt-Hann window; its square is COLA at hop n_fft / 2 (sum = 1)."""
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))


def frame_spectra(x: np.ndarray, grid: BandGrid) -> np.ndarray:
    """Short-time spectra of ``x`` (..., samples) -> (..., frames, bins) complex64.

    Frame t is centred on sample ``t * hop``; scaled so that sum over bins of
    ``weight * |X|^2`` is the frame's energy / hop (mean square per hop).
    """
    hop, n_fft = grid.hop, grid.n_fft
    n = x.shape[-1]
    n_frames = grid.n_frames(n)
    total = (n_frames + 1) * hop
    pad = np.zeros(x.shape[:-1] + (total,), dtype=np.float32)
    pad[..., hop : hop + n] = x
    # (..., frames, n_fft) strided view: frame t = pad[t*hop : t*hop + n_fft]
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft, axis=-1)[..., ::hop, :][..., :n_frames, :]
    spec = scipy.fft.rfft(frames * _window(n_fft).astype(np.float32), axis=-1)
    return spec.astype(np.complex64, copy=False)


def _bin_weights(grid: BandGrid) -> np.ndarray:
    """Rfft one-sided energy weights / (n_fft * hop): turns |X_k|^2 into mean square per hop."""
    n_bins = grid.n_fft // 2 + 1
    w = np.full(n_bins, 2.0)
    w[0] = 1.0
    if grid.n_fft % 2 == 0:
        w[-1] = 1.0
    return (w / (grid.n_fft * grid.hop)).astype(np.float32)


def band_sum(values: np.ndarray, grid: BandGrid) -> np.ndarray:
    """Sum ``values`` (..., bins) into bands -> (..., B), dropping bins outside the band range."""
    keep = grid.bin_band >= 0
    onehot = np.zeros((keep.size, grid.n_bands), dtype=np.float32)  # (bins, B)
    onehot[np.nonzero(keep)[0], grid.bin_band[keep]] = 1.0
    return values @ onehot


def band_powers(x: np.ndarray, grid: BandGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per-band, per-frame powers of a stereo signal.

    Parameters
    ----------
    x : ndarray (..., 2, samples), float
    grid : BandGrid

    Returns
    -------
    power : ndarray (..., 2, B, T) float32, mean square per hop in each band (full-scale sine = 0.5)
    cross : ndarray (..., B, T) float32, Re(L R*) cross power per band and frame (mono source: = power)
    """
    spec = frame_spectra(x, grid)  # (..., 2, T, bins)
    w = _bin_weights(grid)
    p = (spec.real**2 + spec.imag**2) * w  # (..., 2, T, bins)
    c = (spec[..., 0, :, :] * np.conj(spec[..., 1, :, :])).real * w  # (..., T, bins)
    power = np.swapaxes(band_sum(p, grid), -1, -2)  # (..., 2, T, B) -> (..., 2, B, T)
    cross = np.swapaxes(band_sum(c, grid), -1, -2)  # (..., T, B) -> (..., B, T)
    return power.astype(np.float32), cross.astype(np.float32)


def band_powers_chunked(x: np.ndarray, grid: BandGrid, *, cross: bool = False, bin_total: bool = False):
    """Band powers of ``x`` (ch, samples) per frame, as ``engine.bands.band_powers`` defines them,
    measured in chunks of ``STFT_CHUNK_FRAMES`` frames (no full-length spectrogram in memory).

    Returns (ch, B, T) float32, then the (B, T) cross power of a 2-row ``x`` if ``cross``, then
    each bin's power summed over channels and frames (bins,) float64 if ``bin_total`` (the
    long-term spectrum).
    """
    hop, n_fft = grid.hop, grid.n_fft
    n_ch, n = x.shape
    n_frames = grid.n_frames(n)
    win = _window(n_fft).astype(np.float32)
    w = _bin_weights(grid)
    power = np.empty((n_ch, grid.n_bands, n_frames), np.float32)
    xc = np.empty((grid.n_bands, n_frames), np.float32) if cross else None
    total = np.zeros(w.size) if bin_total else None
    seg = np.zeros((n_ch, (STFT_CHUNK_FRAMES + 1) * hop), np.float32)
    for t0 in range(0, n_frames, STFT_CHUNK_FRAMES):
        t1 = min(t0 + STFT_CHUNK_FRAMES, n_frames)
        a = t0 * hop - hop  # frame t covers samples [t hop - hop, t hop + hop)
        b = (t1 - 1) * hop + hop
        seg[:] = 0.0
        lo, hi = max(a, 0), min(b, n)
        if hi > lo:
            seg[:, lo - a : hi - a] = x[:, lo:hi]
        # (ch, frames, n_fft) strided view: frame t0 + f = seg[f hop : f hop + n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(seg[:, : b - a], n_fft, axis=-1)[:, ::hop, :][:, : t1 - t0]
        spec = scipy.fft.rfft(frames * win, axis=-1, workers=1)  # (ch, f, bins) complex64
        _band_sums(spec, w, grid.bin_band, power[:, :, t0:t1], xc[:, t0:t1] if cross else power[0, :, :0],
                   total if bin_total else w[:0].astype(np.float64), cross, bin_total)
    out = (power,) + ((xc,) if cross else ()) + ((total,) if bin_total else ())
    return out if len(out) > 1 else power


@lazy_njit
def _band_sums(spec, w, bin_band, power, cross_out, total, cross, with_total):
    """``power[c, b, f] = sum_{k in b} w_k |spec[c, f, k]|^2`` (float32 sums, bins in order), the
    cross power ``Re(X_0 X_1*) w`` likewise when ``cross``, and each bin's ``w |X|^2`` summed over
    channels and frames into ``total`` when ``with_total``: one pass over the chunk's spectra."""
    n_ch, n_f, n_bins = spec.shape
    n_bands = power.shape[1]
    for c in range(n_ch):
        for f in range(n_f):
            for b in range(n_bands):
                power[c, b, f] = 0.0
            # a band's bins are consecutive (``band_grid``): sum each run of them in a local
            # float32 and store it once (the same additions in the same order as summing in place)
            cur = -1
            acc = np.float32(0.0)
            for k in range(n_bins):
                b = bin_band[k]
                z = spec[c, f, k]
                p = (z.real * z.real + z.imag * z.imag) * w[k]
                if with_total:
                    total[k] += p
                if b != cur:
                    if cur >= 0:
                        power[c, cur, f] += acc
                    cur = b
                    acc = np.float32(0.0)
                if b >= 0:
                    acc += p
            if cur >= 0:
                power[c, cur, f] += acc
    if cross:
        for f in range(n_f):
            for b in range(n_bands):
                cross_out[b, f] = 0.0
            for k in range(n_bins):
                b = bin_band[k]
                if b >= 0:
                    z0 = spec[0, f, k]
                    z1 = spec[1, f, k]
                    cross_out[b, f] += (z0.real * z1.real + z0.imag * z1.imag) * w[k]


GATE_BLOCK_FRAMES = round(GATING_BLOCK_S / HOP_S)  # 8: a 400 ms BS.1770-4 gating block in 50 ms frames


def centred_block_means(power: np.ndarray, frames: np.ndarray, width: int = GATE_BLOCK_FRAMES) -> np.ndarray:
    """Mean of ``power`` (..., T) over the ``width`` frames centred on each of ``frames`` (T',)
    (frames ``t - width // 2 .. t + width // 2 - 1``, cut at the signal's ends) -> (..., T'), float32:
    the 400 ms BS.1770-4 block around each frame (ITU-R BS.1770-4 Annex 1, eq. 1 per block)."""
    n_t = power.shape[-1]
    frames = np.asarray(frames, dtype=np.int64)
    lo = np.clip(frames - width // 2, 0, n_t)
    hi = np.clip(frames - width // 2 + width, 0, n_t)
    c = np.concatenate([np.zeros(power.shape[:-1] + (1,)), np.cumsum(power, axis=-1, dtype=np.float64)], axis=-1)
    return ((c[..., hi] - c[..., lo]) / np.maximum(hi - lo, 1)).astype(np.float32)

