"""DreamController: lifecycle, pause stacking, steady publishing, failures, stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
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
from dream_window.clock import Clock, SystemClock
from dream_window.config import BackendChoice
from dream_window.dream.controller import HEARTBEAT_S, DreamController, State
from dream_window.dream.supervisor import BackendSupervisor
from dream_window.errors import (
    CacheError,
    ComfyUIUnavailable,
    ExecutionFailed,
    LifecycleError,
    ModelLoadError,
    ModelUnavailable,
)
from dream_window.events import FramePublished, Injection, Note, Progress, StateChanged
from dream_window.values.check import Check
from dream_window.values.frame import Frame
from dream_window.values.generation import NO_PLAN, GeneratedImage, GenerationRequest, Plan
from tests.conftest import FakeClock, ManualClock, fast_config, hang_guard, until


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


def status(c: DreamController) -> dict:  # type: ignore[type-arg]
    return json.loads(c.status_writer.path.read_text())


async def test_lifecycle_transitions_and_illegal_ones_are_refused(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    assert c.state is State.STARTING
    task = asyncio.create_task(c.run())
    await until(lambda: c.state is State.RUNNING)
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
    await hang_guard(task, 5)
    assert c.state is State.STOPPED
    with pytest.raises(LifecycleError, match="stopped"):
        await c.pause("user")
    with pytest.raises(LifecycleError, match="stopped"):
        await c.resume("user")
    assert status(c)["state"] == "stopped"


async def test_no_frames_are_published_while_paused(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    task = asyncio.create_task(c.run())
    await until(lambda: c.frame_count >= 2)
    await c.pause("user")  # returns once a frame being written when it landed has finished
    frozen = c.frame_count
    # An observation window, not a synchronisation: a dream that ignored the pause would publish
    # in it (load can only make this pass wrongly, never fail wrongly).
    await asyncio.sleep(0.3)
    assert c.frame_count == frozen
    # The producer stopped once the headroom was made: at most that plus one batch is waiting.
    assert len(c.buffer) <= c.headroom.target() + c.config.generation.keyframe_interval
    await c.resume("user")
    await until(lambda: c.frame_count >= frozen + 3)
    c.stop()
    await task


async def test_max_frames_publishes_exactly_n_and_writes_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dream_window.dream.controller")
    c = controller_for(tmp_path, max_frames=7, services=[FrameCacheService])  # "cache" is its section
    await hang_guard(c.run(), 30)
    assert [r.getMessage() for r in caplog.records if "max-frames" in r.getMessage()] == [
        "reached --max-frames 7"
    ]
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


@pytest.mark.parametrize("interval", [2.5, 0.5])
async def test_frames_are_published_at_the_configured_interval(
    tmp_path: Path, clock: FakeClock, interval: float
) -> None:
    c = controller_for(tmp_path, clock=clock, max_frames=6, generation={"frame_interval": interval})
    published: list[float] = []
    c.events.subscribe(FramePublished, lambda e: published.append(clock.monotonic()))
    await hang_guard(c.run(), 30)
    gaps = np.diff(published)
    assert len(published) == 6 and np.allclose(gaps, interval), gaps


async def test_frames_per_minute_counts_frames_per_minute_of_the_injected_clock(
    tmp_path: Path, clock: FakeClock
) -> None:
    # 7 frames 2.5 fake seconds apart: 6 gaps in 15 s, 24 a minute. Real time barely moves here,
    # so a rate taken from the system clock (or per second) cannot come out at 24.
    c = controller_for(tmp_path, clock=clock, max_frames=7, generation={"frame_interval": 2.5})
    published: list[float] = []
    c.events.subscribe(FramePublished, lambda e: published.append(clock.monotonic()))
    await hang_guard(c.run(), 30)
    assert np.allclose(np.diff(published), 2.5), published
    assert c.frames_per_minute() == 24.0
    assert status(c)["frames_per_minute"] == 24.0


async def test_frames_per_minute_is_over_the_last_30_frames(tmp_path: Path, clock: FakeClock) -> None:
    # 40 frames 2.5 fake seconds apart, but 4 s between frames 10 and 11: the last 30 (11-40)
    # are 2.5 s apart, 24 a minute; the 31st from the end, or all 40, would count the long gap.
    c = controller_for(tmp_path, clock=clock, max_frames=40, generation={"frame_interval": 2.5})
    c.events.subscribe(FramePublished, lambda e: clock.advance(4.0) if e.index == 10 else None)
    await hang_guard(c.run(), 30)
    assert c.frame_count == 40 and c.frames_per_minute() == 24.0


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
    announced: list[StateChanged] = []
    c.events.subscribe(StateChanged, announced.append)
    await hang_guard(c.run(), 30)
    # Pages are told as the health changes, not only at the next frame: waiting, then running.
    health = [e for e in announced if e.state in ("waiting", "running")]
    assert StateChanged("waiting", ()) in health
    assert StateChanged("running", ()) in health[health.index(StateChanged("waiting", ())) :]
    assert c.frame_count == 3
    retries = [s for s in clock.sleeps if s > 0][:4]
    assert retries == [1.0] * 4  # comfyui.probe_interval: found again that soon, no growing backoff
    assert "waiting" in states and states[states.index("waiting") :].count("running") >= 1
    waits = [r for r in caplog.records if "backend waiting" in r.getMessage()]
    assert len(waits) == 1 and "connection refused" in waits[0].getMessage()  # once, not every retry
    assert c.snapshot()["backend_health"]["state"] == "running"  # type: ignore[index]


async def test_each_failure_is_logged_at_debug_with_its_type_and_message(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # (--verbose: what a user sends with a bug report; every try, where the warning says it once)
    caplog.set_level(logging.DEBUG, logger="dream_window.dream.controller")
    c = controller_for(
        tmp_path, clock=clock, backend=FlakyBackend(failures=2), max_frames=1, generation={"mode": "img2img"}
    )
    await hang_guard(c.run(), 30)
    failed = [r.getMessage() for r in caplog.records if r.name == "dream_window.dream.controller"]
    failed = [m for m in failed if m.startswith("generation failed")]
    assert failed == ["generation failed: ComfyUIUnavailable: connection refused"] * 2


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
    await until(lambda: c.frame_count >= 2)
    await c.pause("game: x.exe", free_memory=True)
    assert backend.freed == 1
    assert c.snapshot()["backend_health"]["ok"] is True  # our own interrupt is not a failure
    await c.resume("game: x.exe")
    n = c.frame_count
    await until(lambda: c.frame_count >= n + 2)
    c.stop()
    await task


async def test_stop_drains_the_buffer_and_leaves_a_whole_current_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dream_window.dream.controller")
    c = controller_for(tmp_path, generation={"frame_interval": 0.2, "buffer_size": 4})
    task = asyncio.create_task(c.run())
    await until(lambda: len(c.buffer) >= 3)
    c.stop()
    await hang_guard(task, 2)
    assert len(c.buffer) == 0
    said = [r.getMessage() for r in caplog.records if "made ahead" in r.getMessage()]
    assert len(said) == 1 and re.fullmatch(r"stopping with \d+ frame\(s\) made ahead", said[0]), said
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
    caplog.set_level(logging.DEBUG, logger="dream_window.dream.controller")
    c = controller_for(
        tmp_path, clock=clock, backend=BuggyBackend(), max_frames=2, generation={"mode": "img2img"}
    )
    await hang_guard(c.run(), 30)
    assert c.frame_count == 2
    assert any("unexpected KeyError" in r.getMessage() for r in caplog.records)
    # The traceback of each, for the log file (--verbose): it is a bug, someone must find it.
    bugs = [r for r in caplog.records if r.getMessage() == "unexpected error while generating"]
    assert len(bugs) == 2 and all(r.exc_info is not None and r.exc_info[0] is KeyError for r in bugs)


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
    seen: list[tuple[int, int, object]] = []
    c.events.subscribe(Progress, lambda e: threads.append(threading.get_ident()))
    # What a page is told, and what status says meanwhile: the sampler's step of its steps.
    c.events.subscribe(Progress, lambda e: seen.append((e.value, e.maximum, c.snapshot()["progress"])))
    await hang_guard(c.run(), 30)
    assert threads and set(threads) == {threading.get_ident()}
    assert seen and all(x == (1, 2, {"value": 1, "max": 2}) for x in seen), seen


# --- switching mode ---------------------------------------------------------------------------


def rebuilt(c: DreamController, **parts: object) -> DreamController:
    """A controller built by hand from ``c``'s parts, with ``parts`` injected (what build_controller
    makes itself: the encoder, or no mode factory)."""
    made: dict[str, object] = {
        "config": c.config,
        "backend": c.backend,
        "mode": c.mode,
        "prompts": c.prompts,
        "output": c.output,
        "status": c.status_writer,
        "clock": c.clock,
        "events": c.events,
    }
    return DreamController(**{**made, **parts})  # type: ignore[arg-type]


async def test_set_mode_refuses_unknown_modes_and_dreams_built_without_a_way_to_make_them(
    tmp_path: Path,
) -> None:
    c = controller_for(tmp_path)
    with pytest.raises(ValueError, match=r"mode must be one of .*hybrid.*, got 'warp'"):
        await c.set_mode("warp")
    fixed = rebuilt(c)
    with pytest.raises(ValueError, match=r"^this dream cannot switch modes$"):
        await fixed.set_mode("img2img")
    assert fixed.mode.name == "hybrid"


async def test_set_mode_switches_and_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dream_window.dream.controller")
    c = controller_for(tmp_path)
    await c.set_mode("img2img")
    await c.set_mode("img2img")  # already in it: nothing to do
    assert c.mode.name == "img2img" and c.snapshot()["mode"] == "img2img"
    said = [r.getMessage() for r in caplog.records if r.name == "dream_window.dream.controller"]
    assert said == ["mode: img2img"]


# --- notes, status, pause reasons --------------------------------------------------------------


async def test_notes_are_kept_once_each_in_status(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    c = build_controller(cfg, BuiltinEngine(offload=False), notes=["from the start"], fsync=False)
    for text in ("in-betweens are pixel crossfades", "from the start", "in-betweens are pixel crossfades"):
        c.events.emit(Note(text))
    assert c.notes == ["from the start", "in-betweens are pixel crossfades"]
    assert c.snapshot()["notes"] == c.notes


async def test_a_blank_pause_reason_is_called_paused_and_reasons_are_trimmed(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    task = asyncio.create_task(c.run())
    await until(lambda: c.state is State.RUNNING, "the dream to start")
    await c.pause("   ")
    await c.pause("  game: x.exe ")
    assert c.pause_reasons == ["paused", "game: x.exe"]
    s = c.snapshot()
    assert (s["state"], s["pause_reason"], s["pause_reasons"]) == (
        "paused",
        "paused",
        ["paused", "game: x.exe"],
    )
    await c.resume("")
    await c.resume("game: x.exe  ")
    assert c.state is State.RUNNING and c.snapshot()["pause_reason"] is None
    c.stop()
    await task


async def test_status_before_the_first_frame(tmp_path: Path, clock: FakeClock) -> None:
    c = controller_for(tmp_path, clock=clock, generation={"width": 512, "height": 384})
    s = c.snapshot()
    assert s["state"] == "starting" and sorted(s["modes"]) == ["hybrid", "img2img", "interpolate"]
    assert (s["frame_count"], s["current_prompt"], s["on_screen"], s["last_frame_kind"]) == (
        0,
        None,
        None,
        None,
    )
    assert (s["last_generation_ms"], s["frames_per_minute"], s["progress"]) == (None, 0.0, None)
    assert s["size"] == {"width": 512, "height": 384} and s["notes"] == []
    assert s["buffer"] == {"size": 0, "target": 1, "capacity": 4, "p95_batch_s": None}
    assert s["started_at"] == s["updated_at"] == "2026-01-01T12:16:40+00:00"
    assert s["heartbeat_s"] == 5.0 and s["output"] == {"ok": True}
    assert s["next_prompt"] == c.prompts.current and s["current_frame"] == str(c.output.current_path)


async def test_an_ai_backend_reports_the_configured_model(tmp_path: Path) -> None:
    c = controller_for(tmp_path, backend=FlakyBackend(failures=0))
    s = c.snapshot()
    assert s["backend_is_ai"] is True and s["model"] == c.config.generation.model.value != "procedural"


# --- freeing memory ---------------------------------------------------------------------------


class RecordingEncoder:
    """A latent encoder holding GPU memory of its own (a local VAE); ``fails``: freeing it fails."""

    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.freed = 0

    async def free_memory(self) -> None:
        self.freed += 1
        if self.fails:
            raise ModelLoadError("the VAE would not let go")


class StubbornBackend(BuiltinEngine):
    async def free_memory(self) -> None:
        raise ComfyUIUnavailable("connection refused", server="http://127.0.0.1:1")


async def test_a_change_drops_the_frames_made_ahead_and_says_how_many_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dream_window.dream.controller")
    c = controller_for(tmp_path)  # (not running: nothing takes frames from the buffer meanwhile)
    made = Frame(Image.new("RGB", (8, 8)), "a harbour at dawn", "inbetween", 1.0)
    await c.buffer.put_all([(0, made)] * 3)
    await c.set_prompt("a lighthouse in fog")
    assert len(c.buffer) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped")]
    assert said == ["dropped 3 frame(s) made ahead"]


class UnwithdrawableBackend(BuiltinEngine):
    """Its server went away: withdrawing what it had queued fails."""

    async def interrupt(self) -> None:
        raise ComfyUIUnavailable("connection refused", server="http://127.0.0.1:1")


async def test_a_withdraw_that_fails_is_logged_and_the_change_still_happens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = controller_for(tmp_path, backend=UnwithdrawableBackend(offload=False))
    wanted = await c.set_prompt("a lighthouse in fog")
    assert c.prompts.current == wanted
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["withdraw failed: connection refused"]


async def test_free_memory_reaches_the_latent_encoder(tmp_path: Path) -> None:
    encoder = RecordingEncoder()
    c = rebuilt(controller_for(tmp_path), encoder=encoder)
    await c.pause("user")
    assert encoder.freed == 0
    await c.pause("game: x.exe", free_memory=True)
    assert encoder.freed == 1


async def test_what_fails_to_free_memory_is_logged_by_name_and_the_rest_is_still_freed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    released: list[str] = []
    encoder = RecordingEncoder(fails=True)
    base = controller_for(tmp_path, backend=StubbornBackend(offload=False))
    c = rebuilt(base, encoder=encoder, services=[GpuHoldingService(released)])
    await c.pause("game: x.exe", free_memory=True)
    assert c.pause_reasons == ["game: x.exe"] and encoder.freed == 1 and released == ["vae"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "free memory failed: connection refused",
        "free memory (latent encoder) failed: the VAE would not let go",
    ]


# --- the supervisor switching backend ------------------------------------------------------------


class HeldClock(FakeClock):
    """Fake time whose long waits (the publisher's, between frames) wait for ``release`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.held = 0  # waits held so far

    async def sleep(self, seconds: float) -> None:
        if seconds >= 10 and not self.release.is_set():
            self.held += 1
            await self.release.wait()
        await super().sleep(seconds)


class GatedEngine(BuiltinEngine):
    """Makes ``free`` images (each ``takes`` seconds of fake time), then waits at ``gate``; records
    the picture each img2img grows from."""

    def __init__(self, *, free: int, clock: FakeClock | None = None, takes: float = 0.0) -> None:
        super().__init__(offload=False)
        self.free, self.clock, self.takes = free, clock, takes
        self.calls = 0
        self.sources: list[np.ndarray] = []
        self.gate = asyncio.Event()

    async def _turn(self) -> None:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.calls > self.free:
            await self.gate.wait()

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        await self._turn()
        return await super().txt2img(request, plan=plan)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        self.sources.append(np.asarray(image.convert("RGB")))
        await self._turn()
        return await super().img2img(image, request, plan=plan)


class StandInComfyUI(GatedEngine):
    """What the supervisor adopts as ComfyUI: it answers once ``up`` is set."""

    name = "ComfyUI (stand-in)"

    def __init__(self, *, free: int) -> None:
        super().__init__(free=free)
        self.up = asyncio.Event()

    async def start(self) -> None:
        await self.up.wait()

    async def check_model(self) -> float:
        return 0.1

    def status_sections(self) -> dict[str, object]:
        return {"comfyui": {"servers": [], "stand_in": True}}  # while in use


def switching_dream(tmp_path: Path, builtin: GatedEngine, comfy: StandInComfyUI, clock, **generation):  # type: ignore[no-untyped-def]
    cfg = fast_config(tmp_path, generation=generation)
    supervisor = BackendSupervisor(
        builtin,
        clock=clock,
        choice=BackendChoice.AUTO,
        make_comfyui=lambda: comfy,  # type: ignore[arg-type,return-value]
        probe_interval=0.01,
    )
    return build_controller(cfg, builtin, clock=clock, supervisor=supervisor, fsync=False), supervisor


@pytest.mark.parametrize(
    ("free", "buffered", "newest"),
    [
        (1, 0, "on screen"),  # frame 1 shown, frame 2 being made: the switch cancels it
        (2, 0, "held"),  # frame 2 made and waiting for its time, frame 3 being made
        (99, 3, "buffered"),  # frame 2 waiting for its time, frames 3-5 made ahead
    ],
)
async def test_after_a_backend_switch_the_dream_grows_from_the_newest_frame_made(
    tmp_path: Path, free: int, buffered: int, newest: str
) -> None:
    clock = HeldClock()
    builtin = GatedEngine(free=free, clock=clock, takes=20.0)
    comfy = StandInComfyUI(free=0)
    c, supervisor = switching_dream(
        tmp_path, builtin, comfy, clock, mode="img2img", frame_interval=100, buffer_size=4
    )
    task = asyncio.create_task(c.run())
    try:
        # Each image takes 20 fake seconds: frame 1 is shown at once, frame 2 waits (held) for its
        # time, 100 s after frame 1.
        made, waiting = min(free, 5), int(newest != "on screen")
        await until(
            lambda: (
                (c.frame_count, builtin.calls, len(c.buffer), clock.held)
                == (1, made + (free < 99), buffered, waiting)
            ),
            f"the newest frame to be {newest}",
        )
        # The picture the next frame must grow from: the last one in the buffer, else the one
        # waiting to be shown (the source of the batch after it), else the one on screen.
        expected = np.asarray(c.buffer.items()[-1][1].image) if buffered else builtin.sources[free - 1]
        assert p95(c) is not None
        await c.pause("user")
        comfy.up.set()
        await until(lambda: c.backend.name == comfy.name, "the switch to ComfyUI")
        await c.resume("user")
        clock.release.set()
        await until(lambda: comfy.sources, "the first frame made by ComfyUI")
        assert np.array_equal(comfy.sources[0], expected)
        if buffered:
            assert not np.array_equal(expected, builtin.sources[-1])  # (not the one before it)
        assert p95(c) is None  # the new backend's batch times are not known yet
        assert c.snapshot()["backend_health"]["backend"] == comfy.name  # type: ignore[index]
        assert c.snapshot()["comfyui"] == {"servers": [], "stand_in": True}  # its section, now in use
    finally:
        c.stop()
        await hang_guard(task, 10)
        await supervisor.close()


def p95(c: DreamController) -> object:
    return c.snapshot()["buffer"]["p95_batch_s"]  # type: ignore[index]


async def test_a_backend_switch_mid_dream_leads_into_the_new_backend_with_a_transition(
    tmp_path: Path,
) -> None:
    clock = SystemClock()
    comfy = StandInComfyUI(free=99)
    c, supervisor = switching_dream(tmp_path, GatedEngine(free=99), comfy, clock, mode="hybrid")
    shown: list[tuple[str, str]] = []
    c.events.subscribe(FramePublished, lambda e: shown.append((e.kind, e.backend)))
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: c.frame_count >= 1, "a frame from the built-in engine")
        comfy.up.set()
        await until(lambda: ("keyframe", comfy.name) in shown, "a keyframe made by ComfyUI")
    finally:
        c.stop()
        await hang_guard(task, 10)
        await supervisor.close()
    first = shown.index(("keyframe", comfy.name))
    n = c.config.generation.transition_frames
    assert [kind for kind, _ in shown[first - n : first]] == ["transition"] * n, shown
    assert shown[first - n - 1][0] != "transition"


