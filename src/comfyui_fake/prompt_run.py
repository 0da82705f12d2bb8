"""One prompt's execution and the message sequence it sends, as recorded (``02_txt2img``,
``05_caching``, ``07_runtime_error``, ``08_interrupt_queue_free``):

1. ``execution_start``, then ``execution_cached`` with the nodes served from the cache; a cached
   output node replays its old ``executed`` (no new file).
2. Per node that runs: ``progress_state`` (it is "running"), ``executing``; per sampler step a
   ``progress_state`` and a ``progress``, with a binary preview when the prompt asked for
   previews (type 4 before its ``progress``, type 1 after); ``executed`` for an output node;
   ``progress_state`` ("finished").
3. ``execution_success`` (or ``execution_error`` / ``execution_interrupted``), then ``status``.
4. The history entry is written, and only then ``executing {node: null}``: a /history poll right
   after the terminal message can still see ``{}`` (the recorded race).
"""

from __future__ import annotations

import asyncio
import copy
import traceback
from typing import Any, Protocol

from comfyui_fake import graph_order, protocol
from comfyui_fake.faults import Faults
from comfyui_fake.nodes import Interrupted, Latent, NodeFailure, RunContext, preview_jpeg, run_node
from comfyui_fake.nodes.values import StepHook
from comfyui_fake.records import CacheEntry, QueueItem, Stats
from comfyui_fake.schemas import Schemas
from comfyui_fake.sockets import SocketHub
from comfyui_fake.validation import is_link
from dream_window.backends.builtin import BuiltinEngine

_PREVIEW_METHODS = ("latent2rgb", "taesd", "auto")


def _exception_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _shown(value: Any) -> Any:
    """How ``current_inputs`` shows a value: primitives as they are, anything else as text."""
    return value if value is None or isinstance(value, bool | int | float | str) else type(value).__name__


class RunHost(Protocol):
    """What a run reads and updates on the executor that started it (the queue's shared state)."""

    engine: BuiltinEngine
    schemas: Schemas
    faults: Faults
    hub: SocketHub
    stats: Stats
    step_delay: float
    cache: dict[str, CacheEntry]
    history: dict[str, dict[str, Any]]
    preview_suffixes: dict[str, str]
    running: QueueItem | None
    current_node: str | None
    interrupt_requested: bool

    def node_context(self, on_step: StepHook | None = None) -> RunContext: ...

    def file_digest(self, class_type: str, name: str, value: Any) -> str | None: ...

    async def broadcast_status(self) -> None: ...


