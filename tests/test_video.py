"""egoclean.video's array views against PyAV's own copies."""

from __future__ import annotations

import av
import numpy as np
import pytest

from egoclean.video import iter_frames, packed_array


@pytest.mark.parametrize("pixel_format", ["rgb24", "bgr24", "gray"])
@pytest.mark.parametrize("size", [(1920, 1080), (101, 37)])  # 101 px: rows padded past width * channels
def test_packed_array_is_to_ndarray_without_the_copy(pixel_format, size):
    rng = np.random.default_rng(0)
    source = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), format="rgb24")
    frame = source.reformat(width=size[0], height=size[1], format=pixel_format)
    view = packed_array(frame)
    np.testing.assert_array_equal(view, frame.to_ndarray())
    view[0, 0] = 255 - view[0, 0]  # a view of the frame's own buffer, not a copy
    np.testing.assert_array_equal(view, frame.to_ndarray())


def test_iter_frames_views_outlive_their_frames(test_clip):
    """The views keep their frames' buffers alive: every frame still holds its own pixels at the end."""
    views = [f.data for f in iter_frames(test_clip, "rgb24")]
    copies = [f.data.copy() for f in iter_frames(test_clip, "rgb24")]
    assert len(views) == len(copies) > 1
    for view, copy in zip(views, copies, strict=True):
        np.testing.assert_array_equal(view, copy)
    assert not np.array_equal(views[0], views[-1])  # frames differ, so a reused buffer would show
