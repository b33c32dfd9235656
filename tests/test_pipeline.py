"""Phase 1 end to end on real tar files: fetch (local folder and the Hub client against a stand-in), extract,
rectify, verify, resume, clean up, and every kind of bad input."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from egoclean.attempts import ATTEMPTS_DIR, unreturned_attempts
from egoclean.errors import VideoError
from egoclean.locks import LOCKS_DIR
from egoclean.records import read_record
from egoclean.video import probe
from fisheye import pipeline
from fisheye.camera import PinholeCamera
from fisheye.cli import build_parser, main
from fisheye.dataset import WorkerRef
from fisheye.pipeline import run_phase1
from fisheye.rectify import RectifyStats
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from fisheye.settings import Phase1Settings
from fisheye.shards import SHARD_DAMAGED
from fisheye.sources import HubSource, LocalSource
from tests.fake_hub import FakeHub
from tests.helpers import attempt_in_a_process_that_dies, sample_hub

SPEC = SampleSpec(
    width=192,
    height=108,
    clips=(SampleClip(1, 1.0), SampleClip(2, 1.5), SampleClip(3, 0.5)),
    clips_per_shard=1,
    preset="ultrafast",
)
WORKER_DIR = Path("factory_001/workers/worker_001")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub_master(tmp_path_factory) -> Path:
    return sample_hub(tmp_path_factory, SPEC)


@pytest.fixture
def hub(hub_master, tmp_path) -> Path:
    """A private copy of the sample hub that a test may damage."""
    root = tmp_path / "hub"
    shutil.copytree(hub_master, root)
    return root


def run_cli(hub: Path, out: Path, *extra: str) -> int:
    return main(["--source", str(hub), "--out", str(out), "--preset", "ultrafast", *extra])


def test_local_source_end_to_end(hub, tmp_path):
    out = tmp_path / "data"
    before = sorted(p.name for p in (hub / WORKER_DIR).iterdir())
    assert run_cli(hub, out, "--clips", "00001,00002", "--decode", "auto") == 0
    folder = out / "factory_001"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".attempts",  # attempts at a clip whose process died (none did; kept, as .locks, for other runs)
        ".locks",  # one lock file per clip and the manifest's (kept: deleting a lock file is a race)
        ".records",  # one record per finished clip
        "intrinsics.json",
        "manifest.json",
        "rectified_clip_1.mp4",
        "rectified_clip_1_preview.jpg",
        "rectified_clip_2.mp4",
        "rectified_clip_2_preview.jpg",
    ]  # the raw clips, shards and staging area are gone
    manifest = json.loads((folder / "manifest.json").read_text())
    for index, seconds in ((1, 1.0), (2, 1.5)):
        entry = manifest["clips"][f"{index:05d}"]
        info = probe(folder / entry["output"])
        assert entry["source_clip"] == f"factory001_worker001_{index:05d}"
        assert entry["frames"] == info.n_frames == entry["source_frames"] == round(seconds * SPEC.fps)
        assert entry["duration_s"] == pytest.approx(seconds, abs=0.04)
        # how it was made: --decode auto falls back to the CPU (and cv2) where there is no NVDEC
        on_gpu = entry["decoder"] == "cuda"
        assert on_gpu == torch.cuda.is_available() and entry["remap"] == ("torch-cuda" if on_gpu else "cv2")
        assert entry["encoder"] in (("h264_nvenc", "libx264") if on_gpu else ("libx264",))
        assert entry["codec_threads"] == "auto"  # FFmpeg's choice, from this machine's cores
    camera = json.loads((folder / "intrinsics.json").read_text())
    assert (camera["model"], camera["width"], camera["height"]) == ("pinhole", 192, 108)
    assert camera["hfov_deg"] == pytest.approx(94, abs=0.5) and camera["invalid_pixel_fraction"] == 0
    assert camera["source_fisheye"]["fx"] == pytest.approx(1030.587009)
    assert camera["source_fisheye_at_frame_size"]["image_width"] == 192
    assert sorted(p.name for p in (hub / WORKER_DIR).iterdir()) == before  # the user's own tars are kept


def test_hub_source_downloads_only_needed_shards_and_deletes_them(hub, tmp_path):
    out = tmp_path / "data"
    with FakeHub(hub) as fake:
        source = HubSource("hf_test_good", endpoint=fake.url)
        manifest = run_phase1(Phase1Settings(clips="2", out=out, preset="ultrafast"), source)
        served = {path for (method, path) in fake.requests if method == "GET" and path.endswith(".tar")}
    assert list(manifest["clips"]) == ["00002"]
    assert "part02" not in " ".join(served), "the shard after the last wanted clip must not be downloaded"
    folder = out / "factory_001"
    assert not (folder / pipeline.STAGING_DIR).exists(), "downloaded shards and Hub cache must be deleted"
    assert not list(out.rglob("*.tar")) and not list(out.rglob("*.partial*"))


def test_a_rerun_of_some_clips_downloads_only_the_shards_that_hold_one_to_redo(hub, tmp_path):
    """Every shard a --clips walk reads is read whole, so the manifest learns its clip list: the rerun skips
    part00 (clip 1 is done) and fetches only part01 (before, the walk began again at part00)."""
    out = tmp_path / "data"
    with FakeHub(hub) as fake:
        settings = Phase1Settings(clips="1,2", out=out, preset="ultrafast")
        run_phase1(settings, HubSource("hf_test_good", endpoint=fake.url))
        manifest = json.loads((out / "factory_001" / "manifest.json").read_text())
        assert manifest["shards"] == {
            "factory001_worker001_part00.tar": [1],
            "factory001_worker001_part01.tar": [2],
        }
        (out / "factory_001" / "rectified_clip_2.mp4").unlink()
        fake.reset_counts()
        assert list(run_phase1(settings, HubSource("hf_test_good", endpoint=fake.url))["clips"]) == [
            "00001",
            "00002",
        ]
        served = sorted(
            path.rsplit("_", 1)[1]
            for (method, path) in fake.requests
            if method == "GET" and path.endswith(".tar")
        )
    assert served == ["part01.tar"]


def test_all_clips_and_another_worker_get_their_own_folder(hub, tmp_path):
    write_sample_hub(
        hub, SampleSpec(width=96, height=54, clips=SPEC.clips, worker="worker_002", preset="ultrafast")
    )
    out = tmp_path / "data"
    assert run_cli(hub, out, "--clips", "1") == 0
    assert run_cli(hub, out, "--worker", "factory_001/worker_002", "--clips", "all") == 0
    assert sorted(p.name for p in (out / "factory_001/worker_002").glob("*.mp4")) == [
        "rectified_clip_1.mp4",
        "rectified_clip_2.mp4",
        "rectified_clip_3.mp4",
    ]
    assert [p.name for p in (out / "factory_001").glob("*.mp4")] == ["rectified_clip_1.mp4"]


def test_rerun_skips_finished_clips_and_redoes_the_rest(hub, tmp_path, monkeypatch):
    out = tmp_path / "data"
    assert run_cli(hub, out, "--clips", "1,2") == 0
    folder = out / "factory_001"
    first = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mp4")}
    (folder / "rectified_clip_2.mp4").unlink()
    calls = []
    real = pipeline.rectify_video
    monkeypatch.setattr(
        pipeline, "rectify_video", lambda src, *a, **k: calls.append(src.name) or real(src, *a, **k)
    )
    assert run_cli(hub, out, "--clips", "1,2") == 0
    assert calls == ["factory001_worker001_00002.mp4"]
    assert (folder / "rectified_clip_1.mp4").stat().st_mtime_ns == first["rectified_clip_1.mp4"]
    assert (folder / "rectified_clip_2.mp4").is_file()
    calls.clear()
    assert run_cli(hub, out, "--clips", "1,2", "--crf", "30") == 0  # other settings: everything is redone
    assert sorted(calls) == ["factory001_worker001_00001.mp4", "factory001_worker001_00002.mp4"]


def test_interrupted_rectify_leaves_no_final_file_and_keeps_inputs(hub, tmp_path, monkeypatch):
    out = tmp_path / "data"
    real = pipeline.rectify_video

    def crash_midway(src, dst, *args, **kwargs):
        if "00002" in src.name:
            dst.write_bytes(b"half a video")
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(pipeline, "rectify_video", crash_midway)
    assert run_cli(hub, out, "--clips", "1,2") == 130
    folder = out / "factory_001"
    assert (folder / "rectified_clip_1.mp4").is_file()
    assert not (folder / "rectified_clip_2.mp4").exists() and not list(folder.glob("*.partial*"))
    assert list((folder / pipeline.STAGING_DIR).glob("*/factory001_worker001_00002.mp4")), "raw clip kept"
    monkeypatch.setattr(pipeline, "rectify_video", real)
    assert run_cli(hub, out, "--clips", "1,2") == 0
    assert probe(folder / "rectified_clip_2.mp4").n_frames == 45
    assert not (folder / pipeline.STAGING_DIR).exists()


def one_line_error(capsys) -> str:
    """The run's stderr ends with exactly one `error:` line and holds no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def test_missing_intrinsics(hub, tmp_path, capsys):
    (hub / WORKER_DIR / "intrinsics.json").unlink()
    assert run_cli(hub, tmp_path / "data") == 2
    assert "intrinsics.json" in one_line_error(capsys)
    assert not list((tmp_path / "data").rglob("*.mp4"))


