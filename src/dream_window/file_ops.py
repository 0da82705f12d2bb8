"""Atomic file writes: a reader (Rainmeter, the viewer, a script) never sees half a file.

Write to a temporary file in the same directory, flush and fsync it, then ``os.replace`` it over
the target: on POSIX and Windows the rename is atomic, so a reader opens either the old file or
the new one. On Windows a reader holding the target open makes ``os.replace`` fail with a sharing
violation (PermissionError); we retry with backoff before giving up with FrameWriteError.

A full disk (ENOSPC, or EDQUOT for a quota) is told apart from other failures
(``FrameWriteError.disk_full``): it is a condition that passes, not damage. :class:`WriteFailures`
turns a run of failed writes into a few log lines: the first at once, then at most one a minute
with a count, and one when writing works again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dream_window.errors import FrameWriteError

RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def _umask() -> int:
    # There is no way to read the umask without setting it; done once, at import, before any
    # thread of ours creates files.
    current = os.umask(0o022)
    os.umask(current)
    return current


# What a plain open() would give a new file. mkstemp's temporary files are 0600, and os.replace
# keeps that, so without a chmod every frame, status file and package we write would be private
# to the owner: a widget or web server running as another user could not read them.
SHARED_MODE = 0o666 & ~_umask()

# Windows reports ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL as ENOSPC too; it has no EDQUOT.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means "no space left" (the disk, or the user's quota)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def write_error(path: Path, exc: OSError, *, what: str = "write") -> FrameWriteError:
    """Our error for an OSError met writing ``path``: a full disk says so, in those words."""
    if is_disk_full(exc):
        return FrameWriteError(f"cannot {what} {path}: disk full", path=str(path), disk_full=True)
    reason = exc.strerror or str(exc)
    return FrameWriteError(f"cannot {what} {path}: {reason}", path=str(path), reason=reason)


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    fsync: bool = True,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
    replace: Callable[[str, Path], None] = os.replace,
    mode: int = SHARED_MODE,
) -> None:
    """Replace ``path`` with ``data`` atomically (blocking; call from a thread on the frame path).

    ``mode``: the new file's permissions (POSIX; Windows keeps only "read-only"); 0o600 for a
    file only its owner may read."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        if mode != 0o600:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        for attempt in range(len(retry_delays) + 1):
            try:
                replace(tmp, path)
                tmp = ""
                return
            except PermissionError as exc:
                # Windows: a reader has the target open. Give it a moment.
                if attempt == len(retry_delays):
                    reason = f"still locked after {attempt + 1} tries"
                    raise FrameWriteError(
                        f"cannot replace {path}: {reason}", path=str(path), reason=reason
                    ) from exc
                sleep(retry_delays[attempt])
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: Path, text: str, **kwargs: Any) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), **kwargs)


def atomic_write_json(path: Path, data: Any, **kwargs: Any) -> None:
    atomic_write_bytes(
        path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), **kwargs
    )


def clean_stale_temps(directory: Path) -> int:
    """Remove temp files left by a process killed mid-write. Returns how many were removed."""
    n = 0
    if directory.is_dir():
        for p in directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    return n


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class WriteFailures:
    """A run of failed writes, logged as state changes: the first failure at once, then at most one
    line per ``interval`` ("12 frames not published in the last minute: disk full (path)"), and one
    line when a write works again. :meth:`describe` is the status section that says so meanwhile.

    ``one`` / ``many`` name a lost item ("frame not published" / "frames not published");
    ``recovered`` is the line said when it passes ("output writable again").
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        one: str,
        many: str,
        recovered: str,
        interval: float = 60.0,
        level: int = logging.ERROR,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = _utc_now,
    ) -> None:
        self._log = log
        self._one, self._many, self._recovered = one, many, recovered
        self._interval = interval
        self._level = level
        self._monotonic = monotonic
        self._now = now
        self.problem: str | None = None
        self.path: str | None = None
        self.lost = 0  # items lost since the problem began
        self._since = ""
        self._unsaid = 0  # items lost since the last line
        self._said_at = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None

    def failed(self, problem: str, path: str | None = None, *, count: int = 1) -> bool:
        """Count ``count`` lost items; True when this starts a problem (or changes it): worth
        telling now."""
        where = f" ({path})" if path else ""
        self.path = path
        if problem != self.problem:
            if self.problem is None:
                self._since = self._now()
            self.lost += count
            self.problem = problem
            self._unsaid = 0
            self._said_at = self._monotonic()
            self._log.log(self._level, "%s: %s%s", self._one, problem, where)
            return True
        self.lost += count
        self._unsaid += count
        if self._monotonic() - self._said_at >= self._interval:
            self._log.log(
                self._level, "%d %s in the last minute: %s%s", self._unsaid, self._many, problem, where
            )
            self._unsaid = 0
            self._said_at = self._monotonic()
        return False

    def succeeded(self) -> bool:
        """A write worked: True when that ends a problem (said in one line)."""
        if self.problem is None:
            return False
        self._log.warning(
            "%s (%d %s since %s: %s)", self._recovered, self.lost, self._many, self._since, self.problem
        )
        self.problem = self.path = None
        self.lost = self._unsaid = 0
        self._since = ""
        return True

    def describe(self) -> dict[str, object]:
        """``{"ok": true}``, or what is wrong, where, since when and how many items it cost."""
        if self.problem is None:
            return {"ok": True}
        return {
            "ok": False,
            "problem": self.problem,
            "path": self.path,
            "frames_lost": self.lost,
            "since": self._since,
        }
