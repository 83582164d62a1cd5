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

:class:`LaneStrips` runs the same strips for a render that keeps only the mix (``evomix render``): all the
stems at once as SIMD lanes (``chain.eq_detect_lanes``, ``chain.gain_pan_eq_sum_lanes``), the same
arithmetic in the same order, so the same mix bit for bit (``tests/engine/test_lanes.py``; issue 23).

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


LANE_CHUNK = 32768  # samples per step of LaneStrips: its buffers stay in the caches (any length: the same mix)


class LaneStrips:
    """Every stem's strip at once, as SIMD lanes, summed into the mix bus (and the reverb send bus) in stem
    order: the mix of a session held in memory when neither the stems' outputs nor their band powers are
    kept (``engine.render``, e.g. ``evomix render``).

    The stems run in groups of 8 (16 lanes: the 8 left channels, then the 8 right ones; a mono stem's one
    row feeds both) through trim, EQ and detector (``chain.eq_detect_lanes``, the
    groups on threads), then their compressors' control gains (per stem, as :class:`StripStream`), then
    each side of every stem through gain, fader, pan and the master's shelves, summed in stem order
    (``chain.gain_pan_eq_sum_lanes``, the two sides on threads). Each lane does the arithmetic of
    :class:`StripStream` in its order, and the sums run from 0 in stem order as ``chain.add_in_order``
    and ``engine.render.add_send`` add the stems, so the mix is bit for bit the one of the stems'
    streams, for any chunk length and thread count (``tests/engine/test_lanes.py``).

    Parameters
    ----------
    audio : (stems, 2, samples) float32.  g : the render's ``_Grid``.
    sos : (stems, 4, 6) the stems' EQs; master_sos : (<= 2, 6) the master's shelves.
    trim, fader : (stems,) linear.  pans : (stems, 2) linear.  send : (stems,) linear send gains (0 = off).
    threshold_db, ratio, attack_ms, release_ms : (stems,) the compressors.
    chunk : samples per step.  is_mono : (stems,) bool, optional: a mono stem's row 0 feeds both sides.
    alt : (n_alt, 2, samples) float32, optional, with ``alt_index`` (stems,) int: stem ``s`` reads
        ``alt[alt_index[s]]`` instead of ``audio[s]`` where ``alt_index[s] >= 0`` (its dynamic cut's output,
        computed ahead by ``engine.render``; a mono stem's in row 0).
    """

    def __init__(self, audio, g, sos, master_sos, trim, fader, pans, send, threshold_db, ratio, attack_ms,
                 release_ms, chunk: int = LANE_CHUNK, is_mono=None, alt=None, alt_index=None):
        self.audio, self.g = audio, g
        self.alt = np.zeros((0, 2, 0), np.float32) if alt is None else alt
        self.alt_index = (np.full(audio.shape[0], -1, np.int64) if alt_index is None
                          else np.ascontiguousarray(alt_index, dtype=np.int64))
        mono = np.zeros(audio.shape[0], bool) if is_mono is None else np.asarray(is_mono, bool)
        self.right = np.where(mono, 0, 1).astype(np.int64)  # the row each stem's right lane reads
        self.n_stems = audio.shape[0]
        self.n = g.n
        self.chunk = int(chunk)
        self.lead = g.window + 2 * g.step  # the EQ runs this far ahead of the gain stage
        half = chain.STRIP_LANES // 2
        self.groups = [(s0, min(half, self.n_stems - s0)) for s0 in range(0, self.n_stems, half)]
        self.ws_eq = []
        for s0, k in self.groups:
            ws = np.zeros((chain.EQ_WS_ROWS, chain.STRIP_LANES))
            for j in range(k):
                sec = _sections(sos[s0 + j], chain.EQ_SECTIONS)
                for q in range(chain.EQ_SECTIONS):
                    ws[5 * q : 5 * q + 5, [j, j + half]] = sec[q, [0, 1, 2, 4, 5]][:, None]  # its two channels
                ws[28, [j, j + half]] = float(trim[s0 + j])
            self.ws_eq.append(ws)
        lanes = -(-self.n_stems // chain.SUM_LANES) * chain.SUM_LANES
        m_sec = _sections(master_sos, chain.MASTER_SECTIONS)
        self.ws_sum = []
        for side in range(2):
            ws = np.zeros((chain.SUM_WS_ROWS, lanes))
            ws[0, : self.n_stems] = np.asarray(fader, dtype=np.float64)
            ws[1, : self.n_stems] = np.asarray(pans, dtype=np.float64)[:, side]
            ws[2, : self.n_stems] = np.asarray(send, dtype=np.float64)
            for q in range(chain.MASTER_SECTIONS):
                ws[3 + 5 * q : 8 + 5 * q, : self.n_stems] = m_sec[q, [0, 1, 2, 4, 5]][:, None]
            self.ws_sum.append(ws)
        self.has_send = bool(np.any(np.asarray(send) > 0.0))
        self.threshold = np.ascontiguousarray(threshold_db, dtype=np.float64)
        self.ratio = np.ascontiguousarray(ratio, dtype=np.float64)
        self.knee = np.full(self.n_stems, float(KNEE_DB))
        step_s = g.step / g.sr
        # smooth_gain_db's coefficients, as StripStream: (1 - alpha) = -expm1(-step / tau)
        self.k_release = [float(-np.expm1(-step_s / (float(r) / 1000.0))) for r in release_ms]
        self.k_diff = [float(-np.expm1(-step_s / (float(a) / 1000.0))) - kr for a, kr in zip(attack_ms, self.k_release)]
        self.kk = [np.zeros(2, np.int64) for _ in self.groups]
        self.level = np.empty((len(self.groups) * half, g.n_steps))  # (stems, T): dB once finished
        self.ctrl = np.empty((self.n_stems, g.n_steps))  # (stems, T) linear control gains
        self.smooth_state = [np.zeros(1) for _ in range(self.n_stems)]
        self.n_ctrl = 0
        # the EQ'd signal in a ring of a power-of-two length: the EQ of the next chunk (up to chunk + lead
        # samples past this one's end) writes it while this chunk's gain stage reads it, never the same slots
        ring = 1 << int(2 * self.chunk + self.lead).bit_length()
        self.y = np.empty((len(self.groups), ring, chain.STRIP_LANES))
        self.y_mask = ring - 1
        self.eq_done = 0
        self.done = 0

    def _eq(self, k: int, a: int, e: int) -> int:
        """Group ``k`` through trim, EQ and detector over ``[a, e)``; returns the finished control steps."""
        s0, n_k = self.groups[k]
        half = chain.STRIP_LANES // 2
        return chain.eq_detect_lanes(self.audio, s0, n_k, self.right[s0 : s0 + n_k], a, e, self.ws_eq[k], self.y[k],
                                     self.y_mask, self.kk[k], self.g.lo, self.g.hi,
                                     self.level[k * half : k * half + n_k], LEVEL_FLOOR_DB, self.alt,
                                     self.alt_index[s0 : s0 + n_k])

    def _side(self, c: int, a: int, b: int, n_ctrl: int) -> None:
        """Side ``c`` of every stem for the chunk ``[a, b)`` into the mix (and send) bus."""
        chain.gain_pan_eq_sum_lanes(self.y, self.y_mask, c, a, b, self.n_stems, self.ws_sum[c], self.ctrl, n_ctrl,
                                    self.g.step, self._mix[c], self._send[c], a, self.has_send)

    def _controls(self, finished: int) -> None:
        if finished <= self.n_ctrl:
            return
        k0, k1 = self.n_ctrl, finished
        target = compressor_static_rows(np.ascontiguousarray(self.level[: self.n_stems, k0:k1]), self.threshold,
                                        self.ratio, self.knee)  # (stems, m) dB
        smoothed = np.empty(k1 - k0)
        for s in range(self.n_stems):
            chain.smooth_chunk(target[s], self.smooth_state[s], self.k_release[s], self.k_diff[s], smoothed)
            self.ctrl[s, k0:k1] = 10.0 ** (smoothed / 20.0)
        self.n_ctrl = k1

    def run(self, mix: np.ndarray, pool=None, reverb_chunk=None) -> None:
        """Mix every stem into ``mix`` (2, samples) float64 (zeros), ``pool`` (a thread pool, or None)
        running the groups and the two sides; with sends on, ``reverb_chunk(send, a)`` gets each chunk's
        send bus (2, m), summed in stem order, before the next chunk runs."""
        run_all = (lambda tasks: [f.result() for f in [pool.submit(*t) for t in tasks]]) if pool is not None else (
            lambda tasks: [t[0](*t[1:]) for t in tasks])
        self._mix = mix
        self._send = np.zeros((2, self.chunk)) if self.has_send else np.zeros((2, 0))
        groups = range(len(self.groups))

        def eq_tasks(b: int) -> list:  # the EQ (and detector) of every group up to ``lead`` past ``b``
            e = min(b + self.lead, self.n)
            tasks = [(self._eq, k, self.eq_done, e) for k in groups]
            self.eq_done = e
            return tasks

        self._controls(run_all(eq_tasks(min(self.chunk, self.n)))[0])
        while self.done < self.n:
            a = self.done
            b = min(a + self.chunk, self.n)
            # this chunk's gain stage (both sides) and the next chunk's EQ at once: four tasks for the threads
            n_ctrl = self.n_ctrl
            more = eq_tasks(min(b + self.chunk, self.n)) if self.eq_done < self.n else []
            results = run_all([(self._side, 0, a, b, n_ctrl), (self._side, 1, a, b, n_ctrl)] + more)
            if more:
                self._controls(results[2])
            if self.has_send and reverb_chunk is not None:
                reverb_chunk(self._send[:, : b - a], a)
            self.done = b
