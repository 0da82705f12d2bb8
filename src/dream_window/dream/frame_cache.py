"""FrameCache: what the dream needs from the frame cache, and the one stand-in when there is none.

The cache itself (SQLite, embeddings, the background worker) lives in ``dream_window.cache``, a
service above this layer; the dream sees it only through this protocol. A dream without a cache
(switched off in config, or a database that could not be opened) gets :class:`NoFrameCache`,
never ``None``: it remembers nothing, injects nothing and refuses ratings with a reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PIL import Image

from dream_window.errors import CacheError
from dream_window.values.frame import Frame


class FrameCache(Protocol):
    async def remember(self, frame: Frame, path: Path) -> None:
        """A frame was published at ``path``: maybe keep it (with its embedding)."""
        ...

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        """Now and then, a cached frame to steer toward, with a label for status; else None."""
        ...

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        """Like (+1) or dislike (-1) a published frame (its file, or its PNG when a live cadence
        kept it only in memory); liked frames are re-injected more often, disliked ones never."""
        ...


class NoFrameCache:
    """No frame cache: switched off in config (``reason`` None), or not available (``reason`` says why)."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    async def remember(self, frame: Frame, path: Path) -> None:
        return None

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        return None

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        if self.reason is None:
            raise CacheError("the frame cache is switched off (generation.cache.enabled)")
        raise CacheError(f"the frame cache is not available: {self.reason}")

    def describe(self) -> dict[str, object]:
        """The ``cache`` section of status.json."""
        if self.reason is None:
            return {"enabled": False}
        return {"enabled": False, "error": self.reason}
