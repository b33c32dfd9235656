"""Anomalous spans ("discords"): windows unlike the rest. See docs/METHODS.md section 5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from .params import StructureParams
from .results import AnomalySpan
from .signals import like_threshold, robust_location_scale, runs


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
            spans.append(AnomalySpan(float(ts[first]), float(ts[last] + stride_s), peak, "novel"))
    return score, spans, sigma


@dataclass(frozen=True)
class Places:
    """Where the content of each of R windows is seen (docs/METHODS.md sections 5b and 5c)."""

    count: np.ndarray  # [R] int >= 1: separate places holding content like the window, its own included
    own_windows: np.ndarray  # [R] int >= 1: like windows in the window's own unbroken run (itself included)
    other_windows: np.ndarray  # [R] float: like windows per other unbroken run, on average (0: none)


def _run_edges(match: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """match [B, L] bool -> (cum [B, L+1] running count, is_start [B, L], is_end [B, L]): a run of
    matches is broken by more than `gap` non-matches in a row; it starts (ends) at a match with no
    other match in the `gap` positions before (after) it."""
    length = match.shape[1]
    cum = np.zeros((len(match), length + 1), dtype=np.int32)
    np.cumsum(match, axis=1, out=cum[:, 1:])
    before = cum[:, :length].copy()  # matches in [j - gap, j)
    before[:, gap:] -= cum[:, : max(length - gap, 0)]
    after = cum[:, length : length + 1] - cum[:, 1:]  # matches in (j, j + gap]
    after[:, : max(length - gap, 0)] = cum[:, 1 + gap :] - cum[:, 1 : max(length - gap, 0) + 1]
    return cum, match & (before == 0), match & (after == 0)


RISE_SAMPLE = 256  # rows whose best matches give the typical rise G of distinct_places' floor


def _best_elsewhere(
    sim: np.ndarray, u_rows: np.ndarray, clip_ids: np.ndarray, ts: np.ndarray, exclusion_s: np.ndarray
) -> np.ndarray:
    """[B] max over j outside row i's own neighbourhood (same clip, |ts_j - ts_i| <= exclusion) of
    sim[b, j] = u_i . u_j, for the rows u_rows [B] (global indices); 1 where there is no such j."""
    near = (clip_ids[u_rows, None] == clip_ids[None, :]) & (
        np.abs(ts[u_rows, None] - ts[None, :]) <= exclusion_s[clip_ids[u_rows]][:, None]
    )
    best = np.where(near, -np.inf, sim).max(axis=1)
    return np.where(np.isfinite(best), best, 1.0)


def _near_similarity(u: np.ndarray, clip_ids: np.ndarray, rows: np.ndarray, lag: int) -> np.ndarray:
    """[R] max(u_i . u_{i-lag}, u_i . u_{i+lag}) over the neighbours `lag` windows away in the same clip
    (-1 where there is none), for the windows `rows` [R]: how alike a window's content is a few seconds on."""
    out = np.full(len(rows), -1.0)
    for step in (-lag, lag):
        other = rows + step
        ok = (other >= 0) & (other < len(u))
        ok[ok] &= clip_ids[other[ok]] == clip_ids[rows[ok]]
        out[ok] = np.maximum(out[ok], np.sum(u[rows[ok]] * u[other[ok]], axis=1))
    return out


