"""VJEPA/structure.py on embedding sequences with known structure, and against slow reference loops."""

from __future__ import annotations

import numpy as np
import pytest

from VJEPA import synthetic as se
from VJEPA.structure import (
    StructureParams,
    analyze,
    analyze_joint,
    autocorrelation,
    best_matches,
    change_score,
    consecutive_distance,
    masked_autocorrelation,
    normalize_rows,
    self_similarity,
    typical_dissimilarity,
)
from VJEPA.structure.segments import free_order_starts, lasting_changes

# ---------------------------------------------------------------- definitions vs direct loops


def test_signals_match_slow_reference() -> None:
    rng = np.random.default_rng(3)
    emb = (rng.standard_normal((37, 11)) + 2.0).astype(np.float32)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(u)

    similarity = np.array([[u[i] @ u[j] for j in range(n)] for i in range(n)])
    assert np.allclose(self_similarity(emb), similarity, atol=1e-5)
    assert np.allclose(consecutive_distance(emb), [1 - u[i] @ u[i + 1] for i in range(n - 1)], atol=1e-5)

    x = u - u.mean(axis=0)
    lag0 = np.mean([x[i] @ x[i] for i in range(n)])
    reference = [np.mean([x[i] @ x[i + k] for i in range(n - k)]) / lag0 for k in range(n - 1)]
    assert np.allclose(autocorrelation(emb, n - 2), reference, atol=1e-5)

    w = 4
    change = change_score(emb, w)
    for i in range(n - 1):
        if i + 1 < w or i + 1 + w > n:
            assert np.isnan(change[i])
        else:
            left, right = u[i + 1 - w : i + 1].sum(0), u[i + 1 : i + 1 + w].sum(0)
            cos = left @ right / np.linalg.norm(left) / np.linalg.norm(right)
            assert change[i] == pytest.approx(1 - cos, abs=1e-5)


def test_masked_autocorrelation_matches_slow_reference() -> None:
    rng = np.random.default_rng(6)
    emb = (rng.standard_normal((41, 9)) + 2.0).astype(np.float32)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(u)
    mask = np.ones(n, dtype=bool)
    mask[[3, 4, 17]] = False
    mask[25:32] = False
    x = u - u[mask].mean(axis=0)
    normal_pairs = [[i for i in range(n - k) if mask[i] and mask[i + k]] for k in range(n)]
    lag0 = np.mean([x[i] @ x[i] for i in normal_pairs[0]])
    reference = [
        np.mean([x[i] @ x[i + k] for i in pairs]) / lag0 if pairs else 0.0
        for k, pairs in enumerate(normal_pairs)
    ]
    assert np.allclose(masked_autocorrelation(emb, mask, n - 1), reference, atol=1e-5)
    # Every window normal: the plain autocorrelation.
    assert np.allclose(
        masked_autocorrelation(emb, np.ones(n, dtype=bool), n - 2), autocorrelation(emb, n - 2), atol=1e-6
    )


def test_typical_dissimilarity_is_median_pair_distance() -> None:
    rng = np.random.default_rng(7)
    u = normalize_rows(rng.standard_normal((60, 16)) + 1.0)
    exact = np.median([1 - u[i] @ u[j] for i in range(60) for j in range(i + 1, 60)])
    assert typical_dissimilarity(u, seed=0) == pytest.approx(exact, abs=1e-6)
    sampled = typical_dissimilarity(u, seed=0, max_pairs=1000)  # a random sample of the 1,770 pairs
    assert sampled == pytest.approx(exact, rel=0.05)


def test_best_matches_blockwise_equals_full_matrix() -> None:
    rng = np.random.default_rng(4)
    u = normalize_rows(rng.standard_normal((50, 8)))
    clip_ids = np.repeat([0, 1], [30, 20])
    ts = np.concatenate([np.arange(30.0), np.arange(20.0)])
    exclusion = np.array([5.0, 3.0])
    best, best_in_clip, arg_in_clip = best_matches(u, clip_ids, ts, exclusion, 2, block_rows=7)
    for i in range(50):
        allowed = [
            j for j in range(50) if clip_ids[j] != clip_ids[i] or abs(ts[j] - ts[i]) > exclusion[clip_ids[i]]
        ]
        sims = {j: float(u[i] @ u[j]) for j in allowed}
        assert best[i] == pytest.approx(max(sims.values()), abs=1e-5)
        for c in (0, 1):
            in_clip = {j: s for j, s in sims.items() if clip_ids[j] == c}
            assert best_in_clip[i, c] == pytest.approx(max(in_clip.values()), abs=1e-5)
            assert arg_in_clip[i, c] == max(in_clip, key=in_clip.get)


