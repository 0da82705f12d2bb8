"""FrameBuffer: generation runs ahead of display so frames come out at a steady cadence.

A bounded FIFO between the producer (the mode generating frames) and the publisher (writing
them every ``frame_interval``). When it is full the producer waits: generation never runs
unboundedly ahead and memory stays bounded. ``drain()`` empties it on stop.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameBuffer(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"FrameBuffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._q: asyncio.Queue[T] = asyncio.Queue(maxsize=capacity)

    def __len__(self) -> int:
        return self._q.qsize()

    async def put(self, item: T) -> None:
        await self._q.put(item)

    async def get(self) -> T:
        return await self._q.get()

    def drain(self) -> list[T]:
        """Remove and return everything buffered, oldest first."""
        items: list[T] = []
        while True:
            try:
                items.append(self._q.get_nowait())
            except asyncio.QueueEmpty:
                return items
