"""``lock`` and ``screensaver`` on Windows: a thin ctypes reader and pure decisions.

:class:`Win32Session` only reads:

* ``WTSQuerySessionInformationW(WTS_CURRENT_SERVER_HANDLE, WTS_CURRENT_SESSION, WTSSessionInfoEx)``
  → ``WTSINFOEXW`` (level 1) → ``SessionFlags``: ``WTS_SESSIONSTATE_LOCK`` (0), ``…_UNLOCK`` (1) or
  ``…_UNKNOWN`` (0xFFFFFFFF). On Windows 7 and Server 2008 R2 (version 6.1) the two flags are
  documented as swapped by a defect; :func:`decide_lock` undoes that.
* ``SystemParametersInfoW(SPI_GETSCREENSAVERRUNNING)`` → a BOOL.

``displays`` is unsupported on Windows: the display state (``GUID_CONSOLE_DISPLAY_STATE``) is only
sent as ``WM_POWERBROADCAST`` to a window registered with ``RegisterPowerSettingNotification``;
there is no call to ask it. A hidden window with its own message loop on a thread could receive
it, but that code could not run anywhere we test, so the part says "unsupported" instead of
guessing. A locked session or a running screensaver, which usually come first, are seen.

:func:`decide_lock` and :func:`decide_screensaver` are what the tests exercise (the ctypes calls
cannot run off Windows).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from dream_window.monitor.detector import CheckContext, Condition, Detector, Reading, StaticDetector
from dream_window.monitor.presence_names import DISPLAYS, LOCK, LOCKED, SCREENSAVER, SCREENSAVER_RUNNING

WTS_CURRENT_SESSION = 0xFFFFFFFF
WTS_SESSION_INFO_EX = 25  # WTS_INFO_CLASS.WTSSessionInfoEx
WTS_SESSIONSTATE_LOCK = 0
WTS_SESSIONSTATE_UNLOCK = 1
WTS_SESSIONSTATE_UNKNOWN = 0xFFFFFFFF
SPI_GETSCREENSAVERRUNNING = 0x0072
WINDOWS_7 = (6, 1)  # also Server 2008 R2: the lock flags are swapped there

DISPLAYS_UNSUPPORTED = (
    "not supported on Windows: the display state arrives only as a notification to a window "
    "(RegisterPowerSettingNotification, GUID_CONSOLE_DISPLAY_STATE)"
)


def decide_lock(flags: int | None, version: tuple[int, int]) -> Reading:
    """``flags``: ``SessionFlags`` of ``WTSINFOEX_LEVEL1_W``, or None when the query failed."""
    if version < WINDOWS_7:
        return Reading.unsupported("needs Windows 7 or later (WTSSessionInfoEx)")
    if flags is None:
        return Reading.unavailable("WTSQuerySessionInformationW(WTSSessionInfoEx) failed")
    flags &= 0xFFFFFFFF  # a LONG: -1 and 0xFFFFFFFF are the same flag
    if flags == WTS_SESSIONSTATE_UNKNOWN:
        return Reading.unavailable(
            "Windows does not know whether this session is locked (WTS_SESSIONSTATE_UNKNOWN)"
        )
    if flags not in (WTS_SESSIONSTATE_LOCK, WTS_SESSIONSTATE_UNLOCK):
        return Reading(Condition.UNKNOWN, None, f"unexpected SessionFlags {flags:#x}")
    locked = flags == WTS_SESSIONSTATE_LOCK
    note = ""
    if version == WINDOWS_7:
        locked, note = not locked, " (flag read swapped, as documented for Windows 7)"
    if locked:
        return Reading.active(LOCKED, f"session locked{note}")
    return Reading.clear(f"session unlocked{note}")


def decide_screensaver(running: bool | None) -> Reading:
    if running is None:
        return Reading.unavailable("SystemParametersInfoW(SPI_GETSCREENSAVERRUNNING) failed")
    return Reading.active(SCREENSAVER_RUNNING) if running else Reading.clear("no screensaver running")


class SessionApi(Protocol):
    def session_flags(self) -> int | None: ...

    def screensaver_running(self) -> bool | None: ...

    def version(self) -> tuple[int, int]: ...


class WindowsLock:
    name = LOCK

    def __init__(self, api: SessionApi) -> None:
        self.api = api

    def check(self, ctx: CheckContext) -> Reading:
        return decide_lock(self.api.session_flags(), self.api.version())

    def describe(self) -> str:
        return "WTS session state"

    def close(self) -> None:
        pass


class WindowsScreenSaver:
    name = SCREENSAVER

    def __init__(self, api: SessionApi) -> None:
        self.api = api

    def check(self, ctx: CheckContext) -> Reading:
        return decide_screensaver(self.api.screensaver_running())

    def describe(self) -> str:
        return "SPI_GETSCREENSAVERRUNNING"

    def close(self) -> None:
        pass


def windows_presence_detectors(api: SessionApi | None = None) -> list[Detector]:
    displays = StaticDetector(DISPLAYS, Reading.unsupported(DISPLAYS_UNSUPPORTED))
    if api is None:
        try:
            api = Win32Session()
        except OSError as exc:  # a DLL that cannot be loaded (Server Core without wtsapi32?)
            down = Reading.unavailable(f"cannot load the Windows session API: {exc}")
            return [StaticDetector(LOCK, down), StaticDetector(SCREENSAVER, down), displays]
    return [WindowsLock(api), WindowsScreenSaver(api), displays]


class Win32Session:
    """The ctypes layer. Reads only; both calls are cheap local queries."""

    WINSTATIONNAME_LENGTH = 32
    USERNAME_LENGTH = 20
    DOMAIN_LENGTH = 17

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ct = ctypes
        self.user32: Any = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
        self.wtsapi32: Any = ctypes.WinDLL("wtsapi32", use_last_error=True)  # type: ignore[attr-defined]
        self.wtsapi32.WTSQuerySessionInformationW.argtypes = [
            wintypes.HANDLE,
            wintypes.DWORD,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(wintypes.DWORD),
        ]
        self.wtsapi32.WTSQuerySessionInformationW.restype = wintypes.BOOL
        self.wtsapi32.WTSFreeMemory.argtypes = [ctypes.c_void_p]
        self.user32.SystemParametersInfoW.argtypes = [
            wintypes.UINT,
            wintypes.UINT,
            ctypes.c_void_p,
            wintypes.UINT,
        ]
        self.user32.SystemParametersInfoW.restype = wintypes.BOOL

        class WTSINFOEX_LEVEL1_W(ctypes.Structure):
            _fields_ = (
                ("SessionId", wintypes.ULONG),
                ("SessionState", ctypes.c_int),
                ("SessionFlags", wintypes.LONG),
                ("WinStationName", wintypes.WCHAR * (self.WINSTATIONNAME_LENGTH + 1)),
                ("UserName", wintypes.WCHAR * (self.USERNAME_LENGTH + 1)),
                ("DomainName", wintypes.WCHAR * (self.DOMAIN_LENGTH + 1)),
                ("LogonTime", wintypes.LARGE_INTEGER),
                ("ConnectTime", wintypes.LARGE_INTEGER),
                ("DisconnectTime", wintypes.LARGE_INTEGER),
                ("LastInputTime", wintypes.LARGE_INTEGER),
                ("CurrentTime", wintypes.LARGE_INTEGER),
                ("IncomingBytes", wintypes.DWORD),
                ("OutgoingBytes", wintypes.DWORD),
                ("IncomingFrames", wintypes.DWORD),
                ("OutgoingFrames", wintypes.DWORD),
                ("IncomingCompressedBytes", wintypes.DWORD),
                ("OutgoingCompressedBytes", wintypes.DWORD),
            )

        class WTSINFOEX_LEVEL_W(ctypes.Union):
            _fields_ = (("WTSInfoExLevel1", WTSINFOEX_LEVEL1_W),)

        class WTSINFOEXW(ctypes.Structure):
            _fields_ = (("Level", wintypes.DWORD), ("Data", WTSINFOEX_LEVEL_W))

        self._WTSINFOEXW = WTSINFOEXW

    def session_flags(self) -> int | None:
        ct = self._ct
        buf = ct.c_void_p()
        size = ct.c_ulong(0)
        if not self.wtsapi32.WTSQuerySessionInformationW(
            None, WTS_CURRENT_SESSION, WTS_SESSION_INFO_EX, ct.byref(buf), ct.byref(size)
        ):
            return None
        try:
            if not buf.value or size.value < ct.sizeof(self._WTSINFOEXW):
                return None
            info = self._WTSINFOEXW.from_address(buf.value)
            if info.Level != 1:
                return None
            return int(info.Data.WTSInfoExLevel1.SessionFlags)
        finally:
            self.wtsapi32.WTSFreeMemory(buf)

    def screensaver_running(self) -> bool | None:
        running = self._ct.c_int(0)  # a BOOL
        if not self.user32.SystemParametersInfoW(SPI_GETSCREENSAVERRUNNING, 0, self._ct.byref(running), 0):
            return None
        return bool(running.value)

    def version(self) -> tuple[int, int]:
        if sys.platform == "win32":
            v = sys.getwindowsversion()
            return (v.major, v.minor)
        return (0, 0)
