"""Phase 1 end to end: fetch a worker's shards and calibration, extract the wanted clips, rectify, clean up.

For each shard, in order, until every wanted clip is found:
    download the shard -> stream-extract only the wanted clips -> check each against its sidecar ->
    rectify -> verify the output (frames, duration, size) -> rename it into place -> record it in the
    manifest -> delete the raw clip; then delete the shard.
Raw inputs are deleted only after the outputs they feed are verified. Every output is written under a
temporary name and renamed when complete, and the manifest is rewritten after each clip, so a rerun skips
finished clips (same settings, file present with the recorded size) and redoes the rest.

Output layout (the seed's, for worker_001; other workers get a subfolder so they never overwrite it):
    OUT/factory_001/rectified_clip_1.mp4            from factory001_worker001_00001
    OUT/factory_001/rectified_clip_1_preview.jpg    before/after picture
    OUT/factory_001/intrinsics.json                 the rectified pinhole camera + source calibration
    OUT/factory_001/manifest.json                   which source clip became which output
    OUT/factory_001/worker_002/...                  the same for another worker of that factory
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fisheye.camera import (
    FisheyeCalibration,
    PinholeCamera,
    invalid_fraction,
    load_calibration,
    rectified_camera,
    source_positions,
)
from egoclean.errors import FetchError, VideoError
from fisheye.fetch import ExtractedClip, ShardSource, WorkerRef, extract_clips, verify_clip
from egoclean.files import atomic_output, check_free_space, check_writable, write_json
from fisheye.rectify import EncoderSettings, RectifyStats, rectify_video
from egoclean.video import probe

MANIFEST_VERSION = 1
STAGING_DIR = ".staging"  # raw intermediates (shards, extracted clips, Hub cache); deleted when done


@dataclass(frozen=True)
class Phase1Settings:
    worker: str = "factory_001/worker_001"
    clips: list[int] | None = field(default_factory=lambda: [1, 2])  # None = every clip of the worker
    out: Path = Path("data")
    hfov_deg: float | None = None  # None = widest view with no invalid (black) pixel
    encoder: EncoderSettings = field(default_factory=EncoderSettings)

    def output_affecting(self) -> dict:
        """The settings a finished output depends on: a rerun with other values redoes the clip."""
        return {"hfov_deg": self.hfov_deg, **asdict(self.encoder)}


@dataclass
class Progress:
    """Hooks the CLI fills with progress bars and log lines; the library itself prints nothing."""

    log: Callable[[str], None] = lambda message: None
    # bytes_bar(label, total) -> update(bytes_done_so_far)
    # frames_bar(label, total) -> update(frames_since_last_call)
    bytes_bar: Callable[[str, int | None], Callable[[int], None]] = lambda label, total: lambda n: None
    frames_bar: Callable[[str, int], Callable[[int], None]] = lambda label, total: lambda n: None


def output_dir(out: Path, worker: WorkerRef) -> Path:
    base = out / worker.factory
    return base if worker.worker == "worker_001" else base / worker.worker


def output_name(clip_index: int) -> str:
    return f"rectified_clip_{clip_index}.mp4"


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


def verify_output(path: Path, stats: RectifyStats, camera: PinholeCamera) -> dict:
    """Decode the written header: the frame count, size and duration must match what went in."""
    info = probe(path)
    source = stats.source
    problems = []
    if info.n_frames != stats.frames:
        problems.append(f"{info.n_frames} frames written, {stats.frames} read")
    if (info.width, info.height) != (camera.width, camera.height):
        problems.append(f"size {info.width}x{info.height}, expected {camera.width}x{camera.height}")
    # the frame count is the exact check; durations may differ by an edit list or the last frame's length
    if abs(info.duration_s - source.duration_s) > max(0.25, 3.0 / source.fps):
        problems.append(f"duration {info.duration_s:.3f} s, source {source.duration_s:.3f} s")
    if problems:
        raise VideoError(
            f"{path}: output check failed ({'; '.join(problems)}); the source clip may be "
            "damaged: delete it and rerun"
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


def load_manifest(path: Path, settings: Phase1Settings, worker: WorkerRef) -> dict:
    """The previous run's manifest if it used the same output-affecting settings, else a fresh one."""
    fresh = {
        "version": MANIFEST_VERSION,
        "worker": f"{worker.factory}/{worker.worker}",
        "settings": settings.output_affecting(),
        "clips": {},
        "shards": {},
    }
    if not path.is_file():
        return fresh
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh  # a damaged manifest only costs redoing the work
    if old.get("version") != MANIFEST_VERSION or old.get("settings") != fresh["settings"]:
        return fresh
    return old


def finished(entry: dict | None, folder: Path) -> bool:
    if not entry:
        return False
    output = folder / entry["output"]
    return output.is_file() and output.stat().st_size == entry["size_bytes"]