# ---------------------------------------------------------------- known structure


@pytest.mark.parametrize("dim", [64, 1024])
@pytest.mark.parametrize(("period_windows", "noise"), [(7.0, 1.0), (12.5, 2.0), (23.0, 0.5)])
def test_period_found_within_one_window(dim: int, period_windows: float, noise: float) -> None:
    emb = se.periodic(240, dim, period_windows, noise, seed=dim + int(period_windows))
    result = analyze(emb, se.timestamps(240))
    assert result.period.period_s is not None
    assert abs(result.period.period_s - period_windows * se.STRIDE_S) <= se.STRIDE_S
    assert result.period.period_confidence >= 0.99
    # Cycle starts one period apart, covering the clip; the whole clip repeats.
    assert np.median(np.diff(result.boundaries_s)) == pytest.approx(period_windows, abs=1.0)
    assert len(result.boundaries_s) >= 240 / period_windows - 2
    assert sum(r.end_s - r.start_s for r in result.repeats) >= 0.8 * 240
    assert result.anomalies == []


def test_no_reliable_period_on_pure_noise() -> None:
    params = StructureParams(n_surrogates=19)
    found = [
        analyze(se.pure_noise(120, 64, seed), se.timestamps(120), params).period.period_s
        for seed in range(100)
    ]
    assert sum(p is not None for p in found) <= 5


@pytest.mark.parametrize("dim", [64, 1024])
@pytest.mark.parametrize("noise", [0.5, 2.0])
def test_change_point_within_one_window(dim: int, noise: float) -> None:
    emb = se.change_point(200, dim, change_at=83, noise=noise, seed=dim)
    result = analyze(emb, se.timestamps(200))
    assert len(result.change_points_s) == 1
    assert abs(result.change_points_s[0] - 83 * se.STRIDE_S) <= se.STRIDE_S


@pytest.mark.parametrize("dim", [64, 1024])
@pytest.mark.parametrize(("period_windows", "noise"), [(9.0, 0.5), (16.0, 1.5)])
def test_anomalous_span_found(dim: int, period_windows: float, noise: float) -> None:
    start, length = 130, 12
    emb = se.with_anomaly(se.periodic(240, dim, period_windows, noise, seed=dim), start, length, seed=dim)
    result = analyze(emb, se.timestamps(240))
    truth = (start * se.STRIDE_S, (start + length) * se.STRIDE_S)
    assert len(result.anomalies) == 1
    assert se.span_iou((result.anomalies[0].start_s, result.anomalies[0].end_s), truth) >= 0.5
    assert result.period.period_s == pytest.approx(period_windows, abs=1.0)  # the anomaly does not hide it
    # No repetitive span runs through the anomaly.
    assert all(r.end_s <= truth[0] + 2 or r.start_s >= truth[1] - 2 for r in result.repeats)


def test_joint_analysis_finds_shared_segment_across_clips() -> None:
    rng = np.random.default_rng(5)
    clip_a = se.change_point(200, 128, 100, 0.5, seed=1)
    clip_b = se.change_point(150, 128, 60, 0.5, seed=2)
    clip_b[40:90] = clip_a[120:170] + rng.standard_normal((50, 128)).astype(np.float32) * 0.02
    joint = analyze_joint([clip_a, clip_b], [se.timestamps(200), se.timestamps(150)])
    assert len(joint.clips) == 2 and joint.clips[1].n_windows == 150
    assert len(joint.matches) == 1
    match = joint.matches[0]
    assert (match.clip_a, match.clip_b) == (0, 1)
    assert se.span_iou((match.start_a_s, match.end_a_s), (120.0, 170.0)) >= 0.8
    assert se.span_iou((match.start_b_s, match.end_b_s), (40.0, 90.0)) >= 0.8


