"""What every command line shares: expected failures become one line and an exit code, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from egoclean.errors import EgoCleanError

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130  # 130 = 128 + SIGINT, as shells report Ctrl-C


def run_main(body: Callable[[], int]) -> int:
    """Run a CLI's body: an EgoCleanError is printed as `error: ...` (exit 2), Ctrl-C as one line (exit
    130). Finished outputs are never touched by either."""
    try:
        return body()
    except EgoCleanError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished files are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