class AbsentComfyUI(StandInComfyUI):
    """A ComfyUI the supervisor looks for and never adopts: each start fails with ``error``."""

    def __init__(self) -> None:
        super().__init__(free=0)
        self.error: Exception = ComfyUIUnavailable("connection refused", reason="connection refused")
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        raise self.error


def looking_for(comfy: StandInComfyUI, clock: Clock) -> BackendSupervisor:
    """The built-in engine dreaming while the supervisor looks for ``comfy`` every 10 ms."""
    return BackendSupervisor(
        BuiltinEngine(offload=False),
        clock=clock,
        choice=BackendChoice.AUTO,
        make_comfyui=lambda: comfy,  # type: ignore[arg-type,return-value]
        probe_interval=0.01,
    )


async def test_a_new_backend_reason_found_while_paused_is_written_to_status_at_once(tmp_path: Path) -> None:
    # Paused (no frames) and the heartbeat held: only the watch's own write can tell status.json
    # that ComfyUI now answers but lacks the model, instead of the refused connection it showed.
    clock, pace = FakeClock(), ManualClock()
    comfy = AbsentComfyUI()
    cfg = fast_config(tmp_path, generation={"mode": "img2img"})
    supervisor = looking_for(comfy, clock)
    c = build_controller(
        cfg, supervisor.backend, clock=clock, supervisor=supervisor, fsync=False, status_clock=pace
    )
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: "connection refused" in str(supervisor.reason), "the fallback's reason")
        await c.pause("user")
        assert "connection refused" in status(c)["backend_health"]["reason"]
        comfy.error = ModelUnavailable("checkpoint 'dream.safetensors' is not on the ComfyUI server")
        await until(
            lambda: "dream.safetensors" in str(status(c)["backend_health"]["reason"]),
            "status.json to say what the probe found",
        )
        assert status(c)["state"] == "paused" and pace.t == 0.0  # (no heartbeat wrote it)
    finally:
        c.stop()
        await hang_guard(task, 10)
        await supervisor.close()


