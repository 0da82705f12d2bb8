"""End to end: a real game-named process pauses a running dream and its exit resumes it.

Built-in engine, the real controller, the monitor registered as a service the way
``app.build_services`` registers it, status.json read from disk. Timing is asserted in monitor checks, not in seconds.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.dream.controller import DreamController
from dream_window.monitor import MonitorService
from tests.conftest import fast_config, hang_guard, until
from tests.monitor.conftest import stop_process

INTERVAL = 0.15


def read_status(c: DreamController) -> dict[str, Any]:
    try:
        return json.loads(c.status_writer.path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):  # not written yet / being replaced
        return {}


def monitor_config(tmp_path: Path, **extra: Any) -> Any:
    # pause_when_unseen off: a developer's own locked screen must not pause these tests.
    gd = {
        "enabled": True,
        "check_interval": INTERVAL,
        "cooldown_seconds": 0.3,
        "fullscreen": False,
        "pause_when_unseen": False,
        **extra,
    }
    return fast_config(tmp_path, game_detection=gd)


async def test_game_start_pauses_with_reason_and_its_exit_resumes(tmp_path: Path, game_process: Any) -> None:
    cfg = monitor_config(tmp_path)
    engine = RecordingEngine()
    controller = build_controller(cfg, engine, fsync=False, services=[MonitorService(cfg)])
    run = asyncio.create_task(controller.run())  # starts the monitor first, closes it last
    try:
        await until(lambda: controller.frame_count >= 3, "the dream to run")
        await until(lambda: read_status(controller).get("monitor", {}).get("checks", 0) >= 1, "a first check")
        assert read_status(controller)["state"] == "running"

        # The live count, not status.json's (written after frames at most every status_interval).
        checks_before = controller.snapshot()["monitor"]["checks"]  # type: ignore[index]
        proc = game_process("eldenring.exe")
        await until(lambda: read_status(controller).get("state") == "paused", "the pause")
        status = read_status(controller)
        assert status["pause_reason"] == "game: eldenring.exe"
        # Seen by the first check that started after the game did (the one in flight may have missed it).
        assert status["monitor"]["checks"] <= checks_before + 2
        assert status["monitor"]["detectors"]["games"]["state"] == "active"
        assert status["monitor"]["paused_for"] == ["game: eldenring.exe"]
        # pause() is still interrupting/freeing when another status write may already show "paused"
        await until(lambda: len(engine.calls) >= 2, "interrupt and free")
        assert engine.calls == ["interrupt", "free"]

        frames_paused = controller.frame_count
        await asyncio.sleep(INTERVAL * 3)
        assert controller.frame_count == frames_paused  # nothing published while the game runs

        stop_process(proc)
        await until(lambda: read_status(controller).get("state") == "running", "the resume")
        assert read_status(controller)["pause_reasons"] == []
        await until(lambda: controller.frame_count >= frames_paused + 3, "frames after the resume")
    finally:
        controller.stop()
        await hang_guard(run, 10)
    assert read_status(controller)["state"] == "stopped"


async def test_a_game_already_running_at_start_keeps_the_dream_from_generating(
    tmp_path: Path, game_process: Any
) -> None:
    proc = game_process("eldenring.exe")
    cfg = monitor_config(tmp_path)
    engine = RecordingEngine()
    controller = build_controller(cfg, engine, fsync=False, services=[MonitorService(cfg)])
    run = asyncio.create_task(controller.run())  # starts the monitor first, closes it last
    try:
        await until(lambda: read_status(controller).get("state") == "paused", "the pause")
        await asyncio.sleep(INTERVAL * 2)
        assert controller.frame_count == 0
        stop_process(proc)
        await until(lambda: controller.frame_count >= 2, "frames once the game is over")
    finally:
        controller.stop()
        await hang_guard(run, 10)


async def test_disabled_means_no_monitor_at_all(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)  # game_detection.enabled: false
    monitor = MonitorService(cfg)
    controller = build_controller(cfg, BuiltinEngine(offload=False), fsync=False, services=[monitor])
    await monitor.start(controller)
    assert "monitor" not in controller.snapshot()
    await monitor.close()


class RecordingEngine(BuiltinEngine):
    def __init__(self) -> None:
        super().__init__(offload=False)
        self.calls: list[str] = []

    async def interrupt(self) -> None:
        self.calls.append("interrupt")

    async def free_memory(self) -> None:
        self.calls.append("free")


@pytest.fixture(autouse=True)
def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
