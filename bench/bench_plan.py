"""How long a many-worker run plans before its first fetch: the Hub listing and each worker's intrinsics.json.

    .venv/bin/python bench/bench_plan.py [--factories 4] [--workers 32] [--shards 9] [--latency-ms 100]

The plan (egoclean.scale.plan) lists each selected worker's shards and downloads its intrinsics.json; for
the whole dataset that is 2,144 workers. The Hub itself is out of reach here, so the loopback stand-in
(tests/fake_hub.py) serves a dataset of that layout (shards are placeholders: planning never opens one),
answering every request after --latency-ms, as a distant Hub would. The real huggingface_hub client does the
listing and the downloads. Four ways, each timed and with its requests counted:

    listing per worker, 1 at a time      what egoclean did before (plus 1 + factories listings for "all")
    listing per worker, 8 at a time      --workers given as a list of workers: one listing call each
    --workers all, 1 at a time           one recursive listing per factory gives every worker's shards
    --workers all, 8 at a time           the default
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import egoclean.scale as scale  # noqa: E402
from egoclean.engine import ScaleSettings  # noqa: E402
from egoclean.locks import new_run_id  # noqa: E402
from egoclean.progress import Progress  # noqa: E402
from fisheye.dataset import CALIBRATION_FILE, WorkerRef  # noqa: E402
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION  # noqa: E402
from fisheye.settings import Phase1Settings  # noqa: E402
from fisheye.sources import HubSource  # noqa: E402
from tests.fake_hub import FakeHub  # noqa: E402


def write_dataset(root: Path, factories: int, workers: int, shards: int) -> list[str]:
    calibration = json.dumps(EGOCENTRIC_10K_CALIBRATION.to_json(), indent=2)
    names = []
    for f in range(1, factories + 1):
        for w in range(1, workers + 1):
            worker = WorkerRef(f"factory_{f:03d}", f"worker_{w:03d}")
            folder = root / worker.hub_dir
            folder.mkdir(parents=True, exist_ok=True)
            (folder / CALIBRATION_FILE).write_text(calibration)
            for s in range(shards):
                (folder / worker.shard_name(s)).write_bytes(b"")
            names.append(str(worker))
    return names


def time_plan(hub: FakeHub, out: Path, workers: str, threads: int) -> tuple[float, int, int]:
    """(seconds, listing requests, download requests) of one plan of every worker."""
    shutil.rmtree(out, ignore_errors=True)
    scale.PLAN_THREADS = threads
    job = scale.Job(Phase1Settings(out=out), ScaleSettings(workers=workers), None, new_run_id())
    hub.reset_counts()
    start = time.perf_counter()
    plans, failed = scale.plan(job, HubSource("hf_test_good", endpoint=hub.url), Progress())
    seconds = time.perf_counter() - start
    assert not failed and all(p.shards for p in plans)
    for p in plans:
        scale.remove_staging(p.staging, p.staging_lock)
    calls = dict(hub.requests)
    downloads = sum(n for (_, path), n in calls.items() if path.endswith(CALIBRATION_FILE))
    return seconds, sum(calls.values()) - downloads, downloads


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--factories", type=int, default=4)
    parser.add_argument("--workers", type=int, default=32, help="workers per factory")
    parser.add_argument("--shards", type=int, default=9, help="shards per worker (dataset: 9.1)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="the stand-in Hub's answer delay")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/plan")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    names = write_dataset(args.out / "hub", args.factories, args.workers, args.shards)
    every_worker = ",".join(names)
    rows = []
    with FakeHub(args.out / "hub", latency_s=args.latency_ms / 1000) as hub:
        for label, workers, threads in (
            ("listing per worker, 1 at a time (before)", every_worker, 1),
            ("listing per worker, 8 at a time", every_worker, 8),
            ("--workers all, 1 at a time", "all", 1),
            ("--workers all, 8 at a time (now)", "all", 8),
        ):
            seconds, listings, downloads = time_plan(hub, args.out / "data", workers, threads)
            rows.append((label, seconds, listings, downloads))
    n = len(names)
    print(f"{n} workers x {args.shards} shards, every Hub answer after {args.latency_ms:.0f} ms")
    print("| plan | seconds | per worker (ms) | listing requests | intrinsics requests |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, seconds, listings, downloads in rows:
        print(f"| {label} | {seconds:.1f} | {1000 * seconds / n:.0f} | {listings} | {downloads} |")
    before = rows[0][1] / n * 2144
    now = rows[-1][1] / n * 2144
    print(f"at the dataset's 2,144 workers: {before / 60:.0f} min before, {now / 60:.1f} min now")


if __name__ == "__main__":
    main()
