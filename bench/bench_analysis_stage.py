"""The analysis stage of a many-worker run: one worker after another on the driver, against Ray tasks.

    .venv/bin/python bench/bench_analysis_stage.py [--workers 4] [--clips 4] [--windows 1200] [--cpus 2]

After the embeddings, a run with both phases analyses each worker folder: each clip and all of them
together (VJEPA.analyze.analyze_clips_jointly: JSON, diagnostics PNGs, the report). A worker's day is about
16,800 windows (10,000 h over 2,144 workers) and takes about a minute, so the whole dataset is some 30 hours
of it. This writes --workers folders of synthetic V-JEPA-sized embeddings (VJEPA.synthetic: a cycle and an
anomaly per clip) and times the stage both ways on a local Ray cluster of --cpus CPUs (egoclean.engine.
map_tasks: in this process, or one Ray task per worker folder).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import time
from pathlib import Path

import numpy as np

from egoclean.engine import ScaleSettings, map_tasks
from egoclean.scale import analyse_worker, analysis_lost
from VJEPA import synthetic

REPO = Path(__file__).resolve().parents[1]


def write_worker(folder: Path, clips: int, windows: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, clips + 1):
        emb = synthetic.periodic(windows, 1024, 17.3, 1.5, seed=seed + index)
        emb = synthetic.with_anomaly(emb, windows // 2, 30, seed=seed + index)
        np.save(folder / f"rectified_clip_{index}_emb.npy", emb.astype(np.float32))
        np.save(folder / f"rectified_clip_{index}_ts.npy", synthetic.timestamps(windows))


def time_stage(folders: list[str], engine: str) -> float:
    start = time.perf_counter()
    analyse = functools.partial(analyse_worker, None)
    outcomes = map_tasks(analyse, folders, ScaleSettings(engine=engine), analysis_lost)
    seconds = time.perf_counter() - start
    assert all(record is not None for record, _ in outcomes), outcomes
    return seconds


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clips", type=int, default=4, help="clips per worker")
    parser.add_argument("--windows", type=int, default=1200, help="windows per clip (1,200: 20 minutes)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the local Ray cluster's CPUs")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/analysis_stage")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    folders = []
    for w in range(args.workers):
        folder = args.out / f"worker_{w + 1:03d}"
        write_worker(folder, args.clips, args.windows, seed=100 * w)
        folders.append(str(folder))
    import ray

    root = str(REPO)
    env = {"env_vars": {"PYTHONPATH": root}}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
    time_stage(folders[:1], "ray")  # warm the workers' imports (matplotlib, numpy), as a long run would have
    local = time_stage(folders, "local")
    on_ray = time_stage(folders, "ray")
    windows = args.clips * args.windows
    print(f"{args.workers} workers x {args.clips} clips x {args.windows} windows, {args.cpus} CPUs")
    print("| analysis stage | seconds | per worker (s) |")
    print("| --- | ---: | ---: |")
    print(f"| one worker after another on the driver (before) | {local:.1f} | {local / args.workers:.1f} |")
    print(f"| one Ray task per worker (now) | {on_ray:.1f} | {on_ray / args.workers:.1f} |")
    print(f"speed-up {local / on_ray:.2f}x with {args.cpus} CPUs ({windows} windows per worker)")


if __name__ == "__main__":
    main()
