"""The torch remap (the GPU path's) equals cv2.remap on the sample frames, plane by plane, and its output
passes the same geometry check: straight 3D lines come out straight."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from egoclean.video import VideoWriter, iter_frames
from fisheye.camera import rectified_camera
from fisheye.rectify import PlaneRemapper
from fisheye.remap_torch import TorchPlaneRemapper
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION, TEST_LINES_3D, SampleRenderer, moving_boxes
from tests.helpers import fit_line_rms, visible_line_centres

W, H = 480, 270


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    """Three decoded yuv420p frames of the sample scene, through the real lens."""
    path = tmp_path_factory.mktemp("remap") / "fisheye.mp4"
    renderer = SampleRenderer(W, H)
    with VideoWriter(path, W, H, Fraction(30), Fraction(1, 30), codec="h265", crf=12, preset="fast") as w:
        for i in range(3):
            w.write(renderer.render(moving_boxes(i * 2.0, 6.0, None)), pts=i, pixel_format="rgb24")
    return [f.data for f in iter_frames(path, "yuv420p")]


@pytest.mark.parametrize("hfov_deg", [None, 120.0])  # no black pixel / a wide view with black corners
def test_torch_remap_matches_cv2_on_every_plane(frames, hfov_deg):
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H)
    camera = rectified_camera(calib, W, H, hfov_deg)
    reference, ours = PlaneRemapper(calib, camera), TorchPlaneRemapper(calib, camera, "cpu")
    for yuv in frames:
        expected = reference(yuv)
        got = ours(torch.from_numpy(yuv)).numpy()
        for a, b in zip(PlaneRemapper.planes(expected, W, H), PlaneRemapper.planes(got, W, H), strict=True):
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
            assert diff.mean() <= 0.5 and diff.max() <= 2, (diff.mean(), diff.max())


def test_torch_remap_output_keeps_straight_lines_straight(frames):
    """The geometry check of tests/test_rectify.py, on the torch remap's luma."""
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H)
    camera = rectified_camera(calib, W, H)
    luma = TorchPlaneRemapper(calib, camera)(torch.from_numpy(frames[0])).numpy()[:H].astype(np.float32)
    checked = 0
    for line, _, _, centres in visible_line_centres(luma, camera, TEST_LINES_3D):
        checked += 1
        assert fit_line_rms(centres) < 0.5, f"line {line} is not straight"
    assert checked >= 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_remap_on_cuda_equals_cpu(frames):
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(W, H)
    camera = rectified_camera(calib, W, H)
    cpu = TorchPlaneRemapper(calib, camera, "cpu")(torch.from_numpy(frames[0]))
    gpu = TorchPlaneRemapper(calib, camera, "cuda")(torch.from_numpy(frames[0]).cuda()).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1
