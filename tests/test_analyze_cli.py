"""VJEPA/analyze.py: files written, their contents, --joint, and one-line errors on bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import killed_writers_partial
from VJEPA import analyze as cli
from VJEPA import synthetic as se
from VJEPA.structure import StructureParams

REPO = Path(__file__).resolve().parents[1]
OUTPUT_SUFFIXES = ("_diagnostics.png", "_analysis.json", "_distance.npy", "_autocorr.npy")


def _write_clip(folder: Path, stem: str, emb: np.ndarray, ts: np.ndarray, meta: dict | None = None) -> Path:
    np.save(folder / f"{stem}_emb.npy", emb)
    np.save(folder / f"{stem}_ts.npy", ts)
    if meta is not None:
        (folder / f"{stem}_emb.json").write_text(json.dumps(meta))
    return folder / f"{stem}_emb.npy"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(OUTPUT_SUFFIXES) or ".partial" in p.name)


def test_script_writes_every_output(tmp_path: Path) -> None:
    emb = se.with_anomaly(se.periodic(120, 64, 10.0, 1.0, seed=1), 70, 10, seed=1)
    meta = {"model": "facebook/vjepa2-vitl-fpc64-256", "fps": 30.0}
    _write_clip(tmp_path, "clip_1", emb, se.timestamps(120), meta)
    run = subprocess.run(
        [sys.executable, "VJEPA/analyze.py", str(tmp_path), "--min-period-s", "5", "--seed", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "clip_1" in run.stdout and "clip_1_analysis.json" in run.stdout

    width, height = _png_size(tmp_path / "clip_1_diagnostics.png")
    assert 800 <= width <= 3000 and 600 <= height <= 3000

    record = json.loads((tmp_path / "clip_1_analysis.json").read_text())
    assert record["period_s"] == pytest.approx(10.0, abs=1.0)
    assert 0.0 <= record["period_confidence"] <= 1.0
    assert record["n_windows"] == 120
    assert record["source"].endswith("clip_1_emb.npy")
    assert record["encoder"] == meta
    assert all(isinstance(t, float) for t in record["boundaries_s"]) and record["boundaries_s"]
    assert all(set(r) == {"start_s", "end_s", "period_s"} for r in record["repeats"])
    assert [set(a) for a in record["anomalies"]] == [{"start_s", "end_s", "score", "kind"}]
    assert record["params"]["min_period_s"] == 5.0 and record["params"]["seed"] == 3
    assert set(record["params"]) == set(StructureParams.__dataclass_fields__)

    assert np.load(tmp_path / "clip_1_distance.npy").shape == (119,)
    autocorr = np.load(tmp_path / "clip_1_autocorr.npy")
    assert autocorr[0] == pytest.approx(1.0) and 1 < len(autocorr) < 120
    assert not list(tmp_path.glob("*.partial*"))


def test_help_shows_every_setting_with_its_default() -> None:
    text = " ".join(cli.build_parser().format_help().split())  # undo line wrapping
    for name, field in StructureParams.__dataclass_fields__.items():
        assert f"--{name.replace('_', '-')}" in text
        assert f"(default: {field.default})" in text
    assert "--joint" in text and "--out" in text


def test_joint_on_two_clips_and_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip_a = se.change_point(150, 64, 70, 0.5, seed=1)
    clip_b = se.change_point(120, 64, 50, 0.5, seed=2)
    clip_b[30:70] = clip_a[90:130]
    paths = [
        _write_clip(tmp_path, "a", clip_a, se.timestamps(150)),
        _write_clip(tmp_path, "b", clip_b, se.timestamps(120)),
    ]
    out = tmp_path / "out"
    assert cli.main([str(p) for p in paths] + ["--joint", "--out", str(out)]) == 0
    assert "joint:" in capsys.readouterr().out
    joint = json.loads((out / "joint_analysis.json").read_text())
    assert [c["n_windows"] for c in joint["clips"]] == [150, 120]
    copied = [m for m in joint["matches"] if abs(m["start_a_s"] - 90) <= 2 and abs(m["end_a_s"] - 130) <= 2]
    assert len(copied) == 1 and copied[0]["clip_a"] == "a" and copied[0]["clip_b"] == "b"
    assert copied[0]["start_b_s"] == pytest.approx(30, abs=2) and copied[0]["end_b_s"] == pytest.approx(
        70, abs=2
    )
    assert _png_size(out / "joint_diagnostics.png")[0] >= 800
    for stem in ("a", "b"):
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{stem}{suffix}").is_file()
    assert not _outputs(tmp_path)  # --out: nothing beside the clips


def test_temporary_files_of_killed_runs_are_removed_and_others_kept(tmp_path: Path) -> None:
    _write_clip(tmp_path, "a", se.periodic(60, 32, 10.0, 1.0, seed=1), se.timestamps(60))
    dead = [killed_writers_partial(tmp_path / name) for name in ("a_diagnostics.png", "report.html")]
    elsewhere = killed_writers_partial(tmp_path / "a_analysis.json", host="another-host")
    thumb = killed_writers_partial(tmp_path / "report_thumbs" / "a_poster.jpg")
    assert cli.main([str(tmp_path)]) == 0
    assert not any(p.exists() for p in [*dead, thumb]) and elsewhere.exists()


def test_python_entry_point(tmp_path: Path) -> None:
    path = _write_clip(tmp_path, "c", se.pure_noise(80, 32, seed=0), se.timestamps(80))
    result = cli.analyze_clip(path, params=StructureParams(seed=1))
    assert result["period_s"] is None and result["n_windows"] == 80
    assert Path(result["outputs"]["json"]).is_file()


def _corrupt(folder: Path, case: str) -> list[str]:
    """Write one bad input (plus a good clip before it) and return the command-line arguments."""
    good = _write_clip(folder, "good", se.pure_noise(40, 16, seed=0), se.timestamps(40))
    emb, ts = se.pure_noise(40, 16, seed=1), se.timestamps(40)
    bad = folder / "bad_emb.npy"
    if case == "missing":
        return [str(good), str(bad)]
    if case == "missing_ts":
        np.save(bad, emb)
        return [str(good), str(bad)]
    if case == "empty":
        bad.write_bytes(b"")
        np.save(folder / "bad_ts.npy", ts)
    elif case == "nan":
        emb[5, 3] = np.nan
        _write_clip(folder, "bad", emb, ts)
    elif case == "mismatched":
        _write_clip(folder, "bad", emb, ts[:-3])
    elif case == "wrong_dim":
        _write_clip(folder, "bad", emb[:, 0], ts)
    elif case == "unsorted":
        _write_clip(folder, "bad", emb, ts[::-1].copy())
    elif case == "sidecar_not_an_object":  # valid JSON, but a list: once an AttributeError traceback
        _write_clip(folder, "bad", emb, ts, meta=[1, 2])  # type: ignore[arg-type]
    elif case == "complex":
        _write_clip(folder, "bad", emb.astype(np.complex64), ts)
    elif case == "beyond_float32":  # finite in float64, inf once read as float32
        _write_clip(folder, "bad", emb.astype(np.float64) * 1e300, ts)
    elif case == "no_emb_in_folder":
        empty = folder / "empty"
        empty.mkdir()
        return [str(good), str(empty)]
    return [str(good), str(bad)]


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "missing_ts",
        "empty",
        "nan",
        "mismatched",
        "wrong_dim",
        "unsorted",
        "sidecar_not_an_object",
        "complex",
        "beyond_float32",
        "no_emb_in_folder",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args = _corrupt(tmp_path, case)
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in captured.err
    assert "bad" in lines[0] or "empty" in lines[0]  # names the file at fault
    assert not _outputs(tmp_path)


def test_bad_input_through_the_script(tmp_path: Path) -> None:
    args = _corrupt(tmp_path, "nan")
    run = subprocess.run(
        [sys.executable, "VJEPA/analyze.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    assert "NaN" in run.stderr and "encode.py" in run.stderr
    assert not _outputs(tmp_path)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--n-surrogates", "-1", "--n-surrogates -1: must be >= 1"),
        ("--n-surrogates", "0", "--n-surrogates 0: must be >= 1"),
        ("--max-plot-windows", "0", "--max-plot-windows 0: must be >= 1"),
        ("--min-period-s", "nan", "--min-period-s nan: must be a finite number"),
    ],
)
def test_bad_setting_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    good = _write_clip(tmp_path, "good", se.pure_noise(40, 16, seed=0), se.timestamps(40))
    assert cli.main([str(good), option, value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {expected}"]
    assert not _outputs(tmp_path)


def test_every_setting_has_bounds() -> None:
    from egoclean.config import spec_of

    for field in dataclasses.fields(StructureParams):
        spec = spec_of(field)
        assert spec is not None and spec.help, field.name
        assert spec.low is not None or spec.choices is not None, f"{field.name} has no lower bound"


def test_json_never_holds_nan(tmp_path: Path) -> None:
    path = _write_clip(tmp_path, "c", se.periodic(80, 32, 9.0, 1.0, seed=0), se.timestamps(80))
    cli.analyze_clip(path, params=StructureParams(n_surrogates=1))
    text = (tmp_path / "c_analysis.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert cli.json_safe({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}


def test_cycle_table_in_clip_and_joint_json(tmp_path: Path) -> None:
    emb_a, truth = se.jittered_cycles(200, 64, 12.0, 0.1, 0.5, seed=3)
    emb_b, _ = se.jittered_cycles(150, 64, 12.0, 0.1, 0.5, seed=3)
    paths = [
        _write_clip(tmp_path, "a", emb_a, se.timestamps(200)),
        _write_clip(tmp_path, "b", emb_b, se.timestamps(150)),
    ]
    assert cli.main([str(p) for p in paths] + ["--joint"]) == 0
    record = json.loads((tmp_path / "a_analysis.json").read_text())
    assert record["cycles"], "a periodic clip lists its cycles"
    assert all(set(c) == {"index", "start_s", "end_s", "duration_s", "deviation"} for c in record["cycles"])
    spread = record["cycle_duration_s"]
    assert set(spread) == {"median", "iqr", "min", "max", "n"} and spread["n"] == len(record["cycles"])
    assert spread["median"] == pytest.approx(float(np.median(np.diff(truth))), abs=2.0)
    joint = json.loads((tmp_path / "joint_analysis.json").read_text())
    assert {c["clip"] for c in joint["cycles"]} == {"a", "b"}
    assert joint["cycle_duration_s"]["n"] == len(joint["cycles"])


@pytest.mark.parametrize("joint", [False, True])
def test_a_clip_too_short_to_analyse_is_left_out_and_the_others_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], joint: bool
) -> None:
    """A 3-second clip (2 windows) once stopped the analysis of every clip in its folder, on every rerun."""
    for index in (1, 2):
        _write_clip(
            tmp_path, f"clip_{index}", se.periodic(120, 64, 10.0, 1.0, seed=index), se.timestamps(120)
        )
    _write_clip(tmp_path, "clip_3", se.pure_noise(2, 64, seed=3), se.timestamps(2))
    assert cli.main([str(tmp_path), *(["--joint"] if joint else [])]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "clip_3_emb.npy: only 2 windows" in err and "left out" in err
    assert (tmp_path / "clip_1_analysis.json").is_file() and (tmp_path / "clip_2_analysis.json").is_file()
    assert not (tmp_path / "clip_3_analysis.json").exists()
    if joint:
        left_out = json.loads((tmp_path / "joint_analysis.json").read_text())["left_out"]
        assert len(left_out) == 1 and "clip_3" in left_out[0]


def test_a_clip_too_short_on_its_own_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_clip(tmp_path, "clip_3", se.pure_noise(2, 64, seed=3), se.timestamps(2))
    assert cli.main([str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ") and "only 2 windows" in line and "--stride-s" in line


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r | {"anomalies": [{"start": 1}]},
        lambda r: r | {"anomalies": "oops"},
        lambda r: r | {"stride_s": "abc"},
        lambda r: r | {"encoder": "x"},
    ],
)
def test_the_report_of_a_hand_edited_analysis_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage
) -> None:
    from VJEPA import report

    _write_clip(tmp_path, "clip_1", se.periodic(120, 64, 10.0, 1.0, seed=1), se.timestamps(120))
    assert cli.main([str(tmp_path)]) == 0
    path = tmp_path / "clip_1_analysis.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "rerun python VJEPA/analyze.py" in err


def test_a_period_range_upside_down_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_clip(tmp_path, "clip_1", se.periodic(120, 64, 10.0, 1.0, seed=1), se.timestamps(120))
    assert cli.main([str(path), "--min-period-s", "50", "--max-period-s", "10"]) == 2  # once: rc 0, no period
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: --max-period-s 10 is below --min-period-s 50") and "swap" in line
    assert not _outputs(tmp_path)


def _page_clips(folder: Path) -> dict[str, Any]:
    page = (folder / "report.html").read_text()
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_the_report_leaves_out_analyses_whose_embeddings_changed_or_are_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from VJEPA import report

    paths = [
        _write_clip(tmp_path, stem, se.periodic(60, 32, 10.0, 1.0, seed=seed), se.timestamps(60))
        for seed, stem in enumerate(("a", "b", "c"))
    ]
    assert cli.main([str(tmp_path), "--joint"]) == 0
    np.save(paths[0], se.periodic(60, 32, 7.0, 1.0, seed=9))  # a embedded again, not analysed again
    paths[1].unlink()  # b's embeddings deleted
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings)
    assert "a_analysis.json" in warnings[0] and "changed since it was analysed" in warnings[0]
    assert "b_analysis.json" in warnings[1] and "gone" in warnings[1]
    assert [clip["name"] for clip in _page_clips(tmp_path)["clips"]] == ["c"]
    paths[2].unlink()
    assert report.main([str(tmp_path)]) == 2  # nothing current: one line, no empty page
    assert "every analysis there is out of date" in capsys.readouterr().err


def test_the_report_leaves_out_joint_matches_of_a_clip_analysed_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from VJEPA import report

    clip_a = se.change_point(150, 64, 70, 0.5, seed=1)
    clip_b = se.change_point(120, 64, 50, 0.5, seed=2)
    clip_b[30:70] = clip_a[90:130]  # the one cross-clip match
    path_a = _write_clip(tmp_path, "a", clip_a, se.timestamps(150))
    _write_clip(tmp_path, "b", clip_b, se.timestamps(120))
    assert cli.main([str(tmp_path), "--joint"]) == 0
    assert report.main([str(tmp_path)]) == 0 and _page_clips(tmp_path)["joint"]["matches"]
    np.save(path_a, se.change_point(150, 64, 70, 0.5, seed=3))  # a embedded again, then analysed alone
    assert cli.main([str(path_a)]) == 0
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    warning = capsys.readouterr().err
    assert warning.startswith("warning: ") and "joint_analysis.json: made before a was" in warning
    data = _page_clips(tmp_path)
    assert [clip["name"] for clip in data["clips"]] == ["a", "b"] and data["joint"]["matches"] == []
