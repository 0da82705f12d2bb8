"""img2img: the feedback loop. Every frame is grown from the one before it."""

from __future__ import annotations

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit
from dream_window.values.frame import Frame


class Img2ImgMode:
    name = "img2img"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        self._last: Image.Image | None = None
        self._injected: tuple[Image.Image, str] | None = None

    def seed_image(self, image: Image.Image) -> None:
        self._last = fit(image, self._ctx.config.width, self._ctx.config.height)

    def inject(self, image: Image.Image, label: str) -> None:
        self._injected = (fit(image, self._ctx.config.width, self._ctx.config.height), label)

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        prompt = ctx.prompt()
        source, kind = self._last, "img2img"
        if self._injected is not None:
            source, _label = self._injected
            self._injected = None
            kind = "injected"
        if source is None:
            result = await ctx.backend.txt2img(ctx.request(prompt))
            kind = "txt2img"
        else:
            result = await ctx.backend.img2img(source, ctx.request(prompt, denoise=ctx.config.denoise))
        self._last = result.image
        return [Frame(result.image, prompt, kind, result.elapsed_ms, result.request.params(), result.latent)]  # type: ignore[arg-type]
