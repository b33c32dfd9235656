"""Benchmark of the two engines (egoclean.engine) on one machine: the same 3 workers x 2 sample clips,
phase 1 (fetch, rectify) and phase 2 (tiny random-init V-JEPA 2, embed; then the analysis), local loop vs
Ray Data on a local cluster. Ray's start-up is timed apart and left out of its throughput.

    python bench/bench_scale.py                      # prints a markdown table and the command
    python bench/bench_scale.py --width 640 --seconds 4 --repeats 2 --cpus 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from egoclean.engine import ScaleSettings
from egoclean.scale import ScaleResult, run_scale
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from fisheye.settings import Phase1Settings
from VJEPA.settings import EncodeSettings

REPO = Path(__file__).resolve().parents[1]

WORKERS = (("factory_001", "worker_001"), ("factory_001", "worker_002"), ("factory_002", "worker_001"))


def make_hub(root: Path, width: int, seconds: float) -> None:
    clips = (SampleClip(1, seconds), SampleClip(2, seconds))
    for factory, worker in WORKERS:
        spec = SampleSpec(
            width, width * 9 // 16, clips=clips, clips_per_shard=1, factory=factory, worker=worker
        )
        write_sample_hub(root, spec)


def one_run(engine: str, hub: Path, out: Path, encode: EncodeSettings, cpus: int) -> ScaleResult:
    shutil.rmtree(out, ignore_errors=True)
    phase1 = Phase1Settings(clips="1,2", out=out, source=hub)  # default encoder: veryfast, CRF 18
    return run_scale(phase1, ScaleSettings(engine=engine, workers="all", max_fetch_concurrency=cpus), encode)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=640, help="clip width (16:9)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per clip (30 fps)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="Ray's num_cpus")
    args = parser.parse_args()

    import ray

    from VJEPA.tiny_model import save_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    make_hub(work / "hub", args.width, args.seconds)
    model = save_tiny_model(work / "model")
    encode = EncodeSettings(model=str(model), device="cpu", window=16, stride_s=0.5, batch_size=8)
    frames = len(WORKERS) * 2 * round(args.seconds * 30)

    start = time.perf_counter()
    os.environ["PYTHONPATH"] = str(REPO)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start

    results: dict[str, list[ScaleResult]] = {"local": [], "ray": []}
    for _ in range(args.repeats):
        for engine in ("local", "ray"):
            result = one_run(engine, work / "hub", work / f"out-{engine}", encode, args.cpus)
            assert not result.failures, result.failures
            results[engine].append(result)
    ray.shutdown()

    def clips_per_s(rs: list[ScaleResult]) -> float:
        return 6 / statistics.median(r.wall_s for r in rs)

    local_rate = clips_per_s(results["local"])
    print(f"Command: `python bench/bench_scale.py {' '.join(sys.argv[1:])}`")
    print(
        f"\n{len(WORKERS)} workers x 2 clips, {args.width}x{args.width * 9 // 16}, {args.seconds:g} s each "
        f"({frames} frames in all), H.265 in, libx264 veryfast CRF 18 out; tiny V-JEPA 2 (window 16, stride "
        f"0.5 s) on the CPU; {args.cpus} CPUs for Ray; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores.\n"
    )
    print(
        "| engine | wall per run (s) | clips/s | vs local | fetch busy (s) | rectify busy (s) "
        "| embed busy (s) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for engine, rs in results.items():
        busy = {k: statistics.median(r.busy_s[k] for r in rs) for k in ("fetch", "rectify", "embed")}
        rate = clips_per_s(rs)
        print(
            f"| {engine} | {', '.join(f'{r.wall_s:.1f}' for r in rs)} | {rate:.3f} "
            f"| {rate / local_rate:.2f}x | "
            f"{busy['fetch']:.1f} | {busy['rectify']:.1f} | {busy['embed']:.1f} |"
        )
    print(f"\nRay start-up (ray.init, num_cpus={args.cpus}): {startup:.1f} s, not counted above.")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
