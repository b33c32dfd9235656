"""A stand-in for the Hugging Face Hub: serves a folder laid out like a dataset repo over HTTP, on loopback.

It answers the few endpoints that huggingface_hub 2.4 uses to list and download a dataset's files, so the real
client code (HfApi.list_repo_tree, hf_hub_download) runs unchanged against it (endpoint=hub.url):

    GET  /api/datasets/{repo_id}/tree/{revision}[/{path}]?recursive=&expand=&cursor=
         -> JSON list of {"type": "file", "oid", "size", "path", "lfs"?} and {"type": "directory", "oid",
            "path"},
            paginated with a `Link: <next url>; rel="next"` header (page_size entries a page).
    HEAD /datasets/{repo_id}/resolve/{revision}/{path}
         -> headers only: ETag (sha256 of the file), X-Repo-Commit, Content-Length, Accept-Ranges.
    GET  same url -> the file; `Range: bytes=N-[M]` gives 206 + Content-Range (how http_get resumes).

Authorization (`Authorization: Bearer TOKEN`), as the Hub answers a gated repo:
    good_token  -> 200 everywhere;
    gated_token -> listing allowed, files 403 with `X-Error-Code: GatedRepo` (terms not accepted);
    no token    -> 401 with `X-Error-Code: GatedRepo` ("you must be authenticated");
    other token -> 401 with `X-Error-Message: Invalid credentials in Authorization header`.
Errors carry the Hub's `X-Error-Code` (EntryNotFound, RevisionNotFound, RepoNotFound), from which
huggingface_hub.utils.hf_raise_for_status picks its exception class.

Each request is counted per (method, path in repo), and the body bytes sent per path, for tests to assert on.
Setting `cut_next_download_after = N` makes the next file download stop after N bytes and drop the connection
(with the full Content-Length promised), as a flaky network would: huggingface_hub then resumes with Range.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".tar", ".mp4")  # stored through LFS on the real repo: tree entries carry an "lfs" object
COPY_CHUNK = 64 * 1024


class FakeHub:
    """Serve `root` (laid out like the dataset repo `repo_id`) at `self.url` while started."""

    def __init__(
        self,
        root: Path,
        repo_id: str = "builddotai/Egocentric-10K",
        good_token: str = "hf_test_good",
        gated_token: str = "hf_test_gated",
        page_size: int = 1000,
        latency_s: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.repo_id = repo_id
        self.good_token = good_token
        self.gated_token = gated_token
        self.page_size = page_size
        self.latency_s = latency_s  # each request waits this long first, as a distant Hub's round trip
        self.cut_next_download_after: int | None = None  # drop the connection mid-body once, to test resuming
        self.fail_downloads_with: int | None = None  # answer every file request with this HTTP status
        self.commit = hashlib.sha1(repo_id.encode()).hexdigest()  # a fixed 40-hex "commit" for X-Repo-Commit
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, path in repo) -> count
        self.bytes_served: Counter[str] = Counter()  # path in repo -> body bytes sent
        self.range_requests: list[str] = []  # the Range headers received, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._sha256: dict[tuple[str, int, int], str] = {}

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # loopback only, any free port
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return self.requests[(method, path)]

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_served.clear()
            self.range_requests.clear()

    # -- used by the handler

    def _count_request(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[(method, path)] += 1

    def _count_bytes(self, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_served[path] += sent

    def _file_sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._sha256:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(COPY_CHUNK):
                    digest.update(chunk)
            self._sha256[key] = digest.hexdigest()
        return self._sha256[key]

    def _local(self, repo_path: str) -> Path | None:
        """The file or folder for a path in the repo; None if it does not exist or would leave the root."""
        parts = [p for p in repo_path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return None
        path = self.root.joinpath(*parts)
        return path if path.exists() else None


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries a Content-Length

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read the counters instead

    # -- routing

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    def do_GET(self) -> None:
        self._route(send_body=True)

    def _route(self, send_body: bool) -> None:
        if self.hub.latency_s:
            time.sleep(self.hub.latency_s)
        url = urlsplit(self.path)
        repo = re.escape(self.hub.repo_id)
        tree = re.fullmatch(rf"/api/datasets/{repo}/tree/([^/]+)(?:/(.*))?", url.path)
        resolve = re.fullmatch(rf"/datasets/{repo}/resolve/([^/]+)/(.+)", url.path)
        if tree and self.command == "GET":
            self._tree(unquote(tree[1]), unquote(tree[2] or ""), parse_qs(url.query))
        elif resolve:
            self._resolve(unquote(resolve[1]), unquote(resolve[2]), send_body)
        else:
            self._error(404, "RepoNotFound", "Repository not found")

    # -- auth

    def _authorised(self, for_download: bool) -> bool:
        """Send the Hub's refusal and return False unless the bearer token may do this."""
        header = self.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        if token == self.hub.good_token:
            return True
        if token == self.hub.gated_token:
            if not for_download:
                return True  # a gated repo's file list is public; its files are not
            self._error(
                403,
                "GatedRepo",
                f"Access to dataset {self.hub.repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/datasets/{self.hub.repo_id} to ask for access.",
            )
            return False
        if token is None:
            self._error(
                401,
                "GatedRepo",
                f"Access to dataset {self.hub.repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
            return False
        self._error(401, None, "Invalid credentials in Authorization header")
        return False

    def _known_revision(self, revision: str) -> bool:
        if revision in ("main", self.hub.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return False

    # -- endpoints

    def _tree(self, revision: str, repo_path: str, query: dict[str, list[str]]) -> None:
        self.hub._count_request("GET", repo_path)
        if not self._authorised(for_download=False) or not self._known_revision(revision):
            return
        folder = self.hub._local(repo_path)
        if folder is None or not folder.is_dir():
            self._error(404, "EntryNotFound", f"{repo_path} does not exist on {revision}")
            return
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        children = sorted(folder.rglob("*") if recursive else folder.iterdir())
        entries = [self._tree_entry(p) for p in children]
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + self.hub.page_size]
        headers = {}
        if cursor + self.hub.page_size < len(entries):
            host = self.headers.get("Host", "127.0.0.1")
            params = f"recursive={recursive}&expand=False&cursor={cursor + self.hub.page_size}"
            headers["Link"] = f'<http://{host}{urlsplit(self.path).path}?{params}>; rel="next"'
        self._send(200, json.dumps(page).encode(), "application/json", headers)

    def _tree_entry(self, path: Path) -> dict:
        rel = path.relative_to(self.hub.root).as_posix()
        if path.is_dir():
            return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "path": rel}
        size = path.stat().st_size
        entry = {
            "type": "file",
            "oid": hashlib.sha1(f"{rel}:{size}".encode()).hexdigest(),
            "size": size,
            "path": rel,
        }
        if path.suffix in LFS_SUFFIXES:
            entry["lfs"] = {"oid": self.hub._file_sha256(path), "size": size, "pointerSize": 134}
        return entry

    def _resolve(self, revision: str, repo_path: str, send_body: bool) -> None:
        self.hub._count_request(self.command, repo_path)
        if not self._authorised(for_download=True) or not self._known_revision(revision):
            return
        if self.hub.fail_downloads_with is not None:
            self._error(self.hub.fail_downloads_with, "ServerError", "the server is having a bad day")
            return
        path = self.hub._local(repo_path)
        if path is None or not path.is_file():
            self._error(404, "EntryNotFound", f"{repo_path} does not exist on {revision}")
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        headers = {
            "ETag": f'"{self.hub._file_sha256(path)}"',
            "X-Repo-Commit": self.hub.commit,
            "Accept-Ranges": "bytes",
        }
        byte_range = self.headers.get("Range")
        if byte_range and send_body:
            self.hub.range_requests.append(byte_range)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", byte_range.strip())
            if not match or int(match[1]) >= size:
                self._error(
                    416, None, f"Range {byte_range} not satisfiable", {"Content-Range": f"bytes */{size}"}
                )
                return
            start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        self._send_head(status, length, "application/octet-stream", headers)
        if not send_body:
            return
        if self.hub.cut_next_download_after is not None:  # promise `length` bytes, send fewer, hang up
            length, self.hub.cut_next_download_after = min(length, self.hub.cut_next_download_after), None
            self.close_connection = True
        sent = 0
        with path.open("rb") as f:
            f.seek(start)
            while sent < length and (chunk := f.read(min(COPY_CHUNK, length - sent))):
                self.hub._count_bytes(repo_path, len(chunk))  # count first: a test may look right after
                self.wfile.write(chunk)
                sent += len(chunk)

    # -- responses

    def _error(
        self, status: int, code: str | None, message: str, extra: dict[str, str] | None = None
    ) -> None:
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        body = json.dumps({"error": message}).encode()
        self._send(status, body if self.command != "HEAD" else b"", "application/json", headers, len(body))

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str], length: int | None = None
    ) -> None:
        self._send_head(status, len(body) if length is None else length, content_type, headers)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_head(self, status: int, length: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


@contextmanager
def serve(root: Path, **options: object) -> Iterator[FakeHub]:
    """Run a FakeHub over `root` for the duration of a with-block."""
    hub = FakeHub(root, **options)  # type: ignore[arg-type]
    with hub:
        yield hub
