"""Rectification on the sample: straight lines come out straight, 3D points land where intrinsics say,
every frame and timestamp survives, and the fast plane remap equals a slow per-pixel reference."""

from fractions import Fraction

import cv2
import numpy as np
import pytest

from egoclean.video import VideoWriter, iter_frames, probe
from fisheye.camera import rectified_camera, source_positions
from fisheye.rectify import EncoderSettings, PlaneRemapper, rectify_video
from fisheye.sample import (
    EGOCENTRIC_10K_CALIBRATION,
    MARKER_RGB,
    MARKERS_3D,
    TEST_LINES_3D,
    SampleRenderer,
    moving_boxes,
)
from tests.helpers import fit_line_rms, visible_line_centres, x264_settings

W, H, FPS, N_FRAMES = 480, 270, 30, 24


@pytest.fixture(scope="module")
def fisheye_clip(tmp_path_factory):
    """A short fisheye H.265 clip of the sample scene with an irregular timestamp at frame 5."""
    path = tmp_path_factory.mktemp("rectify") / "fisheye.mp4"
    renderer = SampleRenderer(W, H)
    with VideoWriter(
        path, W, H, Fraction(FPS), Fraction(1, FPS * 10), codec="h265", crf=10, preset="fast"
    ) as w:
        for i in range(N_FRAMES):
            w.write(
                renderer.render(moving_boxes(i / FPS, 6.0, None)),
                pts=i * 10 + (3 if i >= 5 else 0),
                pixel_format="rgb24",
            )
    return path


@pytest.fixture(scope="module", params=["cv2", "torch-cpu"])
def rectified(fisheye_clip, request):
    """The clip rectified by cv2.remap (the CPU default) and by the torch remap the GPU path runs (here on
    the CPU): every geometry test runs on both."""
    camera = rectified_camera(EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H), W, H)
    out = fisheye_clip.with_name(f"rectified-{request.param}.mp4")
    remap_device = None if request.param == "cv2" else "cpu"
    encoder = EncoderSettings("h264", 12, "veryfast")
    stats = rectify_video(
        fisheye_clip, out, EGOCENTRIC_10K_CALIBRATION, camera, encoder, remap_device=remap_device
    )
    assert (stats.remap, stats.decoder, stats.encoder) == (request.param, "cpu", "libx264")
    return out, camera, stats


def test_the_torch_remap_path_writes_what_the_cv2_path_writes(fisheye_clip, tmp_path):
    """Within the two remaps' ~2 code values (tests/test_remap_torch.py) plus x264's noise on top."""
    camera = rectified_camera(EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H), W, H)
    encoder = EncoderSettings("h264", 0, "ultrafast")  # lossless: only the remaps differ
    outputs = []
    for name, device in (("cv2", None), ("torch", "cpu")):
        out = tmp_path / f"{name}.mp4"
        rectify_video(fisheye_clip, out, EGOCENTRIC_10K_CALIBRATION, camera, encoder, remap_device=device)
        outputs.append([f.data.astype(np.int16) for f in iter_frames(out, "yuv420p")])
    assert len(outputs[0]) == len(outputs[1]) == N_FRAMES
    diff = np.abs(np.stack(outputs[0]) - np.stack(outputs[1]))
    assert diff.mean() <= 0.5 and diff.max() <= 2, (diff.mean(), diff.max())


def test_straight_3d_lines_are_straight_and_where_intrinsics_put_them(rectified):
    out, camera, _ = rectified
    frame = next(iter_frames(out, "gray")).data.astype(np.float32)
    checked = 0
    for line, p0, p1, centres in visible_line_centres(frame, camera, TEST_LINES_3D):
        checked += 1
        assert fit_line_rms(centres) < 0.5, f"line {line} is not straight"
        # distance of the detected centres from the line the written intrinsics predict
        n = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / np.linalg.norm(p1 - p0)
        assert np.abs((centres - p0) @ n).mean() < 0.5
    assert checked >= 5


