"""Temporal structure of a clip from its V-JEPA 2 window embeddings: period, boundaries, repeats, anomalies.

Pure numpy/scipy: arrays in, arrays and dataclasses out; no I/O, no printing.

Inputs: `emb` float [N, D], one mean-pooled embedding per window (not normalised), and `ts` float [N], each
window's start time in seconds, strictly increasing and (nearly) evenly spaced. The stride is taken as
`stride_s = median(diff(ts))`; every lag below is counted in windows and converted to seconds with it.

Definitions (u_i = e_i / ||e_i||, the L2-normalised embedding of window i; "." is the dot product):

- Consecutive cosine distance, shape [N-1]:  d[i] = 1 - u_i . u_{i+1}.
  d[i] is attributed to ts[i+1], the start of the later window: a peak at ts[i+1] means "new content here".
- Self-similarity matrix, shape [N, N]:  S[i, j] = u_i . u_j  (cosine similarity, S[i, i] = 1).
- Autocorrelation, shape [max_lag+1]: with x_i = u_i - mean_j(u_j) (the clip's mean embedding removed),
      r[k] = ( mean_{i<N-k} x_i . x_{i+k} ) / ( mean_i x_i . x_i ),   so r[0] = 1.
  Computed by FFT along time (zero-padded, so no wrap-around), summed over feature dimensions.
- Masked autocorrelation, shape [max_lag+1]: the same over the "normal" windows only (m_i = 1, m_i = 0 for
  windows inside an anomalous span). With x_i = u_i - mean_{j: m_j=1}(u_j) (mean over normal windows) and
  n_k = sum_i m_i m_{i+k} (the number of pairs k apart whose windows are both normal),
      r_m[k] = ( sum_i m_i m_{i+k} x_i . x_{i+k} / n_k ) / ( sum_i m_i x_i . x_i / n_0 ),   r_m[0] = 1,
  and r_m[k] = 0 where n_k = 0 (no evidence). Numerator and n_k are the plain lagged sums of (m_i x_i) and
  of m_i, so this is two zero-padded FFTs too. With every m_i = 1 it is exactly r.
- Change score, shape [N-1] (aligned with d): c[i] = 1 - cos(sum of u over the w windows up to i,
  sum of u over the w windows from i+1), w = `change_halfwidth_s / stride_s`; NaN where either side has
  fewer than w windows. A step change in the embedding mean gives a peak of c exactly at the step.

How each result is derived, and how each threshold is chosen (no threshold is an absolute constant).
Order: anomalies first (the novelty needs no period), then the period from the masked autocorrelation of
the windows outside the anomalies, then boundaries and repeats. A large anomaly would otherwise dominate
the autocorrelation (its windows are far from the mean) and hide a small periodic signal.

- Period. r below is the masked autocorrelation r_m (normal windows only; = r when nothing is anomalous).
  For every candidate period P on a grid of 0.05 windows in [min_period_s, min(max_period_s,
  clip / min_cycles, max_lag / 2)], the harmonic comb contrast H(P) = mean_k r(kP) - mean_k r((k - 1/2)P),
  k = 1..floor(max_lag / P) (r read by linear interpolation), rewards peaks at all multiples of P and
  troughs halfway between them; a smooth decay gives H < 0 and half the true period scores low.
  P* = argmax H, then the octave check: an odd multiple mP scores like P itself, so the shortest
  sub-multiple P*/m with H >= subharmonic_ratio * H(P*) replaces P*; P* is refined by a parabola through
  H at its grid neighbours. Significance: the same statistic max_P H(P) is computed on `n_surrogates`
  block-shuffled copies of the sequence, its mask shuffled with it (blocks of `surrogate_block_s`: keeps
  the short-range smoothness of overlapping windows, destroys any cycle); a Gumbel law (the law of
  maxima) is fitted to them by moments and `period_confidence` = its CDF at H(P*), in [0, 1]. The period
  is reported only if period_confidence >= 1 - period_alpha and r(P*) > 0; otherwise `period_s` is None.
- Boundaries. With a period: cycle starts, phase-aligned: the phase (in windows, 0..P-1) whose folded mean
  of d is largest is taken as the cycle start, and each predicted start phase + kP is snapped to the
  largest d within +-P/4 when that d is above the boundary threshold below (a real event). Only d between
  two normal windows enters the fold, and no cycle start is placed where d touches an anomalous window;
  n_cycles counts consecutive starts at most 1.5 P apart (snapping moves a start by at most P/4).
  Without a period: peaks of d above median(d) + robust_z * sigma_MAD(d), at least
  `boundary_min_gap_s` apart (sigma_MAD = 1.4826 * median absolute deviation).
- Change points. Peaks of the change score above median(c) + robust_z * sigma_MAD(c), at least w apart.
- Repeats. Each segment between change points gets its own period if it has a reliable one, else the
  clip's; a window repeats if the local correlation of x (centred on the mean of the segment's normal
  windows) with x one period earlier or later, summed over about one period around it, is at least
  `repeat_fraction` times the segment's r_m(P). A window inside an anomalous span never repeats. Runs
  of repeating windows at least `min_repeat_cycles` periods long are reported as
  (start_s, end_s, period_s). Without any reliable period there are no repeats.
- Anomalies ("discords"). novelty[i] = 1 - max S[i, j] over windows j outside the exclusion zone
  |ts_j - ts_i| <= anomaly_exclusion_s (capped at a quarter of the clip) of the same clip; all windows of
  other clips count in a joint analysis. Repeated content always has a close match elsewhere; anomalous
  content has none. The novelty is smoothed over `anomaly_smooth_s` and turned into a robust z-score
      z_i = (smooth_i - median(smooth)) / max(sigma_MAD(smooth), anomaly_scale_fraction * delta),
  where delta = median over window pairs i < j of the clip of 1 - S[i, j] (its typical dissimilarity
  between windows; all pairs up to SCALE_PAIRS pairs, else a seeded random sample of that many). The
  floor matters when the clip repeats almost exactly: every normal window then has a near-perfect match,
  the novelty and its MAD are ~0 (numerical noise), and without the floor a difference far below anything
  meaningful would read as a huge z. With the floor, a span needs a best match worse than typical by at least
  anomaly_z * anomaly_scale_fraction * delta (a quarter of the typical dissimilarity by default).
  A span is flagged where z exceeds anomaly_z, extended while it stays above anomaly_z / 2 (hysteresis),
  kept if at least `anomaly_min_span_s` long; its score is its peak z.
  (anomaly_z is higher than robust_z because a maximum of similarities has a heavier upper tail.)
- Cross-clip matches (joint analysis). For each window of clip a, its most similar window in clip b. It
  matches if that similarity is at least a typical best match: median(best) - robust_z * sigma_MAD(best)
  over all windows. Runs of matching windows whose partners advance in step (-1..+3 windows per window)
  and last at least `match_min_span_s` are reported, for each pair a < b.

Spans run from the start of their first window to ts[last] + stride_s.
Scale: nothing here holds an N x N matrix except a preview of at most `max_plot_windows` squared (and S of
a clip small enough for delta to use all its SCALE_PAIRS pairs, N <= 200); row-wise
maxima are computed in blocks of rows, so a 20,000-window joint analysis fits in well under 4 GB.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution = 1.4826 * its median absolute deviation
SCALE_PAIRS = 20_000  # window pairs behind the typical dissimilarity delta (exact below this many)


@dataclass(frozen=True)
class StructureParams:
    """Every setting of the analysis, with its default. Times are in seconds."""

    min_period_s: float = 4.0  # shortest cycle considered
    max_period_s: float = 120.0  # longest cycle considered (also capped at clip length / min_cycles)
    min_cycles: float = 3.0  # a period needs at least this many cycles in the clip
    max_lag_fraction: float = 0.75  # autocorrelation computed up to this fraction of the clip
    n_surrogates: int = 19  # block-shuffled copies forming the null distribution of the period statistic
    surrogate_block_s: float = (
        3.0  # block length of the shuffle: shorter than any period, longer than a window
    )
    period_alpha: float = 0.01  # a period is reported when its confidence is >= 1 - period_alpha
    subharmonic_ratio: float = 0.75  # prefer P/m over P when its comb contrast is at least this fraction
    robust_z: float = 3.5  # robust z-score (median, 1.4826 * MAD) above which a peak or span counts
    boundary_min_gap_s: float = 2.0  # boundaries closer than this are merged (highest peak kept)
    change_halfwidth_s: float = 10.0  # change score compares the mean embedding of this long before/after
    repeat_fraction: float = (
        0.5  # local lag-P correlation relative to the segment's r(P) to count as repeating
    )
    min_repeat_cycles: float = 2.0  # shortest repetitive segment, in periods
    anomaly_exclusion_s: float = (
        20.0  # a window's own neighbourhood, excluded when looking for its best match
    )
    anomaly_z: float = 5.0  # robust z-score of the smoothed novelty that flags an anomaly (tails are heavy)
    anomaly_smooth_s: float = 3.0  # moving-average length applied to the novelty
    anomaly_scale_fraction: float = 0.05  # novelty scale floor: fraction of the median pair 1 - cos
    anomaly_min_span_s: float = 3.0  # shortest anomalous span reported
    match_min_span_s: float = 5.0  # shortest cross-clip match reported (joint analysis)
    max_plot_windows: int = 600  # the similarity preview is block-averaged down to at most this size
    seed: int = 0  # seeds the surrogates and the random-pair sample: results are reproducible


@dataclass
class PeriodEstimate:
    """Dominant cycle. `period_s` is None when no reliable period was found."""

    period_s: float | None
    period_confidence: float  # Phi(z) of the comb statistic against block-shuffled surrogates, in [0, 1]
    best_lag_windows: float  # refined lag of the best candidate, reported even when not reliable (0 if none)
    comb_statistic: float  # H(P*) of the data
    null_mean: float
    null_std: float


@dataclass
class RepeatSpan:
    start_s: float
    end_s: float
    period_s: float


@dataclass
class AnomalySpan:
    start_s: float
    end_s: float
    score: float  # peak robust z-score of the smoothed novelty inside the span


@dataclass
class CrossClipMatch:
    clip_a: int
    clip_b: int
    start_a_s: float
    end_a_s: float
    start_b_s: float
    end_b_s: float
    similarity: float  # mean cosine similarity of the matched windows


@dataclass
class ClipAnalysis:
    """Everything computed for one clip: the signals (for plots and files) and the results."""

    ts: np.ndarray  # [N] window start times, s
    stride_s: float
    distance: np.ndarray  # [N-1] consecutive cosine distance d, attributed to ts[1:]
    change_score: np.ndarray  # [N-1] change score c, aligned with d, NaN near the ends
    autocorr: np.ndarray  # [max_lag+1] masked r_m[k] the period was found from; lag k = k * stride_s s
    autocorr_excludes_anomalies: bool  # True when anomalous windows were left out of `autocorr`
    period: PeriodEstimate
    boundaries_s: list[float]
    change_points_s: list[float]
    repeats: list[RepeatSpan]
    novelty: np.ndarray  # [N] 1 - best similarity outside the exclusion zone
    anomaly_score: np.ndarray  # [N] robust z-score of the smoothed novelty
    anomalies: list[AnomalySpan]
    thresholds: dict[str, float]  # boundary distance, change score, anomaly score (robust z), novelty scale
    similarity_preview: np.ndarray  # [M, M] block-averaged S, M <= max_plot_windows
    similarity_preview_s: np.ndarray  # [M] start time of each preview block, s

    @property
    def n_windows(self) -> int:
        return len(self.ts)

    @property
    def n_cycles(self) -> int:
        """Complete cycles: consecutive cycle starts at most 1.5 periods apart (not a gap over an anomaly)."""
        if self.period.period_s is None:
            return 0
        return int(np.sum(np.diff(self.boundaries_s) <= 1.5 * self.period.period_s))


@dataclass
class JointAnalysis:
    clips: list[ClipAnalysis]
    matches: list[CrossClipMatch]
    similarity_preview: np.ndarray  # [M, M] block-averaged S over all windows of all clips in order
    preview_clip: np.ndarray  # [M] clip index of each preview block
    preview_s: np.ndarray  # [M] start time (within its clip) of each preview block
    match_threshold: float = field(default=float("nan"))


# ----------------------------------------------------------------------------------------------------------
# Signals


def normalize_rows(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, D] float32, each row scaled to unit L2 norm. Rows must be non-zero."""
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an embedding row has zero norm; cosine similarity is undefined")
    return emb / norms


