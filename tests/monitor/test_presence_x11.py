"""``displays`` on X11: the decision on recorded DPMS/screen-saver answers, and the reader on a
real Xvfb. Xvfb has no DPMS extension, so DPMS levels are covered by the decision only; the X
server's own screen saver is real (ForceScreenSaver activates and resets it)."""

from __future__ import annotations

from typing import Any

import pytest

from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.presence import DISPLAYS_OFF, create_presence_detectors

pytest.importorskip("Xlib", reason="python-xlib not installed")
from Xlib import X
from Xlib import display as xdisplay

from dream_window.monitor.presence_x11 import (
    DPMS_OFF,
    DPMS_ON,
    DPMS_STANDBY,
    DPMS_SUSPEND,
    SAVER_CYCLE,
    SAVER_DISABLED,
    SAVER_OFF,
    SAVER_ON,
    X11Displays,
    decide,
)
from tests.monitor.conftest import XServer

CTX = CheckContext(now=0)


@pytest.mark.parametrize(
    ("dpms", "saver", "condition", "detail"),
    [
        ((True, DPMS_ON), SAVER_OFF, Condition.CLEAR, "DPMS on, X screen saver off"),
        ((True, DPMS_STANDBY), SAVER_OFF, Condition.ACTIVE, "DPMS standby"),
        ((True, DPMS_SUSPEND), None, Condition.ACTIVE, "DPMS suspend"),
        ((True, DPMS_OFF), SAVER_ON, Condition.ACTIVE, "DPMS off"),
        # DPMS disabled: its power level means nothing (xset -dpms leaves the last one)
        ((False, DPMS_OFF), SAVER_OFF, Condition.CLEAR, "DPMS disabled, X screen saver off"),
        ((True, DPMS_ON), SAVER_ON, Condition.ACTIVE, "the X screen saver blanked the screen"),
        ((True, DPMS_ON), SAVER_CYCLE, Condition.ACTIVE, "the X screen saver blanked the screen"),
        ((True, DPMS_ON), SAVER_DISABLED, Condition.CLEAR, "DPMS on, X screen saver off"),
        (None, SAVER_OFF, Condition.CLEAR, "no DPMS extension, X screen saver off"),
        (None, None, Condition.UNSUPPORTED, "neither the DPMS nor the MIT-SCREEN-SAVER extension"),
    ],
)
def test_decide(dpms: Any, saver: Any, condition: Condition, detail: str) -> None:
    r = decide(dpms, saver)
    assert r.condition is condition
    assert detail in r.detail
    assert r.reason == (DISPLAYS_OFF if condition is Condition.ACTIVE else None)


def test_the_x_screen_saver_on_a_real_server(xvfb: XServer) -> None:
    control = xdisplay.Display(xvfb.display)
    detector = create_presence_detectors(env={"DISPLAY": xvfb.display}, platform="linux")[2]
    assert isinstance(detector, X11Displays)
    try:
        r = detector.check(CTX)
        assert r.condition is Condition.CLEAR, r
        assert "no DPMS extension" in r.detail  # Xvfb has none; say so if that ever changes
        control.force_screen_saver(X.ScreenSaverActive)
        control.sync()
        r = detector.check(CTX)
        assert (r.condition, r.reason) == (Condition.ACTIVE, DISPLAYS_OFF), r
        control.force_screen_saver(X.ScreenSaverReset)
        control.sync()
        assert detector.check(CTX).condition is Condition.CLEAR
    finally:
        control.force_screen_saver(X.ScreenSaverReset)
        control.close()
        detector.close()


def test_an_unreachable_display_is_unavailable_then_retried_later() -> None:
    detector = X11Displays(":4242", retry_seconds=30)
    r = detector.check(CheckContext(now=0))
    assert r.condition is Condition.UNAVAILABLE and ":4242" in r.detail
    assert detector.check(CheckContext(now=5)).condition is Condition.UNAVAILABLE
    detector.close()


def test_wayland_is_unsupported_for_displays() -> None:
    detectors = create_presence_detectors(
        env={"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, platform="linux"
    )
    r = detectors[2].check(CTX)
    assert r.condition is Condition.UNSUPPORTED and "Wayland" in r.detail
    for d in detectors:
        d.close()
