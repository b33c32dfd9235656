"""Session fixtures: a tiny random-init V-JEPA 2 model folder and a small synthetic clip.

torch is imported only by the fixture that needs it, so the pure-numpy tests collect and run without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CLIP_FRAMES, write_test_clip


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from VJEPA.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_vjepa2"), seed=0)


@pytest.fixture(scope="session")
def test_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """320x180, 30 fps, 90 frames (3 s) of moving content."""
    return write_test_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", CLIP_FRAMES)
