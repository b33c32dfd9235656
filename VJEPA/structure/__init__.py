"""Temporal structure of a clip from its V-JEPA 2 window embeddings: period, cycles, boundaries, change
points, repeats, anomalies; and the same across the clips of one worker (joint analysis).

Pure numpy/scipy: arrays in, arrays and dataclasses out; no I/O, no printing. Inputs: `emb` float [N, D],
one mean-pooled embedding per window, and `ts` float [N], each window's start time in seconds, strictly
increasing and (nearly) evenly spaced. Every definition and threshold: docs/METHODS.md.

Modules: params (settings), results (dataclasses), signals, period, segments (boundaries, change points,
repeats), anomalies, cycles (cycle-time table), analysis (one clip), joint (several clips).
"""

from .analysis import analyze
from .anomalies import Places, anomaly_spans, best_matches, distinct_places, hold_score, recurrence_spans
from .cycles import cycle_table, dtw_mean_cost, duration_summary
from .joint import analyze_joint
from .params import StructureParams
from .period import detect_period, period_lag_range
from .results import (
    AnomalySpan,
    ClipAnalysis,
    CrossClipMatch,
    CycleSpan,
    JointAnalysis,
    PeriodEstimate,
    RepeatSpan,
)
from .segments import cycle_starts, repeating_windows, tracked_cycle_starts
from .signals import (
    MAD_TO_SIGMA,
    SCALE_PAIRS,
    autocorrelation,
    change_score,
    consecutive_distance,
    masked_autocorrelation,
    normalize_rows,
    robust_location_scale,
    robust_peaks,
    self_similarity,
    typical_dissimilarity,
)

__all__ = [
    "MAD_TO_SIGMA",
    "SCALE_PAIRS",
    "AnomalySpan",
    "ClipAnalysis",
    "CrossClipMatch",
    "CycleSpan",
    "JointAnalysis",
    "PeriodEstimate",
    "Places",
    "RepeatSpan",
    "StructureParams",
    "analyze",
    "analyze_joint",
    "anomaly_spans",
    "autocorrelation",
    "best_matches",
    "change_score",
    "consecutive_distance",
    "cycle_starts",
    "cycle_table",
    "detect_period",
    "distinct_places",
    "dtw_mean_cost",
    "duration_summary",
    "hold_score",
    "masked_autocorrelation",
    "normalize_rows",
    "period_lag_range",
    "recurrence_spans",
    "repeating_windows",
    "robust_location_scale",
    "robust_peaks",
    "self_similarity",
    "tracked_cycle_starts",
    "typical_dissimilarity",
]
