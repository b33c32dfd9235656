"""Whole-clip analysis: the order in which the results are derived. Overview: docs/METHODS.md."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .anomalies import (
    Places,
    RecurrenceResult,
    anomaly_spans,
    best_matches,
    distinct_places,
    merge_spans,
    recurrence_spans,
    smoothed_rows,
)
from .cycles import cycle_spans, cycle_table
from .params import StructureParams
from .period import detect_period, period_lag_range
from .results import AnomalySpan, ClipAnalysis, PeriodEstimate, RepeatSpan
from .segments import (
    cycle_starts,
    free_order_starts,
    lasting_changes,
    repeating_windows,
    tracked_cycle_starts,
)
from .signals import (
    autocorr_centred,
    centre,
    change_score,
    consecutive_distance,
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


PlacesFn = Callable[[int], Places]  # place gap (windows) -> where each window's content is seen


def place_gap_windows(period: PeriodEstimate, stride_s: float, params: StructureParams) -> int:
    """Matches further apart than this are separate places: half a period, else anomaly_place_gap_s."""
    if period.period_s is not None:
        return max(1, round(period.best_lag_windows / 2))
    return max(1, round(params.anomaly_place_gap_s / stride_s))


def normal_mask(ts: np.ndarray, anomalies: list[AnomalySpan]) -> np.ndarray:
    """[N] bool: the windows outside every anomalous span."""
    normal = np.ones(len(ts), dtype=bool)
    for span in anomalies:
        normal[(ts >= span.start_s) & (ts < span.end_s)] = False
    return normal


@dataclass(frozen=True)
class AnomalyFindings:
    """Step 1 of analyze_one: the anomalous spans and what the later steps reuse of how they were found."""

    anomalies: list[AnomalySpan]
    score: np.ndarray  # [N] the rule's score, >= its threshold inside a span
    novelty_scale: float  # the nearest rule's robust scale of the smoothed novelty
    rule: str = "nearest"  # "recurrence" when the clip repeats enough for that rule
    places: np.ndarray | None = None  # [N] the recurrence rule's distinct places (None: nearest rule)
    held: np.ndarray | None = None  # [N] its hold score
    recurrence: RecurrenceResult | None = None  # None: the recurrence rule did not run
    # the period the recurrence rule last found, and the [N] windows it was found from
    period_from: tuple[PeriodEstimate, np.ndarray] | None = None


def find_anomalies(
    u: np.ndarray,
    ts: np.ndarray,
    novelty: np.ndarray,
    params: StructureParams,
    places_fn: PlacesFn | None,
    delta: float,
) -> AnomalyFindings:
    """The anomalous spans (docs/METHODS.md section 5). They need no period, and the period must not see
    them: a rough period (all windows) -> places -> rare spans -> the period of the normal windows -> places
    again if that period moved the place gap. delta: the clip's typical dissimilarity, the scale of floors."""
    stride_s = stride_of(ts)
    score, anomalies, novelty_scale = anomaly_spans(
        novelty, ts, stride_s, params, params.anomaly_scale_fraction * delta
    )
    nearest = AnomalyFindings(anomalies, score, novelty_scale)
    if params.anomaly_method != "recurrence" or places_fn is None:
        return nearest
    period = detect_period(u, stride_s, params)
    period_mask = np.ones(len(u), dtype=bool)  # the windows `period` was found from
    gap = place_gap_windows(period, stride_s, params)
    places_seen = places_fn(gap)
    recurrence = recurrence_spans(places_seen, ts, stride_s, params, period.period_s is not None)
    for _ in range(2):
        if not recurrence.recurrent:
            break
        normal = normal_mask(ts, recurrence.spans + anomalies)
        if normal.all():
            break
        was_periodic = period.period_s is not None
        period, period_mask = detect_period(u, stride_s, params, mask=normal), normal
        new_gap = place_gap_windows(period, stride_s, params)
        if new_gap == gap and was_periodic == (period.period_s is not None):
            break
        if new_gap != gap:
            gap, places_seen = new_gap, places_fn(new_gap)
        recurrence = recurrence_spans(places_seen, ts, stride_s, params, period.period_s is not None)
    found = dataclasses.replace(nearest, recurrence=recurrence, period_from=(period, period_mask))
    if not recurrence.recurrent:  # the clip does not repeat enough: the nearest rule stands
        return found
    # Either rule flags a window: the nearest rule sees short one-off spans whose best match elsewhere is
    # poor, the recurrence rule long and repeated ones. Score: times over the threshold.
    rare = recurrence.max_places / recurrence.places
    score = np.maximum(np.maximum(rare, recurrence.held), score / params.anomaly_z)
    merged = merge_spans(recurrence.spans + anomalies, score, ts, stride_s)
    # A rare span running into the clip's first or last change_halfwidth_s is a lasting change of activity
    # (reported by the change points) or content cut by the clip's edge.
    t_first, t_end, edge_s = float(ts[0]), float(ts[-1] + stride_s), params.change_halfwidth_s
    kept = [a for a in merged if a.start_s > t_first + edge_s and a.end_s < t_end - edge_s]
    return dataclasses.replace(
        found, anomalies=kept, score=score, rule="recurrence", places=recurrence.places, held=recurrence.held
    )


