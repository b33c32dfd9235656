"""Phase 2a's settings (V-JEPA 2 encoding), each defined once: default, help and validation.

`python VJEPA/encode.py`, `bash run.sh` and Python callers build their options and checks from this class.
Importing it does not import torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from egoclean.config import setting
from egoclean.hwdecode import decode_setting

DEFAULT_MODEL = "facebook/vjepa2-vitl-fpc64-256"  # ViT-L, 1024-d, 64-frame clips at 256 px
CROP_MODES = ("center", "three")
DTYPE_NAMES = ("auto", "bfloat16", "float16", "float32")
MAX_BATCH_WINDOWS = 1024  # far above what fits in any GPU's memory for ViT-L; catches typos early
MAX_WINDOW_FRAMES = 1024


def _device_problem(name: str) -> str | None:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        return None
    return "must be auto, cpu, mps, cuda or cuda:N"


def _even_problem(frames: int) -> str | None:
    return None if frames % 2 == 0 else "must be even (the model embeds pairs of frames)"


@dataclass(frozen=True)
class EncodeSettings:
    """How each clip is cut into windows and embedded."""

    model: str = setting(
        DEFAULT_MODEL, "V-JEPA 2 checkpoint: Hugging Face Hub id or local model folder", metavar="ID|DIR"
    )
    device: str = setting(
        "auto",
        "auto = cuda, then mps, then cpu; or cpu, mps, cuda, cuda:N",
        metavar="D",
        check=_device_problem,
    )
    dtype: str = setting(
        "auto",
        "model dtype; auto = bfloat16 on GPUs that have it (float16 on older ones), float32 elsewhere",
        choices=DTYPE_NAMES,
    )
    batch_size: int | None = setting(
        8,
        "windows per model call; auto (None from Python) = as many as fit in the GPU's free memory",
        low=1,
        high=MAX_BATCH_WINDOWS,
        none_word="auto",
        metavar="N|auto",
    )
    window: int = setting(
        64, "frames per window (even)", low=2, high=MAX_WINDOW_FRAMES, metavar="N", check=_even_problem
    )
    stride_s: float = setting(
        1.0,
        "seconds between window starts (rounded to frames)",
        low=0.0,
        low_open=True,
        high=3600.0,
        metavar="S",
    )
    frame_step: int = setting(1, "use every n-th frame inside a window", low=1, high=100, metavar="N")
    crop: str = setting(
        "center",
        "center: the processor's centre crop; three: left, centre and right crops, embeddings averaged",
        choices=CROP_MODES,
    )
    decode: str = decode_setting()
    compile: bool = setting(False, "torch.compile the encoder: slower start, faster steady state (GPU)")
    force: bool = setting(False, "recompute even if outputs match the settings")
