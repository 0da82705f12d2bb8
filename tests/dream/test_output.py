"""Atomic writes, bounded history, numbering across restarts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image

from dream_window.dream.output import OutputWriter
from dream_window.errors import FrameWriteError
from dream_window.file_ops import atomic_write_bytes


def _img(v: int) -> Image.Image:
    return Image.new("RGB", (16, 32), (v, 255 - v, 128))


def test_history_is_bounded_oldest_first_and_numbering_continues_after_restart(tmp_path: Path) -> None:
    w = OutputWriter(tmp_path, history_size=5, fsync=False)
    for i in range(12):
        w.publish(_img(i))
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(8, 13)]
    with Image.open(tmp_path / "current_frame.png") as cur:
        assert cur.getpixel((0, 0)) == (11, 244, 128)
    w2 = OutputWriter(tmp_path, history_size=3, fsync=False)  # restart with a smaller bound
    assert sorted(w2.history_indices()) == [10, 11, 12]
    published = w2.publish(_img(99))
    assert published.index == 13 and published.path.name == "frame_000013.png"
    assert published.png == published.path.read_bytes()  # what other writers copy


def test_stale_temp_files_from_a_killed_writer_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".current_frame.png.abc.tmp").write_bytes(b"half")
    OutputWriter(tmp_path, history_size=3, fsync=False)
    assert not list(tmp_path.glob(".*.tmp"))


def test_locked_target_is_retried_with_backoff(tmp_path: Path) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky_replace(src: str, dst: Path) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise PermissionError(errno.EACCES, "sharing violation")
        os.replace(src, dst)

    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"data", replace=flaky_replace, sleep=sleeps.append)
    assert target.read_bytes() == b"data"
    assert len(calls) == 3 and sleeps == sorted(sleeps) and len(sleeps) == 2


def test_permanently_locked_target_raises_our_error_and_leaves_no_temp(tmp_path: Path) -> None:
    def locked(src: str, dst: Path) -> None:
        raise PermissionError(errno.EACCES, "sharing violation")

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(FrameWriteError, match="still locked"):
        atomic_write_bytes(target, b"new", replace=locked, sleep=lambda s: None)
    assert target.read_bytes() == b"old"  # never lost
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_folder_raises_our_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FrameWriteError, match="cannot write"):
        atomic_write_bytes(blocker / "sub" / "f.png", b"x")
