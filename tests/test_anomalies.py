"""The recurrence anomaly rule (VJEPA/structure/anomalies.py): long, repeated and short planted spans are
found over their whole length; jittered normal cycles and a lasting change of activity are not anomalies."""

from __future__ import annotations

import numpy as np
import pytest

from VJEPA import synthetic as se
from VJEPA.structure import StructureParams, analyze, distinct_places, normalize_rows

N, DIM, PERIOD = 600, 128, 15.0


def _best_iou(truth: tuple[float, float], spans: list) -> float:
    return max((se.span_iou(truth, (s.start_s, s.end_s)) for s in spans), default=0.0)


def _cycles(seed: int, jitter: float = 0.1, noise: float = 1.0) -> np.ndarray:
    return se.jittered_cycles(N, DIM, PERIOD, jitter, noise, seed=seed)[0]


def _runs_of(matched: list[int], gap: int) -> list[list[int]]:
    """Sorted window indices -> runs whose consecutive members are at most `gap` apart."""
    out: list[list[int]] = []
    for k, j in enumerate(matched):
        if k == 0 or j - matched[k - 1] > gap:
            out.append([])
        out[-1].append(j)
    return out


@pytest.mark.parametrize(("run_gap", "floor"), [(2, 0.0), (1, 0.0), (2, 0.9)])
def test_distinct_places_counts_runs_against_slow_reference(run_gap: int, floor: float) -> None:
    rng = np.random.default_rng(0)
    u = normalize_rows(rng.standard_normal((60, 6)) + 0.3)
    clip_ids = np.repeat([0, 1], [35, 25])
    ts = np.concatenate([np.arange(35.0), np.arange(25.0)])
    exclusion = np.array([4.0, 3.0])
    factor, gap = 0.4, 2
    got = distinct_places(
        u, clip_ids, ts, exclusion, factor, gap, run_gap, block_rows=7, floor_fraction=floor
    )
    sim = u @ u.T

    def elsewhere(i: int) -> list[int]:
        return [
            j for j in range(60) if clip_ids[j] != clip_ids[i] or abs(ts[j] - ts[i]) > exclusion[clip_ids[i]]
        ]

    rise = np.median([max(sim[i, j] for j in elsewhere(i)) - u[i] @ u.mean(axis=0) for i in range(60)])
    raised = 0
    for i in range(60):
        best = max(sim[i, j] for j in elsewhere(i))
        mean_sim = u[i] @ u.mean(axis=0)
        threshold = best - factor * (best - mean_sim)
        if floor > 0:  # 0: no floor at all
            nearby = [j for j in (i - run_gap, i + run_gap) if 0 <= j < 60 and clip_ids[j] == clip_ids[i]]
            floor_at = mean_sim + floor * min(rise, max(sim[i, j] for j in nearby) - mean_sim)
            raised += floor_at > threshold
            threshold = max(threshold, floor_at)
        places, stretches = 0, []
        for c in (0, 1):
            matched = [j for j in np.flatnonzero(clip_ids == c) if sim[i, j] >= threshold or j == i]
            places += len(_runs_of(matched, gap))
            stretches += _runs_of(matched, run_gap)
        own = next(len(run) for run in stretches if i in run)
        assert got.count[i] == max(places, 1), i
        assert got.own_windows[i] == own, i
        other = (sum(map(len, stretches)) - own) / (len(stretches) - 1) if len(stretches) > 1 else 0.0
        assert got.other_windows[i] == pytest.approx(other), i
    assert (raised > 0) == (floor > 0)  # the floor case does raise some thresholds


@pytest.mark.parametrize("length", [40, 120])
def test_long_anomaly_found_over_its_whole_length(length: int) -> None:
    start = 250
    emb = se.with_recurring_anomaly(_cycles(seed=length), [start], length, seed=length)
    result = analyze(emb, se.timestamps(N))
    assert len(result.anomalies) == 1
    assert _best_iou((start, start + length), result.anomalies) >= 0.5
    # the baseline rule (1 - best match outside +-20 s) sees only the span's centre, or nothing
    baseline = analyze(emb, se.timestamps(N), StructureParams(anomaly_method="nearest"))
    assert _best_iou((start, start + length), baseline.anomalies) < 0.5


