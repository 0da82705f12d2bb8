"""One X connection kept open for a detector, reopened when the server goes away (importing this
module needs python-xlib).

Shared by the fullscreen reader and the displays reader: both ask the X server every check, and
a server that restarts (a new login, Xvfb in tests) must not leave them reading a dead socket or
reconnecting on every check. A failed connect is retried at most every ``retry_seconds``.
"""

from __future__ import annotations

import logging
from typing import Any

from Xlib import display as xdisplay
from Xlib import error as xerror

log = logging.getLogger(__name__)

# What a lost connection raises while a detector reads (a detector maps it to "unavailable").
CONNECTION_LOST = (xerror.ConnectionClosedError, OSError)


class X11Link:
    def __init__(self, display_name: str, *, retry_seconds: float = 30.0) -> None:
        self.display_name = display_name
        self.retry_seconds = retry_seconds
        self.display: Any = None
        self.failure = ""  # why there is no connection, for the detector's reading
        self._failed_at: float | None = None

    def connect(self, now: float) -> Any:
        """The open connection, a new one, or None while a failed connect is being waited out
        (``failure`` says why)."""
        if self.display is not None:
            return self.display
        if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
            return None
        try:
            self.display = xdisplay.Display(self.display_name)
        except (xerror.DisplayError, *CONNECTION_LOST) as exc:
            self._failed_at, self.failure = now, f"cannot open X display {self.display_name}: {exc}"
            return None
        self._failed_at = None
        return self.display

    def lost(self, now: float, exc: BaseException) -> None:
        """The connection broke while reading: close it; the next connect waits ``retry_seconds``."""
        why = f"X display {self.display_name} went away: {exc}"
        log.debug("dropping X connection: %s", why)
        self.close()
        self._failed_at, self.failure = now, why

    def close(self) -> None:
        if self.display is not None:
            d, self.display = self.display, None
            try:
                d.close()
            except Exception:  # closing a dead connection may raise anything Xlib has
                pass
