"""Everything per stem that does not depend on the mix parameters, computed once per session.

The fast tier (``engine.batch``) only ever touches these arrays; it never reads audio again.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evomix.core.constants import GATING_BLOCK_S, GATING_HOP_S, POWER_FLOOR
from evomix.core.meter import gated_loudness, integrated_loudness, k_weighting_power, k_weighting_sos
from evomix.core.runtime import available_cores, single_threaded_blas
from evomix.engine.bands import GATE_BLOCK_FRAMES, BandGrid, band_grid, band_powers_chunked, band_sum, bark
from evomix.engine.chain import k_block_powers
from evomix.engine.coherence import coherence_frames, coherent_pairs, spectra_at
from evomix.engine.dsp.pan import pan_gains
from evomix.engine.dsp.reverb import band_decay_s, reverb, reverb_band_power
from evomix.engine.peaks import (
    DETECTOR_GROUP_BANDS,
    PEAK_NODES_HZ,
    candidates_per_stem,
    detector_at,
    peak_values_at,
    stem_candidate_instants,
    sum_candidate_instants,
)
from evomix.engine.segments import SEGMENT_BOUND_S, SegmentPlan, plan_segments, segment_view
from evomix.io.audio import Session
from evomix.search.genome import (  # dB, the trim's clip range (render checks saved trims against it)
    REVERB_SEED,
    TRIM_RANGE_DB,
)

MASTER_DETECTOR_SUBSTEPS = 2  # master-compressor detector readings per frame (50 ms windows, hop / R apart)
STEM_REFERENCE_LUFS = -20.0  # dB: each stem's trim brings it to this loudness (panned centre)


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
    peak_values : (stems, 2, 2 N, K) float32, each stem's (centre-panned) signal split into N
        bands (triangular in log frequency around ``PEAK_NODES_HZ``, summing to the signal), in
        phase (first N rows) and in quadrature (Hilbert transform, last N rows), at K candidate
        instants: the local maxima of each stem and of the unity-gain sum. An EQ with complex
        response ``H`` at the nodes turns a band's pair ``(x, x^)`` into ``Re(H) x - Im(H) x^``,
        so the fast tier gets each candidate's waveform at the instants, phase included.
    peak_instants : (K,) int, sorted sample index of each candidate instant.
    peak_detector : (stems, C, K) float32, what each stem's compressor detector sees at each
        instant (the mean square over the channels and a 50 ms rectangular window centred on it,
        as ``engine.dsp.rms_level_db``), split into C groups of ``DETECTOR_GROUP_BANDS``
        adjacent analysis bands so that each candidate's EQ can be applied.
    sub_power : (stems, B, T R) float32, each stem's un-panned mean square per analysis band in
        ``R = MASTER_DETECTOR_SUBSTEPS`` abutting rectangular blocks of ``hop / R`` per frame
        (centred on ``t hop + (r - (R - 1) / 2) hop / R``): where the power lies within each frame,
        for the master compressor. A frame's band power is a 100 ms Hann-weighted mean, smoother
        than the exact tier's 50 ms rectangular detector, which rises further on a transient; the
        detector itself is R of these blocks wide (``batch._master_detector_shape``).
    pairs : (P, 2) int, the pairs of correlated stems (``engine.coherence``), s < s'.
    pair_cross : (P, 2, B, T) float32, their modelled cross power ``rho sqrt(P_s P_s')`` per channel,
        band and frame (centre-panned, as ``band_power``): what a sum in power misses of their mix.
    return_gain : (stems, B) float32 or None, the reverb's energy gain on each stem per band: what the
        exact tier's network returns of the stem over what the fast tier's band model predicts
        (:func:`reverb_return_gain`); None: 1 (no calibration).
    segments : SegmentPlan or None, the representative segments the fast tier works on for a song
        longer than the bound (``engine.segments``); None: every frame, each counted once.
    segment_domain : bool, True for :attr:`fast`'s view of a segmented analysis: its frame axis
        (every (..., T) array, ``heavy_frames``) is ``segments.frames``, not the song's.
    instant_frames : (2, K) int or None, in a ``segment_domain`` view: each instant's frame on that
        axis (-1: outside the counted frames; it counts in the true peak only) and the frame whose
        compressor state it starts from (``engine.segments.segment_view``); None: from the instants.
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
    peak_instants: np.ndarray
    peak_detector: np.ndarray
    sub_power: np.ndarray
    pairs: np.ndarray
    pair_cross: np.ndarray
    return_gain: np.ndarray | None = None
    segments: SegmentPlan | None = None
    segment_domain: bool = False
    instant_frames: np.ndarray | None = None

    @property
    def n_stems(self) -> int:
        """Stems in the session, int > 0."""
        return self.band_power.shape[0]

    @cached_property
    def centre_gains(self) -> np.ndarray:
        """(stems, 2) the centre pan gains the Analysis was made with (``engine.dsp.pan_gains``)."""
        return pan_gains(np.zeros(self.n_stems), self.is_mono)

    @cached_property
    def fast(self) -> Analysis:
        """The Analysis the fast tier works on: this one, or for a segmented song (``segments``) its
        view on the segments' frames (``engine.segments.segment_view``), made once."""
        if self.segments is None or self.segment_domain:
            return self
        return segment_view(self, self.segments)

    @cached_property
    def heavy_block_frames(self) -> np.ndarray:
        """(T', W) int: the ``W`` frames of the 400 ms BS.1770 block centred on each heavy frame
        (``engine.bands.GATE_BLOCK_FRAMES``; at the song's ends, or a segment run's, the nearest
        frame repeats): the blocks the fast tier gates a stem's level on
        (``objectives.balance.gated_levels_db``)."""
        w = GATE_BLOCK_FRAMES
        frames = self.heavy_frames[:, None] - w // 2 + np.arange(w)[None, :]  # (T', W)
        if self.segment_domain:  # within each heavy frame's run
            h = self.heavy_frames
            return np.clip(frames, self.segments.run_first[h][:, None], self.segments.run_last[h][:, None])
        return np.clip(frames, 0, self.n_frames - 1)

    @cached_property
    def heavy_block_power(self) -> np.ndarray:
        """(stems, 2, B, T', W) float32: each stem's band power in the frames of
        :attr:`heavy_block_frames` (the fast tier weights each frame by its own compressor gain)."""
        return np.ascontiguousarray(self.band_power[..., self.heavy_block_frames])

    @cached_property
    def band_bark(self) -> np.ndarray:
        """(B,) the band centres in Bark."""
        return bark(self.grid.centres_hz)

    @cached_property
    def frame_before_instant(self) -> np.ndarray:
        """(K,) int, for each candidate instant the frame centred a hop or more before it (-1: none)."""
        if self.instant_frames is not None:
            return self.instant_frames[1]
        return self.peak_instants // self.grid.hop - 1

    @cached_property
    def peak_frames(self) -> np.ndarray:
        """(K,) int, the frame centred nearest each candidate instant (-1: none, ``instant_frames``)."""
        if self.instant_frames is not None:
            return self.instant_frames[0]
        return np.minimum((self.peak_instants + self.grid.hop // 2) // self.grid.hop, self.n_frames - 1)

    @cached_property
    def peak_neighbours(self) -> np.ndarray:
        """(2, K) int: the index of the instant one sample before / after each instant, -1 where
        that sample is not an instant (``engine.peaks.PEAK_NEIGHBOURS``)."""
        inst = self.peak_instants
        out = np.full((2, inst.size), -1, dtype=np.int64)
        for row, step in enumerate((-1, 1)):
            j = np.searchsorted(inst, inst + step)
            ok = (j < inst.size) & (inst[np.minimum(j, inst.size - 1)] == inst + step)
            out[row, ok] = j[ok]
        return out

    @cached_property
    def detector_group_share(self) -> np.ndarray:
        """(stems, B, C): each band's long-term power share within its detector group, per stem,
        so that per-band EQ power gains (pop, stems, B) @ share -> per-group gains."""
        power = self.band_power.sum(axis=(1, 3)).astype(float) + 1e-30  # (s, B)
        group = np.arange(power.shape[1]) // DETECTOR_GROUP_BANDS  # (B,)
        onehot = group[:, None] == np.arange(group.max() + 1)[None, :]  # (B, C)
        share = power[:, :, None] * onehot[None]  # (s, B, C)
        return (share / share.sum(axis=1, keepdims=True)).astype(np.float32)

    @cached_property
    def peak_values_by_instant(self) -> np.ndarray:
        """``peak_values`` with the instant first, contiguous (K, stems, 2, 2 N): one instant's values
        are one block, for gathering a few instants per candidate."""
        return np.ascontiguousarray(np.moveaxis(self.peak_values, -1, 0))

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
        """Analysis frames T of the song (every frame, not only the heavy ones); in a
        ``segment_domain`` view, the frames of the segments' runs."""
        return self.band_power.shape[-1]

    @property
    def song_frames(self) -> np.ndarray:
        """(T',) int, the song frame of each heavy frame (``heavy_frames`` itself unless in a
        ``segment_domain`` view): what ``Features.frames`` reports."""
        return self.segments.frames[self.heavy_frames] if self.segment_domain else self.heavy_frames

    @cached_property
    def key_power(self) -> np.ndarray:
        """(stems, B, T) float32: each stem's band power as a key of a dynamic cut (``engine.dsp.unmask``):
        the raw (untrimmed, un-panned) stem mixed to mono as the mean of its channels,
        ``(|L|^2 + |R|^2 + 2 Re(L R*)) / 4`` per band (``unmask.mono_band_power``; a mono stem: its row)."""
        centre = pan_gains(np.zeros(self.n_stems), self.is_mono)  # (s, 2): band_power is centre-panned
        raw = self.band_power / (centre**2)[:, :, None, None]  # (s, 2, B, T)
        cross = self.cross_power / (centre[:, 0] * centre[:, 1])[:, None, None]  # (s, B, T)
        mono = np.maximum((raw[:, 0] + raw[:, 1] + 2.0 * cross) / 4.0, 0.0)  # (s, 2, B, T) -> (s, B, T)
        mono[self.is_mono] = raw[self.is_mono, 0]  # one row duplicated: the row itself
        return mono.astype(np.float32)

    @cached_property
    def detector_power(self) -> np.ndarray:
        """Each stem's un-panned, stereo-linked mean square per band and frame (stems, B, T): what
        a stem compressor's RMS detector sees before EQ and trim; float32 like ``band_power``."""
        centre = pan_gains(np.zeros(self.n_stems), self.is_mono)  # (s, 2): band_power is centre-panned
        return (self.band_power.sum(axis=1) / (centre**2).sum(axis=1)[:, None, None]).astype(np.float32)


# frames (evenly spread) the fast tier's per-stem band tensors use: they rank masking, balance and
# genre nearly as well as 96 frames do, at a fraction of the cost; fewer lose genre's ranking
# (experiments/fidelity.py measures it; the figures are in the README's fast-tier details)
DEFAULT_HEAVY_FRAMES = 32
# a long song needs more of them: its long-term spectrum (genre) and its sections' balance are not
# seen in 32 frames over 3 minutes; one frame per HEAVY_FRAME_SPACING_S, within these bounds
HEAVY_FRAME_SPACING_S = 1.6
MAX_HEAVY_FRAMES = 128


def heavy_frame_count(duration_s: float) -> int:
    """Frames of the fast tier's band tensors for a song of ``duration_s`` s: 32 up to 51 s, then
    one per ``HEAVY_FRAME_SPACING_S`` s, at most ``MAX_HEAVY_FRAMES``."""
    return int(np.clip(round(duration_s / HEAVY_FRAME_SPACING_S), DEFAULT_HEAVY_FRAMES, MAX_HEAVY_FRAMES))


def analyze_session(session: Session, *, max_heavy_frames: int | None | str = "auto",
                    progress: Callable[[int, int], None] | None = None, threads: int | None = None,
                    reverb: bool = True, segment_bound_s: float | None = SEGMENT_BOUND_S) -> Analysis:
    """Analyse every stem once.

    Two passes over the stems, each reading every stem once (a view of the held audio, or one
    decode of its file for a streaming session), on one pool of ``threads`` threads for the whole
    analysis, one task per stem. Pass 1 (:meth:`_Work.first_pass`): band powers, cross power and
    long-term spectrum from one chunked STFT (``engine.bands.band_powers_chunked``), the
    integrated loudness from one compiled K-weighted pass (``engine.chain.k_block_powers``), and
    the peak-candidate search (``engine.peaks.stem_candidate_instants``: one compiled pass for all
    its filters); the unity-gain sum of the stems (whose peaks are candidates too) is added up in
    stem order. Pass 2 (:meth:`_Work.second_pass`), once the instants are known: the peak basis and the
    compressors' detectors at them. Every stem's results go to its own slots, so the Analysis is
    bit for bit the same for any number of threads.

    Parameters
    ----------
    session : Session
    max_heavy_frames : int > 0, None or "auto"
        Cap on the frames the fast tier's per-stem band tensors (masking, balance, genre, reference)
        use, evenly spread over the song; None uses every frame; "auto" (default)
        :func:`heavy_frame_count` of the song's duration. Compressors, loudness, LRA and
        peaks always use every frame. ``experiments/fidelity.py`` measures what the cap costs.
    progress : callable (stem passes done, 2 x stems) -> None, optional
        Called from the calling thread each time a stem finishes a pass (``evomix.progress``).
    threads : int >= 1, optional
        Threads of the analysis' pool; default ``evomix.core.runtime.available_cores()``. The numba
        kernels, ``scipy.fft`` and large numpy operations release the GIL; BLAS is held to one
        thread meanwhile (the stems are the parallelism).
    reverb : bool, default True
        Measure each stem's gain through the reverb (:func:`reverb_return_gain`, about 0.1 s per
        stem at real size); False leaves ``Analysis.return_gain`` None (the band model's unit
        gain), for a search without the reverb bus.
    segment_bound_s : float > 0 or None, default ``engine.segments.SEGMENT_BOUND_S`` (60 s)
        A song longer than this gets a :class:`~evomix.engine.segments.SegmentPlan`
        (``Analysis.segments``): the fast tier then works on its weighted representative segments,
        at a cost that does not grow with the song's length. None: every frame, whatever the length.
    """
    n_threads = max(1, min(available_cores() if threads is None else int(threads), session.n_stems))
    work = _Work(session, reverb=reverb)
    n_stems = session.n_stems
    done = [0]

    def advance():
        done[0] += 1
        if progress is not None:
            progress(done[0], 2 * n_stems)

    with single_threaded_blas(), contextlib.ExitStack() as stack:
        pool = (stack.enter_context(ThreadPoolExecutor(n_threads, thread_name_prefix="evomix-analysis"))
                if n_threads > 1 else None)
        _each_stem(pool, work.first_pass, n_stems, advance)
        work.find_instants()
        _each_stem(pool, work.second_pass, n_stems, advance)
    analysis = work.result(max_heavy_frames, segment_bound_s)
    analysis.fast  # noqa: B018  (made once here, not by the first threads that score)
    return analysis


def _each_stem(pool: ThreadPoolExecutor | None, task: Callable[[int], None], n_stems: int,
               advance: Callable[[], None]) -> None:
    """``task(s)`` for every stem, on ``pool`` (or here, in stem order, without one); ``advance()``
    in this thread as each one finishes. A failure cancels the tasks not yet started and is raised."""
    if pool is None:
        for s in range(n_stems):
            task(s)
            advance()
        return
    futures = [pool.submit(task, s) for s in range(n_stems)]
    try:
        for f in as_completed(futures):
            f.result()
            advance()
    except BaseException as exc:
        for f in futures:
            f.cancel()
        wait(futures)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        first = next((e for e in errors if not isinstance(e, _Aborted)), exc)  # the cause, not the stems it stopped
        if first is exc:
            raise
        raise first from None


class _Aborted(Exception):
    """A stem's task gave up because another stem's task failed."""


class _InStemOrder:
    """Lets tasks that run in any order do one step each in stem order (``_Mixer._one`` in
    ``engine.render`` does the same): a sum's rounding must not depend on the threads."""

    def __init__(self):
        self._next = 0
        self._failed = False
        self._turn = threading.Condition()

    def run(self, s: int, step: Callable[[], None]) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._next == s or self._failed)
            if self._failed:
                raise _Aborted()
        step()  # outside the lock: only stem s may run now
        with self._turn:
            self._next += 1
            self._turn.notify_all()

    def fail(self) -> None:
        with self._turn:
            self._failed = True
            self._turn.notify_all()


RETURN_CALIBRATION_S = 15.0  # s of each stem (its loudest stretch) run through the reverb once
RETURN_GAIN_LIMIT_DB = 6.0  # dB: the calibration's per-band correction is clipped to +-this


def reverb_return_gain(x: np.ndarray, band_power: np.ndarray, grid: BandGrid, sr: int) -> np.ndarray:
    """The exact reverb's energy gain on stem ``x`` (2, samples) per band over the band model's, (B,).

    A reverb's power response at one frequency is a random draw around its mean (M. R. Schroeder,
    "Frequency-correlation functions of frequency responses in rooms", JASA 34(12), 1962): a tonal
    stem (a held note, a synth line) gets more or less than the unit gain the band model
    (``engine.dsp.reverb.reverb_band_power``) assumes, by several dB, and by the same amount at any
    decay, since the network's delay lines (``REVERB_SEED``) fix its modes. So once per stem, its
    loudest ``RETURN_CALIBRATION_S`` run through the network (decay 1.5 s, damping 0.5, no
    pre-delay or high-pass), and each band's return energy is divided by the model's for the same
    frames: the factor the fast tier applies to the stem's send. Clipped to
    +-``RETURN_GAIN_LIMIT_DB``; 1 in bands the stem does not reach (under 1e-6 of its strongest).
    """
    n = x.shape[-1]
    hop = grid.hop
    frames = band_power.sum(axis=(0, 1))  # (T,)
    width = max(1, min(frames.size, int(round(RETURN_CALIBRATION_S / grid.hop_s))))
    run = np.convolve(frames, np.ones(width), mode="valid")  # (T - width + 1,) energy per window
    f0 = int(np.argmax(run))
    a, b = f0 * hop, min(n, (f0 + width) * hop)
    if b - a < hop:
        return np.ones(grid.n_bands, np.float32)
    seg = np.ascontiguousarray(x[:, a:b], dtype=np.float64)
    y = reverb(seg, sr, decay_s=1.5, damping=0.5, predelay_ms=0.0, highpass_hz=20.0, seed=REVERB_SEED)
    exact = band_powers_chunked(y, grid).sum(axis=(0, 2), dtype=np.float64)  # (B,)
    send = band_powers_chunked(seg, grid).mean(axis=0)  # (B, T_seg) the send's mean over the channels
    decay = band_decay_s(grid.centres_hz, 1.5, 0.5, sr, seed=REVERB_SEED)
    model = 2.0 * reverb_band_power(send, decay, 0.0, grid.hop_s).sum(axis=-1, dtype=np.float64)  # (B,)
    present = model > 1e-6 * max(float(model.max()), 1e-30)
    lim = 10.0 ** (RETURN_GAIN_LIMIT_DB / 10.0)
    gain = np.where(present, np.clip(exact / np.maximum(model, 1e-30), 1.0 / lim, lim), 1.0)
    return gain.astype(np.float32)


class _Work:
    """One analysis in progress: the session, the grids, and a slot per stem for every result."""

    def __init__(self, session: Session, *, reverb: bool = True):
        self.session = session
        self.reverb = reverb
        sr = self.sr = session.sr
        grid = self.grid = band_grid(sr)
        n_stems, n_samples = session.n_stems, session.n_samples
        n_frames = self.n_frames = grid.n_frames(n_samples)
        n_bands = grid.n_bands
        freqs = np.fft.rfftfreq(grid.n_fft, 1.0 / sr)
        self.k_bins = k_weighting_power(freqs, sr).astype(np.float32)  # (bins,)
        self.centre = pan_gains(np.zeros(n_stems), np.asarray(session.is_mono))  # (stems, 2)
        self.centre32 = self.centre.astype(np.float32)
        # fine-grid index of each FFT bin (nearest sub-band of its band); bins outside bands dropped
        sub_edges = np.sqrt(grid.grid_hz[:-1] * grid.grid_hz[1:])
        self.keep = grid.bin_band >= 0
        self.bin_grid = np.searchsorted(sub_edges, freqs)[self.keep]
        self.band_of_fine = np.repeat(np.arange(n_bands), grid.grid_hz.size // n_bands)
        self.k_sos = k_weighting_sos(sr)
        self.block, self.block_hop = int(round(GATING_BLOCK_S * sr)), int(round(GATING_HOP_S * sr))  # BS.1770-4
        self.per_stem = candidates_per_stem(n_stems)

        self.band_power = np.empty((n_stems, 2, n_bands, n_frames), np.float32)
        self.cross_power = np.empty((n_stems, n_bands, n_frames), np.float32)
        self.grid_weight = np.empty((n_stems, grid.grid_hz.size, n_bands), np.float32)
        self.k_band = np.empty((n_stems, n_bands), np.float32)
        self.lufs = np.empty(n_stems)
        self.instants: list = [None] * n_stems
        self.total = np.zeros((2, n_samples))  # unity-gain sum, for peak candidates (added in stem order)
        self.order = _InStemOrder()
        R = MASTER_DETECTOR_SUBSTEPS
        self.sub_inst = np.clip((np.arange(n_frames * R) / R - (R - 1) / (2 * R)) * grid.hop, 0,
                                n_samples - 1).round().astype(np.int64)
        self.sub_power = np.empty((n_stems, n_bands, self.sub_inst.size), np.float32)
        self.inst = self.peak_values = self.peak_detector = None
        self.coh_frames = coherence_frames(n_frames)  # spectra at these frames: the pairs' coherence
        self.coh_spectra = np.empty((n_stems, 2, self.coh_frames.size, grid.n_fft // 2 + 1), np.complex64)
        self.return_gain = np.ones((n_stems, n_bands), np.float32)

    def stem(self, s: int) -> np.ndarray:
        """Stem ``s`` panned centre (2, samples) float32: one read of it."""
        return self.session.stem(s) * self.centre32[s][:, None]

    def first_pass(self, s: int) -> None:
        """Band powers, spectrum weights, loudness and candidate instants of stem ``s``; then, in
        stem order, its share of the unity-gain sum."""
        try:
            x = self.stem(s)
            grid = self.grid
            self.band_power[s], self.cross_power[s], lts = band_powers_chunked(x, grid, cross=True, bin_total=True)
            lts = lts + POWER_FLOOR  # (bins,) long-term power, > 0 in every bin
            fine = np.zeros(grid.grid_hz.size)
            np.add.at(fine, self.bin_grid, lts[self.keep])  # (G,)
            gw = np.zeros((grid.grid_hz.size, grid.n_bands))
            gw[np.arange(grid.grid_hz.size), self.band_of_fine] = fine
            self.grid_weight[s] = gw / np.maximum(gw.sum(axis=0, keepdims=True), 1e-30)
            self.k_band[s] = (band_sum((lts * self.k_bins)[None, :], grid)[0]
                              / np.maximum(band_sum(lts[None, :], grid)[0], 1e-30))  # (B,)
            if x.shape[-1] >= self.block:  # BS.1770 integrated loudness, one compiled pass
                z = k_block_powers(x, np.zeros(0), 1.0, self.k_sos, self.block, self.block_hop)  # (2, blocks)
                self.lufs[s] = float(gated_loudness(z))
            else:  # shorter than one gating block: the meter says so
                self.lufs[s] = float(integrated_loudness(x, self.sr))
            self.instants[s] = stem_candidate_instants(x, grid, self.per_stem)
            self.coh_spectra[s] = spectra_at(x, grid, self.coh_frames)
            if self.reverb:
                self.return_gain[s] = reverb_return_gain(x, self.band_power[s], grid, self.sr)
            self.order.run(s, lambda: np.add(self.total, x, out=self.total))
        except BaseException:
            self.order.fail()
            raise

    def find_instants(self) -> None:
        """The candidate instants (K,): every stem's and the unity-gain sum's, sorted, unique; and
        the correlated pairs (``engine.coherence``)."""
        self.pairs, self.pair_cross = coherent_pairs(self.coh_spectra, self.band_power, self.grid)
        self.coh_spectra = None
        sum_inst = sum_candidate_instants(self.total, self.sr)
        self.total = None
        self.inst = np.unique(np.concatenate(self.instants + [sum_inst]))  # (K,)
        n_stems, K = self.session.n_stems, self.inst.size
        self.peak_values = np.empty((n_stems, 2, 2 * PEAK_NODES_HZ.size, K), np.float32)
        n_groups = -(-self.grid.n_bands // DETECTOR_GROUP_BANDS)
        self.peak_detector = np.empty((n_stems, n_groups, K), np.float32)

    def second_pass(self, s: int) -> None:
        """Stem ``s``'s peak basis and detector readings at the instants, from one read of it."""
        x = self.stem(s)
        grid = self.grid
        unpan = float((self.centre[s] ** 2).sum())  # un-pan: stereo-linked mean
        self.peak_values[s] = peak_values_at(x, self.inst, grid)
        self.peak_detector[s] = detector_at(x, self.inst, grid) / unpan
        self.sub_power[s] = detector_at(x, self.sub_inst, grid, group_bands=1,
                                        window_s=grid.hop_s / MASTER_DETECTOR_SUBSTEPS) / unpan

    def result(self, max_heavy_frames: int | None | str, segment_bound_s: float | None = None) -> Analysis:
        session, grid, n_frames = self.session, self.grid, self.n_frames
        band_power, lufs = self.band_power, self.lufs
        if isinstance(max_heavy_frames, str):
            max_heavy_frames = heavy_frame_count(session.duration_s)
        if max_heavy_frames is None or max_heavy_frames >= n_frames:
            heavy = np.arange(n_frames)
        else:
            heavy = np.unique(np.linspace(0, n_frames - 1, max_heavy_frames).round().astype(int))
        # (B, B) @ (stems, 2, B, T') -> (stems, 2, B, T')
        spread_power = np.einsum("ij,scjt->scit", grid.spread.astype(np.float32), band_power[..., heavy])

        silent = lufs <= -199.0
        trim = np.clip(STEM_REFERENCE_LUFS - lufs, *TRIM_RANGE_DB)
        trim[silent] = 0.0
        plan = None
        if segment_bound_s is not None and session.duration_s > segment_bound_s:
            plan = plan_segments(band_power, self.peak_values, self.inst, trim, grid.hop_s, grid.hop)
        return Analysis(
            sr=self.sr,
            grid=grid,
            names=tuple(session.names),
            roles=tuple(session.roles),
            is_mono=np.asarray(session.is_mono, bool),
            band_power=band_power,
            cross_power=self.cross_power,
            spread_power=spread_power.astype(np.float32),
            heavy_frames=heavy,
            grid_weight=self.grid_weight,
            k_band=self.k_band,
            trim_db=trim,
            stem_lufs=lufs,
            n_samples=session.n_samples,
            peak_values=self.peak_values,
            peak_instants=self.inst,
            peak_detector=self.peak_detector,
            sub_power=self.sub_power,
            pairs=self.pairs,
            pair_cross=self.pair_cross,
            return_gain=self.return_gain if self.reverb else None,
            segments=plan,
        )
