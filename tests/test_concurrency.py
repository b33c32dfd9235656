"""Runs sharing one output folder, as real processes started at once (`python -m fisheye`): no clip is
corrupted, no manifest entry is lost, and no run deletes another run's inputs (issue 13)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egoclean.video import probe
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from tests.helpers import sample_hub

REPO = Path(__file__).resolve().parents[1]
SPEC = SampleSpec(
    width=96, height=54, clips=(SampleClip(1, 5.0), SampleClip(2, 5.0)), clips_per_shard=1, preset="ultrafast"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    return sample_hub(tmp_path_factory, SPEC)


@pytest.fixture(scope="module")
def long_hub(tmp_path_factory) -> Path:
    """Clips long enough (about 3 s of work) that runs with nothing to do finish while it is at work."""
    root = tmp_path_factory.mktemp("long-hub")
    clips = (SampleClip(1, 1.0), SampleClip(2, 40.0))
    write_sample_hub(
        root, SampleSpec(width=384, height=216, clips=clips, clips_per_shard=1, preset="ultrafast")
    )
    return root


def start(hub: Path, out: Path, clips: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "fisheye", "--source", str(hub), "--out", str(out)]
    command += ["--clips", clips, "--preset", "ultrafast"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(*runs: subprocess.Popen) -> None:
    for run in runs:
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output


def check_folder(folder: Path, clips: set[int]) -> None:
    """Every clip decodes in full, the manifest lists each with its size, nothing temporary is left."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {int(key) for key in manifest["clips"]} == clips
    for entry in manifest["clips"].values():
        path = folder / entry["output"]
        assert path.stat().st_size == entry["size_bytes"]
        assert probe(path).n_frames == entry["frames"] == 150
    assert not list(folder.rglob("*.partial*"))
    assert not (folder / ".staging").exists()


@pytest.mark.parametrize("attempt", range(2))
def test_two_runs_of_the_same_clips_at_once(hub, tmp_path, attempt):
    out = tmp_path / "data"
    finish(start(hub, out, "1,2"), start(hub, out, "1,2"))
    check_folder(out / "factory_001", {1, 2})
    records = [json.loads(p.read_text()) for p in (out / "factory_001/.records").glob("*.json")]
    assert sorted(r["output"] for r in records) == ["rectified_clip_1.mp4", "rectified_clip_2.mp4"]


@pytest.mark.parametrize("attempt", range(2))
def test_two_runs_of_different_clips_at_once_lose_no_entry(hub, tmp_path, attempt):
    out = tmp_path / "data"
    finish(start(hub, out, "1"), start(hub, out, "2"))
    check_folder(out / "factory_001", {1, 2})


def test_a_run_with_nothing_to_do_leaves_the_others_inputs(long_hub, tmp_path):
    hub = long_hub
    out = tmp_path / "data"
    finish(start(hub, out, "1"))
    staging = out / "factory_001/.staging"
    busy = start(hub, out, "1,2")
    deadline = time.monotonic() + 60
    while not any(staging.glob("*/intrinsics.json")) and busy.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    finish(*[start(hub, out, "1") for _ in range(3)])  # each has nothing to do
    # The busy run writes clip 2's record before it deletes its own staging folder: staging looked at
    # first, then the record, so a folder gone while the record is still missing was deleted by another run.
    inputs_left = any(staging.glob("*/intrinsics.json"))
    busy_done = (out / "factory_001/.records/rectified_clip_2.json").exists()
    assert inputs_left or busy_done, "a run with nothing to do deleted another's inputs"
    finish(busy)  # and it ends well (the old code: "clip ... does not exist", its inputs deleted)
    manifest = json.loads((out / "factory_001/manifest.json").read_text())
    assert sorted(manifest["clips"]) == ["00001", "00002"]
    assert not staging.exists()


def test_a_folder_from_before_records_is_not_redone(hub, tmp_path):
    out = tmp_path / "data"
    finish(start(hub, out, "1,2"))
    folder = out / "factory_001"
    shutil.rmtree(folder / ".records")  # as an older version left it: manifest.json only
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mp4")}
    finish(start(hub, out, "1,2"))
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mp4")} == before
    check_folder(folder, {1, 2})


def test_a_lock_that_cannot_write_its_holder_is_one_line_and_lets_go(tmp_path, monkeypatch):
    """A full disk while the holder is written: OutputError, and the lock is free again (the open handle
    once kept it held until garbage collection)."""
    import errno

    from egoclean import locks
    from egoclean.errors import OutputError

    path = tmp_path / ".locks" / "clip.lock"

    def disk_full(run_id=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(locks, "holder_info", disk_full)
        first = locks.FileLock(path, "run-a")
        with pytest.raises(OutputError, match="disk full"):
            first.try_acquire()
        with pytest.raises(OutputError, match="disk full"):
            first.acquire()
    other = locks.FileLock(path, "run-b")
    assert other.try_acquire(), "the failed attempts still hold the lock"
    other.release()
