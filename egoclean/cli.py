"""What every command line shares: expected failures become one line and an exit code, never a traceback."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from egoclean.errors import EgoCleanError

EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143  # 128 + SIGINT or SIGTERM, as shells report them


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler ending the job), raised like Ctrl-C so that the same cleanup runs: left
    to its default, the signal ends the process at once, and a clip's attempt would count as one whose
    process died under it (egoclean.attempts)."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def run_main(body: Callable[[], int]) -> int:
    """Run a CLI's body: an EgoCleanError is printed as `error: ...` (exit 2), Ctrl-C or SIGTERM as one line
    (exit 130 or 143). Finished outputs are never touched by any of them."""
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signals can be caught
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return body()
    except EgoCleanError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as err:
        print("interrupted: finished files are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