async def settle() -> None:
    """Long enough for anything woken to run and a status write it started to land. (Only ever
    used before checking that nothing was written: with the code right, nothing can be.)"""
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def test_status_after_frames_waits_out_status_interval_and_the_heartbeat_fires_when_nothing_else_writes(
    tmp_path: Path,
) -> None:
    clock, pace = FakeClock(), ManualClock()
    engine = GatedEngine(free=5)  # five frames, then it makes no more
    cfg = fast_config(
        tmp_path, generation={"mode": "img2img", "frame_interval": 0.5, "status_interval": 0.25}
    )
    c = build_controller(cfg, engine, clock=clock, fsync=False, status_clock=pace)
    writes: list[int] = []
    real_write = c.status_writer.write
    c.status_writer.write = lambda doc: (writes.append(int(doc["frame_count"])), real_write(doc))[1]  # type: ignore[method-assign]
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: c.frame_count == 5, "five frames published")
        await settle()
        # Each frame came within status_interval of the start's write on the held clock: none
        # was written, and the newest is due.
        assert writes == [0] and status(c)["frame_count"] == 0
        pace.advance(0.2)
        await settle()
        assert writes == [0]
        pace.advance(0.05)  # status_interval since the last write: the newest frame's status
        await until(lambda: writes == [0, 5], "the frames' status once the interval was up")
        assert status(c)["frame_count"] == 5
        # Nothing happens now (no frames, no changes): the heartbeat alone, every HEARTBEAT_S.
        pace.advance(HEARTBEAT_S - 0.1)
        await settle()
        assert writes == [0, 5]
        pace.advance(0.1)
        await until(lambda: len(writes) == 3, "the heartbeat")
        pace.advance(HEARTBEAT_S)
        await until(lambda: len(writes) == 4, "the next heartbeat")
        assert writes == [0, 5, 5, 5] and status(c)["heartbeat_s"] == HEARTBEAT_S
    finally:
        c.stop()
        engine.gate.set()
        await hang_guard(task, 10)


