"""Runs sharing one output folder, as real processes started at once (`python -m fisheye`): no clip is
corrupted, no manifest entry is lost, and no run deletes another run's inputs (issue 13). Phase 2
(`python VJEPA/encode.py`) too: two runs at once embed each clip once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from egoclean.layout import embedding_paths, rectified_name
from egoclean.locks import LOCKS_DIR, FileLock
from egoclean.video import probe
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from tests.helpers import sample_hub, write_test_clip

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


# Phase 2 in a process of its own that notes each clip it embeds (in the file argv[1]), and starts on its
# first clip only once as many runs as argv[3] say have loaded their model (each touches a file in the folder
# argv[2]): runs started together then come to the first clip together. Each embedding takes half a second
# longer, so that a run coming to a clip another run is embedding finds it at work.
COUNTED_ENCODE = """
import os, sys, time
from pathlib import Path
from VJEPA import encode
counts, ready, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
load, frames = encode.load_encoder_for, encode.clip_frames
def load_then_meet(settings):
    encoder = load(settings)
    (ready / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(ready.iterdir())) < runs and time.monotonic() < deadline:
        time.sleep(0.01)
    return encoder
def counted(video_path, decoder, encoder):
    with open(counts, "a") as handle:
        handle.write(video_path.name + "\\n")
    time.sleep(0.5)
    return frames(video_path, decoder, encoder)
encode.load_encoder_for, encode.clip_frames = load_then_meet, counted
sys.exit(encode.main(sys.argv[4:]))
"""
N_CLIPS = 3


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """Three 2 s rectified clips (8 windows each at 0.25 s), the phase-2 tests' size."""
    folder = tmp_path_factory.mktemp("clips")
    first = write_test_clip(folder / rectified_name(1), 60, 64, 48)
    for index in range(2, N_CLIPS + 1):
        shutil.copy2(first, folder / rectified_name(index))
    return folder


def copy_clips(clip_folder: Path, folder: Path) -> Path:
    """The clips alone in `folder`, with their mtimes: what resume compares (VJEPA.encode.SOURCE_KEYS)."""
    folder.mkdir(parents=True)
    for clip in clip_folder.glob("*.mp4"):
        shutil.copy2(clip, folder / clip.name)
    return folder


def start_encode(folder: Path, model: Path, counts: Path, ready: Path, runs: int) -> subprocess.Popen:
    ready.mkdir(exist_ok=True)
    settings = ["--model", str(model), "--device", "cpu", "--window", "4", "--stride-s", "0.25"]
    command = [sys.executable, "-c", COUNTED_ENCODE, str(counts), str(ready), str(runs), str(folder)]
    # unbuffered: a run waiting for a lock has said so; one thread each: the runs share two cores
    env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, *settings], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def encode_at_once(folder: Path, model: Path, runs: int) -> tuple[list[str], list[str]]:
    """`runs` phase-2 runs on `folder` started together; returns each one's output (all must exit 0) and the
    clips embedded, one entry per embedding."""
    counts, ready = folder.parent / f"{folder.name}-counts", folder.parent / f"{folder.name}-ready"
    started = [start_encode(folder, model, counts, ready, runs) for _ in range(runs)]
    outputs = []
    for run in started:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
        outputs.append(output)
    return outputs, counts.read_text().split()


def embedding_outputs(folder: Path, indices: range = range(1, N_CLIPS + 1)) -> dict[str, object]:
    """Each clip's arrays and sidecar, less the sidecar's path of the clip (another folder's is another)."""
    found: dict[str, object] = {}
    for index in indices:
        emb, ts, meta = embedding_paths(folder / rectified_name(index))
        found[emb.name], found[ts.name] = np.load(emb).tolist(), np.load(ts).tolist()
        found[meta.name] = {k: v for k, v in json.loads(meta.read_text()).items() if k != "source"}
    return found


def test_two_phase2_runs_at_once_embed_each_clip_once(clip_folder, tiny_model_dir, tmp_path):
    """Both end well, each clip is embedded by one of them (the other finds it taken, waits and skips it),
    and the outputs are those of a run on its own."""
    alone = copy_clips(clip_folder, tmp_path / "alone")
    encode_at_once(alone, tiny_model_dir, 1)
    shared = copy_clips(clip_folder, tmp_path / "shared")
    outputs, embedded = encode_at_once(shared, tiny_model_dir, 2)
    assert sorted(embedded) == [rectified_name(i) for i in range(1, N_CLIPS + 1)], outputs
    assert "embedded by another run meanwhile, skipped" in "".join(outputs)
    assert embedding_outputs(shared) == embedding_outputs(alone)


def test_a_clip_another_process_is_embedding_is_waited_for_then_skipped(
    clip_folder, tiny_model_dir, tmp_path
):
    """The run embeds the free clip first, waits for the taken one, and keeps what the holder made."""
    made = copy_clips(clip_folder, tmp_path / "made")
    encode_at_once(made, tiny_model_dir, 1)
    folder = copy_clips(clip_folder, tmp_path / "folder")
    (folder / rectified_name(3)).unlink()
    clip1 = folder / rectified_name(1)
    # the lock a person sees in the folder: named after the embeddings it guards
    held = FileLock(folder / LOCKS_DIR / "rectified_clip_1_emb.npy.lock", "the-other-run")
    assert held.try_acquire()
    try:
        run = start_encode(folder, tiny_model_dir, tmp_path / "counts", tmp_path / "ready", 1)
        assert run.stdout is not None
        lines = []
        for line in run.stdout:  # up to the line that says it waits (to the end, where it does not)
            lines.append(line)
            if f"{clip1}: run the-other-run is embedding it; waiting" in line:
                break
        assert embedding_paths(folder / rectified_name(2))[2].exists(), "the free clip is not done first"
        for path in embedding_paths(clip1):  # what the holder makes, meanwhile
            shutil.copy2(made / path.name, path)
    finally:
        held.release()
    output, _ = run.communicate(timeout=300)
    output = "".join(lines) + output
    assert run.returncode == 0, output
    assert (tmp_path / "counts").read_text().split() == [rectified_name(2)], output
    assert f"{clip1}: embedded by another run meanwhile, skipped (8 windows" in output
    assert embedding_outputs(folder, range(1, 3)) == embedding_outputs(made, range(1, 3))