def consecutive_distance(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N-1]: d[i] = 1 - cos(e_i, e_{i+1}), attributed to ts[i+1]."""
    u = normalize_rows(emb)
    return (1.0 - np.einsum("ij,ij->i", u[:-1], u[1:])).astype(np.float64)


def self_similarity(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, N] float32: S[i, j] = cos(e_i, e_j)."""
    u = normalize_rows(emb)
    return u @ u.T


def _lagged_dot_sums(x: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D] -> [max_lag+1]: sum_{i<N-k} x_i . x_{i+k}, by zero-padded FFT along time, dims in chunks."""
    n = len(x)
    n_fft = scipy.fft.next_fast_len(n + max_lag + 1, real=True)
    power = np.zeros(n_fft // 2 + 1, dtype=np.float64)
    for start in range(0, x.shape[1], 256):  # chunks bound the complex spectrum's memory
        spectrum = scipy.fft.rfft(x[:, start : start + 256], n=n_fft, axis=0)
        power += (spectrum.real**2 + spectrum.imag**2).sum(axis=1, dtype=np.float64)
    return scipy.fft.irfft(power, n=n_fft)[: max_lag + 1]


def _autocorr_centred(x: np.ndarray, max_lag: int, mask: np.ndarray | None = None) -> np.ndarray:
    """[N, D] centred rows -> [max_lag+1]: r (mask None) or r_m over the rows where mask [N] bool is True.

    With a mask, x must be centred on the mean of the masked-in rows; the other rows are ignored.
    """
    if mask is None:
        sums = _lagged_dot_sums(x, max_lag)
        counts = len(x) - np.arange(max_lag + 1, dtype=np.float64)
    else:
        weight = mask.astype(np.float64)
        sums = _lagged_dot_sums(x * weight[:, None].astype(x.dtype), max_lag)
        counts = np.rint(_lagged_dot_sums(weight[:, None], max_lag))  # n_k, exact integers after rounding
    if counts[0] == 0 or sums[0] <= 1e-12 * counts[0]:  # every window identical: no variation, no structure
        r = np.zeros(max_lag + 1)
        r[0] = 1.0
        return r
    mean_products = np.divide(sums, counts, out=np.zeros(max_lag + 1), where=counts > 0)
    return mean_products / mean_products[0]


def _centre(u: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """u minus the mean of its rows (of the rows where mask is True, when given)."""
    return u - (u.mean(axis=0) if mask is None else u[mask].mean(axis=0))


def autocorrelation(emb: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D] -> [max_lag+1]: r[k] = mean_i x_i . x_{i+k} / mean_i x_i . x_i, x = u - mean(u); r[0] = 1."""
    if not 0 <= max_lag < len(emb):
        raise ValueError(f"max_lag must be in [0, {len(emb) - 1}], got {max_lag}")
    u = normalize_rows(emb)
    return _autocorr_centred(_centre(u, None), max_lag)


