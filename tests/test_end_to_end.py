"""The whole pipeline as a newcomer meets it: the README's main command in sample mode, and runs killed at
several points that a rerun must finish with outputs identical to an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from egoclean.video import probe
from fisheye.sample import SampleClip, SampleSpec
from tests.helpers import sample_hub
from VJEPA.synthetic import span_iou

REPO = Path(__file__).resolve().parents[1]
SAMPLE = SampleSpec()  # what `bash run.sh` renders


def copy_repo(dest: Path) -> Path:
    """The project's code in a fresh folder (no data/, no .env): a newcomer's checkout."""
    dest.mkdir(parents=True)
    for name in ("run.sh", "requirements.txt", "pyproject.toml", "egoclean", "fisheye", "VJEPA"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def clean_env(tmp_path: Path, repo: Path | None = None) -> dict[str, str]:
    """No Hugging Face token anywhere, no network use, this test's Python environment, and (with `repo`)
    that checkout's code on the path, as run.sh puts it."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_KEY", "HF_TOKEN", "CI")}
    env.update(
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_OFFLINE="1",
        EGOCLEAN_NO_INSTALL="1",
        VENV=sys.prefix,
        PYTHONUNBUFFERED="1",
    )
    if repo is not None:
        env["PYTHONPATH"] = str(repo)
    return env


def test_readme_main_command_runs_both_phases_on_the_sample(tmp_path):
    repo = copy_repo(tmp_path / "egoclean")
    done = subprocess.run(
        ["bash", "run.sh"], cwd=repo, env=clean_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "no Hugging Face token" in log and "RANDOM-INIT" in log
    folder = repo / "data/sample/factory_001"
    for clip in SAMPLE.clips:
        video = folder / f"rectified_clip_{clip.index}.mp4"
        assert probe(video).n_frames == round(clip.duration_s * SAMPLE.fps)
        emb = np.load(folder / f"rectified_clip_{clip.index}_emb.npy")
        ts = np.load(folder / f"rectified_clip_{clip.index}_ts.npy")
        assert emb.dtype == np.float32 and ts.dtype == np.float64 and len(emb) == len(ts) > 0
        assert np.isfinite(emb).all() and np.all(np.diff(ts) > 0)
        analysis = json.loads((folder / f"rectified_clip_{clip.index}_analysis.json").read_text())
        assert analysis["encoder"]["random_init"] is True  # the JSON says plainly it is a stand-in model
        assert analysis["period_s"] == pytest.approx(SAMPLE.period_s, abs=1.0), analysis["period_s"]
        spans = [(a["start_s"], a["end_s"]) for a in analysis["anomalies"]]
        if clip.anomaly_s is None:
            assert spans == []
        else:  # the known stretch, in window start times
            assert max(span_iou(span, clip.anomaly_s) for span in spans) >= 0.5, spans
        diagnostics = folder / f"rectified_clip_{clip.index}_diagnostics.png"
        assert diagnostics.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(diagnostics.relative_to(repo)) in log  # the run ends by naming its results
    assert (folder / "intrinsics.json").is_file() and (folder / "manifest.json").is_file()
    assert not list(repo.rglob("*.partial*")) and not (folder / ".staging").exists()


# --- interrupted runs ------------------------------------------------------------------------------------

SMALL = SampleSpec(width=192, height=108, clips=(SampleClip(1, 6.0), SampleClip(2, 8.0)), preset="ultrafast")


def phase_commands(hub: Path, out: Path, model: Path) -> list[list[str]]:
    folder = out / "factory_001"
    return [
        [sys.executable, "-m", "fisheye", "--source", str(hub), "--out", str(out), "--preset", "ultrafast"],
        [sys.executable, "VJEPA/encode.py", str(folder), "--model", str(model), "--batch-size", "2"],
        [sys.executable, "VJEPA/analyze.py", str(folder)],
    ]


def run_all(repo: Path, commands: list[list[str]], env: dict[str, str]) -> None:
    for command in commands:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]


def kill_when(repo: Path, command: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
    """Start `command` and SIGKILL it (no clean-up code runs) as soon as `ready()` holds."""
    process = subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.002)
    pytest.fail(f"{command[1]} ended before the point where the test meant to kill it")


def snapshot(folder: Path, root: Path) -> dict[str, object]:
    """Every output file: bytes, or JSON with this run's own folder and file times taken out."""
    result: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            text = path.read_text().replace(str(root), "ROOT")
            data = json.loads(text)
            if isinstance(data, dict):
                data.pop("source_mtime_ns", None)
                data.get("encoder", {}).pop("source_mtime_ns", None)
            result[path.name] = data
        elif path.suffix == ".html":  # the report embeds the records, paths included
            result[path.name] = path.read_text().replace(str(root), "ROOT")
        elif path.is_file():
            result[path.name] = path.read_bytes()
    return result


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory) -> Path:
    return sample_hub(tmp_path_factory, SMALL, "small-hub")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_hub) -> dict[str, object]:
    """Outputs of an uninterrupted run."""
    from VJEPA.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("reference")
    repo = copy_repo(root / "egoclean")
    model = save_tiny_model(root / "model")
    run_all(repo, phase_commands(small_hub, root / "data", model), clean_env(root, repo))
    return snapshot(root / "data/factory_001", root)


@pytest.mark.parametrize(
    ("phase", "kill_point"),
    [
        (0, "rectified_clip_1.partial*.mp4"),  # mid-rectify of the first clip
        (0, "rectified_clip_2.partial*.mp4"),  # mid-encode of the second clip (the first is done)
        (1, "rectified_clip_1_emb.json"),  # mid V-JEPA encoding: first clip embedded, second under way
    ],
)
def test_killed_run_resumes_to_identical_outputs(tmp_path, small_hub, reference, phase, kill_point):
    root = tmp_path
    repo = copy_repo(root / "egoclean")
    from VJEPA.tiny_model import save_tiny_model

    model = save_tiny_model(root / "model")
    env = clean_env(root, repo)
    folder = root / "data/factory_001"
    commands = phase_commands(small_hub, root / "data", model)
    run_all(repo, commands[:phase], env)
    kill_when(repo, commands[phase], env, lambda: any(folder.glob(kill_point)))
    run_all(repo, commands, env)  # the same commands again, from the start
    assert not list(root.joinpath("data").rglob("*.partial*")), "temporary files left behind"
    assert not (folder / ".staging").exists()
    result = snapshot(folder, root)
    assert sorted(result) == sorted(reference)
    for name, expected in reference.items():
        assert result[name] == expected, f"{name} differs from the uninterrupted run"
