"""Ctrl-C in any command line: one line, exit 130, no traceback, nothing half-written left behind."""

from __future__ import annotations

import numpy as np
import pytest

from VJEPA import analyze
from VJEPA import synthetic as se


def interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_analyze_ctrl_c(tmp_path, monkeypatch, capsys):
    emb = se.periodic(60, 16, 6.0, 0.1, seed=0)
    np.save(tmp_path / "clip_emb.npy", emb)
    np.save(tmp_path / "clip_ts.npy", se.timestamps(len(emb)))
    monkeypatch.setattr(analyze, "analyze", interrupted)
    assert analyze.main([str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted:") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_emb.npy", "clip_ts.npy"]


@pytest.mark.parametrize("module", ["fisheye.cli", "egoclean.run"])
def test_phase1_and_whole_job_ctrl_c(module, tmp_path, monkeypatch, capsys):
    import importlib

    cli = importlib.import_module(module)
    monkeypatch.setattr(cli, "run_phase1", interrupted)
    monkeypatch.setattr(cli, "open_source", lambda settings, progress: None)
    argv = ["--source", str(tmp_path), "--out", str(tmp_path / "out")]
    assert cli.main(argv if module == "fisheye.cli" else ["1", *argv]) == 130
    err = capsys.readouterr().err
    assert "interrupted:" in err and "Traceback" not in err
