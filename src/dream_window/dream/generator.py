"""DreamGenerator: the seed's facade, kept — "give me the next frames".

It puts together what one step of the dream needs: the mode (how frames are made), the frame
memory (whether a cached frame is re-injected first) and the backend behind the mode. The
controller calls ``next_frames()`` and never sees those parts.

Changed from the seed: the seed's DreamGenerator also talked to ComfyUI, copied files, embedded
and cached frames inline, one after another. Here generation, publishing and caching are separate
stages (modes → FrameBuffer → publisher → memory) so the GPU is not idle while we write files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dream_window.backends.base import GenerationBackend
from dream_window.dream.modes.base import DreamMode
from dream_window.values.frame import Frame

log = logging.getLogger(__name__)


class DreamGenerator:
    def __init__(
        self,
        *,
        mode: DreamMode,
        backend: GenerationBackend,
        memory: Any = None,
        on_injection: Callable[[str], None] = lambda _label: None,
    ) -> None:
        self.mode = mode
        self.backend = backend
        self.memory = memory
        self._on_injection = on_injection
        self.last_injection: str | None = None

    async def next_frames(self, last_frame: Frame | None) -> list[Frame]:
        """The next frames in display order; may steer toward a cached frame first."""
        if self.memory is not None:
            picked = await self.memory.pick_injection(last_frame)
            if picked is not None:
                image, label = picked
                self.mode.inject(image, label)
                self.last_injection = label
                log.info("injecting cached frame: %s", label)
                self._on_injection(label)
        return await self.mode.next_frames()