async def test_the_dreams_tasks_say_what_they_are_and_are_all_over_when_run_returns(tmp_path: Path) -> None:
    # (A task dump of a stuck service, asyncio's debug mode and "Task was destroyed but it is
    # pending" name each task: these names are what a bug report shows.)
    clock = FakeClock()
    supervisor = looking_for(AbsentComfyUI(), clock)  # (the watch task runs)
    c = build_controller(
        fast_config(tmp_path), supervisor.backend, clock=clock, supervisor=supervisor, fsync=False
    )
    task = asyncio.create_task(c.run())
    await until(lambda: c.frame_count >= 2, "frames")
    ours = {t.get_name(): t for t in asyncio.all_tasks() if t.get_name().startswith("dream-")}
    assert {"dream-producer", "dream-publisher", "dream-backend-watch", "dream-status", "dream-stop"} <= set(
        ours
    )
    c.stop()
    await hang_guard(task, 10)
    await supervisor.close()
    assert all(t.done() for t in ours.values())


async def test_a_dream_not_started_is_not_generating_and_has_nothing_on_screen(tmp_path: Path) -> None:
    c = controller_for(tmp_path)
    assert c.generating is False and c.on_screen is None
    assert c.snapshot()["on_screen"] is None and c.snapshot()["progress"] is None


