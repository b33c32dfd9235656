"""Two engines for one set of stage functions: a plain loop in this process, or a Ray Data pipeline.

    rows = run_local(shard_rows, stages)            # never imports Ray
    rows = run_ray(shard_rows, stages, settings)     # a local Ray cluster, or one it joins

A pipeline is three stages over small dict rows (keys, paths and metadata, never decoded frames):
    fetch:   one task per input row (a shard; or, with --clips, a worker's walk over its shards)
             -> the clip rows it extracted                          (Ray: flat_map, bounded concurrency)
    rectify: one task per clip row -> the row with its outcome      (Ray: map)
    embed:   a callable class, built once per worker/actor           (Ray: map on an actor pool, a GPU
             or a share of one per actor when the cluster has GPUs)
Then, per worker, map_tasks runs the analysis (Ray: one task per worker folder, over the cluster).
Stage functions never raise for one bad item: they return the row with "status" "failed" and a "reason"
(see egoclean.scale for retries and failure records), so one clip never stops the others. A row whose
"stop" is set says the whole run must stop (a full disk: every other clip would fail the same way); both
engines then return at once, with the rows so far. A killed Ray task or actor is run again by Ray itself,
with no limit (Ray Data's default): the stages count their own attempts (egoclean.attempts) and fail an item
that keeps killing its process. Each stage adds its busy seconds to the row ("fetch_s", "rectify_s",
"embed_s"), which the run's summary adds up.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egoclean.config import setting
from egoclean.errors import SettingError
from egoclean.progress import Progress

Row = dict[str, Any]
ENGINES = ("local", "ray")
TASK_RETRIES = 3  # a plain Ray task (map_tasks) whose process died runs again this many times
DEFAULT_MAX_RETRIES = 2  # --max-retries: for Python callers of either phase too
# The ScaleSettings that either phase on its own takes too (python -m fisheye, VJEPA/encode.py)
RETRY_OPTIONS = ("max_retries", "retry_failed")


def _address_problem(text: str | None) -> str | None:
    if text is None or text == "auto" or text.startswith("ray://") or ":" in text:
        return None
    return "use auto, host:port or ray://host:10001"


@dataclass(frozen=True)
class ScaleSettings:
    """Which engine runs the stages, on which workers, with what parallelism, and how often a clip that
    fails or kills its process is tried again (max_retries, retry_failed: both phases on one worker too)."""

    engine: str = setting(
        "local", "local: one process, a plain loop; ray: a Ray Data pipeline", choices=ENGINES
    )
    ray_address: str | None = setting(
        None,
        "Ray cluster to join: auto, host:port or ray://host:10001 (default: start a local one)",
        metavar="ADDR",
        check=_address_problem,
    )
    workers: str | None = setting(
        None,
        "several workers in one run: factory_001/worker_001,factory_002/* or all (default: --worker)",
        metavar="LIST",
    )
    max_fetch_concurrency: int = setting(2, "shards fetched at once (Ray)", low=1, high=1024, metavar="N")
    max_retries: int = setting(
        DEFAULT_MAX_RETRIES,
        "how often a clip or shard is tried again before it is recorded as failed. Scale-out (bash run.sh "
        "--engine ray or --workers): within the run, after a passing failure (the network, the Hub's load) "
        "or a death of its process (out of memory, a crash). Either phase on one worker, where such a death "
        "ends the run: over reruns, the rerun after 1 + N deaths in a row leaves the clip out "
        "(see --retry-failed)",
        low=0,
        high=20,
        metavar="N",
    )
    retry_failed: bool = setting(
        False,
        "try again the clips that earlier runs on one worker left out because their process died under "
        "them (--max-retries); otherwise a rerun skips them. Each phase forgets only the deaths it counted "
        "(OUT/.../.attempts/): phase 1 those while making a clip, phase 2 those while embedding one; bash "
        "run.sh all forgets both. The scale-out counts within each run and needs no such flag",
    )
    embed_actors: int = setting(
        1,
        "V-JEPA 2 actors (Ray): one GPU each, or an equal share of one when there are more actors than GPUs",
        low=1,
        metavar="N",
    )
    rectify_cpus: int = setting(
        0,
        "CPUs each rectifier reserves on Ray, and the threads its decoder, x264 and remap each get. A "
        "rectifier is a rectify task or, with both phases, an embedding actor (it rectifies in the same "
        "pass). 0 = 1 per rectify task; embedding actors share the CPUs that --max-fetch-concurrency leaves",
        low=0,
        high=1024,
        metavar="N",
    )


@dataclass(frozen=True)
class Stages:
    fetch: Callable[[Row], list[Row]]
    rectify: Callable[[Row], Row]
    embed: Callable[[], Callable[[Row], Row]] | None = None  # embed() loads the model; embed()(row) -> row
    one_pass: bool = False  # embed rectifies each clip too (rectify only passes rows on): it holds the CPUs


def gpu_share(cluster_gpus: float, actors: int) -> float:
    """The GPUs each of `actors` embedding actors asks Ray for: a whole one while there are enough, else
    1/k with k = ceil(actors / GPUs), so that every actor fits and each GPU holds at most k. 0 without GPUs.
    A 141 GB H200 holds several ViT-L copies, and several one-pass actors keep it busier than one."""
    gpus = int(cluster_gpus)
    return 0.0 if gpus < 1 else 1.0 / math.ceil(actors / gpus)


def rectifier_cpus(settings: ScaleSettings, one_pass: bool, node_cpus: list[float]) -> int:
    """The CPUs each rectifier reserves on a cluster whose live nodes have `node_cpus`: --rectify-cpus, or
    for 0 one per rectify task (one rectifier per core is fastest and leanest: bench/RESULTS.md) and, in one
    pass, an equal share for each embedding actor of the CPUs the fetch tasks leave.
    Raises SettingError for a request Ray could never schedule: its tasks would wait forever."""
    largest, total = int(max(node_cpus, default=0.0)), int(sum(node_cpus))
    actors = settings.embed_actors
    cpus = settings.rectify_cpus
    if cpus == 0:
        cpus = max(1, min(largest, (total - settings.max_fetch_concurrency) // actors)) if one_pass else 1
    if cpus > largest:
        raise SettingError(
            f"--rectify-cpus {cpus}: the largest node of the Ray cluster has {largest} CPUs, so no "
            f"rectifier could start; ask for at most {largest}"
        )
    if one_pass and actors * cpus >= total:
        raise SettingError(
            f"--embed-actors {actors} x --rectify-cpus {cpus} = {actors * cpus} CPUs held by the embedding "
            f"actors (they rectify too, in one pass), but the Ray cluster has {total}: none would be left "
            "to fetch shards; lower one of them"
        )
    return cpus


def node_cpus() -> list[float]:
    """The CPUs of every live node of the Ray cluster this process has joined."""
    import ray

    return [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]


def timed(key: str, fn: Callable[[Row], Any]) -> Callable[[Row], Any]:
    """fn with its busy time added to each row it returns, under `key`."""

    def run(row: Row) -> Any:
        start = time.perf_counter()
        result = fn(row)
        spent = time.perf_counter() - start
        rows = result if isinstance(result, list) else [result]
        for out in rows:
            out[key] = out.get(key, 0.0) + spent / max(1, len(rows))
        return result

    return run


def run_local(shards: list[Row], stages: Stages, progress: Progress | None = None) -> list[Row]:
    """Every stage in a plain loop, in order: shard by shard, clip by clip; the model loaded once."""
    progress = progress or Progress()
    embed = stages.embed() if stages.embed is not None else None
    fetch, rectify = timed("fetch_s", stages.fetch), timed("rectify_s", stages.rectify)
    out: list[Row] = []
    for shard in shards:
        for clip in fetch(shard):
            row = rectify(clip)
            if embed is not None:
                row = timed("embed_s", embed)(row)
            out.append(row)
            progress.log(f"{row.get('worker')} {row.get('key')}: {row.get('status')}")
            if row.get("stop"):
                return out
    return out


def ensure_ray(address: str | None) -> float:
    """Join the cluster at `address` (or start a local one) unless Ray is up; returns the seconds it took."""
    import ray

    start = time.perf_counter()
    if not ray.is_initialized():
        root = str(Path(__file__).resolve().parents[1])  # this checkout, for the workers' imports
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            address=address,
            include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            log_to_driver=False,
        )
    return time.perf_counter() - start


def call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def map_tasks(
    fn: Callable[[Any], Any], items: list[Any], settings: ScaleSettings, lost: Callable[[Any, str], Any]
) -> list[Any]:
    """[fn(item) for item in items]: in this process on the local engine, as Ray tasks of one CPU each
    spread over the cluster on the Ray engine. fn and the items must pickle; fn should not raise. An item
    whose task Ray could not finish (its process died TASK_RETRIES + 1 times) gets lost(item, why)."""
    if settings.engine == "local" or not items:
        return [fn(item) for item in items]
    import ray

    ensure_ray(settings.ray_address)
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(call)  # fn itself may be a partial
    results = []
    for item, ref in [(item, task.remote(fn, item)) for item in items]:
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayError as err:
            results.append(lost(item, err.__class__.__name__))
    return results


def run_ray(
    shards: list[Row], stages: Stages, settings: ScaleSettings, progress: Progress | None = None
) -> list[Row]:
    """The same stages as a Ray Data pipeline: fetch tasks (bounded), rectify tasks, an embedding actor
    pool. Rows stay small; outputs go straight to the shared output folder from the tasks."""
    import ray
    import ray.data

    ensure_ray(settings.ray_address)
    cpus = rectifier_cpus(settings, stages.one_pass, node_cpus())
    if not shards:
        return []  # everything is done: no pipeline to build
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # the same row order as the local engine
    fetch, rectify = timed("fetch_s", stages.fetch), timed("rectify_s", stages.rectify)
    ds: Any = ray.data.from_items(shards, override_num_blocks=max(1, len(shards)))
    fetch_pool = ray.data.TaskPoolStrategy(size=min(settings.max_fetch_concurrency, len(shards)))
    ds = ds.flat_map(fetch, compute=fetch_pool)
    # A pass-through rectify (one pass) needs no CPU: 0 lets it run beside the actors holding them all.
    ds = ds.map(rectify, num_cpus=0 if stages.one_pass else cpus)
    if stages.embed is not None:
        embed_cls = stages.embed

        class TimedEmbed:  # built once per actor: the model is loaded once per actor
            def __init__(self) -> None:
                self.embed = timed("embed_s", embed_cls())

            def __call__(self, row: Row) -> Row:
                return self.embed(row)

        gpus = gpu_share(ray.cluster_resources().get("GPU", 0.0), settings.embed_actors)
        # An actor pool restarts a killed actor and retries its rows (max_restarts=-1, max_task_retries=-1).
        pool = ray.data.ActorPoolStrategy(size=settings.embed_actors)
        ds = ds.map(TimedEmbed, compute=pool, num_cpus=cpus if stages.one_pass else 1, num_gpus=gpus)
    progress = progress or Progress()
    rows, start = [], time.perf_counter()
    for row in ds.iter_rows():  # streams: rows arrive as clips finish
        rows.append(dict(row))
        rate = len(rows) / max(1e-9, time.perf_counter() - start)
        progress.log(
            f"{row.get('worker')} {row.get('key')}: {row.get('status')} ({len(rows)} clips, {rate:.2f}/s)"
        )
        if row.get("stop"):
            break  # leaving the iterator shuts the pipeline down: no more fetches or tasks start
    return rows
