"""Windows lock and screensaver: the pure decisions on recorded values (there is no Windows here;
the ctypes layer, :class:`Win32Session`, has not run in these tests)."""

from __future__ import annotations

import pytest

from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.presence import LOCKED, SCREENSAVER_RUNNING, create_presence_detectors
from dream_window.monitor.presence_windows import (
    WTS_SESSIONSTATE_LOCK,
    WTS_SESSIONSTATE_UNKNOWN,
    WTS_SESSIONSTATE_UNLOCK,
    decide_lock,
    decide_screensaver,
    windows_presence_detectors,
)

CTX = CheckContext(now=0)
WIN10 = (10, 0)
WIN8 = (6, 2)
WIN7 = (6, 1)
VISTA = (6, 0)


@pytest.mark.parametrize(
    ("flags", "version", "condition"),
    [
        (WTS_SESSIONSTATE_LOCK, WIN10, Condition.ACTIVE),
        (WTS_SESSIONSTATE_UNLOCK, WIN10, Condition.CLEAR),
        (WTS_SESSIONSTATE_LOCK, WIN8, Condition.ACTIVE),
        # Windows 7 / Server 2008 R2: the flags are documented as swapped by a defect
        (WTS_SESSIONSTATE_LOCK, WIN7, Condition.CLEAR),
        (WTS_SESSIONSTATE_UNLOCK, WIN7, Condition.ACTIVE),
        # WTS_SESSIONSTATE_UNKNOWN, as the DWORD and as the LONG the structure declares
        (WTS_SESSIONSTATE_UNKNOWN, WIN10, Condition.UNAVAILABLE),
        (-1, WIN10, Condition.UNAVAILABLE),
        (None, WIN10, Condition.UNAVAILABLE),  # the query failed
        (7, WIN10, Condition.UNKNOWN),  # not a documented value: keep the last decision
        (WTS_SESSIONSTATE_LOCK, VISTA, Condition.UNSUPPORTED),  # no WTSSessionInfoEx before 7
    ],
)
def test_decide_lock(flags: int | None, version: tuple[int, int], condition: Condition) -> None:
    r = decide_lock(flags, version)
    assert r.condition is condition, r
    assert r.reason == (LOCKED if condition is Condition.ACTIVE else None)
    assert r.detail


def test_windows_7_says_it_swapped_the_flag() -> None:
    assert "swapped" in decide_lock(WTS_SESSIONSTATE_UNLOCK, WIN7).detail
    assert "swapped" not in decide_lock(WTS_SESSIONSTATE_LOCK, WIN10).detail


def test_decide_screensaver() -> None:
    assert decide_screensaver(True).reason == SCREENSAVER_RUNNING
    assert decide_screensaver(False).condition is Condition.CLEAR
    failed = decide_screensaver(None)
    assert failed.condition is Condition.UNAVAILABLE and "SPI_GETSCREENSAVERRUNNING" in failed.detail


class RecordedSession:
    """What Win32Session would read, as recorded values."""

    def __init__(self, flags: int | None, running: bool | None, version: tuple[int, int] = WIN10) -> None:
        self.flags, self.running, self._version = flags, running, version

    def session_flags(self) -> int | None:
        return self.flags

    def screensaver_running(self) -> bool | None:
        return self.running

    def version(self) -> tuple[int, int]:
        return self._version


def test_the_windows_detectors_read_through_one_api() -> None:
    api = RecordedSession(WTS_SESSIONSTATE_UNLOCK, False)
    lock, saver, displays = windows_presence_detectors(api)
    assert [d.name for d in (lock, saver, displays)] == ["lock", "screensaver", "displays"]
    assert lock.check(CTX).condition is Condition.CLEAR
    assert saver.check(CTX).condition is Condition.CLEAR
    api.flags, api.running = WTS_SESSIONSTATE_LOCK, True
    assert lock.check(CTX).reason == LOCKED
    assert saver.check(CTX).reason == SCREENSAVER_RUNNING
    r = displays.check(CTX)
    assert r.condition is Condition.UNSUPPORTED and "RegisterPowerSettingNotification" in r.detail


def test_macos_is_unsupported_for_every_part() -> None:
    for d in create_presence_detectors(env={}, platform="darwin"):
        r = d.check(CTX)
        assert r.condition is Condition.UNSUPPORTED and "macOS" in r.detail
