"""Exact tier: sample-accurate, time-domain rendering of one candidate, and its Features.

Per stem: trim -> RBJ biquads (high-pass, low shelf, peak, high shelf) -> feed-forward RMS
compressor -> fader -> constant-power pan -> the master's two shelves (linear, so filtering each
stem is filtering the sum). Master: stereo-linked compressor -> loudness normalisation to the
target (BS.1770-4) -> look-ahead true-peak limiter to the ceiling; normalisation and limiting are
iterated until the integrated loudness of the limited master is within ``LOUDNESS_TOLERANCE_LU``
of the target.

Every stage runs as a compiled loop over preallocated float64 buffers (``engine.chain``). A
stem's strip is a stream (``engine.strip``): read once, filtered, compressed, panned and measured
(band powers) 6.4 s at a time, each chunk added to the mix in stem order, so the result does not
depend on the thread count and a render holds no stem-length buffer besides the mix (a streaming
session is mixed stem by stem instead). The master chain runs on the whole mix
(:func:`finish_master`); a caller rendering several candidates may run the master of one while
the strips of the next run (``evomix.api``).

The reverb bus (issue 22): each stem's strip output (post-fader, post-pan) times its send gain
(``10^(send_db / 20)``, exactly 0 for a send at ``REVERB_SEND_OFF_DB``) is summed in stem order
into a send bus (2, samples), which runs through ONE stereo feedback delay network
(``engine.dsp.reverb.ReverbStream``, Jot & Chaigne 1991) chunk by chunk, its state kept across
chunks; the return is added to the mix bus before the master compressor. The strips carry the
master's two shelves, which are linear and time-invariant like the reverb, so the return is the
reverb of the sends through the master EQ. With every send off the reverb is not run at all, so
such a render is bit for bit the render of a mix without the bus.

Dynamic unmasking (issue 22, item 2): a stem with a cut (``unmask_depth_db`` > 0 and a key) runs
through ``engine.dsp.unmask.DynamicCutStream`` (an RBJ peaking cut as Simper's trapezoidal SVF,
its gain updated every 32 samples by the activity law from the key's band-passed 50 ms RMS)
keyed by its key stem after the key's trim (``search.keys``), at the head of its strip: after the
trim, before the static EQ and so before the compressor (its detector hears the cut, as a
side-chained EQ inserted before a channel compressor would). Why before the EQ and not between EQ and compressor
(the brief's example): the static EQ is linear and time-invariant and the cut's gain moves at
most once per 32 samples, so the two commute up to the cut's own coefficient steps; before the EQ
the fused EQ + detector kernels (``engine.chain``) stay untouched and every stem without a cut is
bit for bit what it was. The cut is linear in the stem (its gain depends on the key alone), so it
runs on the raw stem and the strip's trim follows (``trim * cut(x) = cut(trim * x)``). The cut
stem is computed chunk by chunk (``CUT_CHUNK``) into one float32 buffer per cut stem (the strip
reads it as it reads a stem: 74 MB per cut stem of 3.5 minutes at 44.1 kHz); a mix-only render of a
session in memory runs the SIMD lanes with those buffers in place of the cut stems' audio
(``LaneStrips(alt=...)``), so every render path gives the same mix bit for bit.
A stem whose depth is 0 dB is not touched.

Source: RBJ Audio EQ Cookbook; Giannoulis, Massberg & Reiss, JAES 60(6), 2012; ITU-R BS.1770-4;
U. Zölzer, DAFX 2nd ed., ch. 4; J.-M. Jot & A. Chaigne, "Digital delay networks for designing
artificial reverberators", 90th AES Convention, 1991 (the reverb bus).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from evomix.core.constants import GATING_BLOCK_S, GATING_HOP_S, K_WEIGHTING_SR, SHORT_TERM_WINDOW_S
from evomix.core.features import Features, return_shares
from evomix.core.meter import (
    _oversample_factor,
    _polyphase_filter,
    gated_loudness,
    k_weighting_power,
    k_weighting_sos,
    lra_from_short_term,
    reconstructed_peak,
    true_peak_dbtp,
)
from evomix.engine import chain
from evomix.engine.bands import HOP_S, BandGrid, _window, band_powers_chunked, bark, centred_block_means
from evomix.engine.dsp.dynamics import LEVEL_FLOOR_DB, compressor_static_rows, smooth_gain_db
from evomix.engine.dsp.filters import MAX_FREQ_FRACTION
from evomix.engine.dsp.limiter import LIMITER_RELEASE_MS
from evomix.engine.dsp.pan import pan_gains
from evomix.engine.dsp.reverb import ReverbStream
from evomix.engine.dsp.unmask import DynamicCutStream
from evomix.engine.eq import master_eq_sos, stem_eq_sos
from evomix.engine.strip import CHUNK_HOPS, LaneStrips, StripStream
from evomix.search.genome import (
    KNEE_DB,
    MASTER_COMP_ATTACK_MS,
    MASTER_COMP_RELEASE_MS,
    REVERB_SEED,
    REVERB_SEND_OFF_DB,
    Params,
)

LOUDNESS_TOLERANCE_LU = 0.05
MAX_NORMALISE_PASSES = 6
COMP_WINDOW_S = 0.05  # the compressors' RMS window (engine.dsp.compressor_gain), s
COMP_STEP_S = 0.001  # their control-step period, s
LIMITER_LOOKAHEAD_MS = 5.0
LIMITER_OVERSAMPLE = 4  # the limiter's true-peak envelope (engine.dsp.true_peak_envelope)
# The limiter aims this far under the ceiling on its 4x meter, so that the reconstructed signal
# (read at 16x, core.meter.reconstructed_peak) stays under the ceiling itself: a 4x meter
# under-reads inter-sample peaks of high-frequency content (by up to ~0.1 dB on dense masters).
# A choice, as mastering limiters keep 0.1-0.3 dB; what it leaves over is scaled off at the end.
TRUE_PEAK_MARGIN_DB = 0.1
TRUE_PEAK_ROUNDS = 3  # limiter rounds at most, each aiming lower by what the last left over the ceiling
_CEILING_GUARD = 1.0 - 1e-5  # the last scale lands this far under the ceiling: 24-bit rounding stays under
PEAK_BLOCK = 1024  # samples per block of the oversampling kernel: its buffers stay in the L1/L2 cache


@dataclass(frozen=True)
class ExactRender:
    """One rendered candidate.

    mix : (2, samples) float64, the finished master.
    stems : (stems, 2, samples) float64, each stem's contribution to ``mix`` (with
        ``reverb_return`` they sum to it), or None (kept only when asked for:
        ``render_exact(keep_stems=True)``).
    raw_loudness_lufs : loudness after the master compressor, before normalisation, LUFS.
    normalise_db : gain applied for loudness normalisation, dB.
    limiter_gr_db : peak gain reduction the limiter applied, dB >= 0.
    stem_power : (stems, 2, B, T) float32 band powers of each contribution, measured during the
        render when it was given a ``grid`` (see :func:`render_exact`), else None.
    true_peak_dbtp : the master's true peak (BS.1770-4 Annex 2), dBTP, or None.
    master_gain : the master chain's gain (``keep_master_gain``), or None.
    reverb_return : (2, samples) float64, the reverb return's contribution to ``mix`` (through the
        master gain), kept with ``stems``; None when not kept or when every send is off.
    return_power : (2, B, T) float32, the return's band powers in the mix, measured like
        ``stem_power`` (with a ``grid`` and a send on), else None.
    send_power : (stems,) float64, each stem's send as a power gain (0 when off), or None.
    """

    mix: np.ndarray
    stems: np.ndarray | None
    raw_loudness_lufs: float
    normalise_db: float
    limiter_gr_db: float
    stem_power: np.ndarray | None = None
    true_peak_dbtp: float | None = None
    master_gain: MasterGain | None = None
    reverb_return: np.ndarray | None = None
    return_power: np.ndarray | None = None
    send_power: np.ndarray | None = None


@dataclass(frozen=True)
class MasterGain:
    """The master chain after its EQ as one gain per sample, the same on both channels.

    The master compressor is stereo-linked (one control gain from both channels), normalisation is
    one constant and the limiter's gain (with the safety factor folded in) is one value per sample,
    so ``mix[c, t] = gain(t) * bus[c, t]`` where ``bus`` is the sum of the stems after the master EQ.
    That gain is computed from the whole mix: applied to one stem it gives that stem's share of
    the master, not how the stem would sound through the master on its own.

    comp_ctrl : (T,) float64, the master compressor's control gains, linear, every ``step`` samples.
    step : int > 0, samples per control step.
    scale : float > 0, the normalisation gain, linear.
    limiter : (samples,) float64 limiter gain in (0, 1], or (0,) when nothing was limited (silence).
    """

    comp_ctrl: np.ndarray
    step: int
    scale: float
    limiter: np.ndarray

    def compact(self) -> MasterGain:
        """The same gain with the limiter's held as float32 (half the memory; relative error
        <= 6e-8, below the float32 rounding of the stems it is applied to)."""
        return MasterGain(self.comp_ctrl, self.step, self.scale, self.limiter.astype(np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x *= gain`` in place, in the order the master applies it; ``x`` (ch, samples) float64."""
        chain.apply_control_gain(x, self.comp_ctrl, self.step)
        x *= self.scale
        if self.limiter.size:
            x *= self.limiter
        return x


