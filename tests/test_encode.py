"""The streaming, batched encoder against a naive per-window reference; outputs, resume and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import VJEPA2VideoProcessor

from egoclean.attempts import unreturned_attempts
from egoclean.errors import VideoError
from egoclean.files import remove_files
from egoclean.layout import embedding_paths, rectified_name
from egoclean.video import iter_frames
from tests.helpers import CLIP_FPS, CLIP_FRAMES, killed_writers_partial, write_still_image, write_test_clip
from VJEPA.embedder import ModelError, load_encoder
from VJEPA.encode import REMAKE_CLIP, encode_clip, main
from VJEPA.preprocess import preprocess_frames
from VJEPA.settings import EncodeSettings as Settings

REPO = Path(__file__).resolve().parents[1]
WINDOW, STRIDE_S = 8, 0.5  # 15-frame stride on the 30 fps test clip
# What a run leaves in its output folder even when it makes nothing: its crash counts and its locks (kept,
# as phase 1 keeps them: deleting a lock file another run may be waiting on is a race)
BOOKKEEPING = {".attempts", ".locks"}


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return load_encoder(str(tiny_model_dir), device="cpu", dtype="float32")


def reference_embeddings(clip: Path, encoder, window: int, stride_frames: int, frame_step: int, crop: str):
    """Decode each window on its own from the start of the file and run the model one window at a time."""
    processor = VJEPA2VideoProcessor.from_pretrained(encoder.model_id)
    span = (window - 1) * frame_step + 1
    embeddings, times_s = [], []
    start = 0
    while True:
        frames = list(islice(iter_frames(clip), start, start + span))
        if len(frames) < span:
            break
        video = np.stack([f.data for f in frames[::frame_step]])
        if crop == "center":
            pixels = processor([video], return_tensors="pt")["pixel_values_videos"]  # [1, T, 3, 32, 32]
        else:  # three crops, each a [1, T, 3, 32, 32] video
            pixels = preprocess_frames(torch.from_numpy(video), encoder.spec, "three").transpose(0, 1)
        with torch.inference_mode():
            tokens = encoder.model.get_vision_features(pixels)
        embeddings.append(tokens.mean(dim=1).mean(dim=0).numpy())
        times_s.append(frames[0].time_s)
        start += stride_frames
    return np.stack(embeddings), np.array(times_s)


@pytest.mark.parametrize(
    ("frame_step", "crop", "batch_size"),
    [(1, "center", 4), (2, "center", 3), (1, "three", 8)],
)
def test_streaming_matches_per_window_reference(test_clip, encoder, tmp_path, frame_step, crop, batch_size):
    settings = Settings(
        window=WINDOW, stride_s=STRIDE_S, frame_step=frame_step, crop=crop, batch_size=batch_size
    )
    result = encode_clip(test_clip, encoder, settings, out_dir=tmp_path)
    emb, ts = np.load(result.emb_path), np.load(result.ts_path)
    ref_emb, ref_ts = reference_embeddings(test_clip, encoder, WINDOW, 15, frame_step, crop)
    assert emb.dtype == np.float32 and ts.dtype == np.float64
    assert emb.shape == ref_emb.shape == (result.n_windows, encoder.hidden_size)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ts, ref_ts)


def test_outputs_on_disk(test_clip, encoder, tmp_path):
    progress_calls = []
    settings = Settings(window=WINDOW, stride_s=STRIDE_S, batch_size=4)
    result = encode_clip(
        test_clip, encoder, settings, tmp_path, progress=lambda d, t: progress_calls.append((d, t))
    )
    n_windows = (CLIP_FRAMES - WINDOW) // 15 + 1
    assert result.n_windows == n_windows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_emb.json", "clip_emb.npy", "clip_ts.npy"]
    ts = np.load(result.ts_path)
    np.testing.assert_allclose(ts, np.arange(n_windows) * 15 / CLIP_FPS, atol=1e-9)
    facts = json.loads(result.json_path.read_text())
    assert facts["n_windows"] == n_windows
    assert facts["n_frames"] == CLIP_FRAMES
    assert facts["dropped_tail_frames"] == CLIP_FRAMES - ((n_windows - 1) * 15 + WINDOW)
    assert facts["random_init"] is True
    assert facts["stride_frames"] == 15 and facts["window"] == WINDOW and facts["crop"] == "center"
    assert progress_calls[-1] == (n_windows, n_windows)
    assert [d for d, _ in progress_calls] == sorted({min(n_windows, 4 * i) for i in range(1, 4)})


def test_resume_skips_then_recomputes_on_change_or_force(test_clip, encoder, tmp_path):
    settings = Settings(window=WINDOW, stride_s=STRIDE_S)
    first = encode_clip(test_clip, encoder, settings, tmp_path)
    stamp = first.emb_path.stat().st_mtime_ns
    assert encode_clip(test_clip, encoder, settings, tmp_path).skipped
    assert first.emb_path.stat().st_mtime_ns == stamp
    changed = encode_clip(test_clip, encoder, Settings(window=WINDOW, stride_s=1.0), tmp_path)
    assert not changed.skipped
    assert json.loads(changed.json_path.read_text())["stride_frames"] == 30
    forced = encode_clip(test_clip, encoder, Settings(window=WINDOW, stride_s=1.0, force=True), tmp_path)
    assert not forced.skipped


def test_a_clip_made_again_that_fails_to_embed_keeps_nothing_of_the_old_video(tmp_path, encoder):
    from VJEPA.analyze import analyze_clip

    clip = write_test_clip(tmp_path / "clip.mp4", CLIP_FRAMES)
    settings = Settings(window=WINDOW, stride_s=STRIDE_S)
    analyze_clip(encode_clip(clip, encoder, settings).emb_path)
    assert len(list(tmp_path.iterdir())) == 8  # the clip, 3 embedding outputs, 4 analysis outputs
    write_test_clip(clip, 6, 64, 48)  # phase 1 made it again, and the new one is too short to embed
    with pytest.raises(VideoError, match="shorter than one window"):
        encode_clip(clip, encoder, settings)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no analysis of the old video to report


def test_other_settings_keep_what_still_describes_the_clip_until_replaced(tmp_path, encoder, monkeypatch):
    from VJEPA import encode
    from VJEPA.analyze import analyze_clip

    clip = write_test_clip(tmp_path / "clip.mp4", CLIP_FRAMES)
    analyze_clip(encode_clip(clip, encoder, Settings(window=WINDOW, stride_s=STRIDE_S)).emb_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def out_of_memory(*args, **kwargs):
        raise ModelError("CUDA out of memory")

    with monkeypatch.context() as patch:  # a redo with other settings fails: the clip is unchanged
        patch.setattr(encode, "embed_frames", out_of_memory)
        with pytest.raises(ModelError):
            encode_clip(clip, encoder, Settings(window=WINDOW, stride_s=1.0))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # all still valid: kept
    redone = encode_clip(clip, encoder, Settings(window=WINDOW, stride_s=1.0))
    assert json.loads(redone.json_path.read_text())["stride_frames"] == 30
    # the analysis of the replaced embeddings is gone with them
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mp4",
        "clip_emb.json",
        "clip_emb.npy",
        "clip_ts.npy",
    ]


def test_cli_resume_message_and_force(test_clip, tiny_model_dir, tmp_path, capsys):
    args = [str(test_clip), "--model", str(tiny_model_dir), "--window", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert main([*args, "--force"]) == 0
    assert "skipped" not in capsys.readouterr().out


def test_temporary_files_of_killed_runs_are_removed_and_others_kept(
    test_clip, tiny_model_dir, tmp_path, capsys
):
    dead = killed_writers_partial(tmp_path / "clip_emb.npy")  # a run SIGKILLed while saving
    elsewhere = killed_writers_partial(tmp_path / "clip_ts.npy", host="another-host")  # may be alive there
    args = [str(test_clip), "--model", str(tiny_model_dir), "--window", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    assert "removed 1 temporary files" in capsys.readouterr().out
    assert not dead.exists() and elsewhere.exists()


def test_too_short_clip_raises(tmp_path, encoder):
    short = write_test_clip(tmp_path / "short.mp4", 6, 64, 48)
    with pytest.raises(VideoError, match="shorter than one window"):
        encode_clip(short, encoder, Settings(window=WINDOW), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.mp4"]


def test_a_still_image_renamed_as_a_rectified_clip_is_refused(tmp_path, encoder):
    """Once read as a video of one frame and called too short; it is no video at all, and phase 1 makes
    the clip again."""
    still = write_still_image(tmp_path / "rectified_clip_1.mp4")
    with pytest.raises(VideoError, match=r"rectified_clip_1\.mp4: not an MP4 video .*rerun phase 1"):
        encode_clip(still, encoder, Settings(window=WINDOW), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rectified_clip_1.mp4"]


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    return {
        "missing": folder / "missing.mp4",
        "undecodable": garbage,
        "too short": write_test_clip(folder / "short.mp4", 6, 64, 48),
    }


def test_cli_bad_clips_one_line_each_and_good_clip_done(test_clip, tiny_model_dir, tmp_path, capsys):
    bad = make_bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    out.mkdir()
    other = out / "other_emb.npy"  # an earlier clip's output must stay untouched
    other.write_bytes(b"earlier output")
    args = ["--model", str(tiny_model_dir), "--window", "8", "--out", str(out)]
    code = main([str(bad["missing"]), str(bad["undecodable"]), str(test_clip), str(bad["too short"]), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "missing.mp4" in err[0] and "garbage.mp4" in err[1] and "short.mp4" in err[2]
    assert other.read_bytes() == b"earlier output"
    assert sorted(p.name for p in out.iterdir()) == [
        ".attempts",  # attempts at embedding a clip whose process died (none did; kept, as phase 1 keeps it)
        ".locks",  # one lock per clip (kept, as phase 1 keeps them: deleting a lock file is a race)
        "clip_emb.json",
        "clip_emb.npy",
        "clip_ts.npy",
        "other_emb.npy",
    ]


@pytest.mark.parametrize("case", ["missing", "undecodable", "too short"])
def test_cli_single_bad_clip(case, tiny_model_dir, tmp_path, capsys):
    clip = make_bad_inputs(tmp_path / "bad")[case]
    code = main([str(clip), "--model", str(tiny_model_dir), "--window", "8", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and clip.name in err[0]
    assert not (tmp_path / "out").exists() or not any(
        p.name not in BOOKKEEPING for p in (tmp_path / "out").iterdir()
    )


def test_model_with_mismatched_crop_is_refused(tiny_model_dir, test_clip, tmp_path, capsys):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    config_path = folder / "video_preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config["crop_size"] = {"height": 48, "width": 48}
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="48 px"):
        load_encoder(str(folder), device="cpu")
    assert main([str(test_clip), "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "crop" in err[0]
    assert not (tmp_path / "out").exists()


def test_unknown_model_folder_is_refused(tmp_path, capsys, test_clip):
    assert main([str(test_clip), "--model", str(tmp_path / "no_such_model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_model" in err[0]


def test_script_offline_hub_model_exits_2_with_one_line(test_clip, tmp_path):
    """Run as the user does; the Hub is unreachable here, so the default model cannot load."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, str(REPO / "VJEPA" / "encode.py"), str(test_clip), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "huggingface-cli download facebook/vjepa2-vitl-fpc64-256" in lines[0] and "--model" in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_input_folder_says_to_run_phase_1(tiny_model_dir, tmp_path, capsys):
    assert main([str(tmp_path / "factory_001"), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0] and "phase 1" in err[0]


def test_truncated_clip_is_refused_not_embedded(tmp_path, tiny_model_dir, capsys):
    """A clip cut short on disk still has a header promising every frame: decoding fewer must fail."""
    full = write_test_clip(tmp_path / "full.mp4", 120)
    data = full.read_bytes()
    moov_first = data.find(b"moov") < data.find(b"mdat")
    assert moov_first  # faststart: the index survives the cut, so the container keeps claiming 120 frames
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 5])
    out = tmp_path / "out"
    assert main([str(cut), "--model", str(tiny_model_dir), "--window", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.mp4" in err[0] and "container says 120" in err[0], err
    assert err[0].endswith(REMAKE_CLIP), "phase 1 makes it again"
    assert not out.exists() or not any(p.name not in BOOKKEEPING for p in out.iterdir())


def test_a_rectified_clip_that_breaks_off_mid_decode_says_to_rerun_phase_1(tmp_path, tiny_model_dir, capsys):
    """The decoder's error, as the header's (probe), ends with phase 1's remedy, not the generic one."""
    data = bytearray(write_test_clip(tmp_path / "rectified_clip_1.mp4", 120).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xff" * 2000  # the header is intact: probe passes, decoding fails
    damaged = tmp_path / "rectified_clip_1.mp4"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main([str(damaged), "--model", str(tiny_model_dir), "--window", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{damaged}: decoding failed at frame " in err[0], err
    assert err[0].endswith(f"truncated or corrupt; {REMAKE_CLIP}")


def test_cuda_without_a_gpu_is_one_line(test_clip, tiny_model_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([str(test_clip), "--model", str(tiny_model_dir), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda: no CUDA GPU"), err


def test_ctrl_c_is_one_line_and_exit_130(test_clip, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from VJEPA import encode

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "embed_frames", interrupted)
    code = main([str(test_clip), "--model", str(tiny_model_dir), "--window", "8", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err and err.strip().startswith("interrupted:")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BOOKKEEPING)
    assert not any((tmp_path / ".attempts").iterdir()), "Ctrl-C is not a death: nothing is counted"


def test_full_disk_while_saving_embeddings_says_disk_full(test_clip, encoder, tmp_path, monkeypatch):
    from egoclean import files
    from egoclean.errors import OutputError
    from VJEPA.encode import write_outputs

    out = tmp_path / "out"
    out.mkdir()
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    emb_path = out / "clip_emb.npy"
    full = emb_path.with_name("clip_emb.partial.npy")
    full.symlink_to("/dev/full")
    monkeypatch.setattr(
        files, "partial_path", lambda final: full if final == emb_path else final.with_suffix(".tmp")
    )
    big = np.zeros((4096, 64), np.float32)  # larger than one buffered write
    paths = (emb_path, out / "clip_ts.npy", out / "clip_emb.json")
    with pytest.raises(OutputError, match="disk full"):
        write_outputs(paths, big, np.arange(4096.0), {})
    assert not emb_path.exists() and not paths[2].exists()


def test_out_of_memory_is_one_line_that_names_a_batch_size_that_fits(test_clip, tiny_model_dir, tmp_path,
                                                                     capsys, monkeypatch):  # fmt: skip
    """torch's OutOfMemoryError (a RuntimeError, so no EgoCleanError) once escaped as a traceback. A CPU
    cannot run out of GPU memory: the model's call raises it, as it would on a card too small."""
    from VJEPA import encode

    real_load = encode.load_encoder

    def load_on_a_small_card(*args, **kwargs):
        loaded = real_load(*args, **kwargs)

        def out_of_memory(pixels):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 18.00 GiB")

        loaded.model.get_vision_features = out_of_memory
        return loaded

    monkeypatch.setattr(encode, "load_encoder", load_on_a_small_card)
    argv = [str(test_clip), "--model", str(tiny_model_dir), "--window", "8", "--batch-size", "2"]
    code = main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "ran out of memory on a batch of 2 window(s)" in err and "--batch-size 1" in err
    assert not list(tmp_path.glob("*_emb.npy"))


def test_a_decode_setting_the_model_cannot_take_is_said_once_before_any_clip(
    test_clip, tiny_model_dir, tmp_path, capsys
):
    """--decode cuda with the model on the CPU was once refused clip by clip, then summed up as "2 of 2
    clips failed ...; the others are done"."""
    shutil.copy(test_clip, tmp_path / "rectified_clip_2.mp4")
    shutil.copy(test_clip, tmp_path / "rectified_clip_1.mp4")
    argv = [
        str(tmp_path),
        "--model",
        str(tiny_model_dir),
        "--window",
        "8",
        "--device",
        "cpu",
        "--decode",
        "cuda",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --decode cuda: the model is on cpu"), err


def test_an_out_folder_that_is_a_file_is_one_line_before_the_model_loads(test_clip, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    # no --model: the default Hub model cannot load here, so reaching it would be another error
    assert main([str(test_clip), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0]
        == f"error: {blocker}: is a file, but a folder is needed there; choose another --out folder"
    ), err


# Phase 2 (VJEPA/encode.py) in a process of its own, whose decoding of rectified_clip_1.mp4 ends that process
# as a decoder's segfault, a CUDA abort or the kernel's OOM killer would (no cleanup runs).
POISONED_ENCODE = """
import os, sys
from VJEPA import encode
real = encode.clip_frames
def poisoned(video_path, decoder, encoder):
    if video_path.name == "rectified_clip_1.mp4":
        os._exit(137)
    return real(video_path, decoder, encoder)
encode.clip_frames = poisoned
sys.exit(encode.main(sys.argv[1:]))
"""


def poisoned_encode(args: list[str]) -> int:
    run = subprocess.run(
        [sys.executable, "-c", POISONED_ENCODE, *args], cwd=REPO, capture_output=True, timeout=300
    )
    return run.returncode


def test_a_clip_whose_embedding_kills_its_process_is_left_out_after_max_retries_reruns(
    test_clip, tiny_model_dir, tmp_path, capsys
):
    """Phase 2 counts the deaths of the process embedding a clip in its folder, apart from phase 1's count
    of the same clip: the rerun after 1 + --max-retries of them in a row leaves it out with one line and
    embeds the others, and so does every rerun until --retry-failed. An attempt that returns clears it."""
    folder = tmp_path / "factory_001"
    folder.mkdir()
    clips = [shutil.copy(test_clip, folder / rectified_name(index)) for index in (1, 2)]
    emb1, emb2 = (embedding_paths(Path(clip))[0] for clip in clips)
    mark, phase1_mark = (
        folder / ".attempts/rectified_clip_1_emb.npy",
        folder / ".attempts/rectified_clip_1.mp4",
    )
    args = [
        str(folder),
        "--model",
        str(tiny_model_dir),
        "--window",
        "8",
        "--device",
        "cpu",
        "--max-retries",
        "1",
    ]

    assert poisoned_encode(args) == 137
    assert unreturned_attempts(mark) == 1 and not emb1.exists() and not emb2.exists()
    assert main(args) == 0  # this attempt returned: the count starts again
    assert not mark.exists() and emb1.exists() and emb2.exists()
    remove_files(embedding_paths(Path(clips[0])))  # to be embedded again, and each attempt kills its process
    for died in (1, 2):  # --max-retries 1: 2 tries in all
        assert poisoned_encode(args) == 137
        assert unreturned_attempts(mark) == died
    capsys.readouterr()
    for _ in range(2):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2, err
        assert (
            err[0].startswith(f"error: {clips[0]} -> rectified_clip_1_emb.npy: ") and "died 2 times" in err[0]
        )
        assert "dmesg | grep -i oom" in err[0] and err[0].endswith("run again with --retry-failed")
        assert "1 of 2 clips failed (see above); the others are done" in err[1]
        assert not emb1.exists() and emb2.exists() and unreturned_attempts(mark) == 2

    phase1_mark.write_text("2")  # phase 1's deaths of the same clip (tests/test_pipeline.py: and vice versa)
    assert main([*args, "--retry-failed"]) == 0  # forgets phase 2's only
    assert emb1.exists() and not mark.exists() and unreturned_attempts(phase1_mark) == 2
