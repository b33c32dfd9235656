"""Fetch a worker's clips from Egocentric-10K: list and fetch its tar shards, extract and check clips.

Dataset layout (FACTS.md section 1), the same on the Hub and in a local copy:
    factory_XXX/workers/worker_XXX/factoryXXX_workerXXX_partNN.tar   (WebDataset shards, at most ~1 GB each)
    factory_XXX/workers/worker_XXX/intrinsics.json                   (fisheye calibration)
Each shard holds pairs NAME.mp4 + NAME.json, NAME = factoryXXX_workerXXX_NNNNN (clip index: 5 digits, from
00000); a worker's clips may span several shards, in part order.

Public API:
    REPO_ID
    WorkerRef.parse(text) -> WorkerRef; .hub_dir, .key, .clip_name(index)
    parse_clip_selection(text) -> list[int] | None
    Sidecar, parse_sidecar(data, source) -> Sidecar
    ExtractedClip
    ShardSource (protocol), HubSource(token, repo_id, revision, endpoint), LocalSource(root)
    resolve_token(env_file) -> str | None
    extract_clips(tar_path, worker, wanted, dest_dir, progress) -> list[ExtractedClip]
    verify_clip(clip) -> VideoInfo
    find_missing(wanted, found) -> set[int]

This is a library: it never prints. Progress goes through optional callbacks; failures raise the exceptions of
egoclean.errors with a one-line message naming the file, worker or clip, what is wrong and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import httpx2
import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from egoclean.errors import AuthError, CalibrationError, EgoCleanError, FetchError, OutputError, VideoError
from egoclean.video import VideoInfo, probe

REPO_ID = "builddotai/Egocentric-10K"
TOKEN_HELP = "set HF_KEY in .env: create a read token at https://huggingface.co/settings/tokens"
COPY_CHUNK_BYTES = 1 << 20  # clips are copied out of a shard 1 MiB at a time: never a whole clip in memory
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few hundred bytes; anything this big is not a sidecar
# HubSource downloads under dest_dir/HUB_DOWNLOAD_DIR; release_shard removes it with the last download.
HUB_DOWNLOAD_DIR = "hub-download"

# FFmpeg decoder name for each codec name a sidecar may carry (the dataset writes "h265").
FFMPEG_CODEC = {"h265": "hevc", "hevc": "hevc", "h264": "h264", "avc": "h264", "av1": "av1"}

_WORKER_RE = re.compile(r"factory_?(\d+)(?:/workers)?[/_]worker_?(\d+)", re.IGNORECASE)
_ID_RE = re.compile(r"(?:(factory|worker)_?)?(\d+)", re.IGNORECASE)


# --- naming -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRef:
    """One worker of one factory, in the Hub's folder spelling: factory "factory_001", worker "worker_001"."""

    factory: str
    worker: str

    @classmethod
    def parse(cls, text: str) -> WorkerRef:
        """Parse "factory_001/worker_001", "factory001/worker001", "factory_1/worker_1",
        "factory001_worker001" or the folder form "factory_001/workers/worker_001"."""
        match = _WORKER_RE.fullmatch(text.strip().strip("/"))
        if not match:
            raise ValueError(
                f"worker {text!r} is not of the form factory_001/worker_001 (or factory001_worker001)"
            )
        return cls(factory=f"factory_{int(match[1]):03d}", worker=f"worker_{int(match[2]):03d}")

    @property
    def hub_dir(self) -> str:
        """The worker's folder in the dataset repo, e.g. "factory_001/workers/worker_001"."""
        return f"{self.factory}/workers/{self.worker}"

    @property
    def key(self) -> str:
        """The prefix of the worker's file names, e.g. "factory001_worker001"."""
        return f"{self.factory.replace('_', '')}_{self.worker.replace('_', '')}"

    def clip_name(self, index: int) -> str:
        """The dataset's name for clip `index`, e.g. "factory001_worker001_00001"."""
        return f"{self.key}_{index:05d}"

    def __str__(self) -> str:
        return f"{self.factory}/{self.worker}"


def parse_clip_selection(text: str) -> list[int] | None:
    """Clip indices from "00001,00002", "1,2", "1-5" or a mix; "all" gives None (every clip of the worker)."""
    text = text.strip()
    if text.lower() == "all":
        return None
    selected: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        bounds = item.split("-")
        if not item or len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise ValueError(
                f"clip selection {text!r}: {item!r} is not a clip index; use e.g. 00001,00002 or 1-5 or all"
            )
        first, last = int(bounds[0]), int(bounds[-1])
        if first > last or last > 99999:
            raise ValueError(f"clip selection {text!r}: range {item!r} must run upwards within 0-99999")
        selected.update(range(first, last + 1))
    return sorted(selected)


