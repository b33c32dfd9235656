"""Choosing many workers from the listing alone (--workers), for both kinds of source; no Ray here."""

from __future__ import annotations

from pathlib import Path

import pytest

from egoclean.errors import FetchError, SettingError
from egoclean.scale import select_workers
from fisheye.dataset import WorkerRef
from fisheye.sources import HubSource, LocalSource
from tests.fake_hub import FakeHub

WORKERS = (
    "factory_001/workers/worker_001",
    "factory_001/workers/worker_002",
    "factory_002/workers/worker_001",
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in WORKERS:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "intrinsics.json").write_text("{}")
    (tmp_path / "README.md").write_text("not a factory")
    return tmp_path


def names(workers: list[WorkerRef]) -> list[str]:
    return [str(w) for w in workers]


def test_selection_from_a_local_folder(root):
    source, default = LocalSource(root), WorkerRef.parse("factory_001/worker_001")
    assert names(select_workers(None, default, source)) == ["factory_001/worker_001"]
    assert names(select_workers("all", default, source)) == [
        "factory_001/worker_001",
        "factory_001/worker_002",
        "factory_002/worker_001",
    ]
    chosen = select_workers("factory_002/*,factory_001/worker_002,factory_002/worker_001", default, source)
    assert names(chosen) == [
        "factory_002/worker_001",
        "factory_001/worker_002",
    ]  # once each, in the order asked
    with pytest.raises(FetchError, match="factory_009"):
        select_workers("factory_009/*", default, source)
    with pytest.raises(SettingError, match="nonsense"):
        select_workers("nonsense", default, source)


def test_selection_from_the_hub_listing_downloads_nothing(root):
    with FakeHub(root) as hub:
        source = HubSource("hf_test_good", endpoint=hub.url)
        found = select_workers("all", WorkerRef.parse("factory_001/worker_001"), source)
        downloads = [path for (method, path) in hub.requests if method == "GET" and "intrinsics" in path]
    assert names(found) == ["factory_001/worker_001", "factory_001/worker_002", "factory_002/worker_001"]
    assert downloads == []
