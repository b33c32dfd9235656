"""Window arithmetic against a brute-force enumeration of which windows fit in a clip."""

from __future__ import annotations

import numpy as np
import pytest

from VJEPA.windows import (
    dropped_tail_frames,
    frame_is_needed,
    span_frames,
    stride_frames_for,
    window_count,
    window_ending_at,
    window_frame_indices,
    window_starts,
)

CASES = [  # (n_frames, window, stride_frames, frame_step)
    (0, 64, 30, 1),
    (63, 64, 30, 1),
    (64, 64, 30, 1),
    (93, 64, 30, 1),
    (94, 64, 30, 1),
    (5400, 64, 30, 1),
    (200, 64, 30, 2),
    (127, 64, 30, 2),
    (300, 16, 7, 3),
    (17, 8, 1, 1),
    (40, 4, 10, 5),
]


def brute_force_windows(n_frames: int, window: int, stride_frames: int, frame_step: int) -> list[list[int]]:
    """Every window whose frames all exist, by trying every start on the stride grid."""
    windows = []
    for start in range(0, n_frames, stride_frames):
        frames = [start + i * frame_step for i in range(window)]
        if frames[-1] < n_frames:
            windows.append(frames)
    return windows


@pytest.mark.parametrize(("n_frames", "window", "stride_frames", "frame_step"), CASES)
def test_counts_starts_and_tail_match_brute_force(n_frames, window, stride_frames, frame_step):
    expected = brute_force_windows(n_frames, window, stride_frames, frame_step)
    starts = window_starts(n_frames, window, stride_frames, frame_step)
    assert window_count(n_frames, window, stride_frames, frame_step) == len(expected)
    assert starts.dtype == np.int64
    assert starts.tolist() == [w[0] for w in expected]
    for start, frames in zip(starts, expected, strict=True):
        assert window_frame_indices(int(start), window, frame_step).tolist() == frames
    last_used = expected[-1][-1] if expected else -1
    assert dropped_tail_frames(n_frames, window, stride_frames, frame_step) == n_frames - 1 - last_used


@pytest.mark.parametrize(("n_frames", "window", "stride_frames", "frame_step"), CASES)
def test_needed_frames_and_window_ends_match_brute_force(n_frames, window, stride_frames, frame_step):
    # Without the clip's end, a frame counts as needed if any window on the infinite stride grid uses it.
    grid = brute_force_windows(
        n_frames + window * frame_step + stride_frames, window, stride_frames, frame_step
    )
    used = {f for frames in grid for f in frames}
    ends = {frames[-1]: k for k, frames in enumerate(grid)}
    for index in range(n_frames):
        assert frame_is_needed(index, window, stride_frames, frame_step) == (index in used), index
        assert window_ending_at(index, window, stride_frames, frame_step) == ends.get(index), index


def test_span_and_too_short_clip():
    assert span_frames(64, 1) == 64
    assert span_frames(64, 2) == 127
    assert window_count(126, 64, 30, 2) == 0
    assert window_starts(10, 64, 30).shape == (0,)
    assert dropped_tail_frames(10, 64, 30) == 10


def test_stride_in_frames_rounds_and_refuses_zero():
    assert stride_frames_for(1.0, 30.0) == 30
    assert stride_frames_for(1.0, 29.97) == 30
    assert stride_frames_for(0.5, 25.0) == 12  # round half to even, as Python's round
    with pytest.raises(ValueError, match="under one frame"):
        stride_frames_for(0.01, 30.0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        window_count(100, 0, 30)
    with pytest.raises(ValueError):
        window_count(100, 64, 0)
    with pytest.raises(ValueError):
        window_starts(100, 64, 30, frame_step=0)
