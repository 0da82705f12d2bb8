"""DreamGenerator: the seed's facade, kept — "give me the next frames".

It puts together what one step of the dream needs: the mode (how frames are made) and the frame
cache (whether a cached frame is re-injected first), and labels each frame with the mode and the
backend that made it. The controller calls ``next_frames()`` and never sees those parts.

Changed from the seed: the seed's DreamGenerator also talked to ComfyUI, copied files, embedded
and cached frames inline, one after another. Here generation, publishing and caching are separate
stages (modes → FrameBuffer → publisher → frame cache) so the GPU is not idle while we write files.
"""

from __future__ import annotations

import logging

from dream_window.backends.base import GenerationBackend
from dream_window.dream.frame_cache import FrameCache
from dream_window.dream.modes.base import DreamMode
from dream_window.events import EventBus, Injection
from dream_window.values.frame import Frame

log = logging.getLogger(__name__)


class DreamGenerator:
    def __init__(
        self,
        *,
        mode: DreamMode,
        frame_cache: FrameCache,
        events: EventBus,
        backend: GenerationBackend,
        model: str,
    ) -> None:
        """``backend``: the dream's (it may switch between batches); ``model``: the configured model
        family, which frames from an AI backend are labelled with."""
        self.mode = mode
        self.frame_cache = frame_cache
        self._events = events
        self._backend = backend
        self._model = model

    async def next_frames(self, last_frame: Frame | None) -> list[Frame]:
        """The next frames in display order; may steer toward a cached frame first."""
        picked = await self.frame_cache.pick_injection(last_frame)
        if picked is not None:
            image, label = picked
            self.mode.inject(image, label)
            log.info("injecting cached frame: %s", label)
            self._events.emit(Injection(label))
        backend = self._backend
        made_by, model = backend.name, self._model if backend.is_ai else "procedural"
        frames = await self.mode.next_frames()
        for f in frames:
            f.mode, f.backend, f.model = self.mode.name, made_by, model
        return frames
