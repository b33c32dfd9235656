"""Sliding windows over a clip's frames: which frames each window covers, and how many windows fit.

Definitions (all indices count decoded frames from 0):
    span          = (window - 1) * frame_step + 1            frames from a window's first to its last frame
    window k      starts at frame k * stride_frames, covers frames start + i * frame_step, i = 0..window-1
    N (windows)   = floor((n_frames - span) / stride_frames) + 1   if n_frames >= span, else 0
    dropped tail  = n_frames - (start of window N-1 + span)         frames after the last full window

A tail too short for a full window is dropped, never padded. Pure functions, no I/O.
"""

from __future__ import annotations

import numpy as np


def span_frames(window: int, frame_step: int = 1) -> int:
    """Frames from a window's first frame to its last, both included: (window - 1) * frame_step + 1."""
    _check(window=window, stride_frames=1, frame_step=frame_step)
    return (window - 1) * frame_step + 1


def stride_frames_for(stride_s: float, fps: float) -> int:
    """Stride in frames for a stride in seconds: round(stride_s * fps); refuses strides under one frame."""
    stride_frames = round(stride_s * fps)
    if stride_frames < 1:
        raise ValueError(f"stride {stride_s} s at {fps:.3f} fps is under one frame; use a longer stride")
    return stride_frames


def window_count(n_frames: int, window: int, stride_frames: int, frame_step: int = 1) -> int:
    """N = floor((n_frames - span) / stride_frames) + 1 if n_frames >= span, else 0."""
    _check(window=window, stride_frames=stride_frames, frame_step=frame_step)
    span = span_frames(window, frame_step)
    if n_frames < span:
        return 0
    return (n_frames - span) // stride_frames + 1


def window_starts(n_frames: int, window: int, stride_frames: int, frame_step: int = 1) -> np.ndarray:
    """First frame index of every full window: k * stride_frames for k = 0..N-1. int64 [N]."""
    n_windows = window_count(n_frames, window, stride_frames, frame_step)
    return np.arange(n_windows, dtype=np.int64) * stride_frames


def window_frame_indices(start: int, window: int, frame_step: int = 1) -> np.ndarray:
    """Frames of the window starting at `start`: start + i * frame_step, i = 0..window-1. int64 [window]."""
    return start + np.arange(window, dtype=np.int64) * frame_step


def dropped_tail_frames(n_frames: int, window: int, stride_frames: int, frame_step: int = 1) -> int:
    """Frames after the end of the last full window (all n_frames when no window fits)."""
    n_windows = window_count(n_frames, window, stride_frames, frame_step)
    if n_windows == 0:
        return n_frames
    return n_frames - ((n_windows - 1) * stride_frames + span_frames(window, frame_step))


def window_ending_at(index: int, window: int, stride_frames: int, frame_step: int = 1) -> int | None:
    """The window whose last frame is `index` (k with k * stride_frames + span - 1 == index), or None."""
    offset = index - (span_frames(window, frame_step) - 1)
    if offset < 0 or offset % stride_frames:
        return None
    return offset // stride_frames


def frame_is_needed(index: int, window: int, stride_frames: int, frame_step: int = 1) -> bool:
    """Whether frame `index` belongs to some window (any k >= 0; the clip's end is not known here).

    Every frame is needed when frame_step == 1 and stride_frames <= span; with frame_step > 1 the frames
    between sampled ones can be skipped before preprocessing.
    """
    span = span_frames(window, frame_step)
    first_k = max(0, -(-(index - span + 1) // stride_frames))  # ceil((index - span + 1) / stride_frames)
    for k in range(first_k, index // stride_frames + 1):
        if (index - k * stride_frames) % frame_step == 0:
            return True
    return False


def _check(window: int, stride_frames: int, frame_step: int) -> None:
    if window < 1 or stride_frames < 1 or frame_step < 1:
        raise ValueError(
            f"window ({window}), stride_frames ({stride_frames}), frame_step ({frame_step}): must be >= 1"
        )
