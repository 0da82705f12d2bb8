"""The contract every generation backend fulfils.

A backend makes images from prompts (txt2img), grows images from images (img2img), and moves
between pixels and latents (encode/decode) so the interpolation modes can slerp in latent space.
The built-in engine and the ComfyUI backend both implement it; modes only ever see this protocol.

Latents are numpy float32 arrays shaped ``[B, C, H, W]``; ``C`` and the spatial factor depend on
the backend (the built-in engine uses 4 channels at 1/4 resolution; SD 4 and Flux 16 at 1/8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from dream_window.values.generation import (
    NO_PLAN,
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    Plan,
    PreviewCallback,
    ProgressCallback,
)


@runtime_checkable
class GenerationBackend(Protocol):
    """What modes need from whatever makes the pixels. A backend executes requests; the mode owns
    the plan (see :class:`~dream_window.values.generation.Plan`) and every setting behind it."""

    # Read-only properties: a backend may answer them from the one it switches to (switching.py).
    @property
    def name(self) -> str:
        """Shown in logs and status, e.g. "ComfyUI (flux-schnell)" or "built-in engine (not AI)"."""
        ...

    @property
    def is_ai(self) -> bool:
        """False for the built-in engine: status and logs say so plainly."""
        ...

    @property
    def latent_channels(self) -> int:
        """Channels of this backend's latents (for sanity checks in the interpolation code)."""
        ...

    async def start(self) -> None:
        """Connect / load; raise a BackendError subclass when the backend cannot be used."""
        ...

    async def close(self) -> None: ...

    async def health(self) -> BackendHealth: ...

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        """A picture from ``request.prompt``; ``plan`` is what the mode expects to ask next."""
        ...

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        """Grow ``image`` toward ``request.prompt``: denoise 0 keeps it, 1 ignores it."""
        ...

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pixels → latents ``[B, C, H, W]`` float32."""
        ...

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        """Latents ``[B, C, H, W]`` → one image per batch entry."""
        ...

    async def withdraw(self) -> None:
        """Drop whatever was started ahead for the mode's plan (queued work deleted, running work
        stopped); a no-op for a backend that never works ahead."""
        ...

    async def interrupt(self) -> None:
        """Stop whatever is generating now (pause for a game), plan included; a no-op when idle."""
        ...

    async def free_memory(self) -> None:
        """Give GPU memory back (unload models); the next generation reloads them."""
        ...

    def set_progress_callback(self, callback: ProgressCallback | None) -> None: ...

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        """Live previews while a sampler runs, for backends that have them."""
        ...

    def status_sections(self) -> dict[str, object]:
        """What this backend adds to status.json while it makes the frames, one section per key
        (ComfyUI: ``comfyui``, its servers and GPU duty); ``{}`` for nothing."""
        ...


@runtime_checkable
class SupportsLatentWalk(Protocol):
    """A backend that can walk between two requests with every frame a real generation: starting
    noise slerped, text conditioning lerped (the ComfyUI backend, as graphs). Interpolate mode uses
    it when present and available, and otherwise slerps keyframe latents and decodes them."""

    @property
    def latent_walk_available(self) -> bool:
        """False when this setup rules the walk out (a custom ComfyUI workflow, the walk graphs do
        not validate on the server, ``interpolation.walk: off``)."""
        ...

    async def latent_walk(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        ts: Sequence[float],
        *,
        plan: Plan = NO_PLAN,
    ) -> list[GeneratedImage]:
        """One image per ``t`` (0 = ``start``'s txt2img, 1 = ``end``'s), in order of ``ts``. A
        chained step in ``plan`` is the next segment: from this walk's end to the step's request,
        at the same ``ts``. The returned images carry the request really used."""
        ...


def latent_walker(backend: GenerationBackend) -> SupportsLatentWalk | None:
    """``backend`` as a walker when it implements the capability and can use it now."""
    if isinstance(backend, SupportsLatentWalk) and backend.latent_walk_available:
        return backend
    return None


__all__ = [
    "BackendHealth",
    "GeneratedImage",
    "GenerationBackend",
    "GenerationRequest",
    "Plan",
    "PreviewCallback",
    "ProgressCallback",
    "SupportsLatentWalk",
    "latent_walker",
]
