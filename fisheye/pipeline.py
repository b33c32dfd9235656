"""Phase 1 end to end: fetch a worker's shards and calibration, extract the wanted clips, rectify, clean up.

For each shard, in order, until every wanted clip is found:
    download the shard -> stream-extract only the wanted clips -> check each against its sidecar ->
    rectify -> verify the output (frames, duration, size) -> rename it into place -> record it in the
    manifest -> delete the raw clip; then delete the shard.
Raw inputs are deleted only after the outputs they feed are verified. Every output is written under a
temporary name and renamed when complete, and the manifest is rewritten after each clip, so a rerun skips
finished clips (same settings, file present with the recorded size) and redoes the rest.

The output layout is egoclean.layout's (the seed's: OUT/factory_001/rectified_clip_1.mp4, intrinsics.json,
manifest.json; other workers of the factory in a subfolder so they never overwrite it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import av
import cv2
import numpy as np

from egoclean.attempts import (
    ATTEMPTS_DIR,
    RETRY_FAILED,
    attempts_mark,
    check_attempts,
    clear_attempts,
    crash_guard,
    unreturned_attempts,
)
from egoclean.engine import DEFAULT_MAX_RETRIES
from egoclean.errors import AuthError, CalibrationError, CrashLoopError, FetchError, OutputError, VideoError
from egoclean.files import atomic_output, check_free_space, check_writable, remove_partials, write_json
from egoclean.layout import CAMERA_FILE, MANIFEST_FILE, output_dir, preview_name, rectified_name
from egoclean.locks import LOCKS_DIR, FileLock, new_run_id, output_lock
from egoclean.progress import Progress
from egoclean.records import (
    DONE,
    FAILED,
    RECORDS_DIR,
    SKIPPED,
    is_done,
    read_record,
    read_records,
    record_path,
    settings_hash,
    write_record,
)
from egoclean.video import VideoInfo, durations_agree, probe
from fisheye.camera import (
    FisheyeCalibration,
    PinholeCamera,
    invalid_fraction,
    load_calibration,
    rectified_camera,
    source_positions,
)
from fisheye.dataset import CALIBRATION_FILE, WorkerRef
from fisheye.rectify import RectifyStats, pick_encoder, rectify_video
from fisheye.sample import SampleSpec, write_sample_hub
from fisheye.settings import DEFAULT_CLIPS, DEFAULT_WORKER, Phase1Settings
from fisheye.shards import SHARD_DAMAGED, ExtractedClip, clip_origin, extract_clips, verify_clip
from fisheye.sources import HubSource, LocalSource, ShardSource, resolve_token, token_help

if TYPE_CHECKING:
    from egoclean.yuv_torch import Planes

MANIFEST_VERSION = 1
STAGING_DIR = ".staging"  # raw intermediates (shards, extracted clips, Hub cache); deleted when done


MAX_INVALID_FRACTION = 0.5  # refuse a rectified view that is more black border than picture
MAX_NAMES_SHOWN = 5  # an error lists at most this many clip names, then counts the rest
SAMPLE_DIR = "sample"  # the built-in sample's outputs go to OUT/sample, never mixed with real data


def worker_output_dir(settings: Phase1Settings) -> Path:
    """Where this run's clips go (egoclean.layout), given the settings as `choose_data` left them."""
    worker = settings.worker_ref
    return output_dir(settings.out, worker.factory, worker.worker)


def prepare_sample(out: Path, progress: Progress) -> Path:
    """Render the built-in sample into OUT/hub once; later runs reuse it. Returns that Hub-shaped folder."""
    hub = out / "hub"
    spec = SampleSpec()
    if not (hub / spec.worker_ref.hub_dir / CALIBRATION_FILE).is_file():  # written last: the sample is whole
        total = sum(round(c.duration_s * spec.fps) for c in spec.clips)
        write_sample_hub(hub, spec, progress.frames_bar("render sample", total))
    return hub


def wants_sample(settings: Phase1Settings) -> bool:
    """The one rule for running on the built-in sample: asked for, or nothing else to run on (no --source,
    no token, and no worker or clips chosen by hand)."""
    if settings.sample:
        return True
    chosen = settings.worker != DEFAULT_WORKER or settings.clips != DEFAULT_CLIPS
    return settings.source is None and not chosen and resolve_token(settings.env_file) is None


