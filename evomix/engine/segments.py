"""Representative segments: a fast tier whose cost does not grow with the song's length.

Past ``SEGMENT_BOUND_S`` the fast tier (``engine.batch``) no longer runs its compressors, master
bus, reverb return, loudness gating, loudness range and peaks on every 50 ms frame of the song, but
on a bounded, weighted set of segments chosen once in the analysis (:func:`plan_segments`):

1. The song is cut into abutting windows of ``SEGMENT_S``; each window is described by every
   stem's level in a few coarse band groups (dB, floored 60 dB below the stem's loudest window).
2. k-means (``scipy.cluster.vq.kmeans2``, k-means++ seeding, a fixed seed) groups the windows into
   ``N_CLUSTERS`` clusters; each cluster is represented by its medoid (the member nearest its
   centroid).
3. The windows holding the song's highest peak instants (of the trimmed unity-gain sum, at the
   analysis' candidate instants) are representatives too (``N_PEAK_SEGMENTS``): the limiter's true
   peak is a maximum, so the loudest peaks must be inside.
4. Every window of the song is assigned to its nearest representative (the assignment step of
   k-medoids); a representative's weight starts as the number of song frames assigned to it and
   is calibrated towards each stem's power per band group over the song
   (:func:`calibrated_weights`); the weights sum to the song's frame count.
5. Each representative is run with a ``WARMUP_S`` lead-in: frames that the compressors (release up
   to 1 s, master 200 ms), the 400 ms gating blocks, the reverb's smear and the master detector run
   through but that are not counted (weight 0), so their state on the counted frames is the song's.
   Representatives that touch or overlap are run as one.

The fast tier then works on the concatenated runs (:func:`segment_view`: an ``Analysis`` whose frame
axis is the runs' frames), counts each counted frame with its weight in the loudness gating
(:meth:`SegmentPlan.block_weights`) and the loudness range, and takes its per-stem band tensors
(masking, balance, genre, reference) on frames drawn by systematic sampling over the cumulative
weight (:meth:`SegmentPlan.sample_frames`): each drawn frame stands for the same number of song
frames, so their plain means are the weighted means over the song.

Sources: S. P. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982
(k-means); D. Arthur & S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007;
L. Kaufman & P. J. Rousseeuw, "Finding Groups in Data", Wiley 1990, ch. 2 (medoids, the assignment
step); W. G. Cochran, "Sampling Techniques", 3rd ed., Wiley 1977, sec. 8 (systematic sampling with
probability proportional to size).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evomix.core.constants import POWER_FLOOR

if TYPE_CHECKING:  # annotations only: engine.analysis imports this module
    from evomix.engine.analysis import Analysis

# Past this duration the fast tier works on segments. 60 s: twice the standard 30 s excerpt, whose
# every frame the fast tier runs at its design speed; the plan below is at most 13 runs of 3 s (39 s
# of frames, under half of a 60-s song), so a song under the bound costs at most ~2x the plan, and a
# song over it costs the plan, whatever its length.
SEGMENT_BOUND_S = 60.0
SEGMENT_S = 2.0  # counted length of each window: 40 frames, 20 gating blocks
WARMUP_S = 1.0  # s of lead-in run but not counted: 5 time constants of the master compressor's release
# (200 ms), 7 of the stem compressors' neutral one (150 ms), 1 of their slowest (1 s); 2.5 gating blocks;
# a 1 s warm-up + 2 s window is one whole 3 s short-term window (the loudness range's)
# representative windows chosen by clustering. 12: against the every-frame fast tier on 64 candidates
# (seeded + uniform) of the real-size song, raw loudness within 0.10 / 0.34 LU (mean / max) against
# 0.17 / 0.66 with 8, and on the sectioned one 0.20 / 0.81 against 0.28 / 1.43 (16 adds little:
# 0.07 / 0.32 and 0.19 / 0.78), for 46 % more frames (760 against 520); a choice
N_CLUSTERS = 12
N_PEAK_SEGMENTS = 1  # ... and by the song's highest peaks
# Candidate instants outside the segments whose peaks still count (the true peak is a maximum over
# the whole song, and a 210-s song's loudest instant lies in a different window for each mix): half
# the loudest of the trimmed unity-gain sum, half shared among the stems (the loudest of each trimmed
# stem alone: a mix that pushes one stem). On 128 random mixes of the real-size song, 800 of its
# 2,250 instants held each mix's peak within 0.05 dB on average (1.5 dB at worst), 400 within 0.34 dB
PEAK_INSTANTS_KEPT = 600
SEGMENT_HEAVY_FRAMES = 32  # frames of the per-stem band tensors (as engine.analysis.DEFAULT_HEAVY_FRAMES)
CLUSTER_BAND_GROUPS = 6  # coarse band groups per stem in a window's description
CLUSTER_FLOOR_DB = 60.0  # a stem's window level is floored this far below its loudest window
CLUSTER_SEED = 0  # k-means++ seeding: the plan is the same for the same analysis


@dataclass(frozen=True)
class SegmentPlan:
    """The fast tier's frames for a long song: runs of song frames, each a warm-up then a counted part.

    Attributes
    ----------
    frames : (F,) int, the song frame of each fast-tier frame (the runs concatenated, in song order).
    weight : (F,) float64 >= 0, song frames each fast-tier frame stands for: 0 in a warm-up, a
        representative's weight over its counted frames in a counted one; sums to ``n_song_frames``.
    run_first, run_last : (F,) int, fast-tier index of the first / last frame of each frame's run.
    segments : (n, 2) int, song frames ``[start, stop)`` of each representative window.
    segment_weight : (n,) float64, song frames each window stands for (sums to ``n_song_frames``).
    peak_segment : (n,) bool, the window was chosen for the song's highest peaks.
    n_song_frames : int, frames T of the whole song.
    window_bounds : (W, 2) int, song frames ``[start, stop)`` of every window of the song.
    window_segment : (W,) int, the representative (row of ``segments``) each window is assigned to.
    """

    frames: np.ndarray
    weight: np.ndarray
    run_first: np.ndarray
    run_last: np.ndarray
    segments: np.ndarray
    segment_weight: np.ndarray
    peak_segment: np.ndarray
    n_song_frames: int
    window_bounds: np.ndarray
    window_segment: np.ndarray

    @property
    def n_frames(self) -> int:
        """Fast-tier frames F (warm-ups included)."""
        return int(self.frames.size)

    def fast_frame_of(self, song_frame: np.ndarray) -> np.ndarray:
        """The fast-tier frame standing for each song frame (..., int): itself where it is run
        (warm-up or counted); elsewhere the frame at the same offset in the representative its
        window is assigned to (a passage of the same kind, whose compressors are in the same state)."""
        song_frame = np.asarray(song_frame)
        local = np.full(self.n_song_frames, -1, dtype=np.int64)
        local[self.frames] = np.arange(self.frames.size)
        w = np.minimum(np.searchsorted(self.window_bounds[:, 1], song_frame, side="right"),
                       self.window_bounds.shape[0] - 1)
        seg = self.segments[self.window_segment[w]]  # (..., 2)
        offset = np.minimum(song_frame - self.window_bounds[w, 0], seg[..., 1] - seg[..., 0] - 1)
        folded = local[seg[..., 0] + offset]
        direct = local[np.clip(song_frame, 0, self.n_song_frames - 1)]
        return np.where(direct >= 0, direct, folded)

    def block_weights(self, block: int, step: int) -> np.ndarray:
        """(blocks,) float64: the weight of each window of ``block`` frames every ``step`` frames
        on the fast-tier axis (as ``engine.batch.frames_to_blocks`` lays them out): the weight of
        its last frame when the whole window lies in one run, else 0; rescaled per run so that a
        run's windows weigh its counted frames' weight over ``step`` (the song's windows that the
        run stands for). A 400 ms gating block or a 3 s short-term window is counted only when the
        warm-up has given it its whole history."""
        n = self.frames.size
        n_blocks = (n - block) // step + 1 if n >= block else 1
        first = np.arange(n_blocks) * step
        last = np.minimum(first + block - 1, n - 1)
        raw = np.where(self.run_first[last] <= first, self.weight[last], 0.0)  # (blocks,)
        run_of = self.run_first[last]
        out = np.zeros(n_blocks)
        for r in np.unique(self.run_first):
            in_run = run_of == r
            total = raw[in_run].sum()
            counted = self.weight[self.run_first == r].sum() / step
            if total > 0.0:
                out[in_run] = raw[in_run] * (counted / total)
        return out

    def sample_frames(self, n: int) -> np.ndarray:
        """(n,) int, fast-tier frames drawn by systematic sampling over the cumulative weight
        (Cochran 1977, sec. 8): the frame at cumulative weight ``(i + 1/2) T / n`` for i < n, so
        each drawn frame stands for ``T / n`` song frames and a plain mean over them estimates the
        weighted mean over the song. Sorted (song order); a frame appears more than once only if it
        stands for more than ``T / n`` song frames."""
        cum = np.cumsum(self.weight)
        total = cum[-1]
        u = (np.arange(n) + 0.5) * (total / n)
        return np.minimum(np.searchsorted(cum, u, side="right"), self.frames.size - 1)


def window_features(band_power: np.ndarray, segment_frames: int, *, groups: int = CLUSTER_BAND_GROUPS,
                    floor_db: float = CLUSTER_FLOOR_DB) -> tuple[np.ndarray, np.ndarray]:
    """Each window's description for clustering: (windows, stems x groups) dB, and the windows'
    song frames ``[start, stop)`` (windows, 2).

    ``band_power`` (stems, 2, B, T): every stem's mean power over the window's frames and both
    channels in ``groups`` contiguous groups of bands, in dB, floored ``floor_db`` below the
    stem's loudest window in that group (a tacet stem reads as the floor, not as -inf). The last
    window holds the frames left over (it may be shorter).
    """
    n_stems, _, n_bands, n_frames = band_power.shape
    starts = np.arange(0, n_frames, segment_frames)
    bounds = np.stack([starts, np.minimum(starts + segment_frames, n_frames)], axis=1)  # (W, 2)
    edges = np.linspace(0, n_bands, groups + 1).round().astype(int)
    p = band_power.sum(axis=1, dtype=np.float64)  # (s, 2, B, T) -> (s, B, T)
    g = np.add.reduceat(p, edges[:-1], axis=1)  # (s, B, T) -> (s, G, T)
    c = np.concatenate([np.zeros(g.shape[:2] + (1,)), np.cumsum(g, axis=-1)], axis=-1)  # (s, G, T + 1)
    mean = (c[..., bounds[:, 1]] - c[..., bounds[:, 0]]) / (bounds[:, 1] - bounds[:, 0])  # (s, G, W)
    db = 10.0 * np.log10(np.maximum(mean, POWER_FLOOR))
    db = np.maximum(db, db.max(axis=-1, keepdims=True) - floor_db)
    return db.reshape(n_stems * groups, -1).T, bounds  # (s G, W) -> (W, s G)


def peak_windows(peak_values: np.ndarray, peak_instants: np.ndarray, trim_db: np.ndarray, hop: int,
                 bounds: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` windows (distinct) holding the highest peaks of the trimmed unity-gain
    sum at the candidate instants, highest first.

    ``peak_values`` (stems, 2, 2 N, K): the in-phase rows (first N) of each stem's band split sum
    to its (centre-panned) sample at each instant (``engine.peaks.peak_values_at``); each stem is
    scaled by its trim (the mix every candidate's gains start from) and the stems are summed.
    """
    if n <= 0 or peak_instants.size == 0:
        return np.zeros(0, dtype=np.int64)
    n_nodes = peak_values.shape[2] // 2
    x = peak_values[:, :, :n_nodes].sum(axis=2, dtype=np.float64)  # (s, 2, K) each stem's sample
    amp = np.abs(np.einsum("s,sck->ck", 10.0 ** (np.asarray(trim_db) / 20.0), x)).max(axis=0)  # (K,)
    frame = (peak_instants + hop // 2) // hop  # (K,) the frame centred nearest each instant
    window = np.searchsorted(bounds[:, 1], frame, side="right")  # (K,) the window holding it
    window = np.minimum(window, bounds.shape[0] - 1)
    best = np.full(bounds.shape[0], -np.inf)
    np.maximum.at(best, window, amp)
    order = np.argsort(-best, kind="stable")
    return order[: min(n, int(np.isfinite(best).sum()))]


def loud_instants(peak_values: np.ndarray, trim_db: np.ndarray, n: int) -> np.ndarray:
    """Indices (sorted) of about ``n`` of the candidate instants with the highest peaks: the ``n / 2``
    highest of the trimmed unity-gain sum, and the ``n / (2 stems)`` highest of each trimmed stem
    alone. ``peak_values`` (stems, 2, 2 N, K) as in :func:`peak_windows`; ``trim_db`` (stems,) dB."""
    n_stems = peak_values.shape[0]
    n_nodes = peak_values.shape[2] // 2
    x = peak_values[:, :, :n_nodes].sum(axis=2, dtype=np.float64)  # (s, 2, K) each stem's sample
    gain = 10.0 ** (np.asarray(trim_db) / 20.0)  # (s,)
    mix = np.abs(np.einsum("s,sck->ck", gain, x)).max(axis=0)  # (K,)
    stem = np.abs(x).max(axis=1) * gain[:, None]  # (s, K)
    per = max(1, n // 2 // max(n_stems, 1))
    picks = [np.argsort(-mix, kind="stable")[: n - n // 2]]
    picks += [np.argsort(-stem[s], kind="stable")[:per] for s in range(n_stems)]
    return np.unique(np.concatenate(picks))


def cluster_medoids(features: np.ndarray, k: int, *, seed: int = CLUSTER_SEED) -> np.ndarray:
    """Indices of the medoids (the member nearest each centroid) of the non-empty clusters of a
    k-means clustering of ``features`` (windows, dims) (Lloyd 1982 with k-means++ seeding, Arthur &
    Vassilvitskii 2007; ``scipy.cluster.vq.kmeans2``), sorted."""
    from scipy.cluster.vq import kmeans2

    k = min(k, features.shape[0])
    if k <= 1:
        centre = features.mean(axis=0, keepdims=True)
        return np.array([int(np.argmin(((features - centre) ** 2).sum(axis=1)))])
    centroids, labels = kmeans2(features, k, minit="++", seed=np.random.default_rng(seed))
    medoids = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size:
            d = ((features[members] - centroids[c]) ** 2).sum(axis=1)
            medoids.append(int(members[np.argmin(d)]))
    return np.unique(medoids)


def calibrated_weights(band_power: np.ndarray, bounds: np.ndarray, reps: np.ndarray, counts: np.ndarray, *,
                       groups: int = CLUSTER_BAND_GROUPS) -> np.ndarray:
    """The representatives' weights (n,), calibrated towards every stem's power in every band group
    summed over the song (a linear mix's power, hence its ungated loudness, is then nearly right for
    any gains and any EQ flat within a group), the weights still summing to the song's frame count.

    Calibration estimation (J.-C. Deville & C.-E. Sarndal, "Calibration estimators in survey
    sampling", JASA 87(418), 1992): non-negative weights (``scipy.optimize.nnls``) fitting, in
    least squares, each stem-group total scaled to 1 (quiet stems count as much as loud ones), the
    assignment counts ``counts`` (relative: a prior that keeps the weights near them where the totals
    leave them free), and their sum (a heavy row). A representative's power is the mean of its frames.
    """
    from scipy.optimize import nnls

    n_bands, n_frames = band_power.shape[2], band_power.shape[-1]
    edges = np.linspace(0, n_bands, groups + 1).round().astype(int)
    p = np.add.reduceat(band_power.sum(axis=1, dtype=np.float64), edges[:-1], axis=1)  # (s, G, T)
    p = p.reshape(-1, n_frames)  # (s, G, T) -> (s G, T)
    total = p.sum(axis=-1)  # (s G,) the song's
    used = total > POWER_FLOOR * n_frames
    rep_mean = np.stack([p[:, a:b].mean(axis=-1) for a, b in bounds[reps]], axis=1)  # (s G, n)
    rows = rep_mean[used] / total[used, None]  # (m, n): weights -> share of each total
    prior = np.diag(1.0 / np.maximum(counts, 1.0)) / np.sqrt(len(reps))  # (n, n)
    A = np.vstack([rows, prior, 1e3 * np.ones((1, len(reps))) / n_frames])
    b = np.concatenate([np.ones(rows.shape[0]), np.full(len(reps), 1.0 / np.sqrt(len(reps))), [1e3]])
    w, _ = nnls(A, b)
    return w * (n_frames / w.sum())


def plan_segments(band_power: np.ndarray, peak_values: np.ndarray, peak_instants: np.ndarray,
                  trim_db: np.ndarray, hop_s: float, hop: int, *, segment_s: float = SEGMENT_S,
                  warmup_s: float = WARMUP_S, n_clusters: int = N_CLUSTERS,
                  n_peak_segments: int = N_PEAK_SEGMENTS, calibrate: bool = True) -> SegmentPlan:
    """Choose the representative windows of a song and lay out their runs (module docstring).

    Parameters
    ----------
    band_power : (stems, 2, B, T) float32, the analysis' band power per frame.
    peak_values : (stems, 2, 2 N, K) float32 and peak_instants (K,) int: the peak basis at the
        candidate instants (``Analysis.peak_values``, ``peak_instants``).
    trim_db : (stems,) dB, each stem's trim.
    hop_s : s, and hop : samples, the frame hop.
    segment_s : s > 0, counted length of a window.  warmup_s : s >= 0, its lead-in.
    n_clusters : int >= 1.  n_peak_segments : int >= 0.
    calibrate : bool, default True: :func:`calibrated_weights` (else the assignment counts).

    Returns
    -------
    SegmentPlan
    """
    n_frames = band_power.shape[-1]
    seg = max(1, int(round(segment_s / hop_s)))
    warm = max(0, int(round(warmup_s / hop_s)))
    feats, bounds = window_features(band_power, seg)
    full = np.flatnonzero(bounds[:, 1] - bounds[:, 0] == seg)  # representatives are whole windows
    full = full if full.size else np.arange(bounds.shape[0])
    peaks = [int(w) for w in peak_windows(peak_values, peak_instants, trim_db, hop, bounds, n_peak_segments)]
    medoids = [int(full[i]) for i in cluster_medoids(feats[full], n_clusters)]
    reps = np.array(sorted(set(medoids) | set(peaks)), dtype=np.int64)  # (n,) window indices
    # every window to its nearest representative (k-medoids' assignment step), weighed in frames
    d = ((feats[:, None, :] - feats[None, reps, :]) ** 2).sum(axis=-1)  # (W, n)
    nearest = np.argmin(d, axis=1)  # (W,)
    lengths = (bounds[:, 1] - bounds[:, 0]).astype(float)
    seg_weight = np.bincount(nearest, weights=lengths, minlength=reps.size)  # (n,) song frames
    if calibrate:  # towards each stem's power per band group over the song (Deville & Sarndal 1992)
        seg_weight = calibrated_weights(band_power, bounds, reps, seg_weight)
    segments = bounds[reps]  # (n, 2)

    # runs: each window with its warm-up; windows whose runs touch or overlap are run as one
    counted_w = np.zeros(n_frames)  # song frame -> weight per counted frame
    in_run = np.zeros(n_frames, bool)
    for (a, b), w in zip(segments, seg_weight):
        counted_w[a:b] = w / (b - a)
        in_run[max(0, a - warm) : b] = True
    frames = np.flatnonzero(in_run)  # (F,) song frames, in order
    new_run = np.concatenate([[True], np.diff(frames) > 1])  # (F,) a run starts here
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.concatenate([starts[1:], [frames.size]]) - 1
    return SegmentPlan(frames=frames, weight=counted_w[frames], run_first=starts[run_id], run_last=ends[run_id],
                       segments=segments, segment_weight=seg_weight,
                       peak_segment=np.isin(reps, peaks), n_song_frames=int(n_frames),
                       window_bounds=bounds, window_segment=nearest)


def segment_view(a: Analysis, plan: SegmentPlan, *, heavy_frames: int = SEGMENT_HEAVY_FRAMES,
                 peak_instants: int = PEAK_INSTANTS_KEPT) -> Analysis:
    """``a`` on the plan's frames: an :class:`~evomix.engine.analysis.Analysis` whose frame axis is
    the runs' frames (F), for the fast tier (``Analysis.fast``).

    Every (..., T) array is taken on ``plan.frames`` (``sub_power``'s R blocks per frame with it).
    The candidate instants are those in the runs and the ``peak_instants`` loudest of the song
    (:func:`loud_instants`), at their song samples; ``instant_frames`` gives each one's frame on
    the fast-tier axis (-1 outside the counted frames: it counts in the true peak, not in a frame's
    limiter gain) and the frame whose compressor state it starts from (``plan.fast_frame_of``: its
    own, or the same place in its window's representative). The heavy frames are
    ``plan.sample_frames(heavy_frames)``, and the spread power is taken on them. ``segments``
    holds the plan, ``segment_domain`` is True.
    """
    f = plan.frames  # (F,)
    hop = a.grid.hop
    R = a.sub_power.shape[-1] // a.n_frames  # engine.analysis.MASTER_DETECTOR_SUBSTEPS blocks per frame
    sub_idx = (f[:, None] * R + np.arange(R)[None, :]).reshape(-1)  # (F R,) blocks of the frames
    # the instants in the runs and the song's loudest, at their song samples
    song_frame = np.minimum((a.peak_instants + hop // 2) // hop, a.n_frames - 1)  # (K,)
    in_run = np.zeros(a.n_frames, bool)
    in_run[f] = True
    keep = in_run[song_frame]  # (K,)
    keep[loud_instants(a.peak_values, a.trim_db, peak_instants)] = True
    song_frame = song_frame[keep]  # (K',)
    counted = np.full(a.n_frames, -1, dtype=np.int64)
    counted[f[plan.weight > 0.0]] = np.flatnonzero(plan.weight > 0.0)
    before = a.peak_instants[keep] // hop - 1  # (K',) song frame centred a hop or more before
    instant_frames = np.stack([counted[song_frame],
                               np.where(before >= 0, plan.fast_frame_of(np.maximum(before, 0)), -1)])  # (2, K')
    heavy = plan.sample_frames(heavy_frames)  # (T',) fast-tier frames
    band_power = np.ascontiguousarray(a.band_power[..., f])  # (s, 2, B, F)
    spread = np.einsum("ij,scjt->scit", a.grid.spread.astype(np.float32), band_power[..., heavy])  # (s, 2, B, T')
    return dataclasses.replace(
        a,
        band_power=band_power,
        cross_power=np.ascontiguousarray(a.cross_power[..., f]),
        spread_power=spread.astype(np.float32),
        heavy_frames=heavy,
        n_samples=int(f.size * hop),
        peak_values=np.ascontiguousarray(a.peak_values[..., keep]),
        peak_instants=a.peak_instants[keep],
        instant_frames=instant_frames,
        peak_detector=np.ascontiguousarray(a.peak_detector[..., keep]),
        sub_power=np.ascontiguousarray(a.sub_power[..., sub_idx]),
        pair_cross=np.ascontiguousarray(a.pair_cross[..., f]),
        segments=plan,
        segment_domain=True,
    )
