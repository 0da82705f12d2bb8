"""Lock and screensaver over a real D-Bus: a private dbus-daemon, services that answer like logind
and a screensaver (jeepney, on a thread), the readers pointed at that bus by its address."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dream_window.monitor.detector import CheckContext, Condition, StaticDetector
from dream_window.monitor.presence import LOCKED, SCREENSAVER_RUNNING, create_presence_detectors

pytest.importorskip("jeepney", reason="jeepney not installed")

from dream_window.monitor.presence_dbus import Bus, LogindLock, ScreenSaverState
from tests.monitor.conftest import FakeLogind, FakeScreenSaver, PrivateBus

LOGIN1 = ("org.freedesktop.login1",)
CTX = CheckContext(now=0.0)


def lock_on(bus: PrivateBus, **env: str) -> Any:
    return LogindLock.from_env({"DBUS_SYSTEM_BUS_ADDRESS": bus.address, **env})


def test_lock_follows_locked_hint_of_the_session_named_by_xdg_session_id(
    private_bus: PrivateBus, dbus_service: Any
) -> None:
    logind = FakeLogind()
    path = logind.add_session("7")
    logind.add_session("8")  # someone else's session, locked: not ours
    logind.locked[logind.ids["8"]] = True
    dbus_service(private_bus.address, LOGIN1, logind)
    lock = lock_on(private_bus, XDG_SESSION_ID="7")
    try:
        r = lock.check(CTX)
        assert r.condition is Condition.CLEAR, r
        assert path in r.detail

        logind.locked[path] = True
        r = lock.check(CTX)
        assert (r.condition, r.reason) == (Condition.ACTIVE, LOCKED)

        logind.locked[path] = False
        assert lock.check(CTX).condition is Condition.CLEAR
    finally:
        lock.close()


def test_lock_finds_the_session_of_our_process(private_bus: PrivateBus, dbus_service: Any) -> None:
    logind = FakeLogind()
    path = logind.add_session("2", pid=os.getpid())
    logind.locked[path] = True
    dbus_service(private_bus.address, LOGIN1, logind)
    lock = lock_on(private_bus)
    try:
        r = lock.check(CTX)
        assert (r.condition, r.reason) == (Condition.ACTIVE, LOCKED), r
    finally:
        lock.close()


def test_lock_outside_a_session_watches_the_users_graphical_session(
    private_bus: PrivateBus, dbus_service: Any
) -> None:
    """A systemd user service is in no session: GetSessionByPID fails, the user's Display counts."""
    logind = FakeLogind()
    path = logind.add_session("4", uid=os.getuid())
    dbus_service(private_bus.address, LOGIN1, logind)
    lock = lock_on(private_bus)
    try:
        assert lock.check(CTX).condition is Condition.CLEAR
        logind.locked[path] = True
        assert lock.check(CTX).reason == LOCKED
    finally:
        lock.close()


def test_lock_without_any_session_is_unsupported_with_the_reason(
    private_bus: PrivateBus, dbus_service: Any
) -> None:
    dbus_service(private_bus.address, LOGIN1, FakeLogind())
    lock = lock_on(private_bus)
    try:
        r = lock.check(CTX)
        assert r.condition is Condition.UNSUPPORTED
        assert "no graphical session" in r.detail
    finally:
        lock.close()


def test_a_session_that_goes_away_is_looked_up_again(private_bus: PrivateBus, dbus_service: Any) -> None:
    logind = FakeLogind()
    path = logind.add_session("5", pid=os.getpid())
    dbus_service(private_bus.address, LOGIN1, logind)
    lock = lock_on(private_bus)
    try:
        assert lock.check(CTX).condition is Condition.CLEAR
        del logind.locked[path], logind.pids[os.getpid()]  # logged out ...
        r = lock.check(CTX)
        assert r.condition is Condition.UNAVAILABLE and "gone" in r.detail
        new = logind.add_session("6", pid=os.getpid())  # ... and in again
        logind.locked[new] = True
        r = lock.check(CTX)
        assert r.reason == LOCKED and new in r.detail
    finally:
        lock.close()


def test_a_system_bus_without_logind_is_unsupported(private_bus: PrivateBus) -> None:
    lock = lock_on(private_bus, XDG_SESSION_ID="1")
    try:
        r = lock.check(CTX)
        assert r.condition is Condition.UNSUPPORTED
        assert "logind is not running" in r.detail
    finally:
        lock.close()


def test_screensaver_follows_get_active(private_bus: PrivateBus, dbus_service: Any) -> None:
    saver = FakeScreenSaver()
    service = dbus_service(private_bus.address, ("org.freedesktop.ScreenSaver",), saver)
    detector = ScreenSaverState.from_env({"DBUS_SESSION_BUS_ADDRESS": private_bus.address})
    try:
        r = detector.check(CTX)
        assert r.condition is Condition.CLEAR and "org.freedesktop.ScreenSaver" in r.detail
        saver.active = True
        r = detector.check(CTX)
        assert (r.condition, r.reason) == (Condition.ACTIVE, SCREENSAVER_RUNNING)
        saver.active = False
        assert detector.check(CTX).condition is Condition.CLEAR
        # Found once, then asked directly: three checks, three calls.
        assert [c[2] for c in service.calls] == ["GetActive"] * 3
    finally:
        detector.close()


