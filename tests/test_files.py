"""egoclean.files: temporary names that say who writes them, and the sweep of killed writers' leftovers."""

from __future__ import annotations

import os
from pathlib import Path

from egoclean.files import (
    atomic_output,
    is_partial,
    partial_path,
    partial_writer,
    remove_dead_partials,
    remove_partials,
    writer_host,
)
from tests.helpers import dead_pid, killed_writers_partial


def test_a_temporary_name_says_its_host_and_pid_and_keeps_the_extension(tmp_path: Path) -> None:
    final = tmp_path / "rectified_clip_1.mp4"
    tmp = partial_path(final)
    assert tmp.suffix == ".mp4" and is_partial(tmp) and tmp.parent == tmp_path
    assert partial_writer(tmp) == (writer_host(), os.getpid())
    assert partial_path(final) != tmp  # a new name on every call
    folder = partial_path(tmp_path / "tiny_vjepa2")  # a folder's (VJEPA/tiny_model.py)
    assert partial_writer(folder) == (writer_host(), os.getpid())


def test_writer_of_every_name_form() -> None:
    here = writer_host()
    assert partial_writer(Path("x_emb.partial-4242-0123abcd.npy")) == (here, 4242)  # before hosts
    assert partial_writer(Path("x_emb.partial-gpu-node-7_99-4242-0123abcd.npy")) == ("gpu-node-7_99", 4242)
    assert partial_writer(Path("x_emb.partial-17-4242-0123abcd.npy")) == ("17", 4242)  # a numeric host
    # other forms of ".partial" (fisheye/shards.py, fisheye/sample.py) and finals: no writer known
    for name in ("rectified_clip_3.partial.mp4", "w_part03.tar.partial", "x_emb.npy"):
        assert partial_writer(Path(name)) is None


def test_host_is_filename_safe() -> None:
    assert writer_host() and all(c.isalnum() or c in "_-" for c in writer_host())


def test_sweep_removes_only_partials_whose_writer_is_provably_dead(tmp_path: Path) -> None:
    dead = [
        killed_writers_partial(tmp_path / "a_emb.npy"),
        killed_writers_partial(tmp_path / "a_diagnostics.png", host=""),  # old form: taken as this host's
    ]
    dead_folder = tmp_path / f"tiny.partial-{writer_host()}-{dead_pid()}-0badf00d"
    (dead_folder / "sub").mkdir(parents=True)
    kept = [
        partial_path(tmp_path / "a_ts.npy"),  # this live process's
        killed_writers_partial(tmp_path / "a_analysis.json", host="another-host"),  # a pid of another host
        tmp_path / "a_emb.json",  # finals, and other forms of .partial
        tmp_path / "rectified_clip_3.partial.mp4",
        tmp_path / "w_part03.tar.partial",
    ]
    for path in kept:
        path.touch()
    removed = remove_dead_partials(tmp_path)
    assert sorted(removed) == sorted([*dead, dead_folder])
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_dead_partials(tmp_path / "missing") == []


def test_atomic_output_and_remove_partials_still_work_with_hosts(tmp_path: Path) -> None:
    final = tmp_path / "out.json"
    with atomic_output(final) as tmp:
        tmp.write_text("{}")
        assert partial_writer(tmp) == (writer_host(), os.getpid())
    assert final.read_text() == "{}" and list(tmp_path.iterdir()) == [final]
    leftover = killed_writers_partial(final, host="another-host")
    remove_partials(final)  # under the folder's lock: every partial of `final` goes, whoever wrote it
    assert not leftover.exists() and final.exists()
