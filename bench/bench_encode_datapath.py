"""Frames/s from an MP4 to batched, preprocessed V-JEPA 2 windows (the model replaced by a no-op).

    python bench/bench_encode_datapath.py            # renders bench/out/datapath_1080p.mp4 once, then times

Compares, in one run (median of 3 each):
    streaming   VJEPA.stream.iter_window_batches: every frame decoded and preprocessed once, ring buffer
    per-window  each window decoded on its own (seek to the keyframe before it, decode its span) and
                preprocessed on its own, so overlapping frames are decoded and preprocessed again
and profiles the stages of the streaming path: decode only (yuv420p), decode + rgb24 conversion,
resize/crop/normalise alone on frames already in memory.
Numbers are frames of the clip per second of wall time (a 20 s clip at 30 fps = 600 frames).
"""

from __future__ import annotations

import argparse
import statistics
import time
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import torch

from egoclean.video import VideoWriter, iter_frames, prefetch, probe
from VJEPA.preprocess import PreprocessSpec, preprocess_frames
from VJEPA.stream import PREPROCESS_CHUNK_FRAMES, iter_window_batches
from VJEPA.windows import stride_frames_for, window_starts

WIDTH, HEIGHT, FPS = 1920, 1080, 30
WINDOW, STRIDE_S, BATCH_SIZE = 64, 1.0, 8
SPEC = PreprocessSpec()  # ViT-L: crop 256, shortest edge 292


def render_clip(path: Path, seconds: float) -> Path:
    """Textured content that moves every frame (scrolling multi-scale pattern plus a sliding block)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : HEIGHT + 256, 0 : WIDTH + 512].astype(np.float32)
    texture = np.stack(
        [
            128 + 60 * np.sin(x / 37.0) + 40 * np.sin((x + y) / 9.0),
            128 + 60 * np.sin(y / 23.0) + 40 * np.cos((x - y) / 13.0),
            128 + 80 * np.sin((x * 0.7 + y * 1.3) / 51.0),
        ],
        axis=-1,
    )
    texture += rng.normal(0, 6, texture.shape[:2])[..., None]
    texture = np.clip(texture, 0, 255).astype(np.uint8)
    with VideoWriter(path, WIDTH, HEIGHT, rate=Fraction(FPS), time_base=Fraction(1, FPS)) as writer:
        for index in range(round(seconds * FPS)):
            dx, dy = (index * 5) % 512, (index * 2) % 256
            rgb = np.ascontiguousarray(texture[dy : dy + HEIGHT, dx : dx + WIDTH])
            left = (index * 23) % (WIDTH - 300)
            rgb[400:700, left : left + 300] = (230, 60, 40)
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
            writer.write(yuv, pts=index)
    return path


def run_streaming(path: Path, crop: str, decode_thread: bool = True) -> int:
    stride_frames = stride_frames_for(STRIDE_S, probe(path).fps)
    frames = prefetch(iter_frames(path)) if decode_thread else iter_frames(path)
    n_windows = 0
    for batch in iter_window_batches(frames, SPEC, WINDOW, stride_frames, 1, crop, BATCH_SIZE):
        n_windows += len(batch.start_indices)  # the model would run here
    return n_windows


def decode_window(path: Path, start: int, span: int) -> np.ndarray:
    """Baseline only: seek to the keyframe at or before `start`, decode frames start..start+span-1."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ticks_per_frame = 1 / (stream.time_base * stream.average_rate)
        container.seek(int(start * ticks_per_frame), stream=stream, backward=True)
        frames = []
        for frame in container.decode(stream):
            index = round(frame.pts / ticks_per_frame)
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == span:
                break
    return np.stack(frames)


def run_per_window(path: Path, crop: str) -> int:
    info = probe(path)
    stride_frames = stride_frames_for(STRIDE_S, info.fps)
    starts = window_starts(info.n_frames, WINDOW, stride_frames)
    batch = []
    for start in starts:
        video = torch.from_numpy(decode_window(path, int(start), WINDOW))
        batch.append(preprocess_frames(video, SPEC, crop).transpose(0, 1))  # [V, T, 3, crop, crop]
        if len(batch) == BATCH_SIZE:
            torch.stack(batch)  # the model would run here
            batch = []
    return len(starts)


def run_decode_only(path: Path, pixel_format: str) -> int:
    return sum(1 for _ in iter_frames(path, pixel_format=pixel_format))


def run_preprocess_only(frames: np.ndarray, crop: str) -> int:
    for i in range(0, len(frames), PREPROCESS_CHUNK_FRAMES):
        preprocess_frames(torch.from_numpy(frames[i : i + PREPROCESS_CHUNK_FRAMES]), SPEC, crop)
    return len(frames)


def median_fps(fn, n_frames: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_frames / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=__doc__
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length to render")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--crop", default="center", choices=["center", "three"])
    parser.add_argument("--clip", type=Path, default=Path(__file__).parent / "out" / "datapath_1080p.mp4")
    args = parser.parse_args()

    if not args.clip.exists():
        args.clip.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        render_clip(args.clip, args.seconds)
        print(f"rendered {args.clip} in {time.perf_counter() - t0:.1f} s")
    info = probe(args.clip)
    n_frames = info.n_frames
    print(
        f"clip {info.width}x{info.height} {info.codec} {n_frames} frames;",
        f"torch threads {torch.get_num_threads()}",
    )

    frames = np.stack([f.data for f in islice(iter_frames(args.clip), 64)])
    rows = [
        (
            "streaming (decode once)",
            median_fps(lambda: run_streaming(args.clip, args.crop), n_frames, args.repeats),
        ),
        (
            "streaming, no decode thread",
            median_fps(lambda: run_streaming(args.clip, args.crop, False), n_frames, args.repeats),
        ),
        (
            "per-window decode",
            median_fps(lambda: run_per_window(args.clip, args.crop), n_frames, args.repeats),
        ),
        (
            "stage: decode only (yuv420p)",
            median_fps(lambda: run_decode_only(args.clip, "yuv420p"), n_frames, 3),
        ),
        ("stage: decode + rgb24", median_fps(lambda: run_decode_only(args.clip, "rgb24"), n_frames, 3)),
        (
            "stage: preprocess only",
            median_fps(lambda: run_preprocess_only(frames, args.crop), len(frames), 3),
        ),
    ]
    print(
        f"\n| path ({args.crop} crop, window {WINDOW}, stride {STRIDE_S} s, batch {BATCH_SIZE}) | frames/s |"
    )
    print("|---|---:|")
    for name, fps in rows:
        print(f"| {name} | {fps:.0f} |")
    fps = dict(rows)
    print(f"\nstreaming / per-window: {fps['streaming (decode once)'] / fps['per-window decode']:.2f}x")


if __name__ == "__main__":
    main()
