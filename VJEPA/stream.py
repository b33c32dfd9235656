"""Decode once, preprocess once, batch whole windows: frames in, model-ready window batches out.

Each decoded frame is preprocessed exactly once (in small chunks, as batched torch ops on the model's
device) into a ring buffer that holds one window's span of preprocessed frames. When a frame completes
a window, that window's frames are gathered from the ring into the next slot of a batch; full batches
are yielded. Host memory holds only one chunk of decoded frames, whatever the clip length.

Frames the windows never use (between sampled frames when frame_step > 1) are skipped before
preprocessing; they are still decoded, since the reader decodes every frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from egoclean.video import Frame
from VJEPA.preprocess import CropMode, PreprocessSpec, crop_offsets, preprocess_frames, resized_size
from VJEPA.windows import frame_is_needed, span_frames, window_ending_at, window_frame_indices

# Frames preprocessed together: enough to amortise per-call overhead, small enough to keep host memory
# low (8 decoded 1080p RGB frames = 50 MB).
PREPROCESS_CHUNK_FRAMES = 8


@dataclass(frozen=True)
class WindowBatch:
    """Up to batch_size consecutive windows, ready for the model.

    pixels: [B, V, T, 3, crop, crop] in the model dtype, on the model device (V crops per window, T = window
    frames). Valid only until the next batch is requested: the buffer is reused.
    start_indices: int64 [B], each window's first frame index. start_times_s: float64 [B], that frame's time.
    """

    pixels: torch.Tensor
    start_indices: np.ndarray
    start_times_s: np.ndarray


@dataclass
class StreamStats:
    """Filled in while streaming: frames decoded and preprocessed, and the frame size seen."""

    n_frames: int = 0
    width: int = 0
    height: int = 0


class _HostToDevice:
    """Decoded frames to the model's device. On CUDA: pinned host buffers used in turn (two), each copied on
    a side stream so that the copy of chunk k+1 overlaps the preprocessing and model work on chunk k; the
    compute stream waits for a copy before it reads it, and a host buffer is refilled only once its last
    copy has finished. Elsewhere the frames are used in place."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.buffers: list[torch.Tensor] = []
        self.done: dict[int, torch.cuda.Event] = {}  # buffer data_ptr -> its last copy's end
        self.resident = False  # frames arrive on the device already

    def host_buffer(self, shape: tuple[int, ...], on_device: bool = False) -> torch.Tensor:
        """The chunk buffer frames are gathered into; `on_device` for frames decoded on the GPU (NVDEC),
        which never visit the host: one buffer on the device, nothing to copy."""
        self.resident = on_device
        if on_device:
            self.buffers = [torch.empty(shape, dtype=torch.uint8, device=self.device)]
            return self.buffers[0]
        self.buffers = [
            torch.empty(shape, dtype=torch.uint8, pin_memory=self.cuda) for _ in range(2 if self.cuda else 1)
        ]
        return self.buffers[0]

    def send(self, host: torch.Tensor) -> torch.Tensor:
        if not self.cuda or self.resident:
            return host
        assert self.stream is not None
        with torch.cuda.stream(self.stream):
            on_device = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.done[host.data_ptr()] = event
        torch.cuda.current_stream(self.device).wait_event(event)
        on_device.record_stream(torch.cuda.current_stream(self.device))  # freed only after compute used it
        return on_device

    def next_host_buffer(self, current: torch.Tensor) -> torch.Tensor:
        if len(self.buffers) == 1:
            return current
        following = self.buffers[1] if current.data_ptr() == self.buffers[0].data_ptr() else self.buffers[0]
        if (event := self.done.get(following.data_ptr())) is not None:
            event.synchronize()  # its previous copy must be over before the decoder overwrites it
        return following


