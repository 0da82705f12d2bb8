"""img2img: the feedback loop. Every frame is grown from the one before it.

Its future is plain, so it plans it: the next ``PLAN_DEPTH`` frames, each grown from the one before
with the same prompt. A backend that can work ahead (ComfyUI) queues them as soon as the frame they
grow from has executed, and the GPU never waits for us.
"""

from __future__ import annotations

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit
from dream_window.dream.modes.lookahead import Lookahead
from dream_window.values.frame import Frame, FrameKind

# Frames planned ahead: one running and one queued behind it keep a server busy while we download,
# publish and decide; more would be thrown away whenever the prompt changes.
PLAN_DEPTH = 2


class Img2ImgMode:
    name = "img2img"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        self._ahead = Lookahead(ctx, depth=PLAN_DEPTH)
        self._last: Image.Image | None = None
        self._injected: tuple[Image.Image, str] | None = None

    def seed_image(self, image: Image.Image) -> None:
        self._last = fit(image, self._ctx.config.width, self._ctx.config.height)

    def restart_from(self, frame: Frame) -> None:
        # The feedback loop is its own transition: the next frame grows from the one on screen.
        self._last = fit(frame.image, self._ctx.config.width, self._ctx.config.height)
        self._injected = None

    def inject(self, image: Image.Image, label: str) -> None:
        self._injected = (fit(image, self._ctx.config.width, self._ctx.config.height), label)

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        prompt = ctx.prompt()
        denoise = ctx.config.denoise
        source, kind = self._last, "img2img"
        if self._injected is not None:
            source, _label = self._injected
            self._injected = None
            kind = "injected"
        # The request made now comes first; what is planned after it is what follows it.
        request = self._ahead.next(prompt, denoise=denoise if source is not None else 1.0)
        plan = self._ahead.plan(prompt, chained=True, denoise=denoise)
        if source is None:
            result = await ctx.backend.txt2img(request, plan=plan)
            kind = "txt2img"
        else:
            result = await ctx.backend.img2img(source, request, plan=plan)
        # What is fed back is what is shown: the frame held to the prompt's colours.
        image = self._last = ctx.cohere(result.image, prompt)
        latent = result.latent if image is result.image else None
        frame_kind: FrameKind = kind  # type: ignore[assignment]
        return [Frame(image, prompt, frame_kind, result.elapsed_ms, result.request.params(), latent)]
