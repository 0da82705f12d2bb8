"""Fullscreen detection on Windows: a thin ctypes reader and a pure decision.

:class:`Win32Api` only reads: the foreground window's rectangle, class, title, style and process,
the rectangle of *its own* monitor (``MonitorFromWindow`` + ``GetMonitorInfoW``), and
``SHQueryUserNotificationState``. :func:`decide` turns that into a :class:`Reading`; it is what the
tests exercise (the ctypes calls cannot run off Windows).

Not fullscreen, whatever the geometry: the desktop (``Progman``/``WorkerW``), the taskbar and other
shell surfaces, Rainmeter's own skins (where Dream Window's widget lives), our viewer, and a
*maximized* window with a caption — on a 1080p monitor with a 40 px taskbar a maximized browser
covers 96 % of the monitor, which a bare 95 % rule would call fullscreen. Exclusive-mode Direct3D
games are caught by ``QUNS_RUNNING_D3D_FULL_SCREEN`` even when their window rectangle says little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dream_window.monitor.detector import CheckContext, Reading
from dream_window.monitor.fullscreen_geometry import (
    COVER_RATIO,
    Rect,
    covers_monitor,
    fullscreen_reason,
    is_own_title,
)

QUNS_BUSY = 2
QUNS_RUNNING_D3D_FULL_SCREEN = 3

IGNORED_CLASSES = frozenset(
    {
        "progman",
        "workerw",  # the desktop
        "shell_traywnd",
        "shell_secondarytraywnd",  # taskbars
        "windows.ui.core.corewindow",  # start menu, search, notification centre
        "rainmetermeterwindow",
        "rainmetertraywindow",  # Rainmeter skins
    }
)
IGNORED_PROCESSES = frozenset(
    {
        "rainmeter.exe",
        "lockapp.exe",
        "searchhost.exe",
        "startmenuexperiencehost.exe",
        "shellexperiencehost.exe",
    }
)


@dataclass(frozen=True, slots=True)
class ForegroundWindow:
    handle: int
    title: str
    class_name: str
    process_name: str | None
    rect: Rect
    monitor: Rect | None  # rcMonitor of the monitor this window is on
    maximized: bool = False
    has_caption: bool = False


class WindowsApi(Protocol):
    def foreground(self) -> ForegroundWindow | None: ...

    def notification_state(self) -> int | None:
        """SHQueryUserNotificationState's answer, or None when the call failed."""
        ...


def ignored(fg: ForegroundWindow) -> str | None:
    """Why this window never counts as a fullscreen app, or None."""
    if fg.class_name.lower() in IGNORED_CLASSES:
        return f"shell window in front ({fg.class_name})"
    if fg.process_name and fg.process_name.lower() in IGNORED_PROCESSES:
        return f"{fg.process_name} in front"
    if is_own_title(fg.title):
        return f"our own viewer in front: {fg.title}"
    return None


def decide(fg: ForegroundWindow | None, quns: int | None, *, ratio: float = COVER_RATIO) -> Reading:
    if fg is not None:
        why = ignored(fg)
        if why is not None:
            return Reading.clear(why)
    if quns == QUNS_RUNNING_D3D_FULL_SCREEN:
        title = fg.title if fg is not None else "Direct3D app"
        return Reading.active(fullscreen_reason(title), "Direct3D exclusive fullscreen")
    if fg is None:
        return Reading.clear("no foreground window")
    if fg.maximized and fg.has_caption:
        return Reading.clear(f"maximized, not fullscreen: {fg.title}")
    if covers_monitor(fg.rect, fg.monitor, ratio):
        return Reading.active(fullscreen_reason(fg.title), f"{fg.title} covers its monitor")
    return Reading.clear(f"foreground window not fullscreen: {fg.title}")


class WindowsFullscreen:
    name = "fullscreen"

    def __init__(self, api: WindowsApi | None = None) -> None:
        self._api = api
        self._current: tuple[int, str] | None = None

    def check(self, ctx: CheckContext) -> Reading:
        if self._api is None:
            self._api = Win32Api()
        fg = self._api.foreground()
        reading = decide(fg, self._api.notification_state())
        if reading.reason is None:
            self._current = None
            return reading
        # The same window keeps its first reason (games put FPS counters in their titles).
        handle = fg.handle if fg is not None else 0
        if self._current is None or self._current[0] != handle:
            self._current = (handle, reading.reason)
        return Reading.active(self._current[1], reading.detail)

    def describe(self) -> str:
        return "Windows foreground window"

    def close(self) -> None:
        pass


class Win32Api:
    """The ctypes layer. Reads only; every call is a cheap user32/shell32 query."""

    MONITOR_DEFAULTTONEAREST = 2
    GWL_STYLE = -16
    WS_CAPTION = 0x00C00000

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ct = ctypes
        self._wt = wintypes
        self.user32: Any = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
        self.shell32: Any = ctypes.WinDLL("shell32", use_last_error=True)  # type: ignore[attr-defined]
        self.user32.GetForegroundWindow.restype = wintypes.HWND
        self.user32.MonitorFromWindow.restype = wintypes.HMONITOR
        self.user32.MonitorFromWindow.argtypes = [wintypes.HWND, wintypes.DWORD]

        class MONITORINFO(ctypes.Structure):
            _fields_ = (
                ("cbSize", wintypes.DWORD),
                ("rcMonitor", wintypes.RECT),
                ("rcWork", wintypes.RECT),
                ("dwFlags", wintypes.DWORD),
            )

        self._MONITORINFO = MONITORINFO

    def _text(self, fn: Any, hwnd: Any, size: int) -> str:
        buf = self._ct.create_unicode_buffer(size)
        fn(hwnd, buf, size)
        return buf.value

    def foreground(self) -> ForegroundWindow | None:
        ct, wt, u = self._ct, self._wt, self.user32
        hwnd = u.GetForegroundWindow()
        if not hwnd:
            return None
        r = wt.RECT()
        if not u.GetWindowRect(hwnd, ct.byref(r)):
            return None
        monitor = None
        hmon = u.MonitorFromWindow(hwnd, self.MONITOR_DEFAULTTONEAREST)
        if hmon:
            mi = self._MONITORINFO()
            mi.cbSize = ct.sizeof(mi)
            if u.GetMonitorInfoW(hmon, ct.byref(mi)):
                m = mi.rcMonitor
                monitor = Rect(m.left, m.top, m.right, m.bottom)
        pid = wt.DWORD()
        u.GetWindowThreadProcessId(hwnd, ct.byref(pid))
        process_name = None
        try:
            import psutil

            process_name = psutil.Process(pid.value).name()
        except Exception:  # gone or denied: the name is only used to ignore shell processes
            pass
        style = u.GetWindowLongW(hwnd, self.GWL_STYLE) & 0xFFFFFFFF
        return ForegroundWindow(
            handle=int(hwnd),
            title=self._text(u.GetWindowTextW, hwnd, 512),
            class_name=self._text(u.GetClassNameW, hwnd, 256),
            process_name=process_name,
            rect=Rect(r.left, r.top, r.right, r.bottom),
            monitor=monitor,
            maximized=bool(u.IsZoomed(hwnd)),
            has_caption=(style & self.WS_CAPTION) == self.WS_CAPTION,
        )

    def notification_state(self) -> int | None:
        state = self._ct.c_int(0)
        hr = self.shell32.SHQueryUserNotificationState(self._ct.byref(state))
        return int(state.value) if hr == 0 else None
