"""Cycle-time table: each cycle's start, end, duration and how far its content is from the typical cycle.
Definitions: docs/METHODS.md section 6.

A cycle runs from one tracked cycle start to the next (both in the same run of normal windows). Its
deviation is the mean cosine distance along the dynamic-time-warping path between its window sequence and
the template cycle (the medoid): a cycle done slowly, with the same content, deviates little.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .results import CycleSpan

RESAMPLED = 16  # points per cycle when choosing the medoid (a uniform time warp of every cycle)


def dtw_mean_cost(sequences: Sequence[np.ndarray], template: np.ndarray) -> np.ndarray:
    """[K]: for each sequence [L_k, D] (unit rows), mean of 1 - cos along its DTW path against template
    [M, D] (unit rows). Steps (1,0), (0,1), (1,1); all K alignments advance together, one anti-diagonal
    of the cost matrix at a time."""
    k, m = len(sequences), len(template)
    if k == 0:
        return np.zeros(0)
    lengths = np.array([len(s) for s in sequences])
    n = int(lengths.max())
    cost = np.full((k, n, m), np.inf)
    for index, seq in enumerate(sequences):
        cost[index, : len(seq)] = 1.0 - seq @ template.T
    total = np.full((k, n + 1, m + 1), np.inf)
    steps = np.zeros((k, n + 1, m + 1))
    total[:, 0, 0] = 0.0
    for diagonal in range(2, n + m + 1):
        i = np.arange(max(1, diagonal - m), min(n, diagonal - 1) + 1)
        j = diagonal - i
        options = np.stack([total[:, i - 1, j], total[:, i - 1, j - 1], total[:, i, j - 1]])  # [3, K, len]
        option_steps = np.stack([steps[:, i - 1, j], steps[:, i - 1, j - 1], steps[:, i, j - 1]])
        choice = np.argmin(options, axis=0)
        total[:, i, j] = cost[:, i - 1, j - 1] + np.take_along_axis(options, choice[None], 0)[0]
        steps[:, i, j] = 1.0 + np.take_along_axis(option_steps, choice[None], 0)[0]
    rows = np.arange(k)
    return total[rows, lengths, m] / steps[rows, lengths, m]


def medoid_cycle(sequences: Sequence[np.ndarray]) -> int:
    """Index of the cycle closest to the mean cycle, each resampled to RESAMPLED points (uniform warp)."""
    resampled = np.stack(
        [s[np.minimum((np.arange(RESAMPLED) * len(s)) // RESAMPLED, len(s) - 1)] for s in sequences]
    )  # [K, RESAMPLED, D]
    mean = resampled.mean(axis=0)
    return int(np.argmax(np.einsum("krd,rd->k", resampled, mean)))


def cycle_spans(starts: np.ndarray, max_windows: float, normal: np.ndarray) -> list[tuple[int, int]]:
    """(first, last window) of each cycle: consecutive starts (window indices) 2 to max_windows apart whose
    windows are all normal (normal [N] bool: a span touching an anomaly is no typical cycle)."""
    return [
        (int(a), int(b) - 1)
        for a, b in itertools.pairwise(starts)
        if 2 <= b - a <= max_windows and normal[a:b].all()
    ]


def cycle_table(
    u_clips: Sequence[np.ndarray],
    ts_clips: Sequence[np.ndarray],
    strides_s: Sequence[float],
    spans: Sequence[Sequence[tuple[int, int]]],
) -> list[list[CycleSpan]]:
    """CycleSpan lists, one per clip, with deviations from one template: the medoid over all clips' cycles.

    u_clips[c] [N_c, D] unit rows; spans[c] the (first, last) windows of each cycle of clip c.
    """
    sequences = [u[a : b + 1] for u, clip_spans in zip(u_clips, spans, strict=True) for a, b in clip_spans]
    deviation = np.zeros(len(sequences))
    if len(sequences) >= 2:
        deviation = dtw_mean_cost(sequences, sequences[medoid_cycle(sequences)])
    out, k = [], 0
    for ts, stride_s, clip_spans in zip(ts_clips, strides_s, spans, strict=True):
        table = []
        for index, (a, b) in enumerate(clip_spans):
            start_s, end_s = float(ts[a]), float(ts[b] + stride_s)
            table.append(CycleSpan(index, start_s, end_s, end_s - start_s, float(deviation[k])))
            k += 1
        out.append(table)
    return out


def window_span(ts: np.ndarray, stride_s: float, cycle: CycleSpan) -> tuple[int, int]:
    """(first, last window) of a cycle of the clip with window starts ts [N]."""
    first = int(np.searchsorted(ts, cycle.start_s - 1e-6 * stride_s))
    return first, int(np.searchsorted(ts, cycle.end_s - stride_s - 1e-6 * stride_s))


def duration_summary(cycles: Sequence[CycleSpan]) -> dict[str, float | int | None]:
    """{median, iqr, min, max, n} of the cycle durations, s (None when there is no cycle)."""
    durations = np.array([c.duration_s for c in cycles], dtype=np.float64)
    if len(durations) == 0:
        return {"median": None, "iqr": None, "min": None, "max": None, "n": 0}
    q1, median, q3 = np.percentile(durations, [25, 50, 75])
    return {
        "median": float(median),
        "iqr": float(q3 - q1),
        "min": float(durations.min()),
        "max": float(durations.max()),
        "n": len(durations),
    }