def test_malformed_intrinsics_names_the_field(hub, tmp_path, capsys):
    path = hub / WORKER_DIR / "intrinsics.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "fy"}))
    assert run_cli(hub, tmp_path / "data") == 2
    assert "'fy'" in one_line_error(capsys)


def replace_member(tar_path: Path, name: str, data: bytes | None) -> None:
    """Rewrite a tar with member `name` replaced by `data` (or dropped when None)."""
    members = []
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            members.append((m, tar.extractfile(m).read()))
    with tarfile.open(tar_path, "w") as tar:
        for m, content in members:
            if m.name == name:
                if data is None:
                    continue
                content = data
                m.size = len(data)
            tar.addfile(m, io.BytesIO(content))


@pytest.mark.parametrize("sidecar_agrees", [False, True])
def test_truncated_mp4_is_refused_and_inputs_kept(hub, tmp_path, capsys, sidecar_agrees):
    tar_path = hub / WORKER_DIR / "factory001_worker001_part00.tar"
    with tarfile.open(tar_path) as tar:
        video = tar.extractfile("factory001_worker001_00001.mp4").read()
        sidecar = json.loads(tar.extractfile("factory001_worker001_00001.json").read())
    truncated = video[: len(video) * 2 // 3]
    replace_member(tar_path, "factory001_worker001_00001.mp4", truncated)
    if sidecar_agrees:  # damaged at the source: the sidecar's size matches, only decoding can tell
        sidecar["size_bytes"] = len(truncated)
        replace_member(tar_path, "factory001_worker001_00001.json", json.dumps(sidecar).encode())
    assert run_cli(hub, tmp_path / "data", "--clips", "1") == 2
    message = one_line_error(capsys)
    # the extracted copy is a temporary file: the line names the clip in its shard, and the shard's fix
    assert "error: clip factory001_worker001_00001 in shard factory001_worker001_part00.tar: " in message
    assert message.endswith(SHARD_DAMAGED) and pipeline.STAGING_DIR not in message
    bookkeeping = {LOCKS_DIR, ATTEMPTS_DIR}  # lock files stay (deleting one races another run)
    assert not [p for p in (tmp_path / "data").rglob("rectified_clip_1*") if not bookkeeping & set(p.parts)]
    assert tar_path.is_file()


def test_tar_without_the_requested_clip(hub, tmp_path, capsys):
    assert run_cli(hub, tmp_path / "data", "--clips", "7") == 2
    assert "factory001_worker001_00007" in one_line_error(capsys)


def test_unwritable_output_folder(hub, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go")
    assert run_cli(hub, blocker / "data") == 2
    assert "not-a-folder" in one_line_error(capsys)
    assert blocker.read_text().startswith("a file")


def test_unknown_worker_and_bad_settings(hub, tmp_path, capsys):
    assert run_cli(hub, tmp_path / "data", "--worker", "factory_009/worker_001") == 2
    assert "factory_009" in one_line_error(capsys)
    assert not (tmp_path / "data").exists(), "a run that made nothing must leave no empty folders"
    assert run_cli(hub, tmp_path / "data", "--clips", "one,two") == 2
    assert "--clips" in one_line_error(capsys)
    assert run_cli(hub, tmp_path / "data", "--hfov", "200") == 2
    assert "hfov" in one_line_error(capsys)


def test_no_token_and_a_named_worker_asks_for_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_KEY", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert (
        main(
            [
                "--worker",
                "factory_002/worker_001",
                "--out",
                str(tmp_path),
                "--env-file",
                str(tmp_path / "none"),
            ]
        )
        == 2
    )
    assert "HF_KEY" in one_line_error(capsys)


def test_local_source_reads_without_copying(hub):
    source = LocalSource(hub)
    assert source.list_shards(WorkerRef.parse("factory_001/worker_001")) == [
        f"factory001_worker001_part{i:02d}.tar" for i in range(3)
    ]


def test_full_disk_mid_encode_is_one_line_and_loses_nothing(hub, tmp_path, capsys, monkeypatch):
    import errno

    from egoclean import video

    out = tmp_path / "data"
    assert run_cli(hub, out, "--clips", "1") == 0
    real_write = video.VideoWriter.write

    def fill_disk(self, image, pts, pixel_format="yuv420p"):
        if pts > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, image, pts, pixel_format)

    monkeypatch.setattr(video.VideoWriter, "write", fill_disk)
    assert run_cli(hub, out, "--clips", "1,2") == 2
    assert "disk full" in one_line_error(capsys)
    folder = out / "factory_001"
    assert (folder / "rectified_clip_1.mp4").is_file(), "finished outputs are kept"
    assert not (folder / "rectified_clip_2.mp4").exists() and not list(folder.glob("*.partial*"))
    assert (hub / WORKER_DIR / "factory001_worker001_part01.tar").is_file()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("fx", 1e300, "'fx'"), ("fx", 1e-300, "'fx'"), ("fy", 1e300, "'fy'"), ("cx", -5.0, "principal point")],
)
def test_absurd_calibration_is_refused_and_inputs_kept(hub, tmp_path, capsys, field, value, expected):
    """A focal length no lens has would give an all-black or flat video with rc 0: refuse it first."""
    path = hub / WORKER_DIR / "intrinsics.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {field: value}))
    assert run_cli(hub, tmp_path / "data", "--clips", "1") == 2
    message = one_line_error(capsys)
    assert expected in message and str(path) in message  # names the file the user can fix, not a copy
    assert not list((tmp_path / "data").rglob("*.mp4"))
    assert sorted(p.name for p in (hub / WORKER_DIR).iterdir()) == sorted(
        p.name for p in (hub / WORKER_DIR).iterdir()
    )


