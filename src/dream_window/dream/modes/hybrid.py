"""hybrid (the default): keyframes by img2img, in-betweens by slerp in latent space.

Every ``keyframe_interval`` frames one keyframe is generated: img2img from the previous keyframe,
txt2img when the prompt changed, or a cached frame (injection) grown lightly toward the prompt.
The ``keyframe_interval - 1`` frames between two keyframes are slerped between their latents
and decoded in batches of ``interpolation.decode_batch_size`` by the configured LatentEncoder.
The GPU does one real generation per K frames; motion stays smooth. With no latent path at all
the in-betweens become pixel crossfades, said once in status.
"""

from __future__ import annotations

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit, inbetween_frames
from dream_window.interpolation.inbetweens import InBetweenMaker, Keyframe
from dream_window.interpolation.latent_encoder import BackendLatentEncoder
from dream_window.values.frame import Frame, FrameKind
from dream_window.values.generation import GeneratedImage
from dream_window.values.slerp import inbetween_ts


class HybridMode:
    name = "hybrid"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        encoder = ctx.encoder or BackendLatentEncoder(ctx.backend, batch_size=ctx.decode_batch_size)
        # ctx.note is wired by the controller after the mode is built: look it up at call time.
        self._maker = InBetweenMaker(
            encoder, batch_size=ctx.decode_batch_size, note=lambda msg: ctx.note(msg)
        )
        self._key: Keyframe | None = None
        self._key_prompt: str | None = None
        self._injected: tuple[Image.Image, str] | None = None

    def seed_image(self, image: Image.Image) -> None:
        self._key = Keyframe(fit(image, self._ctx.config.width, self._ctx.config.height))
        self._key_prompt = None  # unknown: the next keyframe grows from it by img2img

    def inject(self, image: Image.Image, label: str) -> None:
        self._injected = (fit(image, self._ctx.config.width, self._ctx.config.height), label)

    async def _next_keyframe(
        self, prompt: str, previous: Keyframe
    ) -> tuple[GeneratedImage, FrameKind, str | None]:
        ctx = self._ctx
        if self._injected is not None:
            # The cached frame becomes the next keyframe, grown lightly so it belongs to this prompt.
            target, label = self._injected
            self._injected = None
            result = await ctx.backend.img2img(
                target, ctx.request(prompt, denoise=min(ctx.config.denoise, 0.3))
            )
            return result, "injected", label
        if self._key_prompt is not None and prompt != self._key_prompt:
            return await ctx.backend.txt2img(ctx.request(prompt)), "keyframe", None
        result = await ctx.backend.img2img(previous.image, ctx.request(prompt, denoise=ctx.config.denoise))
        return result, "keyframe", None

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        prompt = ctx.prompt()
        if self._key is None:
            result = await ctx.backend.txt2img(ctx.request(prompt))
            self._key, self._key_prompt = Keyframe(result.image), prompt
            self._maker.adopt(self._key, result.latent)
            return [
                Frame(
                    result.image,
                    prompt,
                    "keyframe",
                    result.elapsed_ms,
                    result.request.params(),
                    result.latent,
                )
            ]

        previous = self._key
        result, kind, label = await self._next_keyframe(prompt, previous)
        key = Keyframe(result.image)
        self._maker.adopt(key, result.latent)
        params = result.request.params()
        if label is not None:
            params["injected_from"] = label
        frames: list[Frame] = []
        n = ctx.config.keyframe_interval - 1
        if n > 0:
            ts = inbetween_ts(n)
            made = await self._maker.make(previous, key, ts)
            frames = inbetween_frames(made, prompt, params, ts)
        frames.append(Frame(result.image, prompt, kind, result.elapsed_ms, params, key.latent))
        self._key, self._key_prompt = key, prompt
        return frames
