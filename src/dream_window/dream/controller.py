"""DreamController: the coordinator. It owns the loop and the lifecycle; it generates nothing.

Two tasks run while the dream is alive:

* the **producer** asks the DreamGenerator for the next frames (the mode makes them; now and
  then the frame memory injects a cached frame first) and puts them into the FrameBuffer; it
  waits while paused;
* the **publisher** takes frames from the buffer every ``frame_interval`` seconds and publishes
  them (atomic files, status.json, events for the viewer, the frame memory).

Lifecycle (illegal transitions raise LifecycleError)::

    STARTING → RUNNING ⇄ PAUSED
        ↘         ↘       ↓
              STOPPED (final)

Several components may pause at once (a game *and* the user); the dream runs again only when
every reason has been resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from dream_window import __version__
from dream_window.backends.base import GenerationBackend
from dream_window.clock import Clock, iso
from dream_window.config import DreamConfig
from dream_window.dream.frame_buffer import FrameBuffer
from dream_window.dream.generator import DreamGenerator
from dream_window.dream.modes.base import DreamMode
from dream_window.dream.output import OutputWriter
from dream_window.dream.prompts import PromptManager
from dream_window.dream.status import StatusWriter
from dream_window.errors import (
    DreamWindowError,
    ExecutionFailed,
    FrameWriteError,
    LifecycleError,
)
from dream_window.events import EventBus
from dream_window.values.frame import Frame

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


_LEGAL: dict[State, set[State]] = {
    State.STARTING: {State.RUNNING, State.STOPPED},
    State.RUNNING: {State.PAUSED, State.STOPPED},
    State.PAUSED: {State.RUNNING, State.STOPPED},
    State.STOPPED: set(),
}


class FrameMemory(Protocol):
    """What the controller needs from the frame cache (implemented in dream_window.cache)."""

    async def remember(self, frame: Frame, path: Path) -> None:
        """A frame was published at ``path``: maybe keep it (with its embedding)."""
        ...

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        """Now and then, a cached frame to steer toward, with a label for status; else None."""
        ...

    def describe(self) -> dict[str, Any]:
        """For status.json: size, embedder, last injection."""
        ...

    async def rate(self, frame_path: Path, score: int, *, prompt: str | None = None) -> None:
        """Like (+1) or dislike (-1) a published frame; liked frames are re-injected more often,
        disliked ones never."""
        ...

    async def close(self) -> None: ...


class DreamController:
    def __init__(
        self,
        *,
        config: DreamConfig,
        backend: GenerationBackend,
        mode: DreamMode,
        prompts: PromptManager,
        output: OutputWriter,
        status: StatusWriter,
        clock: Clock,
        memory: FrameMemory | None = None,
        max_frames: int | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.mode = mode
        self.generator = DreamGenerator(
            mode=mode,
            backend=backend,
            memory=memory,
            on_injection=lambda label: self.events.emit("injection", {"label": label}),
        )
        self.prompts = prompts
        self.output = output
        self.status_writer = status
        self.clock = clock
        self.memory = memory
        self.max_frames = max_frames
        self.notes: list[str] = list(notes or [])
        self.events = EventBus()
        # Other holders of GPU memory (a local VAE) freed with the backend on pause(free_memory=True).
        self.memory_holders: list[Callable[[], Awaitable[None]]] = []
        # Extra status keys contributed by other components: {"monitor": fn, "viewer": fn}.
        self.status_providers: dict[str, Callable[[], Any]] = {}
        self.buffer: FrameBuffer[Frame] = FrameBuffer(config.generation.buffer_size)

        self._state = State.STARTING
        self._reasons: list[str] = []
        self._generating = False
        self._running = asyncio.Event()  # set while RUNNING
        self._stop = asyncio.Event()
        self._frame_count = 0
        self._last_frame: Frame | None = None
        self._last_gen_ms: float | None = None
        self._publish_times: deque[float] = deque(maxlen=30)
        self._progress: dict[str, int] | None = None
        self._last_progress_status = 0.0
        self._backend_ok = True
        self._backend_detail = "not started"
        self._started_at = clock.now()
        self._status_lock = asyncio.Lock()
        # Held while a frame is being published, so pause() returns only once no frame is in flight.
        self._publish_lock = asyncio.Lock()

        backend.set_progress_callback(self._on_progress)
        set_preview = getattr(backend, "set_preview_callback", None)
        if set_preview is not None:  # backends with live previews (ComfyUI) hand them to the viewer
            set_preview(lambda data, mime: self.events.emit("preview", {"data": data, "mime": mime}))
        prompts.add_listener(lambda p, why: self.events.emit("prompt", {"prompt": p, "why": why}))

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def pause_reasons(self) -> list[str]:
        return list(self._reasons)

    @property
    def generating(self) -> bool:
        """True while frames are being made (the system monitor discounts our own GPU load then)."""
        return self._generating

    @property
    def frame_count(self) -> int:
        return self._frame_count

    def _transition(self, to: State) -> None:
        if to not in _LEGAL[self._state]:
            raise LifecycleError(f"cannot go from {self._state.value} to {to.value}")
        log.info(
            "state: %s → %s%s",
            self._state.value,
            to.value,
            f" ({'; '.join(self._reasons)})" if to is State.PAUSED else "",
        )
        self._state = to
        if to is State.RUNNING:
            self._running.set()
        else:
            self._running.clear()
        self.events.emit("state", {"state": to.value, "reasons": list(self._reasons)})

    async def pause(self, reason: str, *, interrupt: bool = False, free_memory: bool = False) -> None:
        """Pause for ``reason``. ``interrupt`` stops the generation in flight; ``free_memory`` asks the
        backend to give GPU memory back (used when a game starts)."""
        reason = reason.strip() or "paused"
        if self._state is State.STOPPED:
            raise LifecycleError(f"cannot pause ({reason}): the dream is stopped")
        if reason in self._reasons:
            raise LifecycleError(f"already paused for {reason!r}")
        self._reasons.append(reason)
        if self._state is State.RUNNING:
            self._transition(State.PAUSED)
            async with self._publish_lock:  # a frame being written now finishes; no new one starts
                pass
        else:
            log.info("also paused for: %s", reason)
            self.events.emit("state", {"state": self._state.value, "reasons": list(self._reasons)})
        if interrupt:
            await self._guarded(self.backend.interrupt(), "interrupt")
        if free_memory:
            await self._guarded(self.backend.free_memory(), "free memory")
            for release in self.memory_holders:
                await self._guarded(release(), "free memory")
        await self.write_status()

    async def resume(self, reason: str) -> None:
        reason = reason.strip() or "paused"
        if self._state is State.STOPPED:
            raise LifecycleError(f"cannot resume ({reason}): the dream is stopped")
        if reason not in self._reasons:
            held = ", ".join(repr(r) for r in self._reasons) or "nothing"
            raise LifecycleError(f"cannot resume {reason!r}: not paused for it (paused for: {held})")
        self._reasons.remove(reason)
        if not self._reasons and self._state is State.PAUSED:
            log.info("resumed (%s)", reason)
            self._transition(State.RUNNING)
        else:
            self.events.emit("state", {"state": self._state.value, "reasons": list(self._reasons)})
        await self.write_status()

    def stop(self) -> None:
        """Ask the loop to stop; ``run()`` returns within a moment, with state saved."""
        self._stop.set()

    def skip(self) -> str:
        """Move to another prompt now."""
        return self.prompts.skip()

    async def _guarded(self, coro: Any, what: str) -> None:
        try:
            await coro
        except DreamWindowError as exc:
            log.warning("%s failed: %s", what, exc)

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()`` or ``max_frames``; always leaves status ``stopped`` and state saved."""
        self._continue_from_last_frame()
        self._transition(State.RUNNING)
        if self._reasons:  # paused before we started (a game was already running)
            self._transition(State.PAUSED)
        self._backend_detail = f"{self.backend.name} ready"
        await self.write_status()
        producer = asyncio.create_task(self._produce(), name="dream-producer")
        publisher = asyncio.create_task(self._publish_loop(), name="dream-publisher")
        stopper = asyncio.create_task(self._stop.wait(), name="dream-stop")
        try:
            done, _ = await asyncio.wait({producer, publisher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in done & {producer, publisher}:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in (producer, publisher, stopper):
                t.cancel()
            await asyncio.gather(producer, publisher, stopper, return_exceptions=True)
            dropped = self.buffer.drain()
            if dropped:
                log.info("stopping: %d buffered frame(s) not shown", len(dropped))
            if self._state is not State.STOPPED:
                self._transition(State.STOPPED)
            self._save_state()
            if self.memory is not None:
                with contextlib.suppress(DreamWindowError):
                    await self.memory.close()
            await self.write_status()

    async def _produce(self) -> None:
        failures = 0
        while True:
            await self._running.wait()
            try:
                self._generating = True
                try:
                    frames = await self.generator.next_frames(self._last_frame)
                finally:
                    self._generating = False
            except ExecutionFailed as exc:
                if exc.interrupted and self._state is not State.RUNNING:
                    continue  # we interrupted it ourselves to pause; not a failure
                failures = await self._backend_failed(exc, failures)
                continue
            except DreamWindowError as exc:  # backend down, cache unreadable ...: back off and retry
                failures = await self._backend_failed(exc, failures)
                continue
            except Exception as exc:
                # A bug, not a condition: keep the traceback for the log file, keep the dream alive.
                log.debug("unexpected error while generating", exc_info=True)
                failures = await self._backend_failed(exc, failures, unexpected=True)
                continue
            if failures:
                log.info("backend recovered: %s", self.backend.name)
                failures = 0
            self._backend_ok, self._backend_detail = True, f"{self.backend.name} ok"
            self._progress = None
            for f in frames:
                await self.buffer.put(f)

    async def _backend_failed(self, exc: Exception, failures: int, *, unexpected: bool = False) -> int:
        failures += 1
        if failures == 1:
            what = f"unexpected {type(exc).__name__}: " if unexpected else ""
            log.error("generation failed: %s%s (retrying with backoff)", what, exc)
        else:
            log.debug("generation failed again (%d): %s", failures, exc)
        self._backend_ok, self._backend_detail = False, str(exc)
        await self.write_status()
        await self.clock.sleep(min(30.0, 0.5 * 2 ** min(failures - 1, 6)))
        return failures

    async def _publish_loop(self) -> None:
        interval = self.config.generation.frame_interval
        due = self.clock.monotonic()
        while True:
            frame = await self.buffer.get()
            while True:
                await self._running.wait()
                wait = due - self.clock.monotonic()
                if wait > 0:
                    await self.clock.sleep(wait)
                    continue  # re-check: we may have been paused while waiting
                async with self._publish_lock:
                    if self._state is not State.RUNNING:
                        continue
                    await self._publish(frame)
                break
            due = max(due + interval, self.clock.monotonic()) if interval > 0 else self.clock.monotonic()
            if self.max_frames is not None and self._frame_count >= self.max_frames:
                log.info("reached --max-frames %d", self.max_frames)
                self.stop()
                return

    async def _publish(self, frame: Frame) -> None:
        fut = asyncio.ensure_future(asyncio.to_thread(self.output.publish, frame.image))
        try:
            index, path = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # Let an in-flight write finish so current_frame.png and the history stay whole.
            await asyncio.wait([fut], timeout=1.5)
            raise
        except FrameWriteError as exc:
            log.error("frame not published: %s", exc)
            return
        frame.index = index
        self._frame_count += 1
        self._last_frame = frame
        if frame.kind != "inbetween":
            self._last_gen_ms = frame.generation_ms
        self._publish_times.append(time.monotonic())
        self.prompts.frame_done()
        self.events.emit(
            "frame", {"index": index, "prompt": frame.prompt, "kind": frame.kind, "path": str(path)}
        )
        if self.memory is not None and frame.kind != "inbetween":
            try:
                await self.memory.remember(frame, path)
            except DreamWindowError as exc:
                log.warning("frame not cached: %s", exc)
        await self.write_status()

    def _on_progress(self, value: int, maximum: int) -> None:
        self._progress = {"value": int(value), "max": int(maximum)}
        self.events.emit("progress", dict(self._progress))

    # --- status and state -----------------------------------------------------------------

    def frames_per_minute(self) -> float:
        t = self._publish_times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return round((len(t) - 1) * 60.0 / (t[-1] - t[0]), 2)

    def snapshot(self) -> dict[str, Any]:
        g = self.config.generation
        last = self._last_frame
        status: dict[str, Any] = {
            "state": self._state.value,
            "pause_reason": self._reasons[0] if self._reasons else None,
            "pause_reasons": list(self._reasons),
            "mode": self.mode.name,
            "backend": self.backend.name,
            "backend_is_ai": self.backend.is_ai,
            "model": g.model.value if self.backend.is_ai else "procedural",
            "backend_health": {"ok": self._backend_ok, "detail": self._backend_detail},
            "frame_count": self._frame_count,
            "frame_index": self.output.last_index,
            "current_prompt": self.prompts.current,
            "current_frame": str(self.output.current_path),
            "last_frame_kind": last.kind if last else None,
            "last_generation_ms": round(self._last_gen_ms, 1) if self._last_gen_ms is not None else None,
            "frames_per_minute": self.frames_per_minute(),
            "progress": self._progress,
            "buffer": {"size": len(self.buffer), "capacity": self.buffer.capacity},
            "size": {"width": g.width, "height": g.height},
            "cache": self.memory.describe() if self.memory is not None else {"enabled": False},
            "notes": list(self.notes),
            "started_at": iso(self._started_at),
            "updated_at": iso(self.clock.now()),
            "version": __version__,
            "pid": os.getpid(),
        }
        for key, fn in self.status_providers.items():
            try:
                status[key] = fn()
            except Exception:
                log.exception("status provider %s failed", key)
        return status

    async def write_status(self) -> None:
        async with self._status_lock:
            try:
                await asyncio.to_thread(self.status_writer.write, self.snapshot())
            except FrameWriteError as exc:
                log.error("status not written: %s", exc)

    def _save_state(self) -> None:
        state = {
            "frame_index": self.output.last_index,
            "prompt": self.prompts.current,
            "mode": self.mode.name,
            "saved_at": iso(self.clock.now()),
        }
        try:
            from dream_window.file_ops import atomic_write_json

            atomic_write_json(self.output.dir / STATE_FILE, state)
        except FrameWriteError as exc:
            log.error("state not saved: %s", exc)

    def _continue_from_last_frame(self) -> None:
        """Grow the dream on from the last frame of a previous run, when there is one."""
        path = self.output.current_path
        if not path.exists():
            return
        try:
            with Image.open(path) as img:
                img.load()
                self.mode.seed_image(img)
            log.info("continuing from the last frame of the previous run (%s)", path)
        except (OSError, UnidentifiedImageError) as exc:
            log.warning("not continuing from %s: %s", path, exc)
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((self.output.dir / STATE_FILE).read_text(encoding="utf-8"))
            if (
                isinstance(saved, dict)
                and isinstance(saved.get("prompt"), str)
                and saved["prompt"] in {p.text for p in self.prompts.prompts}
            ):
                self.prompts.set_prompt(saved["prompt"])