def choose_data(settings: Phase1Settings, progress: Progress) -> Phase1Settings:
    """The settings to run with: as given, or, when `wants_sample`, the sample's worker and clips with
    outputs under OUT/sample (saying so when the user did not ask for it)."""
    if not wants_sample(settings):
        return settings
    if not settings.sample:
        progress.log(
            f"no Hugging Face token (HF_KEY or HF_TOKEN in {settings.env_file}): running offline on the "
            f"built-in sample clip, outputs under {settings.out / SAMPLE_DIR}"
        )
    spec = SampleSpec()
    return replace(
        settings,
        sample=True,
        out=settings.out / SAMPLE_DIR,
        worker=f"{spec.factory}/{spec.worker}",
        clips=",".join(str(c.index) for c in spec.clips),
    )


def open_source(settings: Phase1Settings, progress: Progress) -> ShardSource:
    """The sample (rendered on first use), the --source folder, or the Hub with the token."""
    check_hardware(settings)  # a GPU asked for but not here fails before anything is fetched
    if settings.sample:
        check_writable(settings.out)
        return LocalSource(prepare_sample(settings.out, progress))
    if settings.source is not None:
        return LocalSource(settings.source)
    token = resolve_token(settings.env_file)
    if token is None:
        raise AuthError(
            f"no Hugging Face token: {token_help(settings.env_file)}; or pass --source DIR or --sample"
        )
    return HubSource(token, env_file=settings.env_file)


def camera_record(
    calib: FisheyeCalibration,
    calib_at_frame: FisheyeCalibration,
    camera: PinholeCamera,
    settings: Phase1Settings,
) -> dict:
    """intrinsics.json: the camera the rectified videos follow, plus where it came from."""
    return {
        **camera.to_json(),
        "invalid_pixel_fraction": invalid_fraction(camera, calib_at_frame),
        "source_fisheye": {**calib.to_json(), "K": calib.K.tolist(), "D": calib.D.tolist()},
        "source_fisheye_at_frame_size": calib_at_frame.to_json(),
        "settings": settings.output_affecting(),
        "note": "Frames are rectified to this pinhole camera: use K with zero distortion.",
    }


def write_camera_record(
    folder: Path,
    calib: FisheyeCalibration,
    calib_at_frame: FisheyeCalibration,
    camera: PinholeCamera,
    settings: Phase1Settings,
) -> None:
    """intrinsics.json, under the lock that guards the folder's shared files."""
    with manifest_lock(folder):
        remove_partials(folder / CAMERA_FILE)
        write_json(folder / CAMERA_FILE, camera_record(calib, calib_at_frame, camera, settings))


