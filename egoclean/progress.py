"""Progress reporting: the hooks a library fills in, and the terminal implementation the CLIs use.

Libraries take a `Progress` and never print; the CLIs pass `terminal_progress()`: tqdm bars on a terminal,
plain log lines only elsewhere (quiet in CI and in logs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm


def _no_bar(label: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class Progress:
    """log(message): a status line; error(message): one failed item that does not stop the run;
    bytes_bar(label, total) -> update(bytes_done_so_far);
    frames_bar(label, total) -> update(items_since_last_call) (frames, windows, ...)."""

    log: Callable[[str], None] = lambda message: None
    error: Callable[[str], None] = lambda message: None
    bytes_bar: Callable[[str, int | None], Callable[[int], None]] = _no_bar
    frames_bar: Callable[[str, int | None], Callable[[int], None]] = _no_bar


def terminal_progress(unit: str = "frame", log_file: TextIO | None = None) -> Progress:
    """One tqdm bar at a time on stderr (disabled when stderr is not a terminal); log lines above it, on
    `log_file` (default stderr); errors on stderr as `error: ...`."""
    open_bars: list[tqdm] = []

    def new_bar(**kwargs: object) -> tqdm:
        while open_bars:
            open_bars.pop().close()
        bar = tqdm(disable=None, leave=False, dynamic_ncols=True, file=sys.stderr, **kwargs)
        open_bars.append(bar)
        return bar

    def bytes_bar(label: str, total: int | None) -> Callable[[int], None]:
        bar = new_bar(desc=label, total=total, unit="B", unit_scale=True, unit_divisor=1024)

        def update(done: int) -> None:
            bar.update(done - bar.n)

        return update

    def frames_bar(label: str, total: int | None) -> Callable[[int], None]:
        return new_bar(desc=label, total=total, unit=unit).update

    def log(message: str) -> None:
        tqdm.write(message, file=log_file or sys.stderr)

    def error(message: str) -> None:
        tqdm.write(f"error: {message}", file=sys.stderr)

    return Progress(log=log, error=error, bytes_bar=bytes_bar, frames_bar=frames_bar)
