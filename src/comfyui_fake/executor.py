"""The prompt queue and the worker that runs it, one prompt at a time, as ComfyUI's does.

Recorded facts it keeps (``08_interrupt_queue_free``, ``05_caching``, PROTOCOL.md):

* the queue ``number`` counts up from 0 per process (``front`` makes it negative) and orders the
  pending prompts; ``/queue`` items and ``history[id]["prompt"]`` are the same 5-tuple;
* each accepted prompt is followed by two ``status`` broadcasts;
* ``/queue`` delete and clear touch only pending prompts; ``/interrupt`` stops the running one,
  and names of prompts that are not running are ignored;
* node outputs are cached across prompts as ComfyUI's default cache does: one entry per node id,
  used when the node's key (class, values, inputs' keys) is the same, and dropped when a prompt
  without that id starts; ``/free`` empties the cache, so the next prompt loads everything again.

Model files: the first load of a file after a start (or after ``/free``) takes
``model_load_delay`` seconds, as a real checkpoint load does, and counts in ``stats.model_loads``;
later prompts find the loader's output cached. Like ComfyUI's (which checks for interrupts only at
sampler steps), a load runs to its end; an interrupt lands before the next node. A broken file
fails at once, before any load time (``faults.load_error``).

How one prompt runs, message by message, is :mod:`comfyui_fake.prompt_run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from typing import Any

from comfyui_fake import protocol
from comfyui_fake.faults import Faults
from comfyui_fake.nodes import Latent, NodeFailure, RunContext, resolve_annotated
from comfyui_fake.nodes.values import StepHook
from comfyui_fake.prompt_run import PromptRun
from comfyui_fake.records import CacheEntry, Folders, QueueItem, Stats
from comfyui_fake.schemas import Schemas
from comfyui_fake.sockets import SocketHub
from comfyui_fake.validation import FILE_CHECKED
from dream_window.backends.builtin import BuiltinEngine

log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self, *, engine: BuiltinEngine, folders: Folders, schemas: Schemas, faults: Faults, hub: SocketHub
    ) -> None:
        self.engine = engine
        self.folders = folders
        self.schemas = schemas
        self.faults = faults
        self.hub = hub
        self.stats = Stats()
        self.step_delay = 0.0
        self.model_load_delay = 0.0
        self.decode_delay = 0.0  # seconds per image VAEDecode makes
        self._worker: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        """Everything a process restart forgets."""
        self._next_number = 0
        self.pending: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.current_node: str | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.cache: dict[str, CacheEntry] = {}
        self.loaded_models: set[str] = set()
        self.interrupt_requested = False
        self.preview_suffixes: dict[str, str] = {}
        self._wake = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="comfyui-fake-worker")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    # --- the queue ---------------------------------------------------------------------------

    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    async def broadcast_status(self) -> None:
        await self.hub.broadcast("status", protocol.status(self.queue_remaining()))

    def take_number(self, *, front: bool, given: Any = None) -> float | int:
        """The queue number of a POST /prompt. Every JSON body takes one, accepted or not: the
        recorded numbers run on through rejected prompts (``06_validation_errors``)."""
        if given is not None:
            return float(given)
        number = self._next_number
        self._next_number += 1
        return -number if front else number

    async def submit(self, item: QueueItem) -> None:
        self.pending.append(item)
        self.pending.sort(key=lambda q: q.number)
        await self.broadcast_status()
        await self.broadcast_status()
        self._wake.set()

    def queue_snapshot(self) -> dict[str, list[list[Any]]]:
        return {
            "queue_running": [self.running.as_tuple()] if self.running else [],
            "queue_pending": [q.as_tuple() for q in self.pending],
        }

    async def withdraw(self, *, clear: bool, delete: list[str]) -> None:
        if clear:
            self.pending.clear()
        self.pending = [q for q in self.pending if q.prompt_id not in delete]
        await self.broadcast_status()

    def interrupt(self, prompt_id: str | None) -> None:
        if self.running is not None and prompt_id in (None, self.running.prompt_id):
            self.interrupt_requested = True
            self.faults.release()  # a stalled sampler must wake up to notice

    def free(self) -> None:
        """Node outputs and loaded models are forgotten: the next prompt loads its models again."""
        self.cache.clear()
        self.loaded_models.clear()

    # --- running -----------------------------------------------------------------------------

    async def load_model(self, name: str) -> None:
        """A loader reading ``name``: fails as a broken file does, or takes the load time once."""
        error = self.faults.load_error(name)
        if error is not None:
            raise NodeFailure("safetensors._safetensors_rust.SafetensorError", error)
        if name in self.loaded_models:
            return
        if self.model_load_delay > 0:
            await asyncio.sleep(self.model_load_delay)
        self.loaded_models.add(name)
        self.stats.model_loads += 1

    def node_context(self, on_step: StepHook | None = None) -> RunContext:
        async def nothing(i: int, n: int, latent: Latent | None) -> None:
            return None

        return RunContext(
            self.engine,
            self.folders.input,
            self.folders.output,
            self.folders.temp,
            on_step or nothing,
            self.load_model,
            self.faults.fail_classes,
            self.preview_suffixes,
            self.decode_delay,
        )

    def file_exists(self, name: str) -> bool:
        """LoadImage / LoadLatent's own validation: the annotated path names a file."""
        try:
            return resolve_annotated(name, self.node_context()).is_file()
        except NodeFailure:
            return False

    def file_digest(self, class_type: str, name: str, value: Any) -> str | None:
        if (class_type, name) not in FILE_CHECKED:
            return None
        data = resolve_annotated(str(value), self.node_context()).read_bytes()
        return hashlib.sha256(data).hexdigest()

    def node_on_reconnect(self, sid: str) -> str | None:
        """The node a reconnecting client is told is executing (``executing {node}``)."""
        if self.running is not None and self.running.client_id == sid:
            return self.current_node
        return None

    async def prime(self, graph: dict[str, Any], nodes: list[str]) -> None:
        """Run ``nodes`` quietly so later prompts find them cached."""
        item = QueueItem(-1, f"prime-{uuid.uuid4()}", graph, {}, list(nodes))
        await PromptRun(self, item).run()
        self.history.pop(item.prompt_id, None)

    async def _work(self) -> None:
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            item = self.pending.pop(0)
            self.running = item
            self.interrupt_requested = False
            t0 = time.perf_counter()
            if self.stats.first_start is None:
                self.stats.first_start = t0
            try:
                await PromptRun(self, item).run()
            except Exception:  # a bug in the fake must not stop its queue silently
                log.exception("comfyui_fake: executing %s crashed", item.prompt_id)
            finally:
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.last_end = time.perf_counter()
                self.stats.prompts += 1
                self.running = None
                self.current_node = None