def find_missing(wanted: set[int] | None, found: set[int]) -> set[int]:
    """The wanted clip indices not found; with wanted None (every clip) nothing can be known to be missing."""
    return set() if wanted is None else set(wanted) - set(found)


# --- sidecars -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sidecar:
    """A clip's JSON sidecar; factory_id/worker_id normalised to "factory_001"/"worker_001" when numeric."""

    factory_id: str
    worker_id: str
    video_index: int
    duration_sec: float
    width: int
    height: int
    fps: float
    size_bytes: int
    codec: str  # as the dataset writes it, lower case, e.g. "h265"


def _normalise_id(value: object, kind: str, field: str, source: str) -> str:
    # The Hub's exact spelling is unknown: 1, "001", "factory001" and "factory_001" all mean factory_001.
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{kind}_{value:03d}"
    if isinstance(value, str) and value.strip():
        match = _ID_RE.fullmatch(value.strip())
        if match and (match[1] is None or match[1].lower() == kind):
            return f"{kind}_{int(match[2]):03d}"
        return value.strip()  # an unknown spelling is kept as given rather than refused
    raise VideoError(f"{source}: sidecar field {field!r} is {value!r}, not a {kind} id; the shard is corrupt")


def _number(value: object, field: str, source: str, integer: bool) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
    if not ok or value <= 0:  # type: ignore[operator]
        kind = "a positive integer" if integer else "a positive number"
        raise VideoError(f"{source}: sidecar field {field!r} is {value!r}, not {kind}; the shard is corrupt")
    return int(value) if integer else float(value)  # type: ignore[arg-type]


def parse_sidecar(data: bytes, source: str) -> Sidecar:
    """Parse a clip's sidecar JSON; `source` names it in errors (e.g. "part00.tar:NAME.json")."""
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VideoError(
            f"{source}: sidecar is not JSON ({err}); the shard is corrupt: download it again"
        ) from err
    if not isinstance(fields, dict):
        raise VideoError(f"{source}: sidecar is not a JSON object; the shard is corrupt: download it again")
    for name in Sidecar.__dataclass_fields__:
        if name not in fields:
            raise VideoError(
                f"{source}: sidecar lacks the field {name!r}; the shard is corrupt: download it again"
            )
    codec = fields["codec"]
    if not isinstance(codec, str) or not codec.strip():
        raise VideoError(f"{source}: sidecar field 'codec' is {codec!r}, not a codec name like 'h265'")
    return Sidecar(
        factory_id=_normalise_id(fields["factory_id"], "factory", "factory_id", source),
        worker_id=_normalise_id(fields["worker_id"], "worker", "worker_id", source),
        video_index=_index(fields["video_index"], source),
        duration_sec=_number(fields["duration_sec"], "duration_sec", source, integer=False),
        width=_number(fields["width"], "width", source, integer=True),
        height=_number(fields["height"], "height", source, integer=True),
        fps=_number(fields["fps"], "fps", source, integer=False),
        size_bytes=_number(fields["size_bytes"], "size_bytes", source, integer=True),
        codec=codec.strip().lower(),
    )


def _index(value: object, source: str) -> int:
    # Clip indices start at 0, so _number's "positive" rule does not apply; "00001" strings are accepted too.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise VideoError(
        f"{source}: sidecar field 'video_index' is {value!r}, not a clip index; the shard is corrupt"
    )


# --- extraction ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractedClip:
    """A clip written out of a shard: dest_dir/NAME.mp4, with its sidecar (saved as dest_dir/NAME.json)."""

    index: int
    name: str
    video_path: Path
    sidecar: Sidecar
    shard: str  # the shard's file name, e.g. factory001_worker001_part00.tar


def _disk_full(path: Path, needed_bytes: int | None = None) -> OutputError:
    need = f"{needed_bytes / 1e9:.1f} GB" if needed_bytes else "space"
    return OutputError(f"disk full while writing {path}: free {need} or use --out on a larger disk")


