"""SystemMonitor policy: pause at once, resume after a cooldown, only what we paused, off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.dream.controller import DreamController, State
from dream_window.events import Progress, StateChanged
from dream_window.monitor.detector import Condition, Reading
from dream_window.monitor.system_monitor import SystemMonitor
from tests.conftest import FakeClock, fast_config, hang_guard, until
from tests.monitor.conftest import ScriptedDetector


class RecordingEngine(BuiltinEngine):
    """The built-in engine, noting when it is told to interrupt or to give memory back."""

    def __init__(self) -> None:
        super().__init__(offload=False)
        self.calls: list[str] = []

    async def interrupt(self) -> None:
        self.calls.append("interrupt")
        await super().interrupt()

    async def free_memory(self) -> None:
        self.calls.append("free")
        await super().free_memory()


def make(
    tmp_path: Path,
    clock: FakeClock,
    *detectors: ScriptedDetector,
    cooldown: float = 5.0,
    free: bool = True,
    generating: bool = False,
) -> tuple[SystemMonitor, DreamController, RecordingEngine]:
    engine = RecordingEngine()
    # Small frames: some tests run the dream (``running``) on a 2-core box.
    cfg = fast_config(tmp_path, generation={"width": 128, "height": 192})
    controller = build_controller(cfg, engine, clock=clock, fsync=False)
    monitor = SystemMonitor(
        list(detectors),
        controller,
        clock=clock,
        interval=2.0,
        cooldown=cooldown,
        free_memory=free,
        generating=lambda: generating,
    )
    return monitor, controller, engine


@contextlib.asynccontextmanager
async def running(controller: DreamController) -> AsyncIterator[None]:
    """The dream's own loop running (publishing frames) for the body; stopped and awaited after it.
    A controller that never runs stays STARTING whatever its pause reasons: its state proves nothing."""
    task = asyncio.create_task(controller.run())
    try:
        await until(
            lambda: controller.state is State.RUNNING and controller.frame_count > 0, "the dream to run"
        )
        yield
    finally:
        controller.stop()
        await hang_guard(task, 30)  # a hang guard


async def test_pauses_at_once_and_resumes_only_after_the_cooldown(tmp_path: Path, clock: FakeClock) -> None:
    games = ScriptedDetector("games")
    monitor, controller, engine = make(tmp_path, clock, games, cooldown=5.0)
    await monitor.check_once()
    assert controller.pause_reasons == [] and engine.calls == []

    games.reading = Reading.active("game: eldenring.exe")
    await monitor.check_once()
    assert controller.pause_reasons == ["game: eldenring.exe"]
    assert engine.calls == ["interrupt", "free"]
    assert monitor.paused_for == ["game: eldenring.exe"]

    games.reading = Reading.clear("no game running")
    for _ in range(2):  # t = 0, 2, 4: clear for less than 5 s
        await monitor.check_once()
        assert controller.pause_reasons == ["game: eldenring.exe"]
        clock.advance(2.0)
    await monitor.check_once()  # t = 4
    assert controller.pause_reasons == ["game: eldenring.exe"]
    clock.advance(1.0)
    await monitor.check_once()  # t = 5: clear for the whole cooldown
    assert controller.pause_reasons == [] and monitor.paused_for == []


async def test_a_flickering_condition_holds_the_pause_instead_of_thrashing(
    tmp_path: Path, clock: FakeClock
) -> None:
    fs = ScriptedDetector("fullscreen")
    monitor, controller, _ = make(tmp_path, clock, fs, cooldown=5.0)
    states: list[str] = []
    controller.events.subscribe(StateChanged, lambda e: states.append(e.state))
    for i in range(30):  # on, off, on, off ... every 2 s for a minute
        fs.reading = Reading.active("fullscreen: video") if i % 2 == 0 else Reading.clear("windowed")
        await monitor.check_once()
        clock.advance(2.0)
    assert controller.pause_reasons == ["fullscreen: video"]
    assert len(states) == 1  # one pause, no resume/pause churn
    fs.reading = Reading.clear("windowed")
    for _ in range(4):
        await monitor.check_once()
        clock.advance(2.0)
    assert controller.pause_reasons == []
    assert len(states) == 2


async def test_cooldown_zero_resumes_on_the_first_clear_check(tmp_path: Path, clock: FakeClock) -> None:
    games = ScriptedDetector("games", Reading.active("game: cs2.exe"))
    monitor, controller, _ = make(tmp_path, clock, games, cooldown=0.0)
    await monitor.check_once()
    games.reading = Reading.clear()
    await monitor.check_once()
    assert controller.pause_reasons == []


async def test_two_conditions_keep_the_dream_paused_until_both_clear_and_only_the_first_frees_memory(
    tmp_path: Path, clock: FakeClock
) -> None:
    games, gpu = ScriptedDetector("games"), ScriptedDetector("gpu")
    monitor, controller, engine = make(tmp_path, clock, games, gpu, cooldown=0.0)
    async with running(controller):
        games.reading = Reading.active("game: eldenring.exe")
        await monitor.check_once()
        gpu.reading = Reading.active("gpu 0 at 97%")
        await monitor.check_once()
        assert controller.state is State.PAUSED
        assert controller.pause_reasons == ["game: eldenring.exe", "gpu 0 at 97%"]
        assert engine.calls == ["interrupt", "free"]  # the second reason found the GPU already free
        games.reading = Reading.clear()
        await monitor.check_once()
        assert controller.state is State.PAUSED, "one condition cleared, the other still holds"
        assert controller.pause_reasons == ["gpu 0 at 97%"]
        frames = controller.frame_count
        gpu.reading = Reading.clear()
        await monitor.check_once()
        assert controller.state is State.RUNNING and controller.pause_reasons == []
        await until(lambda: controller.frame_count > frames, "a frame after the resume")


async def test_free_vram_off_interrupts_without_freeing(tmp_path: Path, clock: FakeClock) -> None:
    games = ScriptedDetector("games", Reading.active("game: eldenring.exe"))
    monitor, _, engine = make(tmp_path, clock, games, free=False)
    await monitor.check_once()
    assert engine.calls == ["interrupt"]


async def test_a_new_game_swaps_the_reason_without_a_gap(tmp_path: Path, clock: FakeClock) -> None:
    games = ScriptedDetector("games", Reading.active("game: eldenring.exe"))
    monitor, controller, _ = make(tmp_path, clock, games)
    await monitor.check_once()
    seen: list[list[str]] = []
    controller.events.subscribe(StateChanged, lambda e: seen.append(list(e.reasons)))
    games.reading = Reading.active("game: cs2.exe")
    await monitor.check_once()
    assert controller.pause_reasons == ["game: cs2.exe"]
    assert all(reasons for reasons in seen), "the dream must never run between the two games"


async def test_the_users_pause_stacks_and_keeps_the_dream_paused_after_our_resume(
    tmp_path: Path, clock: FakeClock
) -> None:
    games = ScriptedDetector("games")
    monitor, controller, _ = make(tmp_path, clock, games, cooldown=0.0)
    async with running(controller):
        await controller.pause("user")
        games.reading = Reading.active("game: eldenring.exe")
        await monitor.check_once()
        games.reading = Reading.clear()
        await monitor.check_once()
        assert controller.pause_reasons == ["user"]
        assert controller.state is State.PAUSED, "the game ended, but the user's pause still holds"
        await controller.resume("user")
        assert controller.state is State.RUNNING


async def test_reason_resumed_by_someone_else_is_forgotten_quietly(tmp_path: Path, clock: FakeClock) -> None:
    games = ScriptedDetector("games", Reading.active("game: eldenring.exe"))
    monitor, controller, _ = make(tmp_path, clock, games, cooldown=0.0)
    await monitor.check_once()
    await controller.resume("game: eldenring.exe")  # e.g. the control API's "resume everything"
    games.reading = Reading.clear()
    await monitor.check_once()  # would raise LifecycleError if not handled
    assert monitor.paused_for == [] and controller.pause_reasons == []


@pytest.mark.parametrize(
    "reading",
    [
        Reading.unavailable("no NVML"),
        Reading.unsupported("Wayland"),
        Reading(Condition.UNKNOWN, None, "boom"),
    ],
)
async def test_unavailable_unsupported_and_failed_checks_never_pause(
    tmp_path: Path, clock: FakeClock, reading: Reading
) -> None:
    det = ScriptedDetector("gpu", reading)
    monitor, controller, engine = make(tmp_path, clock, det)
    for _ in range(5):
        await monitor.check_once()
        clock.advance(2.0)
    assert controller.pause_reasons == [] and engine.calls == []
    assert monitor.describe()["detectors"]["gpu"]["state"] == reading.condition.value


async def test_a_failing_check_holds_the_decision_and_is_logged_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    games = ScriptedDetector("games", Reading.active("game: eldenring.exe"))
    other = ScriptedDetector("fullscreen", Reading.clear())
    monitor, controller, _ = make(tmp_path, clock, games, other, cooldown=0.0)
    await monitor.check_once()
    games.reading = RuntimeError("process table unreadable")  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="dream_window.monitor"):
        for _ in range(5):
            await monitor.check_once()
    assert controller.pause_reasons == ["game: eldenring.exe"]  # held, not resumed on an error
    assert len(other.calls) == 6  # the other detector kept running
    assert sum("games detection failed" in r.getMessage() for r in caplog.records) == 1


async def test_unavailable_is_logged_once_not_every_check(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    det = ScriptedDetector("gpu", Reading.unavailable("NVML not available"))
    monitor, _, _ = make(tmp_path, clock, det)
    with caplog.at_level(logging.DEBUG, logger="dream_window.monitor"):
        for _ in range(10):
            await monitor.check_once()
    assert sum("gpu detection unavailable" in r.getMessage() for r in caplog.records) == 1


async def test_generating_is_passed_on_and_progress_events_count(tmp_path: Path, clock: FakeClock) -> None:
    det = ScriptedDetector("gpu")
    monitor, controller, _ = make(tmp_path, clock, det)
    controller.events.subscribe(Progress, monitor.on_progress)
    await monitor.check_once()
    controller.events.emit(Progress(1, 4))
    await monitor.check_once()
    await monitor.check_once()
    assert [c.generating for c in det.calls] == [False, True, False]


async def test_checks_run_in_a_worker_thread(tmp_path: Path, clock: FakeClock) -> None:
    import threading

    threads: list[int] = []

    class ThreadNoting(ScriptedDetector):
        def check(self, ctx):  # type: ignore[no-untyped-def]
            threads.append(threading.get_ident())
            return super().check(ctx)

    monitor, _, _ = make(tmp_path, clock, ThreadNoting("games"))
    await monitor.check_once()
    assert threads and threads[0] != threading.get_ident()


async def test_run_checks_every_interval_and_stops_with_the_dream(tmp_path: Path, clock: FakeClock) -> None:
    det = ScriptedDetector("games")
    monitor, controller, _ = make(tmp_path, clock, det)
    three = asyncio.Event()

    class Counting(ScriptedDetector):
        def check(self, ctx):  # type: ignore[no-untyped-def]
            r = super().check(ctx)
            if len(self.calls) == 3:
                loop.call_soon_threadsafe(three.set)
            return r

    loop = asyncio.get_running_loop()
    det = Counting("games")
    monitor.detectors = [det]
    task = asyncio.create_task(monitor.run())
    await hang_guard(three.wait(), 5)
    assert [round(c.now - det.calls[0].now, 3) for c in det.calls[:3]] == [0.0, 2.0, 4.0]
    controller.lifecycle.to(State.STOPPED)  # the dream ended: the monitor ends with it
    await hang_guard(task, 5)
    monitor.close()
    assert det.closed


async def test_a_hung_check_is_never_run_twice_at_once(tmp_path: Path, clock: FakeClock) -> None:
    import threading

    gate = threading.Event()

    class Hanging(ScriptedDetector):
        def check(self, ctx):  # type: ignore[no-untyped-def]
            r = super().check(ctx)
            gate.wait(10)  # an X server that stopped answering
            return r

    det = Hanging("fullscreen", Reading.active("fullscreen: game"))
    monitor, controller, _ = make(tmp_path, clock, det)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(monitor.check_once(), 0.1)  # what MonitorService.start does at startup
    await monitor.check_once()  # skipped: the first is still in its thread
    assert len(det.calls) == 1 and controller.pause_reasons == []
    gate.set()
    for _ in range(200):  # once the stuck thread has returned, checks run again
        await monitor.check_once()
        if len(det.calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(det.calls) == 2 and controller.pause_reasons == ["fullscreen: game"]