def send_gains(params: Params, i: int = 0) -> np.ndarray:
    """The reverb sends of candidate ``i``, (stems,) linear: ``10^(send_db / 20)``, and exactly 0 for
    a send at or below ``REVERB_SEND_OFF_DB`` (off: no signal, not -40 dB of it)."""
    db = np.asarray(params.reverb_send_db, dtype=float)[i]  # (stems,) dB
    return np.where(db > REVERB_SEND_OFF_DB, 10.0 ** (db / 20.0), 0.0)


def reverb_stream(params: Params, i: int, sr: int) -> ReverbStream | None:
    """The return of candidate ``i``'s reverb bus, a fresh :class:`ReverbStream` with its settings
    (decay s, pre-delay ms, damping, return high-pass Hz; seed ``REVERB_SEED``; Jot & Chaigne 1991),
    or None when every send is off (no reverb is run)."""
    if not np.any(send_gains(params, i) > 0.0):
        return None
    return ReverbStream(sr, decay_s=float(params.reverb_decay_s[i]), predelay_ms=float(params.reverb_predelay_ms[i]),
                        damping=float(params.reverb_damping[i]), highpass_hz=float(params.reverb_highpass_hz[i]),
                        seed=REVERB_SEED)


def add_send(send: np.ndarray, gain: float, x: np.ndarray) -> None:
    """``send += gain * x`` (both (2, m) float64): one stem into the send bus. The render and the stems
    export add the stems in stem order with this, so their sends agree bit for bit."""
    if gain > 0.0:
        send += gain * x


