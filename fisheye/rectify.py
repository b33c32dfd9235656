"""Rectify a fisheye video to a pinhole video: decode, remap, encode, streamed and overlapped.

Frames stay in yuv420p from decoder to encoder: the full-size Y plane and the half-size U and V planes are
remapped separately (half the bytes of BGR and no colour conversions). Maps are built once
per clip. Decoding, remapping and encoding run in three threads joined by small bounded queues, so the stages
overlap on the cores (FFmpeg and OpenCV release the GIL) and memory stays flat whatever the clip length.

Public API:
    PlaneRemapper(calib, camera)(yuv420p) -> yuv420p       (pure: array in, array out)
    rectify_video(src, dst, calib, camera, encoder, progress) -> RectifyStats
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np

from egoclean.errors import VideoError
from egoclean.hwdecode import pick_decoder
from egoclean.video import (
    ENCODERS,
    NVENC_ENCODERS,
    REWRITE_IT,
    VideoInfo,
    VideoWriter,
    converted,
    encoder_works,
    plane_arrays,
    prefetch,
    probe,
)
from egoclean.video import (
    decode as decode_frames,
)
from fisheye.camera import FisheyeCalibration, PinholeCamera, yuv420_plane_maps

if TYPE_CHECKING:  # torch is imported only by the torch remap
    from egoclean.yuv_torch import Planes

QUEUE_FRAMES = 8  # frames buffered between stages: enough to absorb jitter, small enough to keep memory flat
# Limited-range black, for output pixels outside the lens (only with a wide --hfov).
BLACK_Y, NEUTRAL_UV = 16, 128


ENCODER_CHOICES = ("auto", "libx264", "libx265", "nvenc")


@dataclass(frozen=True)
class EncoderSettings:
    """The output encoder; defaults and checks live in fisheye.settings.Phase1Settings."""

    codec: str  # "h264" or "h265"
    crf: int
    preset: str
    encoder: str = "auto"  # ENCODER_CHOICES: auto = NVENC when frames are on an NVENC GPU, else libx26x


def pick_encoder(settings: EncoderSettings, frames_on_gpu: bool) -> str:
    """The FFmpeg encoder for `settings`: libx264/libx265, or NVENC when asked for (it must work here) or
    when `auto` and the frames are decoded on a GPU that has NVENC (an RTX 3090; not an H100 or H200)."""
    software, nvenc = ENCODERS[settings.codec], NVENC_ENCODERS[settings.codec]
    if settings.encoder == "nvenc":
        if not encoder_works(nvenc):
            raise VideoError(
                f"--encoder nvenc: {nvenc} does not open here; it needs an NVIDIA GPU with NVENC and its "
                "driver (H100/H200 have none): use --encoder auto or libx264"
            )
        return nvenc
    if settings.encoder == "auto" and frames_on_gpu and encoder_works(nvenc):
        return nvenc
    return software


@dataclass(frozen=True)
class RectifyStats:
    frames: int
    source: VideoInfo
    preview_rgb: tuple[np.ndarray, np.ndarray] | None  # (fisheye, rectified) RGB of the middle frame
    decoder: str = "cpu"  # where the source was decoded: cpu or cuda (NVDEC)
    remap: str = "cv2"  # cv2 (CPU), or torch-cpu / torch-cuda (fisheye.remap_torch)
    encoder: str = "libx264"  # the FFmpeg encoder that wrote the output


class PlaneRemapper:
    """Remaps yuv420p frames [H*3/2, W] of the source fisheye size to the rectified camera's size."""

    def __init__(self, calib: FisheyeCalibration, camera: PinholeCamera) -> None:
        self.src_size = (calib.width, calib.height)
        self.out_size = (camera.width, camera.height)
        (self.y_map_x, self.y_map_y), (self.c_map_x, self.c_map_y) = yuv420_plane_maps(calib, camera)

    @staticmethod
    def planes(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views of the Y [H, W], U and V [H/2, W/2] planes inside a packed yuv420p array [H*3/2, W]."""
        flat = yuv.reshape(-1)
        y_size, c_size = width * height, (width // 2) * (height // 2)
        return (
            flat[:y_size].reshape(height, width),
            flat[y_size : y_size + c_size].reshape(height // 2, width // 2),
            flat[y_size + c_size :].reshape(height // 2, width // 2),
        )

    def __call__(self, yuv: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        W, H = self.out_size
        if yuv.shape != (self.src_size[1] * 3 // 2, self.src_size[0]):
            raise ValueError(
                f"expected a yuv420p array of shape {(self.src_size[1] * 3 // 2, self.src_size[0])}, "
                f"got {yuv.shape}"
            )
        out = np.empty((H * 3 // 2, W), np.uint8) if out is None else out
        self.remap_planes(self.planes(yuv, *self.src_size), self.planes(out, W, H))
        return out

    def remap_planes(self, src: Sequence[np.ndarray], dst: Sequence[np.ndarray]) -> None:
        """Remap source planes (Y, U, V; rows may be strided, e.g. a PyAV frame's) into `dst`'s planes."""
        y, u, v = src
        oy, ou, ov = dst
        cv2.remap(y, self.y_map_x, self.y_map_y, cv2.INTER_LINEAR, dst=oy, borderValue=BLACK_Y)
        cv2.remap(u, self.c_map_x, self.c_map_y, cv2.INTER_LINEAR, dst=ou, borderValue=NEUTRAL_UV)
        cv2.remap(v, self.c_map_x, self.c_map_y, cv2.INTER_LINEAR, dst=ov, borderValue=NEUTRAL_UV)


def output_color(source: VideoInfo) -> tuple[int, int, int, int]:
    """The source's colour tags for the output, except the range: the reader hands over limited-range
    yuv420p, so a full-range (yuvj420p) source has been converted to limited range (1 = MPEG/tv)."""
    colorspace, color_range, primaries, trc = source.color
    return colorspace, 1 if source.pix_fmt.startswith("yuvj") else color_range, primaries, trc


def yuv420p_to_rgb(yuv: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)


def rectify_video(
    src: str | Path,
    dst: str | Path,
    calib: FisheyeCalibration,
    camera: PinholeCamera,
    encoder: EncoderSettings,
    progress: Callable[[int], None] | None = None,
    on_frame: Callable[[int, int, av.VideoFrame, Planes | None], None] | None = None,
    decode: str = "cpu",
    remap_device: str | None = None,
    threads: int = 0,
    label: str | None = None,
    remedy: str = REWRITE_IT,
) -> RectifyStats:
    """Rectify every frame of `src` into `dst` (an MP4), keeping each frame's timestamp.

    calib: the lens, at any calibration size (scaled here to the video's size).
    camera: the rectified pinhole camera (its size is the output size).
    progress: called with the number of frames finished since the last call.
    on_frame: called with (index, pts, rectified yuv420p frame, its Y/U/V planes as torch tensors on the
        GPU when the remap ran there, else None) for every frame, in order, before it is encoded: the
        one-pass path hands the frames to V-JEPA 2 with no encode-decode loss (and, from the GPU, without
        them leaving it). The frame carries the output's colour tags (so an RGB conversion of it matches
        one of the decoded output) and must not be changed: the encoder may still hold it.
    decode: cpu, cuda (NVDEC; frames stay on the GPU and are remapped there by torch) or auto
        (egoclean.hwdecode.pick_decoder).
    remap_device: remap with the torch op on this device ("cpu" checks the GPU path's code on a CPU);
        None = cv2 on the CPU, unless the frames are decoded on the GPU.
    threads: threads of the CPU decoder, of x264/x265 and of cv2's remap, each; 0 = FFmpeg's and cv2's
        choice from the machine's cores (x264: 1.5 per core), which oversubscribes a node that runs one
        rectifier per core. cv2's count is process-wide: it is set for the clip and restored after.
    label, remedy: how an error about `src` names it (default: its path) and what it says to do, as
        egoclean.video.probe's (a shard's clip: fisheye.shards.clip_origin and SHARD_DAMAGED).
    """
    src, dst = Path(src), Path(dst)
    info = probe(src, label, remedy)
    if info.width % 2 or info.height % 2:
        raise VideoError(
            f"{src}: frame size {info.width}x{info.height} is odd; yuv420p video needs even sizes"
        )
    decoder = pick_decoder(src, decode)
    if decoder == "cuda":
        remap_device = "cuda"
    calib_at_frame = calib.scaled_to(info.width, info.height)
    preview_index = info.n_frames // 2
    color = output_color(info)
    writer = VideoWriter(
        dst,
        camera.width,
        camera.height,
        info.rate,
        info.time_base,
        codec=encoder.codec,
        crf=encoder.crf,
        preset=encoder.preset,
        threads=threads,
        color=color,
        encoder=pick_encoder(encoder, frames_on_gpu=decoder == "cuda"),
    )

    def new_rectified_frame() -> av.VideoFrame:
        frame = writer.new_frame()
        frame.colorspace, frame.color_range = color[0], color[1]  # tags only: the same bytes out
        return frame

    def remap_frames(
        frames: Iterator[tuple[int, int, av.VideoFrame]],
    ) -> Iterator[tuple[int, int, av.VideoFrame, np.ndarray | None, Planes | None]]:
        """(index, pts, rectified frame, the source frame's RGB for the preview frame only, no GPU planes).
        The remap reads the decoder's frame and writes the encoder's frame in place: no to_ndarray or
        from_ndarray copy (2 x 3 MB per 1080p frame; bench/RESULTS.md, issue 14)."""
        remap = PlaneRemapper(calib_at_frame, camera)
        for index, pts, frame in frames:
            source = converted(frame, "yuv420p")
            rectified = new_rectified_frame()
            remap.remap_planes(plane_arrays(source), plane_arrays(rectified))
            preview = yuv420p_to_rgb(source.to_ndarray()) if index == preview_index else None
            yield index, pts, rectified, preview, None

    def remap_frames_torch(
        frames: Iterator[tuple[int, int, av.VideoFrame]],
    ) -> Iterator[tuple[int, int, av.VideoFrame, np.ndarray | None, Planes | None]]:
        """The same with the torch remap on `remap_device`: NVDEC frames are remapped where they are and
        only the rectified planes come back to the host, for the encoder."""
        import torch  # only for this path: the CPU default never imports it

        from egoclean.yuv_torch import frame_rgb, plane_tensors
        from fisheye.remap_torch import TorchPlaneRemapper

        remap = TorchPlaneRemapper(calib_at_frame, camera, remap_device or "cpu")
        on_gpu = remap.device.type == "cuda"
        for index, pts, frame in frames:
            planes = plane_tensors(frame if frame.format.name == "cuda" else converted(frame, "yuv420p"))
            rectified = new_rectified_frame()
            out = remap.remap_planes(*planes)
            for host, plane in zip(plane_arrays(rectified), out, strict=True):
                torch.from_numpy(host).copy_(plane)
            preview = None
            if index == preview_index:
                preview = frame_rgb(frame, planes=planes).cpu().numpy()
            yield index, pts, rectified, preview, out if on_gpu else None

    # three stages on three threads: decode | remap | encode (here). NVDEC's frame pool is small: frames
    # queued on the GPU hold its surfaces, so that queue is short.
    cv2_threads = cv2.getNumThreads()
    if threads:
        cv2.setNumThreads(threads)
    decoded = prefetch(
        decode_frames(src, threads, decoder, label, remedy), QUEUE_FRAMES if decoder == "cpu" else 2
    )
    remapped = (remap_frames if remap_device is None else remap_frames_torch)(decoded)
    stages = prefetch(remapped, QUEUE_FRAMES)
    frames, preview = 0, None
    try:
        for index, pts, rectified, source_rgb, device_planes in stages:
            if on_frame is not None:
                on_frame(index, pts, rectified, device_planes)
            writer.write(rectified, pts)
            if source_rgb is not None:
                preview = (source_rgb, yuv420p_to_rgb(rectified.to_ndarray()))
            frames += 1
            if progress and frames % 10 == 0:
                progress(10)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        stages.close()  # stops the stage threads if the encoder failed
        cv2.setNumThreads(cv2_threads)
    if progress and frames % 10:
        progress(frames % 10)
    if frames == 0:
        raise VideoError(
            f"{src}: no frame could be decoded; the file is corrupt: delete it and fetch it again"
        )
    remap_name = "cv2" if remap_device is None else f"torch-{remap_device.split(':')[0]}"
    return RectifyStats(frames, info, preview, decoder, remap_name, writer.encoder)