def masked_autocorrelation(emb: np.ndarray, mask: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D], mask [N] bool (True = normal window) -> [max_lag+1] r_m (see module docstring); r_m[0] = 1.

    r_m[k] = mean over pairs (i, i+k) of normal windows of x_i . x_{i+k}, divided by the same at k = 0,
    x = u - mean of u over the normal windows; 0 where no such pair exists.
    """
    mask = np.asarray(mask, dtype=bool)
    if not 0 <= max_lag < len(emb):
        raise ValueError(f"max_lag must be in [0, {len(emb) - 1}], got {max_lag}")
    if mask.shape != (len(emb),) or not mask.any():
        raise ValueError(f"mask must be a boolean [{len(emb)}] array with at least one True")
    u = normalize_rows(emb)
    return _autocorr_centred(_centre(u, mask), max_lag, mask)


def typical_dissimilarity(u: np.ndarray, seed: int, max_pairs: int | None = None) -> float:
    """delta = median over pairs i < j of 1 - u_i . u_j; u [N, D] unit rows.

    Exact over all pairs when there are at most `max_pairs` (default SCALE_PAIRS) of them, else the median
    of a seeded random sample of that many pairs (i != j): no N x N matrix.
    """
    n, max_pairs = len(u), SCALE_PAIRS if max_pairs is None else max_pairs
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 <= max_pairs:
        similarity = (u @ u.T)[np.triu_indices(n, 1)]
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, max_pairs)
        j = (i + rng.integers(1, n, max_pairs)) % n
        similarity = np.concatenate(
            [np.einsum("ij,ij->i", u[i[c : c + 2048]], u[j[c : c + 2048]]) for c in range(0, max_pairs, 2048)]
        )
    return float(np.median(1.0 - similarity.astype(np.float64)))


def change_score(emb: np.ndarray, halfwidth_windows: int) -> np.ndarray:
    """[N, D] -> [N-1]: c[i] = 1 - cos(sum u[i-w+1..i], sum u[i+1..i+w]); NaN where a side is short."""
    u = normalize_rows(emb)
    n, w = len(u), max(int(halfwidth_windows), 1)
    csum = np.concatenate([np.zeros((1, u.shape[1])), np.cumsum(u, axis=0, dtype=np.float64)])
    score = np.full(n - 1, np.nan)
    split = np.arange(w, n - w + 1)  # first window of the right-hand side
    if len(split):
        left, right = csum[split] - csum[split - w], csum[split + w] - csum[split]
        cos = np.einsum("ij,ij->i", left, right) / (
            np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
        )
        score[split - 1] = 1.0 - cos
    return score


def robust_location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and sigma_MAD = 1.4826 * median |v - median| of the finite values (scale >= tiny)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    median = float(np.median(finite))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - median)))
    if sigma <= 0:  # more than half the values identical: fall back to the standard deviation
        sigma = float(np.std(finite))
    return median, max(sigma, 1e-12)


# ----------------------------------------------------------------------------------------------------------
# Period


def period_lag_range(n_windows: int, stride_s: float, params: StructureParams) -> tuple[float, float, int]:
    """(shortest, longest candidate period, max autocorrelation lag), in windows."""
    max_lag = max(int(params.max_lag_fraction * (n_windows - 1)), 0)
    lag_min = max(2.0, params.min_period_s / stride_s)
    lag_max = min(params.max_period_s / stride_s, n_windows / params.min_cycles, max_lag / 2)
    return lag_min, lag_max, max_lag


@dataclass(frozen=True)
class _Comb:
    """H(P) = mean_k r(kP) - mean_k r((k-1/2)P) for a grid of P, as one weighted sum over r.

    Every (P, k) term reads r by linear interpolation at a fractional lag; the interpolation weights are
    computed once, so evaluating H for the data and each surrogate is a few vectorised operations.
    """

    periods: np.ndarray  # [C] candidate periods, windows (a grid fine enough that kP stays on the peaks)
    candidate: np.ndarray  # [T] candidate index of each term
    lag_floor: np.ndarray  # [T, 2] integer lag below the on- and off-lag of each term
    frac: np.ndarray  # [T, 2] fractional part

    @classmethod
    def build(cls, lag_min: float, lag_max: float, max_lag: int) -> _Comb:
        periods = np.arange(lag_min, lag_max + 1e-9, COMB_STEP_WINDOWS)
        counts = (max_lag // periods).astype(int)
        candidate = np.repeat(np.arange(len(periods)), counts)
        k = np.arange(len(candidate)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        lags = np.stack([k * periods[candidate], (k - 0.5) * periods[candidate]], axis=1)
        lag_floor = np.minimum(np.floor(lags).astype(int), max_lag - 1)
        return cls(periods, candidate, lag_floor, lags - lag_floor)

    def contrast(self, r: np.ndarray) -> np.ndarray:
        at = r[self.lag_floor] * (1 - self.frac) + r[self.lag_floor + 1] * self.frac
        n = len(self.periods)
        return np.bincount(self.candidate, at[:, 0] - at[:, 1], n) / np.bincount(self.candidate, minlength=n)


COMB_STEP_WINDOWS = 0.05  # candidate period grid; 0.05 * (number of multiples) stays well under a window


def _gumbel_cdf(value: float, null: np.ndarray) -> float:
    """P(max statistic < value) under a Gumbel law fitted to the surrogate maxima by moments."""
    scale = max(float(np.std(null, ddof=1)) if len(null) > 1 else 0.0, 1e-12) * np.sqrt(6) / np.pi
    location = float(np.mean(null)) - 0.5772156649 * scale
    return float(np.exp(-np.exp(-(value - location) / scale)))


def detect_period(
    emb: np.ndarray,
    stride_s: float,
    params: StructureParams,
    autocorr: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> PeriodEstimate:
    """Dominant period of the sequence, tested against block-shuffled surrogates (see module docstring).

    mask [N] bool: the normal windows (True); the period is then found from the masked autocorrelation
    r_m, which `autocorr` must be if given. None: every window is normal (plain r).
    """
    u = normalize_rows(emb)
    mask = None if mask is None or np.all(mask) else np.asarray(mask, dtype=bool)
    x = _centre(u, mask)
    lag_min, lag_max, max_lag = period_lag_range(len(x), stride_s, params)
    if lag_max < lag_min:  # clip too short for min_cycles cycles of the shortest period
        return PeriodEstimate(None, 0.0, 0.0, 0.0, 0.0, 0.0)
    r = _autocorr_centred(x, max_lag, mask) if autocorr is None else autocorr[: max_lag + 1]
    comb = _Comb.build(lag_min, lag_max, max_lag)
    contrast = comb.contrast(r)
    best = int(np.argmax(contrast))
    # Octave check: a multiple mP of the true period scores like P itself; keep the shortest sub-multiple.
    for m in range(int(comb.periods[best] / lag_min), 1, -1):
        sub = int(np.argmin(np.abs(comb.periods - comb.periods[best] / m)))
        if contrast[sub] >= params.subharmonic_ratio * contrast[best]:
            best = sub
            break
    statistic = float(contrast[best])

    rng = np.random.default_rng(params.seed)
    block = max(1, round(params.surrogate_block_s / stride_s))
    starts = np.arange(0, len(x), block)
    null = np.empty(params.n_surrogates)
    for s in range(params.n_surrogates):
        order = np.concatenate([np.arange(b, min(b + block, len(x))) for b in rng.permutation(starts)])
        shuffled_mask = None if mask is None else mask[order]  # the mask travels with its windows
        null[s] = comb.contrast(_autocorr_centred(x[order], max_lag, shuffled_mask)).max()
    confidence = _gumbel_cdf(statistic, null)
    # Parabola through the comb contrast at the best grid point and its neighbours.
    lag = float(comb.periods[best])
    if 0 < best < len(contrast) - 1:
        left, mid, right = contrast[best - 1 : best + 2]
        if left - 2 * mid + right < 0:
            lag += 0.5 * (left - right) / (left - 2 * mid + right) * COMB_STEP_WINDOWS
    reliable = confidence >= 1.0 - params.period_alpha and float(np.interp(lag, np.arange(len(r)), r)) > 0
    period_s = lag * stride_s if reliable else None
    null_std = float(null.std(ddof=1)) if len(null) > 1 else 0.0
    return PeriodEstimate(period_s, confidence, lag, statistic, float(null.mean()), null_std)


# ----------------------------------------------------------------------------------------------------------
# Boundaries and change points


def cycle_starts(
    distance: np.ndarray, period_windows: float, snap_threshold: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """Indices into `distance` of phase-aligned cycle starts.

    A predicted start is moved to the largest d within +-P/4 only if that d exceeds `snap_threshold` (a
    real event); on a smooth cycle it stays where the phase puts it. valid [N-1] bool (default all True):
    the d between two normal windows; only those enter the phase fold, and no start is placed elsewhere.
    """
    n, p = len(distance), period_windows
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    phases = np.arange(max(round(p), 1))
    folded = []
    for ph in phases:
        idx = np.round(ph + p * np.arange(int((n - 1 - ph) / p) + 1)).astype(int)
        idx = idx[valid[idx]]
        folded.append(distance[idx].mean() if len(idx) else -np.inf)
    phase = phases[int(np.argmax(folded))]
    reach = max(1, round(p / 4))
    candidates = np.where(valid, distance, -np.inf)
    starts = []
    for predicted in np.round(phase + p * np.arange(int((n - 1 - phase) / p) + 1)).astype(int):
        lo, hi = max(predicted - reach, 0), min(predicted + reach + 1, n)
        local = lo + int(np.argmax(candidates[lo:hi]))
        start = local if candidates[local] > snap_threshold else predicted
        if valid[start]:
            starts.append(start)
    return np.unique(np.array(starts, dtype=int))


def robust_peaks(signal: np.ndarray, robust_z: float, min_gap_windows: int) -> tuple[np.ndarray, float]:
    """Peaks of `signal` above median + robust_z * sigma_MAD, at least min_gap apart; (indices, threshold)."""
    median, sigma = robust_location_scale(signal)
    threshold = median + robust_z * sigma
    filled = np.where(np.isfinite(signal), signal, -np.inf)
    peaks, _ = find_peaks(filled, height=threshold, distance=max(int(min_gap_windows), 1))
    return peaks, threshold


# ----------------------------------------------------------------------------------------------------------
# Repeats


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] index pairs of the runs of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def repeating_windows(
    x: np.ndarray, period_windows: float, r_at_period: float, fraction: float
) -> np.ndarray:
    """[N] bool: window matches the one a period earlier or later (local correlation >= fraction * r(P))."""
    n, p = len(x), max(round(period_windows), 1)
    mask = np.zeros(n, dtype=bool)
    if n <= p or r_at_period <= 0:
        return mask
    width = max(p, 3)  # local correlation summed over about one period
    prod = uniform_filter1d(np.einsum("ij,ij->i", x[:-p], x[p:]).astype(np.float64), width, mode="nearest")
    sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
    norm_a = uniform_filter1d(sq[:-p], width, mode="nearest")
    norm_b = uniform_filter1d(sq[p:], width, mode="nearest")
    pair_ok = prod / np.sqrt(norm_a * norm_b + 1e-30) >= fraction * r_at_period  # pair (i, i+p)
    mask[:-p] |= pair_ok
    mask[p:] |= pair_ok
    return mask


# ----------------------------------------------------------------------------------------------------------
# Anomalies and cross-clip matches (blockwise over rows: no full N x N matrix)


def best_matches(
    u: np.ndarray,
    clip_ids: np.ndarray,
    ts: np.ndarray,
    exclusion_s: np.ndarray,
    n_clips: int,
    block_rows: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise maxima of S = u u^T, computed block by block.

    u [N, D] unit rows of all clips concatenated; clip_ids [N]; ts [N] time within its clip; exclusion_s
    [n_clips] half-width of each clip's exclusion zone. Returns best [N] (max S[i, j] over j outside i's
    exclusion zone; -1 if none), best_in_clip [N, n_clips] (max S[i, j] over j in each clip, same zone) and
    arg_in_clip [N, n_clips] (that j, global index; -1 if none).
    """
    n = len(u)
    best = np.full(n, -1.0, dtype=np.float32)
    best_in_clip = np.full((n, n_clips), -1.0, dtype=np.float32)
    arg_in_clip = np.full((n, n_clips), -1, dtype=np.int64)
    bounds = [np.flatnonzero(clip_ids == c) for c in range(n_clips)]
    for start in range(0, n, block_rows):
        rows = slice(start, min(start + block_rows, n))
        sim = u[rows] @ u.T
        same = clip_ids[rows, None] == clip_ids[None, :]
        near = np.abs(ts[rows, None] - ts[None, :]) <= exclusion_s[clip_ids[rows]][:, None]
        sim[same & near] = -np.inf
        del same, near
        for c, cols in enumerate(bounds):
            if len(cols) == 0:
                continue
            part = sim[:, cols[0] : cols[-1] + 1]
            arg = np.argmax(part, axis=1)
            val = part[np.arange(len(part)), arg]
            ok = np.isfinite(val)
            best_in_clip[rows, c] = np.where(ok, val, -1.0)
            arg_in_clip[rows, c] = np.where(ok, arg + cols[0], -1)
        best[rows] = best_in_clip[rows].max(axis=1)
    return best, best_in_clip, arg_in_clip


