"""Fisheye-to-pinhole remap of yuv420p planes as a torch op: the same code on the CPU and on a CUDA GPU.

The GPU path of phase 1 (NVDEC frames stay on the device, handed to torch by DLPack) needs a remap that runs
where the frames are; OpenCV's PyPI wheels have no CUDA. This is bilinear interpolation with
precomputed gather indices and weights, built once per clip from the same float32 maps `cv2.remap` uses
(fisheye.camera.yuv420_plane_maps), with cv2's BORDER_CONSTANT behaviour: a tap outside the source reads the
border value. cv2 quantises positions to 1/32 px with fixed-point weights, so the two agree within about two
code values, not bit for bit (tests/test_remap_torch.py measures it).

Public API:
    TorchPlaneRemapper(calib, camera, device)(yuv420p: torch.uint8 [H*3/2, W]) -> torch.uint8 [H'*3/2, W']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fisheye.camera import FisheyeCalibration, PinholeCamera, yuv420_plane_maps
from fisheye.rectify import BLACK_Y, NEUTRAL_UV


@dataclass(frozen=True)
class _PlaneGather:
    """For one plane: flat indices [4, h*w] into the border-padded source and bilinear weights [4, h*w]."""

    index: torch.Tensor
    weight: torch.Tensor
    src_shape: tuple[int, int]  # (height, width) of the unpadded source plane
    out_shape: tuple[int, int]
    border: int


def _plane_gather(
    map_x: np.ndarray, map_y: np.ndarray, src_shape: tuple[int, int], border: int, device: torch.device
) -> _PlaneGather:
    height, width = src_shape
    # Source positions in the padded plane (one border pixel on each side), where index 0 is the border.
    x = torch.from_numpy(map_x.astype(np.float64).ravel()) + 1.0
    y = torch.from_numpy(map_y.astype(np.float64).ravel()) + 1.0
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    # Taps beyond the padded frame read the border too: clamp them onto it.
    x0i = x0.clamp(0, width + 1).long()
    x1i = (x0 + 1).clamp(0, width + 1).long()
    y0i = y0.clamp(0, height + 1).long()
    y1i = (y0 + 1).clamp(0, height + 1).long()
    stride = width + 2
    index = torch.stack([y0i * stride + x0i, y0i * stride + x1i, y1i * stride + x0i, y1i * stride + x1i])
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]).float()
    return _PlaneGather(index.to(device), weight.to(device), src_shape, map_x.shape, border)


def _remap_plane(plane: torch.Tensor, gather: _PlaneGather) -> torch.Tensor:
    """plane uint8 [h, w] -> uint8 out_shape, rounded like cv2 (to nearest)."""
    padded = torch.nn.functional.pad(plane.float()[None, None], (1, 1, 1, 1), value=float(gather.border))
    values = padded.reshape(-1)[gather.index]  # [4, n]
    out = (values * gather.weight).sum(0)
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(gather.out_shape)


class TorchPlaneRemapper:
    """Remaps yuv420p frames [H*3/2, W] of the source fisheye size to the rectified camera's size, on
    `device`. Inputs are uint8 tensors on that device; so are the outputs."""

    def __init__(self, calib: FisheyeCalibration, camera: PinholeCamera, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.src_size = (calib.width, calib.height)
        self.out_size = (camera.width, camera.height)
        (y_x, y_y), (c_x, c_y) = yuv420_plane_maps(calib, camera)
        w, h = self.src_size
        self._luma = _plane_gather(y_x, y_y, (h, w), BLACK_Y, self.device)
        self._chroma = _plane_gather(c_x, c_y, (h // 2, w // 2), NEUTRAL_UV, self.device)

    def planes(self, yuv: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
        """Views of Y [H, W], U and V [H/2, W/2] inside a packed yuv420p tensor [H*3/2, W]."""
        flat = yuv.reshape(-1)
        y_size, c_size = width * height, (width // 2) * (height // 2)
        return (
            flat[:y_size].view(height, width),
            flat[y_size : y_size + c_size].view(height // 2, width // 2),
            flat[y_size + c_size :].view(height // 2, width // 2),
        )

    def remap_planes(
        self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three planes separately (as NVDEC hands them over), each uint8 on the device."""
        return _remap_plane(y, self._luma), _remap_plane(u, self._chroma), _remap_plane(v, self._chroma)

    def __call__(self, yuv: torch.Tensor) -> torch.Tensor:
        w, h = self.src_size
        if tuple(yuv.shape) != (h * 3 // 2, w):
            raise ValueError(f"expected a yuv420p tensor of shape {(h * 3 // 2, w)}, got {tuple(yuv.shape)}")
        out = self.remap_planes(*self.planes(yuv, w, h))
        return torch.cat([plane.reshape(-1) for plane in out]).view(
            self.out_size[1] * 3 // 2, self.out_size[0]
        )
