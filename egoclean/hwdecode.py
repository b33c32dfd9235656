"""Opening a video for hardware (NVDEC) decoding through PyAV, with the CPU as the fallback.

PyAV 18's wheels carry FFmpeg's CUDA hwaccel (FACTS.md section 7): with `HWAccel("cuda", is_hw_owned=True)`
decoded frames stay in GPU memory and a plane exports to torch by DLPack. Where there is no NVIDIA driver
or no NVDEC, opening raises PermissionError; `auto` then decodes on the CPU, and `cuda` says why it cannot.

Public API:
    DECODE_MODES
    open_for_decode(path, decode="auto") -> (container, "cuda" | "cpu")
"""

from __future__ import annotations

from pathlib import Path

import av
import av.codec.hwaccel

from egoclean.errors import VideoError

DECODE_MODES = ("auto", "cpu", "cuda")


def open_for_decode(path: str | Path, decode: str = "auto") -> tuple[av.container.InputContainer, str]:
    """Open `path` for decoding on NVDEC when `decode` is cuda (required) or auto (if it works here), on the
    CPU otherwise. Returns the container and the decoder chosen, for the manifest."""
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
    if decode != "cpu":
        try:
            hwaccel = av.codec.hwaccel.HWAccel("cuda", allow_software_fallback=False, is_hw_owned=True)
            return av.open(str(path), mode="r", hwaccel=hwaccel), "cuda"
        except (PermissionError, NotImplementedError, av.FFmpegError) as err:
            if decode == "cuda":
                raise VideoError(
                    f"--decode cuda: no NVDEC decoder here ({err.__class__.__name__}: {err}); it needs an "
                    "NVIDIA GPU and driver: use --decode auto or cpu"
                ) from err
    return av.open(str(path), mode="r"), "cpu"
