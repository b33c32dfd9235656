"""Phase 1 on a node shared by many rectifiers: how many codec threads each one should run.

    python bench/bench_rectifiers_per_node.py [--seconds 10] [--repeats 3] [--contents real]

The Ray engine runs one rectify task per reserved CPU (`--rectify-cpus`, default 1), so a node runs as many
rectifiers as it has cores. Left to itself, FFmpeg sizes each one's codecs for the whole node: x264 takes
1.5 threads per core and the HEVC decoder and cv2's remap one per core, in every rectifier at once.
`--codec-threads N` gives each of the three N threads. Here `os.cpu_count()`
rectifiers run at once on the same 1080p clip (each in its own process, as Ray's workers are), with:
  - threads 1: what a 1-CPU Ray task now gets (`--codec-threads` = `--rectify-cpus`)
  - threads auto: FFmpeg's choice for this machine's cores
  - threads 24: FFmpeg's choice on a 16-core node (1.5 x 16), forced here: the same threads per core as
    16 rectifiers on 16 cores
and, as the peer, one rectifier alone with automatic threads (the local engine's way: one clip at a time,
the whole machine). Each row reports the clips' total frames per second, the cores kept busy and the peak
memory (VmHWM) of one rectifier. Interleaved `--repeats` times; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench_rectify import OUT, RECTIFY_CHILD, ROOT, Run, run_children
from footage import CLIPS, FPS, H, W

from egoclean.video import probe

MODES = {"threads 1": (None, 1), "threads auto": (None, 0), "threads 24": (None, 24), "alone, auto": (1, 0)}


def run_at_once(clip: Path, copies: int, threads: int) -> Run:
    """`copies` rectifiers of `clip` at once: the wall time, their CPU time and the largest peak memory."""
    child = [sys.executable, "-c", RECTIFY_CHILD, str(ROOT), str(clip)]
    return run_children([[*child, str(OUT / f"node{i}.mp4"), str(threads)] for i in range(copies)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contents", default="real", choices=list(CLIPS))
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    clip = CLIPS[args.contents](OUT / f"{args.contents}_{W}x{H}_{args.seconds:g}s.mp4", args.seconds)
    frames = probe(clip).n_frames
    cores = os.cpu_count() or 1
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):  # interleaved, so load changes on this shared machine hit all alike
        for mode, (copies, threads) in MODES.items():
            runs[mode].append(run_at_once(clip, copies or cores, threads))
            print(mode, runs[mode][-1], flush=True)
    lines = [
        f"### Rectifiers per node: {cores} at once, one per core, {W}x{H} {FPS} fps {args.contents} clip "
        f"({frames} frames), libx264 veryfast CRF 18",
        "",
        f"Command: `{' '.join(['python bench/bench_rectifiers_per_node.py', *sys.argv[1:]])}`; medians of "
        f"{args.repeats}.",
        "",
        "| rectifiers x codec threads | total fps | cores busy | peak MB per rectifier |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode, (copies, _threads) in MODES.items():
        n = copies or cores
        wall = statistics.median(r.wall_s for r in runs[mode])
        cpu = statistics.median(r.cpu_s for r in runs[mode])
        peak = statistics.median(r.peak_mb or 0.0 for r in runs[mode])
        lines.append(f"| {n} x {mode} | {n * frames / wall:.1f} | {cpu / wall:.2f} | {peak:.0f} |")
    print("\n".join([*lines, ""]))


if __name__ == "__main__":
    main()