CUT_CHUNK = 1 << 16  # samples per call of the dynamic cut (any length: the same output, bit for bit)


def cut_settings(params: Params, i: int = 0) -> dict[int, dict]:
    """Candidate ``i``'s dynamic cuts: ``{stem: {key, freq_hz, q, depth_db, threshold_db, attack_ms,
    release_ms}}`` for each stem with a depth above 0 dB and a key; empty when none cuts."""
    depth = np.asarray(params.unmask_depth_db, dtype=float)[i]
    key = np.asarray(params.unmask_key)[i]
    out = {}
    for s in np.flatnonzero((depth > 0.0) & (key >= 0)):
        out[int(s)] = {"key": int(key[s]), "freq_hz": float(params.unmask_hz[i, s]), "q": float(params.unmask_q[i, s]),
                       "depth_db": float(depth[s]), "threshold_db": float(params.unmask_threshold_db[i, s]),
                       "attack_ms": float(params.unmask_attack_ms[i, s]),
                       "release_ms": float(params.unmask_release_ms[i, s])}
    return out


def cut_stem(x: np.ndarray, key: np.ndarray, key_trim: float, sr: int, settings: dict,
             out: np.ndarray | None = None) -> np.ndarray:
    """The raw stem ``x`` (rows, n) through its dynamic cut keyed by the raw key ``key`` (key rows, n) times
    ``key_trim`` (linear), chunk by chunk -> (rows, n) float32 (``engine.dsp.unmask.DynamicCutStream``;
    the cut's frequency held under 0.49 ``sr``, as the fast tier holds it), into ``out`` when given."""
    stream = DynamicCutStream(sr, freq_hz=min(settings["freq_hz"], MAX_FREQ_FRACTION * sr), q=settings["q"],
                              depth_db=settings["depth_db"], threshold_db=settings["threshold_db"],
                              attack_ms=settings["attack_ms"], release_ms=settings["release_ms"])
    n = x.shape[-1]
    out = np.empty(x.shape, np.float32) if out is None else out
    for a in range(0, n, CUT_CHUNK):
        b = min(a + CUT_CHUNK, n)
        out[:, a:b] = stream.process(x[:, a:b], key[:, a:b] * float(key_trim))
    return out


def _stem_audio(audio, s: int) -> np.ndarray:
    """Stem ``s`` (2, samples) from an array (stems, 2, samples) or a Session (read on demand)."""
    return audio.stem(s) if hasattr(audio, "stem") else audio[s]


