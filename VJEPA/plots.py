"""Diagnostic figures of the temporal-structure analysis (matplotlib, Agg backend; no display needed).

One figure per clip, readable in ten seconds: change signal with boundaries, self-similarity, autocorrelation
with the period, anomaly score with the flagged spans, duration of each cycle. Every time axis is in mm:ss.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from VJEPA.structure import ClipAnalysis, JointAnalysis, duration_summary


def _equalised_norm(similarity: np.ndarray, levels: int = 64) -> mcolors.Normalize:
    """Colour levels at quantiles of the similarities, so that each colour covers as many cells.

    One strong anomaly would otherwise squeeze every other contrast (the cycle itself) into one colour.
    """
    bounds = np.unique(np.quantile(similarity, np.linspace(0.0, 1.0, levels + 1)))
    if len(bounds) < 3:
        return mcolors.Normalize()
    return mcolors.BoundaryNorm(bounds, ncolors=256)


def _log_scale_above(ax: plt.Axes, peak: float, threshold: float) -> None:
    """A peak far above the threshold flattens the rest: a log scale above the threshold keeps it visible."""
    if peak > 20 * threshold:
        ax.set_yscale("symlog", linthresh=threshold)
        ax.set_ylim(bottom=-1.0)


def mmss(seconds: float, _pos: object = None) -> str:
    """Seconds as m:ss (a tick-label formatter; `_pos` is matplotlib's tick position, unused)."""
    sign, whole = ("-" if seconds < 0 else ""), round(abs(seconds))
    return f"{sign}{whole // 60}:{whole % 60:02d}"


def _time_axis(axis: matplotlib.axis.Axis) -> None:
    axis.set_major_formatter(FuncFormatter(mmss))
    axis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 3, 5, 6, 10]))


def summary_line(analysis: ClipAnalysis) -> str:
    """One line: period, number of cycles, change points, anomalies."""
    period = analysis.period
    if period.period_s is None:
        head = f"no reliable period (confidence {period.period_confidence:.2f})"
    else:
        confidence = period.period_confidence
        head = f"period {period.period_s:.1f} s (confidence {confidence:.2f}), {analysis.n_cycles} cycles"
    return (
        f"{head}, {len(analysis.change_points_s)} change points, {len(analysis.repeats)} repetitive spans, "
        f"{len(analysis.anomalies)} anomalies"
    )


