"""Live updates for the viewer: controller events pushed over one WebSocket per page.

Each page gets a bounded queue. The controller emits synchronously and must never wait on a slow
browser, so when a page falls behind we drop what goes stale anyway (progress, previews) and keep
what changes what is on screen (frames, state, prompts). Events may arrive from a worker thread
(a backend's progress callback); they are handed to the loop with ``call_soon_threadsafe``.

Messages, all JSON text frames ``{"type": ..., ...}``:

* ``hello``     on connect: ``status`` (the full snapshot), ``frame`` (index and url of the frame on
  screen now, or null), ``crossfade_ms``, ``show_previews``
* ``frame``     ``index``, ``url``, ``prompt``, ``kind``, ``status``
* ``state``     ``state``, ``reasons``, ``status``
* ``prompt``    ``prompt``, ``why``
* ``progress``  ``value``, ``max``
* ``preview``   ``mime``, ``data`` (base64; only when ``viewer.show_previews``)
* ``injection`` ``label``
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from dream_window.dream.controller import DreamController

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
_DROPPABLE = frozenset({"progress", "preview"})
# Prompts of recently published frames, so "like" can tell the cache which prompt made a frame.
_RECENT_FRAMES = 256


def frame_url(index: int) -> str:
    return f"/api/frames/{index}"


class LiveHub:
    """Fans controller events out to every connected page."""

    def __init__(self, controller: DreamController, *, crossfade_ms: int, show_previews: bool) -> None:
        self.controller = controller
        self.crossfade_ms = crossfade_ms
        self.show_previews = show_previews
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: Any = None
        self.frame_prompts: OrderedDict[int, str] = OrderedDict()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._unsubscribe = self.controller.events.subscribe(self._on_event)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for q in list(self._clients):
            self._offer(q, None)  # tells each socket handler to close

    # --- from the controller ---------------------------------------------------------------

    def _on_event(self, name: str, payload: dict[str, Any]) -> None:
        if threading.get_ident() == self._loop_thread:
            self._dispatch(name, payload)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._dispatch, name, payload)

    def _dispatch(self, name: str, payload: dict[str, Any]) -> None:
        msg = self._message(name, payload)
        if msg is None:
            return
        text = json.dumps(msg, ensure_ascii=False, default=str)
        for q in list(self._clients):
            self._offer(q, text, droppable=name in _DROPPABLE)

    def _message(self, name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if name == "frame":
            index = int(payload["index"])
            self.frame_prompts[index] = str(payload.get("prompt", ""))
            while len(self.frame_prompts) > _RECENT_FRAMES:
                self.frame_prompts.popitem(last=False)
            # The file path stays on the server: pages address frames by index only.
            return {
                "type": "frame",
                "index": index,
                "url": frame_url(index),
                "prompt": payload.get("prompt"),
                "kind": payload.get("kind"),
                "status": self.controller.snapshot(),
            }
        if name == "state":
            return {"type": "state", **payload, "status": self.controller.snapshot()}
        if name == "preview":
            if not self.show_previews:
                return None
            data = payload.get("data") or b""
            return {
                "type": "preview",
                "mime": payload.get("mime", "image/jpeg"),
                "data": base64.b64encode(data).decode("ascii"),
            }
        if name in ("prompt", "progress", "injection"):
            return {"type": name, **payload}
        return None

    @staticmethod
    def _offer(q: asyncio.Queue[str | None], item: str | None, *, droppable: bool = False) -> None:
        try:
            q.put_nowait(item)
        except asyncio.QueueFull:
            if droppable:
                return  # a stale progress tick or preview is not worth a slot
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()  # make room: the oldest message is the least useful one
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(item)

    # --- to a page -------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        status = self.controller.snapshot()
        index = self.controller.output.last_index
        frame = None
        if index and self.controller.output.path_for(index).exists():
            frame = {"index": index, "url": frame_url(index)}
        return {
            "type": "hello",
            "status": status,
            "frame": frame,
            "crossfade_ms": self.crossfade_ms,
            "show_previews": self.show_previews,
        }

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self._clients.add(q)
        log.debug("viewer connected (%d open)", len(self._clients))
        reader = asyncio.create_task(self._drain_incoming(ws, q), name="viewer-ws-reader")
        try:
            await ws.send_str(json.dumps(self.hello(), ensure_ascii=False, default=str))
            while True:
                item = await q.get()
                if item is None or ws.closed:
                    break
                await ws.send_str(item)
        except (ConnectionResetError, RuntimeError) as exc:  # the page went away mid-send
            log.debug("viewer connection dropped: %s", exc)
        finally:
            self._clients.discard(q)
            reader.cancel()
            await asyncio.wait([reader])  # unlike suppress(CancelledError), never eats our own cancellation
            await ws.close()
            log.debug("viewer disconnected (%d open)", len(self._clients))
        return ws

    @staticmethod
    async def _drain_incoming(ws: web.WebSocketResponse, q: asyncio.Queue[str | None]) -> None:
        """Pages send nothing we act on (controls go through POST); this notices a closed socket."""
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
        LiveHub._offer(q, None)