@pytest.mark.parametrize("length", [5, 30])
def test_anomaly_seen_twice_is_found_both_times(length: int) -> None:
    starts = [150, 420]
    emb = se.with_recurring_anomaly(_cycles(seed=7 + length), starts, length, seed=3)
    result = analyze(emb, se.timestamps(N))
    assert len(result.anomalies) == 2
    for s in starts:
        assert _best_iou((s, s + length), result.anomalies) >= 0.5


def test_an_event_every_few_minutes_is_found_every_time() -> None:
    """Fetching parts every ~4.5 minutes of a 20-minute clip: the same 20 s event 4 times. With at most 3
    places allowed it was never flagged."""
    emb, _ = se.jittered_cycles(1200, 128, 20.0, 0.1, 1.0, seed=450)
    starts = [150, 420, 690, 960]
    emb = se.with_recurring_anomaly(emb, starts, 20, seed=450)
    found = [(a.start_s, a.end_s) for a in analyze(emb, se.timestamps(1200)).anomalies]
    for start in starts:
        assert max((se.span_iou((start, start + 20), f) for f in found), default=0.0) >= 0.5, (start, found)
    assert len(found) == len(starts)


@pytest.mark.parametrize("jitter", [0.0, 0.25])
def test_no_anomaly_on_jittered_normal_cycles(jitter: float) -> None:
    for seed in range(3):
        result = analyze(_cycles(seed=seed, jitter=jitter), se.timestamps(N))
        assert result.anomaly_rule == "recurrence"
        assert result.anomalies == []


def test_no_anomaly_on_drifting_cycles() -> None:
    emb, _ = se.jittered_cycles(N, DIM, PERIOD, 0.1, 1.0, seed=5, drift=0.2, content_drift=0.5)
    assert analyze(emb, se.timestamps(N)).anomalies == []


def test_task_change_is_a_change_point_not_an_anomaly() -> None:
    emb, _ = se.task_change(N, DIM, 330, PERIOD, 11.0, 0.1, 1.0, seed=2)
    result = analyze(emb, se.timestamps(N))
    assert result.anomalies == []
    assert any(abs(t - 330) <= 3 for t in result.change_points_s)


def test_task_change_near_the_end_is_not_an_anomaly() -> None:
    # The new task holds only two cycles: its content is rare, but it lasts to the end of the clip.
    emb, _ = se.task_change(N, DIM, N - 30, PERIOD, 14.0, 0.1, 1.0, seed=4)
    assert analyze(emb, se.timestamps(N)).anomalies == []


JAMS = [(400.0, 30.0), (900.0, 20.0)]  # (at_s, extra_s): the sub-action in progress held up


@pytest.mark.parametrize(("n_phases", "period_s", "jitter"), [(3, 20.0, 0.1), (4, 60.0, 0.2)])
def test_a_jam_is_flagged_as_held(n_phases: int, period_s: float, jitter: float) -> None:
    """A sub-action that lasts 20-30 s too long shows nothing new (every window has close matches in other
    cycles, so neither the nearest nor the rarity rule can see it); only its duration is odd."""
    emb, _ = se.phased_cycles(1200, DIM, period_s, jitter, 0.7, seed=851, n_phases=n_phases, holds=JAMS)
    result = analyze(emb, se.timestamps(1200))
    assert result.period.period_s is not None
    assert len(result.anomalies) == len(JAMS), result.anomalies
    for at_s, extra_s in JAMS:
        span = max(result.anomalies, key=lambda a: se.span_iou((at_s, at_s + extra_s), (a.start_s, a.end_s)))
        assert se.span_iou((at_s, at_s + extra_s), (span.start_s, span.end_s)) >= 0.5
        assert span.kind == "held", span
    assert result.hold_score is not None and result.hold_score.max() >= 1
    # the same clip without the jams: nothing held
    plain, _ = se.phased_cycles(1200, DIM, period_s, jitter, 0.7, seed=851, n_phases=n_phases)
    assert analyze(plain, se.timestamps(1200)).anomalies == []


