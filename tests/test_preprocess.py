"""Batched preprocessing against transformers' own VJEPA2VideoProcessor, on real decoded frames."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from transformers import VJEPA2VideoProcessor

from egoclean.video import iter_frames
from VJEPA.embedder import load_preprocess_spec
from VJEPA.preprocess import PreprocessSpec, crop_offsets, preprocess_frames, resized_size


@pytest.fixture(scope="module")
def decoded_frames(test_clip) -> np.ndarray:
    """[8, 180, 320, 3] uint8, every 10th frame of the test clip."""
    return np.stack([f.data for f in islice(iter_frames(test_clip), 0, 80, 10)])


def processor_output(processor: VJEPA2VideoProcessor, frames: np.ndarray) -> torch.Tensor:
    # A list of 4-D videos: batched 5-D input returned the wrong shape in some transformers versions.
    out = processor([frames], return_tensors="pt")["pixel_values_videos"]
    return out[0]  # [T, 3, crop, crop]


@pytest.mark.parametrize("source", ["tiny_model_folder", "real_defaults"])
def test_center_crop_matches_processor(source, decoded_frames, tiny_model_dir):
    if source == "tiny_model_folder":
        processor = VJEPA2VideoProcessor.from_pretrained(tiny_model_dir)
        spec = load_preprocess_spec(str(tiny_model_dir), crop_size=32)
        assert (spec.crop_size, spec.shortest_edge) == (32, 36)
    else:
        processor = VJEPA2VideoProcessor()  # crop 256, shortest edge 292: facebook/vjepa2-vitl-fpc64-256
        spec = PreprocessSpec()
        assert spec == PreprocessSpec.for_crop(256)
    expected = processor_output(processor, decoded_frames)
    ours = preprocess_frames(torch.from_numpy(decoded_frames), spec, "center")
    assert ours.shape == (len(decoded_frames), 1, 3, spec.crop_size, spec.crop_size)
    assert ours.dtype == torch.float32
    diff = (ours[:, 0] - expected).abs()
    assert diff.mean().item() <= 0.01
    assert diff.max().item() <= 0.1


def test_three_crops_span_the_long_side(decoded_frames):
    spec = PreprocessSpec.for_crop(32)
    frames = torch.from_numpy(decoded_frames)
    three = preprocess_frames(frames, spec, "three")
    center = preprocess_frames(frames, spec, "center")
    assert three.shape == (len(decoded_frames), 3, 3, 32, 32)
    torch.testing.assert_close(three[:, 1], center[:, 0], rtol=0, atol=0)
    assert not torch.equal(three[:, 0], three[:, 2])  # left and right crops see different content
    height, width = resized_size(180, 320, 36)
    assert (height, width) == (36, 64)
    assert crop_offsets(height, width, 32, "three") == [(2, 0), (2, 16), (2, 32)]


def test_resized_size_truncates_long_edge_like_transformers():
    assert resized_size(1080, 1920, 292) == (292, 519)  # 292 * 1920 / 1080 = 519.1
    assert resized_size(1920, 1080, 292) == (519, 292)
    assert resized_size(100, 100, 36) == (36, 36)


def test_output_dtype_and_bad_input():
    frames = torch.zeros((2, 40, 60, 3), dtype=torch.uint8)
    out = preprocess_frames(frames, PreprocessSpec.for_crop(32), dtype=torch.float16)
    assert out.dtype == torch.float16
    # black frames normalise to -mean/std per channel
    expected = -torch.tensor(PreprocessSpec().mean) / torch.tensor(PreprocessSpec().std)
    torch.testing.assert_close(out[0, 0, :, 0, 0].float(), expected, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frames.float(), PreprocessSpec.for_crop(32))
    with pytest.raises(ValueError, match="crop mode"):
        preprocess_frames(frames, PreprocessSpec.for_crop(32), "five")  # type: ignore[arg-type]
