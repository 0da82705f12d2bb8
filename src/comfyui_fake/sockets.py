"""The open WebSockets, and who hears what (recorded in ``12_clients_reconnect_no_client_id``).

* Execution messages go only to the socket whose ``clientId`` is the prompt's ``client_id``; a
  client_id with no socket gets nothing. A newer socket with the same clientId replaces the older.
* ``status`` is broadcast to every socket.
* A prompt without ``client_id`` sends no execution messages at all, yet its ``progress`` and
  ``progress_state`` reach every socket.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from comfyui_fake import protocol


@dataclass
class Socket:
    ws: web.WebSocketResponse
    sid: str
    wants_metadata: bool = False  # the client announced supports_preview_metadata


class SocketHub:
    def __init__(self) -> None:
        self._by_sid: dict[str, Socket] = {}
        # A fault: sockets stay open (pings answered) but carry nothing, as behind a stuck proxy.
        self.silent = False

    def add(self, sock: Socket) -> None:
        self._by_sid[sock.sid] = sock

    def remove(self, sock: Socket) -> None:
        if self._by_sid.get(sock.sid) is sock:
            del self._by_sid[sock.sid]

    def get(self, client_id: str | None) -> Socket | None:
        return self._by_sid.get(client_id) if client_id else None

    async def send(self, sock: Socket, event: str, data: dict[str, Any]) -> None:
        if self.silent:
            return
        # A socket closing under us is the client's business, not a server error.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sock.ws.send_str(protocol.text_frame(event, data))

    async def send_bytes(self, sock: Socket, frame: bytes) -> None:
        if self.silent:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sock.ws.send_bytes(frame)

    async def to_client(
        self, client_id: str | None, event: str, data: dict[str, Any], *, progress: bool = False
    ) -> None:
        """An execution message; ``progress`` ones of a prompt without client_id reach everyone."""
        if client_id is None:
            if progress:
                await self.broadcast(event, data)
            return
        sock = self._by_sid.get(client_id)
        if sock is not None:
            await self.send(sock, event, data)

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        for sock in list(self._by_sid.values()):
            await self.send(sock, event, data)

    async def close_all(self) -> None:
        for sock in list(self._by_sid.values()):
            with contextlib.suppress(Exception):
                await sock.ws.close()
        self._by_sid.clear()

    async def drop_all(self) -> None:
        """Close every socket (a network fault) but let the handlers unregister them."""
        for sock in list(self._by_sid.values()):
            with contextlib.suppress(Exception):
                await sock.ws.close()
