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


def test_distinct_places_counts_runs_against_slow_reference() -> None:
    rng = np.random.default_rng(0)
    u = normalize_rows(rng.standard_normal((60, 6)) + 0.3)
    clip_ids = np.repeat([0, 1], [35, 25])
    ts = np.concatenate([np.arange(35.0), np.arange(25.0)])
    exclusion = np.array([4.0, 3.0])
    factor, gap = 0.4, 2
    got = distinct_places(u, clip_ids, ts, exclusion, factor, gap, block_rows=7)
    sim = u @ u.T
    for i in range(60):
        others = [
            j for j in range(60) if clip_ids[j] != clip_ids[i] or abs(ts[j] - ts[i]) > exclusion[clip_ids[i]]
        ]
        best = max(sim[i, j] for j in others)
        threshold = best - factor * (best - u[i] @ u.mean(axis=0))
        places = 0
        for c in (0, 1):
            matched = [j for j in np.flatnonzero(clip_ids == c) if sim[i, j] >= threshold or j == i]
            places += sum(1 for k, j in enumerate(matched) if k == 0 or j - matched[k - 1] > gap)
        assert got[i] == max(places, 1), i


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
