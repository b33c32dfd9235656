"""Phase 2 for a folder, from Python (VJEPA.phase2.run_phase2): every clip embedded and analysed, in clip
order. Twelve clips catch text ordering (rectified_clip_10 before rectified_clip_2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from egoclean.attempts import unreturned_attempts
from egoclean.layout import rectified_name
from tests.helpers import attempt_in_a_process_that_dies, write_test_clip
from VJEPA.phase2 import run_phase2
from VJEPA.settings import EncodeSettings


@pytest.fixture(scope="module")
def twelve_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("twelve")
    first = write_test_clip(folder / rectified_name(1), 60, 64, 48)  # 2 s: 8 windows at 0.25 s
    for index in range(2, 13):
        shutil.copy(first, folder / rectified_name(index))
    return folder


def settings(model: Path) -> EncodeSettings:
    return EncodeSettings(model=str(model), device="cpu", window=4, stride_s=0.25, batch_size=4)


def test_twelve_clips_are_embedded_and_analysed_in_clip_order(twelve_clips, tiny_model_dir):
    result = run_phase2(twelve_clips, settings(tiny_model_dir))
    expected = [f"rectified_clip_{i}" for i in range(1, 13)]
    assert [r.video_path.stem for r in result.encoded] == expected
    joint = json.loads((twelve_clips / "joint_analysis.json").read_text())
    assert [Path(s).name.removesuffix("_emb.npy") for s in joint["sources"]] == expected
    assert [Path(c["source"]).name.removesuffix("_emb.npy") for c in joint["clips"]] == expected
    for match in joint["matches"]:  # "matched in a later clip" must point forwards in clip order
        assert expected.index(match["clip_a"]) < expected.index(match["clip_b"])
    assert result.failures == []


def test_manifest_order_and_selection_win_over_the_folder(tmp_path, twelve_clips, tiny_model_dir):
    folder = tmp_path / "factory_001"
    folder.mkdir()
    for index in (3, 10, 2):
        shutil.copy(twelve_clips / rectified_name(index), folder / rectified_name(index))
    clips = {f"{i:05d}": {"output": rectified_name(i)} for i in (10, 2)}  # clip 3 is not phase 1's
    (folder / "manifest.json").write_text(json.dumps({"clips": clips}))
    result = run_phase2(folder, settings(tiny_model_dir))
    assert [r.video_path.name for r in result.encoded] == [rectified_name(2), rectified_name(10)]


def test_bash_run_sh_2_takes_max_retries_and_retry_failed(tmp_path, twelve_clips, tiny_model_dir, capsys):
    """bash run.sh 2 gives phase 2 (run_phase2) its --max-retries and --retry-failed: with 0, the run after
    one death while embedding clip 1 leaves it out (the default, 2, would try it again), analyses the rest
    and exits 2; --retry-failed tries it again."""
    from egoclean.run import main

    out = tmp_path / "data"
    folder = out / "factory_001"
    folder.mkdir(parents=True)
    for index in (1, 2):
        shutil.copy(twelve_clips / rectified_name(index), folder / rectified_name(index))
    mark = folder / ".attempts/rectified_clip_1_emb.npy"
    assert attempt_in_a_process_that_dies(mark, 1) == 9
    model = ["--model", str(tiny_model_dir), "--device", "cpu", "--window", "4", "--stride-s", "0.25"]
    args = ["2", "--out", str(out), "--source", str(tmp_path), *model, "--max-retries", "0"]
    capsys.readouterr()

    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 2, err
    assert (
        f"{folder / rectified_name(1)} -> rectified_clip_1_emb.npy: " in err[0] and "died 1 times" in err[0]
    )
    assert "1 clip(s) could not be embedded" in err[1]
    assert (
        not (folder / "rectified_clip_1_emb.npy").exists() and (folder / "rectified_clip_2_emb.npy").exists()
    )
    assert (folder / "report.html").exists() and unreturned_attempts(mark) == 1
    assert main([*args, "--retry-failed"]) == 0
    assert (folder / "rectified_clip_1_emb.npy").exists() and not mark.exists()
