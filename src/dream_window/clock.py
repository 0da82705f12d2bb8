"""Time, injected. Production code uses :class:`SystemClock`; tests pass a fake.

Anything that waits, backs off or measures durations takes a ``clock`` so tests never sleep
for real and never patch ``time``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for durations and deadlines."""
        ...

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware (UTC), for timestamps shown to people."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; cancellable."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def iso(dt: datetime) -> str:
    """ISO 8601 with seconds precision and an explicit offset, as written to status.json."""
    return dt.isoformat(timespec="seconds")
