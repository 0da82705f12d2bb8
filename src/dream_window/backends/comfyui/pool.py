"""Several ComfyUI servers as one: least-busy first, failing servers out, probed back with backoff.

A server is *up* or *down*. Work goes to the up server with the fewest of our prompts in flight
(ties: the shorter server queue, as last reported over its WebSocket). A connection failure
(``ComfyUIUnavailable``) takes the server down for a backoff that doubles per failure (1 s … 60 s)
and the work is retried once on another up server; when the backoff has passed, the next pick
probes it (GET /system_stats, no retries) and brings it back. Errors that are about the work, not
the server (a rejected workflow, a failed node, an interrupt), are not retried elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.clock import Clock, SystemClock
from dream_window.errors import ComfyUIError, ComfyUIUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Server:
    client: ComfyUIClient
    up: bool = False
    opened: bool = False
    in_flight: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    last_reason: str = ""  # the same, in plain words (no request path)
    done: int = 0

    @property
    def url(self) -> str:
        return self.client.base_url


class ServerPool:
    def __init__(
        self, clients: list[ComfyUIClient], *, clock: Clock | None = None, max_backoff: float = 60.0
    ) -> None:
        if not clients:
            raise ValueError("a server pool needs at least one client")
        self.servers = [Server(c) for c in clients]
        self._clock = clock or SystemClock()
        self._max_backoff = max_backoff

    async def start(self) -> None:
        """Open every server at once; raise ComfyUIUnavailable (fast) when none answers."""
        await asyncio.gather(*(self._open(s) for s in self.servers))
        if not any(s.up for s in self.servers):
            reasons = "; ".join(f"{s.url}: {s.last_error}" for s in self.servers)
            raise ComfyUIUnavailable(f"no ComfyUI server reachable ({reasons})", reason=self.reasons())

    async def _open(self, s: Server) -> bool:
        try:
            if not s.opened:
                await s.client.open()
                s.opened = True
            else:
                await s.client.get_system_stats()
        except ComfyUIError as exc:
            self._down(s, str(exc), getattr(exc, "reason", None))
            return False
        if not s.up and s.failures:
            log.info("ComfyUI server %s is back", s.url)
        s.up, s.failures = True, 0
        return True

    def _down(self, s: Server, why: str, reason: str | None = None) -> None:
        if s.up:
            log.warning("ComfyUI server %s taken out: %s", s.url, why)
        elif not s.last_error:  # never up: the caller reports the failure once
            log.debug("ComfyUI server %s not reachable: %s", s.url, why)
        s.up = False
        s.failures += 1
        s.last_error = why
        s.last_reason = reason or why
        s.retry_at = self._clock.monotonic() + min(self._max_backoff, 2.0 ** (s.failures - 1))

    def reasons(self) -> str:
        """Why the servers are down, in plain words: one reason, or one per server."""
        found = {s.last_reason or "down" for s in self.servers}
        if len(found) == 1:
            return found.pop()
        return "; ".join(f"{s.url}: {s.last_reason or 'down'}" for s in self.servers)

    async def close(self) -> None:
        for s in self.servers:
            if s.opened:
                with contextlib.suppress(Exception):
                    await s.client.close()
            s.opened = s.up = False

    async def _probe_due(self) -> None:
        now = self._clock.monotonic()
        due = [s for s in self.servers if not s.up and s.retry_at <= now]
        if due:
            await asyncio.gather(*(self._open(s) for s in due))

    async def pick(self, *, exclude: set[str] | None = None) -> Server:
        await self._probe_due()
        up = [s for s in self.servers if s.up and s.url not in (exclude or set())]
        if not up:
            reasons = "; ".join(f"{s.url}: {s.last_error or 'down'}" for s in self.servers)
            raise ComfyUIUnavailable(f"no ComfyUI server available ({reasons})", reason=self.reasons())
        return min(up, key=lambda s: (s.in_flight, s.client.queue_remaining, s.done))

    async def run(self, work: Callable[[Server], Awaitable[T]], *, prefer: Server | None = None) -> T:
        """Run ``work`` on the least busy server (or ``prefer`` while it is up); on a connection
        failure take that server out and try once more elsewhere."""
        tried: set[str] = set()
        last: ComfyUIUnavailable | None = None
        for _ in range(2):
            server = (
                prefer if prefer is not None and prefer.up and not tried else await self.pick(exclude=tried)
            )
            server.in_flight += 1
            try:
                result = await work(server)
                server.done += 1
                return result
            except ComfyUIUnavailable as exc:
                self._down(server, str(exc), exc.reason)
                tried.add(server.url)
                last = exc
                if not any(s.up and s.url not in tried for s in self.servers):
                    raise
            finally:
                server.in_flight -= 1
        assert last is not None
        raise last

    def idle(self) -> list[Server]:
        """The up servers with none of our prompts in flight, the shortest server queue first."""
        free = [s for s in self.servers if s.up and s.in_flight == 0]
        return sorted(free, key=lambda s: (s.client.queue_remaining, s.done))

    def up_count(self) -> int:
        return sum(1 for s in self.servers if s.up)

    def describe(self) -> str:
        parts = [f"{s.url} {'up' if s.up else 'down'}" for s in self.servers]
        return f"{self.up_count()}/{len(self.servers)} ComfyUI server(s) up: " + ", ".join(parts)