def anomaly_spans(
    novelty: np.ndarray, ts: np.ndarray, stride_s: float, params: StructureParams, scale_floor: float = 0.0
) -> tuple[np.ndarray, list[AnomalySpan], float]:
    """Robust z-score of the smoothed novelty [N], the flagged spans, and the scale used.

    z = (smooth - median) / max(sigma_MAD, scale_floor); spans by hysteresis, at least anomaly_min_span_s.
    The caller passes scale_floor = anomaly_scale_fraction * delta (see module docstring).
    """
    smooth = uniform_filter1d(novelty.astype(np.float64), max(1, round(params.anomaly_smooth_s / stride_s)))
    median, sigma = robust_location_scale(smooth)
    sigma = max(sigma, scale_floor)
    score = (smooth - median) / sigma
    min_len = max(1, math.ceil(params.anomaly_min_span_s / stride_s - 1e-9))
    spans = []
    for first, last in _runs(score > params.anomaly_z / 2):
        if last - first + 1 >= min_len and score[first : last + 1].max() > params.anomaly_z:
            peak = float(score[first : last + 1].max())
            spans.append(AnomalySpan(float(ts[first]), float(ts[last] + stride_s), peak))
    return score, spans, sigma


def _matches_between(
    a: int,
    b: int,
    idx_a: np.ndarray,
    best_in_clip: np.ndarray,
    arg_in_clip: np.ndarray,
    ts: np.ndarray,
    stride_s: float,
    threshold: float,
    min_len: int,
) -> list[CrossClipMatch]:
    sim, partner = best_in_clip[idx_a, b], arg_in_clip[idx_a, b]
    step = np.diff(partner)
    matched = sim >= threshold
    # a run continues while both windows match and the partner advances in step with the window
    keep = matched[1:] & matched[:-1] & (step >= -1) & (step <= 3)
    found = []
    for first, last in _runs(np.concatenate([keep, [False]])):
        last += 1  # `keep` marks pairs: the run's last pair ends one window later
        if last - first + 1 >= min_len:
            ja, jb = idx_a[first], idx_a[last]
            pa, pb = partner[first], partner[last]
            found.append(
                CrossClipMatch(
                    a,
                    b,
                    float(ts[ja]),
                    float(ts[jb] + stride_s),
                    float(ts[min(pa, pb)]),
                    float(ts[max(pa, pb)] + stride_s),
                    float(sim[first : last + 1].mean()),
                )
            )
    return found