def cycles_per_segment(
    u: np.ndarray,
    ts: np.ndarray,
    distance: np.ndarray,
    normal: np.ndarray,
    period: PeriodEstimate,
    edges: list[int],
    boundary_threshold: float,
    params: StructureParams,
) -> tuple[list[np.ndarray], list[tuple[int, int]], list[RepeatSpan]]:
    """Step 4 of analyze_one, per segment [edges[k], edges[k + 1]) with the segment's own period, else the
    clip's `period`: the cycle starts found in each segment (indices into `distance` [N-1]), the cycles as
    (first, last) window spans of normal windows only, and the repeating spans."""
    stride_s = stride_of(ts)
    n = len(u)
    repeats: list[RepeatSpan] = []
    starts_found: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    valid = normal[:-1] & normal[1:]  # d between two normal windows
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
        if params.boundary_method == "tracked":
            seg_starts = lo + tracked_cycle_starts(
                u[lo:hi], distance[lo : hi - 1], lag, params.cycle_jitter, valid[lo : hi - 1]
            )
            longest = (1 + params.cycle_jitter) * lag
        else:
            seg_starts = lo + cycle_starts(distance[lo : hi - 1], lag, boundary_threshold, valid[lo : hi - 1])
            longest = 1.5 * lag
        starts_found.append(seg_starts)
        spans += cycle_spans(seg_starts + 1, longest, normal)
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
    return starts_found, spans, repeats


def no_period_starts(
    u: np.ndarray,
    distance: np.ndarray,
    peaks: np.ndarray,
    gap: int,
    stride_s: float,
    recurrent: bool,
    params: StructureParams,
) -> tuple[np.ndarray, bool]:
    """The cycle starts of a clip without a period in any segment (indices into `distance` [N-1]), and
    whether they are where the order of content is free (else the peaks of d: content changes, which
    need not open a cycle, so no cycle is cut between them). The starts: the peaks of d where the order
    of content is free (`free_order_starts`: cycles of several kinds in no fixed order open there),
    weighed among the peaks above free_order_z. A cycle holds at least two
    sub-actions, so at most half of the content changes open one: when more than half are free, the clip
    shows no order (activities in random order; noise, where the like relation finds "free" at random),
    and the starts are `peaks`, the peaks of d above robust_z, as when none is free, when the content does
    not recur (`recurrent`: the recurrence rule's test; a slow random walk's neighbouring peaks are alike
    on both sides and read as fixed order) or when the test is off (free_order_min = 1): the content
    changes are then all the clip shows of its structure."""
    if params.free_order_min >= 1 or not recurrent:
        return peaks, False
    candidates, _ = robust_peaks(distance, params.free_order_z, gap)
    place_gap = max(1, round(params.anomaly_place_gap_s / stride_s))
    free = free_order_starts(
        u, candidates, gap, place_gap, params.anomaly_match_factor, params.free_order_min
    )
    if 0 < len(free) <= len(candidates) / 2:
        return free, True
    return peaks, False


# Without a period, the longest cycle cut between free-order starts, in median start spacings. The
# kinds differ in length and the median spacing may sit at the shorter one (two kinds of 20 s and 30 s
# +-15% 50/50, the 5 no-period clips: median spacing 21-23 s, longest true cycle 33-34 s, 1.5-1.6
# medians; 1.5, the grid rule's bound in periods, dropped 1-8 cycles of up to 35 s a clip). A span of
# more than two median spacings is not one cycle unless the kinds differ by more than twice: it runs over
# a missed start (or a pause) and would stretch the durations.
FREE_ORDER_LONGEST = 2.0


def free_order_spans(starts: np.ndarray, normal: np.ndarray) -> list[tuple[int, int]]:
    """The cycles of a clip without a period whose starts (indices into d [N-1], ascending) are where the
    order of content is free: between consecutive starts, at most FREE_ORDER_LONGEST median spacings
    long, of normal windows only (`cycle_spans`)."""
    if len(starts) < 2:
        return []
    longest = FREE_ORDER_LONGEST * float(np.median(np.diff(starts)))
    return cycle_spans(starts + 1, longest, normal)


