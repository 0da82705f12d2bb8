"""FrameBuffer: frames made ahead of the screen, between the producer and the publisher.

The producer puts a whole batch (one mode call's frames) at once and then waits with
:meth:`wait_at_most` until the buffer has run down to the headroom it needs (see ``headroom.py``)
before it asks for the next batch; the publisher takes one frame per ``frame_interval``. So the
buffer holds at most the headroom plus one batch, memory stays bounded, and :meth:`drain` (a
user's change, a stop) throws away only a few frames.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameBuffer(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[T]:
        """What is waiting, oldest first (a copy)."""
        return list(self._items)

    async def put_all(self, items: list[T]) -> None:
        async with self._changed:
            self._items.extend(items)
            self._changed.notify_all()

    async def get(self) -> T:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    async def wait_at_most(self, count: int) -> None:
        """Return once no more than ``count`` frames are waiting."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._items) <= count)

    async def drain(self) -> list[T]:
        """Remove and return everything buffered, oldest first."""
        async with self._changed:
            items = list(self._items)
            self._items.clear()
            self._changed.notify_all()
            return items
