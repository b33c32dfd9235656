"""Many workers in one run on both engines (egoclean.scale), on a REAL local Ray cluster of 2 CPUs started
once for the module: identical outputs, retries, a poison clip, a killed driver, two drivers at once."""

from __future__ import annotations

import errno
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

from egoclean.engine import ScaleSettings, map_tasks
from egoclean.errors import OutputError, SettingError
from egoclean.files import output_error
from egoclean.records import read_records
from egoclean.run import main as run_main
from egoclean.scale import analyse_worker, run_scale
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from fisheye.settings import Phase1Settings
from fisheye.sources import LocalSource
from tests.helpers import x264_settings
from tests.test_pipeline import replace_member
from VJEPA.settings import EncodeSettings

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
WORKERS = (("factory_001", "worker_001"), ("factory_001", "worker_002"), ("factory_002", "worker_001"))
CLIPS = (SampleClip(1, 1.0), SampleClip(2, 1.5))
FOLDERS = ("factory_001", "factory_001/worker_002", "factory_002")
PHASE2_ENDINGS = (
    "_emb.npy",
    "_ts.npy",
    "_emb.json",
    "_analysis.json",
    "diagnostics.png",
    "_distance.npy",
    "_autocorr.npy",
    "joint_analysis.json",
    "report.html",
)
VOLATILE = ("run_id", "finished_at", "source_mtime_ns", "source")  # differ between runs by nature


