"""Embedding sequences with known temporal structure, for tests and benchmarks.

Each window's embedding = a large common offset (real embeddings of one clip are all alike) + a structured
part of norm ~1 + isotropic Gaussian noise of total norm `noise`. Windows are 1 s apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

STRIDE_S = 1.0


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def _noise(rng: np.random.Generator, n: int, dim: int, noise: float) -> np.ndarray:
    return rng.standard_normal((n, dim)) * (noise / np.sqrt(dim))


def timestamps(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * STRIDE_S


def periodic(n: int, dim: int, period_windows: float, noise: float, seed: int) -> np.ndarray:
    """A random smooth closed loop (3 harmonics, random directions) traversed once per period, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    loop = np.zeros((n, dim))
    for harmonic, amplitude in ((1, 1.0), (2, 0.6), (3, 0.35)):
        phase = 2 * np.pi * harmonic * t / period_windows
        loop += amplitude * (np.cos(phase) * _unit(rng, dim) + np.sin(phase) * _unit(rng, dim))
    loop /= np.sqrt(np.mean(np.sum(loop**2, axis=1)))
    return (3.0 * _unit(rng, dim) + loop + _noise(rng, n, dim, noise)).astype(np.float32)


def pure_noise(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (3.0 * _unit(rng, dim) + _noise(rng, n, dim, 1.0)).astype(np.float32)


def random_walk(n: int, dim: int, step: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth wandering path: cumulative sum of random steps, each of norm ~step."""
    return np.cumsum(rng.standard_normal((n, dim)) * (step / np.sqrt(dim)), axis=0)


def change_point(n: int, dim: int, change_at: int, noise: float, seed: int) -> np.ndarray:
    """Slowly wandering content whose mean jumps (by norm 1) at window `change_at`."""
    rng = np.random.default_rng(seed)
    base = 3.0 * _unit(rng, dim) + random_walk(n, dim, 0.05, rng)
    base[change_at:] += _unit(rng, dim)
    return (base + _noise(rng, n, dim, noise)).astype(np.float32)


def with_anomaly(emb: np.ndarray, start: int, length: int, seed: int) -> np.ndarray:
    """Replace windows [start, start+length) by content that occurs nowhere else: a fast random walk."""
    rng = np.random.default_rng(seed + 10_000)
    out = emb.copy()
    dim = emb.shape[1]
    scale = float(np.median(np.linalg.norm(emb - emb.mean(axis=0), axis=1)))
    walk = _unit(rng, dim) * 1.5 + random_walk(length, dim, 0.6, rng)
    out[start : start + length] = emb.mean(axis=0) + scale * walk + _noise(rng, length, dim, 0.3 * scale)
    return out.astype(np.float32)


def cycle_durations(
    n: int, period_windows: float, jitter: float, drift: float, rng: np.random.Generator
) -> np.ndarray:
    """Cycle lengths (windows) covering n windows: period * (1 + drift * t / n) * (1 + U(-jitter, jitter))."""
    durations: list[float] = []
    t = 0.0
    while t < n + 2 * period_windows:
        length = period_windows * (1 + drift * t / n) * (1 + jitter * rng.uniform(-1, 1))
        durations.append(length)
        t += length
    return np.array(durations)


def _cycle_content(phase: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """[T] phase in [0, 1) -> [T, D]: a work cycle of 4 sub-actions, each a smooth stretch of the loop
    plus its own offset, so that a cycle starts with a jump (put the part down, pick the next one)."""
    loop = np.zeros((len(phase), directions.shape[1]))
    for harmonic, amplitude in ((1, 1.0), (2, 0.5)):
        angle = 2 * np.pi * harmonic * phase[:, None]
        loop += amplitude * (
            np.cos(angle) * directions[2 * harmonic - 2] + np.sin(angle) * directions[2 * harmonic - 1]
        )
    ramp = phase[:, None] * directions[4] * 1.5  # grows through the cycle, resets at the next start
    return loop + ramp


def jittered_cycles(
    n: int,
    dim: int,
    period_windows: float,
    jitter: float,
    noise: float,
    seed: int,
    drift: float = 0.0,
    content_drift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cycles of varying length (uniform +-jitter around a period that grows by `drift` over the clip),
    the content drifting by norm `content_drift` over the clip. Returns (emb [n, dim], starts_s [K]: the
    true cycle start times inside the clip, s)."""
    rng = np.random.default_rng(seed)
    directions = np.stack([_unit(rng, dim) for _ in range(6)])
    durations = cycle_durations(n, period_windows, jitter, drift, rng)
    offset = rng.uniform(0, durations[0])  # the clip starts somewhere inside a cycle
    edges = np.concatenate([[0.0], np.cumsum(durations)]) - offset
    t = np.arange(n, dtype=np.float64)
    k = np.searchsorted(edges, t, side="right") - 1
    phase = (t - edges[k]) / durations[k]
    content = _cycle_content(phase, directions)
    content /= np.sqrt(np.mean(np.sum((content - content.mean(0)) ** 2, axis=1)))
    content += content_drift * (t / n)[:, None] * directions[5]
    emb = 3.0 * _unit(rng, dim) + content + _noise(rng, n, dim, noise)
    starts = edges[(edges > 0) & (edges < n)] * STRIDE_S
    return emb.astype(np.float32), starts


WINDOW_S = 64 / 30  # one V-JEPA 2 window: 64 frames at 30 fps
SAMPLES_PER_S = 10  # content resolution of `phased_cycles` before it is pooled into windows


def _pooled_windows(samples: np.ndarray, n: int) -> np.ndarray:
    """[>= (n - 1) * 10 + 21, D] content at 10 samples/s -> [n, D]: the mean over each 2.13 s window, one
    window a second (the encoder's 64-frame windows at a 1 s stride)."""
    per_window = round(WINDOW_S * SAMPLES_PER_S)
    sums = np.concatenate([np.zeros((1, samples.shape[1])), np.cumsum(samples, axis=0)])
    first = np.arange(n) * SAMPLES_PER_S
    return (sums[first + per_window] - sums[first]) / per_window


def activity_sequence(
    n: int, dim: int, n_activities: int, noise: float, seed: int, min_s: float = 5.0, max_s: float = 40.0
) -> np.ndarray:
    """No cycle: activities drawn at random (with repeats) from a pool of `n_activities`, each lasting
    U(min_s, max_s) seconds, each a posture with a slow motion inside it (as `phased_cycles`' sub-actions),
    pooled into windows the same way. Work without a rhythm (maintenance, setting up), which must get no
    period however much its activities recur."""
    rng = np.random.default_rng(seed)
    prototypes = np.stack([_unit(rng, dim) for _ in range(n_activities)])
    motions = np.stack([_unit(rng, dim) for _ in range(n_activities)]) * 0.35
    n_samples = (n - 1) * SAMPLES_PER_S + round(WINDOW_S * SAMPLES_PER_S)
    content, total = [], 0
    while total < n_samples:
        which, count = int(rng.integers(n_activities)), round(rng.uniform(min_s, max_s) * SAMPLES_PER_S)
        tau = np.linspace(0, 1, count, endpoint=False)[:, None]
        content.append(prototypes[which] + (2 * tau - 1) * motions[which])
        total += count
    emb = 3.0 * _unit(rng, dim) + _pooled_windows(np.concatenate(content), n) + _noise(rng, n, dim, noise)
    return emb.astype(np.float32)


def _wander(
    tau_0: float, count: int, dim: int, size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A held stretch that keeps moving, `count` samples: (tau [count, 1], its point in the sub-action's
    motion, a random walk from tau_0 reflected into [0, 1] that covers ~`size` of the motion per 10 s;
    away [count, dim], off the sub-action's path: a slow random walk from the path rescaled to RMS norm
    `size`, plus a jitter of norm `size` that changes every second (hands moving at ~1 Hz: the 2.13 s
    pooling only halves it, where per-sample jitter would average out))."""
    steps = rng.standard_normal(count) * size / np.sqrt(10 * SAMPLES_PER_S)
    tau = np.abs(tau_0 + np.cumsum(steps))
    tau = 1 - np.abs(1 - np.mod(tau, 2))  # reflected into [0, 1]
    walk = random_walk(count, dim, 1.0, rng)
    walk *= size / max(float(np.sqrt(np.mean(np.sum(walk**2, axis=1)))), 1e-12)
    jitter = np.repeat(_noise(rng, -(-count // SAMPLES_PER_S), dim, size), SAMPLES_PER_S, axis=0)[:count]
    return tau[:, None], walk + jitter


def phased_cycles(
    n: int,
    dim: int,
    period_windows: float,
    jitter: float,
    noise: float,
    seed: int,
    n_phases: int = 3,
    holds: Sequence[tuple[float, float]] = (),
    hold_wander: float = 0.0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cycles made of `n_phases` discrete sub-actions (pick, press, place...), as work cycles are: each
    sub-action is its own posture (a unit prototype) with a slow motion inside it, so every sub-action
    change is as abrupt as a cycle start. Cycle lengths vary by U(+-jitter); each sub-action's share of
    its cycle by +-20% more. The content is made at 10 samples/s and mean-pooled over 2.13 s windows
    every second (64 frames at 30 fps, 1 s stride), like the encoder's windows.

    Returns (emb [n, dim], phase_starts_s): for each sub-action q, the times [K_q] it begins, in
    window-start time (the moment the content changes less half a window: the window that straddles a
    change starts ~1 s before it). Which sub-action opens the cycle is a convention the content does not
    show, so a cycle start is right if it is any one sub-action's, consistently: score against each
    phase_starts_s[q] and keep the best.

    holds: (at_s, extra_s) pairs, a jam: the sub-action in progress at clip time at_s freezes there (its
    posture and the point its motion had reached) for extra_s seconds, then goes on; every later cycle
    starts extra_s later. The content never leaves what a normal cycle shows: only its duration is odd.

    hold_wander: a jam whose content keeps moving (the worker fiddles with the stuck part): 0 (default) is
    the exact freeze above; > 0, the held stretch's point in the sub-action's motion wanders back and forth
    from where it stopped, and the content leaves the sub-action's path by a slow random walk plus
    jitter, each of RMS norm `hold_wander` (`_wander`). Below ~0.7 the held content stays closer to its own
    sub-action (prototypes are unit vectors, ~1.41 apart) than to any other.
    """
    rng = np.random.default_rng(seed)
    wander_rng = np.random.default_rng(seed + 30_000)  # its own stream: hold_wander=0 draws the same clip
    prototypes = np.stack([_unit(rng, dim) for _ in range(n_phases)])
    motions = np.stack([_unit(rng, dim) for _ in range(n_phases)]) * 0.35
    shares = rng.uniform(0.5, 1.5, n_phases)
    per_window = round(WINDOW_S * SAMPLES_PER_S)
    n_samples = (n - 1) * SAMPLES_PER_S + per_window
    durations = cycle_durations(n, period_windows, jitter, 0.0, rng) * SAMPLES_PER_S  # in samples
    offset = rng.uniform(0, durations[0])  # the clip starts somewhere inside a cycle
    content: list[np.ndarray] = []
    begins: list[list[float]] = [[] for _ in range(n_phases)]
    t = 0.0  # samples from the first cycle's start; the clip starts at `offset`
    for length in durations:
        if t - offset >= n_samples:
            break
        split = shares * (1 + 0.2 * rng.uniform(-1, 1, n_phases))
        for phase, part in enumerate(split / split.sum() * length):
            begins[phase].append(t - offset)
            count = max(1, round(t + part) - round(t))
            tau = np.linspace(0, 1, count, endpoint=False)[:, None]
            away = np.zeros((count, dim))  # off the sub-action's path: only in a wandering hold
            for at_s, extra_s in holds:  # freeze at the sample the jam falls on
                at = round(at_s * SAMPLES_PER_S) + round(offset) - round(t)  # sample within `tau`
                if 0 <= at < len(tau):
                    held = round(extra_s * SAMPLES_PER_S)
                    frozen = np.full((held, 1), tau[at, 0])
                    off = np.zeros((held, dim))
                    if hold_wander > 0:
                        frozen, off = _wander(frozen[0, 0], held, dim, hold_wander, wander_rng)
                    tau = np.concatenate([tau[:at], frozen, tau[at:]])
                    away = np.concatenate([away[:at], off, away[at:]])
                    t += len(frozen)
            content.append(prototypes[phase] + (2 * tau - 1) * motions[phase] + away)
            t += part
    pooled = _pooled_windows(np.concatenate(content)[round(offset) :], n)
    emb = 3.0 * _unit(rng, dim) + pooled + _noise(rng, n, dim, noise)
    phase_starts_s = []
    for times in begins:
        starts_s = (np.array(times) / SAMPLES_PER_S - WINDOW_S / 2) * STRIDE_S
        phase_starts_s.append(starts_s[(starts_s > 0) & (starts_s < n - 1)])
    return emb.astype(np.float32), phase_starts_s


def two_type_cycles(
    n: int,
    dim: int,
    noise: float,
    seed: int,
    fraction_b: float = 0.5,
    period_a: float = 20.0,
    period_b: float = 30.0,
    phases_a: int = 3,
    phases_b: int = 4,
    jitter: float = 0.15,
    shared: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two kinds of work cycle in random order, as on a line that makes two variants, or assembles and
    now and then restocks: each cycle is of type B with probability `fraction_b`, else of type A. Type A
    is `phases_a` sub-actions lasting `period_a` windows in all, type B `phases_b` other sub-actions lasting
    `period_b`; each cycle's length varies by U(+-jitter), each sub-action's share of it by +-20% (as in
    `phased_cycles`, whose sub-action content and 2.13 s window pooling this shares). shared: B's second
    sub-action is A's second (the same posture and motion: both variants are pressed the same way).

    Returns (emb [n, dim], sub_starts_s [K, max(phases_a, phases_b)], type_b [K] bool) for the K cycles
    that overlap the clip: when each sub-action of each cycle begins, in window-start time as in
    `phased_cycles` (NaN outside the clip and past the cycle's own sub-actions); column 0 holds the cycle
    starts. Which sub-action opens a cycle is a convention the content does not show: a start is right if
    it is one sub-action's of each type, consistently (score against every pair and keep the best).
    type_b: whether the cycle is of type B."""
    rng = np.random.default_rng(seed)
    kinds = ((phases_a, period_a), (phases_b, period_b))
    prototypes = [np.stack([_unit(rng, dim) for _ in range(q)]) for q, _ in kinds]
    motions = [np.stack([_unit(rng, dim) for _ in range(q)]) * 0.35 for q, _ in kinds]
    if shared:
        prototypes[1][1], motions[1][1] = prototypes[0][1], motions[0][1]
    shares = [rng.uniform(0.5, 1.5, q) for q, _ in kinds]
    n_samples = (n - 1) * SAMPLES_PER_S + round(WINDOW_S * SAMPLES_PER_S)
    offset = rng.uniform(0, period_a) * SAMPLES_PER_S  # the clip starts somewhere inside a cycle
    content: list[np.ndarray] = []
    begins: list[list[float]] = []
    is_b: list[bool] = []
    t = 0.0  # samples from the first cycle's start
    while t - offset < n_samples:
        kind = int(rng.uniform() < fraction_b)
        q, period = kinds[kind]
        length = period * (1 + jitter * rng.uniform(-1, 1)) * SAMPLES_PER_S
        is_b.append(kind == 1)
        begins.append([np.nan] * max(phases_a, phases_b))
        split = shares[kind] * (1 + 0.2 * rng.uniform(-1, 1, q))
        for phase, part in enumerate(split / split.sum() * length):
            begins[-1][phase] = t - offset
            count = max(1, round(t + part) - round(t))
            tau = np.linspace(0, 1, count, endpoint=False)[:, None]
            content.append(prototypes[kind][phase] + (2 * tau - 1) * motions[kind][phase])
            t += part
    pooled = _pooled_windows(np.concatenate(content)[round(offset) :], n)
    emb = 3.0 * _unit(rng, dim) + pooled + _noise(rng, n, dim, noise)
    starts_s = (np.array(begins) / SAMPLES_PER_S - WINDOW_S / 2) * STRIDE_S
    starts_s[~((starts_s > 0) & (starts_s < n - 1))] = np.nan
    overlap = ~np.all(np.isnan(starts_s), axis=1)
    return emb.astype(np.float32), starts_s[overlap], np.array(is_b)[overlap]


def with_recurring_anomaly(
    emb: np.ndarray,
    starts: list[int],
    length: int,
    seed: int,
    noise: float = 0.5,
    n_parts: int = 1,
    distance: float = 1.5,
) -> np.ndarray:
    """Insert one anomalous activity (alike itself, unlike the rest: a slow wander far from the clip's
    content) at windows [s, s + length) for each s in starts; each occurrence has its own noise.

    n_parts > 1: the event is that many distinct novel sub-activities in a row (a conversation, then a
    rework, then a search...), each its own direction and wander, length / n_parts windows each (the last
    takes the remainder); every occurrence repeats the same sequence. distance: how far each part's
    content sits from the clip's mean, in units of the clip's median distance to it (1.5: far from
    everything; 0.5: a new content no further out than the clip's own)."""
    rng = np.random.default_rng(seed + 20_000)
    out = emb.copy()
    dim = emb.shape[1]
    mean = emb.mean(axis=0)
    scale = float(np.median(np.linalg.norm(emb - mean, axis=1)))
    cuts = np.linspace(0, length, n_parts + 1).round().astype(int)
    activity = np.concatenate(
        [_unit(rng, dim) * distance + random_walk(b - a, dim, 0.08, rng) for a, b in itertools.pairwise(cuts)]
    )
    for start in starts:
        out[start : start + length] = mean + scale * (activity + _noise(rng, length, dim, noise))
    return out.astype(np.float32)


def task_change(
    n: int, dim: int, change_at: int, period_a: float, period_b: float, jitter: float, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cycles of task A until window change_at, then cycles of another task B to the end.
    Returns (emb [n, dim], starts_s of both tasks' cycles)."""
    emb_a, starts_a = jittered_cycles(change_at, dim, period_a, jitter, noise, seed)
    emb_b, starts_b = jittered_cycles(n - change_at, dim, period_b, jitter, noise, seed + 1)
    # the same scene (offset), another activity: other content, its mean moved by norm 1.5
    rng = np.random.default_rng(seed + 2)
    emb_b = emb_b - emb_b.mean(0) + emb_a.mean(0) + 1.5 * _unit(rng, dim).astype(np.float32)
    return np.concatenate([emb_a, emb_b]), np.concatenate([starts_a, change_at * STRIDE_S + starts_b])


def span_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans [start, end): how a found span is scored against truth."""
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))
