"""egoclean.video's array views against PyAV's own copies."""

from __future__ import annotations

import av
import numpy as np
import pytest

from egoclean.errors import VideoError
from egoclean.video import iter_frames, packed_array, probe
from tests.helpers import CLIP_FRAMES, write_still_image, write_test_clip


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


@pytest.mark.parametrize("image_type", [".jpg", ".png"])
def test_a_still_image_renamed_mp4_is_refused_not_read_as_a_video_of_one_frame(tmp_path, image_type):
    """FFmpeg's image demuxers open a picture as a video of one frame; no clip here is anything but MP4."""
    still = write_still_image(tmp_path / "rectified_clip_1.mp4", image_type)
    expected = r"rectified_clip_1\.mp4: not an MP4 video \(FFmpeg reads it as .*\); delete it"
    with pytest.raises(VideoError, match=expected):
        probe(still)
    with pytest.raises(VideoError, match=expected):
        next(iter_frames(still))
    with pytest.raises(VideoError, match=r"^clip 1 of shard 7: not an MP4 video .*; download it again$"):
        probe(still, label="clip 1 of shard 7", remedy="download it again")


@pytest.mark.parametrize("codec", ["h264", "h265"])  # what phase 1 writes; the dataset's clips are H.265
def test_the_mp4s_the_project_writes_are_read(tmp_path, codec):
    clip = write_test_clip(tmp_path / "clip.mp4", CLIP_FRAMES, codec=codec)
    info = probe(clip)
    assert info.codec == {"h264": "h264", "h265": "hevc"}[codec] and info.n_frames == CLIP_FRAMES
    assert sum(1 for _ in iter_frames(clip)) == CLIP_FRAMES