def test_a_cross_clip_match_ends_each_span_with_its_own_clips_stride() -> None:
    """Clip a at a 1 s stride, clip b re-embedded at 0.5 s: b's span ends half a second after its last
    window starts (it once took a's stride)."""
    from VJEPA.structure.joint import matches_between

    ts = np.concatenate([np.arange(10.0), np.arange(20) * 0.5])  # clip a: windows 0-9; clip b: 10-29
    idx_a = np.arange(10)
    best = np.zeros((30, 2), np.float32)
    best[:, 1] = 0.9
    partner = np.zeros((30, 2), np.int64)
    partner[idx_a, 1] = 10 + 2 * idx_a  # a's window k matches b's window 2k (b has two per second)
    (match,) = matches_between(0, 1, idx_a, best, partner, ts, 1.0, 0.5, threshold=0.5, min_len=3)
    assert (match.start_a_s, match.end_a_s) == (0.0, 10.0)
    assert (match.start_b_s, match.end_b_s) == (0.0, 9.5)  # b's last window starts at 9.0


def test_joint_analysis_finds_a_one_off_event_of_three_sub_activities() -> None:
    """A worker's 20 minutes in two clips; in the first, 20 s of three new contents in a row (7 s each),
    seen nowhere else in either clip. Its windows' best matches elsewhere (all clips) are ordinary
    content, so the match floor must hold in the joint analysis too: without it, nothing was flagged."""
    emb, _ = se.phased_cycles(1200, 128, 20.0, 0.1, 0.7, seed=870)
    emb = se.with_recurring_anomaly(emb, [300], 20, seed=910, n_parts=3, distance=0.5)
    joint = analyze_joint([emb[:600], emb[600:]], [se.timestamps(600)] * 2)
    (span,) = joint.clips[0].anomalies
    assert se.span_iou((300.0, 320.0), (span.start_s, span.end_s)) >= 0.9
    assert joint.clips[1].anomalies == []
    off = analyze_joint(
        [emb[:600], emb[600:]], [se.timestamps(600)] * 2, StructureParams(anomaly_match_floor=0)
    )
    assert off.clips[0].anomalies == []


def test_joint_of_one_clip_equals_single_analysis() -> None:
    emb, ts = se.periodic(150, 64, 10.0, 1.0, seed=9), se.timestamps(150)
    single, joint = analyze(emb, ts), analyze_joint([emb], [ts]).clips[0]
    assert single.period.period_s == joint.period.period_s
    assert np.allclose(single.novelty, joint.novelty)


def test_similarity_preview_is_block_average() -> None:
    emb = se.periodic(100, 32, 10.0, 1.0, seed=2)
    result = analyze(emb, se.timestamps(100), StructureParams(max_plot_windows=25))
    full = self_similarity(emb)
    assert result.similarity_preview.shape == (25, 25)
    assert np.allclose(result.similarity_preview, full.reshape(25, 4, 25, 4).mean(axis=(1, 3)), atol=1e-5)


def test_rejects_bad_arrays() -> None:
    ts = se.timestamps(20)
    emb = se.pure_noise(20, 8, 0)
    with pytest.raises(ValueError):
        analyze(emb, ts[:-1])
    with pytest.raises(ValueError):
        analyze(emb, ts[::-1].copy())
    bad = emb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError):
        analyze(bad, ts)


def test_a_score_that_only_falls_from_where_it_is_defined_has_no_peak_there() -> None:
    """The first defined sample once counted as a peak (the undefined ones before it read as -inf), so a
    clip whose change score falls from its start got a change point at the start."""
    from VJEPA.structure.signals import robust_peaks

    rng = np.random.default_rng(0)
    signal = np.r_[[np.nan] * 5, np.linspace(0.05, 0.004, 20), 0.004 + rng.normal(0, 1e-4, 30), [np.nan] * 5]
    assert list(robust_peaks(signal, 3.5, 30, 0.01)[0]) == []
    signal[40] = 0.2  # a real peak inside is still found
    assert list(robust_peaks(signal, 3.5, 30, 0.01)[0]) == [40]


@pytest.mark.parametrize("scale", [1e19, 1e-30])
def test_normalize_rows_is_scale_free_at_extreme_values(scale: float) -> None:
    """Rows of values near 1e19 overflow a float32 sum of squares, near 1e-30 they underflow it: the unit
    rows must be the same as at scale 1 (once read as an infinite or a zero norm)."""
    emb = np.random.default_rng(3).standard_normal((20, 1024)).astype(np.float32)
    np.testing.assert_allclose(normalize_rows(emb * np.float32(scale)), normalize_rows(emb), atol=1e-6)


