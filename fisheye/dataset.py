"""Egocentric-10K's layout and names, and its clip sidecar schema: used by every source and the sample.

Dataset layout (as on the Hub's builddotai/Egocentric-10K), the same on the Hub and in a local copy:
    factory_XXX/workers/worker_XXX/factoryXXX_workerXXX_partNN.tar   (WebDataset shards, at most ~1 GB each)
    factory_XXX/workers/worker_XXX/intrinsics.json                   (fisheye calibration)
Each shard holds pairs NAME.mp4 + NAME.json, NAME = factoryXXX_workerXXX_NNNNN (clip index: 5 digits, from
00000); a worker's clips may span several shards, in part order.

Pure: names in, names out; no I/O.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from egoclean.errors import FetchError, VideoError

REPO_ID = "builddotai/Egocentric-10K"
CALIBRATION_FILE = "intrinsics.json"
MAX_CLIP_INDEX = 99_999  # clip indices have 5 digits
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few hundred bytes; anything this big is not a sidecar

# FFmpeg decoder name for each codec name a sidecar may carry (the dataset writes "h265").
FFMPEG_CODEC = {"h265": "hevc", "hevc": "hevc", "h264": "h264", "avc": "h264", "av1": "av1"}

_WORKER_RE = re.compile(r"factory_?(\d+)(?:/workers)?[/_]worker_?(\d+)", re.IGNORECASE)
_ID_RE = re.compile(r"(?:(factory|worker)_?)?(\d+)", re.IGNORECASE)


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

    def shard_name(self, part: int) -> str:
        """The dataset's name for shard `part`, e.g. "factory001_worker001_part00.tar"."""
        return f"{self.key}_part{part:02d}.tar"

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
        if first > last or last > MAX_CLIP_INDEX:
            raise ValueError(
                f"clip selection {text!r}: range {item!r} must run upwards within 0-{MAX_CLIP_INDEX}"
            )
        selected.update(range(first, last + 1))
    return sorted(selected)


_SHARD_RE = r"{key}_part(\d+)\.tar"


def sort_shards(worker: WorkerRef, names: list[str]) -> list[str]:
    """The worker's shard names among `names`, sorted by part number (part2 < part10 whatever the padding)."""
    pattern = re.compile(_SHARD_RE.format(key=re.escape(worker.key)))
    parts = [(int(m[1]), name) for name in names if (m := pattern.fullmatch(name))]
    return [name for _, name in sorted(parts)]


def member_clip(member_name: str, worker: WorkerRef, shard: str) -> tuple[int, str, str] | None:
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

    def to_json(self) -> bytes:
        """The sidecar as the dataset writes it (the built-in sample uses this)."""
        return json.dumps(asdict(self), indent=1).encode()


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
    if ok and not math.isfinite(value):  # type: ignore[arg-type]
        ok = False  # json.loads accepts NaN and Infinity
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
    if not ok or value <= 0:  # type: ignore[operator]
        kind = "a positive integer" if integer else "a positive number"
        raise VideoError(f"{source}: sidecar field {field!r} is {value!r}, not {kind}; the shard is corrupt")
    assert isinstance(value, (int, float))
    return int(value) if integer else float(value)


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