class InjectingCache:
    """A frame cache that steers every batch toward one remembered frame."""

    def __init__(self) -> None:
        self.picture = Image.new("RGB", (64, 64), (200, 40, 90))

    async def remember(self, frame: Frame, path: Path) -> None:
        pass

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        return (self.picture, "a remembered harbour") if current is not None else None

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        pass


async def test_an_injected_frame_is_announced_to_pages(tmp_path: Path) -> None:
    c = rebuilt(
        controller_for(tmp_path, generation={"mode": "img2img"}), frame_cache=InjectingCache(), max_frames=3
    )
    told: list[Injection] = []
    c.events.subscribe(Injection, told.append)
    await hang_guard(c.run(), 30)
    assert c.frame_count == 3 and told and all(e.label == "a remembered harbour" for e in told)


class OnceFailingComfyUI(BuiltinEngine):
    """Stands in for ComfyUI: its third img2img fails with ``error``; the rest work."""

    is_ai = True

    def __init__(self, error: Exception) -> None:
        super().__init__(offload=False)
        self.error = error
        self.calls = 0

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        self.calls += 1
        if self.calls == 3:
            raise self.error
        return await super().img2img(image, request, plan=plan)


@pytest.mark.parametrize(
    "error",
    [
        ExecutionFailed("KSampler: CUDA error: an illegal memory access", node_type="KSampler"),
        # Interrupted by someone else (ComfyUI's own Cancel) while we run: a failure like any other.
        ExecutionFailed("interrupted", interrupted=True),
    ],
    ids=["failed", "interrupted-by-another"],
)
async def test_a_prompt_that_fails_while_running_is_a_failure_and_the_recovery_is_written_at_once(
    tmp_path: Path, error: ExecutionFailed
) -> None:
    clock, pace = FakeClock(), ManualClock()  # (the frames' own status waits for the held clock)
    backend = OnceFailingComfyUI(error)
    cfg = fast_config(tmp_path, generation={"mode": "img2img", "frame_interval": 1.0})
    c = build_controller(cfg, backend, clock=clock, fsync=False, status_clock=pace)
    announced: list[StateChanged] = []
    c.events.subscribe(StateChanged, announced.append)
    reasons: list[object] = []
    real_write = c.status_writer.write
    c.status_writer.write = lambda doc: (  # type: ignore[method-assign]
        reasons.append((doc["state"], doc["backend_health"]["reason"])),  # type: ignore[index]
        real_write(doc),
    )[1]
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: c.frame_count >= 5, "frames after the failure")
        waiting = [e for e in announced if e.state == "waiting"]
        assert waiting and announced[announced.index(waiting[0]) + 1].state == "running"
        # Written at once each: the failure with its reason, then the recovery.
        failed = ("waiting", f"generation failed: {error} (retrying)")
        assert failed in reasons and reasons[reasons.index(failed) + 1] == ("running", None)
    finally:
        c.stop()
        await hang_guard(task, 10)