def test_a_long_activity_without_a_rhythm_is_not_held() -> None:
    """Without a period there is no usual duration to outlast: the held rule stays off."""
    emb = se.activity_sequence(1200, DIM, 4, 0.7, seed=900)
    result = analyze(emb, se.timestamps(1200))
    assert result.period.period_s is None
    assert result.hold_score is not None and not result.hold_score.any()
    assert all("held" not in a.kind for a in result.anomalies)


@pytest.mark.parametrize(("n_phases", "period_s", "jitter"), [(3, 20.0, 0.1), (4, 60.0, 0.2)])
def test_a_jam_whose_content_keeps_moving_is_flagged_as_held(
    n_phases: int, period_s: float, jitter: float
) -> None:
    """The worker fiddles with the stuck part: the held sub-action's content wanders (off its path by a
    random walk and a 1 Hz jitter of RMS norm 0.7, and back and forth along it) instead of freezing. A
    like window is one within 30% of the way from the window's best match down to its mean similarity, not
    an equal one, so the run still spans the whole jam."""
    emb, _ = se.phased_cycles(
        1200, DIM, period_s, jitter, 0.7, seed=851, n_phases=n_phases, holds=JAMS, hold_wander=0.7
    )
    result = analyze(emb, se.timestamps(1200))
    assert len(result.anomalies) == len(JAMS), result.anomalies
    for at_s, extra_s in JAMS:
        span = max(result.anomalies, key=lambda a: se.span_iou((at_s, at_s + extra_s), (a.start_s, a.end_s)))
        assert se.span_iou((at_s, at_s + extra_s), (span.start_s, span.end_s)) >= 0.5
        assert "held" in span.kind, span


@pytest.mark.parametrize("length", [20, 40])
def test_a_one_off_event_of_three_novel_sub_activities_is_rare(length: int) -> None:
    """Three distinct new contents in a row (a conversation, a rework, a search; 7-13 s each), seen once,
    no further from the clip's mean than its own content. Every window's best match outside its +-20 s
    neighbourhood is ordinary content barely above its mean similarity, so without the match floor the
    like threshold sank to ordinary windows: ~55 places, as many as a typical window, and the 20 s event
    was missed by every rule (the 40 s one seen only in part, by the held rule)."""
    emb, _ = se.phased_cycles(1200, DIM, 20.0, 0.1, 0.7, seed=870)
    emb = se.with_recurring_anomaly(emb, [400], length, seed=890 + length, n_parts=3, distance=0.5)
    result = analyze(emb, se.timestamps(1200))
    assert len(result.anomalies) == 1, result.anomalies
    (span,) = result.anomalies
    assert se.span_iou((400, 400 + length), (span.start_s, span.end_s)) >= 0.9
    assert "rare" in span.kind
    # its windows seen in one place (the edge windows, smoothed with ordinary content, in more)
    assert result.places is not None and np.median(result.places[400 : 400 + length]) == 1
    off = analyze(emb, se.timestamps(1200), StructureParams(anomaly_match_floor=0.0))
    assert off.places is not None and np.median(off.places[400 : 400 + length]) > 20


@pytest.mark.parametrize(("fraction_b", "shared"), [(0.2, False), (0.2, True), (0.5, False)])
def test_a_second_kind_of_cycle_that_recurs_is_not_an_anomaly(fraction_b: float, shared: bool) -> None:
    """Assembling with a restocking cycle now and then (80/20), or two variants (50/50), in random order:
    the other kind of cycle recurs through the clip (at 80/20, about 10 times in 20 minutes)."""
    emb, _, type_b = se.two_type_cycles(1200, 256, 0.7, seed=951, fraction_b=fraction_b, shared=shared)
    assert type_b.sum() >= 5  # the clip does hold cycles of both kinds
    assert analyze(emb, se.timestamps(1200)).anomalies == []
