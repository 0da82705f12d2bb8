"""A full disk is told as a full disk: one line a minute with a count, a status field, recovery.

Where the platform lets us (Linux, as root), the disk is a real 1-2 MiB tmpfs filled with a
ballast file, so the errors are the ones SQLite and the OS really raise; elsewhere those tests are
skipped, and the seams (an injected ``replace``, SQLite's ``max_page_count``) cover the same paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache.manager import CacheManager
from dream_window.dream.controller import DreamController
from dream_window.dream.output import OutputWriter, check_output_dir
from dream_window.dream.status import StatusWriter
from dream_window.errors import CacheError, ConfigError, FrameWriteError
from dream_window.file_ops import WriteFailures, atomic_write_bytes
from dream_window.values.frame import Frame
from dream_window.web.security import ensure_token
from tests.cache.conftest import picture
from tests.conftest import FakeClock, fast_config, hang_guard

# --- a small real disk --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at a fresh folder (skipped where mounting is not allowed)."""
    if sys.platform != "linux" or shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a real small disk needs Linux, mount(8) and root (to mount a tmpfs)")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full; returns it (delete it to free the space)."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return ballast


def full_disk_error(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


# --- file_ops -----------------------------------------------------------------------------------


def test_atomic_write_on_a_full_disk_says_disk_full(tmp_path: Path) -> None:
    def replace(_src: str, dst: Path) -> None:
        raise full_disk_error(str(dst))

    target = tmp_path / "frame.png"
    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(target, b"x", fsync=False, replace=replace)
    assert info.value.disk_full and info.value.reason == "disk full" and info.value.path == str(target)
    assert "disk full" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the temp file is gone


def test_atomic_write_on_a_real_full_disk(small_disk: Path) -> None:
    ballast = fill(small_disk)
    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(small_disk / "frame.png", os.urandom(64 * 1024), fsync=False)
    assert info.value.disk_full
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".tmp")]
    ballast.unlink()
    atomic_write_bytes(small_disk / "frame.png", os.urandom(64 * 1024), fsync=False)
    assert (small_disk / "frame.png").stat().st_size == 64 * 1024


def test_other_write_errors_are_not_called_disk_full(tmp_path: Path) -> None:
    def replace(_src: str, dst: Path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    with pytest.raises(FrameWriteError) as info:
        atomic_write_bytes(tmp_path / "f", b"x", fsync=False, replace=replace)
    assert not info.value.disk_full and info.value.reason == os.strerror(errno.EROFS)


def test_write_failures_say_one_line_a_minute_and_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    failures = WriteFailures(
        logging.getLogger("test.writes"),
        one="frame not published",
        many="frames not published",
        recovered="output writable again",
        monotonic=clock.monotonic,
        now=lambda: "T0",
    )
    caplog.set_level(logging.INFO, "test.writes")
    assert failures.failed("disk full", "/out") is True
    for _ in range(130):  # two frames a second, for 65 s
        clock.advance(0.5)
        assert failures.failed("disk full", "/out") is False
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "frame not published: disk full (/out)",
        "120 frames not published in the last minute: disk full (/out)",
    ]
    assert failures.describe() == {
        "ok": False,
        "problem": "disk full",
        "path": "/out",
        "frames_lost": 131,
        "since": "T0",
    }
    assert failures.succeeded() is True and failures.succeeded() is False
    assert (
        caplog.records[-1].getMessage()
        == "output writable again (131 frames not published since T0: disk full)"
    )
    assert failures.describe() == {"ok": True}


# --- the cache ----------------------------------------------------------------------------------


def _vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=16).astype(np.float32)
    return v / np.linalg.norm(v)


def test_sqlite_full_is_disk_full_not_damaged_and_passes(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=1000, fsync=False)
    m.add(picture(0, size=(8, 8)), embedding=_vec(0), embedder="e")
    pages = m._conn.execute("PRAGMA page_count").fetchone()[0]
    m._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL at the next page needed
    for i in range(1, 6):
        with pytest.raises(CacheError) as info:
            m.add(picture(i, size=(8, 8)), prompt="p" * 5000, embedding=_vec(i), embedder="e")
        msg = str(info.value)
        assert info.value.disk_full and "disk full" in msg
        assert "damaged" not in msg and "rebuild" not in msg
    assert m.count() == 1
    assert len(list(m.store.ids())) == 1  # the images of the failed adds were removed again
    m._conn.execute("PRAGMA max_page_count = 1073741823")
    m.add(picture(9, size=(8, 8)), prompt="p" * 5000, embedding=_vec(9), embedder="e")
    assert m.count() == 2
    m.check()
    m.close()