def iter_window_batches(
    frames: Iterable[Frame],
    spec: PreprocessSpec,
    window: int,
    stride_frames: int,
    frame_step: int = 1,
    crop_mode: CropMode = "center",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    stats: StreamStats | None = None,
) -> Iterator[WindowBatch]:
    """Stream `frames` (rgb24, in order, index from 0; numpy arrays, or torch tensors on the model's device
    from NVDEC) into batches of full windows.

    Window k covers frames k * stride_frames + i * frame_step, i = 0..window-1 (see VJEPA.windows);
    a tail too short for a full window yields nothing. `stats`, if given, is updated as frames arrive.
    Raises ValueError if the frames are too small for the crop or change size mid-clip.
    """
    device = torch.device(device)
    stats = stats if stats is not None else StreamStats()
    span = span_frames(window, frame_step)
    n_views = 3 if crop_mode == "three" else 1
    crop = spec.crop_size
    # Buffers are allocated once and reused: fresh multi-MB allocations cost page faults on every call.
    host_chunk: torch.Tensor | None = None  # [chunk, H, W, 3] uint8 decoded frames, pinned for CUDA
    copier = _HostToDevice(device)
    chunk_indices: list[int] = []
    ring = torch.empty((n_views, span, 3, crop, crop), dtype=dtype, device=device)  # frame i: slot i % span
    ring_times_s = np.zeros(span, dtype=np.float64)
    batch = torch.empty((batch_size, n_views, window, 3, crop, crop), dtype=dtype, device=device)
    batch_starts: list[int] = []
    batch_times_s: list[float] = []

    def flush_chunk() -> None:
        nonlocal host_chunk
        assert host_chunk is not None
        on_device = copier.send(host_chunk[: len(chunk_indices)])
        host_chunk = copier.next_host_buffer(host_chunk)
        pixels = preprocess_frames(on_device, spec, crop_mode, dtype)
        slots = torch.tensor([i % span for i in chunk_indices], device=device)
        ring.index_copy_(1, slots, pixels.transpose(0, 1))
        chunk_indices.clear()

    def emit(n: int) -> WindowBatch:
        out = WindowBatch(
            pixels=batch[:n],
            start_indices=np.asarray(batch_starts, dtype=np.int64),
            start_times_s=np.asarray(batch_times_s, dtype=np.float64),
        )
        batch_starts.clear()
        batch_times_s.clear()
        return out

    for frame in frames:
        if host_chunk is None:
            stats.height, stats.width = frame.data.shape[:2]
            # Fail on a frame too small for the crop before decoding the rest of the clip.
            crop_offsets(*resized_size(stats.height, stats.width, spec.shortest_edge), crop, crop_mode)
            on_device = isinstance(frame.data, torch.Tensor) and frame.data.device.type != "cpu"
            if on_device and frame.data.device != device:
                raise ValueError(f"frames are on {frame.data.device}, the model on {device}")
            host_chunk = copier.host_buffer(
                (PREPROCESS_CHUNK_FRAMES, stats.height, stats.width, 3), on_device=on_device
            )
        if frame.data.shape != host_chunk.shape[1:]:
            raise ValueError(
                f"frame {frame.index} is {frame.data.shape}, the clip began {host_chunk.shape[1:]}"
            )
        stats.n_frames = frame.index + 1
        if not frame_is_needed(frame.index, window, stride_frames, frame_step):
            continue
        ring_times_s[frame.index % span] = frame.time_s
        if isinstance(frame.data, torch.Tensor):
            host_chunk[len(chunk_indices)] = frame.data
        else:  # numpy, not torch: torch's copy is an OpenMP region whose idle threads then spin on the
            # cores x264 needs in the one pass (bench/RESULTS.md, one pass against two)
            np.copyto(host_chunk[len(chunk_indices)].numpy(), frame.data)
        chunk_indices.append(frame.index)
        k = window_ending_at(frame.index, window, stride_frames, frame_step)
        if k is None and len(chunk_indices) < PREPROCESS_CHUNK_FRAMES:
            continue
        # Flush at every window end, so the ring (one span) still holds all of that window's frames.
        flush_chunk()
        if k is None:
            continue
        start = k * stride_frames
        slots = torch.from_numpy(window_frame_indices(start, window, frame_step) % span).to(device)
        torch.index_select(ring, 1, slots, out=batch[len(batch_starts)])  # [V, T, 3, crop, crop]
        batch_starts.append(start)
        batch_times_s.append(float(ring_times_s[start % span]))
        if len(batch_starts) == batch_size:
            yield emit(batch_size)
    if batch_starts:
        yield emit(len(batch_starts))