def test_field_of_view_that_would_be_mostly_black_is_refused(hub, tmp_path, capsys):
    assert run_cli(hub, tmp_path / "data", "--clips", "1", "--hfov", "165") == 2
    message = one_line_error(capsys)
    assert "--hfov 165" in message and "black" in message and "narrower" in message
    assert not list((tmp_path / "data").rglob("*.mp4"))


def test_failed_clip_leaves_the_good_camera_record_alone(hub, tmp_path, capsys, monkeypatch):
    """Clip 2 comes from a source of another frame size and fails to rectify: intrinsics.json must still
    describe the camera that clip 1 follows."""
    out = tmp_path / "data"
    assert run_cli(hub, out, "--clips", "1") == 0
    camera = (out / "factory_001" / "intrinsics.json").read_text()
    other = tmp_path / "other-hub"
    write_sample_hub(other, SampleSpec(width=96, height=54, clips=(SampleClip(2, 0.5),), preset="ultrafast"))

    def broken(*args, **kwargs):
        raise VideoError("clip 2: the encoder gave up (injected)")

    monkeypatch.setattr(pipeline, "rectify_video", broken)
    capsys.readouterr()
    assert run_cli(other, out, "--clips", "2") == 2
    assert "injected" in one_line_error(capsys)
    assert (out / "factory_001" / "intrinsics.json").read_text() == camera
    assert not (out / "factory_001" / "rectified_clip_2.mp4").exists()


