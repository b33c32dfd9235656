"""egoclean.attempts: attempts whose process died are counted, across real processes, and only those."""

from __future__ import annotations

import pytest

from egoclean.attempts import clear_attempts, crash_guard, unreturned_attempts
from egoclean.errors import CrashLoopError
from tests.helpers import attempt_in_a_process_that_dies


def test_each_attempt_whose_process_died_is_counted_and_the_next_over_the_limit_gives_up(tmp_path):
    mark = tmp_path / ".attempts" / "rectified_clip_3.mp4"
    for died in range(1, 4):
        assert attempt_in_a_process_that_dies(mark, limit=3) == 9
        assert unreturned_attempts(mark) == died
    over = pytest.raises(CrashLoopError, match=r"clip 3: .* died 3 times")
    with over as caught, crash_guard(mark, 3, "clip 3"):
        pytest.fail("the body of an item over the limit must not run")
    assert caught.value.attempts == 3
    with pytest.raises(CrashLoopError), crash_guard(mark, 3, "clip 3"):
        pytest.fail("the count stays: a later attempt gives up too")
    clear_attempts(mark)
    with crash_guard(mark, 3, "clip 3") as attempt:
        assert attempt == 1, "cleared: the next attempt is the first again"
    assert not mark.exists()


def test_an_attempt_that_returns_or_raises_is_not_counted(tmp_path):
    mark = tmp_path / "shard.tar"
    assert attempt_in_a_process_that_dies(mark, limit=3) == 9
    with crash_guard(mark, 3, "shard") as attempt:
        assert attempt == 2 and unreturned_attempts(mark) == 2  # marked while it runs
    assert not mark.exists()
    for _ in range(5):  # ordinary failures are the stage's to report, and never add up here
        with pytest.raises(ValueError), crash_guard(mark, 3, "shard"):
            raise ValueError("bad data")
    assert not mark.exists()
    with crash_guard(mark, 3, "shard") as attempt:
        assert attempt == 1
