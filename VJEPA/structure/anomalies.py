"""Anomalous spans ("discords"): windows unlike the rest. See docs/METHODS.md section 5."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import uniform_filter1d

from .params import StructureParams
from .results import AnomalySpan
from .signals import robust_location_scale, runs


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
            spans.append(AnomalySpan(float(ts[first]), float(ts[last] + stride_s), peak))
    return score, spans, sigma
