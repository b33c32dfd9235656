"""Video in and out through PyAV (FFmpeg's libraries): the one reader both phases use, and the encoder.

Frames are indexed and timed explicitly: frame `index` counts decoded frames from 0, `pts` is the stream's
own presentation timestamp and `time_s = pts * time_base`. Reading streams one frame at a time, so memory
stays flat whatever the clip length (a 20-minute 1080p clip is ~7.5 GB as RGB).

Public API:
    probe(path) -> VideoInfo
    iter_frames(path, pixel_format="rgb24", size=None) -> Iterator[Frame]
    decode(path) -> Iterator[(index, pts, av.VideoFrame)]   (no copy; plane_arrays(frame) views its planes)
    prefetch(items, depth) -> Iterator       (run a producer such as iter_frames in a background thread)
    Feeder(consume, depth)                   (the other way round: push items to a consumer's thread)
        .put(item), .finish() -> what consume returned, .abort()
    VideoWriter(path, width, height, rate, time_base, codec="h264", crf=18, preset="veryfast")
        .write(array, pts) or, without a copy, .write(frame, pts) of a .new_frame()
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar

import av
import av.codec.hwaccel
import numpy as np

from egoclean.errors import VideoError

T = TypeVar("T")
R = TypeVar("R")

# Items buffered ahead by a prefetch thread (16 decoded 1080p RGB frames = 100 MB, yuv420p = 50 MB).
PREFETCH_FRAMES = 16

# Encoder names by user-facing codec name. libx264/libx265 ship in PyAV's wheels, and
# so do NVIDIA's NVENC encoders, which work only with a driver and a GPU that has NVENC (an RTX 3090 does;
# H100 and H200 do not).
ENCODERS = {"h264": "libx264", "h265": "libx265"}
NVENC_ENCODERS = {"h264": "h264_nvenc", "h265": "hevc_nvenc"}
# x264/x265 speed presets mapped onto NVENC's p1 (fastest) .. p7 (best).
NVENC_PRESETS = {
    "ultrafast": "p1", "superfast": "p2", "veryfast": "p3", "faster": "p4", "fast": "p5", "medium": "p5",
    "slow": "p6", "slower": "p7", "veryslow": "p7",
}  # fmt: skip


def encoder_works(name: str) -> bool:
    """Whether FFmpeg encoder `name` opens here (NVENC needs a driver and an NVENC unit): a 256x256 try."""
    try:
        ctx = av.CodecContext.create(name, "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 30)
        ctx.open()
    except (av.FFmpegError, ValueError, OSError, AssertionError):
        return False
    return True


# FFmpeg reads MP4 and QuickTime files with one demuxer, named by the whole family ("mov,mp4,m4a,3gp,3g2,
# mj2"). Every clip here is an MP4: the dataset's and those VideoWriter writes. Other demuxers open other
# files happily: a JPEG or PNG renamed .mp4 reads (jpeg_pipe, png_pipe) as a video of one frame.
MP4_DEMUXER = "mp4"
REWRITE_IT = "delete it and fetch or write it again"  # what to do about a bad file, unless the caller knows


def duration_tolerance_s(fps: float) -> float:
    """How far two durations of the same frames may differ: containers round the last frame's length and
    edit lists differently. Three frames, and at least half a second (the frame count is the exact check)."""
    return max(0.5, 3.0 / fps)


def durations_agree(a_s: float, b_s: float, fps: float) -> bool:
    return abs(a_s - b_s) <= duration_tolerance_s(fps)


@dataclass(frozen=True)
class VideoInfo:
    """What the container and first video stream say about a file (nothing is decoded)."""

    path: Path
    width: int
    height: int
    codec: str  # FFmpeg codec name, e.g. "hevc", "h264"
    pix_fmt: str
    rate: Fraction  # average frame rate, frames per second
    time_base: Fraction  # seconds per pts tick
    n_frames: int  # from the container index; estimated from duration when the container has none
    duration_s: float
    color: tuple[int, int, int, int] = (2, 0, 2, 2)  # FFmpeg (colorspace, range, primaries, trc); 2/0 = unset

    @property
    def fps(self) -> float:
        return float(self.rate)


@dataclass(frozen=True)
class Frame:
    """One decoded frame. `data`: [H, W, 3] uint8 for rgb24/bgr24, [H*3/2, W] for yuv420p, [H, W] for gray;
    a numpy array, or a torch tensor on the device that decoded it (egoclean.hwdecode.iter_rgb_tensors)."""

    index: int
    pts: int
    time_s: float
    data: Any  # np.ndarray | torch.Tensor (torch is not imported here)


def _open(
    path: Path,
    hwaccel: av.codec.hwaccel.HWAccel | None = None,
    label: str | None = None,
    remedy: str = REWRITE_IT,
) -> av.container.InputContainer:
    """`path` opened for reading, refused unless it is an MP4 holding a video stream (see probe)."""
    label = label or str(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file; check the path or rerun the step that writes it")
    try:
        container = av.open(str(path), mode="r", hwaccel=hwaccel)
    except (av.FFmpegError, OSError) as err:
        raise VideoError(
            f"{label}: not a readable video ({err.__class__.__name__}: {err}), truncated or corrupt; {remedy}"
        ) from err
    demuxer = container.format
    if MP4_DEMUXER not in demuxer.name.split(","):
        container.close()
        raise VideoError(
            f"{label}: not an MP4 video (FFmpeg reads it as {demuxer.long_name!r}, {demuxer.name}: a still "
            f"image renamed .mp4, say); {remedy}"
        )
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label}: holds no video stream; {remedy}")
    return container


def probe(path: str | Path, label: str | None = None, remedy: str = REWRITE_IT) -> VideoInfo:
    """Read the header of `path` and describe its first video stream.

    Raises VideoError, naming the file as `label` (default: its path) and ending with `remedy` (what to do:
    the caller knows where the file came from), for a file that is missing, unreadable, not an MP4 (a still
    image renamed .mp4 would otherwise read as a video of one frame) or without a video stream.
    """
    path = Path(path)
    with _open(path, label=label, remedy=remedy) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        time_base = stream.time_base or Fraction(1, 90000)
        if stream.duration is not None:
            duration_s = float(stream.duration * time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        n_frames = stream.frames or round(duration_s * rate)
        if ctx.width <= 0 or ctx.height <= 0:
            raise VideoError(f"{label or path}: video stream has no frame size; {remedy}")
        return VideoInfo(
            path=path,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            pix_fmt=ctx.format.name if ctx.format else "unknown",
            rate=Fraction(rate),
            time_base=Fraction(time_base),
            n_frames=int(n_frames),
            duration_s=duration_s,
            color=(ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc),
        )


def decode(
    path: str | Path,
    threads: int = 0,
    device: str = "cpu",
    label: str | None = None,
    remedy: str = REWRITE_IT,
) -> Iterator[tuple[int, int, av.VideoFrame]]:
    """Decode `path` into PyAV frames, in presentation order: (index, pts, frame), with no copy.

    Each frame holds one of the decoder's buffers until it is dropped; `plane_arrays` views its planes.
    threads: decoder threads, 0 = FFmpeg's choice. Frame threading is on (HEVC 1080p on 2
        cores: 302 fps, against 194 for the ffmpeg command line).
    device: "cpu", or "cuda" for NVDEC with the frames left in GPU memory (format "cuda", nv12 inside:
        egoclean.yuv_torch.plane_tensors views them; egoclean.hwdecode.pick_decoder says if it works here).
    Raises VideoError if the file cannot be opened or breaks off mid-stream, naming it as `label` (default:
    its path) and ending with `remedy`, as probe does.
    """
    path = Path(path)
    hwaccel = None
    if device == "cuda":
        from egoclean.hwdecode import cuda_hwaccel

        hwaccel = cuda_hwaccel()
    container = _open(path, hwaccel, label, remedy)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        index = 0
        try:
            for frame in container.decode(stream):
                yield index, frame.pts if frame.pts is not None else index, frame
                index += 1
        except av.FFmpegError as err:
            raise VideoError(
                f"{label or path}: decoding failed at frame {index} ({err}), truncated or corrupt; {remedy}"
            ) from err
    finally:
        container.close()


def plane_arrays(frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
    """Writable numpy views [height, width] of each plane of a planar 8-bit `frame` (yuv420p: Y, U, V).

    Views, not copies: a 1080p yuv420p frame is 3 MB, and to_ndarray/from_ndarray copy it once each on
    the way through (bench/RESULTS.md, issue 14). Rows keep the frame's line size as their stride.
    """
    return tuple(_plane_view(plane, plane.height, plane.width) for plane in frame.planes)


def _plane_view(plane: av.video.plane.VideoPlane, height: int, row_bytes: int) -> np.ndarray:
    """The plane's buffer as uint8 [height, row_bytes], rows at the plane's line size (padding cut off)."""
    return np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)[:, :row_bytes]


PACKED_CHANNELS = {"rgb24": 3, "bgr24": 3, "gray": 1}  # packed 8-bit formats `packed_array` views


def packed_array(frame: av.VideoFrame) -> np.ndarray:
    """A numpy view [height, width, channels] (gray: [height, width]) of a packed 8-bit frame ("rgb24",
    "bgr24", "gray"): to_ndarray without its copy (6 MB per 1080p rgb24 frame). The view keeps the frame's
    buffer alive."""
    channels = PACKED_CHANNELS[frame.format.name]
    pixels = _plane_view(frame.planes[0], frame.height, frame.width * channels)
    return pixels if channels == 1 else pixels.reshape(frame.height, frame.width, channels)


def iter_frames(
    path: str | Path,
    pixel_format: str = "rgb24",
    size: tuple[int, int] | None = None,
    threads: int = 0,
    label: str | None = None,
    remedy: str = REWRITE_IT,
) -> Iterator[Frame]:
    """Decode `path` frame by frame, in presentation order, as numpy arrays.

    pixel_format: any FFmpeg pixel format PyAV converts to an array ("rgb24", "bgr24", "yuv420p", "gray").
    size: optional (width, height) to scale to with swscale (bicubic) while converting.
    threads: decoder threads, 0 = FFmpeg's choice.
    Raises VideoError if the file cannot be opened or breaks off mid-stream, named as `label` and ending with
    `remedy` (see decode).
    """
    for index, pts, frame in decode(path, threads, label=label, remedy=remedy):
        time_base = frame.time_base or Fraction(1, 90000)  # PyAV gives decoded frames the stream's
        out = converted(frame, pixel_format, size)
        data = packed_array(out) if pixel_format in PACKED_CHANNELS else out.to_ndarray()
        yield Frame(index=index, pts=pts, time_s=float(pts * time_base), data=data)


def converted(frame: av.VideoFrame, pixel_format: str, size: tuple[int, int] | None = None) -> av.VideoFrame:
    """`frame` in `pixel_format` (and scaled to `size`, (width, height), bicubic); itself if it already is."""
    if not size and frame.format.name == pixel_format:
        return frame
    width, height = size if size else (None, None)
    # one swscale thread: 2.4 ms vs 4.2 ms per 1080p rgb24 frame with FFmpeg's default
    return frame.reformat(width=width, height=height, format=pixel_format, threads=1)


class VideoWriter:
    """Encode frames to an MP4 that plays in a browser: yuv420p, `faststart` (index at the front).

    Frames keep the timestamps they are given (`pts` in `time_base` units), so every source frame keeps its
    time, and `color` copies a source's colour tags. `write` takes a yuv420p array [H*3/2, W] uint8 (the
    planes Y, U, V stacked, as PyAV lays them out), any other pixel format PyAV converts from, or, with no
    copy, a yuv420p frame from `new_frame` filled through `plane_arrays`.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        rate: Fraction,
        time_base: Fraction,
        codec: str = "h264",
        crf: int = 18,
        preset: str = "veryfast",
        threads: int = 0,
        color: tuple[int, int, int, int] | None = None,
        encoder: str | None = None,
    ) -> None:
        """encoder: the FFmpeg encoder, ENCODERS[codec] (default) or NVENC_ENCODERS[codec]; for NVENC, `crf`
        is its constant-quality level (-cq) and `preset` maps onto p1..p7."""
        if codec not in ENCODERS:
            raise ValueError(f"codec must be one of {sorted(ENCODERS)}, not {codec!r}")
        encoder = encoder or ENCODERS[codec]
        if encoder not in (ENCODERS[codec], NVENC_ENCODERS[codec]):
            raise ValueError(f"encoder {encoder!r} does not write {codec}")
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._container: av.container.OutputContainer | None = container
        if encoder == NVENC_ENCODERS[codec]:
            options = {"rc": "vbr", "cq": str(crf), "b": "0", "preset": NVENC_PRESETS.get(preset, "p4")}
        else:
            options = {"crf": str(crf), "preset": preset}
            if codec == "h265":
                options["x265-params"] = "log-level=error"
        self.encoder = encoder
        stream = container.add_stream(encoder, rate=rate, options=options)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.codec_context.thread_count = threads
        # Frame threads, as the ffmpeg CLI gives libx264. PyAV's default is slice threads, which kept 1.64
        # of 2 cores busy on detailed footage, against 1.91 (bench/RESULTS.md, issue 14).
        stream.codec_context.thread_type = "FRAME"
        if color is not None:  # keep the source's colour tags, so players convert to RGB as they did before
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = color
        if codec == "h265":
            stream.codec_tag = "hvc1"  # Apple players and browsers want hvc1, not FFmpeg's default hev1
        self._stream = stream

    def new_frame(self) -> av.VideoFrame:
        """A blank yuv420p frame of the output size, to fill through `plane_arrays` and hand to
        `write`: the encoder then takes it without the from_ndarray copy (3 MB per 1080p frame).
        A fresh frame each time: the frame must not change while libavcodec may still hold it."""
        return av.VideoFrame(self._stream.width, self._stream.height, "yuv420p")

    def write(self, image: np.ndarray | av.VideoFrame, pts: int, pixel_format: str = "yuv420p") -> None:
        """Encode one frame at `pts`: an array in `pixel_format` layout (yuv420p [H*3/2, W] or rgb24
        [H, W, 3]), or a yuv420p PyAV frame of the output size (e.g. from `new_frame`), taken as it is."""
        if isinstance(image, av.VideoFrame):
            frame = image
        else:
            frame = av.VideoFrame.from_ndarray(image, format=pixel_format)
            if pixel_format != "yuv420p":
                frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = self.time_base
        assert self._container is not None, "write after close"
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))  # flush delayed frames
        finally:
            self._container.close()
            self._container = None

    def abort(self) -> None:
        """Close without flushing (after an error); the caller deletes the partial file."""
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError):
                self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class _End:
    error: BaseException | None