class _Grid:
    """The compressor and limiter grids of one session: sample counts at rate ``sr``."""

    def __init__(self, sr: int, n: int):
        self.sr = int(sr)
        self.n = int(n)
        self.step = max(1, int(round(COMP_STEP_S * sr)))
        self.window = max(1, int(round(COMP_WINDOW_S * sr)))
        self.n_steps = -(-self.n // self.step)
        self.lookahead = max(1, int(round(LIMITER_LOOKAHEAD_MS / 1000.0 * sr)))
        self.decay_per_sample = 1.0 / (LIMITER_RELEASE_MS / 1000.0 * sr)
        self.phases, self.offset = _polyphase_filter(LIMITER_OVERSAMPLE)
        self.k_sos = k_weighting_sos(sr)
        self.block = int(round(GATING_BLOCK_S * sr))  # BS.1770-4 gating block, 75 % overlap
        self.block_hop = int(round(GATING_HOP_S * sr))  # also the hop of the loudness range's short-term windows
        self.short = int(round(SHORT_TERM_WINDOW_S * self.sr))  # EBU Tech 3342 short-term window
        # each control step's detector window [lo, hi), cut at the signal's edges (detector_levels_db)
        starts = np.arange(self.n_steps, dtype=np.int64) * self.step - self.window // 2
        self.lo = np.clip(starts, 0, self.n)
        self.hi = np.clip(starts + self.window, 0, self.n)

    def control_gain(self, x: np.ndarray, n_ch: int, threshold_db: float, ratio: float,
                     attack_ms: float, release_ms: float) -> np.ndarray:
        """The compressor's control gains (T,), linear, for signal rows ``x[:n_ch]``: RMS detector,
        soft-knee static curve, attack/release smoothing (``engine.dsp.compressor_gain``)."""
        level = chain.detector_levels_db(x, n_ch, self.step, self.window, self.n_steps, LEVEL_FLOOR_DB)  # (T,)
        target = compressor_static_rows(level[None, :], np.array([float(threshold_db)]), np.array([float(ratio)]),
                                        np.array([KNEE_DB]))  # (1, T) dB
        smoothed = smooth_gain_db(target, attack_ms, release_ms, self.step / self.sr)  # (1, T) dB
        return 10.0 ** (smoothed[0] / 20.0)

    def loudness(self, x: np.ndarray, gain: np.ndarray, scale: float) -> float:
        """Integrated loudness (LUFS) of ``scale * x * gain`` (``gain`` (samples,) or empty)."""
        z = chain.k_block_powers(x, gain, float(scale), self.k_sos, self.block, self.block_hop)  # (ch, blocks)
        return float(gated_loudness(z))

    def loudness_and_range(self, x: np.ndarray) -> tuple[float, float]:
        """(integrated loudness LUFS, loudness range LU) of ``x`` from one K-weighting pass
        (``chain.k_block_powers_of``; the same values as :meth:`loudness` and
        :meth:`loudness_range`). LRA is 0 below one 3 s window."""
        z, z_short = chain.k_block_powers_of(x, np.zeros(0), 1.0, self.k_sos, (self.block, self.short), self.block_hop)
        lra = float(lra_from_short_term(z_short)) if x.shape[-1] >= self.short else 0.0
        return float(gated_loudness(z)), lra

    def loudness_range(self, x: np.ndarray) -> float:
        """Loudness range (LU, EBU Tech 3342) of ``x``: 3 s short-term windows every 0.1 s."""
        z = chain.k_block_powers(x, np.zeros(0), 1.0, self.k_sos, self.short, self.block_hop)
        return float(lra_from_short_term(z))

    def envelope(self, x: np.ndarray, threads: int = 1) -> tuple[np.ndarray, float]:
        """(true-peak envelope (samples,), oversampled peak without refinement), linear; the
        channels on ``threads`` threads (a maximum: the same result for any number)."""
        def one(rows):
            raw = np.zeros(1)
            return chain.true_peak_envelope(rows, self.phases, self.offset, PEAK_BLOCK, raw), float(raw[0])

        if threads < 2 or x.shape[0] < 2:
            return one(x)
        with ThreadPoolExecutor(x.shape[0], thread_name_prefix="evomix-peak") as pool:
            parts = list(pool.map(one, [x[c : c + 1] for c in range(x.shape[0])]))
        env = parts[0][0]
        for e, _ in parts[1:]:
            np.maximum(env, e, out=env)
        return env, max(r for _, r in parts)


class _Mixer:
    """Runs the stems' channel strips (``engine.strip``) on threads and adds them to the mix in
    stem order, so the sum's rounding never depends on the threads.

    A session held in memory is mixed in lockstep: every stem advances one chunk (6.4 s), then
    the chunks are added in stem order, so no stem-length buffer is needed besides the mix. A
    streaming session (stems read from their files) is mixed stem by stem, each into a
    stem-length buffer per thread, since holding every stem's chunk would mean reading every file
    at once.
    """

    def __init__(self, audio, is_mono, params: Params, i: int, g: _Grid, bands: BandGrid | None,
                 keep_stems: bool, threads: int):
        self.audio, self.is_mono, self.params, self.i, self.g = audio, is_mono, params, i, g
        self.bands, self.keep_stems = bands, keep_stems
        self.n_stems = len(is_mono)
        self.threads = max(1, min(int(threads), self.n_stems))
        self.pans = pan_gains(params.pan[i], np.asarray(is_mono))  # (stems, 2)
        one = params.member(i)
        self.stem_sos = stem_eq_sos(one, g.sr)[0]  # (stems, 4, 6)
        self.master_sos = np.ascontiguousarray(master_eq_sos(one, g.sr)[0])  # (2, 6)
        hop = bands.hop if bands is not None else max(1, int(round(HOP_S * g.sr)))
        self.chunk = CHUNK_HOPS * hop
        self.mix = np.zeros((2, g.n))
        self.stems = np.empty((self.n_stems, 2, g.n)) if keep_stems else None
        self.stem_power = (np.empty((self.n_stems, 2, bands.n_bands, bands.n_frames(g.n)), np.float32)
                           if bands is not None else None)
        self._added = 0
        self._failed = False
        self._turn = threading.Condition()
        self._send = None  # the per-stem mixer's send bus (2, samples)
        self.sends = send_gains(params, i)  # (stems,) linear, 0 = off
        self.reverb = reverb_stream(params, i, g.sr)  # None: every send off, no reverb at all
        # the return is kept with the stems, and for its band powers when the render measures them
        keep_return = self.reverb is not None and (keep_stems or bands is not None)
        self.reverb_return = np.zeros((2, g.n)) if keep_return else None
        self.cuts = cut_settings(params, i)  # {stem: settings}: the dynamic cuts (none: nothing changes)
        self._cut_audio: dict[int, np.ndarray] = {}

    def cut_audio(self, s: int, out: np.ndarray | None = None) -> np.ndarray:
        """Stem ``s`` (rows, samples) float32 through its dynamic cut (before its trim), keyed by its key
        stem after the key's trim (:func:`cut_stem`), into ``out`` (rows, samples) when given."""
        if s in self._cut_audio:
            return self._cut_audio.pop(s)
        c = self.cuts[s]
        k = c["key"]
        x = _stem_audio(self.audio, s)[: 1 if self.is_mono[s] else 2]
        key = _stem_audio(self.audio, k)[: 1 if self.is_mono[k] else 2]
        return cut_stem(x, key, 10.0 ** (float(self.params.trim_db[self.i, k]) / 20.0), self.g.sr, c, out=out)

    def _prepare_cuts(self, pool) -> None:
        """Every cut stem (:meth:`cut_audio`) ahead of the strips, on ``pool``'s threads (or here)."""
        todo = [s for s in self.cuts if s not in self._cut_audio]
        results = pool.map(self.cut_audio, todo) if pool is not None else map(self.cut_audio, todo)
        for s, y in zip(todo, list(results)):
            self._cut_audio[s] = y

    def stream(self, s: int) -> StripStream:
        """Stem ``s``'s strip as a :class:`StripStream` (its band powers into ``stem_power[s]``)."""
        p, i = self.params, self.i
        rows = 1 if self.is_mono[s] else 2
        x = self.cut_audio(s) if s in self.cuts else _stem_audio(self.audio, s)[:rows]  # (rows, samples) float32
        return StripStream(x[:rows], self.g, self.stem_sos[s], self.master_sos,
                           trim=10.0 ** (float(p.trim_db[i, s]) / 20.0), fader=10.0 ** (float(p.gain_db[i, s]) / 20.0),
                           pans=self.pans[s], threshold_db=p.comp_threshold_db[i, s], ratio=p.comp_ratio[i, s],
                           attack_ms=p.comp_attack_ms[i, s], release_ms=p.comp_release_ms[i, s], bands=self.bands,
                           chunk=self.chunk, power=self.stem_power[s] if self.stem_power is not None else None)

    def strip(self, s: int, buf: np.ndarray) -> None:
        """Stem ``s`` through its strip into ``buf`` (2, samples): its contribution to the mix."""
        st = self.stream(s)
        while st.advance(buf[:, st.done:]):
            pass

    def run(self) -> None:
        streaming = hasattr(self.audio, "stem") and getattr(self.audio, "audio", None) is None
        if streaming:
            self._run_per_stem()
        elif self.stems is None and self.bands is None:  # only the mix: every strip as SIMD lanes
            self._run_lanes()
        else:
            self._run_lockstep()

    def _run_lanes(self) -> None:
        """The mix (and the reverb's return) of a session in memory as :class:`engine.strip.LaneStrips` runs
        it: bit for bit :meth:`_run_lockstep`'s, faster (issue 23)."""
        p, i = self.params, self.i
        audio = self.audio.audio if hasattr(self.audio, "audio") else np.asarray(self.audio)
        trim = [10.0 ** (float(p.trim_db[i, s]) / 20.0) for s in range(self.n_stems)]  # as stream() has them
        fader = [10.0 ** (float(p.gain_db[i, s]) / 20.0) for s in range(self.n_stems)]
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="evomix-strip") if self.threads > 1 else None
        try:
            # the cut stems ahead (as the lockstep mixer has them), each into its row of one buffer the lanes read
            alt_index = np.full(self.n_stems, -1, np.int64)
            alt = np.empty((len(self.cuts), 2, self.g.n), np.float32)  # (cut stems, 2, samples); a mono one in row 0
            for q, s in enumerate(self.cuts):
                alt_index[s] = q
            todo = [(s, alt[q, : 1 if self.is_mono[s] else 2]) for q, s in enumerate(self.cuts)]
            list(pool.map(lambda t: self.cut_audio(*t), todo) if pool is not None else map(lambda t: self.cut_audio(*t),
                                                                                           todo))
            lanes = LaneStrips(audio, self.g, self.stem_sos, self.master_sos, trim, fader, self.pans, self.sends,
                               p.comp_threshold_db[i], p.comp_ratio[i], p.comp_attack_ms[i], p.comp_release_ms[i],
                               is_mono=self.is_mono, alt=alt, alt_index=alt_index)
            reverb = ((lambda send, a: self._add_return(self.reverb.process(send), a)) if self.reverb is not None
                      else None)
            lanes.run(self.mix, pool, reverb)
        finally:
            if pool is not None:
                pool.shutdown()

    def _run_lockstep(self) -> None:
        streams: list[StripStream] = []
        outs = np.empty((self.n_stems, 2, self.chunk))  # (stems, 2, chunk): this chunk of every strip

        def step(s: int) -> None:
            streams[s].advance(outs[s])

        def add(part: tuple) -> None:  # samples [lo, hi) of the chunk at a: every stem, in stem order
            a, lo, hi = part
            chain.add_in_order(outs, lo, hi, self.mix, a + lo)

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="evomix-strip") if self.threads > 1 else None
        try:
            self._prepare_cuts(pool)
            streams = [self.stream(s) for s in range(self.n_stems)]
            for a in range(0, self.g.n, self.chunk):
                m = min(self.chunk, self.g.n - a)
                if pool is None:
                    for s in range(self.n_stems):
                        step(s)
                    add((a, 0, m))
                else:
                    list(pool.map(step, range(self.n_stems)))
                    cuts = np.linspace(0, m, self.threads + 1).astype(int)  # each sample's sum in stem order, any split
                    list(pool.map(add, [(a, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:])]))
                if self.reverb is not None:  # the send bus of this chunk, in stem order, through the return
                    send = np.zeros((2, m))
                    for s in range(self.n_stems):
                        add_send(send, self.sends[s], outs[s, :, :m])
                    self._add_return(self.reverb.process(send), a)
                if self.stems is not None:
                    self.stems[:, :, a : a + m] = outs[:, :, :m]
        finally:
            if pool is not None:
                pool.shutdown()

    def _one(self, s: int, buffers: queue.SimpleQueue) -> None:
        buf = buffers.get()
        try:
            self.strip(s, buf)
            with self._turn:  # add in stem order: the sum's rounding never depends on the threads
                self._turn.wait_for(lambda: self._added == s or self._failed)
            if self._failed:
                return
            self.mix += buf
            if self._send is not None:
                add_send(self._send, self.sends[s], buf)
            if self.stems is not None:
                self.stems[s] = buf
            with self._turn:
                self._added += 1
                self._turn.notify_all()
        except BaseException:
            with self._turn:
                self._failed = True
                self._turn.notify_all()
            raise
        finally:
            buffers.put(buf)

    def _add_return(self, ret: np.ndarray, a: int) -> None:
        """The return's chunk ``ret`` (2, m), for samples from ``a`` on, into the mix bus (and kept)."""
        m = ret.shape[-1]
        self.mix[:, a : a + m] += ret
        if self.reverb_return is not None:
            self.reverb_return[:, a : a + m] = ret

    def _run_per_stem(self) -> None:
        self._send = np.zeros((2, self.g.n)) if self.reverb is not None else None  # the send bus, whole
        buffers: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.threads):
            buffers.put(np.empty((2, self.g.n)))
        if self.threads == 1:
            for s in range(self.n_stems):
                self._one(s, buffers)
        else:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="evomix-strip") as pool:
                for f in [pool.submit(self._one, s, buffers) for s in range(self.n_stems)]:
                    f.result()
        if self._send is not None:  # the return chunk by chunk, as the lockstep mixer runs it
            for a in range(0, self.g.n, self.chunk):
                self._add_return(self.reverb.process(self._send[:, a : a + self.chunk]), a)
            self._send = None