def run_phase1(settings: Phase1Settings, source: ShardSource, progress: Progress | None = None) -> dict:
    """Fetch, rectify and clean up one worker's clips; returns the manifest (also saved as manifest.json)."""
    progress = progress or Progress()
    worker = WorkerRef.parse(settings.worker)
    folder = output_dir(settings.out, worker)
    check_writable(folder)
    staging = folder / STAGING_DIR
    manifest_path = folder / "manifest.json"
    manifest = load_manifest(manifest_path, settings, worker)
    manifest["source"] = source.describe()

    done = {int(k) for k, entry in manifest["clips"].items() if finished(entry, folder)}
    wanted = None if settings.clips is None else set(settings.clips)
    if wanted is not None and wanted <= done:
        progress.log(f"all {len(wanted)} clip(s) already rectified in {folder}; nothing to do")
        shutil.rmtree(staging, ignore_errors=True)
        return manifest

    calib = load_calibration(source.fetch_intrinsics(worker, staging))
    cameras: dict[tuple[int, int], PinholeCamera] = {}
    shards = source.list_shards(worker)
    progress.log(f"{worker.factory}/{worker.worker}: {len(shards)} shard(s) on {source.describe()}")
    found: set[int] = set()
    for shard in shards:
        if wanted is not None and wanted <= found | done:
            break  # every wanted clip is accounted for: later shards are not downloaded
        recorded = manifest["shards"].get(shard)  # a shard's full clip list, known after an "all" run
        if wanted is None and recorded is not None and set(recorded) <= done:
            found |= set(recorded)
            continue  # every clip of this shard is finished: no need to download it again
        size = source.shard_size(worker, shard)
        if size:
            check_free_space(folder, 2 * size, f"shard {shard}")
        bar = progress.bytes_bar(f"download {shard}", size)
        tar_path = source.fetch_shard(
            worker, shard, staging, lambda done_bytes, _total, bar=bar: bar(done_bytes)
        )
        clips = extract_clips(tar_path, worker, None if wanted is None else wanted - done, staging)
        if wanted is None:
            manifest["shards"][shard] = sorted(c.index for c in clips)
        for clip in clips:
            found.add(clip.index)
            if clip.index in done:
                clip.video_path.unlink(missing_ok=True)
                continue
            entry = process_clip(clip, calib, cameras, settings, folder, progress)
            manifest["clips"][f"{clip.index:05d}"] = entry
            write_json(manifest_path, manifest)
            done.add(clip.index)
            clip.video_path.unlink(missing_ok=True)  # raw input: its output is verified and in place
            clip.video_path.with_suffix(".json").unlink(missing_ok=True)
        source.release_shard(tar_path)
    write_json(manifest_path, manifest)
    if wanted is not None and (missing := wanted - found - done):
        names = ", ".join(worker.clip_name(i) for i in sorted(missing))
        raise FetchError(
            f"clip(s) {names} not found in any of the {len(shards)} shard(s) of "
            f"{worker.factory}/{worker.worker}; check --clips (indices start at 00000)"
        )
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def process_clip(
    clip: ExtractedClip,
    calib: FisheyeCalibration,
    cameras: dict,
    settings: Phase1Settings,
    folder: Path,
    progress: Progress,
) -> dict:
    """Rectify one extracted clip into `folder`; returns its manifest entry."""
    info = verify_clip(clip)
    calib_at_frame = calib.scaled_to(info.width, info.height)
    size = (info.width, info.height)
    if size not in cameras:
        cameras[size] = rectified_camera(calib_at_frame, *size, settings.hfov_deg)
        if len(cameras) == 1:  # the first frame size seen; a clip of another size records its own camera
            write_json(
                folder / "intrinsics.json", camera_record(calib, calib_at_frame, cameras[size], settings)
            )
    camera = cameras[size]
    final = folder / output_name(clip.index)
    bar = progress.frames_bar(f"rectify {clip.name}", info.n_frames)
    with atomic_output(final) as tmp:
        stats = rectify_video(clip.video_path, tmp, calib, camera, settings.encoder, bar)
        result = verify_output(tmp, stats, camera)
    preview = None
    if stats.preview_rgb is not None:
        preview = final.with_name(final.stem + "_preview.jpg")
        with atomic_output(preview) as tmp:
            if not cv2.imwrite(str(tmp), preview_image(*stats.preview_rgb, calib_at_frame, camera)):
                raise OSError(f"could not write {tmp}")
    progress.log(f"{clip.name} -> {final} ({result['frames']} frames, {result['duration_s']:.1f} s)")
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
        "camera": {k: camera.to_json()[k] for k in ("width", "height", "fx", "fy", "cx", "cy", "hfov_deg")},
    }