@pytest.fixture(scope="session", autouse=True)
def cluster():
    """One real local Ray cluster of 2 CPUs for the whole session (start-up takes 7-9 s here)."""
    # The workers import this checkout, and this module by its pytest name (test_scale) for FlakySource.
    paths = (str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    for factory, worker in WORKERS:
        spec = SampleSpec(
            96, 54, clips=CLIPS, clips_per_shard=1, preset="ultrafast", factory=factory, worker=worker
        )
        write_sample_hub(root, spec)
    return root


@pytest.fixture(scope="module")
def encode(tmp_path_factory) -> EncodeSettings:
    from VJEPA.tiny_model import save_tiny_model

    model = save_tiny_model(tmp_path_factory.mktemp("model"))
    return EncodeSettings(model=str(model), device="cpu", window=4, stride_s=0.25, batch_size=4)


def phase1(hub: Path, out: Path, codec_threads: int = 0) -> Phase1Settings:
    return Phase1Settings(clips="1,2", out=out, source=hub, preset="ultrafast", codec_threads=codec_threads)


def snapshot(out: Path, with_phase2: bool = True) -> dict[str, object]:
    """Every output file of every worker folder (records included): bytes, or JSON without the run's own
    folder, run id and times."""
    result: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        name = str(path.relative_to(out))
        phase2 = name.endswith(PHASE2_ENDINGS) or "report_thumbs" in name
        if not path.is_file() or ".locks" in name or (not with_phase2 and phase2):
            continue
        if path.suffix == ".json":
            data = json.loads(path.read_text().replace(str(out), "OUT"))
            result[name] = strip(data)
        elif path.suffix == ".html":  # the report embeds the analysis records, paths included
            result[name] = path.read_text().replace(str(out), "OUT")
        else:
            result[name] = path.read_bytes()
    return result


def assert_phase1_like(out: Path, reference: Path) -> None:
    """Phase 1's outputs and records in `out` equal those of one uninterrupted run; nothing temporary left."""
    expected, found = snapshot(reference, with_phase2=False), snapshot(out, with_phase2=False)
    assert sorted(found) == sorted(expected)
    for name, data in expected.items():
        assert found[name] == data, f"{name} differs from one uninterrupted run"
    assert not list(out.rglob("*.partial*")) and not list(out.rglob(".staging"))


def strip(data: object) -> object:
    if isinstance(data, dict):
        return {k: strip(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [strip(v) for v in data]
    return data


@pytest.fixture(scope="module")
def local_run(hub, encode, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "data"
    # one codec thread: what a Ray rectify task of 1 CPU (the default --rectify-cpus) runs with
    settings = phase1(hub, out, codec_threads=1)
    result = run_scale(settings, ScaleSettings(engine="local", workers="all"), encode)
    return out, result


def test_both_engines_make_identical_outputs_and_records(hub, encode, local_run, tmp_path):
    out, local = local_run
    assert local.counts == {"done": 6} and not local.failures
    ray_out = tmp_path / "data"
    result = run_scale(phase1(hub, ray_out), ScaleSettings(engine="ray", workers="all"), encode)
    assert result.counts == {"done": 6} and not result.failures
    expected, found = snapshot(out), snapshot(ray_out)
    assert sorted(found) == sorted(expected)
    for folder in FOLDERS:
        assert f"{folder}/rectified_clip_2_emb.npy" in found and f"{folder}/joint_analysis.json" in found
        assert f"{folder}/.records/rectified_clip_1.json" in found
        # both phases in one pass: the embeddings came from the rectified frames, not from the mp4
        assert found[f"{folder}/rectified_clip_1_emb.json"]["frames_from"] == "one pass"  # type: ignore[index]
    for name, data in expected.items():
        assert found[name] == data, f"{name} differs between the engines"
    manifest = json.loads((ray_out / "factory_002/manifest.json").read_text())
    assert list(manifest["clips"]) == ["00001", "00002"]
    # the codecs ran with the rectifier's one CPU, not with threads for every core of the node
    assert manifest["clips"]["00001"]["codec_threads"] == 1
    assert " threads=1 " in x264_settings(ray_out / "factory_002/rectified_clip_1.mp4")
    assert result.busy_s["embed"] > 0 and result.startup_s >= 0


def test_cpu_requests_the_cluster_cannot_schedule_are_refused_before_any_work(hub, encode, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["1", "--engine", "ray", "--workers", "all", "--source", str(hub), "--out", str(out)]
    assert run_main([*argv, "--rectify-cpus", "3"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "--rectify-cpus 3" in line and "has 2 CPUs" in line, line
    with pytest.raises(SettingError, match="none would be left to fetch"):  # one pass: actors hold CPUs
        run_scale(phase1(hub, out), ScaleSettings(engine="ray", workers="all", embed_actors=2), encode)
    assert not out.exists() or not list(out.rglob("*.mp4")), "nothing was fetched or rectified"


class FlakySource(LocalSource):
    """A local folder whose first fetch of part01 fails like a dropped connection (across processes:
    the flag is a file)."""

    def __init__(self, root: Path, flag: Path) -> None:
        super().__init__(root)
        self.flag = flag

    def fetch_shard(self, worker, shard_name, dest_dir, progress=None):
        if worker.worker == "worker_002" and shard_name.endswith("part01.tar") and not self.flag.exists():
            self.flag.write_text("failed once")
            raise ConnectionError("connection reset by peer")
        return super().fetch_shard(worker, shard_name, dest_dir, progress)


def flaky_factory(hub: Path, flag: Path):
    return lambda settings: FlakySource(hub, flag)


def test_a_transient_failure_is_retried_and_succeeds(hub, tmp_path):
    out = tmp_path / "data"
    flag = tmp_path / "flag"
    result = run_scale(
        phase1(hub, out),
        ScaleSettings(engine="ray", workers="factory_001/*"),
        backoff_s=0.01,
        source_factory=flaky_factory(hub, flag),
    )
    assert flag.exists(), "the failure was injected"
    assert result.counts == {"done": 4} and not result.failures
    retried = [r for r in result.rows if r["worker"] == "factory_001/worker_002" and r["key"] == "00002"]
    assert len(retried) == 1


class CountingSource(LocalSource):
    """A local folder that notes each shard fetched in `log` (a file: the fetches run in Ray's workers)."""

    def __init__(self, root: Path, log: Path) -> None:
        super().__init__(root)
        self.log = log

    def fetch_shard(self, worker, shard_name, dest_dir, progress=None):
        with self.log.open("a") as f:
            f.write(f"{worker.factory}/{worker.worker}/{shard_name}\n")
        return super().fetch_shard(worker, shard_name, dest_dir, progress)


def counting_factory(hub: Path, log: Path):
    return lambda settings: CountingSource(hub, log)


def fetched(log: Path) -> list[str]:
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(lines)


def test_a_rerun_of_every_clip_downloads_only_the_shards_with_clips_to_redo(hub, tmp_path):
    out, log = tmp_path / "data", tmp_path / "fetched"
    settings, scale = replace(phase1(hub, out), clips="all"), ScaleSettings(engine="ray", workers="all")
    assert run_scale(settings, scale, source_factory=counting_factory(hub, log)).counts == {"done": 6}
    assert len(fetched(log)) == 6  # 3 workers x 2 shards of one clip each
    assert run_scale(settings, scale, source_factory=counting_factory(hub, log)).counts == {}
    assert fetched(log) == [], "every shard's clips are finished: none is downloaded again"
    (out / "factory_001/worker_002/rectified_clip_2.mp4").unlink()
    assert run_scale(settings, scale, source_factory=counting_factory(hub, log)).counts == {"done": 1}
    assert fetched(log) == ["factory_001/worker_002/factory001_worker002_part01.tar"]


def test_wanted_clips_are_fetched_from_the_first_shards_that_hold_them_and_no_further(hub, tmp_path):
    out, log = tmp_path / "data", tmp_path / "fetched"
    settings, scale = replace(phase1(hub, out), clips="1"), ScaleSettings(engine="ray", workers="all")
    assert run_scale(settings, scale, source_factory=counting_factory(hub, log)).counts == {"done": 3}
    assert [name.rsplit("_", 1)[1] for name in fetched(log)] == ["part00.tar"] * 3, "part01 is never fetched"
    # a clip that no shard holds: every shard is read, then one failure line per worker; part00 is known
    # from the first walk (it holds clip 1 alone, done), so only part01 is downloaded
    result = run_scale(replace(settings, clips="1,7"), scale, source_factory=counting_factory(hub, log))
    assert [name.rsplit("_", 1)[1] for name in fetched(log)] == ["part01.tar"] * 3
    assert result.counts == {"failed": 3}
    for failure in result.failures:
        assert "_00007 not found in any of the 2 shard(s)" in failure and "check --clips" in failure, failure
    # that walk read every shard whole: the rerun knows neither holds clip 7, downloads nothing, and still
    # names the clip (before, it downloaded all 6 shards again)
    result = run_scale(replace(settings, clips="1,7"), scale, source_factory=counting_factory(hub, log))
    assert fetched(log) == [] and result.counts == {"failed": 3}
    assert all("_00007 not found in any of the 2 shard(s)" in failure for failure in result.failures)


def test_both_phases_after_phase_1_embed_the_clips_phase_1_made(hub, encode, tmp_path):
    out, log = tmp_path / "data", tmp_path / "fetched"
    scale = ScaleSettings(engine="ray", workers="all")
    assert run_scale(phase1(hub, out), scale).counts == {"done": 6}
    result = run_scale(phase1(hub, out), scale, encode, source_factory=counting_factory(hub, log))
    assert fetched(log) == [] and result.counts == {"skipped": 6} and not result.failures
    summary = "\n".join(result.summary())
    assert "with embeddings: 6 clip(s)" in summary and "analysed: 3 worker folder(s)" in summary, summary
    for folder in FOLDERS:
        for index in (1, 2):
            meta = json.loads((out / folder / f"rectified_clip_{index}_emb.json").read_text())
            assert meta["frames_from"] == "decoded clip"  # the two-pass path: from the mp4 phase 1 wrote
        assert str(out / folder) in result.analysis and (out / folder / "joint_analysis.json").exists()


class DyingSource(LocalSource):
    """A local folder whose fetch of factory_001/worker_002's part01 ends its process every time, as the
    kernel's OOM killer would; each attempt appends its pid to `log`."""

    def __init__(self, root: Path, log: Path) -> None:
        super().__init__(root)
        self.log = log

    def fetch_shard(self, worker, shard_name, dest_dir, progress=None):
        if worker.worker == "worker_002" and shard_name.endswith("part01.tar"):
            with self.log.open("a") as f:
                f.write(f"{os.getpid()}\n")
            os._exit(137)
        return super().fetch_shard(worker, shard_name, dest_dir, progress)


def dying_factory(hub: Path, log: Path):
    return lambda settings: DyingSource(hub, log)


def test_a_shard_that_kills_its_process_every_time_fails_alone(hub, tmp_path):
    out, log = tmp_path / "data", tmp_path / "deaths"
    scale = ScaleSettings(engine="ray", workers="factory_001/*")  # --max-retries 2: 3 tries in all
    result = run_scale(phase1(hub, out), scale, source_factory=dying_factory(hub, log))
    pids = log.read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 3, "Ray ran the killed task again, in a new process each time"
    assert result.counts == {"done": 3, "failed": 1}
    (failure,) = result.failures
    assert "factory001_worker002_part01.tar" in failure and "died 3 times" in failure, failure
    (record,) = [r for r in read_records(out / "factory_001/worker_002") if r["status"] == "failed"]
    assert record["output"] == "factory001_worker002_part01.tar" and record["attempts"] == 3
    assert (out / "factory_001/worker_002/rectified_clip_1.mp4").exists()  # the shard before it: done
    assert not list(out.rglob(".staging")), "the attempt counts went with the run's staging folder"


def test_a_clip_that_killed_its_rectify_or_embed_process_too_often_fails_alone(
    hub, encode, tmp_path, monkeypatch
):
    """Both stages count their attempts in the run's staging folder; here 3 deaths are already counted
    (they were made by hand: the Ray test above makes real ones)."""
    out = tmp_path / "data"
    monkeypatch.setattr("egoclean.scale.new_run_id", lambda: "run-with-deaths")
    marks = out / "factory_001/.staging/run-with-deaths/.attempts"
    marks.mkdir(parents=True)
    (marks / "rectified_clip_1.mp4").write_text("3")
    (marks / "rectified_clip_2.mp4.embed").write_text("3")
    scale = ScaleSettings(engine="local", workers="factory_001/worker_001")
    result = run_scale(phase1(hub, out), scale, encode)
    assert result.counts == {"failed": 2}
    one, two = sorted(result.failures)
    assert "factory001_worker001_00001 -> rectified_clip_1.mp4: " in one and "died 3 times" in one
    assert "embed: embedding rectified_clip_2.mp4: " in two and "died 3 times" in two
    assert not (out / "factory_001/rectified_clip_1.mp4").exists()
    assert (out / "factory_001/rectified_clip_2.mp4").exists(), "phase 1 of clip 2 survived"
    monkeypatch.undo()  # a new run starts from a clean count: clip 1 is rectified, clip 2 embedded
    result = run_scale(phase1(hub, out), scale, encode)
    assert result.counts == {"done": 1, "skipped": 1} and not result.failures


def test_a_poison_clip_fails_alone_and_the_run_exits_non_zero(hub, tmp_path, capsys):
    poisoned = tmp_path / "hub"
    shutil.copytree(hub, poisoned)
    tar_path = poisoned / "factory_002/workers/worker_001/factory002_worker001_part00.tar"
    with tarfile.open(tar_path) as tar:
        video = tar.extractfile("factory002_worker001_00001.mp4").read()
        sidecar = json.loads(tar.extractfile("factory002_worker001_00001.json").read())
    truncated = video[: len(video) // 2]
    replace_member(tar_path, "factory002_worker001_00001.mp4", truncated)
    sidecar["size_bytes"] = len(truncated)  # damaged at the source: only decoding can tell
    replace_member(tar_path, "factory002_worker001_00001.json", json.dumps(sidecar).encode())
    out = tmp_path / "data"
    argv = ["1", "--engine", "ray", "--workers", "all", "--source", str(poisoned), "--out", str(out)]
    assert run_main([*argv, "--clips", "1,2", "--preset", "ultrafast"]) == 2
    err = capsys.readouterr().err
    assert "5 done" in err and "1 failed" in err and "factory002_worker001_00001" in err
    (record,) = [r for r in read_records(out / "factory_002") if r["status"] == "failed"]
    assert record["key"] == "00001" and "factory002_worker001_00001" in record["reason"]
    assert record["attempts"] == 1  # bad data is not retried
    assert not (out / "factory_002/rectified_clip_1.mp4").exists()
    assert json.loads((out / "factory_002/manifest.json").read_text())["clips"].keys() == {"00002"}
    assert len(list(out.rglob("rectified_clip_*.mp4"))) == 5


def test_a_worker_with_a_malformed_calibration_is_left_out_and_the_others_finish(hub, tmp_path, capsys):
    broken = tmp_path / "hub"
    shutil.copytree(hub, broken)
    (broken / "factory_001/workers/worker_002/intrinsics.json").write_text('{"model": "fisheye", "fx": ')
    out = tmp_path / "data"
    argv = ["1", "--workers", "all", "--source", str(broken), "--out", str(out), "--preset", "ultrafast"]
    assert run_main([*argv, "--clips", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "4 done" in err and "1 failed" in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: factory_001/worker_002")]
    assert "intrinsics.json" in line and "left out" in line, line
    assert len(list(out.rglob("rectified_clip_*.mp4"))) == 4
    assert not (out / "factory_001/worker_002").exists() or not list(
        (out / "factory_001/worker_002").rglob("*.mp4")
    )
    assert not list(out.rglob(".staging")), "the left-out worker's staging folder is gone too"
    # one worker on its own: the same problem is the run's one-line error, before anything is fetched
    one = ["1", "--worker", "factory_001/worker_002", "--engine", "ray", "--source", str(broken)]
    assert run_main([*one, "--out", str(tmp_path / "one")]) == 2
    (last,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert last.startswith("error: ") and "intrinsics.json" in last and "left out" not in last


def square_or_die(item: int) -> int:
    if item == 2:
        os._exit(137)  # as the OOM killer would end it
    return item * item


def test_map_tasks_keeps_the_order_and_reports_a_task_that_kept_dying():
    def lost(item, why):
        return f"lost {item}: {why}"

    assert map_tasks(square_or_die, [3, 2, 1], ScaleSettings(engine="ray"), lost) == [
        9,
        "lost 2: WorkerCrashedError",
        1,
    ]
    assert map_tasks(square_or_die, [3, 1], ScaleSettings(), lost) == [9, 1]  # local: in this process


def test_a_worker_whose_analysis_fails_is_named_and_the_rest_is_kept(tmp_path):
    folder = tmp_path / "factory_001"
    folder.mkdir()
    (folder / "rectified_clip_1_emb.npy").write_bytes(b"not an array")
    (folder / "rectified_clip_1_ts.npy").write_bytes(b"not an array")
    record, problem = analyse_worker(None, str(folder))
    assert record is None and "rectified_clip_1_emb.npy" in problem, problem
    assert analyse_worker(None, str(tmp_path / "empty")) == (None, "")  # nothing embedded: nothing to say


class FullDiskSource(LocalSource):
    """A local folder whose fetch of factory_001/worker_002's shards finds the disk full."""

    def fetch_shard(self, worker, shard_name, dest_dir, progress=None):
        if worker.worker == "worker_002":
            raise output_error(Path(dest_dir) / shard_name, OSError(errno.ENOSPC, "No space left on device"))
        return super().fetch_shard(worker, shard_name, dest_dir, progress)


def full_disk_factory(hub: Path):
    return lambda settings: FullDiskSource(hub)


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_is_finished(hub, tmp_path, engine):
    out = tmp_path / "data"
    scale = ScaleSettings(engine=engine, workers="factory_001/*")
    with pytest.raises(OutputError, match=r"factory001_worker002_part00\.tar: disk full; free some space"):
        run_scale(phase1(hub, out), scale, source_factory=full_disk_factory(hub))
    assert len(list((out / "factory_001").glob("rectified_clip_*.mp4"))) == 2, "worker_001's clips are kept"
    folder = out / "factory_001/worker_002"
    assert not [r for r in read_records(folder) if r["status"] == "failed"], (
        "a full disk is not the clip's fault"
    )
    # with room again, the same run finishes what is left
    assert run_scale(phase1(hub, out), scale).counts == {"done": 2}


def driver(hub: Path, out: Path, address: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "egoclean", "1", "--engine", "ray", "--ray-address", address]
    command += ["--workers", "all", "--source", str(hub), "--out", str(out), "--clips", "1,2"]
    command += ["--preset", "ultrafast"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_driver_is_resumed_to_the_same_outputs(hub, local_run, cluster, tmp_path):
    out = tmp_path / "data"
    run = driver(hub, out, cluster)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if len(list(out.rglob(".records/*.json"))) >= 2:
            break
        time.sleep(0.01)
    assert run.poll() is None, "the driver ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    time.sleep(1.0)  # let the cluster cancel the dead job's tasks
    before = {r["key"] + r["output"] + str(r["finished_at"]) for f in FOLDERS for r in read_records(out / f)}
    result = run_scale(phase1(hub, out), ScaleSettings(engine="ray", workers="all"))
    assert not result.failures
    assert result.counts.get("done", 0) + result.counts.get("skipped", 0) <= 6 - len(before) + 2
    after = {r["key"] + r["output"] + str(r["finished_at"]) for f in FOLDERS for r in read_records(out / f)}
    assert before <= after, "clips finished before the kill are not redone"
    assert_phase1_like(out, local_run[0])


def test_two_drivers_at_once_on_one_folder(hub, local_run, cluster, tmp_path):
    out = tmp_path / "data"
    runs = [driver(hub, out, cluster), driver(hub, out, cluster)]
    for run in runs:
        output, _ = run.communicate(timeout=180)
        assert run.returncode == 0, output
    assert_phase1_like(out, local_run[0])


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_lost_intrinsics_json_is_written_again_by_a_rerun_on_either_engine(hub, tmp_path, engine):
    """Once only phase 1 on its own wrote it again (fisheye.pipeline.restore_camera_record); a scale-out
    rerun with every clip done left the folder without its camera."""
    out = tmp_path / "data"
    settings, scale = replace(phase1(hub, out), clips="1"), ScaleSettings(engine=engine)
    assert run_scale(settings, scale).counts == {"done": 1}
    camera = out / "factory_001/intrinsics.json"
    original = json.loads(camera.read_text())
    camera.write_text("{")  # unreadable, as a truncated copy would be
    result = run_scale(settings, scale)
    assert result.counts == {} and not result.failures
    assert json.loads(camera.read_text()) == original
    camera.unlink()
    assert run_scale(settings, scale).counts == {}
    assert json.loads(camera.read_text()) == original
    assert not list(out.rglob(".staging"))
