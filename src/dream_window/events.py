"""A tiny synchronous event bus: the controller announces, the viewer/status/cache listen.

Listeners must be quick and must not raise; a listener that raises is logged and kept (one bad
listener must not stop the dream). Events are plain ``(name, payload)`` pairs so they serialise
straight to JSON for the viewer's WebSocket.

Event names: ``frame`` {index, prompt, kind, path}, ``state`` {state, reasons}, ``progress``
{value, max}, ``prompt`` {prompt, why}, ``preview`` {data (bytes), mime}, ``injection`` {label}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it again."""
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return unsubscribe

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(name, payload)
            except Exception:
                log.exception("event listener %r failed on %s", fn, name)
