"""Atomic file writes: a reader (Rainmeter, the viewer, a script) never sees half a file.

Write to a temporary file in the same directory, flush and fsync it, then ``os.replace`` it over
the target: on POSIX and Windows the rename is atomic, so a reader opens either the old file or
the new one. On Windows a reader holding the target open makes ``os.replace`` fail with a sharing
violation (PermissionError); we retry with backoff before giving up with FrameWriteError.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dream_window.errors import FrameWriteError

RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    fsync: bool = True,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
    replace: Callable[[str, Path], None] = os.replace,
) -> None:
    """Replace ``path`` with ``data`` atomically (blocking; call from a thread on the frame path)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FrameWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
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
                    raise FrameWriteError(
                        f"cannot replace {path}: still locked after {attempt + 1} tries"
                    ) from exc
                sleep(retry_delays[attempt])
    except OSError as exc:
        raise FrameWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
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
