"""Tests for fisheye.dataset, .sources and .shards: naming, tokens, sidecars, both shard sources, streaming
extraction, clip checks.

The Hub is stood in for by tests.fake_hub (a loopback HTTP server over a folder laid out like the dataset),
read through huggingface_hub's real client. Nothing here reaches the network.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import huggingface_hub
import pytest

from egoclean.errors import AuthError, CalibrationError, FetchError, OutputError, VideoError
from egoclean.scale import is_transient
from fisheye import shards, sources
from fisheye.dataset import WorkerRef, parse_clip_selection, parse_sidecar
from fisheye.sample import SampleClip, SampleSpec, write_sample_hub
from fisheye.shards import ExtractedClip, extract_clips, verify_clip
from fisheye.sources import HUB_DOWNLOAD_DIR, HubSource, LocalSource, resolve_token
from tests.fake_hub import FakeHub
from tests.helpers import CLIP_HEIGHT, CLIP_WIDTH, write_still_image

WORKER = WorkerRef.parse("factory_001/worker_001")
GOOD, GATED = "hf_test_good_0123", "hf_test_gated_4567"
SPEC = SampleSpec(
    width=96,
    height=54,
    clips=(SampleClip(0, 1.0), SampleClip(1, 2.0), SampleClip(2, 1.0)),
    clips_per_shard=1,  # three shards: part00, part01, part02
)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_hub_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real token, cache or endpoint can leak in; failures are fast and nothing prints a progress bar."""
    for name in ("HF_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    constants = huggingface_hub.constants
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 3)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 3)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the dataset repo, holding one sample worker (3 clips in 3 shards)."""
    root = tmp_path_factory.mktemp("repo")
    write_sample_hub(root, SPEC)
    return root


@pytest.fixture(scope="module")
def members(repo: Path) -> dict[int, tuple[bytes, bytes]]:
    """Each sample clip's (mp4, json) bytes, read from the shards, for building tars by hand."""
    found: dict[int, tuple[bytes, bytes]] = {}
    for shard in sorted((repo / WORKER.hub_dir).glob("*.tar")):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in names:
                if name.endswith(".mp4"):
                    index = int(name[-9:-4])
                    sidecar = tar.extractfile(name.replace(".mp4", ".json")).read()
                    found[index] = (tar.extractfile(name).read(), sidecar)
    assert sorted(found) == [0, 1, 2]
    return found


@pytest.fixture(scope="module")
def running_hub(repo: Path) -> Iterator[FakeHub]:
    # page_size 2: the worker folder (3 tars + intrinsics.json) takes two pages, so pagination is exercised
    with FakeHub(repo, good_token=GOOD, gated_token=GATED, page_size=2) as hub:
        yield hub


@pytest.fixture
def hub(running_hub: FakeHub) -> FakeHub:
    running_hub.reset_counts()
    return running_hub


@pytest.fixture(params=["local", "hub"])
def source(request: pytest.FixtureRequest, repo: Path) -> LocalSource | HubSource:
    if request.param == "local":
        return LocalSource(repo)
    return HubSource(GOOD, endpoint=request.getfixturevalue("hub").url)


def write_tar(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def shard_name(part: int) -> str:
    return f"{WORKER.key}_part{part:02d}.tar"


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --- naming -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "factory_001/worker_001",
        "factory001/worker001",
        "factory_1/worker_1",
        "factory001_worker001",
        " factory_001/workers/worker_001/ ",
    ],
)
def test_worker_ref_parses_every_spelling(text: str) -> None:
    ref = WorkerRef.parse(text)
    assert (ref.factory, ref.worker) == ("factory_001", "worker_001")


def test_worker_ref_names() -> None:
    ref = WorkerRef.parse("factory_12/worker_305")
    assert ref.hub_dir == "factory_012/workers/worker_305"
    assert ref.key == "factory012_worker305"
    assert ref.clip_name(1) == "factory012_worker305_00001"
    assert ref.clip_name(0) == "factory012_worker305_00000"


@pytest.mark.parametrize("text", ["", "factory_001", "worker_001", "factory_a/worker_1", "f1/w1", "001/001"])
def test_worker_ref_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="factory_001/worker_001"):
        WorkerRef.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00001,00002", [1, 2]),
        ("1,2", [1, 2]),
        ("2, 1,2", [1, 2]),
        ("1-5", [1, 2, 3, 4, 5]),
        ("0,3-4", [0, 3, 4]),
        ("all", None),
        (" ALL ", None),
    ],
)
def test_parse_clip_selection(text: str, expected: list[int] | None) -> None:
    assert parse_clip_selection(text) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "a", "1-", "5-1", "1-2-3", "-1", "100000", "1.5"])
