"""Camera geometry: the source fisheye (Kannala-Brandt) and the rectified pinhole camera. Pure numpy + OpenCV.

Conventions (OpenCV's): camera x right, y down, z forward; pixel coordinates put integer values at pixel
centres, so the top-left pixel covers [-0.5, 0.5] x [-0.5, 0.5] and an image W pixels wide spans
[-0.5, W - 0.5]. COLMAP's PINHOLE model puts (0, 0) at the top-left corner instead: cx + 0.5, cy + 0.5.

Kannala-Brandt equidistant model (OpenCV `cv2.fisheye`), for a point (X, Y, Z):
    a = X/Z, b = Y/Z, r = sqrt(a^2 + b^2), theta = atan2(r, 1)   (angle off the optical axis)
    theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
    u = fx (theta_d / r) a + cx,  v = fy (theta_d / r) b + cy
The polynomial is only invertible while theta_d grows with theta: `max_half_angle_rad` is where it stops
(about 67.9 deg for the Egocentric-10K lens); rays beyond it are outside the lens's image circle.

Rectification maps each output (pinhole) pixel to the source pixel it samples: we build the maps with
`cv2.fisheye.initUndistortRectifyMap`; `kb_project` here is an independent numpy model that the tests and the
sample renderer use to check it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from egoclean.errors import CalibrationError

MIN_FOCAL_RATIO, MAX_FOCAL_RATIO = 0.1, 10.0  # plausible focal length / image width
MIN_HFOV_DEG = 1.0
CALIBRATION_FIELDS = ("image_width", "image_height", "fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")


@dataclass(frozen=True)
class Intrinsics:
    """What every camera model here shares: frames of `width` x `height` pixels, focal lengths and
    principal point in pixels (OpenCV's convention: pixel centres at integers)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:
        """The 3x3 camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class FisheyeCalibration(Intrinsics):
    """Kannala-Brandt fisheye intrinsics: the shared ones plus the distortion k1..k4."""

    k1: float
    k2: float
    k3: float
    k4: float

    @property
    def D(self) -> np.ndarray:
        return np.array([self.k1, self.k2, self.k3, self.k4])

    def scaled_to(self, width: int, height: int) -> FisheyeCalibration:
        """The same lens for frames resized to `width` x `height` (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        if abs(sx / sy - 1.0) > 0.01:
            raise CalibrationError(
                f"calibration is for {self.width}x{self.height} but the video is {width}x{height}: the "
                "aspect ratios differ, so the frames were cropped, not scaled; use the calibration made "
                "for this video"
            )
        return FisheyeCalibration(
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            k1=self.k1,
            k2=self.k2,
            k3=self.k3,
            k4=self.k4,
        )

    def to_json(self) -> dict:
        """The dataset's own intrinsics.json schema."""
        d = asdict(self)
        return {
            "model": "fisheye",
            "image_width": d.pop("width"),
            "image_height": d.pop("height"),
            **d,
        }


@dataclass(frozen=True)
class PinholeCamera(Intrinsics):
    """An ideal pinhole camera (no distortion)."""

    @property
    def hfov_deg(self) -> float:
        """Full horizontal field of view, edge to edge of the outer pixels."""
        return math.degrees(
            math.atan((self.cx + 0.5) / self.fx) + math.atan((self.width - 0.5 - self.cx) / self.fx)
        )

    @property
    def vfov_deg(self) -> float:
        return math.degrees(
            math.atan((self.cy + 0.5) / self.fy) + math.atan((self.height - 0.5 - self.cy) / self.fy)
        )

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """[..., 3] points in camera coordinates (z > 0) -> [..., 2] pixel coordinates."""
        p = np.asarray(points_cam, dtype=np.float64)
        return np.stack(
            [self.fx * p[..., 0] / p[..., 2] + self.cx, self.fy * p[..., 1] / p[..., 2] + self.cy], -1
        )

    def scaled_to(self, width: int, height: int) -> PinholeCamera:
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(
            width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5
        )

    def to_json(self) -> dict:
        return {
            "model": "pinhole",
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "hfov_deg": self.hfov_deg,
            "vfov_deg": self.vfov_deg,
            "K": self.K.tolist(),
            "distortion": None,
            "pixel_convention": "OpenCV: integer pixel coordinates are pixel centres; (0, 0) is the "
            "centre of the top-left pixel",
            "colmap_pinhole_params": [self.fx, self.fy, self.cx + 0.5, self.cy + 0.5],
        }


def parse_calibration(data: object, source: str = "intrinsics.json") -> FisheyeCalibration:
    """Validate the dataset's intrinsics.json content; errors name the field and the file."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{source}: expected a JSON object with {', '.join(CALIBRATION_FIELDS)}")
    model = data.get("model", "fisheye")
    if model != "fisheye":
        raise CalibrationError(
            f"{source}: field 'model' is {model!r}; only the 'fisheye' (Kannala-Brandt) model is supported"
        )
    values: dict[str, float] = {}
    for name in CALIBRATION_FIELDS:
        if name not in data:
            raise CalibrationError(f"{source}: field '{name}' is missing; {REFETCH}")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CalibrationError(
                f"{source}: field '{name}' must be a finite number, got {value!r}; {REFETCH}"
            )
        values[name] = float(value)
    for name in ("image_width", "image_height", "fx", "fy"):
        if values[name] <= 0:
            raise CalibrationError(
                f"{source}: field '{name}' must be positive, got {values[name]}; {REFETCH}"
            )
    for name in ("image_width", "image_height"):
        if values[name] != int(values[name]):
            raise CalibrationError(
                f"{source}: field '{name}' must be a whole number of pixels, got {values[name]}; {REFETCH}"
            )
    calib = FisheyeCalibration(
        width=int(values["image_width"]),
        height=int(values["image_height"]),
        fx=values["fx"],
        fy=values["fy"],
        cx=values["cx"],
        cy=values["cy"],
        k1=values["k1"],
        k2=values["k2"],
        k3=values["k3"],
        k4=values["k4"],
    )
    # A real lens: the focal length is between a tenth and ten times the image width (an equidistant
    # fisheye images ~180 deg at f = W / pi, a long telephoto ~6 deg at 10 W), and pixels are near square.
    for name in ("fx", "fy"):
        ratio = values[name] / calib.width
        if not MIN_FOCAL_RATIO <= ratio <= MAX_FOCAL_RATIO:
            raise CalibrationError(
                f"{source}: field '{name}' is {values[name]:g} px for a {calib.width} px wide image; a real "
                f"lens has {MIN_FOCAL_RATIO:g} to {MAX_FOCAL_RATIO:g} times the width: the file is broken"
            )
    if not 0.5 <= calib.fx / calib.fy <= 2.0:
        raise CalibrationError(
            f"{source}: fx / fy is {calib.fx / calib.fy:.3g}; real pixels are close to square (0.5 to 2): "
            f"{REFETCH}"
        )
    if not (0 <= calib.cx < calib.width and 0 <= calib.cy < calib.height):
        raise CalibrationError(
            f"{source}: principal point ({calib.cx}, {calib.cy}) lies outside the "
            f"{calib.width}x{calib.height} image; {REFETCH}"
        )
    if max_half_angle_rad(calib) < math.radians(20):
        raise CalibrationError(
            f"{source}: distortion k1..k4 fold the lens model back within 20 deg of the axis; "
            "the calibration is broken"
        )
    # The model must describe the image it was calibrated on: where theta_d(theta) stops growing is the
    # edge of the image circle (979 px from the centre for the Egocentric-10K lens), and it must reach at
    # least the nearest border of the frame.
    circle_px = min(calib.fx, calib.fy) * float(distorted_angle(np.array(max_half_angle_rad(calib)), calib))
    border_px = min(calib.cx, calib.width - calib.cx, calib.cy, calib.height - calib.cy)
    if circle_px < border_px:
        raise CalibrationError(
            f"{source}: distortion k1..k4 fold the lens model back {circle_px:.0f} px from the principal "
            f"point, inside the frame (its nearest border is {border_px:.0f} px away): the model cannot "
            f"describe the image it was calibrated on; {REFETCH}"
        )
    return calib


REFETCH = "download the worker's intrinsics.json again"  # what to do about a damaged calibration


def load_calibration(path: str | Path, origin: str | None = None) -> FisheyeCalibration:
    """Read and check a calibration file; errors name `origin` (the file the user can fix) when the file
    read is a working copy of it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CalibrationError(
            f"{path}: file not found; every worker folder on the Hub has an intrinsics.json "
            "beside its tar shards"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CalibrationError(
            f"{origin or path}: not valid JSON ({err.msg} at line {err.lineno}); "
            "download the worker's intrinsics.json again"
        ) from None
    return parse_calibration(data, origin or str(path))


# --- the Kannala-Brandt model in numpy (independent of cv2.fisheye) ---------------------------------------


def distorted_angle(theta: np.ndarray, calib: FisheyeCalibration) -> np.ndarray:
    """theta_d(theta) = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)."""
    t2 = theta * theta
    return theta * (1 + t2 * (calib.k1 + t2 * (calib.k2 + t2 * (calib.k3 + t2 * calib.k4))))


def max_half_angle_rad(calib: FisheyeCalibration) -> float:
    """Largest theta (< 90 deg) up to which theta_d(theta) keeps growing: the usable image circle's edge."""
    theta = np.linspace(0.0, math.pi / 2, 90_001)[1:]
    growth = np.diff(distorted_angle(theta, calib))
    falling = np.nonzero(growth <= 0)[0]
    return float(theta[falling[0]]) if falling.size else float(theta[-1])


def kb_project(points_cam: np.ndarray, calib: FisheyeCalibration) -> np.ndarray:
    """[..., 3] points in camera coordinates (z may be <= 0 up to 90 deg) -> [..., 2] fisheye pixels."""
    p = np.asarray(points_cam, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    rho = np.hypot(x, y)
    theta = np.arctan2(rho, z)
    scale = np.divide(distorted_angle(theta, calib), rho, out=np.ones_like(rho), where=rho > 1e-12)
    return np.stack([calib.fx * scale * x + calib.cx, calib.fy * scale * y + calib.cy], -1)


def kb_unproject(pixels: np.ndarray, calib: FisheyeCalibration, iterations: int = 20) -> np.ndarray:
    """[..., 2] fisheye pixels -> [..., 3] unit rays. Pixels beyond the image circle give NaN rays.

    Inverts theta_d(theta) by Newton's method, starting from theta = theta_d.
    """
    px = np.asarray(pixels, dtype=np.float64)
    a = (px[..., 0] - calib.cx) / calib.fx
    b = (px[..., 1] - calib.cy) / calib.fy
    theta_d = np.hypot(a, b)
    theta = theta_d.copy()
    k = (calib.k1, calib.k2, calib.k3, calib.k4)
    for _ in range(iterations):
        t2 = theta * theta
        f = distorted_angle(theta, calib) - theta_d
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        theta = theta - f / df
    theta_max = max_half_angle_rad(calib)
    theta = np.where(
        (theta >= 0) & (theta <= theta_max) & (theta_d <= distorted_angle(np.array(theta_max), calib)),
        theta,
        np.nan,
    )
    sin_over = np.divide(np.sin(theta), theta_d, out=np.ones_like(theta), where=theta_d > 1e-12)
    return np.stack([a * sin_over, b * sin_over, np.cos(theta)], -1)


# --- the rectified camera ----------------------------------------------------------------------------------


def pinhole_for_hfov(width: int, height: int, hfov_deg: float) -> PinholeCamera:
    """Square-pixel pinhole centred in a width x height frame: f = (W/2) / tan(HFOV/2)."""
    if not 1.0 <= hfov_deg < 179.0:
        raise ValueError(f"hfov_deg must lie in [1, 179), got {hfov_deg}")
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return PinholeCamera(width, height, f, f, (width - 1) / 2, (height - 1) / 2)


def _boundary_pixels(width: int, height: int, step: float = 0.5) -> np.ndarray:
    """Pixel-centre coordinates along the four edges of a width x height frame, [M, 2]."""
    xs = np.arange(0, width - 1 + 1e-9, step)
    ys = np.arange(0, height - 1 + 1e-9, step)
    return np.concatenate(
        [
            np.stack([xs, np.zeros_like(xs)], 1),
            np.stack([xs, np.full_like(xs, height - 1)], 1),
            np.stack([np.zeros_like(ys), ys], 1),
            np.stack([np.full_like(ys, width - 1), ys], 1),
        ]
    )


def source_positions(camera: PinholeCamera, calib: FisheyeCalibration, pixels: np.ndarray) -> np.ndarray:
    """Where rectified pixels [..., 2] sample the source fisheye frame, [..., 2] (NaN outside the lens)."""
    px = np.asarray(pixels, dtype=np.float64)
    rays = np.stack(
        [(px[..., 0] - camera.cx) / camera.fx, (px[..., 1] - camera.cy) / camera.fy, np.ones(px.shape[:-1])],
        -1,
    )
    theta = np.arctan(np.hypot(rays[..., 0], rays[..., 1]))
    uv = kb_project(rays, calib)
    uv[theta > max_half_angle_rad(calib)] = np.nan
    return uv


def valid_mask(uv: np.ndarray, calib: FisheyeCalibration) -> np.ndarray:
    """True where source positions [..., 2] fall inside the source frame and the lens's image circle."""
    u, v = uv[..., 0], uv[..., 1]
    with np.errstate(invalid="ignore"):
        return (u >= -0.5) & (u <= calib.width - 0.5) & (v >= -0.5) & (v <= calib.height - 0.5)


def widest_valid_hfov_deg(calib: FisheyeCalibration, width: int, height: int) -> float:
    """The widest HFOV of a centred pinhole of this size whose every pixel samples inside the source frame.

    Bisection on the field of view; validity of the frame's edges implies validity inside, since the lens
    maps the rectified frame's outline to a closed curve enclosing the rest.
    """
    edges = _boundary_pixels(width, height)
    lo, hi = MIN_HFOV_DEG, 178.0
    if not valid_mask(source_positions(pinhole_for_hfov(width, height, lo), calib, edges), calib).all():
        raise CalibrationError(
            f"no rectified view of {width}x{height} fits inside this lens's image, not even {lo:g} deg wide; "
            "the calibration (fx, fy, cx, cy, k1..k4) is broken"
        )
    for _ in range(50):
        mid = (lo + hi) / 2
        if valid_mask(source_positions(pinhole_for_hfov(width, height, mid), calib, edges), calib).all():
            lo = mid
        else:
            hi = mid
    return lo


def rectified_camera(
    calib: FisheyeCalibration, width: int, height: int, hfov_deg: float | None = None
) -> PinholeCamera:
    """The pinhole camera the rectified video follows: `hfov_deg`, or the widest one with no invalid pixel."""
    return pinhole_for_hfov(
        width, height, hfov_deg if hfov_deg is not None else widest_valid_hfov_deg(calib, width, height)
    )


def invalid_fraction(camera: PinholeCamera, calib: FisheyeCalibration, step: int = 4) -> float:
    """Fraction of rectified pixels (sampled every `step` px) that fall outside the source frame or lens."""
    ys, xs = np.mgrid[0 : camera.height : step, 0 : camera.width : step]
    uv = source_positions(camera, calib, np.stack([xs, ys], -1).astype(np.float64))
    return float(1.0 - valid_mask(uv, calib).mean())


def rectify_maps(calib: FisheyeCalibration, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """float32 maps (map_x, map_y) of shape [H, W] for cv2.remap: output pixel -> source pixel.

    `calib` must already be scaled to the source frame size. float32 maps, not CV_16SC2: in this OpenCV build
    float maps remap a 1080p plane in 3.0 ms vs 4.9 ms (measured on a 2-core Xeon).
    """
    map_x, map_y = cv2.fisheye.initUndistortRectifyMap(
        calib.K, calib.D, np.eye(3), camera.K, (camera.width, camera.height), cv2.CV_32FC1
    )
    return map_x, map_y


def yuv420_plane_maps(
    calib: FisheyeCalibration, camera: PinholeCamera
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Maps for the full-size Y plane and for the half-size U and V planes of yuv420p frames.

    Chroma planes are the same lens at half resolution: both cameras scale by exactly 1/2 with the
    pixel-centre convention (chroma samples taken as centred between their four luma samples).
    """
    if calib.width % 2 or calib.height % 2 or camera.width % 2 or camera.height % 2:
        raise ValueError("yuv420p needs even frame sizes")
    luma = rectify_maps(calib, camera)
    chroma = rectify_maps(
        calib.scaled_to(calib.width // 2, calib.height // 2),
        camera.scaled_to(camera.width // 2, camera.height // 2),
    )
    return luma, chroma
