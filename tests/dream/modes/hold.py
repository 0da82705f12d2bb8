"""A tiny mode that exists only for the test that adds it: it dreams one picture and holds it.

It is what adding a mode takes: this module (the DreamMode contract: ``name``, a constructor
taking the ModeContext, ``next_frames``, ``inject``, ``seed_image``) and one ``register_mode``
line; nothing in the backends, the config or the controller changes.
"""

from __future__ import annotations

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit
from dream_window.values.frame import Frame


class HoldMode:
    name = "hold"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        self._held: Image.Image | None = None

    def seed_image(self, image: Image.Image) -> None:
        self._held = fit(image, self._ctx.config.width, self._ctx.config.height)

    def inject(self, image: Image.Image, label: str) -> None:
        return None  # holding means holding: cached frames are not brought back

    async def next_frames(self) -> list[Frame]:
        prompt = self._ctx.prompt()
        if self._held is None:
            result = await self._ctx.backend.txt2img(self._ctx.request(prompt))
            self._held = result.image
            return [Frame(result.image, prompt, "keyframe", result.elapsed_ms, result.request.params())]
        return [Frame(self._held, prompt, "keyframe", 0.0, {"held": True})]
