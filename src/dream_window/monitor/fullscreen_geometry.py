"""Is a window fullscreen? Pure geometry, shared by every platform reader.

The seed compared the foreground window with the *primary* screen's size, which is wrong twice on
multi-monitor desktops: a game fullscreen on the second monitor was missed, and a window spanning
two monitors counted. Here a window is fullscreen when it covers at least 95 % of *the monitor it
is on* (the one it overlaps most). The platform readers (``fullscreen_windows``, ``fullscreen_x11``)
only read window and monitor rectangles; the decision is these pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

COVER_RATIO = 0.95

# Our own viewer, fullscreen in a browser, is the dream being watched: never pause for it.
OWN_TITLES = ("dream window",)


@dataclass(frozen=True, slots=True)
class Rect:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)

    def intersection(self, other: Rect) -> Rect:
        return Rect(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        )

    @staticmethod
    def from_size(x: int, y: int, width: int, height: int) -> Rect:
        return Rect(x, y, x + width, y + height)


def coverage(window: Rect, monitor: Rect) -> float:
    """Fraction of ``monitor`` that ``window`` covers (0..1)."""
    if monitor.area == 0:
        return 0.0
    return window.intersection(monitor).area / monitor.area


def monitor_of(window: Rect, monitors: Iterable[Rect]) -> Rect | None:
    """The monitor the window overlaps most (what MonitorFromWindow answers on Windows)."""
    best, best_area = None, 0
    for m in monitors:
        a = window.intersection(m).area
        if a > best_area:
            best, best_area = m, a
    return best


def covers_monitor(window: Rect, monitor: Rect | None, ratio: float = COVER_RATIO) -> bool:
    return monitor is not None and coverage(window, monitor) >= ratio


def is_own_title(title: str) -> bool:
    t = title.lower()
    return any(own in t for own in OWN_TITLES)


def fullscreen_reason(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > 60:
        title = title[:57] + "..."
    return f"fullscreen: {title or 'untitled window'}"
