"""Decoded PyAV frames as torch plane tensors, and yuv420 -> RGB in torch: one code path for CPU and CUDA.

The GPU path decodes on NVDEC and keeps frames on the device; this turns their planes into tensors without a
copy (DLPack) and converts them to RGB where they are, agreeing with the CPU path's swscale conversion
(`egoclean.video.iter_frames(path, "rgb24")`, i.e. `frame.reformat(format="rgb24", threads=1)`).

Definitions:
    plane tensors: uint8 views Y [H, W], U and V [ceil(H/2), ceil(W/2)] sharing the frame's memory. Rows keep
        the frame's line size (padding included) as their stride; the views stop at the visible width.
    colorspace: FFmpeg's AVColorSpace of the frame (`frame.colorspace`): 1 = BT.709; 5, 6 = BT.601;
        2 = unspecified and 0 = "RGB", which swscale (and so PyAV's reformat) converts as BT.601.
        4 (FCC), 7 (SMPTE 240M) and 9 (BT.2020 NCL) work too; reformat itself refuses 3, 8 and 10 and up.
    full range: Y 0-255 and CbCr 0-255 about 128 (frame.color_range 2, or a yuvj420p frame); otherwise
        limited range, Y 16-235 and CbCr 16-240 (color_range 0 "unspecified" or 1).

What reformat does (measured with PyAV 18.1, libswscale 9.5; tests/test_yuv_torch.py): it honours the
frame's colorspace and color_range tags (no src_colorspace argument needed), and for yuv420p -> rgb24 at the
same size it takes swscale's unscaled yuv2rgb converter: no chroma interpolation (each chroma sample colours
its 2x2 block), and 16-bit fixed-point arithmetic that floors every term (x86 SIMD, pmulhw). The result is up
to 2 code values below exact rounding. `yuv420_to_rgb` reproduces that arithmetic in int32, so it agrees with
reformat bit for bit on every even-height frame tested (x86-64), for BT.601 and BT.709, limited and full
range; exact rounding instead would differ by 0.7 on average, 3 at most. Odd heights are not matched: swscale
then takes its generic scaler, which interpolates chroma between rows (up to 255 apart at sharp chroma edges,
2 on flat chroma). Other CPUs run other swscale code (NEON, C tables) that rounds differently.

DLPack: PyAV 18.1 exports a plane with its real shape and strides (the nv12 UV plane as [H/2, W/2, 2]). For a
CUDA frame, `torch.from_dlpack(plane)` fails: torch passes its current stream and PyAV refuses any stream
("CUDA stream synchronization is not supported"), so the capsule is taken with `plane.__dlpack__()`. FFmpeg
writes NVDEC frames on the legacy default stream of the primary context (PyAV sets primary_ctx for
is_hw_owned frames), so work queued on torch's default stream sees them finished; `plane_tensors` makes any
other current stream wait for the default one. A tensor keeps its frame's buffer alive until it is dropped.

Public API:
    plane_tensors(frame) -> (y, u, v) uint8 tensor views of a yuv420p, yuvj420p or nv12 (CPU or CUDA) frame
    frame_color(frame) -> (colorspace, full_range)   the conversion reformat would apply to `frame`
    yuv420_to_rgb(y, u, v, colorspace=1, full_range=False) -> uint8 [..., H, W, 3] on the planes' device
    frame_rgb(frame, device=None, planes=None) -> uint8 [H, W, 3]: the three above in one call
"""

from __future__ import annotations

import av
import torch

# FFmpeg AVColorSpace -> swscale's YCbCr->RGB coefficients {crv, cbu, cgu, cgv} (x 65536, limited range),
# the table libswscale/yuv2rgb.c calls ff_yuv2rgb_coeffs. Only the colour spaces reformat accepts.
_BT601 = (104597, 132201, 25675, 53279)
_SWS_COEFFICIENTS = {
    0: _BT601,  # "RGB" on a YUV frame: swscale falls back to BT.601
    1: (117489, 138438, 13975, 34925),  # BT.709
    2: _BT601,  # unspecified
    4: (104448, 132798, 24759, 53109),  # FCC
    5: _BT601,  # BT.470BG
    6: _BT601,  # SMPTE 170M
    7: (117579, 136230, 16907, 35559),  # SMPTE 240M
    9: (110013, 140363, 12277, 42626),  # BT.2020 non-constant luminance
}

Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # Y, U, V of one yuv420 frame
_YUV420_FORMATS = ("yuv420p", "yuvj420p")
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG


