"""One stem's channel strip in the exact tier, run as a stream of chunks.

trim -> four RBJ biquads -> feed-forward RMS compressor (50 ms window, 1 ms control steps,
soft-knee static curve, attack/release smoothing) -> fader -> pan -> the master's two shelves
(linear, so filtering each stem is filtering the sum), then the band powers of the result.

The strip holds only a chunk of the stem at a time (``CHUNK_HOPS`` analysis hops, 6.4 s at any
rate) plus the compressor's look-ahead: a control step's level needs the EQ'd signal up to half a
window after it, and a sample's gain the next step's level. So the EQ and detector run
``lead`` samples ahead of the gain stage, the EQ'd signal waiting in a small buffer. The
renderer (``engine.render``) advances every stem chunk by chunk and adds the chunks to the mix
in stem order, so a render holds no stem-length buffer besides the mix.

Every stage is the arithmetic of its whole-signal definition, in the same order, with its
state carried from chunk to chunk (``engine.chain``): ``scipy.signal.sosfilt`` for the EQ and the
master shelves, ``engine.dsp.rms_level_db`` for the detector, ``engine.dsp.compressor_gain`` for
the gain computer and smoothing, ``engine.bands.band_powers_chunked`` for the band powers;
``tests/engine/test_strip.py`` checks the stream against them, for any chunk length.

Sources: RBJ Audio EQ Cookbook; Giannoulis, Massberg & Reiss, JAES 60(6), 2012; Glasberg & Moore
1990 (the band grid).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from evomix.engine import chain
from evomix.engine.bands import BandGrid, _band_sums, _bin_weights, _window
from evomix.engine.dsp.dynamics import LEVEL_FLOOR_DB, compressor_static_rows
from evomix.search.genome import KNEE_DB

CHUNK_HOPS = 128  # analysis hops per chunk (6.4 s): whole frames per chunk for the band powers; fewer, longer
# chunks cost less per-chunk overhead, and 128 was the fastest of the lengths timed (the timings are in the README)


def _sections(sos, k: int) -> np.ndarray:
    """``sos`` (m, 6) as exactly ``k`` sections for the kernels written out for ``k``: padded with
    sections that pass the signal unchanged (``1 * v + 0`` is ``v``, so the output is the same)."""
    sos = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
    if sos.shape[0] > k:
        raise ValueError(f"StripStream: at most {k} biquad sections here, got {sos.shape[0]}")
    pad = np.tile(chain.IDENTITY_SECTION, (k - sos.shape[0], 1))
    return np.ascontiguousarray(np.concatenate([sos, pad]))


class StripStream:
    """Stem ``s`` of candidate ``i`` through its strip, ``chunk`` samples per :meth:`advance`.

    Parameters
    ----------
    x : (rows, samples) float32, the stem (rows 1 for a mono stem: one row feeds both sides).
    g : the render's ``_Grid`` (control step and window, samples).
    sos : (4, 6) the stem's EQ; master_sos : (k, 6) the master's shelves (normalised biquads).
    trim, fader : linear gains.  pans : (2,) linear pan gains (left, right).
    threshold_db, ratio, attack_ms, release_ms : the compressor (dB, :1, ms, ms).
    bands : BandGrid or None: measure the band powers of the output (``power`` (2, B, T) float32).
    chunk : samples per step, a multiple of ``bands.hop`` when ``bands`` is given.
    power : (2, B, T) float32, optional: where to put the band powers (else allocated).
    """

    def __init__(self, x, g, sos, master_sos, trim: float, fader: float, pans, threshold_db: float,
                 ratio: float, attack_ms: float, release_ms: float, bands: BandGrid | None, chunk: int,
                 power: np.ndarray | None = None):
        self.x, self.g = x, g
        self.rows = x.shape[0]
        self.n = g.n
        self.sos = _sections(sos, chain.EQ_SECTIONS)
        self.master_sos = _sections(master_sos, chain.MASTER_SECTIONS)
        self.trim, self.fader = float(trim), float(fader)
        self.pans = np.ascontiguousarray(pans, dtype=np.float64)
        self.threshold = np.array([float(threshold_db)])
        self.ratio = np.array([float(ratio)])
        self.knee = np.array([KNEE_DB])
        step_s = g.step / g.sr
        # smooth_gain_db's coefficients: (1 - alpha) = -expm1(-step / tau)
        k_attack = -np.expm1(-step_s / (float(attack_ms) / 1000.0))
        self.k_release = float(-np.expm1(-step_s / (float(release_ms) / 1000.0)))
        self.k_diff = float(k_attack - self.k_release)
        self.chunk = int(chunk)
        self.lead = g.window + 2 * g.step  # the EQ runs this far ahead of the gain stage
        self.z_eq = np.zeros((2, self.sos.shape[0], 2))
        self.z_master = np.zeros((2, self.master_sos.shape[0], 2))
        self.det = np.zeros(3)  # running sum, steps started, steps finished
        self.level = np.empty(g.n_steps)  # (T,) dB once finished
        self.ctrl = np.empty(g.n_steps)  # (T,) linear control gains
        self.smooth_state = np.zeros(1)  # y[-1] = 0 dB
        self.n_ctrl = 0  # control gains computed
        self.y = np.empty((self.rows, self.chunk + self.lead))  # EQ'd signal from ``y_off`` on
        self.y_off = 0
        self.eq_done = 0  # samples through the EQ
        self.done = 0  # samples through the whole strip
        self.bands = bands
        if bands is not None:
            if self.chunk % bands.hop:
                raise ValueError("StripStream: chunk must be a whole number of hops")
            self.power = (np.empty((2, bands.n_bands, bands.n_frames(self.n)), np.float32)
                          if power is None else power)
            self._seg = np.zeros((2, self.chunk + bands.hop), np.float32)  # last hop + this chunk
            self._frames_done = 0
            self._win = _window(bands.n_fft).astype(np.float32)
            self._w = _bin_weights(bands)
        else:
            self.power = None

    def advance(self, out: np.ndarray) -> int:
        """The next chunk of output into ``out`` (2, >= chunk) float64; returns its length (0 at the end)."""
        a = self.done
        b = min(a + self.chunk, self.n)
        if b <= a:
            return 0
        g = self.g
        # 1. EQ and detector up to ``lead`` samples past the chunk
        e = min(b + self.lead, self.n)
        keep = self.eq_done - a  # EQ'd samples from a on, still in the buffer
        if a > self.y_off:
            self.y[:, :keep] = self.y[:, a - self.y_off : a - self.y_off + keep]
            self.y_off = a
        finished = chain.eq_detect_chunk(self.x, self.rows, self.trim, self.sos, self.z_eq, self.eq_done, e,
                                         self.y, self.y_off, self.det, g.lo, g.hi, self.level, LEVEL_FLOOR_DB)
        self.eq_done = e
        # 2. control gains of the steps whose window is complete
        if finished > self.n_ctrl:
            k0, k1 = self.n_ctrl, finished
            target = compressor_static_rows(self.level[None, k0:k1], self.threshold, self.ratio, self.knee)  # (1, m) dB
            smoothed = np.empty(k1 - k0)
            chain.smooth_chunk(target[0], self.smooth_state, self.k_release, self.k_diff, smoothed)
            self.ctrl[k0:k1] = 10.0 ** (smoothed / 20.0)
            self.n_ctrl = k1
        # 3. gain, fader, pan, master shelves for the chunk (its gains need steps up to (b - 1) // step + 1)
        chain.gain_pan_eq_chunk(self.y, self.y_off, a, b, self.rows, self.ctrl[: self.n_ctrl], g.step, self.fader,
                                self.pans, self.master_sos, self.z_master, out, a)
        self.done = b
        if self.bands is not None:
            self._band_powers(out[:, : b - a], a, b)
        return b - a

    def _band_powers(self, y, a: int, b: int) -> None:
        """Band powers of the frames that end in ``[a, b)`` (or after, at the end): frame t covers
        ``[t hop - hop, t hop + hop)``, as ``band_powers_chunked`` measures them (float32 frames)."""
        grid = self.bands
        hop, n_fft = grid.hop, grid.n_fft
        seg = self._seg
        m = b - a
        seg[:, hop : hop + m] = y
        if m < self.chunk:
            seg[:, hop + m :] = 0.0
        n_frames = self.power.shape[-1]
        t0 = self._frames_done
        t1 = n_frames if b >= self.n else min(n_frames, (b - hop) // hop + 1)  # frames ending by b
        if t1 > t0:
            first = t0 * hop - hop - (a - hop)  # frame t0's start within seg (seg[0] is sample a - hop)
            frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft, axis=-1)[:, first::hop, :][:, : t1 - t0]
            if frames.shape[1] < t1 - t0:  # the last frames run past the end: zeros
                pad = np.zeros((2, (t1 - t0 - 1) * hop + n_fft + first), np.float32)
                pad[:, : seg.shape[1] - first] = seg[:, first:]
                frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft, axis=-1)[:, ::hop, :][:, : t1 - t0]
            spec = scipy.fft.rfft(frames * self._win, axis=-1, workers=1)  # (2, f, bins) complex64
            _band_sums(spec, self._w, grid.bin_band, self.power[:, :, t0:t1], self.power[0, :, :0],
                       self._w[:0].astype(np.float64), False, False)
            self._frames_done = t1
        if b < self.n:  # the chunk's last hop starts the next frame
            seg[:, :hop] = seg[:, m : m + hop]
