"""V-JEPA 2 preprocessing as batched torch ops: the same result as transformers' `VJEPA2VideoProcessor`.

The processor (transformers 5.x, torchvision backend) does, in this order:
    1. resize so the shortest edge is `shortest_edge` = int(crop * 256 / 224), the long edge
       int(shortest_edge * long / short) (truncated), bilinear with antialiasing, on the uint8 frames
       (torchvision rounds the result back to uint8);
    2. centre crop `crop` x `crop` at top = int((H - crop) / 2), left = int((W - crop) / 2);
    3. float32, (x - 255 * mean) / (255 * std)  (rescale by 1/255 fused into the normalisation).
Here the frames are resized once and every crop is cut from the resized frame: "center" is the
processor's crop; "three" adds the left and right ends of the long side (V-JEPA 2's multi-view eval),
because a centre crop of a 16:9 frame keeps only its middle ~49%.

Pure: tensors in, tensors out, on whatever device the input is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torchvision.transforms.v2.functional import InterpolationMode, resize

from VJEPA.settings import CROP_MODES

CropMode = Literal["center", "three"]  # VJEPA.settings.CROP_MODES
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects: square crops of `crop_size` px cut from frames resized to `shortest_edge`."""

    crop_size: int = 256
    shortest_edge: int = 292  # int(256 * 256 / 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_crop(cls, crop_size: int) -> PreprocessSpec:
        """The processor's defaults: shortest edge int(crop * 256 / 224), ImageNet mean and std."""
        return cls(crop_size=crop_size, shortest_edge=int(crop_size * 256 / 224))


def resized_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) with the shortest edge at `shortest_edge`, long edge truncated as transformers does."""
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


def crop_offsets(height: int, width: int, crop_size: int, mode: CropMode) -> list[tuple[int, int]]:
    """(top, left) of each crop in a `height` x `width` frame: one for "center", three (start, centre, end
    of the long side) for "three"."""
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop {crop_size} px does not fit in a {width}x{height} resized frame")
    top, left = int((height - crop_size) / 2.0), int((width - crop_size) / 2.0)
    if mode == "center":
        return [(top, left)]
    if mode == "three":
        if width >= height:
            return [(top, 0), (top, left), (top, width - crop_size)]
        return [(0, left), (top, left), (height - crop_size, left)]
    raise ValueError(f"crop mode must be one of {CROP_MODES}, not {mode!r}")


def preprocess_frames(
    frames: torch.Tensor,
    spec: PreprocessSpec,
    crop_mode: CropMode = "center",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """RGB frames uint8 [N, H, W, 3] -> model input [N, V, 3, crop, crop] in `dtype` (V = 1 or 3 crops).

    Runs on `frames.device`. A [N, H, W, 3] tensor viewed as [N, 3, H, W] is channels-last in memory,
    which is the layout torch's fast uint8 antialiased resize kernel on CPU wants.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    height, width = frames.shape[1:3]
    images = frames.permute(0, 3, 1, 2)  # [N, 3, H, W], no copy
    new_size = resized_size(height, width, spec.shortest_edge)
    resized = resize(images, list(new_size), interpolation=InterpolationMode.BILINEAR, antialias=True)
    offsets = crop_offsets(*new_size, spec.crop_size, crop_mode)
    size = spec.crop_size
    crops = torch.stack([resized[:, :, top : top + size, left : left + size] for top, left in offsets], dim=1)
    mean = torch.tensor(spec.mean, device=frames.device).view(1, 1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, device=frames.device).view(1, 1, 3, 1, 1) * 255.0
    return ((crops.to(torch.float32) - mean) / std).to(dtype)