@dataclass
class SummedStrips:
    """The first stage of an exact render: every stem through its channel strip, summed in stem
    order (:func:`mix_strips`); :func:`finish_master` runs the master chain on it.

    mix : (2, samples) float64, the sum before the master compressor (consumed by the master).
    stems : (stems, 2, samples) float64 or None, each strip's output (``keep_stems``).
    stem_power : (stems, 2, B, T) float32 or None, their band powers (with ``grid``).
    reverb_return : (2, samples) float64 or None, the reverb return added to ``mix`` (kept with
        ``stems`` or ``grid`` when a send is on).
    """

    mix: np.ndarray
    stems: np.ndarray | None
    stem_power: np.ndarray | None
    grid: BandGrid | None
    params: Params
    index: int
    sr: int
    reverb_return: np.ndarray | None = None


def mix_strips(audio, is_mono: np.ndarray, sr: int, params: Params, *, index: int = 0,
               grid: BandGrid | None = None, keep_stems: bool | None = None, threads: int = 1) -> SummedStrips:
    """Stage 1 of :func:`render_exact`: the stems' strips on ``threads`` threads, summed in stem
    order (the same result for any number of threads). Arguments as for :func:`render_exact`."""
    n = audio.n_samples if hasattr(audio, "n_samples") else audio.shape[-1]
    keep = (grid is None) if keep_stems is None else bool(keep_stems)
    mixer = _Mixer(audio, np.asarray(is_mono, bool), params, index, _Grid(sr, n), grid, keep, threads)
    mixer.run()
    return SummedStrips(mixer.mix, mixer.stems, mixer.stem_power, grid, params, index, int(sr), mixer.reverb_return)


