"""Fullscreen on a real X server (Xvfb): real windows, real properties, no window manager.

With no window manager running, the test plays its part: it sets ``_NET_ACTIVE_WINDOW`` on the
root window and, where a test needs it, ``_NET_WM_STATE`` on the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.fullscreen import create_fullscreen_detector
from tests.monitor.conftest import XServer

xlib = pytest.importorskip("Xlib", reason="python-xlib not installed")
from Xlib import X, Xatom  # noqa: E402
from Xlib import display as xdisplay  # noqa: E402

from dream_window.monitor.fullscreen_x11 import X11Fullscreen  # noqa: E402

CTX = CheckContext(now=0)


class Desk:
    """A client connection that makes windows and plays window manager."""

    def __init__(self, display: str) -> None:
        self.d = xdisplay.Display(display)
        self.screen = self.d.screen()
        self.root = self.screen.root
        self.windows: list[Any] = []

    def window(
        self,
        title: str,
        x: int = 0,
        y: int = 0,
        w: int | None = None,
        h: int | None = None,
        active: bool = True,
        states: tuple[str, ...] = (),
        wtype: str | None = None,
    ) -> Any:
        w = self.screen.width_in_pixels if w is None else w
        h = self.screen.height_in_pixels if h is None else h
        win = self.root.create_window(x, y, w, h, 0, self.screen.root_depth, X.InputOutput, X.CopyFromParent)
        win.set_wm_name(title.encode("latin-1", "replace"))  # WM_NAME is latin-1; _NET_WM_NAME has the UTF-8
        win.change_property(
            self.d.intern_atom("_NET_WM_NAME"), self.d.intern_atom("UTF8_STRING"), 8, title.encode()
        )
        if states:
            win.change_property(
                self.d.intern_atom("_NET_WM_STATE"), Xatom.ATOM, 32, [self.d.intern_atom(s) for s in states]
            )
        if wtype:
            win.change_property(
                self.d.intern_atom("_NET_WM_WINDOW_TYPE"), Xatom.ATOM, 32, [self.d.intern_atom(wtype)]
            )
        win.map()
        if active:
            self.activate(win)
        self.windows.append(win)
        self.d.sync()
        return win

    def activate(self, win: Any) -> None:
        self.root.change_property(
            self.d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [win.id if win else 0]
        )
        self.d.sync()

    def close(self) -> None:
        self.activate(None)
        for w in self.windows:
            w.destroy()
        self.d.sync()
        self.d.close()


@pytest.fixture
def desk(xvfb: XServer) -> Iterator[Desk]:
    d = Desk(xvfb.display)
    yield d
    d.close()


@pytest.fixture
def detector(xvfb: XServer) -> Iterator[X11Fullscreen]:
    det = X11Fullscreen(xvfb.display)
    yield det
    det.close()


def test_a_window_covering_the_screen_is_fullscreen(desk: Desk, detector: X11Fullscreen) -> None:
    assert detector.check(CTX).condition is Condition.CLEAR
    desk.window("Elden Ring™")
    r = detector.check(CTX)
    assert r.condition is Condition.ACTIVE
    assert r.reason == "fullscreen: Elden Ring™" and "covers its monitor" in r.detail


def test_a_small_window_is_not(desk: Desk, detector: X11Fullscreen) -> None:
    desk.window("Terminal", 100, 100, 640, 400)
    r = detector.check(CTX)
    assert r.condition is Condition.CLEAR and "Terminal" in r.detail


def test_nearly_covering_counts_and_half_does_not(desk: Desk, detector: X11Fullscreen) -> None:
    desk.window("borderless", 0, 0, 1280, 700)  # 97 % of 1280x720
    assert detector.check(CTX).condition is Condition.ACTIVE
    desk.window("half", 0, 0, 1280, 360)
    assert detector.check(CTX).condition is Condition.CLEAR


def test_net_wm_state_fullscreen_counts_whatever_the_size(desk: Desk, detector: X11Fullscreen) -> None:
    desk.window("video", 0, 0, 320, 200, states=("_NET_WM_STATE_FULLSCREEN",))
    r = detector.check(CTX)
    assert r.condition is Condition.ACTIVE and "_NET_WM_STATE_FULLSCREEN" in r.detail


def test_maximized_windows_and_the_desktop_do_not_count(desk: Desk, detector: X11Fullscreen) -> None:
    desk.window("Firefox", states=("_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ"))
    assert detector.check(CTX).condition is Condition.CLEAR
    desk.window("Desktop", wtype="_NET_WM_WINDOW_TYPE_DESKTOP")
    assert detector.check(CTX).condition is Condition.CLEAR


def test_our_own_viewer_fullscreen_is_not_a_reason_to_pause(desk: Desk, detector: X11Fullscreen) -> None:
    desk.window("Dream Window — Chromium", states=("_NET_WM_STATE_FULLSCREEN",))
    assert detector.check(CTX).condition is Condition.CLEAR


def test_switching_windows_and_closing_the_active_one(desk: Desk, detector: X11Fullscreen) -> None:
    game = desk.window("Game")
    small = desk.window("Chat", 10, 10, 200, 200)
    assert detector.check(CTX).condition is Condition.CLEAR
    desk.activate(game)
    assert detector.check(CTX).condition is Condition.ACTIVE
    game.destroy()  # closed; _NET_ACTIVE_WINDOW still names it until a WM would update it
    desk.windows.remove(game)
    desk.d.sync()
    r = detector.check(CTX)
    assert r.condition is Condition.CLEAR and "closed" in r.detail
    desk.activate(small)
    assert detector.check(CTX).condition is Condition.CLEAR


def test_reason_stays_with_the_window_when_its_title_changes(desk: Desk, detector: X11Fullscreen) -> None:
    win = desk.window("Game — 60 fps")
    assert detector.check(CTX).reason == "fullscreen: Game — 60 fps"
    win.change_property(
        desk.d.intern_atom("_NET_WM_NAME"), desk.d.intern_atom("UTF8_STRING"), 8, b"Game - 59 fps"
    )
    desk.d.sync()
    assert detector.check(CTX).reason == "fullscreen: Game — 60 fps"


def test_via_the_platform_choice(xvfb: XServer, desk: Desk) -> None:
    det = create_fullscreen_detector({"DISPLAY": xvfb.display}, platform="linux")
    try:
        desk.window("Game")
        assert det.check(CTX).condition is Condition.ACTIVE
    finally:
        det.close()


def test_no_display_is_unsupported_without_crashing() -> None:
    det = create_fullscreen_detector({}, platform="linux")
    r = det.check(CTX)
    assert r.condition is Condition.UNSUPPORTED and "DISPLAY" in r.detail


@pytest.mark.parametrize(
    ("env", "platform", "words"),
    [
        (
            {"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"},
            "linux",
            "Wayland",
        ),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", "Wayland"),
        ({}, "darwin", "macOS"),
    ],
)
def test_wayland_and_macos_are_unsupported(env: dict[str, str], platform: str, words: str) -> None:
    r = create_fullscreen_detector(env, platform=platform).check(CTX)
    assert r.condition is Condition.UNSUPPORTED and words in r.detail


def test_an_unreachable_x_server_is_unavailable_and_retried_later(tmp_path: Any) -> None:
    det = X11Fullscreen(":987", retry_seconds=30)  # nothing listens there
    r = det.check(CheckContext(now=0))
    assert r.condition is Condition.UNAVAILABLE and ":987" in r.detail
    assert det.check(CheckContext(now=10)).condition is Condition.UNAVAILABLE  # not retried yet
    det.close()


def test_x_server_going_away_is_unavailable_then_reconnects() -> None:
    from tests.monitor.conftest import start_xvfb, stop_xvfb

    server = start_xvfb()
    det = X11Fullscreen(server.display, retry_seconds=5)
    try:
        assert det.check(CheckContext(now=0)).condition is Condition.CLEAR
        stop_xvfb(server)
        r = det.check(CheckContext(now=1))
        assert r.condition is Condition.UNAVAILABLE and "went away" in r.detail
        assert det.check(CheckContext(now=2)).condition is Condition.UNAVAILABLE  # waits before retrying
        server = start_xvfb()
        det.display_name = server.display  # the session's new server (a new number here)
        assert det.check(CheckContext(now=7)).condition is Condition.CLEAR  # reconnected
    finally:
        det.close()
        stop_xvfb(server)