def test_parse_clip_selection_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="clip selection"):
        parse_clip_selection(text)


# --- tokens -------------------------------------------------------------------------------------------------


def test_token_from_environment_prefers_hf_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HF_KEY=from_file\n")
    monkeypatch.setenv("HF_TOKEN", "env_token")
    assert resolve_token(env_file) == "env_token"  # the environment beats the file
    monkeypatch.setenv("HF_KEY", "env_key")
    assert resolve_token(env_file) == "env_key"


def test_token_from_env_file_forms(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    cases = {
        "HF_KEY=plain\n": "plain",
        "# HF_KEY=commented\nexport HF_KEY='single'\n": "single",
        'HF_KEY = "double"  \n': "double",
        "HF_KEY=value # trailing comment\n": "value",
        'HF_KEY="hf_quoted"  # my token\n': "hf_quoted",  # quotes and a comment: a shell's reading
        "HF_KEY=\nHF_TOKEN=second\n": "second",  # an empty HF_KEY counts as missing
        "OTHER=1\nHF_TOKEN=hf_x\n": "hf_x",
    }
    for text, expected in cases.items():
        env_file.write_text(text)
        assert resolve_token(env_file) == expected, text


def test_empty_environment_value_falls_through_to_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HF_KEY=from_file\n")
    monkeypatch.setenv("HF_KEY", "  ")
    assert resolve_token(env_file) == "from_file"


def test_token_from_saved_login_then_none(tmp_path: Path) -> None:
    assert resolve_token(tmp_path / "no.env") is None
    Path(huggingface_hub.constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(huggingface_hub.constants.HF_TOKEN_PATH).write_text("hf_saved\n")
    assert resolve_token(tmp_path / "no.env") == "hf_saved"
    assert resolve_token(None) == "hf_saved"


# --- sidecars -----------------------------------------------------------------------------------------------

SIDECAR = {
    "factory_id": "factory_001",
    "worker_id": "worker_001",
    "video_index": 1,
    "duration_sec": 1200.5,
    "width": 1920,
    "height": 1080,
    "fps": 30,
    "size_bytes": 123456,
    "codec": "h265",
}


@pytest.mark.parametrize(("factory_id", "worker_id"), [("factory001", "worker001"), (1, 1), ("001", "1")])
def test_sidecar_ids_are_normalised(factory_id: object, worker_id: object) -> None:
    data = json.dumps({**SIDECAR, "factory_id": factory_id, "worker_id": worker_id}).encode()
    sidecar = parse_sidecar(data, "x.json")
    assert (sidecar.factory_id, sidecar.worker_id) == ("factory_001", "worker_001")
    assert (sidecar.video_index, sidecar.width, sidecar.fps, sidecar.codec) == (1, 1920, 30.0, "h265")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"width": None}, "width"),
        ({"fps": "thirty"}, "fps"),
        ({"size_bytes": 1.5}, "size_bytes"),
        ({"height": True}, "height"),
        ({"video_index": -1}, "video_index"),
        ({"codec": 265}, "codec"),
        ({"factory_id": None}, "factory_id"),
        ({"fps": float("nan")}, "fps"),  # json.dumps writes NaN, and json.loads reads it back
        ({"duration_sec": float("inf")}, "duration_sec"),
    ],
)
def test_sidecar_ill_typed_field(change: dict, field: str) -> None:
    with pytest.raises(VideoError, match=f"part07.tar:x.json.*{field}"):
        parse_sidecar(json.dumps({**SIDECAR, **change}).encode(), "part07.tar:x.json")


def test_sidecar_missing_field_and_bad_json() -> None:
    fields = {k: v for k, v in SIDECAR.items() if k != "duration_sec"}
    with pytest.raises(VideoError, match=r"x\.json.*'duration_sec'"):
        parse_sidecar(json.dumps(fields).encode(), "x.json")
    with pytest.raises(VideoError, match=r"x\.json: sidecar is not JSON"):
        parse_sidecar(b"{not json", "x.json")


# --- sources ------------------------------------------------------------------------------------------------


def test_describe(repo: Path) -> None:
    assert str(repo) in LocalSource(repo).describe()
    assert "builddotai/Egocentric-10K" in HubSource(GOOD).describe()


