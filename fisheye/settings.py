"""Phase 1's settings, each defined once: default, help and validation (see egoclean.config).

`python -m fisheye`, `bash run.sh` and Python callers all build their options and checks from this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from egoclean.config import setting
from egoclean.hwdecode import decode_setting
from egoclean.layout import DEFAULT_OUT
from fisheye.dataset import WorkerRef, parse_clip_selection
from fisheye.rectify import ENCODER_CHOICES, EncoderSettings

DEFAULT_WORKER = "factory_001/worker_001"
DEFAULT_CLIPS = "00001,00002"  # the seed's proof-of-concept clips
# x264/x265 speed presets, fastest first (both encoders accept the same names).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


DEFAULT_ENV_FILE = Path(".env")


def _env_file_problem(path: Path) -> str | None:
    # .env may well be absent (no token: the sample runs); a file named by hand must be there
    if Path(path) != DEFAULT_ENV_FILE and not Path(path).is_file():
        return "no such file; give the file that holds HF_KEY=hf_... (or leave --env-file out)"
    return None


def _worker_problem(text: str) -> str | None:
    try:
        WorkerRef.parse(text)
    except ValueError:
        return "not of the form factory_001/worker_001 (or factory001_worker001)"
    return None


def _clips_problem(text: str) -> str | None:
    try:
        parse_clip_selection(text)
    except ValueError:
        return "not a clip selection; use e.g. 00001,00002 or 1-5 or all"
    return None


@dataclass(frozen=True)
class Phase1Settings:
    """Which clips to fetch, from where, and how to rectify and encode them."""

    worker: str = setting(
        DEFAULT_WORKER, "factory/worker to fetch, as on the Hub", metavar="F/W", check=_worker_problem
    )
    clips: str = setting(
        DEFAULT_CLIPS, "clip indices: '00001,00002', '1-5' or 'all'", metavar="LIST", check=_clips_problem
    )
    source: Path | None = setting(
        None,
        "read tars from this local folder laid out like the Hub "
        "(FOLDER/factory_001/workers/worker_001/*.tar) instead of downloading",
        metavar="DIR",
    )
    sample: bool = setting(False, "run on the built-in synthetic sample, offline, even if a token is set")
    out: Path = setting(DEFAULT_OUT, "output folder", metavar="DIR")
    hfov_deg: float | None = setting(
        None,
        "horizontal field of view of the rectified camera, degrees "
        "(default: the widest with no black pixel, about 94 for this lens)",
        low=1.0,
        high=170.0,
        flag="--hfov",
        metavar="DEG",
    )
    codec: str = setting("h264", "output codec", choices=("h264", "h265"))
    crf: int = setting(
        18, "x264/x265 constant rate factor: 0 is lossless, lower is better", low=0, high=51, metavar="N"
    )
    preset: str = setting("veryfast", "x264/x265 speed preset", choices=PRESETS)
    decode: str = decode_setting()
    encoder: str = setting(
        "auto",
        "auto = NVENC when frames are decoded on a GPU that has it (RTX 3090, not H100/H200), else "
        "libx264/libx265 for --codec; or libx264, libx265, nvenc",
        choices=ENCODER_CHOICES,
    )
    codec_threads: int = setting(
        0,
        "threads of the HEVC decoder, of x264/x265 and of the remap, each; 1 makes the mp4s bit-"
        "reproducible. 0 = FFmpeg's and OpenCV's choice from the machine's cores (x264 takes 1.5 per "
        "core); with --engine ray, 0 = --rectify-cpus",
        low=0,
        high=128,
        metavar="N",
    )
    env_file: Path = setting(
        DEFAULT_ENV_FILE, "where to look for HF_KEY or HF_TOKEN", metavar="FILE", check=_env_file_problem
    )

    @property
    def worker_ref(self) -> WorkerRef:
        return WorkerRef.parse(self.worker)

    @property
    def clip_indices(self) -> list[int] | None:
        """The selected clip indices, None for every clip of the worker."""
        return parse_clip_selection(self.clips)

    @property
    def encoder_settings(self) -> EncoderSettings:
        return EncoderSettings(codec=self.codec, crf=self.crf, preset=self.preset, encoder=self.encoder)

    def conflicts(self) -> list[str]:
        """Settings that contradict each other (egoclean.config.validate reports the first)."""
        software = {"libx264": "h264", "libx265": "h265"}
        if self.sample and self.source is not None:
            return [f"--sample runs on the built-in sample, --source names {self.source}: drop one of them"]
        if self.encoder in software and software[self.encoder] != self.codec:
            return [
                f"--encoder {self.encoder} writes {software[self.encoder]}, but --codec is {self.codec}: "
                "drop one of them or make them agree"
            ]
        return []

    def output_affecting(self) -> dict:
        """The settings a finished output depends on: a rerun with other values redoes the clip."""
        return {"hfov_deg": self.hfov_deg, "codec": self.codec, "crf": self.crf, "preset": self.preset}