def test_screensaver_falls_back_to_gnomes_own_interface(private_bus: PrivateBus, dbus_service: Any) -> None:
    saver = FakeScreenSaver("/org/gnome/ScreenSaver", "org.gnome.ScreenSaver")
    saver.active = True
    dbus_service(private_bus.address, ("org.gnome.ScreenSaver",), saver)
    detector = ScreenSaverState.from_env({"DBUS_SESSION_BUS_ADDRESS": private_bus.address})
    try:
        r = detector.check(CTX)
        assert r.reason == SCREENSAVER_RUNNING and "org.gnome.ScreenSaver" in r.detail
    finally:
        detector.close()


def test_kde_s_old_object_path_is_found(private_bus: PrivateBus, dbus_service: Any) -> None:
    """The freedesktop name answers only at /ScreenSaver (KDE before 4.11.8): UnknownMethod at the
    standard path does not stop the search."""
    saver = FakeScreenSaver("/ScreenSaver")
    dbus_service(private_bus.address, ("org.freedesktop.ScreenSaver",), saver)
    detector = ScreenSaverState.from_env({"DBUS_SESSION_BUS_ADDRESS": private_bus.address})
    try:
        assert detector.check(CTX).condition is Condition.CLEAR
        saver.active = True
        assert detector.check(CTX).reason == SCREENSAVER_RUNNING
    finally:
        detector.close()


def test_no_screensaver_service_is_unsupported_until_one_appears(
    private_bus: PrivateBus, dbus_service: Any
) -> None:
    bus = Bus(private_bus.address, "session bus")
    detector = ScreenSaverState(bus, retry_seconds=30)
    try:
        r = detector.check(CheckContext(now=0))
        assert r.condition is Condition.UNSUPPORTED
        assert "no screensaver service answers GetActive" in r.detail and "org.gnome.ScreenSaver" in r.detail
        saver = FakeScreenSaver()
        saver.active = True
        dbus_service(private_bus.address, ("org.freedesktop.ScreenSaver",), saver)
        # Not asked again before retry_seconds (on the monitor's clock) ...
        assert detector.check(CheckContext(now=10)).condition is Condition.UNSUPPORTED
        # ... then found.
        assert detector.check(CheckContext(now=31)).reason == SCREENSAVER_RUNNING
    finally:
        detector.close()


def test_a_bus_that_dies_makes_the_parts_unavailable_not_failing(
    private_bus: PrivateBus, dbus_service: Any
) -> None:
    logind = FakeLogind()
    logind.add_session("3", pid=os.getpid())
    dbus_service(private_bus.address, LOGIN1, logind)
    lock = lock_on(private_bus)
    saver = ScreenSaverState.from_env({"DBUS_SESSION_BUS_ADDRESS": private_bus.address})
    try:
        assert lock.check(CTX).condition is Condition.CLEAR
        private_bus.stop()
        later = CheckContext(now=1.0)
        for d in (lock, saver):
            r = d.check(later)
            assert r.condition is Condition.UNAVAILABLE, (d.name, r)
            assert "bus" in r.detail
    finally:
        lock.close()
        saver.close()


def test_without_bus_addresses_each_part_says_why(tmp_path: Path) -> None:
    lock = LogindLock.from_env({}, system_socket=tmp_path / "no-such-socket")
    assert isinstance(lock, StaticDetector)
    r = lock.check(CTX)
    assert r.condition is Condition.UNSUPPORTED and "no system D-Bus" in r.detail

    detectors = {d.name: d for d in create_presence_detectors(env={}, platform="linux")}
    assert set(detectors) == {"lock", "screensaver", "displays"}
    saver = detectors["screensaver"].check(CTX)
    assert saver.condition is Condition.UNSUPPORTED and "DBUS_SESSION_BUS_ADDRESS is not set" in saver.detail
    displays = detectors["displays"].check(CTX)
    assert displays.condition is Condition.UNSUPPORTED and "DISPLAY is not set" in displays.detail
    for d in detectors.values():
        d.close()


def test_an_address_that_leads_nowhere_is_unavailable(tmp_path: Path) -> None:
    detectors = create_presence_detectors(
        env={
            "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'gone'}",
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'gone'}",
        },
        platform="linux",
    )
    try:
        for d in detectors[:2]:
            r = d.check(CTX)
            assert r.condition is Condition.UNAVAILABLE, (d.name, r)
            assert "cannot connect" in r.detail
    finally:
        for d in detectors:
            d.close()
