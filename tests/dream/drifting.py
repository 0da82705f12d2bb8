"""A backend that drifts on purpose, as long img2img runs on real models do: every img2img pass
comes back 3 % more saturated and 2 % darker than the engine made it (PIL's ImageEnhance: Color
1.03, Brightness 0.98), and, with ``soften``, a little blurred (a Gaussian of that radius: the
loops that "darken and blob"). txt2img is the engine's own. Used by the colour-coherence tests and
by ``bench/quality.py``."""

from __future__ import annotations

import dataclasses
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter

from dream_window.backends.base import GenerationBackend
from dream_window.values.generation import NO_PLAN, GeneratedImage, GenerationRequest, Plan

SATURATION_PER_PASS = 1.03
BRIGHTNESS_PER_PASS = 0.98


def burn(image: Image.Image) -> Image.Image:
    """One pass of the drift."""
    more = ImageEnhance.Color(image.convert("RGB")).enhance(SATURATION_PER_PASS)
    return ImageEnhance.Brightness(more).enhance(BRIGHTNESS_PER_PASS)


class DriftingBackend:
    """``backend`` with img2img drifting; everything else is its own. It records what it was given
    and what it returned, so a test can tell a corrected frame from the one it made."""

    def __init__(self, backend: GenerationBackend, *, soften: float = 0.0) -> None:
        self._backend = backend
        self._soften = soften
        self.sources: list[Image.Image] = []
        self.made: list[Image.Image] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        self.sources.append(image)
        result = await self._backend.img2img(image, request, plan=plan)
        drifted = burn(result.image)
        if self._soften > 0.0:
            drifted = drifted.filter(ImageFilter.GaussianBlur(self._soften))
        self.made.append(drifted)
        # The latent of the picture it returns, as a backend that hands latents back cheaply would.
        latent = await self._backend.encode([drifted]) if request.return_latent else None
        return dataclasses.replace(result, image=drifted, latent=latent)
