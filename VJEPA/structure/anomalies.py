"""Anomalous spans ("discords"): windows unlike the rest. See docs/METHODS.md section 5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from .params import StructureParams
from .results import AnomalySpan
from .signals import robust_location_scale, runs


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
    The caller passes scale_floor = anomaly_scale_fraction * delta (docs/METHODS.md).
    """
    smooth = uniform_filter1d(novelty.astype(np.float64), max(1, round(params.anomaly_smooth_s / stride_s)))
    median, sigma = robust_location_scale(smooth)
    sigma = max(sigma, scale_floor)
    score = (smooth - median) / sigma
    min_len = max(1, math.ceil(params.anomaly_min_span_s / stride_s - 1e-9))
    spans = []
    for first, last in runs(score > params.anomaly_z / 2):
        if last - first + 1 >= min_len and score[first : last + 1].max() > params.anomaly_z:
            peak = float(score[first : last + 1].max())
            spans.append(AnomalySpan(float(ts[first]), float(ts[last] + stride_s), peak))
    return score, spans, sigma


def distinct_places(
    u: np.ndarray,
    clip_ids: np.ndarray,
    ts: np.ndarray,
    exclusion_s: np.ndarray,
    match_factor: float,
    gap_windows: int,
    rows: np.ndarray | None = None,
    block_rows: int = 512,
) -> np.ndarray:
    """How many separate places of all clips hold content like each window: [R] int, >= 1, for the
    windows `rows` (global indices; default all N).

    u [N, D] unit rows of all clips (each clip contiguous in clip_ids [N]), ts [N] times within the clip,
    exclusion_s [n_clips] the own neighbourhood. With b_i the best match of window i outside its own
    neighbourhood and m_i = u_i . mean(u) its mean similarity, window j matches i when
        S[i, j] >= b_i - match_factor * (b_i - m_i)
    (a threshold relative to the window's own scale: a noisier window is less similar to everything). A
    place is a run of matching windows of one clip whose consecutive matches are at most gap_windows
    apart (runs never cross a clip border); window i matches itself, so its own place counts once.
    Computed block by block: no N x N matrix.
    """
    gap = max(int(gap_windows), 1)
    borders = np.flatnonzero(np.diff(clip_ids) != 0) + 1
    clip_ranges = list(zip([0, *borders.tolist()], [*borders.tolist(), len(u)], strict=True))
    mean_u = u.mean(axis=0)
    rows = np.arange(len(u)) if rows is None else np.asarray(rows)
    places_all = np.zeros(len(rows), dtype=np.int64)
    for start in range(0, len(rows), block_rows):
        block = slice(start, min(start + block_rows, len(rows)))
        row_idx = rows[block]
        sim = u[row_idx] @ u.T  # [B, N]
        own = (clip_ids[row_idx, None] == clip_ids[None, :]) & (
            np.abs(ts[row_idx, None] - ts[None, :]) <= exclusion_s[clip_ids[row_idx]][:, None]
        )
        best = np.where(own, -np.inf, sim).max(axis=1)
        best = np.where(np.isfinite(best), best, 1.0)
        typical = u[row_idx] @ mean_u
        match = sim >= (best - match_factor * (best - typical))[:, None]
        match[np.arange(len(row_idx)), row_idx] = True
        del sim, own
        # a run starts at j when there is no match in the `gap` windows before j (same clip)
        starts = np.zeros(len(match), dtype=np.int64)
        for lo, hi in clip_ranges:
            cum = np.zeros((len(match), hi - lo + 1), dtype=np.int32)
            np.cumsum(match[:, lo:hi], axis=1, out=cum[:, 1:])
            j = np.arange(hi - lo)
            before = cum[:, j] - cum[:, np.maximum(j - gap, 0)]
            starts += np.count_nonzero(match[:, lo:hi] & (before == 0), axis=1)
        places_all[block] = starts
    return np.maximum(places_all, 1)


@dataclass(frozen=True)
class RecurrenceResult:
    """Recurrence rule of one clip: per-window rarity, the spans, and the numbers behind the threshold."""

    places: np.ndarray  # [N] separate places holding content like each window (its own place included)
    rarity: np.ndarray  # [N] typical_places / places: how many times rarer than a typical window
    spans: list[AnomalySpan]
    typical_places: float  # median of places over the clip
    max_places: float  # a window is rare when places <= this
    recurrent: bool  # False: the clip does not repeat enough for the rule (typical_places < MIN_TYPICAL)


MIN_TYPICAL_PLACES = 4.0  # below this many places for a typical window, rarity means nothing


def smoothed_rows(u: np.ndarray, clip_ids: np.ndarray, width: int) -> np.ndarray:
    """[N, D] unit rows -> the moving average over `width` windows within each clip, re-normalised.

    The recurrence rule compares smoothed windows: noise that makes a single window unlike every other
    averages out, an activity lasting a few seconds does not."""
    if width <= 1:
        return u
    out = np.empty_like(u)
    borders = np.flatnonzero(np.diff(clip_ids) != 0) + 1
    for lo, hi in zip([0, *borders.tolist()], [*borders.tolist(), len(u)], strict=True):
        out[lo:hi] = uniform_filter1d(u[lo:hi], width, axis=0, mode="nearest")
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def recurrence_spans(
    places: np.ndarray, ts: np.ndarray, stride_s: float, params: StructureParams
) -> RecurrenceResult:
    """Rare windows (places <= min(anomaly_max_places, anomaly_rare_fraction * typical)) -> spans.

    Gaps in a rare run shorter than anomaly_smooth_s are closed; runs shorter than anomaly_min_span_s are
    dropped, and so are runs that reach the first or the last window (the caller also drops spans near
    the clip's edges: a lasting change of activity). Span score: its peak rarity.
    """
    n = len(places)
    typical = float(np.median(places))
    limit = min(float(params.anomaly_max_places), params.anomaly_rare_fraction * typical)
    rarity = typical / places.astype(np.float64)
    recurrent = typical >= MIN_TYPICAL_PLACES and limit >= 1
    spans: list[AnomalySpan] = []
    if recurrent:
        rare = places <= limit
        close = max(0, round(params.anomaly_smooth_s / stride_s))
        for first, last in runs(~rare):  # close short gaps between rare runs
            if first > 0 and last < n - 1 and last - first + 1 <= close:
                rare[first : last + 1] = True
        min_len = max(1, math.ceil(params.anomaly_min_span_s / stride_s - 1e-9))
        for first, last in runs(rare):
            if last - first + 1 >= min_len and first > 0 and last < n - 1:
                peak = float(rarity[first : last + 1].max())
                spans.append(AnomalySpan(float(ts[first]), float(ts[last] + stride_s), peak))
    return RecurrenceResult(places, rarity, spans, typical, limit, recurrent)


def merge_spans(
    spans: list[AnomalySpan], score: np.ndarray, ts: np.ndarray, stride_s: float
) -> list[AnomalySpan]:
    """Union of overlapping or touching spans, in time order; each merged span scored by its peak `score`."""
    merged: list[list[float]] = []
    for span in sorted(spans, key=lambda s: s.start_s):
        if merged and span.start_s <= merged[-1][1] + 1e-9:
            merged[-1][1] = max(merged[-1][1], span.end_s)
        else:
            merged.append([span.start_s, span.end_s])
    out = []
    for start_s, end_s in merged:
        inside = (ts >= start_s) & (ts < end_s)
        peak = float(score[inside].max()) if inside.any() else 0.0
        out.append(AnomalySpan(start_s, end_s, peak))
    return out
