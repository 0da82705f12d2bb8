"""file_ops: what an atomic write leaves behind beyond its bytes (see tests/dream/test_output.py
for the retries on a locked target and tests/test_disk_full.py for a full disk)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from dream_window.file_ops import atomic_write_bytes, atomic_write_text

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
