"""file_ops: what an atomic write leaves behind beyond its bytes (see tests/dream/test_output.py
for the retries on a locked target and tests/test_disk_full.py for a full disk)."""

from __future__ import annotations

import errno
import stat
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dream_window.file_ops import _umask, _utc_now, atomic_write_bytes, atomic_write_text, write_error

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_a_written_file_gets_the_permissions_a_plain_open_would_give(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")  # open(): 0o666 less the umask
    atomic_write_text(tmp_path / "atomic.txt", "x", fsync=False)
    # Not mkstemp's 0600: a widget or a web server running as another user reads these files.
    assert mode_of(tmp_path / "atomic.txt") == mode_of(plain)


@posix_only
def test_a_private_file_stays_private(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "secret.json", b"{}", fsync=False, mode=0o600)
    assert mode_of(tmp_path / "secret.json") == 0o600


@posix_only
def test_the_instance_registry_is_private(tmp_path: Path) -> None:
    from dream_window.instances import Registration, register

    entry = Registration(
        pid=1,
        output_dir=tmp_path / "out",
        url=None,
        control_url=None,
        token_path=None,
        config_path=None,
        started_at="2026-12-01T00:00:00+00:00",
    )
    path = register(entry)
    assert mode_of(path) == 0o600


@posix_only
def test_reading_the_umask_leaves_it_as_it_was(tmp_path: Path) -> None:
    before = tmp_path / "before.txt"
    before.write_text("x", encoding="utf-8")
    umask = _umask()
    after = tmp_path / "after.txt"
    after.write_text("x", encoding="utf-8")
    assert mode_of(before) == mode_of(after) == 0o666 & ~umask


def test_a_text_write_honours_the_options_it_is_given(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "secret.txt", "ünïcode", fsync=False, mode=0o600)
    assert (tmp_path / "secret.txt").read_bytes() == "ünïcode".encode()
    if sys.platform != "win32":
        assert mode_of(tmp_path / "secret.txt") == 0o600


def test_a_write_error_names_the_file_and_the_reason() -> None:
    path = Path("/out/frame.png")
    err = write_error(path, OSError(errno.EROFS, "Read-only file system"), what="replace")
    assert (str(err), err.path, err.reason, err.disk_full) == (
        "cannot replace /out/frame.png: Read-only file system",
        str(path),
        "Read-only file system",
        False,
    )
    # An OSError raised with only a message has no strerror: the message is the reason.
    err = write_error(path, OSError("the share went away"))
    assert (str(err), err.path, err.reason) == (
        "cannot write /out/frame.png: the share went away",
        str(path),
        "the share went away",
    )


def test_failure_times_are_utc() -> None:
    stamp = datetime.fromisoformat(_utc_now())
    assert stamp.utcoffset() == timedelta(0)
    assert stamp.microsecond == 0  # to the second
