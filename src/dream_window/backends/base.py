"""The contract every generation backend fulfils.

A backend makes images from prompts (txt2img), grows images from images (img2img), and moves
between pixels and latents (encode/decode) so the interpolation modes can slerp in latent space.
The built-in engine and the ComfyUI backend both implement it; modes only ever see this protocol.

Latents are numpy float32 arrays shaped ``[B, C, H, W]``; ``C`` and the spatial factor depend on
the backend (the built-in engine uses 4 channels at 1/8 resolution; Flux uses 16, SD 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

# progress(value, max) while a sampler runs; also receives preview images when the backend has them.
ProgressCallback = Callable[[int, int], None]
PreviewCallback = Callable[[bytes, str], None]  # (encoded image bytes, mime type)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything one generation needs. Modes fill it; backends never read config themselves."""

    prompt: str
    seed: int
    width: int = 256
    height: int = 512
    steps: int = 4
    cfg: float = 1.0
    denoise: float = 1.0
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.denoise <= 1.0:
            raise ValueError(f"denoise must be between 0 and 1, got {self.denoise}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")

    def params(self) -> dict[str, Any]:
        """Generation parameters as stored with a frame (cache, history)."""
        return {
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg": self.cfg,
            "denoise": self.denoise,
            "negative_prompt": self.negative_prompt,
        }


@dataclass(slots=True)
class GeneratedImage:
    """A backend's result: the picture, how long it took, and the latent when it came cheaply."""

    image: Image.Image
    request: GenerationRequest
    elapsed_ms: float
    latent: np.ndarray | None = None
    # Backend-specific facts worth keeping (server, prompt_id, filename ...).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ok: bool
    detail: str  # one line for status.json and `doctor`


@runtime_checkable
class GenerationBackend(Protocol):
    """What modes need from whatever makes the pixels."""

    #: Shown in logs and status, e.g. "ComfyUI (flux-schnell)" or "built-in engine (not AI)".
    name: str
    #: False for the built-in engine: status and logs say so plainly.
    is_ai: bool
    #: Channels of this backend's latents (for sanity checks in the interpolation code).
    latent_channels: int

    async def start(self) -> None:
        """Connect / load; raise a BackendError subclass when the backend cannot be used."""
        ...

    async def close(self) -> None: ...

    async def health(self) -> BackendHealth: ...

    async def txt2img(self, request: GenerationRequest) -> GeneratedImage: ...

    async def img2img(self, image: Image.Image, request: GenerationRequest) -> GeneratedImage:
        """Grow ``image`` toward ``request.prompt``: denoise 0 keeps it, 1 ignores it."""
        ...

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pixels → latents ``[B, C, H, W]`` float32."""
        ...

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        """Latents ``[B, C, H, W]`` → one image per batch entry."""
        ...

    async def interrupt(self) -> None:
        """Stop whatever is generating now (pause for a game); a no-op when idle."""
        ...

    async def free_memory(self) -> None:
        """Give GPU memory back (unload models); the next generation reloads them."""
        ...

    def set_progress_callback(self, callback: ProgressCallback | None) -> None: ...