def clip_figure(analysis: ClipAnalysis, clip_name: str) -> Figure:
    """The five-panel diagnostic figure of one clip."""
    fig = plt.figure(figsize=(13, 13), layout="constrained")
    grid = fig.add_gridspec(4, 2, height_ratios=[1, 1.6, 1, 0.7], width_ratios=[1, 1.25])
    ax_dist = fig.add_subplot(grid[0, :])
    ax_ssm = fig.add_subplot(grid[1, 0])
    ax_acf = fig.add_subplot(grid[1, 1])
    ax_anom = fig.add_subplot(grid[2, :], sharex=ax_dist)
    ax_cycles = fig.add_subplot(grid[3, :], sharex=ax_dist)
    fig.suptitle(f"{clip_name}\n{summary_line(analysis)}", fontsize=12)
    ts, stride_s = analysis.ts, analysis.stride_s
    t_end = float(ts[-1] + stride_s)

    # 1. Consecutive cosine distance with boundaries (and change points).
    ax_dist.plot(ts[1:], analysis.distance, color="0.25", lw=0.8, label="1 - cos(window, next window)")
    ax_dist.axhline(
        analysis.thresholds["boundary_distance"], color="0.5", ls=":", lw=1, label="peak threshold"
    )
    for i, t in enumerate(analysis.boundaries_s):
        ax_dist.axvline(t, color="tab:blue", lw=0.8, alpha=0.6, label="boundary" if i == 0 else None)
    for i, t in enumerate(analysis.change_points_s):
        ax_dist.axvline(t, color="tab:red", lw=2, alpha=0.8, label="change point" if i == 0 else None)
    kind = "cycle starts" if analysis.period.period_s is not None else "distance peaks"
    ax_dist.set_title(f"1  Change between consecutive windows; boundaries = {kind}", loc="left", fontsize=10)
    ax_dist.set_ylabel("cosine distance")
    ax_dist.set_xlim(float(ts[0]), t_end)
    ax_dist.legend(loc="upper right", fontsize=8, ncols=4)
    _time_axis(ax_dist.xaxis)

    # 2. Self-similarity matrix (block-averaged preview).
    preview_s = analysis.similarity_preview_s
    extent = (float(preview_s[0]), t_end, t_end, float(preview_s[0]))
    image = ax_ssm.imshow(
        analysis.similarity_preview,
        cmap="viridis",
        norm=_equalised_norm(analysis.similarity_preview),
        extent=extent,
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax_ssm, shrink=0.8, label="cosine similarity (colours equalised)")
    ax_ssm.set_title("2  Self-similarity (bright = alike)", loc="left", fontsize=10)
    ax_ssm.set_xlabel("time (m:ss)")
    ax_ssm.set_ylabel("time (m:ss)")
    _time_axis(ax_ssm.xaxis)
    _time_axis(ax_ssm.yaxis)
    ax_ssm.tick_params(axis="x", labelrotation=45)

    # 3. Autocorrelation vs lag, with the period.
    lag_s = np.arange(len(analysis.autocorr)) * stride_s
    ax_acf.plot(lag_s, analysis.autocorr, color="0.25", lw=1)
    ax_acf.axhline(0, color="0.6", lw=0.8)
    period = analysis.period
    if period.period_s is not None:
        for k in range(1, int(lag_s[-1] / period.period_s) + 1):
            ax_acf.axvline(k * period.period_s, color="tab:green", lw=1.5 if k == 1 else 0.8, alpha=0.7)
        text = f"period {period.period_s:.1f} s, confidence {period.period_confidence:.2f}"
    else:
        text = f"no reliable period (confidence {period.period_confidence:.2f})"
    ax_acf.text(0.98, 0.95, text, transform=ax_acf.transAxes, ha="right", va="top", fontsize=10,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"})  # fmt: skip
    excluded = ", anomalous windows excluded" if analysis.autocorr_excludes_anomalies else ""
    ax_acf.set_title(f"3  Autocorrelation of the centred embeddings{excluded}", loc="left", fontsize=10)
    ax_acf.set_xlabel("lag (m:ss)")
    ax_acf.set_ylabel("r(lag)")
    if len(lag_s) > 1:
        ax_acf.set_xlim(0, float(lag_s[-1]))
    _time_axis(ax_acf.xaxis)

    # 4. Anomaly score with flagged spans and threshold.
    recurrence = analysis.anomaly_rule == "recurrence"
    score_label = "times over threshold (rarity, hold or novelty z)" if recurrence else "novelty (robust z)"
    ax_anom.plot(ts, analysis.anomaly_score, color="0.25", lw=0.9, label=score_label)
    ax_anom.axhline(analysis.thresholds["anomaly_score"], color="tab:red", ls="--", lw=1, label="threshold")
    for i, span in enumerate(analysis.anomalies):
        ax_anom.axvspan(
            span.start_s, span.end_s, color="tab:red", alpha=0.2, label="anomaly" if i == 0 else None
        )
    for i, repeat in enumerate(analysis.repeats):
        ax_anom.axvspan(repeat.start_s, repeat.end_s, ymin=0, ymax=0.04, color="tab:green",
                        label="repetitive" if i == 0 else None)  # fmt: skip
    title = (
        "4  Anomaly score: content seen in too few places, lasting too long, or with no close match"
        if recurrence
        else "4  Anomaly score: 1 - best match outside own neighbourhood"
    )
    ax_anom.set_title(title, loc="left", fontsize=10)
    ax_anom.set_ylabel("score / threshold" if recurrence else "robust z")
    _log_scale_above(ax_anom, float(np.nanmax(analysis.anomaly_score)), analysis.thresholds["anomaly_score"])
    ax_anom.legend(loc="upper right", fontsize=8, ncols=4)
    _time_axis(ax_anom.xaxis)
    _cycle_panel(ax_cycles, analysis)
    return fig


def _cycle_panel(ax: plt.Axes, analysis: ClipAnalysis) -> None:
    """Duration of each cycle at its start time, coloured by its deviation; median and IQR drawn."""
    cycles = analysis.cycles
    ax.set_xlabel("time (m:ss)")
    ax.set_ylabel("cycle duration (s)")
    if not cycles:
        ax.set_title("5  Cycle durations: no cycles (no reliable period)", loc="left", fontsize=10)
        _time_axis(ax.xaxis)
        return
    summary = duration_summary(cycles)
    starts = [c.start_s for c in cycles]
    widths = [c.duration_s for c in cycles]
    deviation = np.array([c.deviation for c in cycles])
    colours = plt.get_cmap("viridis")(deviation / max(float(deviation.max()), 1e-12))
    ax.bar(starts, widths, width=widths, align="edge", color=colours, edgecolor="white", lw=0.5)
    median, iqr = summary["median"], summary["iqr"]
    assert median is not None and iqr is not None  # there are cycles here
    ax.axhline(median, color="tab:red", lw=1, label=f"median {median:.1f} s")
    ax.axhspan(median - iqr / 2, median + iqr / 2, color="tab:red", alpha=0.1, label=f"IQR {iqr:.1f} s")
    ax.set_title(
        f"5  Cycle durations ({summary['n']} cycles, {summary['min']:.1f} to {summary['max']:.1f} s; "
        "colour: deviation from the typical cycle, DTW)",
        loc="left",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8, ncols=2)
    _time_axis(ax.xaxis)


def joint_figure(joint: JointAnalysis, clip_names: list[str]) -> Figure:
    """Similarity across all clips of a worker (clip borders drawn), and the anomaly score of each clip."""
    fig, (ax_ssm, ax_anom) = plt.subplots(
        1, 2, figsize=(15, 7), layout="constrained", gridspec_kw={"width_ratios": [1, 1.3]}
    )
    n_matches = len(joint.matches)
    fig.suptitle(f"Joint analysis of {len(clip_names)} clips: {n_matches} cross-clip matches", fontsize=12)
    image = ax_ssm.imshow(
        joint.similarity_preview,
        cmap="viridis",
        norm=_equalised_norm(joint.similarity_preview),
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax_ssm, shrink=0.8, label="cosine similarity (colours equalised)")
    starts = [int(np.argmax(joint.preview_clip == c)) for c in range(len(clip_names))]
    for s in starts[1:]:
        ax_ssm.axhline(s - 0.5, color="white", lw=1)
        ax_ssm.axvline(s - 0.5, color="white", lw=1)
    ax_ssm.set_xticks(starts, clip_names, fontsize=7, rotation=30, ha="right")
    ax_ssm.set_yticks(starts, clip_names, fontsize=7)
    ax_ssm.set_title("Self-similarity over all windows (clips in order)", loc="left", fontsize=10)

    offset = 0.0
    for c, (clip, name) in enumerate(zip(joint.clips, clip_names, strict=True)):
        ax_anom.plot(clip.ts + offset, clip.anomaly_score, lw=0.8, label=name)
        for span in clip.anomalies:
            ax_anom.axvspan(span.start_s + offset, span.end_s + offset, color="tab:red", alpha=0.2)
        for m in joint.matches:
            if m.clip_a == c:
                ax_anom.axvspan(
                    m.start_a_s + offset, m.end_a_s + offset, ymin=0, ymax=0.04, color="tab:green"
                )
        offset += float(clip.ts[-1] + clip.stride_s)
        ax_anom.axvline(offset, color="0.5", lw=0.8)
    if joint.clips:
        ax_anom.axhline(joint.clips[0].thresholds["anomaly_score"], color="tab:red", ls="--", lw=1)
    ax_anom.set_title("Anomaly score per clip, end to end (red: anomalies, green: matched in a later clip)",
                      loc="left", fontsize=10)  # fmt: skip
    ax_anom.set_xlabel("time, clips end to end (m:ss)")
    ax_anom.set_ylabel("robust z")
    peak = max(float(np.nanmax(clip.anomaly_score)) for clip in joint.clips)
    _log_scale_above(ax_anom, peak, joint.clips[0].thresholds["anomaly_score"])
    ax_anom.legend(fontsize=8)
    _time_axis(ax_anom.xaxis)
    return fig


def save_figure(fig: Figure, target: str | Path | IO[bytes]) -> None:
    """Write the figure as PNG to a path or an open binary file, then close it."""
    fig.savefig(target, format="png", dpi=100)
    plt.close(fig)
