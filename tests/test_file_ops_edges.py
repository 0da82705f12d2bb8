"""file_ops: the JSON files a person or a widget reads, the temp files a killed write leaves, a
target that stays locked, and a run of failures that ends and starts again."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from dream_window.errors import FrameWriteError
from dream_window.file_ops import WriteFailures, atomic_write_bytes, atomic_write_json, clean_stale_temps


def test_json_is_written_indented_readable_and_in_utf8(tmp_path: Path) -> None:
    # status.json is opened by people and by Rainmeter: two-space indents, prompts as written
    # (not \u escapes), one trailing newline.
    path = tmp_path / "status.json"
    data = {"prompt": "café at dawn — 夢", "frames": [1, 2]}
    atomic_write_json(path, data, fsync=False)
    want = '{\n  "prompt": "café at dawn — 夢",\n  "frames": [\n    1,\n    2\n  ]\n}\n'
    assert path.read_bytes() == want.encode("utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == data


def test_stale_temps_are_removed_and_counted_and_nothing_else_is_touched(tmp_path: Path) -> None:
    stale = [tmp_path / ".frame.png.abc123.tmp", tmp_path / ".status.json.x9.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    kept = [tmp_path / "frame.png", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in kept:
        p.write_bytes(b"keep")
    assert clean_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_a_stale_temp_that_cannot_be_removed_is_skipped_and_not_counted(tmp_path: Path) -> None:
    (tmp_path / ".odd.tmp").mkdir()  # unlink() refuses a directory with an OSError
    (tmp_path / ".a.png.1.tmp").write_bytes(b"")
    (tmp_path / ".b.png.2.tmp").write_bytes(b"")
    assert clean_stale_temps(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == [".odd.tmp"]


def test_cleaning_a_folder_that_does_not_exist_removes_nothing(tmp_path: Path) -> None:
    assert clean_stale_temps(tmp_path / "missing") == 0


def test_the_temporary_file_sits_next_to_the_target_where_a_cleanup_finds_it(tmp_path: Path) -> None:
    # Same folder (os.replace is atomic only within one file system), and named so that
    # clean_stale_temps finds it after a kill: ".<name>.<random>.tmp".
    temps: list[Path] = []

    def replace(src: str, dst: Path) -> None:
        temps.append(Path(src))
        os.replace(src, dst)

    target = tmp_path / "frame.png"
    atomic_write_bytes(target, b"png", fsync=False, replace=replace)
    assert target.read_bytes() == b"png"
    (temp,) = temps
    assert temp.parent == tmp_path
    assert temp.name.startswith(".frame.png.") and temp.name.endswith(".tmp")
    temp.write_bytes(b"as a kill would leave it")
    assert clean_stale_temps(tmp_path) == 1 and not temp.exists()


def test_a_target_that_stays_locked_is_given_up_after_each_delay_with_the_count_of_tries(
    tmp_path: Path,
) -> None:
    slept: list[float] = []

    def locked(src: str, dst: Path) -> None:
        raise PermissionError(errno.EACCES, "The process cannot access the file", str(dst))

    target = tmp_path / "status.json"
    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(
            target, b"{}", fsync=False, retry_delays=(0.01, 0.02), sleep=slept.append, replace=locked
        )
    err = info.value
    assert str(err) == f"cannot replace {target}: still locked after 3 tries"
    assert (err.path, err.reason, err.disk_full) == (str(target), "still locked after 3 tries", False)
    assert slept == [0.01, 0.02]
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_folder_that_cannot_be_made_names_the_file_that_was_not_written(tmp_path: Path) -> None:
    (tmp_path / "frames").write_bytes(b"a file where a folder should be")
    target = tmp_path / "frames" / "frame.png"
    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(target, b"png", fsync=False)
    assert str(info.value).startswith(f"cannot write {target}: ")
    assert info.value.path == str(target)


def test_a_temporary_file_someone_else_removed_still_fails_as_a_write_error(tmp_path: Path) -> None:
    # Another instance cleaning stale temps in the same folder, then a failing rename: the
    # cleanup of our (vanished) temp must not hide the real error.
    def vanished_then_failed(src: str, dst: Path) -> None:
        os.unlink(src)
        raise OSError(errno.EIO, os.strerror(errno.EIO), src)

    target = tmp_path / "frame.png"
    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(target, b"png", fsync=False, replace=vanished_then_failed)
    assert str(info.value) == f"cannot write {target}: {os.strerror(errno.EIO)}"


def test_a_new_problem_after_a_recovery_counts_its_own_losses_from_zero() -> None:
    stamps = iter(["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00"])
    failures = WriteFailures(
        logging.getLogger("test.file_ops"),
        one="frame not published",
        many="frames not published",
        recovered="output writable again",
        monotonic=lambda: 0.0,
        now=lambda: next(stamps),
    )
    failures.failed("disk full", "/out", count=4)
    assert failures.succeeded()
    failures.failed("Permission denied", "/other")
    assert failures.describe() == {
        "ok": False,
        "problem": "Permission denied",
        "path": "/other",
        "frames_lost": 1,
        "since": "2026-01-01T01:00:00+00:00",
    }
