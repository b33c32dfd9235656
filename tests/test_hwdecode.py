"""Hardware decoding falls back to the CPU by itself where there is no NVDEC; asked for outright, it says
why it cannot, in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoclean.errors import VideoError
from egoclean.hwdecode import open_for_decode
from egoclean.video import iter_frames

NO_GPU = not torch.cuda.is_available()


def test_auto_decodes_here_and_says_where(test_clip):
    container, chosen = open_for_decode(test_clip, "auto")
    with container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert chosen == ("cpu" if NO_GPU else "cuda")
    reference = [f.data for f in iter_frames(test_clip, "rgb24")]
    assert len(frames) == len(reference)
    if chosen == "cpu":
        assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: NVDEC may work")
def test_cuda_without_a_driver_is_one_clear_error(test_clip):
    with pytest.raises(VideoError, match="--decode cuda: no NVDEC decoder here"):
        open_for_decode(test_clip, "cuda")


def test_cpu_never_touches_the_gpu(test_clip):
    container, chosen = open_for_decode(test_clip, "cpu")
    container.close()
    assert chosen == "cpu"