def distinct_places(
    u: np.ndarray,
    clip_ids: np.ndarray,
    ts: np.ndarray,
    exclusion_s: np.ndarray,
    match_factor: float,
    gap_windows: int,
    run_gap_windows: int | None = None,
    rows: np.ndarray | None = None,
    block_rows: int = 512,
    floor_fraction: float = 0.0,
) -> Places:
    """How many separate places of all clips hold content like each window, and how long that content
    lasts in the window's own run and in the others, for the windows `rows` (global indices; default all).

    u [N, D] unit rows of all clips (each clip contiguous in clip_ids [N]), ts [N] times within the clip,
    exclusion_s [n_clips] the own neighbourhood. With b_i the best match of window i outside its own
    neighbourhood and m_i = u_i . mean(u) its mean similarity, window j is like i when
        S[i, j] >= b_i - match_factor * (b_i - m_i)
    (a threshold relative to the window's own scale: a noisier window is less similar to everything), and,
    with floor_fraction F > 0, also
        S[i, j] >= m_i + F * min(G, n_i - m_i),
    G = median over the rows of (b_k - m_k) (how far a typical best match rises above the mean similarity;
    taken from RISE_SAMPLE rows spread evenly over them)
    and n_i = max(S[i, i - r], S[i, i + r]) in the same clip, r = run_gap_windows (the window's content a
    few seconds on). Without this floor, a window with no real match elsewhere (a one-off event shorter
    than its neighbourhood: b_i barely above m_i) finds ordinary windows like it everywhere, its places
    collapsing towards a typical window's; n_i keeps the floor below what fast content (a short cycle,
    where even the window r on is another phase) can reach (docs/METHODS.md section 5b). A
    place is a run of like windows of one clip whose consecutive members are at most gap_windows apart
    (runs never cross a clip border); window i is like itself, so its own place counts once. own_windows
    and other_windows measure runs broken by more than run_gap_windows (default gap_windows): an
    unbroken stretch of the content, where a place may span a few. Computed block by block: no N x N
    matrix.
    """
    gap = max(int(gap_windows), 1)
    run_gap = gap if run_gap_windows is None else max(int(run_gap_windows), 1)
    borders = np.flatnonzero(np.diff(clip_ids) != 0) + 1
    clip_ranges = list(zip([0, *borders.tolist()], [*borders.tolist(), len(u)], strict=True))
    mean_u = u.mean(axis=0)
    rows = np.arange(len(u)) if rows is None else np.asarray(rows)
    count = np.zeros(len(rows), dtype=np.int64)
    n_runs = np.zeros(len(rows), dtype=np.int64)
    own = np.zeros(len(rows), dtype=np.int64)
    like = np.zeros(len(rows), dtype=np.int64)
    typical = u[rows] @ mean_u  # [R]
    floor = np.full(len(rows), -np.inf)
    if floor_fraction > 0 and len(rows):
        # G from RISE_SAMPLE rows spread evenly: its median needs their best matches before any row is
        # thresholded, and taking it from every row would cost a second full pass over S
        picks = np.linspace(0, len(rows) - 1, min(len(rows), RISE_SAMPLE)).round().astype(int)
        sample = rows[np.unique(picks)]
        best_sample = _best_elsewhere(u[sample] @ u.T, sample, clip_ids, ts, exclusion_s)
        rise_typical = float(np.median(best_sample - u[sample] @ mean_u))
        near = _near_similarity(u, clip_ids, rows, run_gap)
        floor = typical + floor_fraction * np.minimum(rise_typical, near - typical)
    for start in range(0, len(rows), block_rows):
        block = np.arange(start, min(start + block_rows, len(rows)))
        row_idx = rows[block]
        sim = u[row_idx] @ u.T  # [B, N]
        best = _best_elsewhere(sim, row_idx, clip_ids, ts, exclusion_s)
        threshold = np.maximum(like_threshold(best, typical[block], match_factor), floor[block])
        match = sim >= threshold[:, None]
        match[np.arange(len(row_idx)), row_idx] = True
        del sim
        like[block] = np.count_nonzero(match, axis=1)
        for lo, hi in clip_ranges:
            clip_match = match[:, lo:hi]
            edges = _run_edges(clip_match, gap)
            count[block] += np.count_nonzero(edges[1], axis=1)
            if run_gap != gap:
                edges = _run_edges(clip_match, run_gap)
            cum, is_start, is_end = edges
            n_runs[block] += np.count_nonzero(is_start, axis=1)
            mine = np.flatnonzero((row_idx >= lo) & (row_idx < hi))
            if len(mine) == 0:
                continue
            # the own run: from the last run start at or before the window to the first run end at or
            # after it (the window is like itself, so both exist)
            at, j, k = row_idx[mine] - lo, np.arange(hi - lo), np.arange(len(mine))
            first = np.maximum.accumulate(np.where(is_start[mine], j, -1), axis=1)[k, at]
            last = np.minimum.accumulate(np.where(is_end[mine], j, hi - lo)[:, ::-1], axis=1)[:, ::-1][k, at]
            own[block[mine]] = cum[mine, last + 1] - cum[mine, first]
        del match
    count = np.maximum(count, 1)
    other = np.where(n_runs > 1, (like - own) / np.maximum(n_runs - 1, 1), 0.0)
    return Places(count, own, other)


