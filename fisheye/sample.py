"""The built-in sample: a deterministic synthetic fisheye clip, laid out exactly as the Hub lays out a worker.

A head-mounted camera looks at a workbench in a room whose walls carry straight grid lines. A worker's hand
repeats an assembly cycle with a known period (pick a part from the right bin, place it in the press, hold,
lift, drop it in the left bin, return); in one known stretch the cycle stops and something unusual happens
(the hand leaves the bench and a large cart slides past). Frames are ray-traced through the real
Egocentric-10K calibration scaled to the sample size, with the Kannala-Brandt model in numpy
(`fisheye.camera.kb_unproject`), not `cv2.fisheye`, so tests check OpenCV's undistortion against an
independent model.

`write_sample_hub(root)` writes what the Hub holds for one worker:
    root/factory_001/workers/worker_001/factory001_worker001_part00.tar   (mp4 + json sidecar per clip)
    root/factory_001/workers/worker_001/intrinsics.json                   (calibrated at 1920x1080)
The ground truth (period, anomalous stretch, 3D lines TEST_LINES_3D and marker points MARKERS_3D) is
in SampleSpec and the module constants, for tests.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from egoclean.video import VideoWriter
from fisheye.camera import FisheyeCalibration, kb_project, kb_unproject
from fisheye.dataset import CALIBRATION_FILE, Sidecar, WorkerRef

# The Egocentric-10K lens: byte-identical in the intrinsics.json of 16 sampled workers (each worker's own
# file is still the one read).
EGOCENTRIC_10K_CALIBRATION = FisheyeCalibration(
    width=1920,
    height=1080,
    fx=1030.587009,
    fy=1032.815725,
    cx=966.691189,
    cy=539.687801,
    k1=-0.116554,
    k2=-0.023589,
    k3=0.069364,
    k4=-0.046334,
)


@dataclass(frozen=True)
class SampleClip:
    index: int  # the dataset's 5-digit clip index
    duration_s: float
    anomaly_s: tuple[float, float] | None = None  # [start, end) of the unusual stretch


@dataclass(frozen=True)
class SampleSpec:
    width: int = 480
    height: int = 270
    fps: int = 30
    period_s: float = 6.0
    clips: tuple[SampleClip, ...] = (
        SampleClip(index=1, duration_s=60.0, anomaly_s=(33.0, 41.0)),
        SampleClip(index=2, duration_s=36.0),
    )
    clips_per_shard: int = 2
    factory: str = "factory_001"
    worker: str = "worker_001"
    crf: int = 20
    preset: str = "fast"

    @property
    def worker_ref(self) -> WorkerRef:
        return WorkerRef(self.factory, self.worker)


# --- the scene ---------------------------------------------------------------------------------------------

ROOM_MIN = np.array([-1.6, -1.0, -1.0])  # left wall x, ceiling y, (behind the camera) z
ROOM_MAX = np.array([1.6, 0.55, 2.2])  # right wall x, table top y, back wall z
GRID_M = 0.3  # spacing of the straight grid lines on the walls
LINE_HALF_WIDTH_M = 0.008
MARKER_RADIUS_M = 0.03
MARKER_RGB = (235, 20, 235)

# Straight lines that tests look for after rectification: grid lines on the back wall.
TEST_LINES_3D = tuple(((-1.5, y, ROOM_MAX[2]), (1.5, y, ROOM_MAX[2])) for y in (-0.9, -0.6, -0.3)) + tuple(
    ((x, -0.95, ROOM_MAX[2]), (x, 0.0, ROOM_MAX[2])) for x in (-1.5, -0.9, 0.9, 1.5)
)

# Marker discs at known 3D positions (centres of grid cells), with the wall they lie on (axis, side).
MARKERS_3D = (
    (-1.35, -0.75, 2.2),
    (-0.75, -0.75, 2.2),
    (0.75, -0.75, 2.2),
    (1.35, -0.75, 2.2),
    (-1.35, -0.15, 2.2),
    (-0.75, -0.15, 2.2),
    (0.75, -0.15, 2.2),
    (1.35, -0.15, 2.2),
    (1.6, -0.45, 1.95),
    (-1.6, -0.45, 1.95),
)

# Static boxes on the table: (min corner, max corner, rgb).
STATIC_BOXES = (
    ((0.55, 0.40, 1.0), (0.95, 0.55, 1.4), (60, 90, 170)),  # right bin: parts come from here
    ((-0.95, 0.40, 1.0), (-0.55, 0.55, 1.4), (60, 140, 80)),  # left bin: parts go here
    ((-0.2, 0.10, 1.5), (0.2, 0.55, 1.8), (90, 90, 95)),  # the press
)
PART_SIZE = np.array([0.10, 0.06, 0.10])
HAND_SIZE = np.array([0.09, 0.07, 0.14])
PART_RGB, HAND_RGB, CART_RGB = (200, 40, 30), (225, 175, 140), (235, 200, 40)

# One assembly cycle: part centre at cycle phase in [0, 1) (linear between keyframes, smoothstep-eased).
PART_PATH = (
    (0.00, (0.75, 0.50, 1.2)),  # in the right bin (hidden inside it)
    (0.15, (0.75, 0.25, 1.2)),  # lifted
    (0.35, (0.0, 0.05, 1.42)),  # placed at the press
    (0.55, (0.0, 0.05, 1.42)),  # held while the press works
    (0.65, (0.0, 0.20, 1.30)),  # removed
    (0.85, (-0.75, 0.50, 1.2)),  # dropped in the left bin
    (1.00, (-0.75, 0.50, 1.2)),
)


def _ease(keyframes: tuple, phase: float) -> np.ndarray:
    for (p0, a), (p1, b) in itertools.pairwise(keyframes):
        if p0 <= phase <= p1:
            s = 0.0 if p1 == p0 else (phase - p0) / (p1 - p0)
            s = s * s * (3 - 2 * s)
            return (1 - s) * np.array(a) + s * np.array(b)
    return np.array(keyframes[-1][1], dtype=float)


def moving_boxes(t_s: float, period_s: float, anomaly_s: tuple[float, float] | None) -> list[tuple]:
    """The moving boxes at time t: [(centre, size, rgb)]."""
    if anomaly_s and anomaly_s[0] <= t_s < anomaly_s[1]:
        u = (t_s - anomaly_s[0]) / (anomaly_s[1] - anomaly_s[0])
        hand = np.array([0.3 + 0.35 * np.sin(2 * np.pi * 1.7 * u), -0.45, 1.0])  # waving high, off the bench
        cart = np.array([-1.2 + 2.4 * u, 0.3, 0.95])  # a cart sliding past in front of the bench
        return [(hand, HAND_SIZE, HAND_RGB), (cart, np.array([0.55, 0.5, 0.3]), CART_RGB)]
    phase = (t_s % period_s) / period_s
    part = _ease(PART_PATH, phase)
    if phase < 0.85:
        hand = part + np.array([0.0, -0.07, -0.06])
    else:  # the empty hand returns from the left bin to the right bin
        s = (phase - 0.85) / 0.15
        hand = (1 - s) * np.array([-0.75, 0.43, 1.14]) + s * np.array([0.75, 0.43, 1.14])
    return [(part, PART_SIZE, PART_RGB), (hand, HAND_SIZE, HAND_RGB)]


def _ray_box(rays: np.ndarray, box_min: np.ndarray, box_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test for rays from the origin: (distance to the entry point or inf, the entry face's axis)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = box_min / rays, box_max / rays
    t_near_axes = np.fmin(t1, t2)
    t_near = np.nanmax(np.where(np.isnan(t_near_axes), -np.inf, t_near_axes), axis=-1)
    t_far = np.nanmin(np.where(np.isnan(t1), np.inf, np.fmax(t1, t2)), axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    return np.where(hit, t_near, np.inf), np.argmax(
        np.where(np.isnan(t_near_axes), -np.inf, t_near_axes), axis=-1
    )


FACE_SHADE = np.array([0.8, 1.0, 0.9])  # x faces, y faces (tops), z faces (fronts): a little 3D relief


def _shade_box(rgb: tuple[int, int, int], face_axis: np.ndarray) -> np.ndarray:
    return np.array(rgb, dtype=np.float32) * FACE_SHADE[face_axis][..., None].astype(np.float32)


def _render_room(rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Static scene for unit rays [H, W, 3] (NaN outside the lens): (rgb float32 [H, W, 3], depth [H, W])."""
    H, W = rays.shape[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_faces = np.where(rays > 0, ROOM_MAX / rays, np.where(rays < 0, ROOM_MIN / rays, np.inf))
    t_faces = np.nan_to_num(t_faces, nan=np.inf)
    face = np.argmin(t_faces, axis=-1)  # which axis's wall the ray leaves the room through
    depth = np.take_along_axis(t_faces, face[..., None], -1)[..., 0]
    hit = rays * depth[..., None]
    wall_rgb = np.array([[175, 190, 210], [140, 105, 70], [200, 200, 195]], dtype=np.float32)  # x, y, z walls
    rgb = wall_rgb[face].copy()
    rgb[(face == 1) & (rays[..., 1] < 0)] = (225, 225, 222)  # ceiling
    rgb[(face == 0) & (rays[..., 0] > 0)] = (180, 205, 180)  # right wall
    # dark grid lines: distance (metres) from the nearest multiple of GRID_M in the two in-plane coordinates
    line = np.zeros((H, W), np.float32)
    for axis in range(3):
        on_face = face != axis
        d = np.abs(hit[..., axis] - GRID_M * np.round(hit[..., axis] / GRID_M))
        line = np.maximum(line, np.where(on_face, np.exp(-((d / LINE_HALF_WIDTH_M) ** 2)), 0))
    rgb *= (1 - 0.8 * line)[..., None]
    # marker discs
    for m in MARKERS_3D:
        near = np.linalg.norm(hit - np.array(m), axis=-1) < MARKER_RADIUS_M
        rgb[near] = MARKER_RGB
    for box_min, box_max, box_rgb in STATIC_BOXES:
        t, face_axis = _ray_box(rays, np.array(box_min), np.array(box_max))
        front = t < depth
        rgb[front] = _shade_box(box_rgb, face_axis[front])
        depth = np.where(front, t, depth)
    outside = np.isnan(rays[..., 2])
    rgb[outside] = 0
    depth[outside] = 0
    return rgb, depth


class SampleRenderer:
    """Renders fisheye RGB frames of the sample scene at `width` x `height` through `calib`."""

    def __init__(
        self,
        width: int,
        height: int,
        calib: FisheyeCalibration = EGOCENTRIC_10K_CALIBRATION,
        supersample: int = 2,
    ) -> None:
        self.calib = calib.scaled_to(width, height)
        self.rays = self._rays(self.calib, width, height)
        # the static room, anti-aliased by rendering `supersample` x larger and averaging
        big = calib.scaled_to(width * supersample, height * supersample)
        rgb_big, _ = _render_room(self._rays(big, width * supersample, height * supersample))
        self.background = cv2.resize(rgb_big, (width, height), interpolation=cv2.INTER_AREA)
        _, self.depth = _render_room(self.rays)

    @staticmethod
    def _rays(calib: FisheyeCalibration, width: int, height: int) -> np.ndarray:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        return kb_unproject(np.stack([xs, ys], -1), calib)

    def render(self, boxes: list[tuple]) -> np.ndarray:
        """uint8 [H, W, 3] RGB frame with the given moving boxes drawn over the static room."""
        rgb = self.background.copy()
        depth = self.depth.copy()
        H, W = depth.shape
        for centre, size, box_rgb in boxes:
            box_min, box_max = centre - size / 2, centre + size / 2
            corners = np.array(
                [
                    [x, y, z]
                    for x in (box_min[0], box_max[0])
                    for y in (box_min[1], box_max[1])
                    for z in (box_min[2], box_max[2])
                ]
            )
            uv = kb_project(corners, self.calib)
            x0, y0 = np.floor(uv.min(0)).astype(int) - 2
            x1, y1 = np.ceil(uv.max(0)).astype(int) + 3
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
            if x0 >= x1 or y0 >= y1:
                continue
            t, face_axis = _ray_box(self.rays[y0:y1, x0:x1], box_min, box_max)
            front = t < depth[y0:y1, x0:x1]
            rgb[y0:y1, x0:x1][front] = _shade_box(box_rgb, face_axis[front])
            depth[y0:y1, x0:x1] = np.where(front, t, depth[y0:y1, x0:x1])
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def render_clip(
    spec: SampleSpec, clip: SampleClip, renderer: SampleRenderer | None = None
) -> Iterator[np.ndarray]:
    """The clip's fisheye frames, uint8 [H, W, 3] RGB, one per 1/fps seconds."""
    renderer = renderer or SampleRenderer(spec.width, spec.height)
    for i in range(round(clip.duration_s * spec.fps)):
        yield renderer.render(moving_boxes(i / spec.fps, spec.period_s, clip.anomaly_s))


def write_sample_hub(
    root: str | Path, spec: SampleSpec = SampleSpec(), progress: Callable[[int], None] | None = None
) -> Path:
    """Render the sample's clips and write them under `root` exactly as the Hub lays out a worker; returns
    the worker's folder (holding the tar shard(s) and intrinsics.json).

    progress: called with the number of frames rendered since the last call.
    """
    worker = spec.worker_ref
    worker_dir = Path(root) / worker.hub_dir
    worker_dir.mkdir(parents=True, exist_ok=True)
    renderer = SampleRenderer(spec.width, spec.height)
    with tempfile.TemporaryDirectory(dir=worker_dir) as tmp:
        members: list[tuple[str, Path, bytes]] = []
        for clip in spec.clips:
            name = worker.clip_name(clip.index)
            video_path = Path(tmp) / f"{name}.mp4"
            with VideoWriter(
                video_path,
                spec.width,
                spec.height,
                Fraction(spec.fps),
                Fraction(1, spec.fps),
                codec="h265",
                crf=spec.crf,
                preset=spec.preset,
            ) as writer:
                for i, frame in enumerate(render_clip(spec, clip, renderer)):
                    writer.write(frame, pts=i, pixel_format="rgb24")
                    if progress:
                        progress(1)
            sidecar = Sidecar(
                factory_id=spec.factory,
                worker_id=spec.worker,
                video_index=clip.index,
                duration_sec=round(clip.duration_s, 3),
                width=spec.width,
                height=spec.height,
                fps=spec.fps,
                size_bytes=video_path.stat().st_size,
                codec="h265",
            )
            members.append((name, video_path, sidecar.to_json()))
        for shard, first in enumerate(range(0, len(members), spec.clips_per_shard)):
            tar_name = worker.shard_name(shard)
            partial = worker_dir / (tar_name + ".partial")
            with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
                for name, video_path, sidecar_bytes in members[first : first + spec.clips_per_shard]:
                    tar.add(video_path, arcname=f"{name}.mp4")
                    info = tarfile.TarInfo(f"{name}.json")
                    info.size = len(sidecar_bytes)
                    tar.addfile(info, io.BytesIO(sidecar_bytes))
            partial.replace(worker_dir / tar_name)
    (worker_dir / CALIBRATION_FILE).write_text(json.dumps(EGOCENTRIC_10K_CALIBRATION.to_json(), indent=2))
    return worker_dir
