"""The one long-lived WebSocket a client keeps to its server, and its reader.

It connects with our ``clientId`` (ComfyUI sends a prompt's execution messages only to the socket
whose id queued it), asks for previews with metadata (the newer header layout names the prompt),
and reconnects with backoff and jitter after a drop; ComfyUI then re-sends ``executing`` for the
node in progress. Every frame goes to :class:`~.watches.Watches`; after a drop or reconnect the
waiters are told, so they settle from /history instead of waiting on lost messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random

import aiohttp

from dream_window.backends.comfyui.reasons import plain_reason
from dream_window.backends.comfyui.watches import Watches
from dream_window.clock import Clock

log = logging.getLogger(__name__)


class EventSocket:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        watches: Watches,
        *,
        clock: Clock,
        rng: random.Random,
        preview_metadata: bool = True,
    ) -> None:
        self._session = session
        self._url = url
        self._watches = watches
        self._clock = clock
        self._rng = rng
        self._preview_metadata = preview_metadata
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._open = True
        self.connected = asyncio.Event()
        self.connects = 0
        # Frames received in all (a socket that stays open but carries nothing stops counting).
        self.received = 0
        self._dispatch_failed = False  # logged at warning once; later failures at debug

    async def run(self) -> None:
        """Read until :meth:`close` (the owner cancels this task, then closes)."""
        failures = 0
        while self._open:
            try:
                async with self._session.ws_connect(
                    self._url, heartbeat=20.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)
                ) as ws:
                    self._ws = ws
                    if self._preview_metadata:
                        await ws.send_str(
                            json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                        )
                    self.connects += 1
                    if failures or self.connects > 1:
                        log.info("ComfyUI at %s: WebSocket reconnected", self._where)
                        self._watches.connection_changed()
                    failures = 0
                    self.connected.set()
                    async for msg in ws:
                        if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                        self._dispatch(msg)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if failures == 0:
                    log.warning(
                        "ComfyUI at %s: WebSocket lost (%s); reconnecting",
                        self._where,
                        plain_reason(exc),
                    )
                failures += 1
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._watches.connection_changed()
            if self._open:
                await self._clock.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)) * (0.5 + self._rng.random()))

    async def close(self) -> None:
        self._open = False
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    @property
    def _where(self) -> str:
        return self._url.split("/ws?", 1)[0]

    def _dispatch(self, msg: aiohttp.WSMessage) -> None:
        """Route one frame. Nothing raised here may end the reader: a progress or preview callback
        that fails, or a payload of an unexpected shape, would otherwise leave every later prompt
        to /history polling and make ``close()`` re-raise the error."""
        self.received += 1
        try:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._watches.route_text(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self._watches.route_binary(msg.data)
        except Exception:
            level = logging.DEBUG if self._dispatch_failed else logging.WARNING
            self._dispatch_failed = True
            log.log(
                level, "ComfyUI at %s: a WebSocket message could not be handled", self._where, exc_info=True
            )
