"""Signals of a window-embedding sequence: unit rows, consecutive distance, self-similarity,
(masked) autocorrelation, change score, robust statistics. Definitions: docs/METHODS.md section 1.

emb [N, D] one embedding per window; u = emb / ||emb|| row-wise.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy.signal import find_peaks

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution = 1.4826 * its median absolute deviation
SCALE_PAIRS = 20_000  # window pairs behind the typical dissimilarity delta (exact below this many)


def normalize_rows(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, D] float32, each row scaled to unit L2 norm. Rows must be finite and non-zero."""
    emb = np.asarray(emb, dtype=np.float32)
    if not np.all(np.isfinite(emb)):
        raise ValueError("an embedding row is not finite (inf or NaN); cosine similarity is undefined")
    # each row divided by its largest |value| first: the sum of squares of values near 1e19 would
    # overflow float32 and read as an infinite norm
    peak = np.abs(emb).max(axis=1, keepdims=True)
    if np.any(peak == 0):
        raise ValueError("an embedding row has zero norm; cosine similarity is undefined")
    scaled = emb / peak
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)


def like_threshold(best: np.ndarray, mean_similarity: np.ndarray, factor: float) -> np.ndarray:
    """The like relation of the recurrence rule (docs/METHODS.md section 5b), one definition for every rule
    that asks whether content comes back: window j is like window i when S[i, j] >= this, with best = b_i,
    i's best similarity among the candidates, mean_similarity = m_i = u_i . mean(u): b_i - factor (b_i - m_i),
    a threshold relative to the window's own scale (a noisier window is less similar to everything)."""
    return best - factor * (best - mean_similarity)


def consecutive_distance(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N-1]: d[i] = 1 - cos(e_i, e_{i+1}), attributed to ts[i+1]."""
    u = normalize_rows(emb)
    return (1.0 - np.einsum("ij,ij->i", u[:-1], u[1:])).astype(np.float64)


def self_similarity(emb: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, N] float32: S[i, j] = cos(e_i, e_j)."""
    u = normalize_rows(emb)
    return u @ u.T


def lagged_dot_sums(x: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D] -> [max_lag+1]: sum_{i<N-k} x_i . x_{i+k}, by zero-padded FFT along time, dims in chunks."""
    n = len(x)
    n_fft = scipy.fft.next_fast_len(n + max_lag + 1, real=True)
    power = np.zeros(n_fft // 2 + 1, dtype=np.float64)
    for start in range(0, x.shape[1], 256):  # chunks bound the complex spectrum's memory
        spectrum = scipy.fft.rfft(x[:, start : start + 256], n=n_fft, axis=0)
        power += (spectrum.real**2 + spectrum.imag**2).sum(axis=1, dtype=np.float64)
    return scipy.fft.irfft(power, n=n_fft)[: max_lag + 1]


def autocorr_centred(x: np.ndarray, max_lag: int, mask: np.ndarray | None = None) -> np.ndarray:
    """[N, D] centred rows -> [max_lag+1]: r (mask None) or r_m over the rows where mask [N] bool is True.

    With a mask, x must be centred on the mean of the masked-in rows; the other rows are ignored.
    """
    if mask is None:
        sums = lagged_dot_sums(x, max_lag)
        counts = len(x) - np.arange(max_lag + 1, dtype=np.float64)
    else:
        weight = mask.astype(np.float64)
        sums = lagged_dot_sums(x * weight[:, None].astype(x.dtype), max_lag)
        counts = np.rint(lagged_dot_sums(weight[:, None], max_lag))  # n_k, exact integers after rounding
    if counts[0] == 0 or sums[0] <= 1e-12 * counts[0]:  # every window identical: no variation, no structure
        r = np.zeros(max_lag + 1)
        r[0] = 1.0
        return r
    mean_products = np.divide(sums, counts, out=np.zeros(max_lag + 1), where=counts > 0)
    return mean_products / mean_products[0]


def centre(u: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """u minus the mean of its rows (of the rows where mask is True, when given)."""
    return u - (u.mean(axis=0) if mask is None else u[mask].mean(axis=0))


def autocorrelation(emb: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D] -> [max_lag+1]: r[k] = mean_i x_i . x_{i+k} / mean_i x_i . x_i, x = u - mean(u); r[0] = 1."""
    if not 0 <= max_lag < len(emb):
        raise ValueError(f"max_lag must be in [0, {len(emb) - 1}], got {max_lag}")
    u = normalize_rows(emb)
    return autocorr_centred(centre(u, None), max_lag)