async def test_nothing_that_stays_the_same_rewrites_status_between_its_paced_writes(tmp_path: Path) -> None:
    # Degraded (ComfyUI absent, the built-in engine dreaming), the status clock held: frames keep
    # coming and every probe finds the same refused connection. Neither a batch nor a probe that
    # changes nothing writes status.json; the frames' own status waits for its pace.
    clock, pace = FakeClock(), ManualClock()
    comfy = AbsentComfyUI()
    supervisor = looking_for(comfy, clock)
    cfg = fast_config(tmp_path, generation={"mode": "img2img", "frame_interval": 0.5})
    c = build_controller(
        cfg, supervisor.backend, clock=clock, supervisor=supervisor, fsync=False, status_clock=pace
    )
    writes: list[str] = []
    real_write = c.status_writer.write
    c.status_writer.write = lambda doc: (writes.append(str(doc["state"])), real_write(doc))[1]  # type: ignore[method-assign]
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: supervisor.state.value == "degraded" and c.frame_count >= 2, "the fallback")
        await until(lambda: len(writes) >= 2 and writes[-1] == "degraded", "status.json to say so")
        before, frames, probes = len(writes), c.frame_count, comfy.starts
        await until(lambda: c.frame_count >= frames + 5 and comfy.starts >= probes + 10, "frames and probes")
        await settle()
        assert len(writes) == before, writes[before:]
        pace.advance(0.25)  # status_interval: the newest frame's status, once
        await until(lambda: len(writes) == before + 1, "the paced write")
    finally:
        c.stop()
        await hang_guard(task, 10)
        await supervisor.close()


