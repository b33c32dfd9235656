"""Shard streaming: read a worker's WebDataset tar once, write out only the wanted clips, check each clip.

Public API:
    ExtractedClip
    extract_clips(tar_path, worker, wanted, dest_dir, progress) -> list[ExtractedClip]
    verify_clip(clip) -> VideoInfo
    clip_origin(clip), SHARD_DAMAGED: how an error names a shard's clip, and what it says to do

A library: it never prints. Failures raise the exceptions of egoclean.errors with a one-line message naming
the shard or clip, what is wrong and what to do.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egoclean.errors import EgoCleanError, FetchError, VideoError
from egoclean.files import output_errors
from egoclean.video import VideoInfo, durations_agree, probe
from fisheye.dataset import FFMPEG_CODEC, MAX_SIDECAR_BYTES, Sidecar, WorkerRef, member_clip, parse_sidecar

COPY_CHUNK_BYTES = 1 << 20  # clips are copied out of a shard 1 MiB at a time: never a whole clip in memory
SHARD_DAMAGED = "the shard is damaged: download it again (with --source, replace that tar)"


@dataclass(frozen=True)
class ExtractedClip:
    """A clip written out of a shard: dest_dir/NAME.mp4, with its sidecar (saved as dest_dir/NAME.json)."""

    index: int
    name: str
    video_path: Path
    sidecar: Sidecar
    shard: str  # the shard's file name, e.g. factory001_worker001_part00.tar


def _copy_member(source: Any, target: Path, progress: Callable[[int], None] | None) -> None:
    """Copy a tar member to `target` in chunks; read errors (a corrupt shard) pass through as they are."""
    with output_errors(target):
        out = target.open("wb")
    try:
        while chunk := source.read(COPY_CHUNK_BYTES):
            with output_errors(target):
                out.write(chunk)
            if progress:
                progress(len(chunk))
    finally:
        with output_errors(target):
            out.close()


def extract_clips(
    tar_path: Path,
    worker: WorkerRef,
    wanted: set[int] | None,
    dest_dir: Path,
    progress: Callable[[int], None] | None = None,
    seen: set[int] | None = None,
) -> list[ExtractedClip]:
    """Stream `tar_path` once, writing the wanted clips of `worker` (None = all) to dest_dir/NAME.mp4 + .json.

    The tar is read in stream mode: members are visited in order, never unpacked whole; each video is copied
    in chunks to NAME.partial.mp4, renamed to NAME.mp4 once its sidecar has been read (it may come before or
    after the video). Other workers' members and unrelated files are skipped. Returns the clips in tar order;
    wanted clips absent from this shard are simply not returned (see find_missing).
    progress: called with the number of video bytes copied since the last call.
    seen: if given, receives the index of every clip of `worker` the shard holds, wanted or not (the
        shard's whole clip list once the call returns, so that a rerun can skip the shard).
    """
    tar_path, dest_dir = Path(tar_path), Path(dest_dir)
    shard = tar_path.name
    if not tar_path.exists():  # exists, not is_file: a pipe streams as well as a file
        raise FetchError(f"{tar_path}: no such shard; fetch it again")
    with output_errors(dest_dir):
        dest_dir.mkdir(parents=True, exist_ok=True)
    sidecars: dict[int, Sidecar] = {}  # read so far, by clip index
    videos: dict[int, Path] = {}  # NAME.partial.mp4 copied so far, by clip index
    done: dict[int, ExtractedClip] = {}  # both halves written and the video renamed to NAME.mp4

    def finish(index: int, name: str) -> None:
        final = dest_dir / f"{name}.mp4"
        with output_errors(final):
            videos[index].replace(final)
        done[index] = ExtractedClip(index, name, final, sidecars[index], shard)

    def discard_incomplete() -> None:
        # Leave only whole pairs behind: a video without its sidecar, or the reverse, is of no use.
        for index in (set(videos) | set(sidecars)) - set(done):
            (dest_dir / f"{worker.clip_name(index)}.partial.mp4").unlink(missing_ok=True)
            (dest_dir / f"{worker.clip_name(index)}.json").unlink(missing_ok=True)

    try:
        with tarfile.open(tar_path, mode="r|*") as tar:
            for member in tar:
                clip = member_clip(member.name, worker, shard) if member.isfile() else None
                if clip is not None and seen is not None:
                    seen.add(clip[0])
                if clip is None or (wanted is not None and clip[0] not in wanted):
                    continue
                index, name, kind = clip
                if index in done:
                    continue  # a repeated member: the first complete pair wins
                source = tar.extractfile(member)
                if source is None:  # member.isfile() was checked: a regular file always has data
                    continue
                if kind == "json":
                    if member.size > MAX_SIDECAR_BYTES:
                        raise VideoError(
                            f"{shard}:{member.name}: {member.size} bytes is too big for a sidecar"
                        )
                    data = source.read()
                    sidecar = parse_sidecar(data, f"{shard}:{member.name}")
                    if sidecar.video_index != index:
                        raise VideoError(
                            f"{shard}:{member.name}: sidecar says video_index {sidecar.video_index}, the "
                            f"file name says {index}; the shard is corrupt: delete it and download it again"
                        )
                    sidecars[index] = sidecar
                    with output_errors(dest_dir / f"{name}.json"):
                        (dest_dir / f"{name}.json").write_bytes(data)  # kept exactly as the dataset wrote it
                    if index in videos:
                        finish(index, name)
                else:
                    videos[index] = dest_dir / f"{name}.partial.mp4"
                    _copy_member(source, videos[index], progress)
                    if index in sidecars:
                        finish(index, name)
    except (tarfile.TarError, EOFError, OSError) as err:  # writes are OutputError by now: this is the shard
        discard_incomplete()
        raise FetchError(
            f"{tar_path}: the shard is corrupt or truncated ({err.__class__.__name__}: {err}); "
            "delete it and download it again"
        ) from err
    except EgoCleanError:
        discard_incomplete()
        raise
    orphans = sorted(index for index in videos if index not in done)
    discard_incomplete()
    if orphans:
        raise VideoError(
            f"{shard}: clip {worker.clip_name(orphans[0])} has no sidecar (.json) in the shard; "
            "the shard is incomplete: delete it and download it again"
        )
    return list(done.values())


def clip_origin(clip: ExtractedClip) -> str:
    """How an error names a clip of a shard: the extracted copy is only a temporary file, so the clip and
    the shard it came from (which is what is damaged: SHARD_DAMAGED says what to do)."""
    return f"clip {clip.name} in shard {clip.shard}"


def verify_clip(clip: ExtractedClip) -> VideoInfo:
    """Check a clip against its sidecar (size, codec, frame size, rate, duration); return its probe."""
    expected, path = clip.sidecar, clip.video_path
    origin, advice = clip_origin(clip), SHARD_DAMAGED

    def mismatch(field: str, want: object, found: object) -> VideoError:
        return VideoError(f"{origin}: {field} should be {want} but is {found}; {advice}")

    if not path.is_file():
        raise VideoError(f"clip {clip.name}: {path} does not exist; fetch it again")
    size = path.stat().st_size
    if size != expected.size_bytes:
        raise mismatch("size_bytes", expected.size_bytes, size)
    info = probe(path, label=origin, remedy=advice)
    want_codec = FFMPEG_CODEC.get(expected.codec.lower(), expected.codec.lower())
    if info.codec != want_codec:
        raise mismatch("codec", f"{expected.codec} ({want_codec})", info.codec)
    if (info.width, info.height) != (expected.width, expected.height):
        raise mismatch("width x height", f"{expected.width}x{expected.height}", f"{info.width}x{info.height}")
    # 1%: a sidecar's nominal 30 for 30000/1001 (29.97) video is not damage; 25 vs 30 is a wrong file
    if abs(info.fps - expected.fps) > 0.01 * expected.fps:
        raise mismatch("fps", expected.fps, round(info.fps, 3))
    if not durations_agree(info.duration_s, expected.duration_sec, expected.fps):
        raise mismatch("duration_sec", f"{expected.duration_sec:.3f} s", f"{info.duration_s:.3f} s")
    return info
