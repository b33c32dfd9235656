"""Where to decode: NVDEC through PyAV's CUDA hwaccel where it works, the CPU otherwise.

PyAV 18's wheels carry FFmpeg's CUDA hwaccel: with `HWAccel("cuda", is_hw_owned=True)`
decoded frames stay in GPU memory and a plane exports to torch by DLPack (egoclean.yuv_torch). Where there
is no NVIDIA driver or no NVDEC, opening raises PermissionError; `auto` then decodes on the CPU, and `cuda`
says why it cannot. The frames are only useful on the GPU if torch sees a CUDA device too, so `auto` asks
for both.

Public API:
    DECODE_MODES
    cuda_hwaccel() -> HWAccel                         (frames kept on the GPU)
    open_for_decode(path, decode="auto") -> (container, "cuda" | "cpu")
    pick_decoder(path, decode="auto") -> "cuda" | "cpu"   (opens and closes the file once to find out)
    iter_rgb_tensors(path, decoder, device) -> Iterator[Frame]   (data: uint8 torch [H, W, 3] on the GPU)
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.codec.hwaccel

from egoclean.config import setting
from egoclean.errors import VideoError
from egoclean.video import REWRITE_IT, Frame, decode

DECODE_MODES = ("auto", "cpu", "cuda")


def decode_setting() -> Any:
    """The --decode setting: one definition for phase 1's and phase 2's settings (each class needs a field
    of its own, so this makes a new one per call)."""
    return setting(
        "cpu",
        "where to decode the clips: cpu; cuda = NVDEC, frames stay on the GPU (phase 1 remaps them there; "
        "phase 2 hands them to a model on the GPU: --device cuda); auto = cuda where it works and pays "
        "(for phase 2: the model is on a GPU), else cpu",
        choices=DECODE_MODES,
    )


def cuda_hwaccel() -> av.codec.hwaccel.HWAccel:
    return av.codec.hwaccel.HWAccel("cuda", allow_software_fallback=False, is_hw_owned=True)


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def open_for_decode(path: str | Path, decode: str = "auto") -> tuple[av.container.InputContainer, str]:
    """Open `path` for decoding on NVDEC when `decode` is cuda (required) or auto (if it works here), on the
    CPU otherwise. Returns the container and the decoder chosen, for the manifest."""
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
    if decode != "cpu":
        try:
            if not _torch_has_cuda():
                raise PermissionError("PyTorch sees no CUDA device")
            return av.open(str(path), mode="r", hwaccel=cuda_hwaccel()), "cuda"
        except (PermissionError, NotImplementedError, av.FFmpegError) as err:
            if decode == "cuda":
                raise VideoError(
                    f"--decode cuda: no NVDEC decoder here ({err.__class__.__name__}: {err}); it needs an "
                    "NVIDIA GPU and driver: use --decode auto or cpu"
                ) from err
    return av.open(str(path), mode="r"), "cpu"


def pick_decoder(path: str | Path, decode: str = "auto") -> str:
    """cuda or cpu: what `open_for_decode` chooses for `path` (the same errors); for auto, cuda only if NVDEC
    really decodes the first frame into 8-bit nv12, the layout the GPU path takes (a 10-bit or 4:2:2
    stream, or a profile NVDEC lacks, decodes on the CPU instead)."""
    if decode == "cpu":
        return "cpu"
    container, chosen = open_for_decode(path, decode)
    with container:
        if chosen == "cuda" and decode == "auto":
            try:
                frame = next(container.decode(video=0), None)
            except av.FFmpegError:
                return "cpu"
            layout = frame.sw_format.name if frame is not None and frame.sw_format is not None else None
            if layout != "nv12":
                return "cpu"
    return chosen


def iter_rgb_tensors(
    path: str | Path,
    decoder: str = "cuda",
    device: Any = None,
    label: str | None = None,
    remedy: str = REWRITE_IT,
) -> Iterator[Frame]:
    """Decode `path` on `decoder` ("cuda": NVDEC, or "cpu") into RGB frames as uint8 torch tensors
    [H, W, 3]: on the GPU that decoded them, or, decoded on the CPU, on `device` (the yuv420p planes are
    copied there, half the bytes of RGB, and converted there). The conversion is egoclean.yuv_torch's, which
    equals swscale's (iter_frames(path, "rgb24")) bit for bit. A file that cannot be decoded is named as
    `label` with `remedy`, as egoclean.video.decode says."""
    from egoclean.yuv_torch import frame_rgb  # torch: only on this path

    for index, pts, frame in decode(path, device=decoder, label=label, remedy=remedy):
        time_base = frame.time_base or Fraction(1, 90000)
        yield Frame(index=index, pts=pts, time_s=float(pts * time_base), data=frame_rgb(frame, device))