def render_exact(audio, is_mono: np.ndarray, sr: int, params: Params, *,
                 target_lufs: float, ceiling_dbtp: float, index: int = 0,
                 grid: BandGrid | None = None, keep_stems: bool | None = None,
                 threads: int = 1, keep_master_gain: bool = False) -> ExactRender:
    """Render candidate ``index`` of ``params`` from the session audio.

    Two stages, which a caller rendering several candidates may overlap (``api`` runs the master
    of one candidate while the strips of the next run): :func:`mix_strips`, then
    :func:`finish_master`.

    Parameters
    ----------
    audio : (stems, 2, samples) float array, or a Session (each stem is taken once with
        ``Session.stem``: a view of the held audio, or read from its file when it streams).
    is_mono : (stems,) bool.
    sr : int, Hz.
    params : Params.
    target_lufs : float, LUFS.  ceiling_dbtp : float, dBTP.
    grid : BandGrid, optional. With it, each stem's band powers after the master chain are
        measured while the stem is in its buffer (``ExactRender.stem_power``): its band powers
        before the master gain, times each frame's window-weighted mean of the squared master gain
        (compressor, normalisation, limiter: the same for every stem). That is exact where the
        gain is constant over a frame (100 ms); ``tests/engine/test_chain.py`` measures the
        difference from measuring the finished contributions.
    keep_stems : bool, optional. Keep each stem's finished contribution (``ExactRender.stems``,
        stems x 2 x samples float64). Default: only without ``grid``, where the scores need them.
    threads : int >= 1, threads running the stems' strips (the result is the same for any number).
    keep_master_gain : bool. Keep the master chain's per-sample gain (``ExactRender.master_gain``,
        :class:`MasterGain`): with :func:`iter_stem_strips` it gives each stem's contribution one
        stem at a time, without holding all of them.
    """
    strips = mix_strips(audio, is_mono, sr, params, index=index, grid=grid, keep_stems=keep_stems,
                        threads=threads)
    return finish_master(strips, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, threads=threads,
                         keep_master_gain=keep_master_gain)