def test_many_missing_clips_make_one_short_line(hub, tmp_path, capsys):
    assert run_cli(hub, tmp_path / "data", "--clips", "0-99999") == 2
    message = one_line_error(capsys)
    assert "more not found" in message and len(message) < 400


class FailingTap:
    """A one-pass tap whose model breaks at frame 5 (or, with `at_finish`, when the clip is done)."""

    def __init__(self, at_finish: bool = False) -> None:
        self.at_finish, self.frames, self.aborted = at_finish, 0, False

    def push(self, index, pts, frame, planes=None):
        self.frames += 1
        if not self.at_finish and index == 5:
            raise RuntimeError("CUDA out of memory")

    def finish(self, video_path):
        if self.at_finish:
            raise ValueError("the model went away")

    def abort(self):
        self.aborted = True


@pytest.mark.parametrize("at_finish", [False, True])
def test_a_failing_one_pass_tap_does_not_fail_the_clip(hub, tmp_path, at_finish):
    """The clip is still rectified and recorded; the error is one line naming the clip; phase 2 will
    embed it from the mp4."""
    errors: list[str] = []
    taps: list[FailingTap] = []

    def make_tap(clip_name, info):
        taps.append(FailingTap(at_finish))
        return taps[-1]

    settings = Phase1Settings(clips="1", out=tmp_path / "data", source=hub, preset="ultrafast")
    manifest = run_phase1(settings, LocalSource(hub), pipeline.Progress(error=errors.append), tap=make_tap)
    assert list(manifest["clips"]) == ["00001"]
    (tap,) = taps
    assert tap.frames == (SPEC.fps if at_finish else 6)  # a failed tap gets no more frames
    assert tap.aborted is not at_finish
    (line,) = errors
    assert line.startswith("rectified_clip_1.mp4: one-pass embedding failed") and "phase 2 redoes it" in line


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_lost_intrinsics_json_is_written_again_by_a_rerun(hub, tmp_path, damage):
    """Once a rerun with every clip done said "nothing to do" and left the folder without its camera."""
    out = tmp_path / "data"
    assert run_cli(hub, out, "--clips", "1,2") == 0
    camera = out / "factory_001" / "intrinsics.json"
    original = json.loads(camera.read_text())
    camera.unlink() if damage == "delete" else camera.write_text("{")
    assert run_cli(hub, out, "--clips", "1,2") == 0
    assert json.loads(camera.read_text()) == original
    assert not (out / "factory_001" / pipeline.STAGING_DIR).exists()


