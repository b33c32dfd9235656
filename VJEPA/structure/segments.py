"""Cycle starts, change points and repeating spans. Definitions: docs/METHODS.md sections 3-4."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d


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