def _normalise_and_limit(mix: np.ndarray, env: np.ndarray, g: _Grid, target_lufs: float, limit_lin: float,
                         norm_db: float) -> tuple[float, np.ndarray]:
    """The normalisation gain (dB, from ``norm_db``) and limiter gain (samples,) that bring ``mix``
    to ``target_lufs`` with its 4x true-peak envelope ``env`` at most ``limit_lin``: up to
    ``MAX_NORMALISE_PASSES`` limiter passes, secant steps (limiting flattens the slope), the pass
    closest to the target."""
    best = prev = None
    for _ in range(MAX_NORMALISE_PASSES):
        scale = 10.0 ** (norm_db / 20.0)
        g_lim = chain.limiter_core(env, scale, limit_lin, g.lookahead, g.decay_per_sample)  # (samples,)
        err = target_lufs - g.loudness(mix, g_lim, scale)
        if best is None or abs(err) < abs(best[0]):
            best = (err, norm_db, g_lim)
        if abs(err) <= LOUDNESS_TOLERANCE_LU:
            break
        if prev is not None and abs(norm_db - prev[1]) > 1e-6:  # secant step: limiting flattens the slope
            slope = float(np.clip((prev[0] - err) / (norm_db - prev[1]), 0.1, 1.0))
        else:
            slope = 1.0
        prev = (err, norm_db)
        norm_db += err / slope
    return best[1], best[2]


def finish_master(strips: SummedStrips, *, target_lufs: float, ceiling_dbtp: float,
                  threads: int = 1, keep_master_gain: bool = False) -> ExactRender:
    """Stage 2 of :func:`render_exact`: the master chain on the summed strips (in place: ``strips``
    gives up its buffers), the stems' contributions and band powers scaled by the master gain.
    ``threads`` (a maximum) runs the true-peak envelope's channels in parallel;
    ``keep_master_gain`` as for :func:`render_exact`."""
    params, i, sr, grid = strips.params, strips.index, strips.sr, strips.grid
    mix, stems, stem_power, ret = strips.mix, strips.stems, strips.stem_power, strips.reverb_return
    strips.mix = strips.stems = strips.stem_power = strips.reverb_return = None
    n_stems = len(params.gain_db[i])
    n = mix.shape[-1]
    g = _Grid(sr, n)
    # master compressor
    comp_ctrl = g.control_gain(mix, 2, params.master_comp_threshold_db[i], params.master_comp_ratio[i],
                               MASTER_COMP_ATTACK_MS, MASTER_COMP_RELEASE_MS)  # (T,)
    chain.apply_control_gain(mix, comp_ctrl, g.step)
    empty = np.zeros(0)
    raw = g.loudness(mix, empty, 1.0)
    ceiling_lin = 10.0 ** (float(ceiling_dbtp) / 20.0)
    limit_lin = ceiling_lin * 10.0 ** (-TRUE_PEAK_MARGIN_DB / 20.0)  # where the limiter aims (4x meter)
    if raw <= -150.0:  # silence: nothing to normalise or limit
        norm_db, gr, g_lim, scale = 0.0, 0.0, empty, 1.0
        peak_raw = float(np.abs(mix).max())
    else:
        norm_db = target_lufs - raw
        env, _ = g.envelope(mix, threads)  # (samples,), scales with the normalisation gain
        for _ in range(TRUE_PEAK_ROUNDS):
            norm_db, g_lim = _normalise_and_limit(mix, env, g, target_lufs, limit_lin, norm_db)
            # the ceiling holds for the reconstructed signal, not only for the 4x meter: read the
            # limited output at 16x (core.meter.reconstructed_peak); over it, the limiter aims lower
            recon = reconstructed_peak(mix, gain=g_lim, scale=10.0 ** (norm_db / 20.0), envelope=env)
            if recon <= ceiling_lin * _CEILING_GUARD:
                break
            limit_lin *= ceiling_lin * _CEILING_GUARD / recon
        gr = max(0.0, 20.0 * np.log10(max(float(env.max()), 1e-10)) + norm_db - ceiling_dbtp)  # pre-limiter true peak
        del env
        scale = 10.0 ** (norm_db / 20.0)
        mix *= scale
        mix *= g_lim
        # safety step (engine.dsp.limiter_gain, note 6): the gain is applied at the base rate, so
        # re-measure the output's true peak once and scale the whole gain if it is over
        env_out, peak_raw = g.envelope(mix, threads)
        peak = float(env_out.max())
        del env_out
        if peak > limit_lin:
            factor = limit_lin / peak
            mix *= factor
            g_lim = g_lim * factor
            peak_raw *= factor
            recon *= factor
        if recon > ceiling_lin * _CEILING_GUARD:  # still over after the last round: scale the whole gain
            factor = ceiling_lin * _CEILING_GUARD / recon
            mix *= factor
            g_lim = g_lim * factor
            peak_raw *= factor
    factor = _oversample_factor(sr, 4)
    if factor == LIMITER_OVERSAMPLE:
        tp = 20.0 * np.log10(peak_raw) if peak_raw > 0 else -200.0
    else:  # the meter's own factor at this rate (2x at 88.2/96 kHz)
        tp = float(true_peak_dbtp(mix, sr))
    return_power = None
    if stem_power is not None:
        n_frames = stem_power.shape[-1]
        win_sq = _window(grid.n_fft) ** 2
        gp = chain.frame_gain_power(comp_ctrl, g.step, g_lim, float(scale), win_sq, grid.hop, n_frames, n)  # (T,)
        stem_power *= gp.astype(np.float32)
        if ret is not None:  # the return measured as the stems are: its powers times the master's gain
            return_power = band_powers_chunked(ret, grid) * gp.astype(np.float32)  # (2, B, T)
            if stems is None:
                ret = None
    if stems is not None:
        for x in [stems[s] for s in range(n_stems)] + ([ret] if ret is not None else []):
            chain.apply_control_gain(x, comp_ctrl, g.step)
            x *= scale
            if g_lim.size:
                x *= g_lim
    master_gain = MasterGain(comp_ctrl, g.step, float(scale), g_lim) if keep_master_gain else None
    return ExactRender(mix, stems, raw, float(norm_db), float(gr), stem_power, float(tp), master_gain, ret,
                       return_power, send_gains(params, i) ** 2)


