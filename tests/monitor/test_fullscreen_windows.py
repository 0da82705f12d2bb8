"""Windows fullscreen: the decision on injected readings (the ctypes layer cannot run here)."""

from __future__ import annotations

import dataclasses

import pytest

from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.fullscreen_geometry import Rect, coverage, monitor_of
from dream_window.monitor.fullscreen_windows import (
    QUNS_BUSY,
    QUNS_RUNNING_D3D_FULL_SCREEN,
    ForegroundWindow,
    WindowsFullscreen,
    decide,
)

LEFT = Rect(0, 0, 1920, 1080)  # primary, 1080p
RIGHT = Rect(1920, 0, 1920 + 2560, 1440)  # secondary, 1440p, to the right


def fg(title: str = "Game", rect: Rect = LEFT, monitor: Rect | None = LEFT, **kw: object) -> ForegroundWindow:
    base = ForegroundWindow(
        handle=42,
        title=title,
        class_name="UnityWndClass",
        process_name="game.exe",
        rect=rect,
        monitor=monitor,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("window", "quns", "expected"),
    [
        (fg(), None, Condition.ACTIVE),  # borderless fullscreen on the primary
        (fg(rect=RIGHT, monitor=RIGHT), None, Condition.ACTIVE),  # fullscreen on the 1440p secondary
        # the seed compared with the primary's size: a 1920x1080 window on the 1440p monitor is not fullscreen
        (fg(rect=Rect(1920, 0, 3840, 1080), monitor=RIGHT), None, Condition.CLEAR),
        (
            fg(rect=Rect(0, 0, 1920, 1040), maximized=True, has_caption=True),
            None,
            Condition.CLEAR,
        ),  # maximized
        (fg(rect=Rect(-8, -8, 1928, 1088), maximized=True, has_caption=False), None, Condition.ACTIVE),
        (fg(rect=Rect(0, 0, 1920, 1040)), None, Condition.ACTIVE),  # 96 %, borderless: counts
        (fg(rect=Rect(100, 100, 900, 700)), None, Condition.CLEAR),
        (fg(rect=Rect(100, 100, 900, 700)), QUNS_RUNNING_D3D_FULL_SCREEN, Condition.ACTIVE),  # exclusive D3D
        (
            fg(rect=Rect(100, 100, 900, 700)),
            QUNS_BUSY,
            Condition.CLEAR,
        ),  # presentation mode alone: not a game
        (fg(class_name="WorkerW"), None, Condition.CLEAR),  # the desktop covers the monitor, always
        (fg(class_name="Progman"), None, Condition.CLEAR),
        (fg(class_name="Shell_TrayWnd"), QUNS_RUNNING_D3D_FULL_SCREEN, Condition.CLEAR),
        (fg(class_name="RainmeterMeterWindow", process_name="Rainmeter.exe"), None, Condition.CLEAR),
        (fg(process_name="Rainmeter.exe", class_name="Other"), None, Condition.CLEAR),
        (fg(title="Dream Window - Google Chrome"), None, Condition.CLEAR),  # our own viewer, fullscreen
        (fg(monitor=None), None, Condition.CLEAR),  # no monitor info: cannot say fullscreen
        (None, None, Condition.CLEAR),
        (None, QUNS_RUNNING_D3D_FULL_SCREEN, Condition.ACTIVE),
    ],
)
def test_decide(window: ForegroundWindow | None, quns: int | None, expected: Condition) -> None:
    assert decide(window, quns).condition is expected


def test_reason_names_the_window() -> None:
    assert decide(fg("ELDEN RING™"), None).reason == "fullscreen: ELDEN RING™"
    assert decide(fg(""), None).reason == "fullscreen: untitled window"
    long = decide(fg("x" * 200), None).reason
    assert long is not None and len(long) < 80 and long.endswith("...")


def test_monitor_of_picks_the_monitor_a_window_overlaps_most() -> None:
    assert monitor_of(Rect(1800, 0, 2600, 600), [LEFT, RIGHT]) == RIGHT
    assert monitor_of(Rect(5000, 0, 5100, 100), [LEFT, RIGHT]) is None
    assert coverage(Rect(-10, -10, 5000, 5000), LEFT) == 1.0


class FakeApi:
    def __init__(self) -> None:
        self.window: ForegroundWindow | None = None
        self.quns: int | None = None

    def foreground(self) -> ForegroundWindow | None:
        return self.window

    def notification_state(self) -> int | None:
        return self.quns


def test_detector_keeps_the_first_title_for_the_same_window() -> None:
    api = FakeApi()
    det = WindowsFullscreen(api)
    ctx = CheckContext(now=0)
    assert det.check(ctx).condition is Condition.CLEAR
    api.window = fg("Game 144 FPS")
    assert det.check(ctx).reason == "fullscreen: Game 144 FPS"
    api.window = fg("Game 140 FPS")
    assert det.check(ctx).reason == "fullscreen: Game 144 FPS"
    api.window = fg("Other game", handle=43)
    assert det.check(ctx).reason == "fullscreen: Other game"
