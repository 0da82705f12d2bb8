"""DreamController: lifecycle, pause stacking, steady publishing, failures, stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream_window import __version__
from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache import FrameCacheService
from dream_window.dream.controller import DreamController, State
from dream_window.errors import ComfyUIUnavailable, ExecutionFailed, LifecycleError
from dream_window.events import FramePublished, Progress
from dream_window.values.check import Check
from dream_window.values.generation import NO_PLAN, GeneratedImage, GenerationRequest, Plan
from tests.conftest import FakeClock, fast_config


def controller_for(
    tmp_path: Path, clock: FakeClock | None = None, backend=None, max_frames=None, services=(), **sections
):  # type: ignore[no-untyped-def]
    cfg = fast_config(tmp_path, **sections)
    return build_controller(
        cfg,
        backend or BuiltinEngine(offload=False),
        clock=clock,
        max_frames=max_frames,
        services=[make(cfg) for make in services],
        fsync=False,
    )


async def wait_for(cond, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def status(c: DreamController) -> dict:  # type: ignore[type-arg]
    return json.loads(c.status_writer.path.read_text())


async def test_lifecycle_transitions_and_illegal_ones_are_refused(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    assert c.state is State.STARTING
    task = asyncio.create_task(c.run())
    await wait_for(lambda: c.state is State.RUNNING)
    with pytest.raises(LifecycleError, match="not paused for it"):
        await c.resume("user")
    await c.pause("user")
    assert c.state is State.PAUSED and status(c)["pause_reason"] == "user"
    with pytest.raises(LifecycleError, match="already paused"):
        await c.pause("user")
    await c.pause("game: eldenring.exe")  # stacks
    await c.resume("user")
    assert c.state is State.PAUSED and c.pause_reasons == ["game: eldenring.exe"]
    await c.resume("game: eldenring.exe")
    assert c.state is State.RUNNING
    c.stop()
    await asyncio.wait_for(task, 5)
    assert c.state is State.STOPPED
    with pytest.raises(LifecycleError, match="stopped"):
        await c.pause("user")
    with pytest.raises(LifecycleError, match="stopped"):
        await c.resume("user")
    assert status(c)["state"] == "stopped"


async def test_no_frames_are_published_while_paused(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    task = asyncio.create_task(c.run())
    await wait_for(lambda: c.frame_count >= 2)
    await c.pause("user")
    frozen = c.frame_count
    await asyncio.sleep(0.3)
    assert c.frame_count == frozen
    # The producer stopped once the headroom was made: at most that plus one batch is waiting.
    assert len(c.buffer) <= c.headroom.target() + c.config.generation.keyframe_interval
    await c.resume("user")
    await wait_for(lambda: c.frame_count >= frozen + 3)
    c.stop()
    await task


async def test_max_frames_publishes_exactly_n_and_writes_status(tmp_path: Path) -> None:
    c = controller_for(tmp_path, max_frames=7, services=[FrameCacheService])  # "cache" is its section
    await asyncio.wait_for(c.run(), 30)
    s = status(c)
    assert s["state"] == "stopped" and s["frame_count"] == 7 and s["frame_index"] == 7
    assert s["backend"] == "built-in engine (not AI)" and s["backend_is_ai"] is False
    assert (s["mode"], s["model"], s["pause_reason"], s["pause_reasons"]) == (
        "hybrid",
        "procedural",
        None,
        [],
    )
    health = s["backend_health"]
    assert (health["ok"], health["state"], health["detail"]) == (
        True,
        "running",
        "built-in engine (not AI) ok",
    )
    assert s["cache"] == {"enabled": False}  # generation.cache.enabled is off in fast_config
    with Image.open(tmp_path / "output" / "frames" / "frame_000007.png") as last:
        assert s["current_prompt"] == last.text["prompt"]  # the prompt of the frame on screen
    assert s["last_frame_kind"] == s["on_screen"]["kind"] and s["on_screen"]["index"] == 7
    # Measured on the real clock: only their sign is known here (fake time pins frames_per_minute).
    assert s["last_generation_ms"] > 0 and s["frames_per_minute"] > 0
    started, updated = (datetime.fromisoformat(s[k]) for k in ("started_at", "updated_at"))
    assert started.tzinfo is not None and started <= updated
    assert s["version"] == __version__ and s["pid"] == os.getpid()
    assert len(list((tmp_path / "output" / "frames").glob("frame_*.png"))) == 7
    saved = json.loads((tmp_path / "output" / "state.json").read_text())
    assert saved["frame_index"] == 7


async def test_frames_are_published_at_the_configured_interval(tmp_path: Path, clock: FakeClock) -> None:
    c = controller_for(tmp_path, clock=clock, max_frames=6, generation={"frame_interval": 2.5})
    published: list[float] = []
    c.events.subscribe(FramePublished, lambda e: published.append(clock.monotonic()))
    await asyncio.wait_for(c.run(), 30)
    gaps = np.diff(published)
    assert len(published) == 6 and np.allclose(gaps, 2.5), gaps


async def test_frames_per_minute_counts_frames_per_minute_of_the_injected_clock(
    tmp_path: Path, clock: FakeClock
) -> None:
    # 7 frames 2.5 fake seconds apart: 6 gaps in 15 s, 24 a minute. Real time barely moves here,
    # so a rate taken from the system clock (or per second) cannot come out at 24.
    c = controller_for(tmp_path, clock=clock, max_frames=7, generation={"frame_interval": 2.5})
    published: list[float] = []
    c.events.subscribe(FramePublished, lambda e: published.append(clock.monotonic()))
    await asyncio.wait_for(c.run(), 30)
    assert np.allclose(np.diff(published), 2.5), published
    assert c.frames_per_minute() == 24.0
    assert status(c)["frames_per_minute"] == 24.0


class FlakyBackend(BuiltinEngine):
    """Fails the first ``failures`` generations, like a ComfyUI server that is down, then recovers."""

    is_ai = True  # (it stands in for ComfyUI)

    def __init__(self, failures: int) -> None:
        super().__init__(offload=False)
        self.failures = failures
        self.calls = 0

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        self.calls += 1
        if self.calls <= self.failures:
            raise ComfyUIUnavailable("connection refused", server="http://127.0.0.1:1")
        return await super().txt2img(request, plan=plan)


async def test_a_backend_that_is_down_is_retried_every_probe_interval_then_recovers(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    backend = FlakyBackend(failures=4)
    c = controller_for(tmp_path, clock=clock, backend=backend, max_frames=3, generation={"mode": "img2img"})
    states: list[str] = []
    real_write = c.status_writer.write
    c.status_writer.write = lambda doc: (states.append(str(doc["state"])), real_write(doc))[1]  # type: ignore[method-assign]
    await asyncio.wait_for(c.run(), 30)
    assert c.frame_count == 3
    retries = [s for s in clock.sleeps if s > 0][:4]
    assert retries == [1.0] * 4  # comfyui.probe_interval: found again that soon, no growing backoff
    assert "waiting" in states and states[states.index("waiting") :].count("running") >= 1
    waits = [r for r in caplog.records if "backend waiting" in r.getMessage()]
    assert len(waits) == 1 and "connection refused" in waits[0].getMessage()  # once, not every retry
    assert c.snapshot()["backend_health"]["state"] == "running"  # type: ignore[index]


class InterruptingBackend(BuiltinEngine):
    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        await asyncio.sleep(0.05)
        if self.interrupted:
            self.interrupted = False
            raise ExecutionFailed("interrupted", interrupted=True)
        return await super().img2img(image, request, plan=plan)

    interrupted = False

    async def interrupt(self) -> None:
        self.interrupted = True

    freed = 0

    async def free_memory(self) -> None:
        self.freed += 1


async def test_pause_with_interrupt_and_free_reaches_the_backend(tmp_path: Path) -> None:
    backend = InterruptingBackend(offload=False)
    c = controller_for(tmp_path, backend=backend, generation={"mode": "img2img"})
    task = asyncio.create_task(c.run())
    await wait_for(lambda: c.frame_count >= 2)
    await c.pause("game: x.exe", free_memory=True)
    assert backend.freed == 1
    assert c.snapshot()["backend_health"]["ok"] is True  # our own interrupt is not a failure
    await c.resume("game: x.exe")
    n = c.frame_count
    await wait_for(lambda: c.frame_count >= n + 2)
    c.stop()
    await task


async def test_stop_drains_the_buffer_and_leaves_a_whole_current_frame(tmp_path: Path) -> None:
    c = controller_for(tmp_path, generation={"frame_interval": 0.2, "buffer_size": 4})
    task = asyncio.create_task(c.run())
    await wait_for(lambda: len(c.buffer) >= 3)
    c.stop()
    await asyncio.wait_for(task, 2)
    assert len(c.buffer) == 0
    with Image.open(tmp_path / "output" / "current_frame.png") as img:
        img.load()
    assert status(c)["state"] == "stopped"


async def test_next_run_continues_from_the_last_frame(tmp_path: Path) -> None:
    c1 = controller_for(tmp_path, max_frames=2, generation={"mode": "img2img", "denoise": 0.0})
    await c1.run()
    last = np.asarray(Image.open(tmp_path / "output" / "current_frame.png"))
    # denoise 0: the next run's img2img frames equal the last frame of the previous run.
    c2 = controller_for(tmp_path, max_frames=1, generation={"mode": "img2img", "denoise": 0.0})
    await c2.run()
    again = np.asarray(Image.open(tmp_path / "output" / "current_frame.png"))
    assert np.array_equal(last, again)
    assert c2.output.last_index == 3  # numbering continued


class RecordingBackend(BuiltinEngine):
    def __init__(self) -> None:
        super().__init__(offload=False)
        self.seeds: list[int] = []
        self.calls: list[str] = []

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        self.seeds.append(request.seed)
        self.calls.append("txt2img")
        return await super().txt2img(request, plan=plan)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        self.seeds.append(request.seed)
        self.calls.append("img2img")
        return await super().img2img(image, request, plan=plan)

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.calls.append("encode")
        return await super().encode(images)


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        ("random", lambda s: len(set(s)) == len(s)),
        ("increment", lambda s: s == list(range(100, 100 + len(s)))),
        ("fixed", lambda s: set(s) == {100}),
    ],
)
async def test_seed_policies(tmp_path: Path, policy: str, check) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    c = controller_for(
        tmp_path,
        backend=backend,
        max_frames=5,
        generation={"mode": "img2img", "seed_policy": policy, "seed": 100},
    )
    await c.run()
    assert len(backend.seeds) >= 5 and check(backend.seeds), backend.seeds


class GpuHoldingService:
    """A service holding GPU memory of its own (as the frame cache's CLIP model does)."""

    name = "gpu-holder"

    def __init__(self, released: list[str]) -> None:
        self.released = released

    async def start(self, dream: object) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> None:
        return None

    async def doctor_checks(self) -> list[Check]:
        return []

    async def free_memory(self) -> None:
        self.released.append("vae")


async def test_free_memory_on_pause_reaches_every_memory_holder(tmp_path: Path) -> None:
    backend = InterruptingBackend(offload=False)
    released: list[str] = []
    c = controller_for(tmp_path, backend=backend, services=[lambda cfg: GpuHoldingService(released)])
    await c.pause("game: x.exe", free_memory=True)
    assert backend.freed == 1 and released == ["vae"]
    await c.pause("user")  # a plain pause frees nothing
    assert backend.freed == 1 and released == ["vae"]


class BuggyBackend(BuiltinEngine):
    """Raises a plain bug (not one of our errors) twice, then works."""

    def __init__(self) -> None:
        super().__init__(offload=False)
        self.calls = 0

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        self.calls += 1
        if self.calls <= 2:
            raise KeyError("oops")
        return await super().txt2img(request, plan=plan)


async def test_an_unexpected_error_backs_off_and_the_dream_goes_on(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    c = controller_for(
        tmp_path, clock=clock, backend=BuggyBackend(), max_frames=2, generation={"mode": "img2img"}
    )
    await asyncio.wait_for(c.run(), 30)
    assert c.frame_count == 2
    assert any("unexpected KeyError" in r.getMessage() for r in caplog.records)


class ProgressFromAThread(BuiltinEngine):
    """Reports progress from a worker thread, as a backend running its sampler in one may."""

    def set_progress_callback(self, callback):  # type: ignore[no-untyped-def]
        self.report = callback

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        await asyncio.to_thread(self.report, 1, 2)
        return await super().img2img(image, request, plan=plan)


async def test_progress_from_a_worker_thread_reaches_listeners_on_the_loop(tmp_path: Path) -> None:
    import threading

    c = controller_for(
        tmp_path, backend=ProgressFromAThread(offload=False), max_frames=3, generation={"mode": "img2img"}
    )
    threads: list[int] = []
    c.events.subscribe(Progress, lambda e: threads.append(threading.get_ident()))
    await asyncio.wait_for(c.run(), 30)
    assert threads and set(threads) == {threading.get_ident()}
