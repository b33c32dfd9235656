"""Cycle starts, change points and repeating spans. Definitions: docs/METHODS.md sections 3-4."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .signals import like_threshold, normalize_rows, robust_location_scale, runs


def cycle_starts(
    distance: np.ndarray, period_windows: float, snap_threshold: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """Indices into `distance` of phase-aligned cycle starts.

    A predicted start is moved to the largest d within +-P/4 only if that d exceeds `snap_threshold` (a
    real event); on a smooth cycle it stays where the phase puts it. valid [N-1] bool (default all True):
    the d between two normal windows; only those enter the phase fold, and no start is placed elsewhere.
    """
    n, p = len(distance), period_windows
    if n == 0:
        return np.array([], dtype=int)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    phases = np.arange(max(round(p), 1))
    folded = []
    for ph in phases:
        idx = np.round(ph + p * np.arange(int((n - 1 - ph) / p) + 1)).astype(int)
        idx = idx[idx < n]  # rounding, or a segment shorter than the phase, may overshoot
        idx = idx[valid[idx]]
        folded.append(distance[idx].mean() if len(idx) else -np.inf)
    phase = phases[int(np.argmax(folded))]
    reach = max(1, round(p / 4))
    candidates = np.where(valid, distance, -np.inf)
    starts = []
    for predicted in np.round(phase + p * np.arange(int((n - 1 - phase) / p) + 1)).astype(int):
        if predicted >= n:
            continue
        lo, hi = max(predicted - reach, 0), min(predicted + reach + 1, n)
        local = lo + int(np.argmax(candidates[lo:hi]))
        start = local if candidates[local] > snap_threshold else predicted
        if valid[start]:
            starts.append(start)
    return np.unique(np.array(starts, dtype=int))


def returning_fraction(
    u: np.ndarray, side: np.ndarray, same: np.ndarray, other: np.ndarray, gap: int, factor: float
) -> float:
    """Fraction of the windows `side` whose content comes back in the windows `other`, as judged against
    how it recurs in the windows `same` (all int index arrays into u [N, D], unit rows). Window k comes
    back when its best similarity among `other` reaches b - factor (b - m), b its best similarity among
    `same`, m = u_k . mean(u) its mean similarity (the like relation of the recurrence rule, with the
    content's own side as the reference); only windows more than `gap` from k count, since neighbours
    overlap k. NaN when no window of `side` has a candidate in both."""
    if len(side) == 0:
        return float("nan")
    mean_similarity = u[side] @ u.mean(axis=0)
    best = []
    for region in (same, other):
        sims = u[side] @ u[region].T  # [side, region]
        far = np.abs(region[None, :] - side[:, None]) > gap
        best.append(np.where(far, sims, -np.inf).max(axis=1, initial=-np.inf))
    judged = np.isfinite(best[0]) & np.isfinite(best[1])
    if not judged.any():
        return float("nan")
    b, m = best[0][judged], mean_similarity[judged]
    return float(np.mean(best[1][judged] >= like_threshold(b, m, factor)))


def lasting_changes(
    u: np.ndarray, change_idx: np.ndarray, halfwidth: int, horizon: int, factor: float, max_return: float
) -> np.ndarray:
    """The change points (indices i into the change score [N-1]: the change is into window i+1) that are
    not a passing interruption: kept unless more than `max_return` of the `halfwidth` windows on one side
    come back on the other side within `horizon` windows (`returning_fraction`, each side's own `horizon`
    windows the reference, windows within `halfwidth` of each other not compared). A cycle of another
    kind, or several, between cycles of one kind is an interruption: the content before it comes back
    after it, and its own content was seen before it or comes back after it. u [N, D] unit rows."""
    n = len(u)
    kept = []
    for i in np.asarray(change_idx, dtype=np.int64):
        at = int(i) + 1  # first window after the change
        earlier, later = np.arange(max(at - horizon, 0), at), np.arange(at, min(at + horizon, n))
        back = [
            returning_fraction(u, earlier[-halfwidth:], earlier, later, halfwidth, factor),
            returning_fraction(u, later[:halfwidth], later, earlier, halfwidth, factor),
        ]
        if not any(f > max_return for f in back):  # NaN (nothing to judge by) keeps the change
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def _like(x: np.ndarray, at: np.ndarray, gap: int, factor: float) -> np.ndarray:
    """[K, K] bool: row j is like row i (x [K, D] unit rows, at [K] their window indices) when
    x_i . x_j >= b - factor (b - m), b the best similarity of row i to a row more than `gap` windows away,
    m = x_i . mean(x): the like relation of the recurrence rule. Rows within `gap` windows of each other
    (one place: the content around them overlaps, or drifts slowly) are never alike."""
    far = np.abs(at[:, None] - at[None, :]) > gap
    sims = np.where(far, x @ x.T, -np.inf)
    best = sims.max(axis=1, initial=-np.inf)
    mean_similarity = x @ x.mean(axis=0)
    return far & (sims >= like_threshold(best, mean_similarity, factor)[:, None])


def free_order_starts(
    u: np.ndarray, peaks: np.ndarray, context_windows: int, place_gap: int, factor: float, min_free: float
) -> np.ndarray:
    """The peaks of the consecutive distance (indices i into d [N-1]: a change into window i+1) at which
    the order of the content is free: the cycle starts of a clip whose cycles are of more than one kind
    in no fixed order. Inside a cycle one sub-action always follows another; at a cycle start, whatever
    ended the last cycle is followed by whatever opens the next. For each peak, the content before it
    (the mean of `context_windows` windows, leaving out the window next to the change, which blends both
    sides) and after it; among the other peaks more than `place_gap` windows away with like content
    before (`_like`), the fraction with other content after, and the same the other way round. Kept when
    both fractions exceed `min_free`; a peak without context in the clip, or without a like peak on a
    side, is not kept. u [N, D] unit rows; returns indices into d, ascending."""
    n, skip = len(u), 1
    peaks = np.asarray(peaks, dtype=np.int64)
    peaks = peaks[(peaks - skip - context_windows + 1 >= 0) & (peaks + 1 + skip + context_windows <= n)]
    if len(peaks) < 2:
        return np.zeros(0, dtype=np.int64)
    before = np.stack([u[i - skip - context_windows + 1 : i - skip + 1].mean(axis=0) for i in peaks])
    after = np.stack([u[i + 1 + skip : i + 1 + skip + context_windows].mean(axis=0) for i in peaks])
    like_before = _like(normalize_rows(before), peaks, place_gap, factor)
    like_after = _like(normalize_rows(after), peaks, place_gap, factor)
    free = []
    for like_here, like_there in ((like_before, like_after), (like_after, like_before)):
        partners = like_here.sum(axis=1)
        others = (like_here & ~like_there).sum(axis=1)  # like on this side, other on that side
        free.append(np.where(partners > 0, others / np.maximum(partners, 1), 0.0))
    return peaks[(free[0] > min_free) & (free[1] > min_free)]


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


def _robust_z(values: np.ndarray) -> np.ndarray:
    """(values - median) / sigma_MAD over the finite values; -inf where a value is not finite."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    median, sigma = robust_location_scale(values)
    return np.where(finite, (values - median) / sigma, -np.inf)


TRACK_ROUNDS = 2  # template from the chain, chain from the template
STEP_PRIOR_Z = 8.0  # penalty (in robust z of the start score) of a cycle one period too long or short
# Each start-score term is capped at this robust z: a work cycle's sub-actions (pick, press, place) change
# as abruptly as a cycle starts (z(d) ~ 11 at each), and uncapped they outbid the step prior and pack in
# extra starts; capped, the template match has its say. Lower caps lose a smooth cycle's one real jump in
# the noise (bench/RESULTS.md, phase 2b validation: 3 cost the 25%-jitter family 0.99 -> 0.13).
START_Z_CAP = 4.0


def _best_chain(score: np.ndarray, min_step: int, max_step: int, period: float) -> np.ndarray:
    """Indices t_0 < t_1 < ... maximising sum score[t_k] - STEP_PRIOR_Z * ((t_{k+1} - t_k) / period - 1)^2,
    with min_step <= t_{k+1} - t_k <= max_step, t_0 < max_step and t_last >= len - max_step (dynamic
    programming, O(len * max_step)). The prior keeps noise peaks from packing in extra short cycles.

    Positions with score -inf are never chosen; returns [] if no chain exists.
    """
    n = len(score)
    total = np.full(n, -np.inf)
    previous = np.full(n, -1, dtype=np.int64)
    for t in range(n):
        if not np.isfinite(score[t]):
            continue
        lo, hi = t - max_step, t - min_step
        best_prev, arg = -np.inf, -1
        if hi >= 0:
            first = max(lo, 0)
            steps = t - np.arange(first, hi + 1)
            window = total[first : hi + 1] - STEP_PRIOR_Z * (steps / period - 1.0) ** 2
            if len(window) and np.isfinite(window.max()):
                arg = first + int(np.argmax(window))
                best_prev = window[arg - first]
        if t < max_step and best_prev < 0:  # may open the chain here
            best_prev, arg = 0.0, -1
        if np.isfinite(best_prev):
            total[t], previous[t] = score[t] + best_prev, arg
    tail = total[max(n - max_step, 0) :]
    if not np.isfinite(tail).any():
        return np.array([], dtype=np.int64)
    t = max(n - max_step, 0) + int(np.argmax(tail))
    chain = []
    while t >= 0:
        chain.append(t)
        t = int(previous[t])
    return np.array(chain[::-1], dtype=np.int64)


def tracked_cycle_starts(
    u: np.ndarray, distance: np.ndarray, period_windows: float, jitter: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """Indices into `distance` of cycle starts that follow cycle-to-cycle jitter (docs/METHODS.md section 3).

    u [N, D] unit rows, distance [N-1] consecutive distance (d[i] is the change into window i+1), valid
    [N-1] bool (default all True): no start where d touches an anomalous window. Cycle starts are a chain
    of windows each (1 - jitter)P to (1 + jitter)P after the previous one, maximising the summed start
    score, by dynamic programming over each run of valid windows. The first chain is the phase-folded
    grid (`cycle_starts`, unsnapped: it pools every cycle, so noise does not move it); then, twice, the
    start template T (mean of the L = max(2, P/3) windows after each start of the chain) is correlated
    with every window's next L windows, the score is z(d) + z(that correlation) (robust z; a cycle starts
    with new content, and looks like the other starts) and the chain is found again.
    """
    n, p = len(distance), float(period_windows)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    min_step = max(1, int(np.floor((1 - jitter) * p)))
    max_step = max(min_step, int(np.ceil((1 + jitter) * p)))
    length = max(2, round(p / 3))
    # First chain: the phase-folded grid (robust to noise: it pools every cycle), unsnapped.
    starts = cycle_starts(distance, p, np.inf, valid)
    for _ in range(TRACK_ROUNDS):
        whole = starts[starts + 1 + length <= len(u)]
        if len(whole) < 2:
            break
        template = np.mean([u[s + 1 : s + 1 + length] for s in whole], axis=0)  # [L, D]
        # match[i] = mean_l u[i+1+l] . T_l for every start i+1 with L windows after it
        sims = np.stack([u[1 + lag : n + 2 - length + lag] @ template[lag] for lag in range(length)])
        match = np.full(n, np.nan)
        match[: sims.shape[1]] = sims.mean(axis=0)
        match_z = np.nan_to_num(_robust_z(match), neginf=-10.0)
        score = np.minimum(_robust_z(distance), START_Z_CAP) + np.minimum(match_z, START_Z_CAP)
        found = []
        for first, last in runs(valid):
            if last - first + 1 < min_step:
                continue
            found.append(first + _best_chain(score[first : last + 1], min_step, max_step, p))
        starts = np.concatenate(found) if found else np.array([], dtype=np.int64)
    return starts
