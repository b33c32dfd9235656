"""Benchmark of VJEPA/structure.py: one 1,200 x 1024 clip (time), and a 20,000-window joint analysis
(10 clips of 2,000 windows, D=1024; time and peak memory, measured in a fresh subprocess).

    python bench/bench_analyze.py            # prints a markdown table and the command
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from VJEPA import synthetic as se
from VJEPA.structure import analyze, analyze_joint

REPO = Path(__file__).resolve().parents[1]

CLIP_WINDOWS, DIM = 1200, 1024
JOINT_CLIPS, JOINT_WINDOWS = 10, 2000


def bench_clip(repeats: int) -> tuple[float, float]:
    """(median, min) seconds of analyze() on a periodic 1,200 x 1024 clip with an anomaly."""
    emb = se.with_anomaly(se.periodic(CLIP_WINDOWS, DIM, 17.3, 1.5, seed=0), 500, 15, seed=0)
    ts = se.timestamps(CLIP_WINDOWS)
    analyze(emb, ts)  # warm-up (imports, FFT plans)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyze(emb, ts)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def joint_child() -> None:
    """Run in a subprocess: the joint analysis; prints seconds and this process's peak RSS in MiB."""
    embs = [se.periodic(JOINT_WINDOWS, DIM, 11.0 + c, 1.5, seed=c) for c in range(JOINT_CLIPS)]
    tss = [se.timestamps(JOINT_WINDOWS)] * JOINT_CLIPS
    start = time.perf_counter()
    joint = analyze_joint(embs, tss)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"{seconds:.1f} {peak_mib:.0f} {len(joint.matches)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the single-clip analysis")
    parser.add_argument("--joint-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.joint_child:
        joint_child()
        return

    median_s, min_s = bench_clip(args.repeats)
    child = subprocess.run(
        [sys.executable, __file__, "--joint-child"], capture_output=True, text=True, check=True, cwd=REPO
    )
    joint_s, peak_mib, n_matches = child.stdout.split()
    print(f"Machine: {platform.processor() or platform.machine()}, python {platform.python_version()}\n")
    print("| case | size | result |")
    print("|---|---|---|")
    single = f"median {median_s:.2f} s (min {min_s:.2f} s, {args.repeats} runs)"
    size = f"{JOINT_CLIPS} clips x {JOINT_WINDOWS} = {JOINT_CLIPS * JOINT_WINDOWS} windows x {DIM}"
    joint = f"{joint_s} s, peak RSS {peak_mib} MiB (whole process, inputs included), {n_matches} matches"
    print(f"| single clip `analyze` | {CLIP_WINDOWS} x {DIM} | {single} |")
    print(f"| joint `analyze_joint` | {size} | {joint} |")
    print(f"\nCommand: `python bench/bench_analyze.py --repeats {args.repeats}`")


if __name__ == "__main__":
    main()