def test_normalize_rows_refuses_non_finite_and_zero_rows() -> None:
    emb = np.ones((4, 3), np.float32)
    emb[2, 1] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        normalize_rows(emb)
    with pytest.raises(ValueError, match="zero norm"):
        normalize_rows(np.zeros((4, 3), np.float32))


def _prototype_runs(lengths: list[tuple[int, int]], dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit rows: runs of (prototype, windows), each window its prototype plus noise of norm 0.3."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((3, dim))
    rows = [
        prototypes[k] + rng.standard_normal((count, dim)) * 0.3 / np.sqrt(dim) * np.linalg.norm(prototypes[k])
        for k, count in lengths
    ]
    return normalize_rows(np.concatenate(rows))


def test_a_change_of_activity_lasts_an_interruption_does_not() -> None:
    # A for 300 windows, B for 60, A again: both edges are one interruption (A comes back within the horizon)
    u = _prototype_runs([(0, 300), (1, 60), (0, 300)])
    assert len(lasting_changes(u, np.array([299, 359]), 20, 180, 0.3, 0.8)) == 0
    # A then B to the end, and A, B, C: every edge is a change
    u = _prototype_runs([(0, 300), (1, 300)])
    assert lasting_changes(u, np.array([299]), 20, 180, 0.3, 0.8).tolist() == [299]
    u = _prototype_runs([(0, 300), (1, 300), (2, 300)])
    assert lasting_changes(u, np.array([299, 599]), 20, 180, 0.3, 0.8).tolist() == [299, 599]
    # B for longer than the horizon: A's return is too late to make it an interruption
    u = _prototype_runs([(0, 300), (1, 400), (0, 300)])
    assert lasting_changes(u, np.array([299, 699]), 20, 180, 0.3, 0.8).tolist() == [299, 699]


@pytest.mark.parametrize(("fraction_b", "shared"), [(0.2, False), (0.2, True), (0.5, False)])
def test_cycles_of_two_kinds_in_random_order_are_no_change_of_activity(
    fraction_b: float, shared: bool
) -> None:
    """The change score peaks at a cycle of the other kind (its mean differs from the cycles around it),
    but the content before it comes back after it: no change point."""
    emb, _, _ = se.two_type_cycles(1200, 256, 0.7, seed=950, fraction_b=fraction_b, shared=shared)
    ts = se.timestamps(1200)
    assert analyze(emb, ts).change_points_s == []
    if fraction_b < 0.5:  # the peaks are there: every one is a passing interruption
        assert len(analyze(emb, ts, StructureParams(change_max_return=1.0)).change_points_s) >= 5


def _cycles_of_kinds(
    kinds: list[int], windows: int = 6, dim: int = 64
) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Unit rows of cycles in the given order, kind 0 = sub-actions (0, 1, 2), kind 1 = (3, 4, 5, 6), each
    sub-action `windows` windows of its prototype plus noise 0.3 of its norm; (u, every sub-action change
    as an index into d, the cycle starts among them)."""
    rng = np.random.default_rng(5)
    prototypes = rng.standard_normal((7, dim))
    rows, changes, starts, at = [], [], set(), 0
    for kind in kinds:
        for phase, k in enumerate((0, 1, 2) if kind == 0 else (3, 4, 5, 6)):
            if at > 0:
                changes.append(at - 1)  # d[at - 1]: the change into window `at`
                if phase == 0:
                    starts.add(at - 1)
            rows.append(prototypes[k] + rng.standard_normal((windows, dim)) * 0.3)
            at += windows
    return normalize_rows(np.concatenate(rows)), np.array(changes), starts


def test_free_order_starts_are_where_any_cycle_may_follow() -> None:
    """Inside a cycle one sub-action always follows another; at a cycle start the order is free."""
    kinds = np.random.default_rng(1).integers(0, 2, 40).tolist()
    u, changes, starts = _cycles_of_kinds(kinds)
    kept = free_order_starts(u, changes, 2, 5, 0.3, 0.1)
    interior = {int(i) for i in changes[(changes >= 3) & (changes <= len(u) - 6)]}  # with context
    assert set(kept.tolist()) == starts & interior
    # one kind only: every change is in a fixed order, none is free
    u, changes, _ = _cycles_of_kinds([0] * 40)
    assert len(free_order_starts(u, changes, 2, 5, 0.3, 0.1)) == 0
