"""interpolate: a latent walk. Keyframes come from prompts and seeds (txt2img); the frames
between two keyframes are slerped between their latents and decoded in batches."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from dream_window.interpolation.spherical_lerp import spherical_lerp
from dream_window.modes.base import Frame, ModeContext, fit, inbetween_ts


class InterpolateMode:
    name = "interpolate"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        self._key: Image.Image | None = None
        self._key_latent: np.ndarray | None = None
        self._injected: tuple[Image.Image, str] | None = None

    def seed_image(self, image: Image.Image) -> None:
        self._key = fit(image, self._ctx.config.width, self._ctx.config.height)
        self._key_latent = None

    def inject(self, image: Image.Image, label: str) -> None:
        self._injected = (fit(image, self._ctx.config.width, self._ctx.config.height), label)

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        prompt = ctx.prompt()
        kind = "keyframe"
        if self._injected is not None:
            image, _label = self._injected
            self._injected = None
            t0 = time.perf_counter()
            latent = await ctx.backend.encode([image])
            result_image, ms, params, kind = image, (time.perf_counter() - t0) * 1000.0, {"injected": True}, "injected"
        else:
            result = await ctx.backend.txt2img(ctx.request(prompt))
            result_image, ms, params = result.image, result.elapsed_ms, result.request.params()
            latent = result.latent if result.latent is not None else await ctx.backend.encode([result.image])
        if self._key is None:
            self._key, self._key_latent = result_image, latent
            return [Frame(result_image, prompt, kind, ms, params, latent)]  # type: ignore[arg-type]
        za = self._key_latent if self._key_latent is not None else await ctx.backend.encode([self._key])
        t0 = time.perf_counter()
        n = ctx.config.interpolation_frames
        lat = spherical_lerp(za[0], latent[0], inbetween_ts(n)).astype(np.float32)
        images = await ctx.backend.decode(lat)
        per = (time.perf_counter() - t0) * 1000.0 / n
        frames = [Frame(img, prompt, "inbetween", per, {**params, "interpolation": "slerp"}) for img in images]
        frames.append(Frame(result_image, prompt, kind, ms, params, latent))  # type: ignore[arg-type]
        self._key, self._key_latent = result_image, latent
        return frames
