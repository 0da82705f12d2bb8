"""SwitchingBackend: the one backend the dream holds, pointed at ComfyUI or the built-in engine.

The modes, the latent encoder and the controller keep a single reference for the whole run; the
backend supervisor (``dream/supervisor.py``) decides which real backend is behind it and points
it there between two batches (never during one: a batch's keyframe and its in-betweens must share
a latent space). Every call goes to the backend pointed at *now*; the progress and preview
callbacks follow it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from dream_window.backends.base import GenerationBackend, SupportsLatentWalk
from dream_window.errors import ConfigError
from dream_window.values.generation import (
    NO_PLAN,
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    Plan,
    PreviewCallback,
    ProgressCallback,
)


class SwitchingBackend:
    def __init__(self, active: GenerationBackend) -> None:
        self._active = active
        self._progress: ProgressCallback | None = None
        self._preview: PreviewCallback | None = None

    @property
    def active(self) -> GenerationBackend:
        return self._active

    def point_at(self, backend: GenerationBackend) -> None:
        """From the next call on, ``backend`` makes the frames (the caller owns starting and
        closing both)."""
        self._active.set_progress_callback(None)
        self._active.set_preview_callback(None)
        self._active = backend
        backend.set_progress_callback(self._progress)
        backend.set_preview_callback(self._preview)

    # --- what it is, read through ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._active.name

    @property
    def is_ai(self) -> bool:
        return self._active.is_ai

    @property
    def latent_channels(self) -> int:
        return self._active.latent_channels

    @property
    def latent_walk_available(self) -> bool:
        active = self._active
        return isinstance(active, SupportsLatentWalk) and active.latent_walk_available

    # --- the protocol, passed on -----------------------------------------------------------------

    async def start(self) -> None:
        await self._active.start()

    async def close(self) -> None:
        await self._active.close()

    async def health(self) -> BackendHealth:
        return await self._active.health()

    def status_sections(self) -> dict[str, object]:
        return self._active.status_sections()  # only the backend in use says anything

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        return await self._active.txt2img(request, plan=plan)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        return await self._active.img2img(image, request, plan=plan)

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return await self._active.encode(images)

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        return await self._active.decode(latents)

    async def latent_walk(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        ts: Sequence[float],
        *,
        plan: Plan = NO_PLAN,
    ) -> list[GeneratedImage]:
        active = self._active
        if not isinstance(active, SupportsLatentWalk):
            raise ConfigError(f"{active.name} cannot do a latent walk")
        return await active.latent_walk(start, end, ts, plan=plan)

    async def withdraw(self) -> None:
        await self._active.withdraw()

    async def interrupt(self) -> None:
        await self._active.interrupt()

    async def free_memory(self) -> None:
        await self._active.free_memory()

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        self._progress = callback
        self._active.set_progress_callback(callback)

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        self._preview = callback
        self._active.set_preview_callback(callback)
