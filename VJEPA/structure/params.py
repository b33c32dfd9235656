"""Every setting of the structure analysis, defined once: default, help (shown by VJEPA/analyze.py --help)
and bounds (checked by `egoclean.config.validate`). Times are in seconds. Methods: docs/METHODS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from egoclean.config import setting


@dataclass(frozen=True)
class StructureParams:
    """Every setting of the analysis, with its default. Times are in seconds."""

    min_period_s: float = setting(4.0, "shortest action cycle to look for, seconds", low=0, low_open=True)
    max_period_s: float = setting(
        120.0,
        "longest action cycle to look for, seconds (also capped at clip length / min-cycles)",
        low=0,
        low_open=True,
    )
    min_cycles: float = setting(
        3.0, "a period is only reported if the clip holds at least this many cycles", low=1
    )
    max_lag_fraction: float = setting(
        0.75,
        "autocorrelation is computed up to this fraction of the clip length",
        low=0,
        high=1,
        low_open=True,
    )
    n_surrogates: int = setting(
        19, "number of shuffled copies of the clip used to judge whether a period is real", low=1
    )
    surrogate_block_s: float = setting(
        3.0, "block length (s) of that shuffle: must be shorter than any real cycle", low=0, low_open=True
    )
    period_alpha: float = setting(
        0.01, "a period is reported when its confidence is at least 1 - this", low=0, high=1, low_open=True
    )
    subharmonic_ratio: float = setting(
        0.75,
        "prefer a period P/m over P when it explains at least this fraction as well",
        low=0,
        high=1,
        low_open=True,
    )
    robust_z: float = setting(
        3.5,
        "how many robust standard deviations (1.4826 * MAD) above the median a peak must rise",
        low=0,
        low_open=True,
    )
    boundary_min_gap_s: float = setting(2.0, "boundaries closer than this (s) are merged", low=0)
    free_order_min: float = setting(
        0.1,  # measured: ~0.2 (80/20) to ~0.5 (50/50) at two kinds' cycle starts, ~0 inside (RESULTS.md)
        "without a period: a peak of the consecutive distance is a cycle start only where the order of "
        "content is free, when more than this fraction of the peaks with like content before it have other "
        "content after it, and the other way round (1: off: every peak above robust_z, as before)",
        low=0,
        high=1,
    )
    free_order_z: float = setting(
        1.0,
        "without a period: the peaks of the consecutive distance weighed by that test rise this many robust "
        "standard deviations above the median (below robust_z: the test does the choosing)",
        low=0,
    )
    change_halfwidth_s: float = setting(
        10.0,
        "a change point compares the average content this long (s) before and after",
        low=0,
        low_open=True,
    )
    change_min_fraction: float = setting(
        0.1,
        "a change point's score must also rise this fraction of the typical window dissimilarity above "
        "its median",
        low=0,
    )
    change_horizon_s: float = setting(
        180.0,  # 120 s let a run of four 30 s cycles of the other kind read as a change (bench/RESULTS.md)
        "a change point whose content on either side comes back on the other side within this many "
        "seconds is a passing interruption (a cycle of another kind, a break), not a change of activity",
        low=0,
        low_open=True,
    )
    change_max_return: float = setting(
        0.8,  # measured: a change of activity 0-0.6, a cycle of another kind 0.95-1 (bench/RESULTS.md)
        "... namely when more than this fraction of the change-halfwidth windows on one side come back "
        "(1: off)",
        low=0,
        high=1,
    )
    repeat_fraction: float = setting(
        0.5,
        "a window repeats when its similarity one period away is this fraction of typical",
        low=0,
        high=1,
    )
    min_repeat_cycles: float = setting(2.0, "shortest repetitive segment reported, in periods", low=0)
    anomaly_method: str = setting(
        "recurrence",
        "anomaly rule: recurrence (content seen in too few separate places of the clip) or nearest "
        "(baseline: 1 - best match outside the own neighbourhood)",
        choices=("recurrence", "nearest"),
    )
    anomaly_max_places: int = setting(
        4,  # parts fetched every ~5 minutes of a 20-minute clip are still events, not the routine
        "recurrence rule: content seen in at most this many separate places (its own included) is rare",
        low=1,
    )
    anomaly_rare_fraction: float = setting(
        0.3,
        "recurrence rule: ... and in at most this fraction of the places a typical window is seen in",
        low=0,
        high=1,
        low_open=True,
    )
    anomaly_match_factor: float = setting(
        0.3,
        "recurrence rule: window j is like window i when their similarity is below i's best match elsewhere "
        "by at most this fraction of the way down to i's mean similarity",
        low=0,
        high=1,
    )
    anomaly_match_floor: float = setting(
        0.7,  # 0.6-0.8 give the same table; 0.5 misses a one-off event, 0.9 splits moving jams
        "recurrence rule: ... and only when their similarity rises above i's mean similarity by at least "
        "this fraction of the rise of a typical window's best match (or of i's own content anomaly-smooth-s "
        "on, if less): a one-off event, with no match elsewhere, then counts no ordinary window as like "
        "it; 0: off",
        low=0,
        high=1,
    )
    anomaly_place_gap_s: float = setting(
        5.0,
        "recurrence rule without a period: matches further apart than this (s) are separate places "
        "(with a period: half a period)",
        low=0,
        low_open=True,
    )
    hold_factor: float = setting(
        1.75,
        "held rule (a jam: usual content lasting too long), in a clip with a period: an unbroken run of "
        "like windows this many times as long as the same content lasts elsewhere...",
        low=1,
        low_open=True,
    )
    hold_min_s: float = setting(
        10.0, "held rule: ... and this many seconds longer (events worth flagging last 10-60 s)", low=0
    )
    boundary_method: str = setting(
        "tracked",
        "cycle starts: tracked (each start found near the previous one plus a period, follows jitter) or "
        "grid (baseline: phase + k periods, snapped)",
        choices=("tracked", "grid"),
    )
    cycle_jitter: float = setting(
        0.4,
        "tracked cycle starts: one cycle lasts between (1 - this) and (1 + this) periods",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    anomaly_exclusion_s: float = setting(
        20.0, "a window's own neighbourhood (s), ignored when looking for its best match", low=0
    )
    anomaly_z: float = setting(
        5.0,
        "robust z-score of the smoothed novelty above which a span is anomalous",
        low=0,
        low_open=True,
    )
    anomaly_smooth_s: float = setting(
        3.0, "moving-average length (s) applied to the novelty before thresholding", low=0
    )
    anomaly_scale_fraction: float = setting(
        0.05,
        "floor of the novelty scale, as a fraction of the typical window dissimilarity",
        low=0,
    )
    anomaly_min_span_s: float = setting(3.0, "shortest anomalous span reported, seconds", low=0)
    match_min_span_s: float = setting(5.0, "shortest cross-clip match reported with --joint, seconds", low=0)
    max_plot_windows: int = setting(
        600, "the similarity image is averaged down to at most this many rows", low=1
    )
    seed: int = setting(0, "random seed of the shuffles: the same input gives the same output", low=0)

    def conflicts(self) -> list[str]:
        """Settings that contradict each other (egoclean.config.validate reports the first)."""
        if self.max_period_s < self.min_period_s:
            return [
                f"--max-period-s {self.max_period_s:g} is below --min-period-s {self.min_period_s:g}: no "
                "period could ever be found; swap them"
            ]
        return []
