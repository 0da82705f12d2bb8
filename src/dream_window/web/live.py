"""Live updates for the viewer: the dream's events pushed over one WebSocket per page.

The protocol
------------
A page opens ``/api/live``; the viewer opens ``/api/live?frames=binary`` to be sent each frame's
PNG itself. Other readers (scripts, ``bench/soak.py``) that ask for nothing get text only, as
before, and fetch a frame by its ``url`` if they want it.

Text messages are JSON ``{"type": ..., ...}``: the event's own payload (``events.py``) plus, where
noted, what the page needs besides:

* ``hello``     on connect: ``status`` (the full snapshot), ``frame`` (the frame on screen now:
  ``index``, ``url``, and when known ``prompt``, ``kind``, ``seed``, ``mode``, ``backend``,
  ``model``; or null; the page fetches this one by its url), ``crossfade_ms``, ``show_previews``
* ``frame``     ``index``, ``url``, ``prompt``, ``kind``, ``seed``, ``mode``, ``backend``,
  ``model``, ``t_ms`` (when it was published, on the service's monotonic clock: only differences
  mean anything; the page tells the dream's cadence from them, not from when frames reach it,
  which its own pace decides): to a text-only reader, to a binary page while it says it is hidden, and for a frame
  whose PNG the event did not carry; the page shows ``prompt`` with this frame
* ``status``    ``status`` (the full snapshot): after frames, at most every
  ``status_interval_s`` (1 s) and only when it differs from the last one sent. Frames do not
  carry it: building and sending a snapshot 60 times a second is most of the cost of a frame.
* ``state``     ``state``, ``reasons``, ``status``
* ``prompt``    ``prompt``, ``why``, ``held``, ``held_s``: what frames are made for *next* (the
  page says "next: ..." until a frame with it arrives)
* ``progress``  ``value``, ``max``
* ``preview``   ``mime``, ``data`` (base64; only when ``viewer.show_previews``)
* ``injection`` ``label``

A binary message is one whole frame, so nothing has to be paired up on the page::

    [u32 big-endian N][N bytes: UTF-8 JSON header][the PNG, as the output writer encoded it]

The header is the text ``frame`` message above (``type`` "frame", ``index``, ``url``, who made
it). Seeds are 64-bit: the page parses the header with the same seed-keeping reviver as text.

From the page (text, at most 4 KiB each):

* ``{"type": "ready"}``: it has room for the next frame (it is decoding one at most, none
  waiting). A binary page is sent a PNG only after it said so; each PNG sent uses that up.
* ``{"type": "visibility", "hidden": true|false}``: while hidden it is sent ``frame`` as text, no
  PNGs; shown again it fetches the newest by url, then binary frames resume.

Notes are not sent: they reach the page in ``status.notes``.

Backpressure
------------
The bus delivers synchronously, on the event loop, and must never wait on a slow browser. Each
page has an :class:`Outbox`: what changes what the page knows (``state``, ``prompt``,
``injection``) is kept in order; of what a newer one makes stale (``frame``, ``status``,
``progress``, ``preview``) only the newest not yet sent is kept. The page's one sender takes
everything it may send, in the order it happened, and sends it. A frame waits in the outbox
until the page is ready for one (and while a send waits on a full socket), a newer frame
replacing it there. So at 60 frames a second a page that decodes 20 is sent about 20, the
newest each time, never a backlog: the server holds at most one unsent frame per page, the page
at most one in flight, one decoding and one waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

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

# In-order messages a page may have pending; past it the page has stopped reading (its heartbeat
# will close it), and the oldest go.
QUEUE_SIZE = 64
STATUS_INTERVAL_S = 1.0
_SENT: tuple[type[Event], ...] = (FramePublished, StateChanged, PromptChanged, Progress, Preview, Injection)
# Events of which only the newest unsent one is worth sending, keyed by their slot in the outbox.
_LATEST: dict[type[Event], str] = {FramePublished: "frame", Progress: "progress", Preview: "preview"}
# Prompts of recently published frames, so "like" can tell the cache which prompt made a frame.
_RECENT_FRAMES = 256
BINARY_QUERY = ("frames", "binary")


def frame_url(index: int) -> str:
    return f"/api/frames/{index}"


def _dumps(msg: dict[str, object]) -> str:
    return json.dumps(msg, ensure_ascii=False, default=str)


@dataclass(eq=False)
class FrameMessage:
    """One published frame in both forms, each encoded at most once for all pages."""

    text: str
    png: bytes | None

    @cached_property
    def binary(self) -> bytes | None:
        if self.png is None:
            return None
        header = self.text.encode()
        return b"".join((struct.pack(">I", len(header)), header, self.png))


Item = str | FrameMessage


class Outbox:
    """What one page has yet to be sent (see the module docstring: Backpressure)."""

    def __init__(self, *, binary: bool, limit: int = QUEUE_SIZE) -> None:
        self.binary = binary
        self.hidden = False
        self._ready = True  # the page has room for a binary frame
        self._limit = limit
        self._seq = itertools.count()
        self._ordered: deque[tuple[int, Item]] = deque()
        self._latest: dict[str, tuple[int, Item]] = {}
        self._wake = asyncio.Event()
        self._closed = False
        self.frames_replaced = 0  # frames that a newer one made stale before they were sent

    def put(self, item: Item) -> None:
        if len(self._ordered) >= self._limit:
            self._ordered.popleft()
        self._ordered.append((next(self._seq), item))
        self._wake.set()

    def put_latest(self, slot: str, item: Item) -> None:
        if slot == "frame" and slot in self._latest:
            self.frames_replaced += 1
        self._latest[slot] = (next(self._seq), item)
        self._wake.set()

    def drop_latest(self, slot: str) -> None:
        self._latest.pop(slot, None)

    def page_ready(self) -> None:
        self._ready = True
        self._wake.set()

    def set_hidden(self, hidden: bool) -> None:
        self.hidden = hidden
        self._wake.set()  # a frame held for a ready page may go now, as text

    def _frame_may_go(self) -> bool:
        """Text frames always; a PNG only to a page that has room for it."""
        frame = self._latest.get("frame")
        if frame is None:
            return False
        item = frame[1]
        return (
            self._ready
            or not self.binary
            or self.hidden
            or (isinstance(item, FrameMessage) and item.png is None)
        )

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def take(self) -> list[Item] | None:
        """Everything that may be sent now, oldest first; None once closed."""
        while True:
            if self._closed:
                return None
            slots = [k for k in self._latest if k != "frame" or self._frame_may_go()]
            if self._ordered or slots:
                break
            self._wake.clear()
            await self._wake.wait()
        frame = self._latest.get("frame") if "frame" in slots else None
        if frame is not None and self.binary and not self.hidden and isinstance(frame[1], FrameMessage):
            self._ready = self._ready and frame[1].png is None  # a PNG uses the room up; a url does not
        items = sorted([*self._ordered, *(self._latest.pop(k) for k in slots)], key=lambda pair: pair[0])
        self._ordered.clear()
        return [item for _, item in items]


class LiveHub:
    """Fans controller events out to every connected page."""

    def __init__(
        self,
        controller: Dream,
        *,
        crossfade_ms: int,
        show_previews: bool,
        status_interval_s: float = STATUS_INTERVAL_S,
    ) -> None:
        self.controller = controller
        self.crossfade_ms = crossfade_ms
        self.show_previews = show_previews
        self.status_interval_s = status_interval_s
        self._clients: set[Outbox] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.frame_prompts: OrderedDict[int, str] = OrderedDict()
        self._status_timer: asyncio.TimerHandle | None = None
        self._status_sent_at = float("-inf")  # event-loop time
        self._last_status: str | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def outboxes(self) -> tuple[Outbox, ...]:
        """The connected pages' outboxes (what they are yet to be sent)."""
        return tuple(self._clients)

    def start(self) -> None:
        self._unsubscribe = self.controller.events.subscribe(Event, self._on_event)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        for box in list(self._clients):
            box.close()  # tells each socket handler to close

    # --- from the dream -------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, FramePublished):
            self.frame_prompts[event.index] = event.prompt
            while len(self.frame_prompts) > _RECENT_FRAMES:
                self.frame_prompts.popitem(last=False)
        if not self._clients:
            return  # nobody to tell: not even a snapshot is built
        if not isinstance(event, _SENT) or (isinstance(event, Preview) and not self.show_previews):
            return
        msg: dict[str, object] = {"type": event.name}
        if isinstance(event, FramePublished):
            msg["index"] = event.index
            msg["url"] = frame_url(event.index)  # pages address frames by index, never by path
            msg["t_ms"] = round(asyncio.get_running_loop().time() * 1000)
        msg.update(event.payload())
        slot = _LATEST.get(type(event))
        if isinstance(event, FramePublished):
            frame = FrameMessage(_dumps(msg), event.png)
            for box in list(self._clients):
                box.put_latest("frame", frame)
            self._status_soon()
            return
        if isinstance(event, StateChanged):
            status = self.controller.snapshot()
            msg["status"] = status
            self._last_status = _dumps(status)
        text = _dumps(msg)
        for box in list(self._clients):
            if slot is not None:
                box.put_latest(slot, text)
                continue
            if isinstance(event, StateChanged):
                box.drop_latest("status")  # this message carries a newer one
            box.put(text)

    def _status_soon(self) -> None:
        """A status message after frames: now, or once ``status_interval_s`` has passed since the last."""
        if self._status_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._status_sent_at + self.status_interval_s - loop.time()
        if wait <= 0:
            self._send_status()
        else:
            self._status_timer = loop.call_later(wait, self._send_status)

    def _send_status(self) -> None:
        self._status_timer = None
        self._status_sent_at = asyncio.get_running_loop().time()
        if not self._clients:
            return
        status = _dumps(self.controller.snapshot())
        if status == self._last_status:
            return
        self._last_status = status
        text = f'{{"type": "status", "status": {status}}}'
        for box in list(self._clients):
            box.put_latest("status", text)

    # --- to a page -------------------------------------------------------------------------

    def hello(self) -> dict[str, object]:
        status = self.controller.snapshot()
        index = self.controller.output.last_index
        frame: dict[str, object] | None = None
        found = self.controller.output.find(index) if index else None
        if found is not None:
            frame = {"index": index, "url": frame_url(index)}
            # Who it is from the frame itself when the writer has it: the controller learns a frame
            # is on screen only once its write returns, and a page connecting in between would
            # show it without its seed.
            shown = found.label or self.controller.on_screen
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
        key, value = BINARY_QUERY
        box = Outbox(binary=request.query.get(key) == value)
        self._clients.add(box)
        log.debug("viewer connected (%d open)", len(self._clients))
        reader = asyncio.create_task(self._read_incoming(ws, box), name="viewer-ws-reader")
        try:
            await ws.send_str(_dumps(self.hello()))
            while (items := await box.take()) is not None and not ws.closed:
                for item in items:
                    await self._send(ws, box, item)
        except (ConnectionResetError, RuntimeError) as exc:  # the page went away mid-send
            log.debug("viewer connection dropped: %s", exc)
        finally:
            self._clients.discard(box)
            reader.cancel()
            await asyncio.wait([reader])  # unlike suppress(CancelledError), never eats our own cancellation
            await ws.close()
            log.debug("viewer disconnected (%d open)", len(self._clients))
        return ws

    @staticmethod
    async def _send(ws: web.WebSocketResponse, box: Outbox, item: Item) -> None:
        if isinstance(item, str):
            await ws.send_str(item)
            return
        binary = item.binary if box.binary and not box.hidden else None
        if binary is None:
            await ws.send_str(item.text)
        else:
            await ws.send_bytes(binary)

    @staticmethod
    async def _read_incoming(ws: web.WebSocketResponse, box: Outbox) -> None:
        """The page's readiness and visibility, and a closed socket; controls go through POST."""
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            if msg.type != WSMsgType.TEXT:
                continue
            with contextlib.suppress(ValueError, RecursionError):
                data = json.loads(msg.data)
                kind = data.get("type") if isinstance(data, dict) else None
                if kind == "ready":
                    box.page_ready()
                elif kind == "visibility":
                    box.set_hidden(bool(data.get("hidden")))
        box.close()
