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


# --- phase 1's --decode and --encoder ---------------------------------------------------------------------


def test_encoder_choice_falls_back_to_the_cpu_encoder_where_there_is_no_nvenc():
    from fisheye.rectify import EncoderSettings, pick_encoder

    assert pick_encoder(EncoderSettings("h264", 18, "veryfast"), frames_on_gpu=False) == "libx264"
    assert pick_encoder(EncoderSettings("h265", 18, "veryfast", "libx265"), frames_on_gpu=False) == "libx265"
    if NO_GPU:  # auto with GPU frames asks for NVENC, which does not open here
        assert pick_encoder(EncoderSettings("h264", 18, "veryfast"), frames_on_gpu=True) == "libx264"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: NVENC may work")
def test_nvenc_without_a_gpu_is_one_clear_error():
    from fisheye.rectify import EncoderSettings, pick_encoder

    with pytest.raises(VideoError, match="--encoder nvenc: h264_nvenc does not open here"):
        pick_encoder(EncoderSettings("h264", 18, "veryfast", "nvenc"), frames_on_gpu=False)


def test_an_encoder_for_the_other_codec_is_refused():
    from egoclean.config import validate
    from egoclean.errors import SettingError
    from fisheye.settings import Phase1Settings

    with pytest.raises(SettingError, match="--encoder libx264 writes h264, but --codec is h265"):
        validate(Phase1Settings(codec="h265", encoder="libx264"))
    validate(Phase1Settings(codec="h265", encoder="libx265"))


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--decode", "cuda"], "--decode cuda: PyTorch sees no CUDA GPU"),
        (["--encoder", "nvenc"], "--encoder nvenc"),
    ],
)
def test_a_gpu_setting_without_the_gpu_fails_before_anything_is_fetched(argv, says, tmp_path, capsys):
    from fisheye import cli

    code = cli.main(["--sample", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {says}"), err
    assert not (tmp_path / "out").exists()  # not even the sample was rendered


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU with NVDEC")
def test_nvdec_rectify_matches_the_cpu_path(test_clip, tmp_path):
    """--decode cuda: NVDEC frames remapped on the GPU write what the CPU path writes, within the two
    remaps' ~2 code values (lossless x264 so that only the remaps differ)."""
    from egoclean.video import probe
    from fisheye.camera import rectified_camera
    from fisheye.rectify import EncoderSettings, rectify_video
    from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as CALIB

    source = probe(test_clip)
    width, height = source.width, source.height
    camera = rectified_camera(CALIB.scaled_to(width, height), width, height)
    lossless = EncoderSettings("h264", 0, "ultrafast", "libx264")
    frames = []
    for decode in ("cpu", "cuda"):
        out = tmp_path / f"{decode}.mp4"
        stats = rectify_video(test_clip, out, CALIB, camera, lossless, decode=decode)
        assert stats.decoder == decode
        frames.append(np.stack([f.data.astype(np.int16) for f in iter_frames(out, "yuv420p")]))
    diff = np.abs(frames[0] - frames[1])
    assert diff.mean() <= 0.5 and diff.max() <= 2


@pytest.mark.skipif(NO_GPU, reason="needs an NVIDIA GPU")
def test_nvenc_writes_a_clip_of_every_frame_where_the_gpu_has_one(test_clip, tmp_path):
    from egoclean.video import NVENC_ENCODERS, VideoWriter, encoder_works, probe

    if not encoder_works(NVENC_ENCODERS["h264"]):
        pytest.skip("this GPU has no NVENC (H100 and H200 have none)")
    source = probe(test_clip)
    frames = [f.data for f in iter_frames(test_clip, "yuv420p")]
    out = tmp_path / "nvenc.mp4"
    with VideoWriter(out, source.width, source.height, source.rate, source.time_base,
                     encoder=NVENC_ENCODERS["h264"]) as writer:  # fmt: skip
        for i, frame in enumerate(frames):
            writer.write(frame, i)
    assert probe(out).n_frames == len(frames) and probe(out).codec == "h264"