def test_a_real_full_disk_under_the_cache(small_disk: Path) -> None:
    """Room for the small images but not for the WAL to grow: SQLite's own SQLITE_FULL."""
    m = CacheManager(small_disk / "cache", max_size=1000, fsync=False)
    m.add(picture(0, size=(8, 8)))
    ballast = fill(small_disk)
    os.truncate(ballast, ballast.stat().st_size - 12 * 1024)
    big = np.ones(32768, np.float32)  # 128 KiB per row, in the database only
    errors: list[CacheError] = []
    for i in range(1, 12):
        try:
            m.add(picture(i, size=(8, 8)), embedding=big, embedder="e")
        except CacheError as exc:
            errors.append(exc)
    assert any("cache database" in str(e) for e in errors), "SQLite never ran out of room"
    for exc in errors:
        assert exc.disk_full and "disk full" in str(exc), exc
        assert "damaged" not in str(exc) and "rebuild" not in str(exc), exc
    ballast.unlink()
    m.add(picture(99, size=(8, 8)), embedding=big, embedder="e")
    m.check()
    assert m.count() == 2 + 11 - len(errors)
    m.close()
    CacheManager(small_disk / "cache", max_size=1000).close()  # opens cleanly afterwards


async def test_the_cache_worker_says_a_full_disk_once_and_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dream_window.cache.embedders import FeatureEmbedder
    from dream_window.cache.frame_cache import CachedFrameCache
    from dream_window.config import CacheConfig

    manager = CacheManager(tmp_path, max_size=1000, fsync=False)
    mem = CachedFrameCache(manager, FeatureEmbedder(), CacheConfig(), rng=__import__("random").Random(0))
    await mem.start()
    pages = manager._conn.execute("PRAGMA page_count").fetchone()[0]
    manager._conn.execute(f"PRAGMA max_page_count = {pages}")
    caplog.set_level(logging.INFO, "dream_window.cache")
    for i in range(30):
        frame = Frame(picture(i, size=(16, 16)), "p" * 3000, "keyframe", 10.0, index=i + 1)
        await mem.remember(frame, tmp_path / "x.png")
        await mem.flush()
    lines = [r.getMessage() for r in caplog.records if "cache" in r.name and "not cached" in r.getMessage()]
    assert lines == [f"frame not cached: disk full ({tmp_path})"]
    assert not [r for r in caplog.records if "damaged" in r.getMessage() or "rebuild" in r.getMessage()]
    writes = mem.describe()["writes"]
    assert isinstance(writes, dict) and writes["ok"] is False and writes["problem"] == "disk full"
    assert writes["frames_lost"] == 30
    manager._conn.execute("PRAGMA max_page_count = 1073741823")
    await mem.remember(
        Frame(picture(77, size=(16, 16)), "ok", "keyframe", 10.0, index=40), tmp_path / "x.png"
    )
    await mem.flush()
    assert mem.describe()["writes"] == {"ok": True} and mem.describe()["size"] == 1
    assert [r.getMessage() for r in caplog.records][-1].startswith("frame cache writable again (30 frames")
    await mem.close()


# --- the controller -----------------------------------------------------------------------------


class FlakyOutput(OutputWriter):
    """An OutputWriter whose disk is full while ``full`` is set (the writes fail as the OS would)."""

    full = False

    def publish(self, frame: Frame):  # type: ignore[no-untyped-def]
        if self.full:
            raise FrameWriteError(
                f"cannot write {self.frames_dir}: disk full", path=str(self.frames_dir), disk_full=True
            )
        return super().publish(frame)