def iter_stem_strips(audio, is_mono: np.ndarray, sr: int, params: Params, *, index: int = 0,
                     master_eq: bool = True):
    """Each stem through its channel strip, one at a time, as :func:`render_exact` runs it.

    Yields ``(s, buf)`` in stem order, ``buf`` (2, samples) float64: stem ``s`` after trim, EQ,
    compressor, fader and pan, and the master's two shelves when ``master_eq`` (these are linear,
    so the render filters each stem with them: the stems then sum to the master bus exactly);
    without ``master_eq`` the shelves are left out (the bus before the master EQ). The same buffer
    is reused: copy or write it before the next step.
    """
    n = audio.n_samples if hasattr(audio, "n_samples") else audio.shape[-1]
    g = _Grid(sr, n)
    mixer = _Mixer(audio, np.asarray(is_mono, bool), params, index, g, None, False, 1)
    if not master_eq:
        mixer.master_sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # identity biquad, (1, 6)
    buf = np.empty((2, n))
    for s in range(mixer.n_stems):
        mixer.strip(s, buf)
        yield s, buf




def features_from_render(render: ExactRender, grid: BandGrid, roles: tuple) -> Features:
    """Measure an exact render on the analysis grid -> Features with pop = 1 (every frame)."""
    if render.stem_power is not None:
        stem_power = render.stem_power
    elif render.stems is not None:  # one stem at a time: the STFT of all stems at once is large
        stem_power = np.stack([band_powers_chunked(x, grid) for x in render.stems])  # (stems, 2, B, T)
    else:
        raise ValueError("features_from_render: render has neither stems nor stem_power (pass grid to render_exact)")
    mix_power, mix_cross = band_powers_chunked(render.mix, grid, cross=True)  # (2, B, T), (B, T)
    return_power = render.return_power
    if return_power is None and render.reverb_return is not None:
        return_power = band_powers_chunked(render.reverb_return, grid)  # (2, B, T)
    g = _Grid(grid.sr, render.mix.shape[-1])
    lufs, lra = g.loudness_and_range(render.mix)
    stem_spread = np.einsum("ij,scjt->scit", grid.spread.astype(np.float32), stem_power)
    every = np.arange(mix_power.shape[-1])
    sr = grid.sr
    if render.true_peak_dbtp is not None:
        tp = render.true_peak_dbtp
    else:
        tp = float(true_peak_dbtp(render.mix, sr))
    return Features(
        bands_hz=grid.centres_hz,
        band_edges_hz=grid.edges_hz,
        band_bark=bark(grid.centres_hz),
        spread=grid.spread,
        roles=tuple(roles),
        stem_power=stem_power[None],
        stem_spread=stem_spread[None].astype(np.float32),
        mix_power=mix_power[None],
        mix_cross=mix_cross[None],
        loudness_lufs=np.array([lufs]),
        raw_loudness_lufs=np.array([render.raw_loudness_lufs]),
        # LRA needs one 3 s short-term window; shorter, 0 LU, as the fast tier (one window) and measure.py
        lra_lu=np.array([lra]),
        true_peak_dbtp=np.array([tp]),
        limiter_gr_db=np.array([render.limiter_gr_db]),
        frames=np.arange(mix_power.shape[-1]),
        stem_block_k=block_k(stem_power, grid, every)[None],
        mix_block_k=block_k(mix_power, grid, every)[None],
        return_power=None if return_power is None else return_power[None].astype(np.float32),
        return_share=(None if return_power is None or render.send_power is None
                      else return_shares(stem_power[None], render.send_power[None])),
        return_block_k=None if return_power is None else block_k(return_power, grid, every)[None],
    )


def block_k(power: np.ndarray, grid: BandGrid, frames: np.ndarray) -> np.ndarray:
    """K-weighted power (channels and bands summed) of ``power`` (..., 2, B, T) over the 400 ms block
    centred on each of ``frames`` (``engine.bands.centred_block_means``) -> (..., T'), float64."""
    k = k_weighting_power(grid.centres_hz, K_WEIGHTING_SR).astype(np.float64)  # (B,) as objectives.spectrum.k_weights
    kp = np.einsum("...cbt,b->...t", power.astype(np.float64), k)  # (..., T)
    return centred_block_means(kp, frames).astype(np.float64)
