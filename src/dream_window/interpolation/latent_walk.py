"""The seam for backends that can walk between two generations themselves.

The technique of stable-diffusion-videos: for each ``t``, sample a full image whose initial noise
is ``slerp(noise(seed_a), noise(seed_b), t)`` and whose text conditioning is
``lerp(cond(prompt_a), cond(prompt_b), t)``. Every frame is a real generation, so it is sharp,
where decoding slerped *output* latents blurs in the middle. It costs one sampling per frame.

A backend that can do this (the ComfyUI backend, as graphs) implements :class:`SupportsLatentWalk`;
the interpolate mode uses it when present and otherwise slerps keyframe latents and decodes them.
A backend whose configuration rules the walk out for now (``interpolation.walk: off``, a custom
ComfyUI workflow) says so with ``latent_walk_available = False``; :func:`latent_walker` is the
one check the mode makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from dream_window.backends.base import GeneratedImage, GenerationRequest


@runtime_checkable
class SupportsLatentWalk(Protocol):
    async def latent_walk(
        self, start: GenerationRequest, end: GenerationRequest, ts: Sequence[float]
    ) -> list[GeneratedImage]:
        """One image per ``t`` (0 = ``start``'s txt2img, 1 = ``end``'s), in order of ``ts``."""
        ...


def latent_walker(backend: Any) -> SupportsLatentWalk | None:
    """``backend`` as a walker when it implements the seam and its configuration allows it."""
    if isinstance(backend, SupportsLatentWalk) and getattr(backend, "latent_walk_available", True):
        return backend
    return None