def _controller(tmp_path: Path, clock: FakeClock) -> tuple[DreamController, FlakyOutput]:
    cfg = fast_config(tmp_path, generation={"frame_interval": 1.0})
    c = build_controller(cfg, BuiltinEngine(offload=False), clock=clock, fsync=False)
    out = FlakyOutput(cfg.output_dir, history_size=cfg.generation.history_size, fsync=False)
    c.output = out
    return c, out


async def test_the_dream_says_a_full_output_disk_once_a_minute_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    c, out = _controller(tmp_path, clock)
    caplog.set_level(logging.INFO, "dream_window.dream.controller")
    frame = Frame(picture(0, size=(16, 16)), "p", "keyframe", 10.0)
    out.full = True
    for _ in range(250):  # 250 frames, two a second: 125 s
        await c._publish(frame)
        clock.advance(0.5)
    lines = [r.getMessage() for r in caplog.records if "not published" in r.getMessage()]
    assert lines == [
        f"frame not published: disk full ({out.frames_dir})",
        f"120 frames not published in the last minute: disk full ({out.frames_dir})",
        f"120 frames not published in the last minute: disk full ({out.frames_dir})",
    ]
    snap = c.snapshot()
    assert snap["output"] == {
        "ok": False,
        "problem": "disk full",
        "path": str(out.frames_dir),
        "frames_lost": 250,
        "since": "2026-01-01T12:16:40+00:00",
    }
    assert c.status_writer.last is not None and c.status_writer.last["output"]["ok"] is False
    out.full = False
    await c._publish(frame)
    assert c.snapshot()["output"] == {"ok": True} and c.frame_count == 1
    assert any(r.getMessage().startswith("output writable again (250 frames") for r in caplog.records)


class FlakyStatus(StatusWriter):
    """A StatusWriter whose disk is full while ``full`` is set."""

    full = False

    def write(self, status: dict[str, Any]) -> None:
        if self.full:
            raise FrameWriteError(f"cannot write {self.path}: disk full", path=str(self.path), disk_full=True)
        super().write(status)


async def test_status_json_that_cannot_be_written_is_said_once_a_minute_and_its_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    c, _out = _controller(tmp_path, clock)
    flaky = FlakyStatus(c.config.output_dir)
    c.status_writer = flaky
    caplog.set_level(logging.INFO, "dream_window.dream.controller")
    flaky.full = True
    for _ in range(130):  # 130 writes, one a second
        await c.write_status()
        clock.advance(1.0)
    flaky.full = False
    await c.write_status()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"status not written: disk full ({flaky.path})",
        f"60 status writes failed in the last minute: disk full ({flaky.path})",
        f"60 status writes failed in the last minute: disk full ({flaky.path})",
        "status.json writable again (130 status writes failed since 2026-01-01T12:16:40+00:00: disk full)",
    ]
    assert flaky.last["output"] == {"ok": True}


async def test_a_real_full_output_disk_and_status_json(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cfg = fast_config(tmp_path, system={"output_dir": str(small_disk / "out")})
    c = build_controller(cfg, BuiltinEngine(offload=False), clock=clock, fsync=False)
    caplog.set_level(logging.INFO, "dream_window.dream.controller")
    frame = Frame(picture(0, size=(256, 256), noise=120.0), "p", "keyframe", 10.0)
    await c._publish(frame)
    assert c.frame_count == 1
    ballast = fill(small_disk)
    for _ in range(20):
        await c._publish(frame)
        await c.write_status()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "not published" in m]) == 1
    assert len([m for m in messages if "status not written" in m]) <= 1
    assert c.snapshot()["output"]["problem"] == "disk full"  # type: ignore[index]
    ballast.unlink()
    await c._publish(frame)
    await asyncio.sleep(0)
    assert c.snapshot()["output"] == {"ok": True} and c.frame_count == 2
    assert '"ok": true' in (c.status_writer.path.read_text())


