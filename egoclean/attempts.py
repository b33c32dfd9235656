"""Counting the attempts at an item whose process may die before it can say so.

A stage that takes its own process down (a crash inside FFmpeg or the model, the kernel's OOM killer) cannot
report a failure. Ray runs a killed task or actor call again, by default without end, and in Ray Data a task
that has run out of retries aborts the whole dataset, so one such clip would stall or end a run over
thousands. So a stage marks each attempt in a file before it starts on an item and removes the mark when it
returns, whether it succeeded or raised. An attempt that finds `limit` marks already there gives up on that
item alone.

    with crash_guard(staging / ATTEMPTS_DIR / "rectified_clip_3", limit=3, what="rectified_clip_3.mp4"):
        ...   # on entry: CrashLoopError if 3 earlier attempts never returned

Where the marks live decides how long a count lasts. The scale-out keeps them in the run's own staging
folder (which every node of the run shares): each run starts from a clean count, and the marks go when the
staging folder does. On the local engine (one process: a death ends the run) each phase keeps them in the
folder it writes to, named after the output the attempt makes (`attempts_mark`: phase 1's rectified mp4,
phase 2's X_emb.npy, so neither phase's --retry-failed clears the other's), and the count carries over from
run to run; `clear_attempts` starts it again (--retry-failed).

Only a death that skips Python's cleanup is counted: Ctrl-C, SIGTERM (egoclean.cli turns it into an
exception) and any error run the guard's `finally`. A `kill -9` or a power cut counts as a death too: the
price of counting what no code sees, paid only when it happens `limit` times on the same item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from egoclean.errors import CrashLoopError
from egoclean.files import atomic_output

ATTEMPTS_DIR = ".attempts"
# How a person tries an item left out this way again, on the local engine (`again` below)
RETRY_FAILED = "run again with --retry-failed"


def attempts_mark(folder: Path, output_name: str) -> Path:
    """Where the local engine counts the attempts at making `output_name` in `folder` that died with their
    process: in the output folder itself, so that a run the item kills does not forget them."""
    return folder / ATTEMPTS_DIR / output_name


def unreturned_attempts(mark: Path) -> int:
    """How many attempts at the item started and never returned (0 without a mark)."""
    try:
        return int(mark.read_text())
    except (OSError, ValueError):
        return 0


def clear_attempts(mark: Path) -> None:
    """Forget the attempts at the item `mark` stands for: the next one is the first again."""
    mark.unlink(missing_ok=True)


def check_attempts(mark: Path, limit: int, what: str, again: str = "run again") -> int:
    """How many attempts at the item `mark` stands for died (`unreturned_attempts`). Raises CrashLoopError,
    naming the item as `what` and ending with `again`, when that is `limit` or more: the item is left out.
    A planner can ask this before it fetches anything for the item; crash_guard asks it on entry."""
    died = unreturned_attempts(mark)
    if died >= limit:
        raise CrashLoopError(
            f"{what}: the process working on it died {died} times (killed for memory, or a crash in a "
            "decoder or the model); left out so that the rest go on. Check the node's memory "
            f"(dmesg | grep -i oom), then {again}",
            attempts=died,
        )
    return died


@contextlib.contextmanager
def crash_guard(mark: Path, limit: int, what: str, again: str = "run again") -> Iterator[int]:
    """Run the body as one more attempt at the item `mark` stands for; yields the attempt's number (1 for the
    first). Raises CrashLoopError on entry when `limit` attempts already died; the count stays, so every
    later attempt gives up too until `clear_attempts`. `again` ends the message: how to try it again."""
    died = check_attempts(mark, limit, what, again)
    with atomic_output(mark) as tmp:  # renamed into place: a kill mid-write leaves the old count
        tmp.write_text(str(died + 1))
    try:
        yield died + 1
    finally:  # the process survived this attempt, whatever it raised
        mark.unlink(missing_ok=True)
