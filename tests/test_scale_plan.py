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


def test_listing_every_worker_on_the_hub_lists_their_shards_too(root):
    for folder in WORKERS:
        key = WorkerRef.parse(folder).key
        for part in (0, 1):
            (root / folder / f"{key}_part{part:02d}.tar").write_bytes(b"x" * (10 + part))
    with FakeHub(root, page_size=4) as hub:  # 4 entries a page: the listing is followed across pages
        source = HubSource("hf_test_good", endpoint=hub.url)
        workers = select_workers("all", WorkerRef.parse("factory_001/worker_001"), source)
        found = {str(w): {s: source.shard_size(w, s) for s in source.list_shards(w)} for w in workers}
        listed = {path for (method, path) in hub.requests if method == "GET"}
        fresh = HubSource("hf_test_good", endpoint=hub.url)  # one listing call per worker, as before
        expected = {str(w): {s: fresh.shard_size(w, s) for s in fresh.list_shards(w)} for w in workers}
    assert found == expected and len(found) == 3
    assert found["factory_002/worker_001"] == {
        "factory002_worker001_part00.tar": 10,
        "factory002_worker001_part01.tar": 11,
    }
    assert listed == {"", "factory_001/workers", "factory_002/workers"}, "no call per worker"