# Phase 1 (python -m fisheye) in a process of its own, whose clip 1 ends that process as the kernel's OOM
# killer would (no cleanup runs), or, with EGOCLEAN_TEST_HANG, waits there to be sent a signal.
POISONED_RUN = """
import os, sys, time
from pathlib import Path
from fisheye import pipeline
from fisheye.cli import build_parser, main
real = pipeline.process_clip
def poisoned(clip, ctx):
    if clip.index == 1:
        Path(os.environ["EGOCLEAN_TEST_FLAG"]).write_text("in clip 1")
        if os.environ.get("EGOCLEAN_TEST_HANG"):
            time.sleep(300)
        os._exit(137)
    return real(clip, ctx)
pipeline.process_clip = poisoned
sys.exit(main(sys.argv[1:]))
"""


def poisoned_run(hub: Path, out: Path, flag: Path, hang: bool = False) -> subprocess.Popen:
    env = {**os.environ, "EGOCLEAN_TEST_FLAG": str(flag)} | ({"EGOCLEAN_TEST_HANG": "1"} if hang else {})
    command = [sys.executable, "-c", POISONED_RUN, "--source", str(hub), "--out", str(out)]
    command += ["--preset", "ultrafast", "--clips", "1,2"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_clip_that_kills_its_process_is_left_out_after_max_retries_reruns(hub, tmp_path, capsys):
    """The local engine ends with the process a clip kills, so the count of such deaths is kept in the
    output folder from run to run (once each rerun met the clip again, and died again)."""
    out, flag = tmp_path / "data", tmp_path / "flag"
    folder = out / "factory_001"
    mark = folder / ".attempts/rectified_clip_1.mp4"
    assert poisoned_run(hub, out, flag).wait(120) == 137
    assert unreturned_attempts(mark) == 1
    # SIGTERM (kill, a scheduler) is not a death: the guard's cleanup runs, and the count starts again
    run = poisoned_run(hub, out, flag, hang=True)
    flag.unlink()
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 143 and b"interrupted:" in output and b"Traceback" not in output, output
    assert unreturned_attempts(mark) == 0
    for died in (1, 2, 3):  # --max-retries 2: 3 tries in all
        assert poisoned_run(hub, out, flag).wait(120) == 137
        assert unreturned_attempts(mark) == died
    assert not (folder / "rectified_clip_2.mp4").exists(), "no run got past clip 1"

    # the next run, here in this process and without the poison, leaves clip 1 out and does clip 2; so does
    # every rerun, until --retry-failed
    for _ in range(2):
        assert run_cli(hub, out, "--clips", "1,2") == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(err) == 2, err
        assert "factory001_worker001_00001 -> rectified_clip_1.mp4: " in err[0] and "died 3 times" in err[0]
        assert "dmesg | grep -i oom" in err[0] and "--retry-failed" in err[0]
        assert "1 clip(s) left out (00001;" in err[1]
        assert not (folder / "rectified_clip_1.mp4").exists() and (folder / "rectified_clip_2.mp4").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert list(manifest["clips"]) == ["00002"] and list(manifest["failed"]) == ["00001"]
        record = read_record(folder, "rectified_clip_1.mp4")
        assert record["status"] == "failed" and record["attempts"] == 3
    assert run_cli(hub, out, "--clips", "1,2", "--retry-failed") == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["clips"]) == ["00001", "00002"] and manifest["failed"] == {}
    assert not mark.exists() and not list(out.rglob(".staging"))


