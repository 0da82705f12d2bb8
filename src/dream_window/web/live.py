"""Live updates for the viewer: the dream's events pushed over one WebSocket per page.

Each page gets a bounded queue. The bus delivers synchronously, on the event loop, and must never
wait on a slow browser, so when a page falls behind we drop what goes stale anyway (progress,
previews) and keep what changes what is on screen (frames, state, prompts).

Messages, all JSON text frames ``{"type": ..., ...}``, the event's own payload (``events.py``)
plus, where noted, what the page needs besides:

* ``hello``     on connect: ``status`` (the full snapshot), ``frame`` (the frame on screen now:
  ``index``, ``url``, and when known ``prompt``, ``kind``, ``seed``, ``mode``, ``backend``,
  ``model``; or null), ``crossfade_ms``, ``show_previews``
* ``frame``     ``index``, ``url``, ``prompt``, ``kind``, ``seed``, ``mode``, ``backend``, ``model``,
  ``status`` (the file path stays here); the page shows ``prompt`` with this frame
* ``state``     ``state``, ``reasons``, ``status``
* ``prompt``    ``prompt``, ``why``, ``held``, ``held_s``: what frames are made for *next* (the
  page says "next: ..." until a frame with it arrives)
* ``progress``  ``value``, ``max``
* ``preview``   ``mime``, ``data`` (base64; only when ``viewer.show_previews``)
* ``injection`` ``label``

Notes are not sent: they reach the page in ``status.notes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import WSMsgType, web

from dream_window.dream.service import Dream
from dream_window.events import (
    Event,
    FramePublished,
    Injection,
    Preview,
    Progress,
    PromptChanged,
    StateChanged,
)

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
_SENT: tuple[type[Event], ...] = (FramePublished, StateChanged, PromptChanged, Progress, Preview, Injection)
_DROPPABLE: tuple[type[Event], ...] = (Progress, Preview)
# Prompts of recently published frames, so "like" can tell the cache which prompt made a frame.
_RECENT_FRAMES = 256


def frame_url(index: int) -> str:
    return f"/api/frames/{index}"


class LiveHub:
    """Fans controller events out to every connected page."""

    def __init__(self, controller: Dream, *, crossfade_ms: int, show_previews: bool) -> None:
        self.controller = controller
        self.crossfade_ms = crossfade_ms
        self.show_previews = show_previews
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.frame_prompts: OrderedDict[int, str] = OrderedDict()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self._unsubscribe = self.controller.events.subscribe(Event, self._on_event)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for q in list(self._clients):
            self._offer(q, None)  # tells each socket handler to close

    # --- from the dream -------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        msg = self._message(event)
        if msg is None:
            return
        text = json.dumps(msg, ensure_ascii=False, default=str)
        for q in list(self._clients):
            self._offer(q, text, droppable=isinstance(event, _DROPPABLE))

    def _message(self, event: Event) -> dict[str, object] | None:
        if not isinstance(event, _SENT) or (isinstance(event, Preview) and not self.show_previews):
            return None
        msg: dict[str, object] = {"type": event.name}
        if isinstance(event, FramePublished):
            self.frame_prompts[event.index] = event.prompt
            while len(self.frame_prompts) > _RECENT_FRAMES:
                self.frame_prompts.popitem(last=False)
            msg["index"] = event.index
            msg["url"] = frame_url(event.index)  # pages address frames by index, never by path
        msg.update(event.payload())
        if isinstance(event, FramePublished | StateChanged):
            msg["status"] = self.controller.snapshot()
        return msg

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

    def hello(self) -> dict[str, object]:
        status = self.controller.snapshot()
        index = self.controller.output.last_index
        frame: dict[str, object] | None = None
        if index and self.controller.output.path_for(index).exists():
            frame = {"index": index, "url": frame_url(index)}
            shown = self.controller.on_screen
            if shown is not None and shown.index == index:
                frame.update(shown.describe())
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