def test_known_3d_points_land_where_the_pinhole_intrinsics_project_them(rectified):
    out, camera, _ = rectified
    rgb = next(iter_frames(out, "rgb24")).data.astype(np.int32)
    magenta = ((rgb[..., 0] - rgb[..., 1]) > 80) & ((rgb[..., 2] - rgb[..., 1]) > 80)
    _n, labels, _, _ = cv2.connectedComponentsWithStats(magenta.astype(np.uint8))
    target = np.array(MARKER_RGB, dtype=np.float64)
    errors = []
    for expected in camera.project(np.array(MARKERS_3D)):
        if not (5 < expected[0] < W - 5 and 5 < expected[1] < H - 5):
            continue
        label = labels[round(expected[1]), round(expected[0])]
        assert label > 0, f"no marker found at {expected}"
        ys, xs = np.nonzero(labels == label)
        # weight the blob's pixels by how close they are to the marker colour (soft edges)
        ys0, xs0 = slice(ys.min() - 2, ys.max() + 3), slice(xs.min() - 2, xs.max() + 3)
        patch = rgb[ys0, xs0].astype(np.float64)
        weight = np.clip(1 - np.linalg.norm(patch - target, axis=-1) / 200, 0, None) ** 2
        gy, gx = np.mgrid[ys0, xs0]
        centroid = np.array([(weight * gx).sum(), (weight * gy).sum()]) / weight.sum()
        errors.append(np.linalg.norm(centroid - expected))
    assert len(errors) >= 8
    assert np.mean(errors) < 0.5 and np.max(errors) < 1.0, errors


def test_every_frame_and_timestamp_is_kept(fisheye_clip, rectified):
    out, _camera, stats = rectified
    source, result = probe(fisheye_clip), probe(out)
    assert stats.frames == N_FRAMES == result.n_frames
    assert float(result.rate) == pytest.approx(
        float(source.rate), rel=0.01
    )  # one irregular gap moves the mean
    assert result.duration_s == pytest.approx(source.duration_s, abs=1e-3)
    assert (result.codec, result.pix_fmt, result.width, result.height) == ("h264", "yuv420p", W, H)
    times_in = [f.time_s for f in iter_frames(fisheye_clip, "gray")]
    times_out = [f.time_s for f in iter_frames(out, "gray")]
    np.testing.assert_allclose(times_out, times_in, atol=1e-3)
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), (
        "moov atom must come first (faststart) to play in browsers"
    )
    assert stats.preview_rgb is not None and stats.preview_rgb[1].shape == (H, W, 3)


def test_x264_encodes_with_frame_threads_as_the_ffmpeg_cli_does(rectified):
    """PyAV asks libx264 for slice threads unless told otherwise, and those kept 1.64 of 2 cores busy
    against 1.91 (bench/RESULTS.md, issue 14). x264 writes the settings it ran with into the stream."""
    out, _camera, _stats = rectified
    settings = x264_settings(out)
    assert " sliced_threads=0 " in settings, settings


def test_the_thread_count_reaches_x264_and_the_remap_for_the_clip_only(fisheye_clip, tmp_path):
    """A rectifier that shares a node with others is given its own thread count (--codec-threads)."""
    camera = rectified_camera(EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H), W, H)
    encoder = EncoderSettings("h264", 28, "ultrafast")
    before = cv2.getNumThreads()
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}.mp4"
        seen: set[int] = set()
        # cv2's count is process-wide, so the main thread sees the remap's
        on_frame = lambda *_args, seen=seen: seen.add(cv2.getNumThreads())  # noqa: E731
        stats = rectify_video(
            fisheye_clip, out, EGOCENTRIC_10K_CALIBRATION, camera, encoder, on_frame=on_frame, threads=threads
        )
        assert f" threads={threads} " in x264_settings(out) and stats.frames == N_FRAMES
        assert seen == {threads} and cv2.getNumThreads() == before


def test_h265_output(fisheye_clip, tmp_path):
    camera = rectified_camera(EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H), W, H, hfov_deg=110)
    out = tmp_path / "h265.mp4"
    rectify_video(
        fisheye_clip, out, EGOCENTRIC_10K_CALIBRATION, camera, EncoderSettings("h265", 28, "ultrafast")
    )
    info = probe(out)
    assert (info.codec, info.n_frames) == ("hevc", N_FRAMES)


