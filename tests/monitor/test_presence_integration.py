"""End to end: a real controller with the monitor pauses when the session locks (logind's
LockedHint on a real private D-Bus) and runs again when it unlocks.

The monitor finds the bus the way it would in a desktop session, from the environment
(``DBUS_SYSTEM_BUS_ADDRESS``, ``XDG_SESSION_ID``, ``DBUS_SESSION_BUS_ADDRESS``), here pointing at
our own dbus-daemon. Timing is asserted in monitor checks, never in seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dream_window.app import build_controller
from dream_window.monitor import MonitorService
from dream_window.monitor.presence import LOCKED, SCREENSAVER_RUNNING
from tests.conftest import fast_config, hang_guard, until
from tests.monitor.conftest import FakeLogind, FakeScreenSaver, PrivateBus
from tests.monitor.test_integration import INTERVAL, RecordingEngine, read_status

pytest.importorskip("jeepney", reason="jeepney not installed")


@pytest.fixture
def desktop(private_bus: PrivateBus, dbus_service: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """logind (session "9") and a screensaver on one private bus, named in the environment."""
    logind = FakeLogind()
    logind.add_session("9")
    saver = FakeScreenSaver()
    dbus_service(private_bus.address, ("org.freedesktop.login1",), logind)
    dbus_service(private_bus.address, ("org.freedesktop.ScreenSaver",), saver)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", private_bus.address)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", private_bus.address)
    monkeypatch.setenv("XDG_SESSION_ID", "9")
    monkeypatch.delenv("DISPLAY", raising=False)
    return logind, saver


async def test_locking_the_session_pauses_and_unlocking_resumes(tmp_path: Any, desktop: Any) -> None:
    logind, saver = desktop
    session = logind.ids["9"]
    cfg = fast_config(
        tmp_path,
        game_detection={
            "enabled": True,
            "check_interval": INTERVAL,
            "cooldown_seconds": 0.3,
            "fullscreen": False,
        },
    )
    engine = RecordingEngine()
    controller = build_controller(cfg, engine, fsync=False, services=[MonitorService(cfg)])
    run = asyncio.create_task(controller.run())
    try:
        await until(lambda: controller.frame_count >= 3, "the dream to run")
        await until(lambda: read_status(controller).get("monitor", {}).get("checks", 0) >= 1, "a first check")
        status = read_status(controller)
        assert status["state"] == "running"
        detectors = status["monitor"]["detectors"]
        assert detectors["lock"]["state"] == "clear"
        assert detectors["screensaver"]["state"] == "clear"
        assert detectors["displays"]["state"] == "unsupported"  # no DISPLAY here: said, not failed

        logind.locked[session] = True
        await until(lambda: read_status(controller).get("state") == "paused", "the pause")
        status = read_status(controller)
        assert status["pause_reason"] == LOCKED
        assert status["monitor"]["detectors"]["lock"]["state"] == "active"
        await until(lambda: len(engine.calls) >= 2, "interrupt and free")
        assert engine.calls == ["interrupt", "free"]

        # The screensaver starts on top: a second reason stacks; the first unlock alone does not resume.
        saver.active = True
        await until(
            lambda: (
                sorted(read_status(controller).get("pause_reasons", []))
                == sorted([LOCKED, SCREENSAVER_RUNNING])
            ),
            "both reasons",
        )
        logind.locked[session] = False
        await until(
            lambda: read_status(controller).get("pause_reasons") == [SCREENSAVER_RUNNING],
            "the lock reason gone",
        )
        assert read_status(controller)["state"] == "paused"
        frames_paused = controller.frame_count

        saver.active = False
        await until(lambda: read_status(controller).get("state") == "running", "the resume")
        assert read_status(controller)["pause_reasons"] == []
        await until(lambda: controller.frame_count >= frames_paused + 3, "frames after the resume")
    finally:
        controller.stop()
        await hang_guard(run, 10)
    assert read_status(controller)["state"] == "stopped"


async def test_switched_off_the_parts_are_not_built(tmp_path: Any, desktop: Any) -> None:
    logind, _saver = desktop
    logind.locked[logind.ids["9"]] = True
    cfg = fast_config(
        tmp_path,
        game_detection={"enabled": True, "fullscreen": False, "pause_when_unseen": False},
    )
    monitor = MonitorService(cfg)
    checks = {c.name: c for c in await monitor.doctor_checks()}
    assert "monitor: lock" not in checks
    assert "pause_when_unseen: false" in checks["monitor: lock, screensaver, displays"].detail


async def test_doctor_shows_each_part_and_why(tmp_path: Any, desktop: Any) -> None:
    cfg = fast_config(tmp_path, game_detection={"enabled": True, "fullscreen": False})
    checks = {c.name: c for c in await MonitorService(cfg).doctor_checks()}
    assert checks["monitor: lock"].level == "ok"
    assert "unlocked" in checks["monitor: lock"].detail
    assert checks["monitor: screensaver"].level == "ok"
    displays = checks["monitor: displays"]
    assert displays.level == "info" and "unsupported" in displays.detail and "DISPLAY" in displays.detail
