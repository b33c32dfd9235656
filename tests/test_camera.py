"""Geometry: calibration parsing, the numpy Kannala-Brandt model vs OpenCV, the rectified camera."""

import json
import math

import cv2
import numpy as np
import pytest

from egoclean.errors import CalibrationError
from fisheye.camera import (
    distorted_angle,
    invalid_fraction,
    kb_project,
    kb_unproject,
    load_calibration,
    max_half_angle_rad,
    parse_calibration,
    pinhole_for_hfov,
    rectified_camera,
    rectify_maps,
    source_positions,
    widest_valid_hfov_deg,
    yuv420_plane_maps,
)
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as CALIB

RNG = np.random.default_rng(0)


def random_points_in_fov(n: int, max_deg: float = 65.0) -> np.ndarray:
    theta = np.radians(RNG.uniform(0, max_deg, n))
    phi = RNG.uniform(0, 2 * np.pi, n)
    depth = RNG.uniform(0.3, 5.0, n)
    return (
        np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
        * depth[:, None]
    )


def test_numpy_projection_matches_opencv_fisheye():
    points = random_points_in_fov(500)
    ours = kb_project(points, CALIB)
    theirs, _ = cv2.fisheye.projectPoints(points[:, None, :], np.zeros(3), np.zeros(3), CALIB.K, CALIB.D)
    np.testing.assert_allclose(ours, theirs[:, 0, :], atol=1e-6)


def test_unproject_inverts_project():
    points = random_points_in_fov(500)
    rays = kb_unproject(kb_project(points, CALIB), CALIB)
    np.testing.assert_allclose(rays, points / np.linalg.norm(points, axis=1, keepdims=True), atol=1e-9)


def test_lens_limits_match_the_published_geometry():
    # the Egocentric-10K lens: max half-angle about 67.9 deg, image circle radius about 979 px
    assert math.degrees(max_half_angle_rad(CALIB)) == pytest.approx(67.9, abs=0.1)
    edge = kb_project(
        np.array([math.sin(max_half_angle_rad(CALIB)), 0, math.cos(max_half_angle_rad(CALIB))]), CALIB
    )
    assert edge[0] - CALIB.cx == pytest.approx(979, abs=3)


@pytest.mark.parametrize("hfov_deg", [None, 80.0, 108.6])
def test_opencv_maps_agree_with_the_independent_model(hfov_deg):
    calib = CALIB.scaled_to(480, 270)
    camera = rectified_camera(calib, 480, 270, hfov_deg)
    map_x, map_y = rectify_maps(calib, camera)
    ys, xs = np.mgrid[0:270:7, 0:480:9]
    expected = source_positions(camera, calib, np.stack([xs, ys], -1).astype(float))
    ok = np.isfinite(expected).all(-1)
    assert np.abs(map_x[ys, xs][ok] - expected[..., 0][ok]).max() < 0.01
    assert np.abs(map_y[ys, xs][ok] - expected[..., 1][ok]).max() < 0.01


def test_default_view_is_the_widest_without_black_pixels():
    hfov = widest_valid_hfov_deg(CALIB, 1920, 1080)
    assert hfov == pytest.approx(93.9, abs=0.3)  # OpenCV's balance=0 view: 93.9 deg
    assert invalid_fraction(pinhole_for_hfov(1920, 1080, hfov), CALIB, step=1) == 0.0
    assert invalid_fraction(pinhole_for_hfov(1920, 1080, hfov + 1.0), CALIB, step=1) > 0.0
    # OpenCV's balance 0.5 / 1.0 views (108.6 / 126.8 deg) leave 9.6% / 24.9% of pixels invalid
    assert invalid_fraction(pinhole_for_hfov(1920, 1080, 108.6), CALIB) == pytest.approx(0.096, abs=0.005)
    assert invalid_fraction(pinhole_for_hfov(1920, 1080, 126.8), CALIB) == pytest.approx(0.249, abs=0.005)


def test_hfov_round_trip_and_focal_length():
    camera = pinhole_for_hfov(1920, 1080, 93.9)
    assert camera.hfov_deg == pytest.approx(93.9)
    assert camera.fx == pytest.approx(960 / math.tan(math.radians(93.9 / 2)))
    assert camera.vfov_deg == pytest.approx(2 * math.degrees(math.atan(540 / camera.fy)))