@contextmanager
def _output_errors(path: Path) -> Iterator[None]:
    """Writing `path` failed: that is the output disk's fault (OutputError), not the shard's."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(path) from err
        raise OutputError(
            f"cannot write {path}: {err.strerror or err}; check that --out is writable"
        ) from err


def _copy_member(source: Any, target: Path, progress: Callable[[int], None] | None) -> None:
    """Copy a tar member to `target` in chunks; read errors (a corrupt shard) pass through as they are."""
    with _output_errors(target):
        out = target.open("wb")
    try:
        while chunk := source.read(COPY_CHUNK_BYTES):
            with _output_errors(target):
                out.write(chunk)
            if progress:
                progress(len(chunk))
    finally:
        with _output_errors(target):
            out.close()


def _member_clip(member_name: str, worker: WorkerRef, shard: str) -> tuple[int, str, str] | None:
    """(index, name, "mp4"|"json") for one of the worker's clip members, None for anything else in the tar."""
    path = PurePosixPath(member_name)
    match = re.fullmatch(rf"({re.escape(worker.key)}_(\d{{5}}))\.(mp4|json)", path.name)
    if not match:
        return None
    if path.is_absolute() or ".." in path.parts:
        raise FetchError(
            f"{shard}: member {member_name!r} would be written outside the output folder; "
            "this is not a dataset shard: delete it"
        )
    if path.parent != PurePosixPath("."):
        return None  # a same-named file in a sub-folder is not one of the WebDataset pairs
    return int(match[2]), match[1], match[3]


def extract_clips(
    tar_path: Path,
    worker: WorkerRef,
    wanted: set[int] | None,
    dest_dir: Path,
    progress: Callable[[int], None] | None = None,
) -> list[ExtractedClip]:
    """Stream `tar_path` once, writing the wanted clips of `worker` (None = all) to dest_dir/NAME.mp4 + .json.

    The tar is read in stream mode: members are visited in order, never unpacked whole; each video is copied
    in chunks to NAME.partial.mp4, renamed to NAME.mp4 once its sidecar has been read (it may come before or
    after the video). Other workers' members and unrelated files are skipped. Returns the clips in tar order;
    wanted clips absent from this shard are simply not returned (see find_missing).
    progress: called with the number of video bytes copied since the last call.
    """
    tar_path, dest_dir = Path(tar_path), Path(dest_dir)
    shard = tar_path.name
    if not tar_path.exists():  # exists, not is_file: a pipe streams as well as a file
        raise FetchError(f"{tar_path}: no such shard; fetch it again")
    with _output_errors(dest_dir):
        dest_dir.mkdir(parents=True, exist_ok=True)
    sidecars: dict[int, Sidecar] = {}  # read so far, by clip index
    videos: dict[int, Path] = {}  # NAME.partial.mp4 copied so far, by clip index
    done: dict[int, ExtractedClip] = {}  # both halves written and the video renamed to NAME.mp4

    def finish(index: int, name: str) -> None:
        final = dest_dir / f"{name}.mp4"
        with _output_errors(final):
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
                clip = _member_clip(member.name, worker, shard) if member.isfile() else None
                if clip is None or (wanted is not None and clip[0] not in wanted):
                    continue
                index, name, kind = clip
                if index in done:
                    continue  # a repeated member: the first complete pair wins
                source = tar.extractfile(member)
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
                    with _output_errors(dest_dir / f"{name}.json"):
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


def verify_clip(clip: ExtractedClip) -> VideoInfo:
    """Check a clip against its sidecar (size, codec, frame size, rate, duration); return its probe."""
    expected, path = clip.sidecar, clip.video_path
    advice = "delete it and fetch again"

    def mismatch(field: str, want: object, found: object) -> VideoError:
        return VideoError(f"clip {clip.name} ({path}): {field} should be {want} but is {found}; {advice}")

    if not path.is_file():
        raise VideoError(f"clip {clip.name}: {path} does not exist; fetch it again")
    size = path.stat().st_size
    if size != expected.size_bytes:
        raise mismatch("size_bytes", expected.size_bytes, size)
    try:
        info = probe(path)
    except VideoError as err:
        raise VideoError(f"clip {clip.name}: {err}") from err
    want_codec = FFMPEG_CODEC.get(expected.codec.lower(), expected.codec.lower())
    if info.codec != want_codec:
        raise mismatch("codec", f"{expected.codec} ({want_codec})", info.codec)
    if (info.width, info.height) != (expected.width, expected.height):
        raise mismatch("width x height", f"{expected.width}x{expected.height}", f"{info.width}x{info.height}")
    # 1%: a sidecar's nominal 30 for 30000/1001 (29.97) video is not damage; 25 vs 30 is a wrong file
    if abs(info.fps - expected.fps) > 0.01 * expected.fps:
        raise mismatch("fps", expected.fps, round(info.fps, 3))
    # Containers round the last frame's duration differently: allow two frames, and at least half a second.
    tolerance = max(0.5, 2.0 / expected.fps)
    if abs(info.duration_s - expected.duration_sec) > tolerance:
        raise mismatch("duration_sec", f"{expected.duration_sec:.3f} s", f"{info.duration_s:.3f} s")
    return info