def test_list_shards_in_part_order(source: LocalSource | HubSource) -> None:
    assert source.list_shards(WORKER) == [shard_name(0), shard_name(1), shard_name(2)]


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_shards_sort_by_part_number_not_text(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / WORKER.hub_dir
    folder.mkdir(parents=True)
    names = [f"{WORKER.key}_part10.tar", f"{WORKER.key}_part2.tar", f"{WORKER.key}_part01.tar"]
    noise = [
        "README.md",
        "factory001_worker002_part00.tar",
        f"{WORKER.key}_part03.tar.partial",
        "intrinsics.json",
    ]
    for name in names + noise:
        (folder / name).write_bytes(b"x")
    expected = [f"{WORKER.key}_part01.tar", f"{WORKER.key}_part2.tar", f"{WORKER.key}_part10.tar"]
    if kind == "local":
        assert LocalSource(tmp_path).list_shards(WORKER) == expected
    else:
        with FakeHub(tmp_path, good_token=GOOD) as hub:
            assert HubSource(GOOD, endpoint=hub.url).list_shards(WORKER) == expected


def test_unknown_worker(source: LocalSource | HubSource) -> None:
    with pytest.raises(FetchError, match="unknown worker factory_002/worker_001"):
        source.list_shards(WorkerRef.parse("factory_002/worker_001"))


def test_worker_folder_without_shards(tmp_path: Path) -> None:
    (tmp_path / WORKER.hub_dir).mkdir(parents=True)
    (tmp_path / WORKER.hub_dir / "intrinsics.json").write_text("{}")
    with pytest.raises(FetchError, match=f"unknown worker {WORKER}"):
        LocalSource(tmp_path).list_shards(WORKER)
    with (
        FakeHub(tmp_path, good_token=GOOD) as hub,
        pytest.raises(FetchError, match=f"unknown worker {WORKER}"),
    ):
        HubSource(GOOD, endpoint=hub.url).list_shards(WORKER)


def test_fetch_intrinsics(source: LocalSource | HubSource, repo: Path, tmp_path: Path) -> None:
    path = source.fetch_intrinsics(WORKER, tmp_path / "out")
    assert path == tmp_path / "out" / "intrinsics.json"
    assert path.read_bytes() == (repo / WORKER.hub_dir / "intrinsics.json").read_bytes()
    assert files_in(tmp_path / "out") == {"intrinsics.json"}  # no download leftovers


def test_missing_intrinsics(tmp_path: Path) -> None:
    folder = tmp_path / WORKER.hub_dir
    folder.mkdir(parents=True)
    write_tar(folder / shard_name(0), [])
    with pytest.raises(CalibrationError, match=r"intrinsics\.json"):
        LocalSource(tmp_path).fetch_intrinsics(WORKER, tmp_path / "out")
    with (
        FakeHub(tmp_path, good_token=GOOD) as hub,
        pytest.raises(CalibrationError, match=r"intrinsics\.json"),
    ):
        HubSource(GOOD, endpoint=hub.url).fetch_intrinsics(WORKER, tmp_path / "out")


def test_fetch_shard_downloads_only_that_shard(hub: FakeHub, repo: Path, tmp_path: Path) -> None:
    source = HubSource(GOOD, endpoint=hub.url)
    original = repo / WORKER.hub_dir / shard_name(1)
    seen: list[tuple[int, int]] = []
    path = source.fetch_shard(
        WORKER, shard_name(1), tmp_path, progress=lambda done, total: seen.append((done, total))
    )
    assert path.read_bytes() == original.read_bytes()
    assert seen and seen[-1] == (original.stat().st_size, original.stat().st_size)
    assert source.shard_size(WORKER, shard_name(1)) == original.stat().st_size
    served = {p.rsplit("/", 1)[-1]: n for p, n in hub.bytes_served.items() if n}
    assert served == {shard_name(1): original.stat().st_size}


def test_interrupted_download_resumes_with_range(
    monkeypatch: pytest.MonkeyPatch, hub: FakeHub, repo: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(huggingface_hub.file_download.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # 10 MB by default
    original = (repo / WORKER.hub_dir / shard_name(1)).read_bytes()
    hub.cut_next_download_after = 4096
    path = HubSource(GOOD, endpoint=hub.url).fetch_shard(WORKER, shard_name(1), tmp_path)
    assert path.read_bytes() == original
    assert hub.range_requests == ["bytes=4096-"]  # the rest, not the whole file again
    assert hub.bytes_served[f"{WORKER.hub_dir}/{shard_name(1)}"] == len(original)


def test_release_shard_deletes_downloads_only(hub: FakeHub, repo: Path, tmp_path: Path) -> None:
    hub_source = HubSource(GOOD, endpoint=hub.url)
    first = hub_source.fetch_shard(WORKER, shard_name(0), tmp_path)
    second = hub_source.fetch_shard(WORKER, shard_name(2), tmp_path)
    hub_source.release_shard(first)
    assert not first.exists() and second.exists()
    hub_source.release_shard(second)
    assert not (tmp_path / HUB_DOWNLOAD_DIR).exists()  # metadata and folders gone with the last download
    assert files_in(tmp_path) == set()

    user_file = repo / WORKER.hub_dir / shard_name(0)
    local = LocalSource(repo)
    path = local.fetch_shard(WORKER, shard_name(0), tmp_path)
    assert path == user_file
    local.release_shard(path)
    hub_source.release_shard(user_file)  # not downloaded by it either: must be left alone
    assert user_file.is_file()


def test_fetch_unknown_shard(source: LocalSource | HubSource, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=shard_name(9)):
        source.fetch_shard(WORKER, shard_name(9), tmp_path)


def test_whole_worker_across_shards(source: LocalSource | HubSource, tmp_path: Path) -> None:
    """The flow phase 1 runs: shard by shard, keep only the wanted clips, release each shard after use."""
    wanted = {0, 2, 7}
    clips: list[ExtractedClip] = []
    for name in source.list_shards(WORKER):
        shard = source.fetch_shard(WORKER, name, tmp_path / "download")
        clips += extract_clips(shard, WORKER, wanted, tmp_path / "clips")
        source.release_shard(shard)
    assert [(c.index, c.shard) for c in clips] == [(0, shard_name(0)), (2, shard_name(2))]
    assert wanted - {c.index for c in clips} == {7}
    assert files_in(tmp_path / "clips") == {
        f"{WORKER.clip_name(i)}.{ext}" for i in (0, 2) for ext in ("mp4", "json")
    }
    for clip in clips:
        info = verify_clip(clip)
        assert (info.width, info.height, info.codec) == (SPEC.width, SPEC.height, "hevc")
    if isinstance(source, HubSource):
        assert not (tmp_path / "download").exists() or files_in(tmp_path / "download") == set()


# --- auth and network ---------------------------------------------------------------------------------------


def test_no_token(hub: FakeHub, tmp_path: Path) -> None:
    source = HubSource(None, endpoint=hub.url)
    for call in (
        lambda: source.list_shards(WORKER),
        lambda: source.fetch_shard(WORKER, shard_name(0), tmp_path),
    ):
        with pytest.raises(AuthError, match=r"set HF_KEY in \.env"):
            call()
    assert sum(hub.requests.values()) == 0  # refused before asking the Hub


def test_token_messages_name_the_env_file_this_run_reads(hub: FakeHub, tmp_path: Path) -> None:
    """With --env-file work.env, "set HF_KEY in .env" sent the user to the wrong file."""
    from egoclean.progress import Progress
    from fisheye.pipeline import open_source
    from fisheye.settings import Phase1Settings

    env_file = tmp_path / "work.env"
    with pytest.raises(AuthError, match=rf"set HF_KEY in {re.escape(str(env_file))}:"):
        open_source(Phase1Settings(env_file=env_file, worker="factory_001/worker_001"), Progress())
    env_file.write_text("HF_KEY=hf_wrong_token_999\n")
    source = open_source(Phase1Settings(env_file=env_file, worker="factory_001/worker_001"), Progress())
    assert isinstance(source, HubSource) and source.env_file == env_file
    wrong = HubSource("hf_wrong_token_999", endpoint=hub.url, env_file=env_file)
    with pytest.raises(AuthError, match=rf"rejected the token.*set HF_KEY in {re.escape(str(env_file))}:"):
        wrong.list_shards(WORKER)


def test_wrong_token(hub: FakeHub, tmp_path: Path) -> None:
    source = HubSource("hf_wrong_token_999", endpoint=hub.url)
    with pytest.raises(AuthError, match="rejected the token") as caught:
        source.list_shards(WORKER)
    with pytest.raises(AuthError, match="rejected the token"):
        source.fetch_intrinsics(WORKER, tmp_path)
    assert "hf_wrong_token_999" not in str(caught.value)


def test_terms_not_accepted(hub: FakeHub, tmp_path: Path) -> None:
    source = HubSource(GATED, endpoint=hub.url)
    assert source.list_shards(WORKER)[0] == shard_name(0)  # a gated repo's file list is readable
    with pytest.raises(
        AuthError, match=r"accept the terms at https://huggingface\.co/datasets/builddotai"
    ) as caught:
        source.fetch_shard(WORKER, shard_name(0), tmp_path)
    assert GATED not in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not any(n for n in hub.bytes_served.values())


def test_server_down_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    # huggingface_hub retries refused connections with back-off (1+2+4+8+8 s): skip the waiting, count it
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", sleeps.append)
    source = HubSource(GOOD, endpoint=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(FetchError, match=f"cannot reach the Hub at http://127.0.0.1:{port}"):
        source.list_shards(WORKER)
    with pytest.raises(FetchError, match="cannot reach the Hub"):
        source.fetch_shard(WORKER, shard_name(0), tmp_path)
    assert time.monotonic() - start < 10
    assert sleeps  # it did retry before giving up


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            OutputError,
            "disk full .it needs about [0-9.]+ (k|M|G)B",
        ),
        (httpx2.ConnectTimeout("timed out"), FetchError, "cannot reach the Hub"),
        (OSError("Consistency check failed"), FetchError, "download failed"),
    ],
)
def test_download_failures_map_to_our_errors(
    monkeypatch: pytest.MonkeyPatch,
    hub: FakeHub,
    tmp_path: Path,
    raised: Exception,
    expected: type,
    message: str,
) -> None:
    def failing_download(*args: object, **kwargs: object) -> str:
        raise raised

    source = HubSource(GOOD, endpoint=hub.url)
    source.list_shards(WORKER)  # learns the shard sizes, for the disk-full message
    monkeypatch.setattr(sources, "hf_hub_download", failing_download)
    with pytest.raises(expected, match=message):
        source.fetch_shard(WORKER, shard_name(0), tmp_path)


# --- extraction ---------------------------------------------------------------------------------------------


def test_extract_only_wanted_members(members: dict, tmp_path: Path) -> None:
    """json before or after its mp4, other workers' clips and unrelated files in the same tar."""
    other = WorkerRef.parse("factory_001/worker_002")
    mp4 = {i: m[0] for i, m in members.items()}
    side = {i: m[1] for i, m in members.items()}
    tar = write_tar(
        tmp_path / "mixed.tar",
        [
            ("README.txt", b"hello"),
            (f"{WORKER.clip_name(0)}.json", side[0]),  # sidecar first
            (f"{WORKER.clip_name(0)}.mp4", mp4[0]),
            (f"{other.clip_name(1)}.mp4", mp4[1]),
            (f"{other.clip_name(1)}.json", side[1]),
            (f"{WORKER.clip_name(1)}.mp4", mp4[1]),  # not wanted
            (f"{WORKER.clip_name(1)}.json", side[1]),
            (f"{WORKER.clip_name(2)}.mp4", mp4[2]),  # sidecar after
            (f"{WORKER.clip_name(2)}.json", side[2]),
            (f"sub/{WORKER.clip_name(2)}.mp4", b"not a pair member"),
        ],
    )
    copied: list[int] = []
    clips = extract_clips(tar, WORKER, {0, 2}, tmp_path / "out", progress=copied.append)
    assert [c.index for c in clips] == [0, 2]
    assert files_in(tmp_path / "out") == {
        f"{WORKER.clip_name(i)}.{e}" for i in (0, 2) for e in ("mp4", "json")
    }
    for clip in clips:
        assert clip.video_path.read_bytes() == mp4[clip.index]
        assert (tmp_path / "out" / f"{clip.name}.json").read_bytes() == side[clip.index]
        assert clip.shard == "mixed.tar"
        verify_clip(clip)
    assert sum(copied) == len(mp4[0]) + len(mp4[2])


def test_extract_streams_in_one_forward_pass(
    monkeypatch: pytest.MonkeyPatch, members: dict, tmp_path: Path
) -> None:
    """A named pipe cannot seek: extraction from it works only if the tar is read front to back, in chunks."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    monkeypatch.setattr(shards, "COPY_CHUNK_BYTES", 1024)
    data = write_tar(
        tmp_path / "x.tar",
        [(f"{WORKER.clip_name(1)}.mp4", members[1][0]), (f"{WORKER.clip_name(1)}.json", members[1][1])],
    ).read_bytes()
    pipe = tmp_path / "pipe.tar"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "wb") as out:
            out.write(data)

    copied: list[int] = []
    outcome: dict[str, object] = {}

    def extract() -> None:
        try:
            outcome["clips"] = extract_clips(pipe, WORKER, None, tmp_path / "out", progress=copied.append)
        except Exception as err:
            outcome["error"] = err

    threading.Thread(target=feed, daemon=True).start()
    reader = threading.Thread(target=extract, daemon=True)
    reader.start()
    reader.join(timeout=15)
    if reader.is_alive():  # stuck re-opening the pipe to seek: release it with an empty writer, then fail
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("extract_clips did not read the shard in one forward pass")
    assert "error" not in outcome, outcome.get("error")
    clips = outcome["clips"]
    assert [c.index for c in clips] == [1]
    assert max(copied) <= 1024 and len(copied) >= len(members[1][0]) // 1024
    assert clips[0].video_path.read_bytes() == members[1][0]


def test_clip_not_in_shard_is_visible_as_missing(members: dict, tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "t.tar",
        [
            (f"{WORKER.clip_name(0)}.mp4", members[0][0]),
            (f"{WORKER.clip_name(0)}.json", members[0][1]),
            (f"{WORKER.clip_name(1)}.json", members[1][1]),  # a sidecar whose video is not in the shard
        ],
    )
    clips = extract_clips(tar, WORKER, {1, 5}, tmp_path / "out")
    assert clips == []
    assert {1, 5} - {c.index for c in clips} == {1, 5}
    assert files_in(tmp_path / "out") == set()  # no half pair is left behind


def test_mp4_without_sidecar(members: dict, tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "t.tar", [(f"{WORKER.clip_name(1)}.mp4", members[1][0])])
    with pytest.raises(VideoError, match=f"t.tar: clip {WORKER.clip_name(1)} has no sidecar"):
        extract_clips(tar, WORKER, {1}, tmp_path / "out")
    assert files_in(tmp_path / "out") == set()  # the partial video is removed


def test_sidecar_index_disagrees_with_name(members: dict, tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "t.tar", [(f"{WORKER.clip_name(1)}.json", members[2][1])])
    with pytest.raises(VideoError, match="video_index 2"):
        extract_clips(tar, WORKER, None, tmp_path / "out")


def test_truncated_shard(repo: Path, tmp_path: Path) -> None:
    data = (repo / WORKER.hub_dir / shard_name(1)).read_bytes()
    truncated = tmp_path / shard_name(1)
    truncated.write_bytes(data[:5000])  # cut inside the mp4 member
    with pytest.raises(FetchError, match=f"{shard_name(1)}: the shard is corrupt or truncated.*delete it"):
        extract_clips(truncated, WORKER, None, tmp_path / "out")
    assert files_in(tmp_path / "out") == set()


def test_garbage_shard(tmp_path: Path) -> None:
    garbage = tmp_path / shard_name(3)
    garbage.write_bytes(b"\x00\x01 this is not a tar archive " * 100)
    with pytest.raises(FetchError, match=f"{shard_name(3)}.*download it again"):
        extract_clips(garbage, WORKER, None, tmp_path / "out")


def test_member_escaping_dest_dir_is_refused(members: dict, tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "evil.tar", [(f"../{WORKER.clip_name(1)}.mp4", members[1][0])])
    (tmp_path / "out").mkdir()
    with pytest.raises(FetchError, match="outside the output folder"):
        extract_clips(tar, WORKER, None, tmp_path / "out")
    assert files_in(tmp_path) == {"evil.tar"}


def test_disk_full_while_extracting(members: dict, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{WORKER.clip_name(1)}.partial.mp4").symlink_to("/dev/full")  # every write: ENOSPC
    tar = write_tar(tmp_path / "t.tar", [(f"{WORKER.clip_name(1)}.mp4", members[1][0])])
    with pytest.raises(OutputError, match="disk full; free some space"):
        extract_clips(tar, WORKER, None, out)


# --- verification -------------------------------------------------------------------------------------------


@pytest.fixture
def good_clip(members: dict, tmp_path: Path) -> ExtractedClip:
    tar = write_tar(
        tmp_path / "t.tar",
        [(f"{WORKER.clip_name(1)}.mp4", members[1][0]), (f"{WORKER.clip_name(1)}.json", members[1][1])],
    )
    (clip,) = extract_clips(tar, WORKER, {1}, tmp_path / "clip")
    return clip


def test_verify_good_clip(good_clip: ExtractedClip) -> None:
    info = verify_clip(good_clip)
    assert info.codec == "hevc" and abs(info.duration_s - 2.0) < 0.1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size_bytes": 1}, "size_bytes"),
        ({"codec": "h264"}, "codec"),
        ({"duration_sec": 5.0}, "duration_sec"),
        ({"width": 100}, "width x height"),
        ({"fps": 25.0}, "fps"),
    ],
)
def test_verify_reports_mismatch(good_clip: ExtractedClip, change: dict, field: str) -> None:
    if "size_bytes" in change:
        change = {"size_bytes": good_clip.sidecar.size_bytes + 1}
    clip = replace(good_clip, sidecar=replace(good_clip.sidecar, **change))
    expected = f"clip {clip.name} in shard t.tar: {field} should be .*download it again"
    with pytest.raises(VideoError, match=expected):
        verify_clip(clip)


def test_verify_truncated_clip(good_clip: ExtractedClip, tmp_path: Path) -> None:
    copy = tmp_path / "truncated.mp4"
    copy.write_bytes(good_clip.video_path.read_bytes()[: good_clip.sidecar.size_bytes // 2])
    with pytest.raises(VideoError, match=f"clip {good_clip.name} .*size_bytes should be"):
        verify_clip(replace(good_clip, video_path=copy))


def test_verify_undecodable_clip(good_clip: ExtractedClip, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * good_clip.sidecar.size_bytes)  # right size, not a video
    # the shard is named, not the temporary copy alone: that is what the user can replace
    with pytest.raises(
        VideoError, match=f"clip {good_clip.name} in shard t.tar: not a readable video .*download"
    ):
        verify_clip(replace(good_clip, video_path=garbage))


def test_verify_refuses_a_still_image_its_sidecar_describes(good_clip: ExtractedClip, tmp_path: Path) -> None:
    """A JPEG in the shard with a sidecar that matches it (mjpeg, its size, one frame at 25 fps): FFmpeg
    reads it as a video of one frame, and every field agreed, so it was once rectified."""
    still = write_still_image(tmp_path / f"{good_clip.name}.mp4")
    sidecar = replace(
        good_clip.sidecar,
        codec="mjpeg",
        width=CLIP_WIDTH,
        height=CLIP_HEIGHT,
        fps=25.0,
        duration_sec=0.04,
        size_bytes=still.stat().st_size,
    )
    with pytest.raises(
        VideoError, match=f"clip {good_clip.name} in shard t.tar: not an MP4 video .*download it again"
    ):
        verify_clip(replace(good_clip, video_path=still, sidecar=sidecar))


def test_verify_missing_file(good_clip: ExtractedClip, tmp_path: Path) -> None:
    shutil.move(good_clip.video_path, tmp_path / "moved.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        verify_clip(good_clip)


def test_verify_accepts_nominal_sidecar_values(good_clip: ExtractedClip) -> None:
    """A sidecar's nominal 29.97 for 30 fps video, or an upper-case codec name, is not damage."""
    clip = replace(good_clip, sidecar=replace(good_clip.sidecar, fps=29.97, codec="HEVC"))
    assert verify_clip(clip).codec == "hevc"


def test_hub_server_error_is_not_called_a_network_problem(
    hub: FakeHub, tmp_path: Path, no_hub_backoff
) -> None:
    """A 500 after huggingface_hub's retries: the Hub answered, so "check the network" would mislead."""
    hub.fail_downloads_with = 500
    try:
        with pytest.raises(FetchError, match="the Hub answered HTTP 500") as err:
            HubSource(GOOD, endpoint=hub.url).fetch_intrinsics(WORKER, tmp_path / "out")
    finally:
        hub.fail_downloads_with = None
    assert "network" not in str(err.value)
    assert is_transient(err.value)  # the scale-out tries again later


@pytest.fixture
def no_hub_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's own retries (5xx, 429, refused connections) without their ~23 s of back-off."""
    sleeps: list[float] = []
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", sleeps.append)
    return sleeps


@pytest.mark.parametrize(
    ("status", "message", "transient"),
    [
        (503, "the Hub answered HTTP 503; it is having trouble", True),
        (429, "the Hub answered HTTP 429; it is having trouble", True),
        (400, r"the Hub refused the request \(HTTP 400\)", False),
        (409, r"the Hub refused the request \(HTTP 409\)", False),
    ],
)
def test_only_the_hubs_load_is_worth_a_retry(
    hub: FakeHub, tmp_path: Path, no_hub_backoff, status, message, transient
) -> None:
    """The scale-out retries a FetchError marked transient, as the real client raises it: a 5xx or a 429,
    never another 4xx (which the message no longer calls the Hub's trouble)."""
    hub.fail_downloads_with = status
    try:
        with pytest.raises(FetchError, match=message) as err:
            HubSource(GOOD, endpoint=hub.url).fetch_intrinsics(WORKER, tmp_path / "out")
    finally:
        hub.fail_downloads_with = None
    assert is_transient(err.value) is transient


def test_refusals_and_unreachable_hubs_are_told_apart_for_retries(
    hub: FakeHub, tmp_path: Path, no_hub_backoff
) -> None:
    with pytest.raises(AuthError) as refused:  # "accept the terms ... then run again": no retry helps
        HubSource(GATED, endpoint=hub.url).fetch_intrinsics(WORKER, tmp_path / "out")
    assert not is_transient(refused.value)
    with pytest.raises(FetchError, match="cannot reach the Hub") as unreachable:
        HubSource(GOOD, endpoint="http://127.0.0.1:9").fetch_intrinsics(WORKER, tmp_path / "out")
    assert is_transient(unreachable.value)
    assert is_transient(ConnectionResetError("connection reset by peer"))
    assert not is_transient(KeyError("a bug, not the network"))


def test_a_failure_after_the_mp4_still_ends_the_one_pass_tap(
    repo: Path, good_clip: ExtractedClip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview or intrinsics.json failing after the mp4 is made once left the tap's thread waiting for
    frames forever (in a Ray actor, holding the model's buffers past the clip)."""
    from egoclean.progress import Progress
    from fisheye import pipeline
    from fisheye.camera import load_calibration
    from fisheye.settings import Phase1Settings

    calls: list[str] = []

    class Tap:
        def push(self, index, pts, frame, planes=None) -> None:
            calls.append("push")

        def finish(self, video_path) -> None:
            calls.append("finish")

        def abort(self) -> None:
            calls.append("abort")

    monkeypatch.setattr(pipeline.cv2, "imwrite", lambda *args: False)  # the preview cannot be written
    calib = load_calibration(repo / WORKER.hub_dir / "intrinsics.json")
    folder = tmp_path / "out"
    folder.mkdir()
    ctx = pipeline.WorkerContext(calib, Phase1Settings(out=folder), folder, Progress(), tap=lambda *a: Tap())
    with pytest.raises(OutputError, match=r"rectified_clip_1_preview\.jpg: cannot write"):
        pipeline.process_clip(good_clip, ctx)
    assert calls.count("push") > 0 and calls[-1] == "abort" and "finish" not in calls


def test_an_env_file_named_by_hand_must_exist_and_be_text(tmp_path: Path) -> None:
    """A missing --env-file once fell through to the offline sample with exit 0; a binary one raised
    UnicodeDecodeError from python-dotenv."""
    from egoclean.config import validate
    from egoclean.errors import SettingError
    from fisheye.settings import Phase1Settings

    with pytest.raises(SettingError, match="no such file"):
        validate(Phase1Settings(env_file=tmp_path / "missing.env"))
    validate(Phase1Settings())  # the default .env may be absent: no token, the sample runs
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingError, match="not a readable text file"):
        resolve_token(binary)


def test_no_network_is_one_line_without_the_clients_retry_lines(tmp_path: Path) -> None:
    """huggingface_hub printed 10 lines ("Retrying in 1s [Retry 1/5]") before the one error line (seen in
    a plain process: pytest's log capture hides them in this one)."""
    script = f"""
import sys
import huggingface_hub.utils._http as http
http.time.sleep = lambda seconds: None  # its back-off, skipped
from fisheye.dataset import WorkerRef
from fisheye.sources import HubSource
try:
    HubSource("{GOOD}", endpoint="http://127.0.0.1:9").fetch_intrinsics(
        WorkerRef.parse("factory_001/workers/worker_001"), __import__("pathlib").Path({str(tmp_path)!r}))
except Exception as err:
    print(f"error: {{err}}", file=sys.stderr)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert run.stderr.splitlines() == [
        "error: cannot reach the Hub at http://127.0.0.1:9: check the network, or use --source DIR"
    ], run.stderr


def test_a_source_folder_that_does_not_exist_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"--source .*nowhere: no such folder"):  # not "unknown worker"
        LocalSource(tmp_path / "nowhere")