def test_scaling_keeps_pixel_centres():
    """Projecting with scaled intrinsics equals scaling the full-size pixel (corner-based) coordinates."""
    points = random_points_in_fov(200)
    full = kb_project(points, CALIB)
    quarter = kb_project(points, CALIB.scaled_to(480, 270))
    np.testing.assert_allclose(quarter, (full + 0.5) * 0.25 - 0.5, atol=1e-9)
    camera = pinhole_for_hfov(1920, 1080, 90)
    np.testing.assert_allclose(
        camera.scaled_to(960, 540).project(points), (camera.project(points) + 0.5) / 2 - 0.5
    )


def test_chroma_maps_are_the_luma_maps_at_half_resolution():
    calib = CALIB.scaled_to(480, 270)
    camera = rectified_camera(calib, 480, 270)
    (ly_x, _ly_y), (c_x, _c_y) = yuv420_plane_maps(calib, camera)
    assert c_x.shape == (135, 240)
    # chroma sample (i, j) sits between luma samples 2i, 2i+1 and 2j, 2j+1
    luma_at_chroma = (ly_x[0::2, 0::2] + ly_x[1::2, 1::2] + ly_x[0::2, 1::2] + ly_x[1::2, 0::2]) / 4
    np.testing.assert_allclose(c_x, (luma_at_chroma + 0.5) / 2 - 0.5, atol=0.02)


def test_cropped_not_scaled_video_is_refused():
    with pytest.raises(CalibrationError, match="aspect"):
        CALIB.scaled_to(1440, 1080)


GOOD = CALIB.to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fx": None}, "fx"),
        ({"k3": "0.1"}, "k3"),
        ({"image_width": -1920}, "image_width"),
        ({"fy": float("nan")}, "fy"),
        ({"cx": 5000.0}, "principal point"),
        ({"model": "pinhole"}, "model"),
    ],
)
def test_bad_calibration_names_the_field(tmp_path, change, field):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "intrinsics.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert field in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_calibration_files(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration(tmp_path / "missing.json")
    broken = tmp_path / "intrinsics.json"
    broken.write_text('{"fx": 1030.5,')
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(broken)
    with pytest.raises(CalibrationError, match="JSON object"):
        parse_calibration([1, 2, 3])


def test_a_lens_with_no_valid_view_is_refused_not_given_a_1_degree_floor() -> None:
    """fx = 1e300 maps every ray off the axis outside the image: no HFOV is valid, and 1 deg would lie."""
    from dataclasses import replace

    broken = replace(CALIB, fx=1e300, fy=1e300)
    with pytest.raises(CalibrationError, match="no rectified view"):
        widest_valid_hfov_deg(broken, 1920, 1080)


@pytest.mark.parametrize(("field", "value"), [("fx", 1e300), ("fx", 1e-300), ("fy", 5.0), ("fx", 3000.0)])
def test_implausible_focal_lengths_are_refused(field: str, value: float) -> None:
    data = {**CALIB.to_json(), field: value}
    with pytest.raises(CalibrationError, match=f"'{field}'|fx / fy"):
        parse_calibration(data, "intrinsics.json")


@pytest.mark.parametrize("k4", [-50.0, -20.0])
def test_a_lens_model_that_folds_back_inside_the_frame_is_refused(k4: float) -> None:
    """k4 = -50 makes theta_d(theta) turn back at ~27 deg (~420 px from the centre, the frame's nearest
    border is 540 px away): the model cannot describe its own image. Once accepted (the only check was a
    fold within 20 deg)."""
    with pytest.raises(CalibrationError, match=r"fold the lens model back \d+ px"):
        parse_calibration({**GOOD, "k4": k4}, "intrinsics.json")


def test_the_real_lens_covers_its_frame() -> None:
    """The Egocentric-10K lens folds at its image circle, 979 px out (FACTS.md): beyond every border."""
    circle_px = min(CALIB.fx, CALIB.fy) * float(distorted_angle(np.array(max_half_angle_rad(CALIB)), CALIB))
    assert circle_px == pytest.approx(979, abs=5)
    assert parse_calibration(GOOD, "intrinsics.json") == CALIB