# --- sources of shards --------------------------------------------------------------------------------------

_SHARD_RE = r"{key}_part(\d+)\.tar"


def _sort_shards(worker: WorkerRef, names: list[str]) -> list[str]:
    """The worker's shard names among `names`, sorted by part number (part2 < part10 whatever the padding)."""
    pattern = re.compile(_SHARD_RE.format(key=re.escape(worker.key)))
    parts = [(int(m[1]), name) for name in names if (m := pattern.fullmatch(name))]
    return [name for _, name in sorted(parts)]


class ShardSource(Protocol):
    """Where a worker's shards and calibration come from: the Hub, or a local folder laid out like it."""

    def describe(self) -> str:
        """For logs, e.g. "Hugging Face Hub builddotai/Egocentric-10K"."""
        ...

    def list_shards(self, worker: WorkerRef) -> list[str]:
        """The worker's shard file names in part order; FetchError "unknown worker" if it has none."""
        ...

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        """A local copy of the worker's intrinsics.json, dest_dir/intrinsics.json."""
        ...

    def fetch_shard(
        self,
        worker: WorkerRef,
        shard_name: str,
        dest_dir: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """A local path of the shard; progress(bytes_done, bytes_total) while it downloads."""
        ...

    def release_shard(self, path: Path) -> None:
        """Delete what fetch_shard downloaded for `path` (never a user's own file)."""
        ...

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        """The shard's size in bytes if known, for a free-disk check."""
        ...


class LocalSource(ShardSource):
    """A local folder laid out exactly like the dataset repo: tars a user already has, the built-in sample."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _worker_dir(self, worker: WorkerRef) -> Path:
        folder = self.root / worker.hub_dir
        if not folder.is_dir():
            raise FetchError(
                f"unknown worker {worker}: {folder} does not exist in {self.describe()}; "
                "check --worker, or that the folder is laid out like the Hub (factory_XXX/workers/worker_XXX)"
            )
        return folder

    def list_shards(self, worker: WorkerRef) -> list[str]:
        folder = self._worker_dir(worker)
        shards = _sort_shards(worker, [p.name for p in folder.iterdir() if p.is_file()])
        if not shards:
            raise FetchError(f"unknown worker {worker}: {folder} holds no {worker.key}_partNN.tar shards")
        return shards

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        source = self._worker_dir(worker) / "intrinsics.json"
        if not source.is_file():
            raise CalibrationError(
                f"{source}: missing; worker {worker} has no calibration in {self.describe()}: "
                "copy it from the Hub"
            )
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / "intrinsics.json"
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        return target

    def fetch_shard(
        self,
        worker: WorkerRef,
        shard_name: str,
        dest_dir: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        path = self._worker_dir(worker) / shard_name
        if not path.is_file():
            raise FetchError(f"{path}: no such shard of worker {worker}; check the folder or list its shards")
        if progress:
            size = path.stat().st_size
            progress(size, size)
        return path  # read in place: a local shard is never copied, so there is nothing to release

    def release_shard(self, path: Path) -> None:
        """Nothing to do: the shard is the user's own file and is kept."""

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        path = self.root / worker.hub_dir / shard_name
        return path.stat().st_size if path.is_file() else None


def _progress_bar_class(progress: Callable[[int, int], None] | None) -> type:
    """A stand-in for tqdm that huggingface_hub drives while downloading: calls `progress`, prints nothing."""

    class CallbackBar:
        """Reports bytes written. Having `update_transfer` makes a Xet download share this one bar (network
        bytes are not counted twice); any other display call huggingface_hub makes is accepted and ignored."""

        def __init__(
            self, *args: object, total: int | None = None, initial: int = 0, **kwargs: object
        ) -> None:
            self.total, self.n = total or 0, initial

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)
            if progress:
                progress(self.n, max(self.total, self.n))

        def update_transfer(self, n: float | None = 1) -> None:
            pass  # network bytes; `update` already reports the bytes that reach the disk

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None  # set_postfix_str, refresh, close, ...

        def __enter__(self) -> CallbackBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return CallbackBar


