"""The file-name contract between the phases: clips come in clip order, never text order."""

from __future__ import annotations

import json
from pathlib import Path

from egoclean.layout import (
    embedding_paths,
    list_clips,
    list_embeddings,
    natural_sorted,
    output_dir,
    rectified_name,
)


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_natural_order_puts_2_before_10() -> None:
    names = [f"rectified_clip_{i}.mp4" for i in (10, 2, 1, 11, 3)]
    assert [p.name for p in natural_sorted([Path(n) for n in names])] == [
        f"rectified_clip_{i}.mp4" for i in (1, 2, 3, 10, 11)
    ]


def test_plain_folder_falls_back_to_natural_order_and_skips_partial_files(tmp_path: Path) -> None:
    touch(tmp_path, *(rectified_name(i) for i in (12, 1, 10, 2)), "rectified_clip_3.partial.mp4")
    assert [p.name for p in list_clips(tmp_path)] == [rectified_name(i) for i in (1, 2, 10, 12)]


def test_manifest_decides_which_clips_and_in_what_order(tmp_path: Path) -> None:
    touch(tmp_path, rectified_name(10), rectified_name(9), "stray.mp4")
    manifest = {"clips": {"00010": {"output": rectified_name(10)}, "00009": {"output": rectified_name(9)}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert [p.name for p in list_clips(tmp_path)] == [rectified_name(9), rectified_name(10)]


def test_embeddings_follow_the_clip_order(tmp_path: Path) -> None:
    clips = [tmp_path / rectified_name(i) for i in (1, 2, 10)]
    touch(tmp_path, *(embedding_paths(c)[0].name for c in reversed(clips)))
    assert list_embeddings(tmp_path) == [embedding_paths(c)[0] for c in clips]


def test_the_seed_worker_writes_straight_into_its_factory(tmp_path: Path) -> None:
    assert output_dir(tmp_path, "factory_001", "worker_001") == tmp_path / "factory_001"
    assert output_dir(tmp_path, "factory_001", "worker_002") == tmp_path / "factory_001" / "worker_002"
