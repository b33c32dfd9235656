"""Dominant period: harmonic comb contrast of the masked autocorrelation, tested against block-shuffled
surrogates. Definition and thresholds: docs/METHODS.md section 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import StructureParams
from .results import PeriodEstimate
from .signals import autocorr_centred, centre, normalize_rows


def period_lag_range(n_windows: int, stride_s: float, params: StructureParams) -> tuple[float, float, int]:
    """(shortest, longest candidate period, max autocorrelation lag), in windows."""
    max_lag = max(int(params.max_lag_fraction * (n_windows - 1)), 0)
    lag_min = max(2.0, params.min_period_s / stride_s)
    lag_max = min(params.max_period_s / stride_s, n_windows / params.min_cycles, max_lag / 2)
    return lag_min, lag_max, max_lag


@dataclass(frozen=True)
class Comb:
    """H(P) = mean_k r(kP) - mean_k r((k-1/2)P), k = 1..COMB_MULTIPLES (and kP within the lags), for a
    grid of P, as one weighted sum over r.

    Every (P, k) term reads r by linear interpolation at a fractional lag; the interpolation weights are
    computed once, so evaluating H for the data and each surrogate is a few vectorised operations.
    """

    periods: np.ndarray  # [C] candidate periods, windows (a grid fine enough that kP stays on the peaks)
    candidate: np.ndarray  # [T] candidate index of each term
    lag_floor: np.ndarray  # [T, 2] integer lag below the on- and off-lag of each term
    frac: np.ndarray  # [T, 2] fractional part

    @classmethod
    def build(cls, lag_min: float, lag_max: float, max_lag: int) -> Comb:
        periods = np.arange(lag_min, lag_max + 1e-9, COMB_STEP_WINDOWS)
        counts = np.minimum(max_lag // periods, COMB_MULTIPLES).astype(int)
        candidate = np.repeat(np.arange(len(periods)), counts)
        k = np.arange(len(candidate)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        lags = np.stack([k * periods[candidate], (k - 0.5) * periods[candidate]], axis=1)
        lag_floor = np.minimum(np.floor(lags).astype(int), max_lag - 1)
        return cls(periods, candidate, lag_floor, lags - lag_floor)

    def contrast(self, r: np.ndarray) -> np.ndarray:
        at = r[self.lag_floor] * (1 - self.frac) + r[self.lag_floor + 1] * self.frac
        n = len(self.periods)
        return np.bincount(self.candidate, at[:, 0] - at[:, 1], n) / np.bincount(self.candidate, minlength=n)


COMB_STEP_WINDOWS = 0.05  # candidate period grid; 0.05 * (number of multiples) stays well under a window
# Multiples of a candidate period the comb reads. When cycle lengths vary, r(kP) fades after a few cycles:
# averaged over every multiple up to the largest lag (~200 for a 5 s period in 20 minutes), the true
# period drowned and 5 s cycles with 25% jitter read as 64 s (bench/RESULTS.md, phase 2b validation).
COMB_MULTIPLES = 4
SLOW_BLOCK_S = 15.0  # longest surrogate block, seconds (detect_period)


def gumbel_cdf(value: float, null: np.ndarray) -> float:
    """P(max statistic < value) under a Gumbel law fitted to the surrogate maxima by moments."""
    scale = max(float(np.std(null, ddof=1)) if len(null) > 1 else 0.0, 1e-12) * np.sqrt(6) / np.pi
    location = float(np.mean(null)) - 0.5772156649 * scale
    return float(np.exp(-np.exp(-(value - location) / scale)))


def detect_period(
    emb: np.ndarray,
    stride_s: float,
    params: StructureParams,
    autocorr: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> PeriodEstimate:
    """Dominant period of the sequence, tested against block-shuffled surrogates (docs/METHODS.md).

    mask [N] bool: the normal windows (True); the period is then found from the masked autocorrelation
    r_m, which `autocorr` must be if given. None: every window is normal (plain r).
    """
    u = normalize_rows(emb)
    mask = None if mask is None or np.all(mask) else np.asarray(mask, dtype=bool)
    x = centre(u, mask)
    lag_min, lag_max, max_lag = period_lag_range(len(x), stride_s, params)
    if lag_max < lag_min:  # clip too short for min_cycles cycles of the shortest period
        return PeriodEstimate(None, 0.0, 0.0, 0.0, 0.0, 0.0)
    r = autocorr_centred(x, max_lag, mask) if autocorr is None else autocorr[: max_lag + 1]
    comb = Comb.build(lag_min, lag_max, max_lag)
    contrast = comb.contrast(r)
    best = int(np.argmax(contrast))
    # Octave check: a multiple mP of the true period scores like P itself; keep the shortest sub-multiple.
    for m in range(int(comb.periods[best] / lag_min), 1, -1):
        sub = int(np.argmin(np.abs(comb.periods - comb.periods[best] / m)))
        if contrast[sub] >= params.subharmonic_ratio * contrast[best]:
            best = sub
            break
    statistic = float(contrast[best])

    rng = np.random.default_rng(params.seed)
    # Blocks as long as half the period found (at least surrogate_block_s, at most SLOW_BLOCK_S): the null
    # then keeps the slow structure of activities that last tens of seconds, which a 3 s shuffle destroyed
    # (so any slow recurrence read as a period), and still breaks every cycle of the period tested.
    block_s = min(max(params.surrogate_block_s, 0.5 * comb.periods[best] * stride_s), SLOW_BLOCK_S)
    block = max(1, round(block_s / stride_s))
    starts = np.arange(0, len(x), block)
    null = np.empty(params.n_surrogates)
    for s in range(params.n_surrogates):
        order = np.concatenate([np.arange(b, min(b + block, len(x))) for b in rng.permutation(starts)])
        shuffled_mask = None if mask is None else mask[order]  # the mask travels with its windows
        null[s] = comb.contrast(autocorr_centred(x[order], max_lag, shuffled_mask)).max()
    confidence = gumbel_cdf(statistic, null)
    # Parabola through the comb contrast at the best grid point and its neighbours.
    lag = float(comb.periods[best])
    if 0 < best < len(contrast) - 1:
        left, mid, right = contrast[best - 1 : best + 2]
        if left - 2 * mid + right < 0:
            # the vertex lies within half a step of the best point (mid >= left, right); clipped, since a
            # nearly flat top (curvature ~1e-17) would put it anywhere
            offset = 0.5 * (left - right) / (left - 2 * mid + right)
            lag += float(np.clip(offset, -0.5, 0.5)) * COMB_STEP_WINDOWS
    reliable = confidence >= 1.0 - params.period_alpha and float(np.interp(lag, np.arange(len(r)), r)) > 0
    period_s = lag * stride_s if reliable else None
    null_std = float(null.std(ddof=1)) if len(null) > 1 else 0.0
    return PeriodEstimate(period_s, confidence, lag, statistic, float(null.mean()), null_std)