def test_a_problem_that_changes_keeps_counting_and_a_failure_without_a_path_names_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = WriteFailures(
        logging.getLogger("test.writes"),
        one="frame not published",
        many="frames not published",
        recovered="output writable again",
        monotonic=FakeClock().monotonic,
        now=lambda: "T0",
    )
    caplog.set_level(logging.INFO, "test.writes")
    assert failures.failed("disk full") is True
    assert failures.failed("Permission denied", count=2) is True  # changed: said at once
    assert [r.getMessage() for r in caplog.records] == [
        "frame not published: disk full",
        "frame not published: Permission denied",
    ]
    # Counted since the trouble began, not since it changed.
    assert failures.describe() == {
        "ok": False,
        "problem": "Permission denied",
        "path": None,
        "frames_lost": 3,
        "since": "T0",
    }


def test_a_real_read_only_output_disk_is_refused_before_the_dream_starts(small_disk: Path) -> None:
    (small_disk / "frames").mkdir()  # the folders exist: only writing a file can tell
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()}")
    with pytest.raises(ConfigError) as info:
        check_output_dir(small_disk)
    # The probe it tried is named like our temp files (clean_stale_temps removes one a kill leaves).
    probe = re.escape(f"{small_disk}{os.sep}") + r"\.write-check\.[^./]+\.tmp"
    expected = re.escape(f"system.output_dir: cannot use {small_disk} as the output folder: ")
    assert re.fullmatch(f"{expected}Read-only file system \\({probe}\\)", str(info.value)), info.value


def test_a_control_token_that_cannot_be_written_names_the_file_and_the_reason(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = small_disk / "home"
    home.mkdir()  # the folder is there: only writing the token can fail
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()}")
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(home))
    with pytest.raises(ConfigError) as info:
        ensure_token()
    path = home / "control-token"
    assert str(info.value) == f"cannot write the control token to {path}: {os.strerror(errno.EROFS)}"


def test_a_control_token_that_does_not_fit_on_the_disk_is_an_error_and_leaves_nothing(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = small_disk / "home"
    home.mkdir()
    ballast = fill(small_disk)
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(home))
    with pytest.raises(ConfigError) as info:
        ensure_token()
    path = home / "control-token"
    assert str(info.value) == f"cannot write the control token to {path}: {os.strerror(errno.ENOSPC)}"
    assert os.listdir(home) == []  # no token file (not even an empty one) and no private copy
    ballast.unlink()
    token, created = ensure_token()  # space again: the next start makes it
    assert created and path.read_text(encoding="utf-8") == token + "\n"


def test_a_home_on_another_filesystem_than_the_temp_folder_gets_its_token(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The token is linked into place, and a link cannot cross filesystems: it must be written on
    # the home folder's own (here a tmpfs, the system temp folder on the disk).
    assert os.stat(tempfile.gettempdir()).st_dev != os.stat(small_disk).st_dev
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(small_disk / "home"))
    token, created = ensure_token()
    assert created and (small_disk / "home" / "control-token").read_text(encoding="utf-8") == token + "\n"
    assert os.listdir(small_disk / "home") == ["control-token"]


async def test_frames_that_piled_up_are_all_counted_lost_to_a_full_cache_disk_in_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dream_window.cache.embedders import FeatureEmbedder
    from dream_window.cache.frame_cache import CachedFrameCache
    from dream_window.config import CacheConfig

    manager = CacheManager(tmp_path, max_size=1000, fsync=False)
    mem = CachedFrameCache(manager, FeatureEmbedder(), CacheConfig(), rng=__import__("random").Random(0))
    for i in range(3):  # queued before the worker runs: it takes all three in one batch
        frame = Frame(picture(i, size=(16, 16)), "p" * 3000, "keyframe", 10.0, index=i + 1)
        await mem.remember(frame, tmp_path / "x.png")
    await mem.start()
    pages = manager._conn.execute("PRAGMA page_count").fetchone()[0]
    manager._conn.execute(f"PRAGMA max_page_count = {pages}")
    caplog.set_level(logging.INFO, "dream_window.cache")
    await hang_guard(mem.flush(), 10)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "not cached" in r.getMessage()]
    # A full cache disk costs frames, not the dream: a warning, not an error.
    assert said == [(logging.WARNING, f"frame not cached: disk full ({tmp_path})")]
    writes = mem.describe()["writes"]
    assert isinstance(writes, dict) and (writes["problem"], writes["frames_lost"]) == ("disk full", 3)
    await mem.close()
