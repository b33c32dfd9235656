"""Embedding sequences with known temporal structure, for tests and benchmarks.

Each window's embedding = a large common offset (real embeddings of one clip are all alike) + a structured
part of norm ~1 + isotropic Gaussian noise of total norm `noise`. Windows are 1 s apart.
"""

from __future__ import annotations

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
