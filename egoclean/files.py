"""Writing outputs safely: under a temporary name in the same folder, renamed into place when complete.

An interrupted run therefore never leaves a half-written file under a final name, and a rerun can trust
every final file it finds. Temporary files are `NAME.partial-HOST-PID-RANDOM.EXT`: unique to the writer,
so two runs writing the same output never write into one file (the last rename wins, and each renamed file
is complete); the extension is kept so that tools which pick a format by extension, such as FFmpeg's
muxers, still work. HOST and PID name the writer, so that a temporary file whose writer was killed can be
told from one that a live run (on this machine or another sharing the folder) is writing:
`remove_dead_partials`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from egoclean.errors import OutputError

PARTIAL_TAG = ".partial"
# The writer in a temporary file's name: HOST-PID-RANDOM, or PID-RANDOM in names written before the host
# was recorded. HOST may hold '-': the last two fields are always PID and RANDOM. Then the final's suffix.
PARTIAL_WRITER = re.compile(r"\.partial-(?:(?P<host>[A-Za-z0-9_-]+)-)?(?P<pid>\d+)-[0-9a-f]{8}(?:\.[^.]*)?$")


def writer_host() -> str:
    """This machine as temporary names spell it: the host name with every character but letters, digits,
    '_' and '-' replaced by '_', then '_' and the inode of this process's pid namespace when Linux shows
    it. A pid means a process only within one pid namespace: containers that share a host name (host
    networking) but not their pids must not judge each other's writers dead."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
    try:
        return f"{host}_{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux, or no /proc: the host name alone
        return host


def partial_path(final: Path) -> Path:
    """rectified_clip_1.mp4 -> rectified_clip_1.partial-HOST-4242-1a2b3c4d.mp4 (a new name on every call;
    HOST: writer_host())"""
    writer = f"{writer_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return final.with_name(f"{final.stem}{PARTIAL_TAG}-{writer}{final.suffix}")


def is_partial(path: Path) -> bool:
    return PARTIAL_TAG in path.name


def partial_writer(path: Path) -> tuple[str, int] | None:
    """(host, pid) of the process that made the temporary file `path` (see partial_path); None for a name
    partial_path did not make. A name without a host (written before hosts were recorded) is taken as
    this host's: such files come from runs of an older version, which ran here or are long gone."""
    match = PARTIAL_WRITER.search(Path(path).name)
    if match is None:
        return None
    return match["host"] or writer_host(), int(match["pid"])


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def remove_dead_partials(folder: Path) -> list[Path]:
    """Delete the temporary files (and folders) in `folder` whose writer is provably dead: made on this
    host by a process that no longer exists. Safe without any lock: a live writer's file, or one from
    another host (its pid means nothing here), is left alone. Returns what was removed."""
    here = writer_host()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:  # no such folder (yet): nothing to sweep
        return []
    removed = []
    for path in entries:
        writer = partial_writer(path)
        if writer is None or writer[0] != here or process_alive(writer[1]):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:  # another sweep got there first, or no permission: a leftover, never a failed run
            continue
        removed.append(path)
    return removed


def remove_partials(final: Path) -> None:
    """Delete every temporary file of `final` left by a killed writer. Call it only while holding the lock
    that guards `final` (egoclean.locks): then no live writer can own one."""
    final = Path(final)
    for leftover in final.parent.glob(f"{final.stem}{PARTIAL_TAG}*{final.suffix}"):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to `final`, on failure deleted.

    OSErrors such as a full disk or a read-only folder become one-line OutputErrors naming the file.
    """
    final = Path(final)
    tmp = partial_path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        with contextlib.suppress(OSError):  # e.g. NotADirectoryError: final's folder is a file
            tmp.unlink(missing_ok=True)
        raise output_error(final, err) from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def remove_files(paths: Iterable[Path]) -> None:
    """Delete each of `paths` that exists; an OSError becomes the one-line OutputError naming the file."""
    for path in paths:
        with output_errors(Path(path)):
            Path(path).unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes (read in 1 MiB blocks: embeddings can be tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def human_bytes(n_bytes: float) -> str:
    """1.5e9 -> "1.5 GB", 2e6 -> "2.0 MB", 300 -> "300 bytes": never "0.0 GB"."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def output_error(path: Path, err: OSError, needed_bytes: int | None = None) -> OutputError:
    """The one line for a failed write of `path`: disk full, no permission, or another OS error."""
    # numpy reports a short write to a full disk as a bare OSError ("N requested and M written")
    short_write = err.errno is None and "requested and" in str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or short_write:
        need = f" (it needs about {human_bytes(needed_bytes)})" if needed_bytes else ""
        return OutputError(
            f"{path}: disk full{need}; free some space or choose another --out folder, then rerun "
            "(finished files are kept)"
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path.parent}: cannot write there ({err.strerror}); choose another --out folder")
    if err.errno in (errno.EEXIST, errno.ENOTDIR):  # a file sits where a folder has to be
        return file_in_the_way(next((p for p in (path, *path.parents) if p.is_file()), path.parent))
    return OutputError(f"{path}: cannot write ({err.strerror or err}); check the folder and the disk")


def file_in_the_way(path: Path) -> OutputError:
    return OutputError(f"{path}: is a file, but a folder is needed there; choose another --out folder")


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into the one-line OutputError of `output_error`."""
    try:
        yield
    except OSError as err:
        raise output_error(Path(path), err) from err


def write_json(final: str | Path, data: object) -> None:
    with atomic_output(final) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def save_npy(final: str | Path, array: np.ndarray) -> None:
    with atomic_output(final) as tmp, open(tmp, "wb") as f:  # a handle: np.save would append .npy to a path
        np.save(f, array)


def check_writable(folder: Path) -> None:
    """Fail early, before any download, if `folder` cannot be created or written."""
    probe = folder / f".egoclean-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # runs may share the folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise output_error(probe, err) from err


def check_can_create(folder: Path) -> None:
    """Fail early if `folder` could not be made or written, without making it (nothing is left behind if
    the run then fails for another reason): its nearest existing ancestor must be a writable folder."""
    existing = next(p for p in (Path(folder), *Path(folder).parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise file_in_the_way(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"{existing}: cannot write there (no permission, or a read-only disk); choose another --out"
        )


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OutputError(
            f"{folder}: {human_bytes(free)} free but {what} needs about {human_bytes(needed_bytes)}; "
            "free some space or choose another --out folder"
        )
