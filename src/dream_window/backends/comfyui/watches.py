"""What the client knows about each of our prompts on one server, and what a prompt's messages mean.

The WebSocket reader routes every frame here (:meth:`Watches.route_text` /
:meth:`Watches.route_binary`); a waiting caller reads its :class:`Watch`. Text events fill a watch
(outputs from ``executed``, cached nodes, the terminal error or interrupt, progress) and mark it
done at ``executing {node: null}``; previews go to the prompt named in their metadata, or to the
one executing now (the older header layout names none). When the socket was quiet or dropped,
:func:`apply_history` reads the same facts from a ``/history`` entry instead, and :func:`result_of`
turns a finished watch into a :class:`PromptResult` or our ``ExecutionFailed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dream_window.backends.comfyui.duty import DutyCycle
from dream_window.backends.comfyui.messages import Message, MessageError, Preview, parse_binary, parse_text
from dream_window.errors import ExecutionFailed

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
PreviewFn = Callable[[Preview], None]


@dataclass(frozen=True, slots=True)
class OutputFile:
    filename: str
    subfolder: str
    type: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputFile:
        return cls(str(d["filename"]), str(d.get("subfolder", "")), str(d.get("type", "output")))

    def annotated(self) -> str:
        """How LoadImage / LoadLatent name this file: ``"sub/name.png [output]"``."""
        path = f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename
        return path if self.type == "input" else f"{path} [{self.type}]"


@dataclass(slots=True)
class PromptResult:
    prompt_id: str
    # node id → {"images": [OutputFile], "latents": [OutputFile], ...}
    outputs: dict[str, dict[str, list[OutputFile]]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)

    def files(self, node_id: str, kind: str = "images") -> list[OutputFile]:
        return list(self.outputs.get(node_id, {}).get(kind, []))


def parse_outputs(raw: Mapping[str, Any]) -> dict[str, list[OutputFile]]:
    out: dict[str, list[OutputFile]] = {}
    for kind, items in raw.items():
        if isinstance(items, list):
            files = [OutputFile.from_dict(i) for i in items if isinstance(i, dict) and "filename" in i]
            if files:
                out[kind] = files
    return out


@dataclass
class Watch:
    """What the reader task knows about one of our prompts."""

    prompt_id: str
    on_progress: ProgressFn | None = None
    on_preview: PreviewFn | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    outputs: dict[str, dict[str, list[OutputFile]]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    terminal: Message | None = None
    done: bool = False
    reconnected: bool = False
    missing: int = 0
    unreachable: int = 0


class Watches:
    """Our prompts on one server that have not finished, and the server's queue as last reported."""

    def __init__(self, base_url: str, *, duty: DutyCycle | None = None) -> None:
        self._base_url = base_url
        self._duty = duty  # fed the execution timestamps (duty.py)
        self._by_id: dict[str, Watch] = {}
        self._executing: str | None = None  # prompt id of the last `executing` seen (type-1 previews)
        self.queue_remaining = 0

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self._by_id

    def ids(self) -> list[str]:
        return list(self._by_id)

    def add(self, watch: Watch) -> Watch:
        self._by_id[watch.prompt_id] = watch
        return watch

    def get(self, prompt_id: str) -> Watch | None:
        return self._by_id.get(prompt_id)

    def pop(self, prompt_id: str) -> Watch | None:
        return self._by_id.pop(prompt_id, None)

    def rename(self, old: str, new: str) -> None:
        """An older server ignored our prompt id and made its own."""
        watch = self._by_id.pop(old)
        watch.prompt_id = new
        self._by_id[new] = watch

    def connection_changed(self) -> None:
        """Messages may have been lost: every waiter settles by /history once it is quiet."""
        for w in self._by_id.values():
            w.reconnected = True
            w.wake.set()

    def route_text(self, text: str) -> None:
        try:
            msg = parse_text(text)
        except MessageError as exc:
            log.debug("ignoring a frame from %s: %s", self._base_url, exc)
            return
        if msg.type == "status":
            info = msg.data.get("status", {}).get("exec_info", {})
            self.queue_remaining = int(info.get("queue_remaining", self.queue_remaining) or 0)
            return
        pid = msg.prompt_id
        if msg.type == "executing" and pid:
            self._executing = pid if msg.data.get("node") is not None else None
        watch = self._by_id.get(pid) if pid else None
        if self._duty is not None:
            self._duty.on_message(msg, ours=watch is not None)
        if watch is None:
            return
        if msg.type == "execution_cached":
            watch.cached = [str(n) for n in msg.data.get("nodes", [])]
        elif msg.type == "executed":
            watch.outputs[str(msg.data.get("node"))] = parse_outputs(msg.data.get("output") or {})
        elif msg.type in ("execution_error", "execution_interrupted"):
            watch.terminal = msg
        elif msg.type == "progress" and watch.on_progress is not None:
            watch.on_progress(int(msg.data.get("value", 0)), int(msg.data.get("max", 0)))
        elif msg.is_done:
            watch.done = True
        watch.wake.set()

    def route_binary(self, frame: bytes) -> None:
        try:
            preview = parse_binary(frame)
        except MessageError as exc:
            log.debug("ignoring a binary frame from %s: %s", self._base_url, exc)
            return
        if preview is None:
            return
        pid = preview.prompt_id or self._executing
        watch = self._by_id.get(pid) if pid else None
        if watch is not None and watch.on_preview is not None:
            watch.on_preview(preview)


def apply_history(watch: Watch, entry: Mapping[str, Any]) -> bool:
    """Fill ``watch`` from its ``/history`` entry; True when that says the prompt has finished."""
    status = entry.get("status") or {}
    if not status.get("completed") and status.get("status_str") != "error":
        return False
    for nid, raw in (entry.get("outputs") or {}).items():
        watch.outputs[nid] = parse_outputs(raw)
    if status.get("status_str") == "error":
        for event, data in status.get("messages") or []:
            if event in ("execution_error", "execution_interrupted"):
                watch.terminal = Message(event, data)
        if watch.terminal is None:
            watch.terminal = Message("execution_error", {"exception_message": "failed (see server log)"})
    watch.done = True
    return True


def result_of(watch: Watch, base_url: str) -> PromptResult:
    """A finished watch as our result, or the ``ExecutionFailed`` its terminal message means."""
    term = watch.terminal
    if term is not None and term.type == "execution_interrupted":
        raise ExecutionFailed(
            f"ComfyUI at {base_url}: prompt interrupted",
            server=base_url,
            prompt_id=watch.prompt_id,
            node_id=term.data.get("node_id"),
            node_type=term.data.get("node_type"),
            interrupted=True,
        )
    if term is not None and term.type == "execution_error":
        d = term.data
        msg = str(d.get("exception_message", "")).strip() or "execution failed"
        raise ExecutionFailed(
            f"ComfyUI at {base_url}: node {d.get('node_id')} ({d.get('node_type')}) failed: "
            f"{d.get('exception_type', 'error')}: {msg}",
            server=base_url,
            prompt_id=watch.prompt_id,
            node_id=d.get("node_id"),
            node_type=d.get("node_type"),
        )
    return PromptResult(watch.prompt_id, watch.outputs, watch.cached)
