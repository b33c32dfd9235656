"""Helpers shared by the tests: small generated videos and span overlap. No torch here."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from egoclean.attempts import crash_guard
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


def write_test_clip(
    path: Path, n_frames: int, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT, codec: str = "h264"
) -> Path:
    """An H.264 (or `codec`) clip of `n_frames` moving frames at 30 fps (pts in 1/30 s ticks)."""
    rate, time_base = Fraction(CLIP_FPS), Fraction(1, CLIP_FPS)
    with VideoWriter(path, width, height, rate=rate, time_base=time_base, codec=codec) as writer:
        for index in range(n_frames):
            writer.write(rgb_to_yuv420p(moving_frame(index, width, height)), pts=index)
    return path


def write_still_image(path: Path, image_type: str = ".jpg") -> Path:
    """One moving_frame encoded as a still image (".jpg", ".png") under `path`, whatever its suffix: a
    picture renamed .mp4."""
    ok, data = cv2.imencode(image_type, moving_frame(0, CLIP_WIDTH, CLIP_HEIGHT))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def x264_settings(path: Path) -> str:
    """The settings string x264 writes into its stream ("... threads=3 ... sliced_threads=0 ...")."""
    return path.read_bytes().split(b"x264 - core", 1)[1].split(b"\x00", 1)[0].decode()


def line_centres(gray: np.ndarray, p0: np.ndarray, p1: np.ndarray, half_window: int = 4) -> np.ndarray:
    """Sub-pixel centres of a dark line near the predicted segment p0-p1: darkness-weighted centroids
    of profiles taken across it."""
    direction = (p1 - p0) / np.linalg.norm(p1 - p0)
    normal = np.array([-direction[1], direction[0]])
    offsets = np.arange(-half_window, half_window + 1, dtype=np.float32)
    centres = []
    for s in np.arange(10, np.linalg.norm(p1 - p0) - 10, 3.0):
        base = p0 + s * direction
        pts = base[None, :] + offsets[:, None] * normal[None, :]
        if not (
            (pts >= 2).all()
            and (pts[:, 0] < gray.shape[1] - 2).all()
            and (pts[:, 1] < gray.shape[0] - 2).all()
        ):
            continue
        profile = cv2.remap(
            gray, pts[:, 0:1].astype(np.float32), pts[:, 1:2].astype(np.float32), cv2.INTER_LINEAR
        )[:, 0]
        darkness = np.clip(np.median(profile) - profile, 0, None)
        if darkness.sum() < 40:
            continue  # occluded here
        centres.append(base + normal * (darkness * offsets).sum() / darkness.sum())
    return np.array(centres)


def fit_line_rms(points: np.ndarray) -> float:
    centred = points - points.mean(0)
    return float(np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(points)))


def visible_line_centres(gray: np.ndarray, camera, lines_3d, min_points: int = 15):
    """For each known straight 3D line that is visible enough in the rectified `gray` frame: the predicted
    end points (p0, p1) through the written pinhole `camera` and the detected centres along it."""
    for a, b in lines_3d:
        p0, p1 = camera.project(np.array([a, b], dtype=float))
        centres = line_centres(gray, p0, p1)
        if len(centres) >= min_points:
            yield (a, b), p0, p1, centres


def sample_hub(tmp_path_factory, spec, name: str = "hub") -> Path:
    """A fresh folder laid out like the Hub, holding the synthetic worker `spec` (fisheye.sample)."""
    from fisheye.sample import write_sample_hub

    root = tmp_path_factory.mktemp(name)
    write_sample_hub(root, spec)
    return root


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: os.kill(pid, 0) raises ProcessLookupError."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def killed_writers_partial(final: Path, host: str | None = None) -> Path:
    """A temporary file of `final` as partial_path names it, left by a writer that was killed: on `host`
    (default this one), or in the old host-less form when host is ''."""
    from egoclean.files import writer_host

    host = writer_host() if host is None else host
    writer = f"{host}-{dead_pid()}" if host else str(dead_pid())
    path = final.with_name(f"{final.stem}.partial-{writer}-0badf00d{final.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half written")
    return path


def _die_inside(mark: Path, limit: int) -> None:
    with crash_guard(mark, limit, "clip 3"):
        os._exit(9)  # as the OOM killer or a segfault would end it: no finally, no exit handlers


def attempt_in_a_process_that_dies(mark: Path, limit: int) -> int:
    """One attempt at the item `mark` counts (egoclean.attempts), in a process that dies inside it; returns
    that process's exit code (9)."""
    process = multiprocessing.get_context("fork").Process(target=_die_inside, args=(mark, limit))
    process.start()
    process.join(30)
    return process.exitcode if process.exitcode is not None else -1
