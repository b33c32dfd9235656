"""Whole-clip analysis: the order in which the results are derived. Overview: docs/METHODS.md."""

from __future__ import annotations

import itertools

import numpy as np

from .anomalies import anomaly_spans, best_matches
from .params import StructureParams
from .period import detect_period, period_lag_range
from .results import ClipAnalysis, RepeatSpan
from .segments import cycle_starts, repeating_windows
from .signals import (
    autocorr_centred,
    centre,
    change_score,
    normalize_rows,
    robust_peaks,
    runs,
    similarity_preview,
    stride_of,
    typical_dissimilarity,
)


def check_inputs(emb: np.ndarray, ts: np.ndarray) -> None:
    if emb.ndim != 2 or ts.ndim != 1 or len(emb) != len(ts):
        raise ValueError(f"expected emb [N, D] and ts [N], got {emb.shape} and {ts.shape}")
    if len(ts) < 4:
        raise ValueError(f"need at least 4 windows, got {len(ts)}")
    if not (np.all(np.isfinite(emb)) and np.all(np.isfinite(ts))):
        raise ValueError("emb and ts must be finite")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("ts must be strictly increasing")


def analyze_one(u: np.ndarray, ts: np.ndarray, novelty: np.ndarray, params: StructureParams) -> ClipAnalysis:
    """Everything but the novelty, which needs the other windows (of this clip or of all clips)."""
    stride_s = stride_of(ts)
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
    x = centre(u, mask)
    _, _, max_lag = period_lag_range(n, stride_s, params)
    autocorr = autocorr_centred(x, max_lag, mask)
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
        p, seg_x = round(lag), centre(u[lo:hi], seg_mask)
        if p >= hi - lo:
            continue
        r_at_period = float(autocorr_centred(seg_x, p, seg_mask)[p])
        seg_repeat = repeating_windows(seg_x, lag, r_at_period, params.repeat_fraction) & seg_normal
        for first, last in runs(seg_repeat):
            if last - first + 1 >= params.min_repeat_cycles * lag:
                repeats.append(
                    RepeatSpan(float(ts[lo + first]), float(ts[lo + last] + stride_s), float(lag * stride_s))
                )

    preview, starts = similarity_preview(u, params.max_plot_windows)
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


def exclusion_zone_s(ts: np.ndarray, params: StructureParams) -> float:
    """The exclusion zone, capped at a quarter of the clip so that every window keeps candidates."""
    duration_s = float(ts[-1] - ts[0]) + stride_of(ts)
    return min(params.anomaly_exclusion_s, duration_s / 4)


def analyze(emb: np.ndarray, ts: np.ndarray, params: StructureParams | None = None) -> ClipAnalysis:
    """Full analysis of one clip: emb [N, D], ts [N] window start times in seconds."""
    params = params or StructureParams()
    emb, ts = np.asarray(emb), np.asarray(ts, dtype=np.float64)
    check_inputs(emb, ts)
    u = normalize_rows(emb)
    best, _, _ = best_matches(
        u, np.zeros(len(u), dtype=np.int64), ts, np.array([exclusion_zone_s(ts, params)]), 1
    )
    return analyze_one(u, ts, 1.0 - best.astype(np.float64), params)
