"""Helpers shared by the tests: small generated videos and span overlap. No torch here."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from egoclean.video import VideoWriter

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS, CLIP_FRAMES = 320, 180, 30, 90


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def moving_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 [H, W, 3]: diagonal colour bands drifting right plus a bright square crossing the frame."""
    y, x = np.mgrid[0:height, 0:width]
    phase = index * 4
    rgb = np.stack(
        [
            (x + phase) * 3 % 256,
            (y * 2 + x // 2 + phase) % 256,
            ((x - y) * 5 + 2 * phase) % 256,
        ],
        axis=-1,
    ).astype(np.uint8)
    side = height // 4
    left = (index * 7) % (width - side)
    rgb[height // 3 : height // 3 + side, left : left + side] = (250, 240, 30)
    return rgb


def write_test_clip(path: Path, n_frames: int, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT) -> Path:
    """An H.264 clip of `n_frames` moving frames at 30 fps (pts in 1/30 s ticks)."""
    with VideoWriter(path, width, height, rate=Fraction(CLIP_FPS), time_base=Fraction(1, CLIP_FPS)) as writer:
        for index in range(n_frames):
            writer.write(rgb_to_yuv420p(moving_frame(index, width, height)), pts=index)
    return path


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans [start, end)."""
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))