def analyze_one(
    u: np.ndarray,
    ts: np.ndarray,
    novelty: np.ndarray,
    params: StructureParams,
    places_fn: PlacesFn | None = None,
) -> ClipAnalysis:
    """Everything but the matching of windows against all others, which needs the other windows (of this
    clip or of all clips): `novelty` [N] (1 - best match outside the own neighbourhood) and `places_fn`
    (recurrence rule; None: the nearest rule)."""
    stride_s = stride_of(ts)
    n = len(u)
    # 1. Anomalies: they need no period, and the period must not see them (docs/METHODS.md section 5).
    delta = typical_dissimilarity(u, params.seed)  # typical 1 - cos of two windows: the scale of floors
    found = find_anomalies(u, ts, novelty, params, places_fn, delta)
    normal = normal_mask(ts, found.anomalies)
    mask = None if normal.all() else normal

    # 2. Signals, and the period from the autocorrelation of the normal windows.
    distance = consecutive_distance(u)
    _, _, max_lag = period_lag_range(n, stride_s, params)
    autocorr = autocorr_centred(centre(u, mask), max_lag, mask)
    if found.period_from is not None and np.array_equal(found.period_from[1], normal):
        period = found.period_from[0]  # found from these very windows
    else:
        period = detect_period(u, stride_s, params, autocorr=autocorr, mask=mask)

    # 3. Change points: with a period, each side of the change score spans whole cycles, so that the
    # content of one cycle averages out and only a change of activity stands out.
    halfwidth = max(1, round(params.change_halfwidth_s / stride_s))
    if period.period_s is not None:
        cycles_per_side = max(1, math.ceil(halfwidth / period.best_lag_windows - 1e-9))
        halfwidth = max(1, round(cycles_per_side * period.best_lag_windows))
    change = change_score(u, halfwidth)
    change_idx, change_threshold = robust_peaks(
        change, params.robust_z, halfwidth, params.change_min_fraction * delta
    )
    # A change of activity lasts: a peak whose content on one side comes back on the other side soon is a
    # cycle of another kind (or several) between cycles of one kind, an interruption.
    horizon = max(2 * halfwidth, round(params.change_horizon_s / stride_s))
    change_idx = lasting_changes(
        u, change_idx, halfwidth, horizon, params.anomaly_match_factor, params.change_max_return
    )
    gap = max(1, round(params.boundary_min_gap_s / stride_s))
    peaks, boundary_threshold = robust_peaks(distance, params.robust_z, gap)

    # 4. Per segment between change points, with the segment's own period, else the clip's: cycle starts
    # (boundaries; without any period, the peaks of the distance), cycles and repeats.
    # Segments: split at the change points that are not an anomaly's edges (an anomaly interrupts the
    # activity, it does not change it).
    anomaly_edges = np.flatnonzero(np.diff(normal.astype(np.int8)) != 0)
    activity_changes = [
        int(i) for i in change_idx if len(anomaly_edges) == 0 or np.min(np.abs(anomaly_edges - i)) > halfwidth
    ]
    edges = [0, *(np.array(activity_changes, dtype=int) + 1).tolist(), n]
    starts_found, spans, repeats = cycles_per_segment(
        u, ts, distance, normal, period, edges, boundary_threshold, params
    )
    if starts_found:
        boundary_idx = np.concatenate(starts_found)
    else:
        recurrent = found.recurrence is not None and found.recurrence.recurrent
        boundary_idx, free_order = no_period_starts(u, distance, peaks, gap, stride_s, recurrent, params)
        if free_order:  # the starts open cycles (not so the peaks of d: sub-action changes)
            spans = free_order_spans(boundary_idx, normal)
    cycles = cycle_table([u], [ts], [stride_s], [spans])[0]

    thresholds = {
        "boundary_distance": float(boundary_threshold),
        "change_score": float(change_threshold),
        "anomaly_score": float(params.anomaly_z),
        "anomaly_novelty_scale": float(found.novelty_scale),
    }
    recurrence = found.recurrence
    if recurrence is not None and found.rule == "recurrence":
        # score = max(max_places / places, z / anomaly_z): 1 = the threshold of either rule
        thresholds["anomaly_score"] = 1.0
        thresholds["typical_places"] = recurrence.typical_places
        thresholds["max_places"] = recurrence.max_places
        thresholds["typical_run_s"] = recurrence.typical_run_windows * stride_s
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
        anomaly_rule=found.rule,
        anomaly_score=found.score,
        places=found.places,
        hold_score=found.held,
        anomalies=found.anomalies,
        thresholds=thresholds,
        similarity_preview=preview,
        similarity_preview_s=ts[starts],
        cycles=cycles,
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
    clip_ids = np.zeros(len(u), dtype=np.int64)
    exclusion = np.array([exclusion_zone_s(ts, params)])
    best, _, _ = best_matches(u, clip_ids, ts, exclusion, 1)
    width = max(1, round(params.anomaly_smooth_s / stride_of(ts)))  # also the gap that breaks a run
    smooth = smoothed_rows(u, clip_ids, width)
    return analyze_one(
        u,
        ts,
        1.0 - best.astype(np.float64),
        params,
        lambda gap: distinct_places(
            smooth,
            clip_ids,
            ts,
            exclusion,
            params.anomaly_match_factor,
            gap,
            width,
            floor_fraction=params.anomaly_match_floor,
        ),
    )