# ----------------------------------------------------------------------------------------------------------
# Whole-clip and joint analysis


def _stride_s(ts: np.ndarray) -> float:
    return float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0


def _preview(u: np.ndarray, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-averaged similarity: mean of S over bins of k windows = (bin means of u) @ (bin means)^T."""
    k = max(1, math.ceil(len(u) / max_windows))
    starts = np.arange(0, len(u), k)
    means = (
        np.add.reduceat(u.astype(np.float64), starts, axis=0) / np.diff(np.append(starts, len(u)))[:, None]
    )
    return (means @ means.T).astype(np.float32), starts


def _validate(emb: np.ndarray, ts: np.ndarray) -> None:
    if emb.ndim != 2 or ts.ndim != 1 or len(emb) != len(ts):
        raise ValueError(f"expected emb [N, D] and ts [N], got {emb.shape} and {ts.shape}")
    if len(ts) < 4:
        raise ValueError(f"need at least 4 windows, got {len(ts)}")
    if not (np.all(np.isfinite(emb)) and np.all(np.isfinite(ts))):
        raise ValueError("emb and ts must be finite")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("ts must be strictly increasing")


def _analyze_one(u: np.ndarray, ts: np.ndarray, novelty: np.ndarray, params: StructureParams) -> ClipAnalysis:
    """Everything but the novelty, which needs the other windows (of this clip or of all clips)."""
    stride_s = _stride_s(ts)
    n = len(u)
    # 1. Anomalies: they need no period, and the period must not see them.
    scale_floor = params.anomaly_scale_fraction * typical_dissimilarity(u, params.seed)
    score, anomalies, novelty_scale = anomaly_spans(novelty, ts, stride_s, params, scale_floor)
    normal = np.ones(n, dtype=bool)
    for span in anomalies:
        normal[(ts >= span.start_s) & (ts < span.end_s)] = False
    mask = None if normal.all() else normal

    # 2. Signals, and the period from the autocorrelation of the normal windows.
    distance = (1.0 - np.einsum("ij,ij->i", u[:-1], u[1:])).astype(np.float64)
    halfwidth = max(1, round(params.change_halfwidth_s / stride_s))
    change = change_score(u, halfwidth)
    x = _centre(u, mask)
    _, _, max_lag = period_lag_range(n, stride_s, params)
    autocorr = _autocorr_centred(x, max_lag, mask)
    period = detect_period(u, stride_s, params, autocorr=autocorr, mask=mask)

    # 3. Change points and boundaries.
    change_idx, change_threshold = robust_peaks(change, params.robust_z, halfwidth)
    gap = max(1, round(params.boundary_min_gap_s / stride_s))
    peaks, boundary_threshold = robust_peaks(distance, params.robust_z, gap)
    # With a period, boundaries are the cycle starts; without, the peaks of the distance.
    boundary_idx = peaks
    if period.period_s is not None:
        valid = normal[:-1] & normal[1:]  # d between two normal windows
        boundary_idx = cycle_starts(distance, period.best_lag_windows, boundary_threshold, valid)

    # 4. Repeats: per segment between change points, with the segment's own period, else the clip's.
    repeats: list[RepeatSpan] = []
    edges = [0, *(change_idx + 1).tolist(), n]
    for lo, hi in itertools.pairwise(edges):
        seg_normal = normal[lo:hi]
        if seg_normal.sum() < 2:
            continue
        seg_mask = None if seg_normal.all() else seg_normal
        whole_clip = lo == 0 and hi == n
        seg_period = period if whole_clip else detect_period(u[lo:hi], stride_s, params, mask=seg_mask)
        if seg_period.period_s is None:
            seg_period = period  # fall back to the clip's period, if any
        if seg_period.period_s is None:
            continue
        lag = seg_period.best_lag_windows
        p, seg_x = round(lag), _centre(u[lo:hi], seg_mask)
        if p >= hi - lo:
            continue
        r_at_period = float(_autocorr_centred(seg_x, p, seg_mask)[p])
        seg_repeat = repeating_windows(seg_x, lag, r_at_period, params.repeat_fraction) & seg_normal
        for first, last in _runs(seg_repeat):
            if last - first + 1 >= params.min_repeat_cycles * lag:
                repeats.append(
                    RepeatSpan(float(ts[lo + first]), float(ts[lo + last] + stride_s), float(lag * stride_s))
                )

    preview, starts = _preview(u, params.max_plot_windows)
    return ClipAnalysis(
        ts=ts,
        stride_s=stride_s,
        distance=distance,
        change_score=change,
        autocorr=autocorr,
        autocorr_excludes_anomalies=mask is not None,
        period=period,
        boundaries_s=[float(ts[i + 1]) for i in boundary_idx],
        change_points_s=[float(ts[i + 1]) for i in change_idx],
        repeats=repeats,
        novelty=novelty,
        anomaly_score=score,
        anomalies=anomalies,
        thresholds={
            "boundary_distance": float(boundary_threshold),
            "change_score": float(change_threshold),
            "anomaly_score": float(params.anomaly_z),
            "anomaly_novelty_scale": float(novelty_scale),
        },
        similarity_preview=preview,
        similarity_preview_s=ts[starts],
    )


def _exclusion_s(ts: np.ndarray, params: StructureParams) -> float:
    """The exclusion zone, capped at a quarter of the clip so that every window keeps candidates."""
    duration_s = float(ts[-1] - ts[0]) + _stride_s(ts)
    return min(params.anomaly_exclusion_s, duration_s / 4)


def analyze(emb: np.ndarray, ts: np.ndarray, params: StructureParams | None = None) -> ClipAnalysis:
    """Full analysis of one clip: emb [N, D], ts [N] window start times in seconds."""
    params = params or StructureParams()
    emb, ts = np.asarray(emb), np.asarray(ts, dtype=np.float64)
    _validate(emb, ts)
    u = normalize_rows(emb)
    best, _, _ = best_matches(
        u, np.zeros(len(u), dtype=np.int64), ts, np.array([_exclusion_s(ts, params)]), 1
    )
    return _analyze_one(u, ts, 1.0 - best.astype(np.float64), params)


def analyze_joint(
    embs: Sequence[np.ndarray], tss: Sequence[np.ndarray], params: StructureParams | None = None
) -> JointAnalysis:
    """Analysis of several clips of one worker over one similarity structure of all their windows.

    Per clip: the same results as `analyze`, except that the novelty looks for matches in every clip (a
    window is anomalous only if nothing in any clip resembles it). Across clips: matched spans.
    """
    params = params or StructureParams()
    if len(embs) != len(tss) or len(embs) == 0:
        raise ValueError("need as many ts arrays as emb arrays, and at least one")
    tss = [np.asarray(t, dtype=np.float64) for t in tss]
    for emb, ts in zip(embs, tss, strict=True):
        _validate(np.asarray(emb), ts)
    if len({np.asarray(e).shape[1] for e in embs}) != 1:
        raise ValueError("all clips must have the same embedding dimension")
    u = np.concatenate([normalize_rows(e) for e in embs])
    clip_ids = np.concatenate([np.full(len(t), c) for c, t in enumerate(tss)])
    ts_all = np.concatenate(tss)
    exclusion = np.array([_exclusion_s(t, params) for t in tss])
    best, best_in_clip, arg_in_clip = best_matches(u, clip_ids, ts_all, exclusion, len(tss))

    clips = []
    for c in range(len(tss)):
        idx = np.flatnonzero(clip_ids == c)
        clips.append(_analyze_one(u[idx], tss[c], 1.0 - best[idx].astype(np.float64), params))

    # Match threshold: a cross-clip partner as similar as a typical (non-anomalous) best match.
    best_median, best_sigma = robust_location_scale(best.astype(np.float64))
    threshold = best_median - params.robust_z * best_sigma
    matches = []
    for a in range(len(tss)):
        idx_a = np.flatnonzero(clip_ids == a)
        stride_s = clips[a].stride_s
        min_len = max(2, math.ceil(params.match_min_span_s / stride_s - 1e-9))
        for b in range(a + 1, len(tss)):
            matches += _matches_between(
                a, b, idx_a, best_in_clip, arg_in_clip, ts_all, stride_s, threshold, min_len
            )

    preview, starts = _preview(u, params.max_plot_windows)
    return JointAnalysis(clips, matches, preview, clip_ids[starts], ts_all[starts], float(threshold))
