"""Optional: pause while running on battery (``game_detection.pause_on_battery``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dream_window.monitor.detector import CheckContext, Reading


def psutil_battery() -> Any:
    import psutil

    return psutil.sensors_battery()


class BatteryDetector:
    name = "battery"

    def __init__(self, read: Callable[[], Any] = psutil_battery) -> None:
        self._read = read

    def check(self, ctx: CheckContext) -> Reading:
        try:
            b = self._read()
        except (AttributeError, NotImplementedError, OSError):  # no sensors API on this platform
            return Reading.unsupported("battery state not readable on this platform")
        if b is None:
            return Reading.unavailable("no battery")
        if b.power_plugged is None:
            return Reading.unavailable("power source unknown")
        if b.power_plugged:
            return Reading.clear(f"on mains power ({b.percent:.0f}%)")
        return Reading.active("on battery", f"on battery ({b.percent:.0f}%)")

    def describe(self) -> str:
        return ""

    def close(self) -> None:
        pass