def prefetch(items: Iterable[T], depth: int = PREFETCH_FRAMES) -> Generator[T, None, None]:
    """Yield `items`, produced up to `depth` ahead in a background thread.

    FFmpeg, OpenCV and torch release the GIL, so chained prefetches make a pipeline whose stages overlap
    on several cores; the bounded queue keeps memory flat.
    An exception in the thread is re-raised here; closing this generator early stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_End(None))
        except BaseException as err:  # handed to the consumer, raised there
            put(_End(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class FeederClosedError(Exception):
    """The consumer of a Feeder stopped before its items ran out (it raised, or the feeder was aborted)."""


class Feeder(Generic[T, R]):
    """Run `consume(items)` in a background thread while the caller pushes the items one by one.

    The push-side twin of `prefetch`: one loop (the rectifier's) hands each frame to another stage that
    pulls them (the V-JEPA 2 window stream) without either knowing the other's loop. The queue is bounded,
    so a slow consumer holds the producer back and memory stays flat.

        feeder = Feeder(consume)
        for item in ...: feeder.put(item)
        result = feeder.finish()     # waits; re-raises what consume raised
    or feeder.abort() to drop it (consume then sees the items end early and its result is discarded).
    """

    def __init__(self, consume: Callable[[Iterator[T]], R], depth: int = PREFETCH_FRAMES, name: str = "feed"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()  # the consumer is gone: put() must not block on a full queue
        self._result: R | None = None
        self._error: BaseException | None = None
        self._aborted = False

        def items() -> Iterator[T]:
            while True:
                item = self._queue.get()
                if isinstance(item, _End):
                    if self._aborted:
                        raise FeederClosedError("aborted by the producer")
                    return
                yield item

        def run() -> None:
            try:
                self._result = consume(items())
            except BaseException as err:  # handed to the producer by put() or finish()
                self._error = err
            finally:
                self._stopped.set()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Hand over one item; waits while the queue is full. Raises what the consumer raised, if it did."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise()
        raise FeederClosedError("the consumer returned before the items ran out")

    def finish(self) -> R:
        """No more items: wait for the consumer and return its result (or raise its exception)."""
        self._end()
        self._raise()
        return self._result  # type: ignore[return-value]

    def abort(self) -> None:
        """Stop the consumer (it sees FeederClosedError) and wait for it; drop its result and errors."""
        self._aborted = True
        with contextlib.suppress(queue.Empty):
            while True:  # what is still queued is dropped, not consumed
                self._queue.get_nowait()
        self._end()

    def _end(self) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(_End(None), timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, FeederClosedError):
            raise self._error


def frame_at(path: str | Path, time_s: float, width: int) -> np.ndarray | None:
    """RGB uint8 [h, width, 3] of the first frame at or after `time_s` (h keeps the aspect, even), or None.

    Seeks to the keyframe before `time_s` and decodes forward from there (one GOP at most) rather than
    from the start: a still from minute 19 of a 20-minute clip costs a GOP, not 34,000 frames.
    """
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 90_000)
        try:
            container.seek(int(time_s / time_base), stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            container.seek(0)  # a container that cannot seek: decode from the start
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.pts is not None and float(frame.pts * time_base) >= time_s - 1e-3:
                break
        if chosen is None:
            return None
        height = max(2, round(chosen.height * width / chosen.width / 2) * 2)
        return chosen.reformat(width=width, height=height, format="rgb24").to_ndarray()
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot decode a frame near {time_s:.1f} s ({err})") from err
    finally:
        container.close()
