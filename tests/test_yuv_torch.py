"""egoclean.yuv_torch: plane tensors are views of the frame's own memory (yuv420p and nv12), and the torch
yuv420 -> RGB conversion agrees with the CPU path's swscale (`frame.reformat(format="rgb24")`, what
`iter_frames(path, "rgb24")` returns) on synthetic frames and on decoded H.264 frames, untagged and BT.709.

On x86-64 swscale's converter is SIMD with a fixed rounding that yuv420_to_rgb reproduces: equal bit for bit
(measured). Other CPUs take other swscale code, so there the bound is the one the GPU path needs."""

from __future__ import annotations

import platform
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from egoclean.hwdecode import open_for_decode
from egoclean.video import VideoWriter, decode, iter_frames, plane_arrays
from egoclean.yuv_torch import frame_color, plane_tensors, yuv420_to_rgb
from tests.helpers import moving_frame, rgb_to_yuv420p

EXACT = platform.machine().lower() in ("x86_64", "amd64")
MEAN_BOUND, MAX_BOUND = (0.0, 0) if EXACT else (0.5, 2)


def synthetic_frame(width: int, height: int, fmt: str = "yuv420p", seed: int = 0) -> av.VideoFrame:
    """Smooth gradients over the whole range, sharp-edged blocks, and a noisy strip, in every plane."""
    frame = av.VideoFrame(width, height, fmt)
    y, u, v = plane_arrays(frame)
    rng = np.random.default_rng(seed)
    for plane, (fx, fy) in zip((y, u, v), ((1.0, 0.5), (0.7, 1.3), (1.9, 0.4)), strict=True):
        rows, cols = np.mgrid[0 : plane.shape[0], 0 : plane.shape[1]]
        ramp = cols * fx * 255 / max(plane.shape[1] - 1, 1) + rows * fy * 255 / max(plane.shape[0] - 1, 1)
        plane[:] = (ramp % 256).astype(np.uint8)
        plane[rows // 6 % 2 == (cols // 5) % 2] ^= 0xC0  # a checkerboard of hard edges
        plane[-4:] = rng.integers(0, 256, plane[-4:].shape)  # and every code value side by side
    return frame


def compare(ours: torch.Tensor, reference: np.ndarray) -> tuple[float, int]:
    diff = np.abs(ours.cpu().numpy().astype(np.int16) - reference.astype(np.int16))
    return float(diff.mean()), int(diff.max())


def swscale_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.reformat(format="rgb24", threads=1).to_ndarray()


def test_plane_tensors_view_yuv420p_planes():
    frame = synthetic_frame(70, 50)  # 70 px rows are padded to a larger line size
    arrays = plane_arrays(frame)
    tensors = plane_tensors(frame)
    for plane, array, tensor in zip(frame.planes, arrays, tensors, strict=True):
        assert tensor.dtype == torch.uint8 and tensor.device.type == "cpu"
        assert tuple(tensor.shape) == array.shape == (plane.height, plane.width)
        assert tensor.stride() == (plane.line_size, 1) and plane.line_size > plane.width
        assert tensor.data_ptr() == array.ctypes.data  # the frame's buffer itself: no copy
        np.testing.assert_array_equal(tensor.numpy(), array)
    arrays[0][3, 4] ^= 0xFF  # and a write through the frame shows in the tensor
    assert int(tensors[0][3, 4]) == int(arrays[0][3, 4])


def test_plane_tensors_split_nv12_chroma():
    source = synthetic_frame(70, 50)
    frame = source.reformat(format="nv12")
    assert frame.format.name == "nv12"
    y, u, v = plane_tensors(frame)
    uv_plane = frame.planes[1]
    uv = np.frombuffer(memoryview(uv_plane), np.uint8).reshape(uv_plane.height, uv_plane.line_size)
    uv = uv[:, : 2 * uv_plane.width].reshape(uv_plane.height, uv_plane.width, 2)
    assert u.data_ptr() == uv.ctypes.data and v.data_ptr() == uv.ctypes.data + 1
    assert u.stride() == v.stride() == (uv_plane.line_size, 2)
    np.testing.assert_array_equal(u.numpy(), uv[..., 0])
    np.testing.assert_array_equal(v.numpy(), uv[..., 1])
    for tensor, array in zip((y, u, v), plane_arrays(source), strict=True):  # yuv420p -> nv12 is lossless
        np.testing.assert_array_equal(tensor.numpy(), array)


@pytest.mark.parametrize("fmt", ["yuv420p10le", "rgb24", "yuv444p", "gray"])
def test_plane_tensors_refuse_other_layouts(fmt):
    with pytest.raises(ValueError, match=fmt):
        plane_tensors(av.VideoFrame(64, 48, fmt))


def test_plane_tensors_refuse_odd_nv12():
    # PyAV exports nv12 chroma as [H//2, W//2, 2]: an odd-sized frame would lose a row or column of it
    with pytest.raises(ValueError, match="even size"):
        plane_tensors(av.VideoFrame(65, 48, "nv12"))


# (colorspace, color_range) tags: unspecified (BT.601, limited), BT.709 limited, BT.601 full, BT.709 full,
# SMPTE 170M; reformat reads them from the frame.
TAGS = [(2, 0), (1, 1), (5, 2), (1, 2), (6, 1), (9, 1)]


@pytest.mark.parametrize("size", [(320, 240), (70, 50), (65, 48)])
@pytest.mark.parametrize("tags", TAGS)
def test_matches_swscale_on_synthetic_frames(size, tags):
    frame = synthetic_frame(*size)
    frame.colorspace, frame.color_range = tags
    colorspace, full_range = frame_color(frame)
    assert (colorspace, full_range) == (tags[0], tags[1] == 2)
    mean, worst = compare(yuv420_to_rgb(*plane_tensors(frame), colorspace, full_range), swscale_rgb(frame))
    assert mean <= MEAN_BOUND and worst <= MAX_BOUND, (mean, worst)
    if size[0] % 2:
        return  # no nv12 of an odd width (test_plane_tensors_refuse_odd_nv12)
    nv12 = frame.reformat(format="nv12")  # the layout NVDEC hands over: same planes, so the same RGB
    mean, worst = compare(yuv420_to_rgb(*plane_tensors(nv12), colorspace, full_range), swscale_rgb(frame))
    assert mean <= MEAN_BOUND and worst <= MAX_BOUND, (mean, worst)


def test_yuvj420p_is_full_range():
    frame = synthetic_frame(64, 48, "yuvj420p")
    assert frame_color(frame)[1] is True
    mean, worst = compare(yuv420_to_rgb(*plane_tensors(frame), *frame_color(frame)), swscale_rgb(frame))
    assert mean <= MEAN_BOUND and worst <= MAX_BOUND


def test_reformat_honours_the_colour_tags():
    """The tags matter: a BT.709 frame converts differently from the same planes untagged (BT.601)."""
    frame = synthetic_frame(64, 48)
    untagged = swscale_rgb(frame)
    frame.colorspace = 1
    bt709 = swscale_rgb(frame)
    assert compare(torch.from_numpy(bt709), untagged)[1] > 10
    assert compare(yuv420_to_rgb(*plane_tensors(frame), colorspace=1), bt709)[1] <= MAX_BOUND
    assert compare(yuv420_to_rgb(*plane_tensors(frame), colorspace=2), untagged)[1] <= MAX_BOUND


@pytest.fixture(scope="module", params=["untagged", "bt709"])
def clip(request, tmp_path_factory) -> Path:
    """Eight 320x240 H.264 frames of moving bands and a bright square, optionally tagged BT.709."""
    path = tmp_path_factory.mktemp("yuv") / f"{request.param}.mp4"
    color = (1, 1, 1, 1) if request.param == "bt709" else None
    with VideoWriter(path, 320, 240, Fraction(30), Fraction(1, 30), color=color) as writer:
        for index in range(8):
            writer.write(rgb_to_yuv420p(moving_frame(index, 320, 240)), pts=index)
    return path


def test_matches_iter_frames_on_a_decoded_clip(clip):
    expected_colorspace = 1 if clip.stem == "bt709" else 2
    for (_, _, frame), rgb in zip(decode(clip), iter_frames(clip, "rgb24"), strict=True):
        colorspace, full_range = frame_color(frame)
        assert (colorspace, full_range) == (expected_colorspace, False)
        mean, worst = compare(yuv420_to_rgb(*plane_tensors(frame), colorspace, full_range), rgb.data)
        assert mean <= MEAN_BOUND and worst <= MAX_BOUND, (mean, worst)


def test_batched_planes_convert_frame_by_frame():
    frames = [synthetic_frame(64, 48, seed=seed) for seed in range(3)]
    planes = [torch.stack(p) for p in zip(*(plane_tensors(f) for f in frames), strict=True)]
    batch = yuv420_to_rgb(*planes, colorspace=1)
    assert batch.shape == (3, 48, 64, 3) and batch.is_contiguous()
    for rgb, frame in zip(batch, frames, strict=True):
        assert torch.equal(rgb, yuv420_to_rgb(*plane_tensors(frame), colorspace=1))


def test_rejects_bad_inputs():
    y, u, v = plane_tensors(synthetic_frame(64, 48))
    with pytest.raises(ValueError, match="colorspace 3"):
        yuv420_to_rgb(y, u, v, colorspace=3)  # reformat refuses it too
    with pytest.raises(ValueError, match="uint8"):
        yuv420_to_rgb(y.float(), u, v)
    with pytest.raises(ValueError, match="must be"):
        yuv420_to_rgb(y, u[:-1], v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_conversion_equals_cpu():
    frame = synthetic_frame(320, 240)
    cpu = yuv420_to_rgb(*plane_tensors(frame), colorspace=1)
    gpu = yuv420_to_rgb(*(p.cuda() for p in plane_tensors(frame)), colorspace=1)
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_nvdec_frames_stay_on_the_gpu(clip):
    """NVDEC frames (format "cuda", nv12 inside) export without a copy and convert as the CPU path does."""
    container, decoder = open_for_decode(clip, "auto")
    with container:
        if decoder != "cuda":
            pytest.skip("no NVDEC decoder here")
        hw_frames = list(container.decode(container.streams.video[0]))
    cpu_frames = [frame for _, _, frame in decode(clip)]
    assert len(hw_frames) == len(cpu_frames)
    for hw, cpu in zip(hw_frames, cpu_frames, strict=True):
        assert hw.format.name == "cuda" and hw.sw_format.name == "nv12"
        planes = plane_tensors(hw)
        assert all(p.device.type == "cuda" for p in planes)
        for tensor, array in zip(planes, plane_arrays(cpu), strict=True):  # H.264 decoding is bit-exact
            np.testing.assert_array_equal(tensor.cpu().numpy(), array)
        rgb = yuv420_to_rgb(*planes, *frame_color(hw))
        assert rgb.device.type == "cuda"
        mean, worst = compare(rgb, swscale_rgb(cpu))
        assert mean <= MEAN_BOUND and worst <= MAX_BOUND, (mean, worst)
