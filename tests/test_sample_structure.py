"""VJEPA/structure.py in the regime of the built-in sample clip encoded by a tiny random-init V-JEPA 2.

The sample is a synthetic video whose assembly cycle repeats exactly every 6 s; a random-init encoder maps
it to embeddings that are almost constant: the cycle moves consecutive windows by a cosine distance of only
~1e-4..1e-3, while an anomalous stretch (a cart passing) moves them by ~0.03. Perfect repetition makes the
novelty of every normal window ~0 (numerical noise), the regime in which a plain robust z-score divides by
a near-zero MAD and a plain autocorrelation is dominated by the anomaly. The embeddings are built here (no
files): windows 1 s apart, each 64 frames (2.13 s) long, mixing normal and anomalous content in proportion
to how much of the window overlaps the anomalous interval. As in the sample, the first cycle differs very
slightly from the others (its windows' best matches are ~1e-5 worse than typical: meaningless, but many
MADs of a novelty that is otherwise numerical noise).
"""

from __future__ import annotations

import numpy as np

from VJEPA import synthetic as se
from VJEPA.structure import StructureParams, analyze, consecutive_distance, detect_period

PERIOD_S = 6.0
WINDOW_S = 64 / 30  # a window's duration: 64 frames at 30 fps
ANOMALY_S = (33.0, 41.0)  # the anomalous interval of the video, seconds


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def sample_like(n_windows: int, anomaly_s: tuple[float, float] | None, seed: int = 0, dim: int = 64):
    """(emb [N, dim] float32, ts [N]): a tiny exactly periodic loop around a large common embedding, plus
    a tiny offset of the first cycle, optionally anomalous content (a fast walk far from the loop) weighted
    by each window's overlap with `anomaly_s`, plus float32-level noise (repeats are not bit-identical)."""
    rng = np.random.default_rng(seed)
    ts = np.arange(n_windows, dtype=np.float64)
    phase = 2 * np.pi * ts[:, None] / PERIOD_S
    loop = sum(
        amplitude * (np.cos(h * phase) * _unit(rng, dim) + np.sin(h * phase) * _unit(rng, dim))
        for h, amplitude in ((1, 0.015), (2, 0.008), (3, 0.004))
    )
    emb = _unit(rng, dim) + loop
    emb[: int(PERIOD_S) + 1] += 0.006 * _unit(rng, dim)  # the first cycle: a tiny, meaningless difference
    if anomaly_s is not None:
        overlap = np.clip(np.minimum(ts + WINDOW_S, anomaly_s[1]) - np.maximum(ts, anomaly_s[0]), 0, None)
        weight = (overlap / WINDOW_S)[:, None]
        walk = 0.35 * _unit(rng, dim) + np.cumsum(
            rng.standard_normal((n_windows, dim)) * 0.12 / np.sqrt(dim), 0
        )
        emb = emb + weight * walk
    emb = emb + rng.standard_normal(emb.shape) * 1e-7
    return emb.astype(np.float32), ts


def test_generator_is_in_the_sample_regime() -> None:
    emb, ts = sample_like(60, ANOMALY_S)
    d = consecutive_distance(emb)
    inside = (ts[1:] > ANOMALY_S[0] - WINDOW_S) & (ts[1:] < ANOMALY_S[1])
    assert 1e-5 < np.median(d[~inside]) < 1e-3  # the cycle: tiny steps
    assert 0.01 < d[inside].max() < 0.1  # the anomaly: large steps


def test_period_and_anomaly_in_the_sample_regime() -> None:
    emb, ts = sample_like(58, ANOMALY_S)
    result = analyze(emb, ts)
    assert result.period.period_s is not None
    assert abs(result.period.period_s - PERIOD_S) <= result.stride_s
    assert result.autocorr_excludes_anomalies
    assert len(result.anomalies) == 1
    span = (result.anomalies[0].start_s, result.anomalies[0].end_s)
    # Window starts of the windows overlapping the anomaly: [33 - 2.13, 41) -> windows 31..40.
    assert se.span_iou(span, (31.0, 41.0)) >= 0.5
    assert se.span_iou(span, ANOMALY_S) >= 0.5
    assert span[1] <= ANOMALY_S[1] + 2  # the span ends with the anomaly, not at the end of the clip
    # The period needs the anomaly masked: the plain autocorrelation is dominated by the anomalous windows.
    assert detect_period(emb, result.stride_s, StructureParams()).period_s is None
    # Cycle starts one period apart outside the anomaly; repeats on both sides, none through it.
    assert np.median(np.diff(result.boundaries_s)) == PERIOD_S
    assert all(r.end_s <= span[0] + 1 or r.start_s >= span[1] - 1 for r in result.repeats)
    assert sum(r.end_s - r.start_s for r in result.repeats) >= 0.6 * 58


def test_no_anomaly_in_a_purely_periodic_clip() -> None:
    emb, ts = sample_like(34, None, seed=1)
    result = analyze(emb, ts)
    assert result.anomalies == []
    assert np.max(result.anomaly_score) < StructureParams().anomaly_z / 2
    # Without the scale floor the first cycle's tiny difference is a (false) anomaly of the nearest rule:
    # the floor is needed. (The recurrence rule also drops it: it lies within the clip's first 10 s.)
    no_floor = StructureParams(anomaly_scale_fraction=0.0, anomaly_method="nearest")
    assert analyze(emb, ts, no_floor).anomalies != []
    assert not result.autocorr_excludes_anomalies
    assert result.period.period_s is not None
    assert abs(result.period.period_s - PERIOD_S) <= result.stride_s


def test_scale_floor_follows_the_typical_dissimilarity() -> None:
    """Scaling the periodic loop by 10 scales the novelty and its floor alike: the verdict is unchanged."""
    emb, ts = sample_like(34, None, seed=2)
    common = emb.mean(axis=0)
    for factor in (1.0, 10.0):
        result = analyze(common + factor * (emb - common), ts)
        assert result.anomalies == []
        assert result.period.period_s is not None
