"""Fullscreen detection on X11 with python-xlib (importing this module needs python-xlib).

The active window is the root's ``_NET_ACTIVE_WINDOW`` (set by every EWMH window manager), or the
input focus where no window manager sets it. It is fullscreen when its ``_NET_WM_STATE`` holds
``_NET_WM_STATE_FULLSCREEN``, or when its geometry covers its own monitor (RandR 1.5 monitors,
else Xinerama screens, else the whole screen): games that size themselves to the screen without
asking the window manager are caught too. Desktop and dock windows never count, nor do windows
the window manager maximized (under a thin panel they cover ~97 % of the monitor).

One X connection is kept open and reopened (at most every ``retry_seconds``) when the server goes
away (``x11_link.X11Link``); errors about a window that closed between two requests are a normal race, not a failure.
"""

from __future__ import annotations

from typing import Any

from Xlib import X, Xatom
from Xlib import error as xerror

from dream_window.monitor.detector import CheckContext, Condition, Reading
from dream_window.monitor.fullscreen_geometry import (
    Rect,
    covers_monitor,
    fullscreen_reason,
    is_own_title,
    monitor_of,
)
from dream_window.monitor.x11_link import CONNECTION_LOST, X11Link

_IGNORED_TYPES = ("_NET_WM_WINDOW_TYPE_DESKTOP", "_NET_WM_WINDOW_TYPE_DOCK")
# The window closed or the server went away between two requests.
_WINDOW_GONE = (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch)


class X11Fullscreen:
    name = "fullscreen"

    def __init__(self, display_name: str, *, retry_seconds: float = 30.0) -> None:
        self.display_name = display_name
        self._x = X11Link(display_name, retry_seconds=retry_seconds)
        self._atoms: dict[str, int] = {}  # of the open connection: cleared when it is lost
        self._current: tuple[int, str] | None = None  # (window id, reason) of this episode

    @property
    def _d(self) -> Any:
        return self._x.display

    def _atom(self, name: str) -> int:
        if name not in self._atoms:
            self._atoms[name] = self._d.intern_atom(name)
        return self._atoms[name]

    # --- reading ------------------------------------------------------------------------------

    def monitors(self) -> list[Rect]:
        """The monitors of the default screen, as rectangles in root coordinates."""
        d = self._d
        root = d.screen().root
        if d.has_extension("RANDR"):
            try:
                from Xlib.ext import randr

                reply = randr.get_monitors(root, is_active=True)
                mons = [
                    Rect.from_size(m.x, m.y, m.width_in_pixels, m.height_in_pixels) for m in reply.monitors
                ]
                if mons:
                    return mons
            except (xerror.XError, AttributeError):  # RandR older than 1.5
                pass
        if d.has_extension("XINERAMA"):
            try:
                screens = d.xinerama_query_screens().screens
                if screens:
                    return [Rect.from_size(s.x, s.y, s.width, s.height) for s in screens]
            except (xerror.XError, AttributeError):
                pass
        s = d.screen()
        return [Rect(0, 0, s.width_in_pixels, s.height_in_pixels)]

    def active_window(self) -> Any:
        d = self._d
        root = d.screen().root
        prop = root.get_full_property(self._atom("_NET_ACTIVE_WINDOW"), X.AnyPropertyType)
        if prop is not None and len(prop.value) and prop.value[0]:
            wid = int(prop.value[0])
            return None if wid == root.id else d.create_resource_object("window", wid)
        focus = d.get_input_focus().focus
        if isinstance(focus, int) or focus is None or focus.id == root.id:  # PointerRoot / None
            return None
        return focus

    def _atoms_of(self, win: Any, prop: str) -> set[int]:
        value = win.get_full_property(self._atom(prop), Xatom.ATOM)
        return set(value.value) if value is not None else set()

    def title(self, win: Any) -> str:
        prop = win.get_full_property(self._atom("_NET_WM_NAME"), self._atom("UTF8_STRING"))
        if prop is not None and prop.value:
            v = prop.value
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        name = win.get_wm_name()
        if isinstance(name, bytes):
            return name.decode("latin-1")
        return name or ""

    def geometry(self, win: Any) -> Rect:
        root = self._d.screen().root
        g = win.get_geometry()
        origin = root.translate_coords(win, 0, 0)
        return Rect.from_size(origin.x, origin.y, g.width, g.height)

    def check(self, ctx: CheckContext) -> Reading:
        if self._x.connect(ctx.now) is None:
            return Reading.unavailable(self._x.failure)
        try:
            return self._check()
        except _WINDOW_GONE:
            self._current = None
            return Reading.clear("the active window closed while we looked")
        except CONNECTION_LOST as exc:
            self._x.lost(ctx.now, exc)
            self._atoms.clear()
            return Reading.unavailable(self._x.failure)
        except xerror.XError as exc:
            return Reading(Condition.UNKNOWN, None, f"X error: {exc}")

    def _check(self) -> Reading:
        win = self.active_window()
        if win is None:
            self._current = None
            return Reading.clear("no active window")
        if self._atoms_of(win, "_NET_WM_WINDOW_TYPE") & {self._atom(t) for t in _IGNORED_TYPES}:
            self._current = None
            return Reading.clear("desktop in front")
        title = self.title(win)
        if is_own_title(title):
            self._current = None
            return Reading.clear(f"our own viewer in front: {title}")
        states = self._atoms_of(win, "_NET_WM_STATE")
        by_state = self._atom("_NET_WM_STATE_FULLSCREEN") in states
        # A maximized window under a thin panel covers ~97 % of its monitor: not fullscreen.
        maximized = {
            self._atom("_NET_WM_STATE_MAXIMIZED_VERT"),
            self._atom("_NET_WM_STATE_MAXIMIZED_HORZ"),
        } <= states
        by_geometry = False
        if not by_state and not maximized:
            rect = self.geometry(win)
            by_geometry = covers_monitor(rect, monitor_of(rect, self.monitors()))
        if not (by_state or by_geometry):
            self._current = None
            return Reading.clear(f"active window not fullscreen: {title or hex(win.id)}")
        if self._current is None or self._current[0] != win.id:
            self._current = (win.id, fullscreen_reason(title))
        how = "_NET_WM_STATE_FULLSCREEN" if by_state else "covers its monitor"
        return Reading.active(self._current[1], f"{self._current[1]} ({how})")

    def describe(self) -> str:
        return f"X11 display {self.display_name}"

    def close(self) -> None:
        self._x.close()
        self._atoms.clear()
