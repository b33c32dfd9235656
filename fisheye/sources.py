"""Where a worker's shards and calibration come from: the Hub (through huggingface_hub), or a local folder
laid out exactly like it. Both are read by the same pipeline code.

Public API:
    ShardSource (protocol), LocalSource(root), HubSource(token, repo_id, revision, endpoint)
    resolve_token(env_file) -> str | None

A library: it never prints. huggingface_hub's and the network's exceptions become AuthError / FetchError /
OutputError with one line naming the file, what is wrong and what to do. The token never appears in one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Protocol

import dotenv
import httpx2
import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import logging as hub_logging

from egoclean.errors import AuthError, CalibrationError, EgoCleanError, FetchError, SettingError
from egoclean.files import output_error, output_errors
from fisheye.dataset import CALIBRATION_FILE, REPO_ID, WorkerRef, sort_shards


def token_help(env_file: Path | None) -> str:
    """What to do about a missing or rejected token, naming the env file this run reads."""
    where = f"in {env_file}" if env_file is not None else "in the environment"
    return f"set HF_KEY {where}: create a read token at https://huggingface.co/settings/tokens"


TOKEN_NAMES = ("HF_KEY", "HF_TOKEN")  # the project's own name, then huggingface_hub's
# HubSource downloads under dest_dir/HUB_DOWNLOAD_DIR; release_shard removes it with the last download.
HUB_DOWNLOAD_DIR = "hub-download"
OnBytes = Callable[[int, int], None] | None  # progress(bytes_done, bytes_total) while a file downloads


class ShardSource(Protocol):
    """Where a worker's shards and calibration come from: the Hub, or a local folder laid out like it."""

    def describe(self) -> str:
        """For logs, e.g. "Hugging Face Hub builddotai/Egocentric-10K"."""
        ...

    def list_shards(self, worker: WorkerRef) -> list[str]:
        """The worker's shard file names in part order; FetchError "unknown worker" if it has none."""
        ...

    def origin(self, worker: WorkerRef, name: str) -> str:
        """Where the worker's file `name` comes from, for messages: a path or a Hub location."""
        ...

    def list_workers(self, factory: str | None = None) -> list[WorkerRef]:
        """Every worker of `factory` (None: of every factory), from the listing alone, in order."""
        ...

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        """A local copy of the worker's intrinsics.json, dest_dir/intrinsics.json."""
        ...

    def fetch_shard(
        self, worker: WorkerRef, shard_name: str, dest_dir: Path, progress: OnBytes = None
    ) -> Path:
        """A local path of the shard; progress(bytes_done, bytes_total) while it downloads."""
        ...

    def release_shard(self, path: Path) -> None:
        """Delete what fetch_shard downloaded for `path` (never a user's own file)."""
        ...

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        """The shard's size in bytes if known, for a free-disk check."""
        ...


class LocalSource(ShardSource):
    """A local folder laid out exactly like the dataset repo: tars a user already has, the built-in sample."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FetchError(
                f"--source {self.root}: no such folder; give a folder laid out like the dataset "
                "(factory_001/workers/worker_001/*.tar and intrinsics.json)"
            )

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _worker_dir(self, worker: WorkerRef) -> Path:
        folder = self.root / worker.hub_dir
        if not folder.is_dir():
            raise FetchError(
                f"unknown worker {worker}: {folder} does not exist in {self.describe()}; "
                "check --worker, or that the folder is laid out like the Hub (factory_XXX/workers/worker_XXX)"
            )
        return folder

    def origin(self, worker: WorkerRef, name: str) -> str:
        return str(self.root / worker.hub_dir / name)

    def list_shards(self, worker: WorkerRef) -> list[str]:
        folder = self._worker_dir(worker)
        shards = sort_shards(worker, [p.name for p in folder.iterdir() if p.is_file()])
        if not shards:
            raise FetchError(f"unknown worker {worker}: {folder} holds no {worker.key}_partNN.tar shards")
        return shards

    def list_workers(self, factory: str | None = None) -> list[WorkerRef]:
        pattern = f"{factory or 'factory_*'}/workers/worker_*"
        return sorted_workers(
            p.relative_to(self.root).as_posix() for p in self.root.glob(pattern) if p.is_dir()
        )

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        source = self._worker_dir(worker) / CALIBRATION_FILE
        if not source.is_file():
            raise CalibrationError(
                f"{source}: missing; worker {worker} has no calibration in {self.describe()}: "
                "copy it from the Hub"
            )
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / CALIBRATION_FILE
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        return target

    def fetch_shard(
        self, worker: WorkerRef, shard_name: str, dest_dir: Path, progress: OnBytes = None
    ) -> Path:
        path = self._worker_dir(worker) / shard_name
        if not path.is_file():
            raise FetchError(f"{path}: no such shard of worker {worker}; check the folder or list its shards")
        if progress:
            size = path.stat().st_size
            progress(size, size)
        return path  # read in place: a local shard is never copied, so there is nothing to release

    def release_shard(self, path: Path) -> None:
        """Nothing to do: the shard is the user's own file and is kept."""

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        path = self.root / worker.hub_dir / shard_name
        return path.stat().st_size if path.is_file() else None