def plane_tensors(frame: av.VideoFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 views Y [H, W], U and V [ceil(H/2), ceil(W/2)] of `frame`'s planes, on the frame's device.

    yuv420p/yuvj420p: the three planes. nv12 (and CUDA frames, whose layout is `frame.sw_format`, nv12 for
    8-bit NVDEC): U and V are the even and odd bytes of the interleaved UV plane, strided views.
    Raises ValueError for any other layout (e.g. yuv420p10le, p010le, yuv444p, rgb24).
    """
    layout = frame.format.name
    hardware = layout == "cuda"
    if hardware:
        sw_format = frame.sw_format
        layout = sw_format.name if sw_format is not None else "unknown"
    if layout not in (*_YUV420_FORMATS, "nv12"):
        where = f"CUDA frame of {layout}" if hardware else layout
        raise ValueError(f"plane_tensors takes yuv420p, yuvj420p or nv12 frames, not {where}")
    if layout == "nv12" and (frame.width % 2 or frame.height % 2):
        # PyAV exports the nv12 UV plane as [H//2, W//2, 2]: an odd size would lose a chroma row or column.
        size = f"{frame.width}x{frame.height}"
        raise ValueError(f"plane_tensors takes nv12 frames of even size only, not {size}")
    tensors = [_plane_tensor(plane) for plane in frame.planes]
    if hardware:
        _wait_for_decoder(tensors[0].device)
    width, height = frame.width, frame.height
    chroma_w, chroma_h = (width + 1) // 2, (height + 1) // 2
    y = tensors[0][:height, :width]
    if layout == "nv12":
        uv = tensors[1][:chroma_h, :chroma_w]  # [h, w, 2]
        return y, uv[..., 0], uv[..., 1]
    return y, tensors[1][:chroma_h, :chroma_w], tensors[2][:chroma_h, :chroma_w]


def _plane_tensor(plane: av.video.plane.VideoPlane) -> torch.Tensor:
    # The capsule, not the plane: torch.from_dlpack(plane) hands a CUDA plane torch's stream, which PyAV
    # 18.1 refuses. PyAV's shape is the visible size and its row stride the line size, so this is a view.
    return torch.from_dlpack(plane.__dlpack__())


def _wait_for_decoder(device: torch.device) -> None:
    # FFmpeg queues the NVDEC copy on the legacy default stream; torch's own streams do not wait for it.
    current = torch.cuda.current_stream(device)
    default = torch.cuda.default_stream(device)
    if current != default:
        current.wait_stream(default)


def frame_color(frame: av.VideoFrame) -> tuple[int, bool]:
    """(colorspace, full_range) that `frame.reformat(format="rgb24")` converts `frame` with: its own tags;
    yuvj420p is always full range. Pass them on to `yuv420_to_rgb`."""
    full = frame.color_range == _JPEG_RANGE or frame.format.name == "yuvj420p"
    return frame.colorspace, full


def _round16(value: int) -> int:
    """Round a 16.16 fixed-point value to an integer (swscale's roundToInt16, without its clipping)."""
    return (value + (1 << 15)) >> 16


def _scale_toward_zero(value: int, num: int, den: int) -> int:
    """value * num / den truncated toward zero, as C integer division does (Python's // floors)."""
    product = value * num
    return product // den if product >= 0 else -((-product) // den)


def _fixed_point(colorspace: int, full_range: bool) -> tuple[int, int, int, int, int, int]:
    """swscale's 16-bit multipliers (y_offset, y, v->r, u->g, v->g, u->b) for a pmulhw on inputs << 3."""
    if colorspace not in _SWS_COEFFICIENTS:
        raise ValueError(
            f"colorspace {colorspace} is not one swscale converts (supported: {sorted(_SWS_COEFFICIENTS)}; "
            "1 = BT.709, 2/5/6 = BT.601)"
        )
    crv, cbu, cgu, cgv = _SWS_COEFFICIENTS[colorspace]
    cgu, cgv = -cgu, -cgv
    if full_range:
        cy, oy = 1 << 16, 0
        crv, cbu, cgu, cgv = (_scale_toward_zero(c, 224, 255) for c in (crv, cbu, cgu, cgv))
    else:
        cy, oy = (1 << 16) * 255 // 219, 16 << 16
    return (
        _round16(oy * 8),
        _round16(cy * 8192),
        _round16(crv * 8192),
        _round16(cgu * 8192),
        _round16(cgv * 8192),
        _round16(cbu * 8192),
    )


def yuv420_to_rgb(
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    colorspace: int = 1,
    full_range: bool = False,
) -> torch.Tensor:
    """RGB uint8 [..., H, W, 3] of yuv420 planes: y uint8 [..., H, W], u and v [..., ceil(H/2), ceil(W/2)]
    (any strides, e.g. nv12 views; leading batch dimensions broadcast), on the planes' device.

    Exactly swscale's unscaled yuv420p -> rgb24: chroma repeated over its 2x2 block, every product floored
    after a 16-bit fixed-point multiply, then clipped to 0-255. int32 tensor ops only: no Python loop.
    """
    if y.dtype != torch.uint8 or u.dtype != torch.uint8 or v.dtype != torch.uint8:
        raise ValueError(f"planes must be uint8, got {y.dtype}, {u.dtype}, {v.dtype}")
    if y.dim() < 2:
        raise ValueError(f"y must be [..., H, W], got shape {tuple(y.shape)}")
    height, width = y.shape[-2:]
    chroma_shape = (*y.shape[:-2], (height + 1) // 2, (width + 1) // 2)
    if tuple(u.shape) != chroma_shape or tuple(v.shape) != chroma_shape:
        raise ValueError(
            f"u and v must be {chroma_shape} for y {tuple(y.shape)}, "
            f"got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    y_offset, y_mul, vr_mul, ug_mul, vg_mul, ub_mul = _fixed_point(colorspace, full_range)
    lead = tuple(y.shape[:-2])
    # pmulhw(x << 3, m) = floor(8x * m / 65536) = floor(x * m / 8192): an arithmetic >> 13 in int32 (exact,
    # floors negatives alike). In-place ops: every fresh 1080p buffer costs page faults on a small host.
    luma = y.to(torch.int32)
    luma.sub_(y_offset // 8).mul_(y_mul).bitwise_right_shift_(13)  # y_offset is 16 << 3 or 0
    # Chroma repeated across its two columns first (cheap on uint8), and down its two rows by broadcasting.
    wide = (*lead, chroma_shape[-2], 2 * chroma_shape[-1])
    cu = u.unsqueeze(-1).expand(*u.shape, 2).reshape(wide)[..., :width].to(torch.int32).sub_(128)
    cv = v.unsqueeze(-1).expand(*v.shape, 2).reshape(wide)[..., :width].to(torch.int32).sub_(128)
    offsets = torch.stack(
        [(cv * vr_mul) >> 13, ((cu * ug_mul) >> 13).add_((cv * vg_mul) >> 13), (cu * ub_mul) >> 13], dim=-3
    )  # [..., 3, h, W]
    if height % 2 == 0:
        half = height // 2
        planar = luma.reshape(*lead, 1, half, 2, width) + offsets.unsqueeze(-2)  # [..., 3, h, 2, W]
        planar = planar.reshape(*lead, 3, height, width)
    else:  # odd heights (rare): chroma repeated by row index; swscale interpolates instead (module docstring)
        rows = torch.arange(height, device=y.device) // 2
        planar = luma.unsqueeze(-3) + offsets.index_select(-2, rows)
    planar = planar.clamp_(0, 255).to(torch.uint8)
    # One interleaving copy to [..., H, W, 3] (the costliest step on a CPU).
    return torch.stack(planar.unbind(-3), dim=-1)


def frame_rgb(
    frame: av.VideoFrame, device: torch.device | str | None = None, planes: Planes | None = None
) -> torch.Tensor:
    """RGB uint8 [H, W, 3] of `frame` as reformat("rgb24") makes it, computed on `device` (default: where
    the planes are). `planes`: the frame's Y/U/V already as tensors (e.g. a GPU remap's output), used instead
    of the frame's own. A CPU frame of another layout is converted to yuv420p first."""
    if planes is None:
        planar = frame.format.name in ("cuda", *_YUV420_FORMATS, "nv12")  # plane_tensors checks a CUDA one
        planes = plane_tensors(frame if planar else frame.reformat(format="yuv420p"))
    y, u, v = planes if device is None else (plane.to(device) for plane in planes)
    return yuv420_to_rgb(y, u, v, *frame_color(frame))