def masked_autocorrelation(emb: np.ndarray, mask: np.ndarray, max_lag: int) -> np.ndarray:
    """[N, D], mask [N] bool (True = normal window) -> [max_lag+1] r_m (docs/METHODS.md); r_m[0] = 1.

    r_m[k] = mean over pairs (i, i+k) of normal windows of x_i . x_{i+k}, divided by the same at k = 0,
    x = u - mean of u over the normal windows; 0 where no such pair exists.
    """
    mask = np.asarray(mask, dtype=bool)
    if not 0 <= max_lag < len(emb):
        raise ValueError(f"max_lag must be in [0, {len(emb) - 1}], got {max_lag}")
    if mask.shape != (len(emb),) or not mask.any():
        raise ValueError(f"mask must be a boolean [{len(emb)}] array with at least one True")
    u = normalize_rows(emb)
    return autocorr_centred(centre(u, mask), max_lag, mask)


def typical_dissimilarity(u: np.ndarray, seed: int, max_pairs: int | None = None) -> float:
    """delta = median over pairs i < j of 1 - u_i . u_j; u [N, D] unit rows.

    Exact over all pairs when there are at most `max_pairs` (default SCALE_PAIRS) of them, else the median
    of a seeded random sample of that many pairs (i != j): no N x N matrix.
    """
    n, max_pairs = len(u), SCALE_PAIRS if max_pairs is None else max_pairs
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 <= max_pairs:
        similarity = (u @ u.T)[np.triu_indices(n, 1)]
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, max_pairs)
        j = (i + rng.integers(1, n, max_pairs)) % n
        similarity = np.concatenate(
            [np.einsum("ij,ij->i", u[i[c : c + 2048]], u[j[c : c + 2048]]) for c in range(0, max_pairs, 2048)]
        )
    return float(np.median(1.0 - similarity.astype(np.float64)))


def change_score(emb: np.ndarray, halfwidth_windows: int) -> np.ndarray:
    """[N, D] -> [N-1]: c[i] = 1 - cos(sum u[i-w+1..i], sum u[i+1..i+w]); NaN where a side is short."""
    u = normalize_rows(emb)
    n, w = len(u), max(int(halfwidth_windows), 1)
    csum = np.concatenate([np.zeros((1, u.shape[1])), np.cumsum(u, axis=0, dtype=np.float64)])
    score = np.full(n - 1, np.nan)
    split = np.arange(w, n - w + 1)  # first window of the right-hand side
    if len(split):
        left, right = csum[split] - csum[split - w], csum[split + w] - csum[split]
        cos = np.einsum("ij,ij->i", left, right) / (
            np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
        )
        score[split - 1] = 1.0 - cos
    return score


def robust_location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and sigma_MAD = 1.4826 * median |v - median| of the finite values (scale >= tiny)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    median = float(np.median(finite))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - median)))
    if sigma <= 0:  # more than half the values identical: fall back to the standard deviation
        sigma = float(np.std(finite))
    return median, max(sigma, 1e-12)


def robust_peaks(
    signal: np.ndarray, robust_z: float, min_gap_windows: int, min_rise: float = 0.0
) -> tuple[np.ndarray, float]:
    """Peaks of `signal` above median + max(robust_z * sigma_MAD, min_rise), at least min_gap apart;
    (indices, threshold)."""
    median, sigma = robust_location_scale(signal)
    threshold = median + max(robust_z * sigma, min_rise)
    finite = np.isfinite(signal)
    peaks, _ = find_peaks(np.where(finite, signal, -np.inf), height=threshold)
    # the first or last defined sample is an edge, as the array's ends are to find_peaks: a score that
    # only falls from where it is first defined has no peak there
    peaks = peaks[finite[peaks - 1] & finite[peaks + 1]]
    kept: list[int] = []  # then, highest first, no two peaks closer than min_gap (find_peaks' distance)
    for peak in sorted(peaks, key=lambda i: -signal[i]):
        if all(abs(peak - other) >= max(int(min_gap_windows), 1) for other in kept):
            kept.append(int(peak))
    return np.array(sorted(kept), dtype=np.int64), threshold


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] index pairs of the runs of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def stride_of(ts: np.ndarray) -> float:
    return float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0


def similarity_preview(u: np.ndarray, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-averaged similarity: mean of S over bins of k windows = (bin means of u) @ (bin means)^T."""
    k = max(1, math.ceil(len(u) / max_windows))
    starts = np.arange(0, len(u), k)
    means = (
        np.add.reduceat(u.astype(np.float64), starts, axis=0) / np.diff(np.append(starts, len(u)))[:, None]
    )
    return (means @ means.T).astype(np.float32), starts