def preview_image(
    fisheye_rgb: np.ndarray,
    rectified_rgb: np.ndarray,
    calib_at_frame: FisheyeCalibration,
    camera: PinholeCamera,
    width: int = 1280,
) -> np.ndarray:
    """Side-by-side BGR picture: the fisheye frame with the rectified view's outline on it, and the result."""
    h, w = fisheye_rgb.shape[:2]
    edge = np.concatenate(
        [
            np.stack([np.linspace(0, camera.width - 1, 200), np.zeros(200)], 1),
            np.stack([np.full(200, camera.width - 1), np.linspace(0, camera.height - 1, 200)], 1),
            np.stack([np.linspace(camera.width - 1, 0, 200), np.full(200, camera.height - 1)], 1),
            np.stack([np.zeros(200), np.linspace(camera.height - 1, 0, 200)], 1),
        ]
    )
    outline = source_positions(camera, calib_at_frame, edge)
    outline = outline[np.isfinite(outline).all(1)]
    left = cv2.cvtColor(fisheye_rgb, cv2.COLOR_RGB2BGR)
    cv2.polylines(
        left, [np.round(outline).astype(np.int32)], True, (0, 200, 255), max(1, w // 400), cv2.LINE_AA
    )
    right = cv2.cvtColor(rectified_rgb, cv2.COLOR_RGB2BGR)
    right = cv2.resize(right, (round(right.shape[1] * h / right.shape[0]), h))
    both = np.concatenate([left, np.full((h, max(2, w // 100), 3), 255, np.uint8), right], 1)
    scale = width / both.shape[1]
    both = cv2.resize(both, (width, round(both.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    banner = np.full((30, width, 3), 40, np.uint8)
    labels = (
        "fisheye source (orange: the part kept)",
        f"rectified pinhole, HFOV {camera.hfov_deg:.1f} deg, VFOV {camera.vfov_deg:.1f} deg",
    )
    for text, x in zip(labels, (8, width // 2 + 8), strict=True):
        cv2.putText(banner, text, (x, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([banner, both], 0)


def verify_output(path: Path, stats: RectifyStats, camera: PinholeCamera, label: str, remedy: str) -> dict:
    """Read the written header (`path`, a temporary file): the frame count, size and duration must match what
    went in. Errors name the source as `label` and end with `remedy` (a shard's clip: clip_origin and
    SHARD_DAMAGED): the output is deleted with the error, the source is what the user can act on."""
    info = probe(path)
    source = stats.source
    problems = []
    if info.n_frames != stats.frames:
        problems.append(f"{info.n_frames} frames written, {stats.frames} encoded")
    if (info.width, info.height) != (camera.width, camera.height):
        problems.append(f"size {info.width}x{info.height}, expected {camera.width}x{camera.height}")
    if problems:
        raise VideoError(
            f"{label}: its rectified output came out wrong ({'; '.join(problems)}): a fault of the encoder "
            f"({stats.encoder}), not of the clip; run again, and report it if it happens again"
        )
    # Every decoded frame was written, with its own timestamp: an output shorter or longer than the source's
    # header says is a source whose header and frames disagree, damaged where it came from.
    if not durations_agree(info.duration_s, source.duration_s, source.fps):
        raise VideoError(
            f"{label}: its header says {source.duration_s:.3f} s ({source.n_frames} frames) but the "
            f"{stats.frames} frames that decode last {info.duration_s:.3f} s; {remedy}"
        )
    return {
        "frames": info.n_frames,
        "duration_s": round(info.duration_s, 6),
        "fps": float(info.rate),
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "size_bytes": path.stat().st_size,
    }


def manifest_lock(folder: Path, run_id: str | None = None) -> FileLock:
    return FileLock(folder / LOCKS_DIR / "manifest.lock", run_id)


def adopt_manifest(folder: Path, settings: Phase1Settings) -> None:
    """A folder made before per-clip records: turn its manifest's entries (same settings, file in place with
    the recorded size) into records, so its finished clips are not redone."""
    if (folder / RECORDS_DIR).is_dir():
        return
    try:
        old = json.loads((folder / MANIFEST_FILE).read_text())
        if old.get("version") != MANIFEST_VERSION or old.get("settings") != settings.output_affecting():
            return
        entries = dict(old["clips"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    for key, entry in entries.items():
        output = folder / str(entry.get("output"))
        if output.is_file() and output.stat().st_size == entry.get("size_bytes"):
            write_record(folder, output.name, DONE, settings.output_affecting(), key=key, entry=entry)


def finished_records(folder: Path, settings: Phase1Settings) -> dict[int, dict]:
    """The records that say done with these settings and whose output is in place, by clip index."""
    adopt_manifest(folder, settings)
    affecting = settings.output_affecting()
    return {
        int(record["key"]): record
        for record in read_records(folder)
        if record.get("key") is not None and is_done(record, folder, affecting)
    }


def finished_clips(folder: Path, settings: Phase1Settings) -> set[int]:
    """The clip indices whose record says done with these settings and whose output is in place."""
    return set(finished_records(folder, settings))


def known_shard_clips(folder: Path, source_description: str) -> dict[str, list[int]]:
    """Each shard's full clip list, as the manifest learnt it from a run that streamed the whole shard from
    the same source (another folder or Hub may hold other shards under the same names); {} without a
    readable manifest."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        if manifest.get("version") != MANIFEST_VERSION or manifest.get("source") != source_description:
            return {}
        return dict(manifest.get("shards", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return {}  # a damaged manifest only costs the shard lists


def shard_has_nothing_to_do(
    shard: str, known: dict[str, list[int]], done: set[int], wanted: set[int] | None
) -> bool:
    """Every clip of `shard` that is wanted (None: all) is in `done` (finished, or on the local engine left
    out for killing its process), so the shard need not be downloaded again (known: known_shard_clips; a
    shard whose clip list is not known has to be)."""
    recorded = known.get(shard)
    if recorded is None:
        return False
    to_do = set(recorded) - done
    return not (to_do if wanted is None else to_do & wanted)


def update_manifest(
    folder: Path,
    settings: Phase1Settings,
    source_description: str,
    shards: dict[str, list[int]] | None = None,
    run_id: str | None = None,
) -> dict:
    """Rewrite manifest.json from the clip records, under the folder's manifest lock; returns it.

    The manifest lists every clip whose record is done with these settings (the format phase 2 reads,
    egoclean.layout.manifest_clips), and under "failed" the reason of each clip recorded as failed with them.
    `shards` (shard -> its full clip list, known once a run streamed it) is merged with what the manifest
    already knew of the same source, so no run's knowledge is lost.
    """
    worker = settings.worker_ref
    affecting = settings.output_affecting()
    path = folder / MANIFEST_FILE
    with manifest_lock(folder, run_id):
        remove_partials(path)
        known = known_shard_clips(folder, source_description) | (shards or {})
        records = sorted(read_records(folder), key=lambda r: str(r.get("key")))
        clips = {
            record["key"]: record["entry"]
            for record in records
            if record.get("key") is not None and is_done(record, folder, affecting)
        }
        failed = {
            record["key"]: record["reason"]
            for record in records
            if record.get("key") is not None
            and record.get("status") == FAILED
            and record.get("settings_hash") == settings_hash(affecting)
        }
        manifest = {
            "version": MANIFEST_VERSION,
            "worker": f"{worker.factory}/{worker.worker}",
            "settings": affecting,
            "clips": clips,
            "failed": failed,
            "shards": known,
            "source": source_description,
        }
        write_json(path, manifest)
    return manifest


def run_staging(folder: Path, run_id: str) -> tuple[Path, FileLock]:
    """This run's own staging folder, .staging/RUN_ID, and the lock that marks it in use.

    Staging folders of runs that are gone (their lock is free: a crash or a kill) are removed first; a live
    run's folder is never touched."""
    root = folder / STAGING_DIR
    if root.is_dir():
        for lock_path in root.glob("*.lock"):
            other = FileLock(lock_path)
            if other.try_acquire():  # its owner is gone
                shutil.rmtree(root / lock_path.stem, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
                other.release()
    lock = FileLock(root / f"{run_id}.lock", run_id)
    if not lock.try_acquire():  # a new run id is unique: this cannot be held by anyone
        raise OutputError(f"{lock.path}: held by another run ({lock.holder()})")
    return root / run_id, lock


def remove_staging(staging: Path, lock: FileLock) -> None:
    """Delete this run's staging folder (and .staging itself once no other run uses it)."""
    shutil.rmtree(staging, ignore_errors=True)
    lock.path.unlink(missing_ok=True)
    lock.release()
    with contextlib.suppress(OSError):
        staging.parent.rmdir()  # only if empty: another run's folder keeps it


class ClipTap(Protocol):
    """Sees every rectified frame of one clip before it is encoded: the one-pass path of `run.sh all`
    (VJEPA.encode.StreamingClipEncoder) embeds them while phase 1 makes the clip."""

    def push(self, index: int, pts: int, frame: av.VideoFrame, planes: Planes | None = None) -> None: ...
    def finish(self, video_path: Path) -> object: ...  # the clip's mp4 is verified and in place
    def abort(self) -> None: ...


# (clip name, source video) -> the tap for that clip
TapFactory = Callable[[str, VideoInfo], ClipTap]


@dataclass
class WorkerContext:
    """What every clip of one worker is rectified with, and the cameras made so far (one per frame size)."""

    calib: FisheyeCalibration
    settings: Phase1Settings
    folder: Path
    progress: Progress
    cameras: dict[tuple[int, int], PinholeCamera] = field(default_factory=dict)
    tap: TapFactory | None = None  # one pass: who else gets each rectified frame
    # Phase 1 on its own: attempts at a clip whose process died, counted in the output folder (from run to
    # run), before the clip is left out. None: the scale-out counts them itself, per run (egoclean.scale).
    attempt_limit: int | None = None


def forget_deaths(folder: Path, settings: Phase1Settings) -> None:
    """--retry-failed: the wanted clips (all: every clip) that were left out for killing their process are
    tried again, from a count of 0. Only phase 1's counts, named after the rectified mp4 (attempts_mark):
    phase 2's are named after the embeddings, and its own --retry-failed clears them."""
    if settings.clip_indices is None:
        marks = list((folder / ATTEMPTS_DIR).glob("*.mp4"))
    else:
        marks = [attempts_mark(folder, rectified_name(index)) for index in settings.clip_indices]
    for mark in marks:
        clear_attempts(mark)


def attempts_label(clip_name: str, output_name: str) -> str:
    """How a clip whose process died is named in the line that leaves it out."""
    return f"{clip_name} -> {output_name}"


def record_left_out(
    folder: Path,
    settings: Phase1Settings,
    index: int,
    err: CrashLoopError,
    run_id: str | None,
    progress: Progress,
) -> str:
    """Record clip `index` as failed with these settings (manifest.json lists it under "failed"), say why on
    `progress`; returns "failed"."""
    name = rectified_name(index)
    affecting = settings.output_affecting()
    write_record(
        folder,
        name,
        FAILED,
        affecting,
        key=f"{index:05d}",
        reason=str(err),
        attempts=err.attempts,
        run_id=run_id,
    )
    progress.error(str(err))
    return FAILED


def leave_out_dead_clip(
    index: int, folder: Path, settings: Phase1Settings, limit: int, run_id: str, progress: Progress
) -> bool:
    """Phase 1 on its own, before any shard is fetched: True when `limit` attempts at clip `index` died with
    their process (attempts_mark) and --retry-failed did not clear them; the clip is then recorded as failed
    (`record_left_out`) and left out, so its shard need not be downloaded for it. False: it is to be made (or
    another run holds it, or finished it since)."""
    name = rectified_name(index)
    mark = attempts_mark(folder, name)
    if unreturned_attempts(mark) < limit:
        return False  # the common case, decided without taking the clip's lock
    lock = output_lock(folder, name, run_id)
    if not lock.try_acquire():
        return False  # another run is making it (after --retry-failed): not ours to leave out
    try:
        if is_done(read_record(folder, name), folder, settings.output_affecting()):
            return False
        check_attempts(mark, limit, attempts_label(settings.worker_ref.clip_name(index), name), RETRY_FAILED)
        return False
    except CrashLoopError as err:
        record_left_out(folder, settings, index, err, run_id, progress)
        return True
    finally:
        lock.release()


def rectify_stage(
    clip: ExtractedClip, ctx: WorkerContext, run_id: str | None = None, wait: bool = True
) -> str:
    """Make one clip's outputs and its record, holding the clip's lock. Returns "done", "skipped" (its
    record says another run finished it), "busy" (another run holds it and `wait` is False), or, with
    ctx.attempt_limit, "failed": that many attempts died with their process, so it is recorded as failed
    (the reason said on ctx.progress) and left out."""
    name, folder, settings = rectified_name(clip.index), ctx.folder, ctx.settings
    lock = output_lock(folder, name, run_id)
    if not lock.try_acquire():
        if not wait:
            return "busy"
        holder = lock.holder() or {}
        ctx.progress.log(f"{clip.name}: run {holder.get('run_id')} is making it; waiting")
        lock.acquire()
    try:
        affecting = settings.output_affecting()
        if is_done(read_record(folder, name), folder, affecting):
            return SKIPPED
        final = folder / name
        for path in (final, final.with_name(preview_name(name)), record_path(folder, name)):
            remove_partials(path)  # a killed run's leftovers: nobody else writes them while we hold the lock
        if ctx.attempt_limit is None:
            entry = process_clip(clip, ctx)
        else:
            try:
                mark = attempts_mark(folder, name)
                with crash_guard(mark, ctx.attempt_limit, attempts_label(clip.name, name), RETRY_FAILED):
                    entry = process_clip(clip, ctx)
            except CrashLoopError as err:  # a clip of a shard whose clip list was not known when planned
                return record_left_out(folder, settings, clip.index, err, run_id, ctx.progress)
        write_record(folder, name, DONE, affecting, key=f"{clip.index:05d}", entry=entry, run_id=run_id)
        return DONE
    finally:
        lock.release()


def run_phase1(
    settings: Phase1Settings,
    source: ShardSource,
    progress: Progress | None = None,
    tap: TapFactory | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_failed: bool = False,
) -> dict:
    """Fetch, rectify and clean up one worker's clips; returns the manifest (also saved as manifest.json).

    tap: makes, for each clip rectified now, a ClipTap that is handed every rectified frame (one pass).
    max_retries: a clip whose process died under it (out of memory, a crash: the run ends with it) is tried
        again by this many reruns; the next one records it as failed and goes on without it (`left_out`).
        The count is kept in the output folder (attempts_mark).
    retry_failed: forget those deaths first, for the wanted clips (--retry-failed).

    Safe to run twice at once on one folder: each run stages in its own folder, each clip is made under
    its own lock (a run finding a clip taken waits for it rather than redoing it), and the manifest is
    derived from the per-clip records under a lock."""
    progress = progress or Progress()
    folder = worker_output_dir(settings)
    new_folders = [p for p in (folder, *folder.parents) if not p.exists()]
    check_writable(folder)
    try:
        if retry_failed:
            forget_deaths(folder, settings)
        return _run_phase1(settings, source, progress, folder, tap, 1 + max_retries)
    except BaseException:
        for path in new_folders:  # a run that made nothing leaves no empty folders behind
            if path.is_dir() and not any(path.rglob("*.mp4")) and not any(path.rglob("*.json")):
                shutil.rmtree(path, ignore_errors=True)
        raise


def _run_phase1(
    settings: Phase1Settings,
    source: ShardSource,
    progress: Progress,
    folder: Path,
    tap: TapFactory | None,
    attempt_limit: int,
) -> dict:
    worker = settings.worker_ref
    run_id = new_run_id()
    described = source.describe()
    rectified = finished_clips(folder, settings)
    wanted = None if settings.clip_indices is None else set(settings.clip_indices)
    known_shards = known_shard_clips(folder, described)
    # A clip left out for killing its process is as good as done for the walk: no shard is fetched for it
    candidates = wanted if wanted is not None else {i for clips in known_shards.values() for i in clips}
    left = {
        i
        for i in sorted(candidates - rectified)
        if leave_out_dead_clip(i, folder, settings, attempt_limit, run_id, progress)
    }
    done = rectified | left  # nothing to do for these in this run
    if wanted is not None and wanted <= done:
        made = f"{len(wanted - left)} of the {len(wanted)}" if left else f"all {len(wanted)}"
        progress.log(f"{made} clip(s) already rectified in {folder}; nothing to do")
        restore_camera_record(folder, settings, source, run_id, progress)
        return update_manifest(folder, settings, described, run_id=run_id)

    staging, staging_lock = run_staging(folder, run_id)
    try:
        calib = fetch_calibration(source, settings, staging)
        ctx = WorkerContext(calib, settings, folder, progress, tap=tap, attempt_limit=attempt_limit)
        shards = source.list_shards(worker)
        progress.log(f"{worker.factory}/{worker.worker}: {len(shards)} shard(s) on {described}")
        found: set[int] = set()
        for shard in shards:
            if wanted is not None and wanted <= found | done:
                break  # every wanted clip is accounted for: later shards are not downloaded
            if shard_has_nothing_to_do(shard, known_shards, done, wanted):
                found |= set(known_shards[shard])
                continue  # every wanted clip of this shard is finished: no need to download it again
            size = source.shard_size(worker, shard)
            to_extract = None if wanted is None else wanted - done
            clips = fetch_and_extract(source, settings, shard, to_extract, staging, run_id, size, progress)
            busy = []
            for clip in clips:
                found.add(clip.index)
                if clip.index not in done:
                    status = rectify_stage(clip, ctx, run_id, wait=False)
                    if status == "busy":
                        busy.append(clip)  # another run is making it: come back once the rest is done
                        continue
                    update_manifest(folder, settings, described, run_id=run_id)
                finish_clip(clip, done)
            for clip in busy:
                rectify_stage(clip, ctx, run_id, wait=True)
                finish_clip(clip, done)
        manifest = update_manifest(folder, settings, described, run_id=run_id)
        if wanted is not None and (missing := wanted - found - done):
            raise missing_clips_error(worker, missing, len(shards))
    except BaseException:
        staging_lock.release()  # its raw inputs stay for a look; the next run clears them
        raise
    remove_staging(staging, staging_lock)
    restore_camera_record(folder, settings, source, run_id, progress)
    return manifest


def left_out(manifest: dict, settings: Phase1Settings) -> dict[str, str]:
    """The wanted clips (all: every clip) that `manifest` lists as failed, by key, with the reason."""
    wanted = settings.clip_indices
    failed = manifest.get("failed") or {}
    return {key: reason for key, reason in failed.items() if wanted is None or int(key) in wanted}


def left_out_line(failed: dict[str, str], folder: Path) -> str:
    """The line that ends a run which left clips out (`left_out`), each named by a line of its own before."""
    return (
        f"{len(failed)} clip(s) left out ({', '.join(sorted(failed))}; the reasons are above and under "
        f"'failed' in {folder / MANIFEST_FILE}); the others are done"
    )


def restore_camera_record(
    folder: Path, settings: Phase1Settings, source: ShardSource, run_id: str, progress: Progress
) -> None:
    """Write intrinsics.json again when it is gone or unreadable while clips are done (the clip that
    wrote it is not redone): from the worker's calibration and the first done clip's frame size, the very
    record that clip wrote."""
    path = folder / CAMERA_FILE
    try:
        if isinstance(json.loads(path.read_text()), dict):
            return
    except (OSError, ValueError):
        pass
    records = finished_records(folder, settings)
    if not records:
        return
    width, height = records[min(records)]["entry"]["source_size"]
    staging, lock = run_staging(folder, run_id)
    try:
        calib = fetch_calibration(source, settings, staging)
        calib_at_frame = calib.scaled_to(width, height)
        camera = plausible_camera(calib_at_frame, (width, height), settings.hfov_deg)
        write_camera_record(folder, calib, calib_at_frame, camera, settings)
    finally:
        remove_staging(staging, lock)
    progress.log(f"{path}: missing or unreadable; written again from the worker's calibration")


def fetch_and_extract(
    source: ShardSource,
    settings: Phase1Settings,
    shard: str,
    wanted: set[int] | None,
    staging: Path,
    run_id: str,
    size_bytes: int | None = None,
    progress: Progress | None = None,
) -> list[ExtractedClip]:
    """Download `shard` into `staging`, stream out its wanted clips (None: all), delete the download, and
    record the shard's whole clip list in the manifest (whichever clips were wanted: a rerun then skips a
    shard that holds nothing left to do). Both engines fetch through this.

    size_bytes: the shard's size where it is known without asking the Hub again: the disk must hold the
    download and its clips (2x), checked first."""
    worker, folder = settings.worker_ref, worker_output_dir(settings)
    progress = progress or Progress()
    if size_bytes:
        check_free_space(folder, 2 * size_bytes, f"shard {shard}")
    bar = progress.bytes_bar(f"download {shard}", size_bytes)
    tar_path = source.fetch_shard(worker, shard, staging, lambda done_bytes, _total: bar(done_bytes))
    seen: set[int] = set()
    try:
        clips = extract_clips(tar_path, worker, wanted, staging, seen=seen)
    finally:
        source.release_shard(tar_path)  # the clips are out: the shard itself is no longer needed
    update_manifest(folder, settings, source.describe(), {shard: sorted(seen)}, run_id)
    return clips


def missing_clips_error(worker: WorkerRef, missing: set[int], n_shards: int) -> FetchError:
    names = ", ".join(worker.clip_name(i) for i in sorted(missing)[:MAX_NAMES_SHOWN])
    if len(missing) > MAX_NAMES_SHOWN:
        names += f" and {len(missing) - MAX_NAMES_SHOWN} more"
    return FetchError(
        f"clip(s) {names} not found in any of the {n_shards} shard(s) of {worker.factory}/{worker.worker}; "
        "check --clips (indices start at 00000)"
    )


def finish_clip(clip: ExtractedClip, done: set[int]) -> None:
    """The clip's output is verified and in place (by this run or another): delete its raw input."""
    done.add(clip.index)
    clip.video_path.unlink(missing_ok=True)
    clip.video_path.with_suffix(".json").unlink(missing_ok=True)


def check_hardware(settings: Phase1Settings) -> None:
    """--decode cuda needs a CUDA device that PyTorch sees (the remap runs there); --encoder nvenc needs an
    NVENC that opens. Raises VideoError naming the setting; auto and cpu never fail here."""
    if settings.decode == "cuda":
        import torch  # only when the GPU is asked for

        if not torch.cuda.is_available():
            raise VideoError(
                "--decode cuda: PyTorch sees no CUDA GPU here (NVDEC frames are remapped by torch on the "
                "GPU): use --decode cpu or auto"
            )
    pick_encoder(settings.encoder_settings, frames_on_gpu=False)  # raises for an nvenc that cannot open


def fetch_calibration(source: ShardSource, settings: Phase1Settings, staging: Path) -> FisheyeCalibration:
    """The worker's lens, copied into `staging` and checked; errors name the file the user can fix. The view
    is checked against the lens at its calibrated size (every dataset clip's size) before any shard is
    downloaded: a --hfov that would be mostly black fails in seconds, not after a 1 GB download."""
    worker = settings.worker_ref
    calib = load_calibration(
        source.fetch_intrinsics(worker, staging), source.origin(worker, CALIBRATION_FILE)
    )
    plausible_camera(calib, (calib.width, calib.height), settings.hfov_deg)
    return calib


def plausible_camera(
    calib_at_frame: FisheyeCalibration, size: tuple[int, int], hfov_deg: float | None
) -> PinholeCamera:
    """The rectified camera, refused when most of its frame would fall outside the lens (black)."""
    camera = rectified_camera(calib_at_frame, *size, hfov_deg)
    invalid = invalid_fraction(camera, calib_at_frame)
    if invalid > MAX_INVALID_FRACTION:
        widest = rectified_camera(calib_at_frame, *size).hfov_deg
        raise CalibrationError(
            f"--hfov {hfov_deg:g}: {invalid:.0%} of the rectified frame would lie outside the lens and be "
            f"black; choose a narrower --hfov (the widest with no black pixel is {widest:.1f})"
        )
    return camera


def finish_tap(tap: ClipTap, error: Exception | None, final: Path, progress: Progress) -> None:
    """Hand the finished mp4 to the clip's tap. A tap that failed is reported, not raised: the clip is
    rectified and recorded; the two-pass phase 2 makes what the tap could not, and reports it again."""
    if error is None:
        try:
            tap.finish(final)
            return
        except Exception as err:
            error = err
    else:
        tap.abort()
    progress.error(f"{final.name}: one-pass embedding failed ({error}); phase 2 redoes it from the mp4")


def process_clip(clip: ExtractedClip, ctx: WorkerContext) -> dict:
    """Rectify one extracted clip into the worker's folder; returns its manifest entry."""
    calib, cameras, settings, folder, progress = (
        ctx.calib,
        ctx.cameras,
        ctx.settings,
        ctx.folder,
        ctx.progress,
    )
    info = verify_clip(clip)
    if info.width % 2 or info.height % 2:
        raise VideoError(
            f"clip {clip.name}: frames are {info.width}x{info.height}; rectification works on yuv420p, which "
            "needs even sizes (every Egocentric-10K clip is 1920x1080): the clip is not from the dataset"
        )
    calib_at_frame = calib.scaled_to(info.width, info.height)
    size = (info.width, info.height)
    first_size = not cameras
    if size not in cameras:
        cameras[size] = plausible_camera(calib_at_frame, size, settings.hfov_deg)
    camera = cameras[size]
    final = folder / rectified_name(clip.index)
    bar = progress.frames_bar(f"rectify {clip.name}", info.n_frames)
    tap = ctx.tap(clip.name, info) if ctx.tap is not None else None
    tap_error: Exception | None = None

    def on_frame(index: int, pts: int, frame: av.VideoFrame, planes: Planes | None) -> None:
        nonlocal tap_error
        if tap is not None and tap_error is None:
            try:
                tap.push(index, pts, frame, planes)
            except Exception as err:  # the tap's failure is its own: the clip is still rectified
                tap_error = err

    try:
        with atomic_output(final) as tmp:
            stats = rectify_video(
                clip.video_path,
                tmp,
                calib,
                camera,
                settings.encoder_settings,
                bar,
                on_frame if tap else None,
                decode=settings.decode,
                threads=settings.codec_threads,
                label=clip_origin(clip),
                remedy=SHARD_DAMAGED,
            )
            result = verify_output(tmp, stats, camera, clip_origin(clip), SHARD_DAMAGED)
        preview = None
        if stats.preview_rgb is not None:
            preview = final.with_name(preview_name(final.name))
            with atomic_output(preview) as tmp:
                if not cv2.imwrite(str(tmp), preview_image(*stats.preview_rgb, calib_at_frame, camera)):
                    raise OSError(f"could not write {tmp}")
        if first_size:  # only once an output follows it; a clip of another size records its own camera
            write_camera_record(folder, calib, calib_at_frame, camera, settings)
    except BaseException:  # the tap's thread would otherwise wait for frames forever, holding the model's
        if tap is not None:  # buffers (in a Ray actor, past the clip)
            tap.abort()
        raise
    progress.log(f"{clip.name} -> {final} ({result['frames']} frames, {result['duration_s']:.1f} s)")
    if tap is not None:
        finish_tap(tap, tap_error, final, progress)
    return {
        "source_clip": clip.name,
        "shard": clip.shard,
        "output": final.name,
        "preview": preview.name if preview else None,
        **result,
        "source_frames": stats.source.n_frames,
        "source_duration_s": round(stats.source.duration_s, 6),
        "source_size": [info.width, info.height],
        "source_codec": info.codec,
        "decoder": stats.decoder,
        "remap": stats.remap,
        "encoder": stats.encoder,
        "codec_threads": settings.codec_threads or "auto",
        "camera": {k: camera.to_json()[k] for k in ("width", "height", "fx", "fy", "cx", "cy", "hfov_deg")},
    }