def _progress_bar_class(progress: Callable[[int, int], None] | None) -> type:
    """A stand-in for tqdm that huggingface_hub drives while downloading: calls `progress`, prints nothing."""

    class CallbackBar:
        """Reports bytes written. Having `update_transfer` makes a Xet download share this one bar (network
        bytes are not counted twice); any other display call huggingface_hub makes is accepted and ignored."""

        def __init__(
            self, *args: object, total: int | None = None, initial: int = 0, **kwargs: object
        ) -> None:
            self.total, self.n = total or 0, initial

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)
            if progress:
                progress(self.n, max(self.total, self.n))

        def update_transfer(self, n: float | None = 1) -> None:
            pass  # network bytes; `update` already reports the bytes that reach the disk

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None  # set_postfix_str, refresh, close, ...

        def __enter__(self) -> CallbackBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return CallbackBar


class HubSource(ShardSource):
    """The gated dataset on the Hugging Face Hub, through huggingface_hub's own client.

    Files are downloaded with hf_hub_download(local_dir=dest_dir/HUB_DOWNLOAD_DIR): it resumes a transfer
    whose connection dropped with HTTP Range requests (within the run: dest_dir is the run's own staging,
    which the next run clears once this one is gone) and keeps its metadata in that folder's
    .cache/huggingface, all of which release_shard removes. The token is sent to the endpoint only and never
    appears in a message.
    """

    def __init__(
        self,
        token: str | None,
        repo_id: str = REPO_ID,
        revision: str = "main",
        endpoint: str | None = None,
        env_file: Path | None = Path(".env"),
    ) -> None:
        self.token = token or None
        self.env_file = env_file  # where the token was to come from: named in auth errors
        self.repo_id = repo_id
        self.revision = revision
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._api = HfApi(endpoint=self.endpoint, token=self.token or False)
        # huggingface_hub logs each retry of a failing request ("Retrying in 1s [Retry 1/5]"): the error
        # it ends in is ours to say, in one line
        hub_logging.set_verbosity_error()
        self._listings: dict[WorkerRef, dict[str, int]] = {}  # shard name -> size, per worker
        self._downloads: dict[Path, tuple[Path, str]] = {}  # local file -> (download root, path in repo)

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"Hugging Face Hub {self.repo_id}{where}"

    # -- listing

    def origin(self, worker: WorkerRef, name: str) -> str:
        return f"{self.repo_id}/{worker.hub_dir}/{name} on the Hub"

    def list_shards(self, worker: WorkerRef) -> list[str]:
        return sort_shards(worker, list(self._listing(worker)))

    def shard_size(self, worker: WorkerRef, shard_name: str) -> int | None:
        return self._listing(worker).get(shard_name)

    def _folders(self, path: str) -> list[str]:
        missing = FetchError(f"{path or 'the top level'}: not found in {self.repo_id}; check --workers")
        with self._hub_errors(f"the listing of {path or self.repo_id}", missing=missing):
            entries = list(
                self._api.list_repo_tree(
                    self.repo_id, path_in_repo=path or None, repo_type="dataset", revision=self.revision
                )
            )
        return [e.path for e in entries if isinstance(e, huggingface_hub.RepoFolder)]

    def list_workers(self, factory: str | None = None) -> list[WorkerRef]:
        factories = [factory] if factory else [p for p in self._folders("") if p.startswith("factory_")]
        return sorted_workers(str(w) for f in factories for w in self._list_factory(f))

    def _list_factory(self, factory: str) -> list[WorkerRef]:
        """The workers of `factory` from one recursive listing of its folder, which also gives each worker's
        shard sizes: they are kept, so list_shards costs no more calls (86 paged calls for the whole
        dataset, the top level's included, instead of one more per worker: 2,144)."""
        path = f"{factory}/workers"
        missing = FetchError(f"{path}: not found in {self.repo_id}; check --workers")
        with self._hub_errors(f"the listing of {path}", missing=missing):
            entries = list(
                self._api.list_repo_tree(
                    self.repo_id,
                    path_in_repo=path,
                    recursive=True,
                    repo_type="dataset",
                    revision=self.revision,
                )
            )
        workers = sorted_workers(e.path for e in entries if isinstance(e, huggingface_hub.RepoFolder))
        files: dict[str, dict[str, int]] = {}
        for e in entries:
            if isinstance(e, huggingface_hub.RepoFile):
                folder, name = str(PurePosixPath(e.path).parent), PurePosixPath(e.path).name
                files.setdefault(folder, {})[name] = e.size
        for worker in workers:
            sizes = files.get(worker.hub_dir, {})
            if sort_shards(worker, list(sizes)):  # a worker without shards stays unknown, as _listing says
                self._listings.setdefault(worker, sizes)
        return workers

    def _listing(self, worker: WorkerRef) -> dict[str, int]:
        if worker not in self._listings:
            unknown = FetchError(
                f"unknown worker {worker}: {self.repo_id} has no shards in {worker.hub_dir}; "
                "check --worker (e.g. factory_001/worker_001)"
            )
            with self._hub_errors(f"the listing of {worker.hub_dir}", missing=unknown):
                entries = list(
                    self._api.list_repo_tree(
                        self.repo_id, path_in_repo=worker.hub_dir, repo_type="dataset", revision=self.revision
                    )
                )
            sizes = {
                PurePosixPath(e.path).name: e.size for e in entries if isinstance(e, huggingface_hub.RepoFile)
            }
            if not sort_shards(worker, list(sizes)):
                raise unknown
            self._listings[worker] = sizes
        return self._listings[worker]

    # -- downloads

    def fetch_intrinsics(self, worker: WorkerRef, dest_dir: Path) -> Path:
        missing = CalibrationError(
            f"{worker.hub_dir}/intrinsics.json: not found in {self.repo_id}; check --worker "
            "(the worker may not exist) or supply the calibration by hand"
        )
        dest_dir = Path(dest_dir)
        downloaded = self._download(f"{worker.hub_dir}/{CALIBRATION_FILE}", dest_dir, None, None, missing)
        target = dest_dir / CALIBRATION_FILE
        try:
            with output_errors(target):
                shutil.copyfile(downloaded, target)
        finally:
            self.release_shard(downloaded)
        return target

    def fetch_shard(
        self, worker: WorkerRef, shard_name: str, dest_dir: Path, progress: OnBytes = None
    ) -> Path:
        missing = FetchError(
            f"{worker.hub_dir}/{shard_name}: not found in {self.repo_id}; list the worker's shards again"
        )
        size = self._listings.get(worker, {}).get(shard_name)
        return self._download(f"{worker.hub_dir}/{shard_name}", Path(dest_dir), progress, size, missing)

    def _download(
        self,
        repo_path: str,
        dest_dir: Path,
        progress: Callable[[int, int], None] | None,
        size: int | None,
        missing: EgoCleanError,
    ) -> Path:
        root = dest_dir / HUB_DOWNLOAD_DIR
        with self._hub_errors(repo_path, missing=missing, writing=root / repo_path, size=size):
            local = hf_hub_download(
                self.repo_id,
                repo_path,
                repo_type="dataset",
                revision=self.revision,
                local_dir=root,
                # Only ever look for cached copies under our own folder, never in the user's ~/.cache.
                cache_dir=root / ".cache" / "hub",
                token=self.token,
                endpoint=self.endpoint,
                tqdm_class=_progress_bar_class(progress),
            )
        path = Path(local)
        self._downloads[path] = (root, repo_path)
        return path

    def release_shard(self, path: Path) -> None:
        """Delete a file this source downloaded and its huggingface_hub metadata.

        Once nothing downloaded under dest_dir/HUB_DOWNLOAD_DIR is still in use, that whole folder goes too
        (huggingface_hub's bookkeeping, leftovers of crashed runs).
        """
        path = Path(path)
        if path not in self._downloads:
            return  # not ours: never delete a file we did not download
        root, repo_path = self._downloads.pop(path)
        meta = root / ".cache" / "huggingface" / "download" / repo_path
        for leftover in (path, meta.with_name(meta.name + ".metadata"), meta.with_name(meta.name + ".lock")):
            leftover.unlink(missing_ok=True)
        if all(other_root != root for other_root, _ in self._downloads.values()):
            shutil.rmtree(root, ignore_errors=True)

    # -- errors

    def _require_token(self) -> None:
        if not self.token:
            raise AuthError(
                f"no Hugging Face token for the gated dataset {self.repo_id}: {token_help(self.env_file)}"
            )

    def _rejected(self, subject: str, status: int | None) -> AuthError:
        return AuthError(
            f"{subject}: the Hub rejected the token (HTTP {status}): {token_help(self.env_file)}"
        )

    @contextmanager
    def _hub_errors(
        self, subject: str, missing: EgoCleanError, writing: Path | None = None, size: int | None = None
    ) -> Iterator[None]:
        """Turn huggingface_hub's and the network's exceptions into ours, each a one-line message."""
        self._require_token()
        hub = self.endpoint or huggingface_hub.constants.ENDPOINT
        terms = f"https://huggingface.co/datasets/{self.repo_id}"
        try:
            yield
        except GatedRepoError as err:
            if _status(err) == 403:
                raise AuthError(
                    f"{subject}: access to the gated dataset {self.repo_id} is refused: "
                    f"accept the terms at {terms} while logged in, then run again"
                ) from err
            raise self._rejected(subject, _status(err)) from err
        except RepositoryNotFoundError as err:
            if _status(err) == 401:  # the Hub answers 401 for a repo the token may not see
                raise self._rejected(subject, 401) from err
            raise FetchError(f"dataset {self.repo_id} not found at {hub}: check the repo id") from err
        except RevisionNotFoundError as err:
            raise FetchError(f"revision {self.revision!r} of {self.repo_id} not found; use main") from err
        except LocalEntryNotFoundError as err:  # hf_hub_download's "could not reach the Hub, nothing cached"
            answered = _http_cause(err)  # the Hub did answer, with an error (a 5xx after its retries)
            if answered is not None and _status(answered) is not None:
                raise _answered(subject, _status(answered)) from err
            raise _unreachable(hub) from err
        except (
            EntryNotFoundError
        ) as err:  # RemoteEntryNotFoundError: the Hub answered 404 for the file or folder
            raise missing from err
        except HfHubHTTPError as err:
            status = _status(err)
            if status == 401:
                raise self._rejected(subject, 401) from err
            if status == 403:
                raise AuthError(
                    f"{subject}: the token may not read {self.repo_id} (HTTP 403): use a read token and "
                    f"accept the terms at {terms}"
                ) from err
            raise _answered(subject, status) from err
        except (httpx2.TransportError, OfflineModeIsEnabled) as err:
            raise _unreachable(hub) from err
        except OSError as err:
            if writing is not None and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise output_error(writing, err, size) from err
            raise FetchError(
                f"{subject}: download failed ({err.__class__.__name__}); run again", transient=True
            ) from err


