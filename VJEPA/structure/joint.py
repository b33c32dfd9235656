"""Joint analysis of several clips of one worker: per-clip results over one similarity structure, and
cross-clip matched spans. Definition: docs/METHODS.md section 7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .analysis import PlacesFn, analyze_one, check_inputs, exclusion_zone_s
from .anomalies import Places, best_matches, distinct_places, smoothed_rows
from .cycles import cycle_table, window_span
from .params import StructureParams
from .results import CrossClipMatch, JointAnalysis
from .signals import normalize_rows, robust_location_scale, runs, similarity_preview, stride_of


def matches_between(
    a: int,
    b: int,
    idx_a: np.ndarray,
    best_in_clip: np.ndarray,
    arg_in_clip: np.ndarray,
    ts: np.ndarray,
    stride_a_s: float,
    stride_b_s: float,
    threshold: float,
    min_len: int,
) -> list[CrossClipMatch]:
    sim, partner = best_in_clip[idx_a, b], arg_in_clip[idx_a, b]
    step = np.diff(partner)
    matched = sim >= threshold
    # a run continues while both windows match and the partner advances in step with the window
    keep = matched[1:] & matched[:-1] & (step >= -1) & (step <= 3)
    found = []
    for first, last in runs(np.concatenate([keep, [False]])):
        last += 1  # `keep` marks pairs: the run's last pair ends one window later
        if last - first + 1 >= min_len:
            ja, jb = idx_a[first], idx_a[last]
            pa, pb = partner[first], partner[last]
            found.append(
                CrossClipMatch(
                    a,
                    b,
                    float(ts[ja]),
                    float(ts[jb] + stride_a_s),
                    float(ts[min(pa, pb)]),
                    float(ts[max(pa, pb)] + stride_b_s),
                    float(sim[first : last + 1].mean()),
                )
            )
    return found


def analyze_joint(
    embs: Sequence[np.ndarray], tss: Sequence[np.ndarray], params: StructureParams | None = None
) -> JointAnalysis:
    """Analysis of several clips of one worker over one similarity structure of all their windows.

    Per clip: the same results as `analyze`, except that the novelty looks for matches in every clip (a
    window is anomalous only if nothing in any clip resembles it). Across clips: matched spans.
    """
    params = params or StructureParams()
    if len(embs) != len(tss) or len(embs) == 0:
        raise ValueError("need as many ts arrays as emb arrays, and at least one")
    tss = [np.asarray(t, dtype=np.float64) for t in tss]
    for emb, ts in zip(embs, tss, strict=True):
        check_inputs(np.asarray(emb), ts)
    if len({np.asarray(e).shape[1] for e in embs}) != 1:
        raise ValueError("all clips must have the same embedding dimension")
    u = np.concatenate([normalize_rows(e) for e in embs])
    clip_ids = np.concatenate([np.full(len(t), c) for c, t in enumerate(tss)])
    ts_all = np.concatenate(tss)
    exclusion = np.array([exclusion_zone_s(t, params) for t in tss])
    best, best_in_clip, arg_in_clip = best_matches(u, clip_ids, ts_all, exclusion, len(tss))

    # Recurrence: a window's content counted in separate places of every clip, smoothed windows compared.
    width = max(1, round(params.anomaly_smooth_s / min(stride_of(t) for t in tss)))
    smooth = smoothed_rows(u, clip_ids, width)

    def places_of(idx: np.ndarray) -> PlacesFn:
        def places(gap: int) -> Places:
            return distinct_places(
                smooth,
                clip_ids,
                ts_all,
                exclusion,
                params.anomaly_match_factor,
                gap,
                width,
                rows=idx,
                floor_fraction=params.anomaly_match_floor,
            )

        return places

    clips = []
    for c in range(len(tss)):
        idx = np.flatnonzero(clip_ids == c)
        novelty = 1.0 - best[idx].astype(np.float64)
        clips.append(analyze_one(u[idx], tss[c], novelty, params, places_of(idx)))

    # Cycles of every clip against one template: the medoid of all the worker's cycles.
    spans = [[window_span(clip.ts, clip.stride_s, c) for c in clip.cycles] for clip in clips]
    pooled = cycle_table(
        [u[clip_ids == c] for c in range(len(tss))], tss, [clip.stride_s for clip in clips], spans
    )

    # Match threshold: a cross-clip partner as similar as a typical (non-anomalous) best match.
    best_median, best_sigma = robust_location_scale(best.astype(np.float64))
    threshold = best_median - params.robust_z * best_sigma
    matches = []
    for a in range(len(tss)):
        idx_a = np.flatnonzero(clip_ids == a)
        stride_a_s = clips[a].stride_s
        min_len = max(2, math.ceil(params.match_min_span_s / stride_a_s - 1e-9))
        for b in range(a + 1, len(tss)):
            strides = (stride_a_s, clips[b].stride_s)
            matches += matches_between(
                a, b, idx_a, best_in_clip, arg_in_clip, ts_all, *strides, threshold, min_len
            )

    preview, starts = similarity_preview(u, params.max_plot_windows)
    return JointAnalysis(
        clips, matches, preview, clip_ids[starts], ts_all[starts], float(threshold), cycles=pooled
    )