@dataclass(frozen=True)
class RecurrenceResult:
    """Recurrence rule of one clip: per-window rarity and hold, the spans, and the numbers behind them."""

    places: np.ndarray  # [N] separate places holding content like each window (its own place included)
    rarity: np.ndarray  # [N] typical_places / places: how many times rarer than a typical window
    held: np.ndarray  # [N] hold score: >= 1 where the window's content lasts too long (0: no period)
    spans: list[AnomalySpan]
    typical_places: float  # median of places over the clip
    max_places: float  # a window is rare when places <= this
    typical_run_windows: float  # median over the clip of the own unbroken run's length, windows
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


def hold_score(places: Places, stride_s: float, params: StructureParams) -> tuple[np.ndarray, float]:
    """[N] how far each window's own unbroken run outlasts the same content elsewhere, and the typical
    run (windows). With L the own run, O the mean other run and T the clip's median own run, and
    usual = max(O, T): score = min(L / (hold_factor usual), (L - usual) / hold_min_s), >= 1 when the run
    is both hold_factor times as long as usual and hold_min_s longer (docs/METHODS.md section 5c)."""
    own = places.own_windows.astype(np.float64)
    typical = float(np.median(own))
    usual = np.maximum(places.other_windows, typical)
    longer_windows = max(params.hold_min_s / stride_s, 1.0)
    return np.minimum(own / (params.hold_factor * usual), (own - usual) / longer_windows), typical


def _flagged_spans(
    flagged: np.ndarray,
    score: np.ndarray,
    ts: np.ndarray,
    stride_s: float,
    params: StructureParams,
    kind: str,
) -> list[AnomalySpan]:
    """Runs of flagged windows -> spans: gaps shorter than anomaly_smooth_s closed, runs shorter than
    anomaly_min_span_s or reaching the first or last window dropped. Span score: its peak `score`."""
    n = len(flagged)
    flagged = flagged.copy()
    close = max(0, round(params.anomaly_smooth_s / stride_s))
    for first, last in runs(~flagged):
        if first > 0 and last < n - 1 and last - first + 1 <= close:
            flagged[first : last + 1] = True
    min_len = max(1, math.ceil(params.anomaly_min_span_s / stride_s - 1e-9))
    return [
        AnomalySpan(float(ts[first]), float(ts[last] + stride_s), float(score[first : last + 1].max()), kind)
        for first, last in runs(flagged)
        if last - first + 1 >= min_len and first > 0 and last < n - 1
    ]


def recurrence_spans(
    places: Places, ts: np.ndarray, stride_s: float, params: StructureParams, periodic: bool
) -> RecurrenceResult:
    """Rare windows (places <= min(anomaly_max_places, anomaly_rare_fraction * typical)) and, in a clip
    with a period, held windows (hold_score >= 1) -> spans of kind "rare" and "held".

    Gaps in a flagged run shorter than anomaly_smooth_s are closed; runs shorter than anomaly_min_span_s
    are dropped, and so are runs that reach the first or the last window (the caller also drops spans
    near the clip's edges: a lasting change of activity). Span score: its peak rarity, or hold score.
    """
    count = places.count
    typical = float(np.median(count))
    limit = min(float(params.anomaly_max_places), params.anomaly_rare_fraction * typical)
    rarity = typical / count.astype(np.float64)
    recurrent = typical >= MIN_TYPICAL_PLACES and limit >= 1
    held, typical_run = hold_score(places, stride_s, params)
    if not periodic:  # without a rhythm, a long activity is only a long activity
        held = np.zeros(len(count))
    spans: list[AnomalySpan] = []
    if recurrent:
        spans = _flagged_spans(count <= limit, rarity, ts, stride_s, params, "rare")
        if periodic:
            spans += _flagged_spans(held >= 1, held, ts, stride_s, params, "held")
    return RecurrenceResult(count, rarity, held, spans, typical, limit, typical_run, recurrent)


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
        kinds = sorted({s.kind for s in spans if s.start_s < end_s and s.end_s > start_s})
        out.append(AnomalySpan(start_s, end_s, peak, "+".join(kinds)))
    return out
