"""Locks between runs that share an output folder: one file per lock, held with fcntl.flock.

    with output_lock(folder, "rectified_clip_1.mp4") as lock:              # waits for the holder
        ...
    lock = FileLock(path)
    if lock.try_acquire(): ...                                             # never waits

The lock file says who holds it (pid, host, start time, run id) so a person can see what a folder is waiting
for (`cat OUT/factory_001/.locks/*.lock`). flock locks belong to the open file: the kernel drops them when
the holder exits, even on SIGKILL, so a crashed run never leaves a folder locked. flock works on local
filesystems and on NFSv4 (Linux emulates it with POSIX locks there). Two FileLocks on one path exclude each
other within one process too (each opens the file anew): a process that waits for a lock it holds waits
forever.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

from egoclean.files import output_errors

LOCKS_DIR = ".locks"


def new_run_id() -> str:
    """A name unique to this run on any host: host-pid-random."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def holder_info(run_id: str | None = None) -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "run_id": run_id}


class FileLock:
    """An exclusive lock on `path` (created if missing); the holder's identity is written into it."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        with output_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path.open("a+")

    def _lock(self, blocking: bool) -> bool:
        """Take the lock and write the holder into it; False if `blocking` is off and another run has it.
        On any failure (Ctrl-C while waiting, a full disk while writing) the handle is closed, which lets
        the lock go: a handle left open would hold it until garbage collection."""
        handle = self._open()
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            with output_errors(self.path):
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(holder_info(self.run_id)) + "\n")
                handle.flush()
        except BaseException:
            handle.close()
            raise
        self._file = handle
        return True

    def acquire(self) -> None:
        """Wait until the lock is free, then hold it."""
        self._lock(blocking=True)

    def try_acquire(self) -> bool:
        """Hold the lock if it is free now; False (and nothing held) if another run has it."""
        return self._lock(blocking=False)

    def holder(self) -> dict | None:
        """Who holds (or last held) the lock, from the file; None if unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def output_lock(folder: Path, output_name: str, run_id: str | None = None) -> FileLock:
    """The lock held while one run makes the output `output_name` of `folder` (phase 1's rectified mp4,
    phase 2's X_emb.npy): two runs never make it at once. Named after the whole file name, as the
    output's crash count is (egoclean.attempts.attempts_mark), so no two outputs share a lock."""
    return FileLock(folder / LOCKS_DIR / f"{output_name}.lock", run_id)
