"""What every pause condition (game, GPU, fullscreen, battery) reports, and how it is asked.

A detector is a small synchronous object: ``check(ctx)`` looks at the system once and answers a
:class:`Reading`. Checks may block (a process scan, an NVML call, an X11 round trip), so the
:class:`~dream_window.monitor.system_monitor.SystemMonitor` runs them in a worker thread, never on
the event loop that publishes frames.

Detectors decide *whether* their condition holds (including their own smoothing, such as the GPU
hysteresis); the monitor decides *when* to tell the controller (pause at once, resume after a
cooldown), so the thrash protection lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Condition(StrEnum):
    CLEAR = "clear"  # looked, nothing to pause for
    ACTIVE = "active"  # pause: a game, a busy GPU, a fullscreen app ...
    UNAVAILABLE = "unavailable"  # could work here but cannot now (no NVML, X server unreachable)
    UNSUPPORTED = "unsupported"  # cannot work on this platform (Wayland, macOS fullscreen)
    UNKNOWN = "unknown"  # the check failed this time; keep whatever we decided before


@dataclass(frozen=True, slots=True)
class Reading:
    condition: Condition
    # The pause reason shown to people, e.g. "game: eldenring.exe"; set when ACTIVE. Detectors keep
    # it stable for one episode (same game, same window) so status does not churn every check.
    reason: str | None = None
    # One line for status.json and doctor: why it is clear/unavailable, what was seen.
    detail: str = ""

    @staticmethod
    def active(reason: str, detail: str = "") -> Reading:
        return Reading(Condition.ACTIVE, reason, detail or reason)

    @staticmethod
    def clear(detail: str = "") -> Reading:
        return Reading(Condition.CLEAR, None, detail)

    @staticmethod
    def unavailable(detail: str) -> Reading:
        return Reading(Condition.UNAVAILABLE, None, detail)

    @staticmethod
    def unsupported(detail: str) -> Reading:
        return Reading(Condition.UNSUPPORTED, None, detail)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What the monitor knows that detectors may need."""

    now: float  # the monitor's clock, monotonic seconds
    # Our own prompt was executing at some point since the previous check (own-load discounting).
    generating: bool = False


class Detector(Protocol):
    #: Short stable name: "games", "gpu", "fullscreen", "battery" (status.json keys).
    name: str

    def check(self, ctx: CheckContext) -> Reading:
        """Look once. Blocking is fine (called in a worker thread); raising means UNKNOWN."""
        ...

    def close(self) -> None:
        """Release handles (NVML, the X connection)."""
        ...

    def describe(self) -> str:
        """What it watches, for ``doctor`` ("NVML GPU 0: RTX 4070"); empty when there is nothing to add."""
        ...


class StaticDetector:
    """A detector that can never work here (unsupported platform, missing package): one fixed answer."""

    def __init__(self, name: str, reading: Reading) -> None:
        self.name = name
        self.reading = reading

    def check(self, ctx: CheckContext) -> Reading:
        return self.reading

    def describe(self) -> str:
        return ""

    def close(self) -> None:
        pass
