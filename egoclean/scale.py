"""Both phases for many workers in one run, on either engine (egoclean.engine): the stage functions.

    result = run_scale(Phase1Settings(clips="1,2"), ScaleSettings(engine="ray", workers="all"), encode)

Like egoclean/run.py, this module stands above both phases (it imports fisheye and VJEPA; the rest of
egoclean does not): it is the glue that turns phase 1's and phase 2's functions into engine stages.

    plan     from the listing alone (Hub tree or --source folder), nothing downloaded but intrinsics.json.
             With --clips all, one row per shard of every selected worker, less the shards whose clips
             are all done (by the clip list the manifest keeps for each shard). With --clips, one row per
             worker (none once every wanted clip is done): which shard holds a clip is unknown before it is
             read. With both phases, one more row per worker holds the wanted clips an earlier run
             rectified. See WorkerPlan.rows.
    fetch    a shard row: download, stream-extract the clips not yet done into this run's staging folder,
             release (delete) the downloaded shard. A worker row of --clips: its shards so, in order, until
             every wanted clip is out; later shards are never downloaded. The row of clips rectified
             earlier downloads nothing and passes them on to be embedded (when their embedding is not
             already there with these settings).
    rectify  one task per clip: fisheye.pipeline.rectify_stage under the clip's lock, then its record.
    embed    one actor per model copy. With both phases the clip is rectified here, in one pass: each
             rectified frame goes to the model before it is encoded (one_pass_tap), so the rectify stage
             only passes the row on; then VJEPA.encode.encode_clip, which keeps the one-pass outputs (or
             embeds the mp4 of a clip finished earlier, or one whose pass failed).
    analyse  one task per worker folder (Ray: spread over the cluster, egoclean.engine.map_tasks): each
             clip and all of them together (VJEPA.analyze), once every clip is embedded.

Failures stay local: a transient error (Hub 429/5xx, a dropped connection) is retried with backoff; a clip
that still fails gets a failure record (reason, attempts) and the others go on. So does a clip or shard
whose process keeps dying under it (out of memory, a crash in FFmpeg): Ray runs the killed task again, and
egoclean.attempts stops that after --max-retries more tries. The summary lists done,
skipped and failed clips and where the time went.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egoclean.attempts import ATTEMPTS_DIR, crash_guard
from egoclean.engine import (
    Row,
    ScaleSettings,
    Stages,
    ensure_ray,
    map_tasks,
    node_cpus,
    rectifier_cpus,
    run_local,
    run_ray,
)
from egoclean.errors import EgoCleanError, FetchError, OutputError, SettingError
from egoclean.files import check_writable
from egoclean.layout import CAMERA_FILE, list_embeddings, rectified_name
from egoclean.locks import FileLock, new_run_id
from egoclean.progress import Progress
from egoclean.records import FAILED, SKIPPED, write_record
from egoclean.video import VideoInfo
from fisheye.camera import load_calibration
from fisheye.dataset import CALIBRATION_FILE, WorkerRef, parse_sidecar
from fisheye.pipeline import (
    TapFactory,
    WorkerContext,
    fetch_and_extract,
    fetch_calibration,
    finished_clips,
    finished_records,
    known_shard_clips,
    missing_clips_error,
    open_source,
    rectify_stage,
    remove_staging,
    restore_camera_record,
    run_staging,
    shard_has_nothing_to_do,
    update_manifest,
    worker_output_dir,
)
from fisheye.settings import Phase1Settings
from fisheye.shards import ExtractedClip
from fisheye.sources import ShardSource
from VJEPA.encode import StreamingClipEncoder, load_encoder_for
from VJEPA.settings import EncodeSettings

if TYPE_CHECKING:
    from VJEPA.embedder import Encoder

PLAN_THREADS = 8  # workers planned at once
BACKOFF_S = 0.5  # first retry after 0.5 s, then 1, 2, ... (capped at 30 s)
# Rows carry the same keys everywhere (the engines' tables need one schema); "" and 0 for "none".
CLIP_ROW = {
    "worker": "",
    "folder": "",
    "staging": "",
    "shard": "",
    "shards": "",
    "keys": "",
    "key": "",
    "clip_name": "",
    "video_path": "",
    "output": "",
    "status": "",
    "reason": "",
    "attempts": 0,
    "n_windows": 0,
    "stop": "",  # why the whole run must stop (egoclean.engine), "" for a row that fails alone
}


def is_transient(err: BaseException) -> bool:
    """Worth another try: the network or the Hub's load (429, 5xx; FetchError.transient), or an OS error
    outside ours (a connection reset, a network file system's hiccup); never bad data, a refused token, a
    bad setting or a bug."""
    if isinstance(err, FetchError):
        return err.transient
    return isinstance(err, OSError)


def failure_reason(err: BaseException) -> str:
    """A failure record's reason: our own one-line message, or the class of anything else (a bug, a library
    error), so that the line still says what happened."""
    return str(err) if isinstance(err, EgoCleanError) else f"{err.__class__.__name__}: {err}"


def with_retries(fn: Any, max_retries: int, backoff_s: float = BACKOFF_S) -> tuple[Any, int]:
    """(fn(), attempts); a transient error is retried up to max_retries times with exponential backoff.
    The last error is raised with `attempts` set on it."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except Exception as err:
            if attempt > max_retries or not is_transient(err):
                err.attempts = attempt  # type: ignore[attr-defined]
                raise
            time.sleep(min(30.0, backoff_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Job:
    """What every stage needs; pickled into each Ray task, so small."""

    phase1: Phase1Settings
    scale: ScaleSettings
    encode: EncodeSettings | None
    run_id: str
    backoff_s: float = BACKOFF_S
    source_factory: Callable[[Phase1Settings], ShardSource] | None = None  # default: open_source

    def source(self, settings: Phase1Settings) -> ShardSource:
        return (self.source_factory or quiet_source)(settings)

    def for_worker(self, worker: str) -> Phase1Settings:
        return replace(self.phase1, worker=worker)


def quiet_source(settings: Phase1Settings) -> ShardSource:
    return open_source(settings, Progress())


def crash_guarded(job: Job, row: Row, item: str, what: str) -> contextlib.AbstractContextManager[int]:
    """One attempt at `item` of this row's worker, counted in the run's staging folder (egoclean.attempts)."""
    return crash_guard(Path(row["staging"]) / ATTEMPTS_DIR / item, 1 + job.scale.max_retries, what)


def clip_row(row: Row) -> Row:
    """A clip row of the same worker as `row` (an input row or a clip row), its clip fields empty."""
    return {**CLIP_ROW, "worker": row["worker"], "folder": row["folder"], "staging": row["staging"]}


def fetch_rows(job: Job, row: Row) -> list[Row]:
    """The fetch stage: the clip rows of one input row (see WorkerPlan.rows for the three kinds)."""
    if row["shards"]:
        return fetch_wanted_clips(job, row)
    if row["shard"]:
        return fetch_shard(job, row)
    return rectified_earlier(job.for_worker(row["worker"]), Path(row["folder"]), row["keys"], clip_row(row))


def fetch_wanted_clips(job: Job, row: Row) -> list[Row]:
    """--clips: the worker's shards in order, each fetched as fetch_shard does, until every wanted clip is
    out: later shards are never downloaded. A wanted clip found in no shard gets a failure row."""
    settings = job.for_worker(row["worker"])
    folder = Path(row["folder"])
    pending = set(settings.clip_indices or ()) - finished_clips(folder, settings)
    shards = row["shards"].split(",")
    rows: list[Row] = []
    found: set[int] = set()
    for shard in shards:
        if pending <= found:
            return rows
        shard_rows = fetch_shard(job, row | {"shard": shard, "shards": ""}, found)
        rows += shard_rows
        found |= {int(r["key"]) for r in shard_rows if r["key"]}
        if any(r["stop"] for r in shard_rows):
            return rows  # the disk: the run stops
    missing = pending - found - finished_clips(folder, settings)  # another run may have made some
    if missing and not any(r["status"] == FAILED for r in rows):  # a failed shard may hold them
        reason = str(missing_clips_error(settings.worker_ref, missing, len(shards)))
        rows.append(clip_row(row) | {"status": FAILED, "reason": reason})
    return rows


def fetch_shard(job: Job, row: Row, found: set[int] | None = None) -> list[Row]:
    """Download one shard, extract the wanted clips that are not done yet (nor in `found`: already
    extracted from an earlier shard of the walk), release the shard."""
    settings = job.for_worker(row["worker"])
    folder, staging = Path(row["folder"]), Path(row["staging"]) / row["shard"]
    wanted = None if settings.clip_indices is None else set(settings.clip_indices) - (found or set())

    def fetch() -> list[ExtractedClip]:
        source = job.source(settings)
        done = finished_clips(folder, settings)
        if wanted is not None and wanted <= done:
            return []
        if shard_has_nothing_to_do(row["shard"], known_shard_clips(folder, source.describe()), done, wanted):
            return []  # done by another run since the plan, or a rerun's shard known to hold no clip to do
        to_extract = None if wanted is None else wanted - done
        clips = fetch_and_extract(source, settings, row["shard"], to_extract, staging, job.run_id)
        return [c for c in clips if c.index not in done]

    base = clip_row(row)
    try:
        with crash_guarded(job, row, row["shard"], f"{row['shard']} ({row['worker']})"):
            clips, _ = with_retries(fetch, job.scale.max_retries, job.backoff_s)
    except OutputError as err:  # the disk or the folder, not this shard: every other would fail the same way
        return [base | {"shard": row["shard"], "status": FAILED, "reason": str(err), "stop": str(err)}]
    except Exception as err:
        attempts = getattr(err, "attempts", 1)
        write_record(
            folder, row["shard"], FAILED, settings.output_affecting(), reason=str(err), attempts=attempts
        )
        return [base | {"shard": row["shard"], "status": FAILED, "reason": str(err), "attempts": attempts}]
    return [
        base
        | {
            "shard": row["shard"],
            "key": f"{clip.index:05d}",
            "clip_name": clip.name,
            "video_path": str(clip.video_path),
            "output": rectified_name(clip.index),
        }
        for clip in clips
    ]


def rectified_earlier(settings: Phase1Settings, folder: Path, keys: str, base: Row) -> list[Row]:
    """Rows of the clips (keys: "00001,00003") that an earlier run rectified, for the embed stage."""
    records = finished_records(folder, settings)
    rows = []
    for key in filter(None, keys.split(",")):
        record = records.get(int(key))
        if record is not None:  # still done (a clip deleted since the plan is left out)
            entry = record["entry"] or {}
            clip_name = str(entry.get("source_clip") or settings.worker_ref.clip_name(int(key)))
            shard = str(entry.get("shard") or "")
            clip = {"shard": shard, "key": key, "clip_name": clip_name, "output": record["output"]}
            rows.append(base | clip | {"status": SKIPPED})
    return rows


class OnePassTap:
    """One clip's V-JEPA 2 stream, fed by phase 1 (VJEPA.encode.StreamingClipEncoder), saying when done."""

    def __init__(self, stream: StreamingClipEncoder, progress: Progress) -> None:
        self.stream, self.progress = stream, progress
        self.push = stream.push
        self.abort = stream.abort

    def finish(self, video_path: Path) -> object:
        result = self.stream.finish(video_path)
        self.progress.log(
            f"{video_path.name}: {result.n_windows} windows embedded in the same pass -> {result.emb_path}"
        )
        return result


def one_pass_tap(encoder: Encoder, settings: EncodeSettings, progress: Progress) -> TapFactory:
    """For each clip phase 1 rectifies: a V-JEPA 2 stream that embeds its frames as they are made."""

    def make(clip_name: str, info: VideoInfo) -> OnePassTap:
        # no bar of its own: the clip's rectify bar shows the pass (the terminal holds one bar at a time)
        stream = StreamingClipEncoder(encoder, settings, info.fps, info.time_base, info.n_frames)
        return OnePassTap(stream, progress)

    return make


def rectified_with_embedding(row: Row) -> Row:
    """The rectify stage when both phases run: the embed stage rectifies the clip, in one pass."""
    return row


def rectify_clip(job: Job, row: Row, tap: TapFactory | None = None) -> Row:
    """Rectify one extracted clip (retried when the error is transient); a failure record otherwise.
    tap: hands each rectified frame to the model too (one pass)."""
    if row["status"]:
        return row  # a shard that failed to fetch: nothing to rectify
    settings = job.for_worker(row["worker"])
    folder, video = Path(row["folder"]), Path(row["video_path"])

    def rectify() -> str:
        sidecar = parse_sidecar(video.with_suffix(".json").read_bytes(), str(video.with_suffix(".json")))
        clip = ExtractedClip(int(row["key"]), row["clip_name"], video, sidecar, row["shard"])
        calib = load_calibration(Path(row["staging"]) / CALIBRATION_FILE)
        ctx = WorkerContext(calib, settings, folder, Progress(), tap=tap)
        return rectify_stage(clip, ctx, job.run_id, wait=True)

    try:
        with crash_guarded(job, row, row["output"], f"{row['clip_name']} -> {row['output']}"):
            status, attempts = with_retries(rectify, job.scale.max_retries, job.backoff_s)
    except OutputError as err:  # the disk or the folder, not this clip: the run stops, finished clips kept
        return row | {"status": FAILED, "reason": str(err), "stop": str(err)}
    except Exception as err:
        attempts = getattr(err, "attempts", 1)
        reason = failure_reason(err)
        write_record(
            folder,
            row["output"],
            FAILED,
            settings.output_affecting(),
            key=row["key"],
            reason=reason,
            attempts=attempts,
            run_id=job.run_id,
        )
        return row | {"status": FAILED, "reason": reason, "attempts": attempts}
    video.unlink(missing_ok=True)  # raw input: its output is verified and in place
    video.with_suffix(".json").unlink(missing_ok=True)
    return row | {"status": status, "attempts": attempts}


class EmbedClip:
    """The embedding stage: the model is loaded once per instance (once per Ray actor)."""

    def __init__(self, job: Job) -> None:
        assert job.encode is not None
        self.job, self.settings = job, job.encode
        self.encoder = load_encoder_for(job.encode)

    def __call__(self, row: Row) -> Row:
        from VJEPA.encode import encode_clip

        if not row["status"]:  # fetched, not rectified yet: rectify it here, the model fed in the same pass
            row = rectify_clip(self.job, row, one_pass_tap(self.encoder, self.settings, Progress()))
        if row["status"] == FAILED:
            return row
        try:
            with crash_guarded(self.job, row, f"{row['output']}.embed", f"embedding {row['output']}"):
                result = encode_clip(Path(row["folder"]) / row["output"], self.encoder, self.settings)
        except OutputError as err:
            return row | {"status": FAILED, "reason": f"embed: {err}", "stop": str(err)}
        except Exception as err:  # this clip alone (a CUDA error too): Ray Data would end the whole run
            return row | {"status": FAILED, "reason": f"embed: {failure_reason(err)}"}
        return row | {"n_windows": result.n_windows}


def analyse_worker(params: Any, folder: str) -> tuple[dict | None, str]:
    """The analysis stage for one worker folder: each clip and all together (VJEPA.analyze), its files
    written there. Returns (the joint record, "") or, with nothing to analyse or bad input, (None, why)."""
    from VJEPA.analyze import analyze_clips_jointly

    embeddings = list_embeddings(Path(folder))
    if not embeddings:
        return None, ""
    try:
        return analyze_clips_jointly(embeddings, None, params), ""
    except EgoCleanError as err:
        return None, str(err)


def analysis_lost(folder: str, why: str) -> tuple[None, str]:
    return None, f"its process died under it, attempt after attempt ({why}); run phase 2 on {folder} alone"


def select_workers(text: str | None, default: WorkerRef, source: ShardSource) -> list[WorkerRef]:
    """--workers: None (the --worker), "all", or a comma list of factory_001/worker_001 and factory_002/*."""
    if text is None:
        return [default]
    chosen: list[WorkerRef] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item == "all":
            found = source.list_workers()
        elif item.endswith("/*"):
            found = source.list_workers(item[:-2])
        else:
            try:
                found = [WorkerRef.parse(item)]
            except ValueError as err:
                raise SettingError(
                    f"--workers {text}: {item!r} is not factory_001/worker_001, F/* or all"
                ) from err
        if not found:
            raise FetchError(f"--workers {text}: {item!r} matches no worker on {source.describe()}")
        chosen += [w for w in found if w not in chosen]
    return chosen


@dataclass
class WorkerPlan:
    settings: Phase1Settings
    folder: Path
    staging: Path
    staging_lock: FileLock
    shards: list[str]
    done: list[int]  # wanted clips finished before this run (with these settings)

    def rows(self, embed: bool) -> list[Row]:
        """The fetch stage's input rows, of three kinds:
        shard   --clips all: one row per shard, fetched in parallel;
        shards  --clips: one row for the worker, its shards walked in order until every wanted clip is
                out (which shard holds a clip is unknown before it is read; the rest are never fetched);
        keys    with `embed`: the wanted clips done earlier, for the embed stage (nothing to fetch)."""
        worker = str(self.settings.worker_ref)
        base = {"worker": worker, "folder": str(self.folder), "staging": str(self.staging)}
        base |= {"shard": "", "shards": "", "keys": ""}
        if self.settings.clip_indices is None:
            rows = [base | {"shard": shard} for shard in self.shards]
        else:
            rows = [base | {"shards": ",".join(self.shards)}] if self.shards else []
        if embed and self.done:
            rows.append(base | {"keys": ",".join(f"{index:05d}" for index in self.done)})
        return rows


def plan(job: Job, source: ShardSource, progress: Progress) -> tuple[list[WorkerPlan], list[Row]]:
    """The shards to fetch for every selected worker, from the listing alone; calibration fetched here.

    Returns the plans and, when several workers are selected, a failed row for each worker that cannot be
    planned (its listing or its intrinsics.json): that worker is left out and the others go on. With one
    worker, or when the output folder cannot be written, the error is raised."""
    workers = select_workers(job.scale.workers, job.phase1.worker_ref, source)

    def attempt(worker: WorkerRef) -> WorkerPlan | EgoCleanError:
        try:
            return plan_worker(job, source, job.for_worker(str(worker)))
        except EgoCleanError as err:
            return err

    # A plan is a few Hub round trips (listing, intrinsics.json), not CPU: plan several workers at once.
    with ThreadPoolExecutor(max(1, min(PLAN_THREADS, len(workers)))) as pool:
        outcomes = list(pool.map(attempt, workers))
    plans, failed = [o for o in outcomes if isinstance(o, WorkerPlan)], []
    for worker, outcome in zip(workers, outcomes, strict=True):
        if isinstance(outcome, WorkerPlan):
            progress.log(
                f"plan: {worker}: {len(outcome.shards)} shard(s) to fetch, {len(outcome.done)} clip(s) "
                "already rectified"
            )
            continue
        # the disk or the folder, not this worker (every other worker would fail the same way); or the
        # one worker of the run
        if isinstance(outcome, OutputError) or len(workers) == 1:
            for p in plans:
                remove_staging(p.staging, p.staging_lock)
            raise outcome
        progress.error(f"{worker}: {outcome} (this worker is left out; the others go on)")
        folder = str(worker_output_dir(job.for_worker(str(worker))))
        base = {**CLIP_ROW, "worker": str(worker), "folder": folder}
        failed.append(
            base | {"status": FAILED, "reason": str(outcome), "attempts": getattr(outcome, "attempts", 1)}
        )
    return plans, failed


def plan_worker(job: Job, source: ShardSource, settings: Phase1Settings) -> WorkerPlan:
    """One worker's plan; its listing and calibration are retried like a fetch when the Hub falters."""
    worker, folder = settings.worker_ref, worker_output_dir(settings)
    check_writable(folder)
    wanted = None if settings.clip_indices is None else set(settings.clip_indices)
    done = finished_clips(folder, settings)
    shards, _ = with_retries(lambda: source.list_shards(worker), job.scale.max_retries, job.backoff_s)
    if wanted is not None and wanted <= done:
        shards = []
    elif wanted is None:  # with --clips, the walk skips shards known to hold nothing to do, and still
        # names a wanted clip that no shard holds
        known = known_shard_clips(folder, source.describe())
        shards = [shard for shard in shards if not shard_has_nothing_to_do(shard, known, done, None)]
    staging, lock = run_staging(folder, job.run_id)
    try:
        if shards:
            fetch = functools.partial(fetch_calibration, source, settings, staging)
            with_retries(fetch, job.scale.max_retries, job.backoff_s)
    except BaseException:
        remove_staging(staging, lock)
        raise
    done_wanted = sorted(done if wanted is None else done & wanted)
    return WorkerPlan(settings, folder, staging, lock, shards, done_wanted)


def restore_camera_records(job: Job, plans: list[WorkerPlan], progress: Progress) -> list[str]:
    """Each planned worker's lost or unreadable intrinsics.json written again, as phase 1 on its own does at
    its end (fisheye.pipeline.restore_camera_record: a folder whose clips are all done is not rectified
    again, so nothing else would write it). Returns one failure line per worker whose camera could not be
    written (its calibration unreachable or damaged); the others go on."""
    failures = []
    for p in plans:
        source = job.source(p.settings)
        restore = functools.partial(restore_camera_record, p.folder, p.settings, source, job.run_id, progress)
        try:
            with_retries(restore, job.scale.max_retries, job.backoff_s)
        except OutputError:
            raise  # the disk or the folder: every other worker would fail the same way
        except EgoCleanError as err:
            progress.error(f"{p.settings.worker_ref}: {err}")
            failures.append(f"{p.settings.worker_ref} {CAMERA_FILE}: {err}")
    return failures


@dataclass
class ScaleResult:
    rows: list[Row]
    counts: dict[str, int]
    failures: list[str]
    busy_s: dict[str, float]
    wall_s: float
    startup_s: float
    analysis: dict[str, dict] = field(default_factory=dict)  # worker folder -> analyze_clips_jointly result

    def summary(self) -> list[str]:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        clips = sum(self.counts.values())
        lines = [f"summary: {clips} clip(s): {counts or 'nothing to do'} in {self.wall_s:.1f} s"]
        embedded = [int(r.get("n_windows") or 0) for r in self.rows if r.get("n_windows")]
        if embedded:  # made now or kept; "skipped" above is phase 1's word (rectified by an earlier run)
            lines.append(f"  with embeddings: {len(embedded)} clip(s), {sum(embedded)} windows")
        if self.analysis:
            lines.append(f"  analysed: {len(self.analysis)} worker folder(s)")
        if self.startup_s:
            lines.append(f"  engine start-up {self.startup_s:.1f} s (not counted above)")
        one_pass = self.busy_s.get("embed", 0.0) > 0
        for stage, seconds in self.busy_s.items():
            if one_pass and stage == "rectify":
                continue  # the clips were rectified in the embed stage
            label = "rectify + embed (one pass)" if one_pass and stage == "embed" else stage
            lines.append(f"  {label}: {seconds:.1f} s busy")
        lines += [f"  failed: {line}" for line in self.failures]
        return lines


def run_scale(
    phase1: Phase1Settings,
    scale: ScaleSettings,
    encode: EncodeSettings | None = None,
    params: Any = None,
    progress: Progress | None = None,
    backoff_s: float = BACKOFF_S,
    source_factory: Callable[[Phase1Settings], ShardSource] | None = None,
) -> ScaleResult:
    """Phase 1 (and phase 2 when `encode` is given) for every selected worker, on the chosen engine.
    `source_factory(settings)` makes the ShardSource in each task (default: fisheye.pipeline.open_source)."""
    progress = progress or Progress()
    startup = 0.0
    if scale.engine == "ray":
        startup = ensure_ray(scale.ray_address)
        scale = replace(scale, rectify_cpus=rectifier_cpus(scale, encode is not None, node_cpus()))
        if phase1.codec_threads == 0:
            # FFmpeg's own choice follows the node's cores: x264 alone would take 1.5 threads per core in
            # every rectifier of the node (bench/RESULTS.md: 2.9x the memory and 12% slower at 24 threads).
            phase1 = replace(phase1, codec_threads=scale.rectify_cpus)
    job = Job(phase1, scale, encode, new_run_id(), backoff_s, source_factory)
    start = time.perf_counter()
    plans, unplanned = plan(job, job.source(phase1), progress)
    input_rows = [row for p in plans for row in p.rows(embed=encode is not None)]
    stages = Stages(
        fetch=functools.partial(fetch_rows, job),
        rectify=functools.partial(rectify_clip, job) if encode is None else rectified_with_embedding,
        embed=functools.partial(EmbedClip, job) if encode is not None else None,
        one_pass=encode is not None,
    )
    try:
        rows = unplanned + (
            run_local(input_rows, stages, progress)
            if scale.engine == "local"
            else run_ray(input_rows, stages, scale, progress)
        )
    finally:
        for p in plans:
            update_manifest(p.folder, p.settings, job.source(p.settings).describe(), run_id=job.run_id)
    if stopped := next((row["stop"] for row in rows if row.get("stop")), None):
        # staging is kept for a look (its lock goes with this process): the next run clears it
        raise OutputError(stopped)
    for p in plans:
        remove_staging(p.staging, p.staging_lock)
    camera_failures = restore_camera_records(job, plans, progress)
    analysis, unanalysed = {}, []
    if encode is not None:  # a worker's day takes about a minute (bench/RESULTS.md): spread over the cluster
        folders = [str(p.folder) for p in plans]
        outcomes = map_tasks(functools.partial(analyse_worker, params), folders, scale, analysis_lost)
        for folder, (record, problem) in zip(folders, outcomes, strict=True):
            if record is not None:
                analysis[folder] = record
            elif problem:
                progress.error(f"{folder}: analysis: {problem}")
                unanalysed.append(f"{folder} analysis: {problem}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    failures = (
        [
            f"{' '.join(filter(None, (r['worker'], r['clip_name'] or r['shard'])))}: {r['reason']} "
            f"({r['attempts']} attempt(s))"
            for r in rows
            if r["status"] == FAILED
        ]
        + camera_failures
        + unanalysed
    )
    busy = {
        stage: sum(float(r.get(f"{stage}_s") or 0.0) for r in rows) for stage in ("fetch", "rectify", "embed")
    }
    result = ScaleResult(rows, counts, failures, busy, time.perf_counter() - start, startup, analysis)
    for line in result.summary():
        progress.log(line)
    return result