class HubSource(ShardSource):
    """The gated dataset on the Hugging Face Hub, through huggingface_hub's own client.

    Files are downloaded with hf_hub_download(local_dir=dest_dir/HUB_DOWNLOAD_DIR): it resumes an interrupted
    transfer with HTTP Range requests and keeps its metadata in that folder's .cache/huggingface, all of which
    release_shard removes. The token is sent to the endpoint only and never appears in a message.
    """

    def __init__(
        self,
        token: str | None,
        repo_id: str = REPO_ID,
        revision: str = "main",
        endpoint: str | None = None,
    ) -> None:
        self.token = token or None
        self.repo_id = repo_id
        self.revision = revision
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._api = HfApi(endpoint=self.endpoint, token=self.token or False)
        self._listings: dict[WorkerRef, dict[str, int]] = {}  # shard name -> size, per worker
        self._downloads: dict[Path, tuple[Path, str]] = {}  # local file -> (download root, path in repo)

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"Hugging Face Hub {self.repo_id}{where}"

    # -- listing

    def list_shards(self, worker: WorkerRef) -> list[str]:
        return _sort_shards(worker, list(self._listing(worker)))

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        return self._listing(worker).get(shard_name)

    def _listing(self, worker: WorkerRef) -> dict[str, int]:
        if worker not in self._listings:
            unknown = FetchError(
                f"unknown worker {worker}: {self.repo_id} has no shards in {worker.hub_dir}; "
                "check --worker (e.g. factory_001/worker_001)"
            )
            with self._hub_errors(f"the listing of {worker.hub_dir}", missing=unknown):
                entries = list(
                    self._api.list_repo_tree(
                        self.repo_id, path_in_repo=worker.hub_dir, repo_type="dataset", revision=self.revision
                    )
                )
            sizes = {
                PurePosixPath(e.path).name: e.size for e in entries if isinstance(e, huggingface_hub.RepoFile)
            }
            if not _sort_shards(worker, list(sizes)):
                raise unknown
            self._listings[worker] = sizes
        return self._listings[worker]

    # -- downloads

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        missing = CalibrationError(
            f"{worker.hub_dir}/intrinsics.json: not found in {self.repo_id}; check --worker "
            "(the worker may not exist) or supply the calibration by hand"
        )
        dest_dir = Path(dest_dir)
        downloaded = self._download(f"{worker.hub_dir}/intrinsics.json", dest_dir, None, None, missing)
        target = dest_dir / "intrinsics.json"
        try:
            with _output_errors(target):
                shutil.copyfile(downloaded, target)
        finally:
            self.release_shard(downloaded)
        return target

    def fetch_shard(
        self,
        worker: WorkerRef,
        shard_name: str,
        dest_dir: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        missing = FetchError(
            f"{worker.hub_dir}/{shard_name}: not found in {self.repo_id}; list the worker's shards again"
        )
        size = self._listings.get(worker, {}).get(shard_name)
        return self._download(f"{worker.hub_dir}/{shard_name}", Path(dest_dir), progress, size, missing)

    def _download(
        self,
        repo_path: str,
        dest_dir: Path,
        progress: Callable[[int, int], None] | None,
        size: int | None,
        missing: EgoCleanError,
    ) -> Path:
        root = dest_dir / HUB_DOWNLOAD_DIR
        with self._hub_errors(repo_path, missing=missing, writing=root / repo_path, size=size):
            local = hf_hub_download(
                self.repo_id,
                repo_path,
                repo_type="dataset",
                revision=self.revision,
                local_dir=root,
                # Only ever look for cached copies under our own folder, never in the user's ~/.cache.
                cache_dir=root / ".cache" / "hub",
                token=self.token,
                endpoint=self.endpoint,
                tqdm_class=_progress_bar_class(progress),
            )
        path = Path(local)
        self._downloads[path] = (root, repo_path)
        return path

    def release_shard(self, path: Path) -> None:
        """Delete a file this source downloaded and its huggingface_hub metadata.

        Once nothing downloaded under dest_dir/HUB_DOWNLOAD_DIR is still in use, that whole folder goes too
        (huggingface_hub's bookkeeping, leftovers of crashed runs).
        """
        path = Path(path)
        if path not in self._downloads:
            return  # not ours: never delete a file we did not download
        root, repo_path = self._downloads.pop(path)
        meta = root / ".cache" / "huggingface" / "download" / repo_path
        for leftover in (path, meta.with_name(meta.name + ".metadata"), meta.with_name(meta.name + ".lock")):
            leftover.unlink(missing_ok=True)
        if all(other_root != root for other_root, _ in self._downloads.values()):
            shutil.rmtree(root, ignore_errors=True)

    # -- errors

    def _require_token(self) -> None:
        if not self.token:
            raise AuthError(f"no Hugging Face token for the gated dataset {self.repo_id}: {TOKEN_HELP}")

    @contextmanager
    def _hub_errors(
        self, subject: str, missing: EgoCleanError, writing: Path | None = None, size: int | None = None
    ) -> Iterator[None]:
        """Turn huggingface_hub's and the network's exceptions into ours, each a one-line message."""
        self._require_token()
        hub = self.endpoint or huggingface_hub.constants.ENDPOINT
        terms = f"https://huggingface.co/datasets/{self.repo_id}"
        try:
            yield
        except GatedRepoError as err:
            if _status(err) == 403:
                raise AuthError(
                    f"{subject}: access to the gated dataset {self.repo_id} is refused: "
                    f"accept the terms at {terms} while logged in, then run again"
                ) from err
            raise AuthError(
                f"{subject}: the Hub rejected the token (HTTP {_status(err)}): {TOKEN_HELP}"
            ) from err
        except RepositoryNotFoundError as err:
            if _status(err) == 401:  # the Hub answers 401 for a repo the token may not see
                raise AuthError(f"{subject}: the Hub rejected the token (HTTP 401): {TOKEN_HELP}") from err
            raise FetchError(f"dataset {self.repo_id} not found at {hub}: check the repo id") from err
        except RevisionNotFoundError as err:
            raise FetchError(f"revision {self.revision!r} of {self.repo_id} not found; use main") from err
        except LocalEntryNotFoundError as err:  # hf_hub_download's "could not reach the Hub, nothing cached"
            raise _unreachable(hub) from err
        except (
            EntryNotFoundError
        ) as err:  # RemoteEntryNotFoundError: the Hub answered 404 for the file or folder
            raise missing from err
        except HfHubHTTPError as err:
            status = _status(err)
            if status == 401:
                raise AuthError(f"{subject}: the Hub rejected the token (HTTP 401): {TOKEN_HELP}") from err
            if status == 403:
                raise AuthError(
                    f"{subject}: the token may not read {self.repo_id} (HTTP 403): use a read token and "
                    f"accept the terms at {terms}"
                ) from err
            raise FetchError(f"{subject}: the Hub answered HTTP {status}; try again later") from err
        except (httpx2.TransportError, OfflineModeIsEnabled) as err:
            raise _unreachable(hub) from err
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise _disk_full(writing or Path(subject), size) from err
            raise FetchError(f"{subject}: download failed ({err.__class__.__name__}); run again") from err


def _unreachable(hub: str) -> FetchError:
    return FetchError(f"cannot reach the Hub at {hub}: check the network, or use --source DIR")


def _status(err: HfHubHTTPError) -> int | None:
    return err.response.status_code if err.response is not None else None


# --- tokens -------------------------------------------------------------------------------------------------


def _read_env_file(env_file: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file: `#` comments, optional `export `, optional single or double quotes."""
    values: dict[str, str] = {}
    for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()  # an unquoted value may carry a trailing comment
        values[key] = value
    return values


def resolve_token(env_file: Path | None = Path(".env")) -> str | None:
    """The Hub token: HF_KEY or HF_TOKEN from the environment, then from `env_file`, then `hf auth login`'s.

    HF_KEY is the project's name (SEED.md), HF_TOKEN huggingface_hub's own. Empty values count as missing.
    """
    for name in ("HF_KEY", "HF_TOKEN"):
        if value := os.environ.get(name, "").strip():
            return value
    if env_file is not None and Path(env_file).is_file():
        values = _read_env_file(Path(env_file))
        for name in ("HF_KEY", "HF_TOKEN"):
            if value := values.get(name, "").strip():
                return value
    return huggingface_hub.get_token() or None