def left_out_lines(capsys) -> list[str]:
    """The run's `error:` lines, which must be the clip left out (clip 1, for killing its process) and the
    closing line that counts it."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 2, err
    assert "factory001_worker001_00001 -> rectified_clip_1.mp4: " in err[0] and "--retry-failed" in err[0]
    assert "1 clip(s) left out (00001;" in err[1]
    return err


def test_a_clip_left_out_for_killing_its_process_costs_no_download(hub, tmp_path, capsys, monkeypatch):
    """A rerun that leaves a clip out (1 + --max-retries deaths in a row) does not fetch its shard, yet still
    records it as failed, under that rerun's settings; --retry-failed fetches it again."""
    out = tmp_path / "data"
    folder = out / "factory_001"
    assert run_cli(hub, out, "--clips", "1,2") == 0  # the manifest learns which shard holds which clip
    (folder / "rectified_clip_1.mp4").unlink()  # to be made again, and each attempt kills its process
    for _ in range(3):
        assert attempt_in_a_process_that_dies(folder / ".attempts/rectified_clip_1.mp4", 3) == 9
    capsys.readouterr()
    fetched: list[str] = []
    fetch = LocalSource.fetch_shard
    monkeypatch.setattr(
        LocalSource,
        "fetch_shard",
        lambda self, worker, shard, *a, **k: (
            fetched.append(shard.rsplit("_", 1)[1]) or fetch(self, worker, shard, *a, **k)
        ),
    )

    assert run_cli(hub, out, "--clips", "1,2") == 2
    left_out_lines(capsys)
    assert fetched == [], "clip 2 is done and clip 1 left out: no shard holds anything to do"
    # other settings: clip 2 is made again (its shard only), clip 1 is recorded as failed with them
    assert run_cli(hub, out, "--clips", "1,2", "--crf", "30") == 2
    left_out_lines(capsys)
    assert fetched == ["part01.tar"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["settings"]["crf"] == 30
    assert list(manifest["clips"]) == ["00002"] and list(manifest["failed"]) == ["00001"]
    record = read_record(folder, "rectified_clip_1.mp4")
    assert record["status"] == "failed" and record["settings"]["crf"] == 30
    fetched.clear()
    # every clip: the walk skips part00 and part01 and reads part02, unknown so far, for clip 3
    assert run_cli(hub, out, "--clips", "all", "--crf", "30") == 2
    left_out_lines(capsys)
    assert fetched == ["part02.tar"]
    fetched.clear()
    assert run_cli(hub, out, "--clips", "1,2", "--crf", "30", "--retry-failed") == 0
    assert fetched == ["part00.tar"] and (folder / "rectified_clip_1.mp4").is_file()


@pytest.mark.parametrize("clips", ["1,2", "all"])
def test_phase_1s_retry_failed_forgets_only_phase_1s_deaths(hub, tmp_path, clips):
    """--retry-failed serves both phases, each forgetting the deaths it counted: phase 1's are named after
    the rectified mp4, phase 2's (VJEPA.encode) after the embeddings, in the same .attempts/."""
    out = tmp_path / "data"
    attempts = out / "factory_001" / ".attempts"
    attempts.mkdir(parents=True)
    (attempts / "rectified_clip_1.mp4").write_text("3")
    (attempts / "rectified_clip_1_emb.npy").write_text("3")
    assert run_cli(hub, out, "--clips", clips, "--retry-failed") == 0
    assert (out / "factory_001" / "rectified_clip_1.mp4").is_file()
    assert not (attempts / "rectified_clip_1.mp4").exists()
    assert unreturned_attempts(attempts / "rectified_clip_1_emb.npy") == 3


def test_python_m_fisheye_takes_max_retries(hub, tmp_path, capsys):
    """--max-retries is python -m fisheye's too (one definition, egoclean.engine.ScaleSettings): with 0 the
    run after one death leaves the clip out; the default, 2, tries it again."""
    out = tmp_path / "data"
    folder = out / "factory_001"
    assert attempt_in_a_process_that_dies(folder / ".attempts/rectified_clip_1.mp4", 1) == 9
    assert run_cli(hub, out, "--clips", "1,2", "--max-retries", "0") == 2
    assert "died 1 times" in left_out_lines(capsys)[0]
    assert not (folder / "rectified_clip_1.mp4").exists() and (folder / "rectified_clip_2.mp4").is_file()
    assert run_cli(hub, out, "--clips", "1,2") == 0
    assert (folder / "rectified_clip_1.mp4").is_file()
    assert "--max-retries N " in build_parser().format_help()


def test_a_source_whose_header_and_frames_disagree_is_named_by_clip_and_shard(test_clip):
    """A clip whose header promises more than its frames hold (damaged in its shard) makes an output shorter
    than the header: the line names the clip and its shard, not the temporary files, and says to download
    the shard again."""
    info = probe(test_clip)  # 90 frames, 3 s: stands for the rectified output of every frame that decoded
    camera = PinholeCamera(info.width, info.height, 150.0, 150.0, info.width / 2, info.height / 2)
    promised = replace(info, n_frames=180, duration_s=6.0)
    origin = "clip factory001_worker001_00001 in shard factory001_worker001_part00.tar"
    with pytest.raises(VideoError) as caught:
        pipeline.verify_output(test_clip, RectifyStats(90, promised, None), camera, origin, SHARD_DAMAGED)
    assert str(caught.value) == (
        f"{origin}: its header says 6.000 s (180 frames) but the 90 frames that decode last 3.000 s; "
        f"{SHARD_DAMAGED}"
    )
    entry = pipeline.verify_output(test_clip, RectifyStats(90, info, None), camera, origin, SHARD_DAMAGED)
    assert (entry["frames"], entry["width"], entry["height"]) == (90, info.width, info.height)