class PromptRun:
    def __init__(self, host: RunHost, item: QueueItem) -> None:
        self.host = host
        self.item = item
        self.pid = item.prompt_id
        self.graph = item.graph
        self.client_id = item.client_id
        self.previews = str(item.extra_data.get("preview_method", "none")) in _PREVIEW_METHODS
        self.messages: list[list[Any]] = []  # what history's status keeps
        self.states: dict[str, dict[str, Any]] = {}
        self.results: dict[str, tuple[Any, ...]] = {}
        self.ui: dict[str, Any] = {}
        self.executed: list[str] = []
        self.node = ""  # the node running now

    async def _emit(self, event: str, data: dict[str, Any], *, record: bool = False) -> None:
        if record:
            self.messages.append([event, data])
        await self.host.hub.to_client(
            self.client_id, event, data, progress=event in ("progress", "progress_state")
        )

    async def _state(self, nid: str, value: float, maximum: float, state: str) -> None:
        """Recorded numbers: a node starts at 0.0 of 1.0, sampler steps are ints (1 of 4), and a
        finished node is at its max, whichever that was; a replayed cached output is 1 of 1."""
        self.states[nid] = protocol.node_state(self.pid, nid, value, maximum, state)
        await self._emit("progress_state", {"prompt_id": self.pid, "nodes": copy.deepcopy(self.states)})

    async def _finished(self, nid: str) -> None:
        top = self.states[nid]["max"]
        await self._state(nid, top, top, "finished")

    async def run(self) -> None:
        info = self.host.schemas.object_info()
        # ComfyUI keeps a node object per (id, class) only while consecutive prompts have it: a
        # PreviewImage id missing from this prompt gets a fresh object (and file name) later.
        for nid in list(self.host.preview_suffixes):
            if self.graph.get(nid, {}).get("class_type") != "PreviewImage":
                del self.host.preview_suffixes[nid]
        needed = graph_order.needed(self.graph, self.item.outputs)
        keys = graph_order.signatures(self.graph, needed, self.host.file_digest)
        # ComfyUI's default (classic) cache, as recorded: one entry per node id (the last output
        # made under that id, with its key); as a prompt starts, the entries of ids it does not
        # have are dropped. A node is cached when its id's entry has its key. So after 04's
        # img2img graph, 02's nodes 5 and 6 run again (05_caching), and a prompt that failed at
        # its loader leaves the loader and text nodes of the one before cached (07_runtime_error).
        for nid in [n for n in self.host.cache if n not in self.graph]:
            del self.host.cache[nid]
        cached = [nid for nid in needed if nid in self.host.cache and self.host.cache[nid][0] == keys[nid]]
        order = graph_order.execution_order(self.graph, self.item.outputs, set(cached), info)
        await self._emit("execution_start", protocol.stamped(self.pid), record=True)
        await self._emit("execution_cached", protocol.stamped(self.pid, nodes=cached), record=True)
        status_str, completed = "success", True
        try:
            await self._replay_cached(cached, keys)
            for nid in order:
                if nid not in self.results:  # a cached output node is in the order too
                    await self._run_node(nid, keys[nid], info)
            await self._emit("execution_success", protocol.stamped(self.pid), record=True)
        except Interrupted:
            status_str, completed, self.ui = "error", False, {}
            node_type = self.graph[self.node]["class_type"] if self.node else None
            data = protocol.execution_interrupted(self.pid, self.node or None, node_type, self.executed)
            await self._emit("execution_interrupted", data, record=True)
        except NodeFailure as failure:
            status_str, completed, self.ui = "error", False, {}
            await self._emit("execution_error", self._error(failure, needed), record=True)
        self.host.running = None
        await self.host.broadcast_status()
        await asyncio.sleep(0)  # let a /history poll in before the entry exists, as ComfyUI does
        self.host.history[self.pid] = protocol.history_entry(
            self.item.as_tuple(), self.ui, status_str=status_str, completed=completed, messages=self.messages
        )
        await self._emit("executing", protocol.executing(self.pid, None))

    async def _replay_cached(self, cached: list[str], keys: dict[str, str]) -> None:
        for nid in cached:
            _, outs, ui = self.host.cache[nid]
            self.results[nid] = outs
            if ui is not None:
                self.ui[nid] = ui
                await self._emit("executed", protocol.executed(self.pid, nid, ui))
                await self._state(nid, 1, 1, "finished")

    async def _run_node(self, nid: str, key: str, info: dict[str, Any]) -> None:
        if self.host.interrupt_requested:
            raise Interrupted()
        class_type = self.graph[nid]["class_type"]
        self.node = self.host.current_node = nid
        await self._state(nid, 0.0, 1.0, "running")
        await self._emit("executing", protocol.executing(self.pid, nid))
        inputs = {
            k: self.results[v[0]][v[1]] if is_link(v) else v
            for k, v in (self.graph[nid].get("inputs") or {}).items()
        }
        graph_order.with_defaults(info, class_type, inputs)
        ctx = self.host.node_context(self._on_step)
        try:
            outs, ui = await run_node(class_type, inputs, ctx, prompt=self.graph, node_id=nid)
        except (NodeFailure, Interrupted):
            raise
        except Exception as exc:  # a node crashed: report it as ComfyUI does, and keep serving
            failure = NodeFailure(_exception_type(exc), str(exc))
            raise failure from exc
        self.results[nid] = outs
        self.host.cache[nid] = (key, outs, ui)
        self.host.stats.executed_nodes += 1
        if ui is not None:
            self.ui[nid] = ui
            await self._emit("executed", protocol.executed(self.pid, nid, ui))
        await self._finished(nid)
        self.executed.append(nid)

    async def _on_step(self, step: int, steps: int, latent: Latent | None) -> None:
        await self.host.faults.wait_released()
        if self.host.interrupt_requested:
            raise Interrupted()
        if self.host.step_delay:
            await asyncio.sleep(self.host.step_delay)
        if self.host.interrupt_requested:
            raise Interrupted()
        await self._state(self.node, step, steps, "running")
        sock = self.host.hub.get(self.client_id)
        frame = None
        if self.previews and sock is not None:
            image = await asyncio.to_thread(preview_jpeg, self.host.engine, latent)
            frame = protocol.preview_frame(
                image, "image/jpeg", prompt_id=self.pid, node_id=self.node, with_metadata=sock.wants_metadata
            )
            if sock.wants_metadata:  # type 4 comes before its progress message
                await self.host.hub.send_bytes(sock, frame)
                frame = None
        await self._emit("progress", protocol.progress(self.pid, self.node, step, steps))
        if frame is not None and sock is not None:  # type 1 comes after it
            await self.host.hub.send_bytes(sock, frame)
        if self.host.faults.step_done():
            await self.host.hub.drop_all()

    def _error(self, failure: NodeFailure, needed: list[str]) -> dict[str, Any]:
        node = self.graph[self.node]
        widgets = {k: [_shown(v)] for k, v in (node.get("inputs") or {}).items() if not is_link(v)}
        return protocol.execution_error(
            self.pid,
            self.node,
            node["class_type"],
            self.executed,
            exception_type=failure.exception_type,
            # ComfyUI sends "{exception}\n{tips}", tips empty but for out-of-memory errors: every
            # recorded runtime message ends in a newline.
            exception_message=f"{failure.message}\n",
            traceback=traceback.format_tb(failure.__traceback__),
            current_inputs=widgets,
            current_outputs=list(needed),
        )