def bilinear_reference(plane: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slow bilinear sampling of `plane` [h, w] at positions uv [..., 2] (x, y); returns the values and a
    mask of the positions whose four neighbours all lie inside the plane."""
    h, w = plane.shape
    plane = plane.astype(np.float64)
    x0, y0 = np.floor(uv[..., 0]).astype(int), np.floor(uv[..., 1]).astype(int)
    fx, fy = uv[..., 0] - x0, uv[..., 1] - y0
    x0c, y0c = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    values = (
        (1 - fx) * (1 - fy) * plane[y0c, x0c]
        + fx * (1 - fy) * plane[y0c, x0c + 1]
        + (1 - fx) * fy * plane[y0c + 1, x0c]
        + fx * fy * plane[y0c + 1, x0c + 1]
    )
    inside = (x0 >= 0) & (y0 >= 0) & (x0 < w - 1) & (y0 < h - 1)
    return values, inside


def test_plane_remap_equals_slow_per_pixel_reference(fisheye_clip):
    """Y, U and V each equal a per-pixel bilinear reference at the numpy lens model's positions."""
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H)
    camera = rectified_camera(calib, W, H)
    yuv = next(iter_frames(fisheye_clip, "yuv420p")).data
    fast = PlaneRemapper(calib, camera)(yuv)
    src_y, src_u, src_v = PlaneRemapper.planes(yuv, W, H)
    out_y, out_u, out_v = PlaneRemapper.planes(fast, W, H)
    # luma: each output pixel samples the source where the lens model sends it
    ys, xs = np.mgrid[0:H, 0:W]
    uv = source_positions(camera, calib, np.stack([xs, ys], -1).astype(float))
    ref, inside = bilinear_reference(src_y, uv)
    diff = np.abs(out_y.astype(np.float64) - ref)[inside]
    assert inside.mean() > 0.99
    assert diff.max() <= 2.0 and diff.mean() < 0.3  # OpenCV interpolates with 1/32-pixel fixed-point weights
    # chroma: a chroma sample sits at the centre of its 2x2 luma block, (2x + 0.5, 2y + 0.5) in luma pixels;
    # map that through the lens in luma pixels, then back to chroma pixels: (u + 0.5) / 2 - 0.5
    cys, cxs = np.mgrid[0 : H // 2, 0 : W // 2]
    luma_out = np.stack([2 * cxs + 0.5, 2 * cys + 0.5], -1).astype(float)
    chroma_src = (source_positions(camera, calib, luma_out) + 0.5) / 2 - 0.5
    for src_plane, out_plane in ((src_u, out_u), (src_v, out_v)):
        ref, inside = bilinear_reference(src_plane, chroma_src)
        diff = np.abs(out_plane.astype(np.float64) - ref)[inside]
        assert inside.mean() > 0.98
        assert diff.max() <= 2.0 and diff.mean() < 0.3
        assert np.ptp(ref[inside]) > 10, "the chroma plane must carry colour for this check to mean anything"


def test_full_range_source_is_tagged_as_converted(tmp_path):
    """A yuvj420p (full-range) source reaches the remap as limited-range yuv420p: the output must say so,
    or players would show it washed out."""
    import subprocess

    import imageio_ffmpeg

    src = tmp_path / "full_range.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=192x108:rate=30",
            "-t",
            "0.5",
            "-pix_fmt",
            "yuvj420p",
            "-c:v",
            "libx264",
            str(src),
        ],
        check=True,
    )
    assert probe(src).pix_fmt == "yuvj420p"
    camera = rectified_camera(EGOCENTRIC_10K_CALIBRATION.scaled_to(192, 108), 192, 108)
    out = tmp_path / "out.mp4"
    rectify_video(src, out, EGOCENTRIC_10K_CALIBRATION, camera, EncoderSettings("h264", 18, "ultrafast"))
    info = probe(out)
    assert info.pix_fmt == "yuv420p" and info.color[1] != 2  # not AVCOL_RANGE_JPEG: limited, as converted
    assert info.n_frames == 15
