"""Result types of the structure analysis (see docs/METHODS.md for what each field means)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PeriodEstimate:
    """Dominant cycle. `period_s` is None when no reliable period was found."""

    period_s: float | None
    period_confidence: float  # Phi(z) of the comb statistic against block-shuffled surrogates, in [0, 1]
    best_lag_windows: float  # refined lag of the best candidate, reported even when not reliable (0 if none)
    comb_statistic: float  # H(P*) of the data
    null_mean: float
    null_std: float


@dataclass
class RepeatSpan:
    start_s: float
    end_s: float
    period_s: float


@dataclass
class AnomalySpan:
    start_s: float
    end_s: float
    score: float  # peak score inside the span: times over the threshold (nearest rule: robust z)
    # "novel" (no close match anywhere), "rare" (seen in too few places), "held" (usual content that
    # lasts too long: a jam); "+"-joined when rules flag overlapping windows
    kind: str


@dataclass
class CrossClipMatch:
    clip_a: int
    clip_b: int
    start_a_s: float
    end_a_s: float
    start_b_s: float
    end_b_s: float
    similarity: float  # mean cosine similarity of the matched windows


@dataclass
class CycleSpan:
    """One cycle: from a cycle start to the next one; deviation = mean DTW cost against the template cycle."""

    index: int
    start_s: float
    end_s: float
    duration_s: float
    deviation: float  # mean 1 - cos along the DTW path against the medoid cycle (0 = the same content)


@dataclass
class ClipAnalysis:
    """Everything computed for one clip: the signals (for plots and files) and the results."""

    ts: np.ndarray  # [N] window start times, s
    stride_s: float
    distance: np.ndarray  # [N-1] consecutive cosine distance d, attributed to ts[1:]
    change_score: np.ndarray  # [N-1] change score c, aligned with d, NaN near the ends
    autocorr: np.ndarray  # [max_lag+1] masked r_m[k] the period was found from; lag k = k * stride_s s
    autocorr_excludes_anomalies: bool  # True when anomalous windows were left out of `autocorr`
    period: PeriodEstimate
    boundaries_s: list[float]
    change_points_s: list[float]
    repeats: list[RepeatSpan]
    novelty: np.ndarray  # [N] 1 - best similarity outside the exclusion zone
    anomaly_rule: str  # "recurrence" or "nearest": the rule that flagged `anomalies`
    anomaly_score: np.ndarray  # [N] rarity (recurrence rule) or robust z of the smoothed novelty (nearest)
    places: np.ndarray | None  # [N] separate places holding each window's content (recurrence rule)
    hold_score: np.ndarray | None  # [N] >= 1: the content lasts too long here (recurrence rule, a period)
    anomalies: list[AnomalySpan]
    thresholds: dict[str, float]  # boundary distance, change score, anomaly score (robust z), novelty scale
    similarity_preview: np.ndarray  # [M, M] block-averaged S, M <= max_plot_windows
    similarity_preview_s: np.ndarray  # [M] start time of each preview block, s
    cycles: list[CycleSpan] = field(default_factory=list)  # consecutive cycle starts, with deviations

    @property
    def n_windows(self) -> int:
        return len(self.ts)

    @property
    def n_cycles(self) -> int:
        """Complete cycles: consecutive cycle starts within one run of normal windows."""
        return len(self.cycles)


@dataclass
class JointAnalysis:
    clips: list[ClipAnalysis]
    matches: list[CrossClipMatch]
    similarity_preview: np.ndarray  # [M, M] block-averaged S over all windows of all clips in order
    preview_clip: np.ndarray  # [M] clip index of each preview block
    preview_s: np.ndarray  # [M] start time (within its clip) of each preview block
    match_threshold: float = field(default=float("nan"))
    cycles: list[list[CycleSpan]] = field(default_factory=list)  # per clip, deviation from the pooled medoid