def sorted_workers(folders: Iterable[str]) -> list[WorkerRef]:
    """WorkerRefs of "factory_001/workers/worker_001" folders (others skipped), in factory/worker order."""
    found = set()
    for folder in folders:
        with contextlib.suppress(ValueError):
            found.add(WorkerRef.parse(folder))
    return sorted(found, key=lambda w: (w.factory, w.worker))


def _answered(subject: str, status: int | None) -> FetchError:
    """The Hub answered an error status not handled above: its load (408, 429, 5xx) passes, others do not."""
    if status is None or status in (408, 429) or status >= 500:
        trouble = f"{subject}: the Hub answered HTTP {status}; it is having trouble: try again later"
        return FetchError(trouble, transient=True)
    return FetchError(f"{subject}: the Hub refused the request (HTTP {status}); check the names asked for")


def _unreachable(hub: str) -> FetchError:
    message = f"cannot reach the Hub at {hub}: check the network, or use --source DIR"
    return FetchError(message, transient=True)


def _http_cause(err: BaseException) -> HfHubHTTPError | None:
    """The HTTP error behind `err`, if its chain of causes holds one."""
    seen: BaseException | None = err.__cause__ or err.__context__
    while seen is not None:
        if isinstance(seen, HfHubHTTPError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _status(err: HfHubHTTPError) -> int | None:
    return err.response.status_code if err.response is not None else None


def resolve_token(env_file: Path | None = Path(".env")) -> str | None:
    """The Hub token: HF_KEY or HF_TOKEN from the environment, then from `env_file` (parsed by
    python-dotenv: quotes, `export` and trailing comments as a shell reads them), then `hf auth login`'s.
    Empty values count as missing."""
    for name in TOKEN_NAMES:
        if value := os.environ.get(name, "").strip():
            return value
    if env_file is not None and Path(env_file).is_file():
        try:
            values = dotenv.dotenv_values(env_file)
        except (UnicodeDecodeError, OSError) as err:
            raise SettingError(
                f"{env_file}: not a readable text file of NAME=value lines ({err.__class__.__name__}); "
                "fix it, or pass --env-file another file"
            ) from err
        for name in TOKEN_NAMES:
            if value := (values.get(name) or "").strip():
                return value
    return huggingface_hub.get_token() or None
