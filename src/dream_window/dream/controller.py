"""DreamController: the coordinator. It owns the loop and the lifecycle; it generates nothing.

Two tasks run while the dream is alive:

* the **producer** asks the DreamGenerator for the next batch of frames (the mode makes them; now
  and then the frame cache injects a cached frame first) and puts them into the FrameBuffer once
  it has run down to the headroom that hides generation times (``headroom.py``); it waits while
  paused;
* the **publisher** takes frames from the buffer every ``frame_interval`` seconds (down to a live
  1/60 s) and publishes them (labelled PNGs, a FramePublished event, the frame cache, status.json:
  after a frame at most every ``status_interval``, the newest frame's status following within it).

What the user asks for cuts the queue (:meth:`DreamController.set_prompt`, ``skip``,
``set_mode``): the batch being made is cancelled, what the backend started for it or planned
after it is withdrawn, the buffer is emptied, and the mode restarts from the frame *on screen*,
so the next frame published is the first made for the change. A pause stops the batch being made
at once too (and the backend's work with it); frames already made wait for the resume.

The services (viewer, system monitor, frame cache, Rainmeter writer; see ``service.py``) start
before the first frame and close after the last; each adds its section to status.json and gives
GPU memory back with the backend when a game pauses the dream.

The lifecycle (a state enum with legal transitions, stacked pause reasons) is :mod:`.lifecycle`;
what a restart needs (``state.json``, continuing from the last frame) is :mod:`.continuity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from dream_window import __version__
from dream_window.backends.base import GenerationBackend
from dream_window.clock import Clock, SystemClock, iso
from dream_window.config import DreamConfig
from dream_window.dream.continuity import continue_from_last_frame, save_state
from dream_window.dream.frame_buffer import FrameBuffer
from dream_window.dream.frame_cache import FrameCache, NoFrameCache
from dream_window.dream.generator import DreamGenerator
from dream_window.dream.headroom import Headroom
from dream_window.dream.lifecycle import Lifecycle, State
from dream_window.dream.modes import mode_names
from dream_window.dream.modes.base import DreamMode
from dream_window.dream.output import OutputWriter, PublishedFrame
from dream_window.dream.prompts import PromptManager
from dream_window.dream.service import Service, ServiceSet
from dream_window.dream.status import StatusWriter
from dream_window.dream.supervisor import BackendSupervisor, Health
from dream_window.errors import (
    DreamWindowError,
    ExecutionFailed,
    FrameWriteError,
)
from dream_window.events import EventBus, FramePublished, Note, Preview, Progress, StateChanged
from dream_window.file_ops import WriteFailures
from dream_window.interpolation.latent_encoder import LatentEncoder
from dream_window.values.frame import Frame, FrameLabel

log = logging.getLogger(__name__)

# status.json is rewritten at least this often (seconds), frames or not.
HEARTBEAT_S = 5.0


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
        events: EventBus,
        frame_cache: FrameCache | None = None,
        services: Sequence[Service] = (),
        encoder: LatentEncoder | None = None,
        max_frames: int | None = None,
        notes: list[str] | None = None,
        mode_factory: Callable[[str], DreamMode] | None = None,
        supervisor: BackendSupervisor | None = None,
        status_clock: Clock | None = None,
    ) -> None:
        """``events`` is the bus the prompts and the mode's notes were given too; ``encoder`` is
        the mode's latent encoder (a local VAE holds GPU memory of its own); ``mode_factory``
        builds another mode by name for :meth:`set_mode` (None: switching is refused);
        ``supervisor``: the one that chose ``backend`` (``backend`` is its SwitchingBackend), or
        None for a backend used as it is; ``status_clock`` paces status.json (see below; default:
        the system's)."""
        self.config = config
        self.supervisor = supervisor or BackendSupervisor.fixed(backend, config, clock=clock)
        self.supervisor.set_switch_hook(self._switch_backend)
        self.supervisor.listener = self._on_backend_state
        backend = self.backend = self.supervisor.backend
        self.events = events
        self.frame_cache: FrameCache = frame_cache if frame_cache is not None else NoFrameCache()
        self.services = ServiceSet(services)
        self.encoder = encoder
        self.generator = DreamGenerator(
            mode=mode,
            frame_cache=self.frame_cache,
            events=events,
            backend=backend,
            model=config.generation.model.value,
        )
        self._mode_factory = mode_factory
        self.prompts = prompts
        self.output = output
        self.status_writer = status
        self.clock = clock
        self.max_frames = max_frames
        self.notes: list[str] = list(notes or [])
        g = config.generation
        # Frames tagged with the epoch they were made in: a user's change starts a new epoch, and
        # nothing made before it is published after it.
        self.buffer: FrameBuffer[tuple[int, Frame]] = FrameBuffer()
        self.headroom = Headroom(interval=g.frame_interval, capacity=g.buffer_size)
        self._epoch = 0
        # Held while one batch is made, and while a change is applied: never both at once.
        self._making = asyncio.Lock()
        self._batch: asyncio.Task[list[Frame]] | None = None

        self.lifecycle = Lifecycle(events)
        self._generating = False
        self._stop = asyncio.Event()
        self._frame_count = 0
        # The frame on screen (published last, or the previous run's last frame) and its label.
        self._on_screen: Frame | None = None
        self._on_screen_label: FrameLabel | None = None
        # The frame the publisher has taken from the buffer and waits to publish, with its epoch.
        self._next_out: tuple[int, Frame] | None = None
        self._last_gen_ms: float | None = None
        self._publish_times: deque[float] = deque(maxlen=30)
        self._progress: dict[str, int] | None = None
        self._last_progress_status = 0.0
        self._backend_changed = False
        self._started_at = clock.now()
        self._status_lock = asyncio.Lock()
        # status.json after a frame is rate-limited (a live cadence would rewrite it 60 times a
        # second): a frame that comes too soon sets _status_due and wakes the status task, which
        # writes it once the interval is up. Its own clock, like the heartbeat: the dream's clock
        # may be a test's fake whose sleeps return at once, and a heartbeat on it would spin;
        # a test that checks the pacing holds this one by hand.
        self._status_clock: Clock = status_clock or SystemClock()
        self._status_interval = g.status_interval
        self._status_written = float("-inf")
        self._status_due = False
        self._status_wake: asyncio.Future[None] | None = None
        # Held while a frame is being published, so pause() returns only once no frame is in flight.
        self._publish_lock = asyncio.Lock()
        # A full disk fails every frame and every status write: one line a minute each, and the
        # snapshot (the viewer's /api/status, when status.json itself cannot be written) says so.
        self._output_failures = WriteFailures(
            log,
            one="frame not published",
            many="frames not published",
            recovered="output writable again",
            monotonic=clock.monotonic,
            now=lambda: iso(clock.now()),
        )
        self._status_failures = WriteFailures(
            log,
            one="status not written",
            many="status writes failed",
            recovered="status.json writable again",
            monotonic=clock.monotonic,
            now=lambda: iso(clock.now()),
        )

        with contextlib.suppress(RuntimeError):  # built outside a loop: bound when run() starts
            events.bind_loop()
        backend.set_progress_callback(self._on_progress)
        backend.set_preview_callback(lambda data, mime: self.events.emit_threadsafe(Preview(data, mime)))
        events.subscribe(Note, self._on_note)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def state_name(self) -> str:
        """What status.json calls the state: the lifecycle's, refined by the backend's health."""
        state = self.lifecycle.state
        return self.supervisor.state.value if state is State.RUNNING else state.value

    @property
    def mode(self) -> DreamMode:
        return self.generator.mode

    @property
    def on_screen(self) -> FrameLabel | None:
        """Who the frame on screen is (None before the first frame of a first run)."""
        return self._on_screen_label

    @property
    def pause_reasons(self) -> list[str]:
        return self.lifecycle.reasons

    @property
    def generating(self) -> bool:
        """True while frames are being made (the system monitor discounts our own GPU load then)."""
        return self._generating

    @property
    def frame_count(self) -> int:
        return self._frame_count

    async def pause(self, reason: str, *, free_memory: bool = False) -> None:
        """Pause for ``reason``: the frame being written finishes, the batch being made stops at
        once (the backend interrupts its sampler), frames already made wait for the resume.
        ``free_memory`` asks everything holding GPU memory to give it back (a game starts)."""
        first = not self.lifecycle.reasons
        if self.lifecycle.hold(reason.strip() or "paused"):
            async with self._publish_lock:  # a frame being written now finishes; no new one starts
                pass
        if first:  # (a dream not started yet may have something queued on a server all the same)
            await self._stop_making()
        if free_memory:
            await self._free_memory()
        await self.write_status()

    async def resume(self, reason: str) -> None:
        """Release ``reason``; with none left the next frame is published at once (a frame made
        before the pause), or, when none was left, the mode restarts from the frame on screen: a
        short transition with nothing planned ahead of it, the quickest way to a new frame."""
        self.lifecycle.release(reason.strip() or "paused")
        held = self._next_out
        nothing_made = not len(self.buffer) and (held is None or held[0] != self._epoch)
        if self.lifecycle.state is State.RUNNING and nothing_made and self._on_screen is not None:
            async with self._making:  # (taken before the producer, which wakes only after we yield)
                self.mode.restart_from(self._on_screen)
        await self.write_status()

    def stop(self) -> None:
        """Ask the loop to stop; ``run()`` returns within a moment, with state saved."""
        self._stop.set()

    async def skip(self) -> str:
        """Move to another prompt now; it is on screen with the next frames made for it."""
        text = self.prompts.skip()
        await self._cut()
        return text

    async def set_prompt(self, text: str) -> str:
        """Dream of ``text`` now (it holds: see prompts.py). ValueError for an empty or over-long
        prompt, before anything changes."""
        text = self.prompts.set_prompt(text)
        await self._cut()
        return text

    async def set_mode(self, name: str) -> None:
        """Switch to mode ``name``, growing on from the frame on screen. ValueError for a name no
        mode registered, or when this dream was built without a way to make modes."""
        if name not in mode_names():
            raise ValueError(f"mode must be one of {', '.join(mode_names())}, got {name!r}")
        if self._mode_factory is None:
            raise ValueError("this dream cannot switch modes")
        if name == self.mode.name:
            return
        mode = self._mode_factory(name)
        self.generator.mode = mode
        self.headroom.reset()  # another mode's batches take another time
        log.info("mode: %s", name)
        await self._cut()

    async def _cut(self) -> None:
        """The user's change takes effect at the next publish: nothing made or planned before it
        is shown or keeps the GPU busy, and the mode grows on from the frame on screen."""
        self._epoch += 1  # first, with no await before it: whatever was made so far is stale now
        async with self._publish_lock:  # a frame being written now is the last of the old ones
            pass
        await self._stop_making(restart=True)
        await self.write_status()

    async def _stop_making(self, *, restart: bool = False) -> None:
        """Cancel the batch being made, withdraw the backend's work for it (queued and planned
        prompts deleted, a running one interrupted); ``restart``: also empty the buffer and restart
        the mode from the frame on screen."""
        batch = self._batch
        if batch is not None:
            batch.cancel()
        async with self._making:  # the producer has let go of the batch, or was not making one
            if restart:
                dropped = await self.buffer.drain()
                if dropped:
                    log.debug("dropped %d frame(s) made ahead", len(dropped))
            await self._guarded(self.backend.interrupt(), "withdraw")
            if restart and self._on_screen is not None:
                self.mode.restart_from(self._on_screen)

    async def _guarded(self, coro: Awaitable[None], what: str) -> None:
        try:
            await coro
        except DreamWindowError as exc:
            log.warning("%s failed: %s", what, exc)

    async def _free_memory(self) -> None:
        """Everything that holds GPU memory gives it back: the backend's models, a local VAE, the
        services' own (the frame cache's CLIP model)."""
        await self._guarded(self.backend.free_memory(), "free memory")
        if self.encoder is not None:
            await self._guarded(self.encoder.free_memory(), "free memory (latent encoder)")
        await self.services.free_memory()

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()`` or ``max_frames``; always leaves status ``stopped``, state saved and
        the services closed."""
        self.events.bind_loop()
        try:
            await self.services.start(self)
            continued = continue_from_last_frame(self.output, self.prompts, self.mode)
            if continued is not None:
                self._on_screen, self._on_screen_label = continued
            self.lifecycle.start()
            await self.write_status()
            await self._run_tasks()
        finally:
            self.lifecycle.stop()
            save_state(self.output, self.prompts, self.mode, self.clock)
            await self.services.close()
            await self.write_status()

    async def _run_tasks(self) -> None:
        producer = asyncio.create_task(self._produce(), name="dream-producer")
        publisher = asyncio.create_task(self._publish_loop(), name="dream-publisher")
        watch = asyncio.create_task(self._watch_backend(), name="dream-backend-watch")
        status = asyncio.create_task(self._status_loop(), name="dream-status")
        stopper = asyncio.create_task(self._stop.wait(), name="dream-stop")
        tasks = (producer, publisher, watch, status, stopper)
        try:
            done, _ = await asyncio.wait({producer, publisher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in done & {producer, publisher}:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            dropped = await self.buffer.drain()
            log.debug("stopping with %d frame(s) made ahead", len(dropped))

    async def _status_loop(self) -> None:
        """Writes the status a frame left waiting once ``status_interval`` has passed since the last
        write, and status.json at least every HEARTBEAT_S, frames or not, so a reader can tell a
        living dream from one whose process is gone. On the status clock."""
        loop = asyncio.get_running_loop()
        while True:
            since = self._status_clock.monotonic() - self._status_written
            due = self._status_due
            wait = min(self._status_interval if due else HEARTBEAT_S, HEARTBEAT_S) - since
            if wait <= 0:
                await self.write_status()
            elif due:
                await self._status_clock.sleep(wait)
            else:
                # Until the heartbeat, or a frame's status left waiting. (asyncio.wait, not
                # wait_for: 3.11's wait_for can swallow the cancel that stops this task.)
                wake = self._status_wake = loop.create_future()
                nap = asyncio.ensure_future(self._status_clock.sleep(wait))
                try:
                    await asyncio.wait({wake, nap}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    nap.cancel()
                    self._status_wake = None

    async def _watch_backend(self) -> None:
        """While ComfyUI is not in use, the supervisor looks for it every probe_interval."""
        if not self.supervisor.switches:
            return
        while True:
            await self.clock.sleep(self.supervisor.probe_interval)
            self._backend_changed = False
            await self.supervisor.check_once()
            if self._backend_changed:
                await self.write_status()

    def _on_backend_state(self) -> None:
        self._backend_changed = True
        if self.lifecycle.state is State.RUNNING:  # (paused/stopped: that state is what shows)
            self.events.emit(StateChanged(self.state_name, tuple(self.lifecycle.reasons)))

    async def _switch_backend(self, apply: Callable[[], None]) -> None:
        """The supervisor points the dream at another backend: between two batches, and the mode
        restarts from the newest frame made, in the new backend's latent space (a transition)."""
        async with self._making:
            apply()
            latest = self._newest_frame()
            if latest is not None:
                self.mode.restart_from(latest)
            self.headroom.reset()
        await self.write_status()

    def _newest_frame(self) -> Frame | None:
        waiting = [f for e, f in self.buffer.items() if e == self._epoch]
        if waiting:
            return waiting[-1]
        held = self._next_out
        if held is not None and held[0] == self._epoch:
            return held[1]
        return self._on_screen

    async def _produce(self) -> None:
        while True:
            await self.lifecycle.running.wait()
            await self.supervisor.until_ready()
            await self.buffer.wait_at_most(self.headroom.target())
            try:
                async with self._making:
                    if self.lifecycle.state is not State.RUNNING:
                        continue  # paused while waiting for room
                    epoch, t0 = self._epoch, self.clock.monotonic()
                    frames = await self._make_batch()
                    if frames is None:
                        continue  # taken back by a pause or a user's change
                    self.headroom.record(self.clock.monotonic() - t0)
                    await self.buffer.put_all([(epoch, f) for f in frames])
            except ExecutionFailed as exc:
                if exc.interrupted and self.lifecycle.state is not State.RUNNING:
                    continue  # we interrupted it ourselves to pause; not a failure
                await self._failed(exc)
                continue
            except DreamWindowError as exc:  # backend down, frame cache unreadable ...
                await self._failed(exc)
                continue
            except Exception as exc:
                # A bug, not a condition: keep the traceback for the log file, keep the dream alive.
                log.debug("unexpected error while generating", exc_info=True)
                await self._failed(exc)
                continue
            if self.supervisor.state is not Health.RUNNING:
                was = self.supervisor.state
                self.supervisor.succeeded()
                if self.supervisor.state is not was:
                    await self.write_status()
            self._progress = None

    async def _failed(self, exc: Exception) -> None:
        """The supervisor decides what a failure means (waiting, falling back, the breaker);
        status says so at once; the next try waits as long as it says."""
        log.debug("generation failed: %s: %s", type(exc).__name__, exc)
        delay = await self.supervisor.failed(exc)
        await self.write_status()
        if delay > 0:
            await self.clock.sleep(delay)

    async def _make_batch(self) -> list[Frame] | None:
        """The mode's next frames, as a task a pause or a user's change can cancel (then None)."""
        batch = asyncio.create_task(self.generator.next_frames(self._on_screen), name="dream-batch")
        self._batch, self._generating = batch, True
        try:
            return await batch
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled ourselves (a stop), not just the batch
            return None
        finally:
            self._batch, self._generating = None, False

    async def _publish_loop(self) -> None:
        interval = self.config.generation.frame_interval
        due = self.clock.monotonic()
        while True:
            self._next_out = epoch, frame = await self.buffer.get()
            try:
                shown = await self._publish_when_due(epoch, frame, due)
            finally:
                self._next_out = None
            if not shown:
                continue  # made before the user's change: never shown
            due = max(due + interval, self.clock.monotonic()) if interval > 0 else self.clock.monotonic()
            if self.max_frames is not None and self._frame_count >= self.max_frames:
                log.info("reached --max-frames %d", self.max_frames)
                self.stop()
                return

    async def _publish_when_due(self, epoch: int, frame: Frame, due: float) -> bool:
        """Publish ``frame`` at ``due`` (later while paused); False when a user's change made it
        stale first."""
        while epoch == self._epoch:
            await self.lifecycle.running.wait()
            wait = due - self.clock.monotonic()
            if wait > 0:
                await self.clock.sleep(wait)
                continue  # re-check: we may have been paused or changed while waiting
            async with self._publish_lock:
                if self.lifecycle.state is not State.RUNNING or epoch != self._epoch:
                    continue
                await self._publish(frame)
                return True
        return False

    async def _publish(self, frame: Frame) -> None:
        fut = asyncio.ensure_future(asyncio.to_thread(self.output.publish, frame))
        try:
            published = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # Let an in-flight write finish so current_frame.png and the history stay whole, and
            # count it: it is on screen now, and the final status must say so.
            done, _ = await asyncio.wait([fut], timeout=1.5)
            if fut in done and not fut.cancelled() and fut.exception() is None:
                self._on_published(frame, fut.result())
            raise
        except FrameWriteError as exc:
            if self._output_failures.failed(exc.reason, exc.path):
                await self.write_status()  # (it may not be writable either; the snapshot says it)
            return
        self._output_failures.succeeded()
        self._on_published(frame, published)
        if frame.generated:
            try:
                await self.frame_cache.remember(frame, published.path)
            except DreamWindowError as exc:
                log.warning("frame not cached: %s", exc)
        if self._status_clock.monotonic() - self._status_written >= self._status_interval:
            await self.write_status()
        else:
            self._status_due = True  # the status task writes it once the interval is up
            if self._status_wake is not None:
                _settle(self._status_wake)

    def _on_published(self, frame: Frame, published: PublishedFrame) -> None:
        frame.index = published.index
        self._frame_count += 1
        self._on_screen, self._on_screen_label = frame, published.label
        if frame.generated:
            self._last_gen_ms = frame.generation_ms
        self._publish_times.append(self.clock.monotonic())
        self.prompts.frame_done()
        self.events.emit(
            FramePublished(
                published.index,
                frame.prompt,
                frame.kind,
                published.path,
                published.png,
                frame.image,
                seed=frame.seed,
                mode=frame.mode,
                backend=frame.backend,
                model=frame.model,
            )
        )

    # --- events ---------------------------------------------------------------------------

    def _on_progress(self, value: int, maximum: int) -> None:
        self._progress = {"value": int(value), "max": int(maximum)}
        self.events.emit_threadsafe(Progress(int(value), int(maximum)))

    def _on_note(self, note: Note) -> None:
        if note.text not in self.notes:
            self.notes.append(note.text)

    # --- status and state -----------------------------------------------------------------

    def frames_per_minute(self) -> float:
        t = self._publish_times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return round((len(t) - 1) * 60.0 / (t[-1] - t[0]), 2)

    def snapshot(self) -> dict[str, object]:
        g = self.config.generation
        shown = self._on_screen_label
        reasons = self.lifecycle.reasons
        status: dict[str, object] = {
            # paused / stopped / starting, or while the lifecycle runs, what the backend allows:
            # running, waiting (for a backend, see backend_health.reason) or degraded.
            "state": self.state_name,
            "pause_reason": reasons[0] if reasons else None,
            "pause_reasons": reasons,
            "mode": self.mode.name,
            "modes": mode_names(),
            "backend": self.backend.name,
            "backend_is_ai": self.backend.is_ai,
            "model": g.model.value if self.backend.is_ai else "procedural",
            "backend_health": self.supervisor.describe(),
            "frame_count": self._frame_count,
            "frame_index": self.output.last_index,
            # The prompt of the frame on screen; frames for next_prompt may not be out yet.
            "current_prompt": shown.prompt if shown else None,
            "next_prompt": self.prompts.current,
            "prompt_hold": self.prompts.describe_hold(),
            "on_screen": shown.describe() if shown else None,
            "current_frame": str(self.output.current_path),
            "last_frame_kind": shown.kind if shown else None,
            "last_generation_ms": round(self._last_gen_ms, 1) if self._last_gen_ms is not None else None,
            "frames_per_minute": self.frames_per_minute(),
            "progress": self._progress,
            "buffer": {"size": len(self.buffer), **self.headroom.describe()},
            "size": {"width": g.width, "height": g.height},
            "notes": list(self.notes),
            "started_at": iso(self._started_at),
            "updated_at": iso(self.clock.now()),
            "version": __version__,
            "pid": os.getpid(),
            "heartbeat_s": HEARTBEAT_S,
            # {"ok": true}, or why frames are not being published (a full disk) and how many were lost.
            "output": self._output_failures.describe(),
        }
        # The backend in use adds its own (ComfyUI: its servers and GPU duty; the built-in
        # engine nothing).
        status.update(self.backend.status_sections())
        status.update(self.services.describe())  # viewer, monitor, cache ...: each its own section
        return status

    async def write_status(self) -> None:
        async with self._status_lock:
            # This snapshot holds everything so far: a frame's status waiting is written with it.
            self._status_due = False
            self._status_written = self._status_clock.monotonic()
            try:
                await asyncio.to_thread(self.status_writer.write, self.snapshot())
            except FrameWriteError as exc:
                self._status_failures.failed(exc.reason, exc.path)
            else:
                self._status_failures.succeeded()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