async def test_generating_is_true_while_a_batch_is_made_and_false_once_it_is_taken_back(
    tmp_path: Path,
) -> None:
    # (The system monitor discounts the GPU load of our own batches while this is true.)
    engine = GatedEngine(free=1)
    c = controller_for(tmp_path, backend=engine, generation={"mode": "img2img"})
    task = asyncio.create_task(c.run())
    try:
        await until(lambda: c.frame_count >= 1 and engine.calls >= 2, "a batch waiting at the gate")
        assert c.generating is True
        assert "dream-batch" in {t.get_name() for t in asyncio.all_tasks()}  # (what a task dump shows)
        await c.pause("user")  # takes the batch back
        assert c.generating is False
    finally:
        c.stop()
        engine.gate.set()
        await hang_guard(task, 10)


class RememberingCache(InjectingCache):
    """A frame cache that records what it is asked to remember (and injects nothing); with
    ``broken``, remembering fails as a full cache disk would."""

    def __init__(self, *, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.remembered: list[tuple[Frame, Path]] = []

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        return None

    async def remember(self, frame: Frame, path: Path) -> None:
        if self.broken:
            raise CacheError("the cache disk is full")
        self.remembered.append((frame, path))


async def test_each_made_frame_is_handed_to_the_cache_with_its_number_and_history_file(
    tmp_path: Path,
) -> None:
    cache = RememberingCache()
    c = rebuilt(controller_for(tmp_path, generation={"mode": "img2img"}), frame_cache=cache, max_frames=3)
    published: list[FramePublished] = []
    c.events.subscribe(FramePublished, published.append)
    await hang_guard(c.run(), 30)
    assert [(f.index, path) for f, path in cache.remembered] == [(e.index, e.path) for e in published]
    assert all(path == c.output.path_for(f.index) and path.is_file() for f, path in cache.remembered)


async def test_a_frame_the_cache_cannot_take_is_still_shown_and_the_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = rebuilt(
        controller_for(tmp_path, generation={"mode": "img2img"}),
        frame_cache=RememberingCache(broken=True),
        max_frames=2,
    )
    await hang_guard(c.run(), 30)
    assert c.frame_count == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["frame not cached: the cache disk is full"] * 2
