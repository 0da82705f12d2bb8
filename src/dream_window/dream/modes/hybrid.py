"""hybrid (the default): keyframes by img2img, in-betweens by slerp in latent space.

Every ``keyframe_interval`` frames one keyframe is generated: img2img from the previous keyframe,
txt2img when the prompt changed, or a cached frame (injection) grown lightly toward the prompt.
The ``keyframe_interval - 1`` frames between two keyframes are slerped between their latents
and decoded in batches of ``interpolation.decode_batch_size`` by the configured LatentEncoder.
The GPU does one real generation per K frames; motion stays smooth. With no latent path at all
the in-betweens become pixel crossfades, said once in status.

After the user changes something (a prompt, a skip, this mode) the dream restarts from the frame
on screen: the next keyframe is made (txt2img for a new prompt, img2img otherwise) and reached in
``transition_frames`` slerped frames instead of ``keyframe_interval - 1``.

The keyframe chain is planned like img2img's feedback loop (the next keyframes, each grown from
the one before), and each keyframe asks for its latent back when the in-betweens will slerp it in
the backend's own latent space, so no keyframe is ever encoded again.
"""

from __future__ import annotations

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit, inbetween_frames, restart_keyframe
from dream_window.dream.modes.img2img import PLAN_DEPTH
from dream_window.dream.modes.lookahead import Lookahead
from dream_window.interpolation.inbetweens import InBetweenMaker, Keyframe
from dream_window.interpolation.latent_encoder import BackendLatentEncoder
from dream_window.values.frame import Frame, FrameKind
from dream_window.values.generation import NO_PLAN, GeneratedImage, Plan
from dream_window.values.slerp import inbetween_ts


class HybridMode:
    name = "hybrid"

    def __init__(self, ctx: ModeContext) -> None:
        self._ctx = ctx
        encoder = ctx.encoder or BackendLatentEncoder(ctx.backend, batch_size=ctx.decode_batch_size)
        self._maker = InBetweenMaker(encoder, batch_size=ctx.decode_batch_size, note=ctx.note)
        self._ahead = Lookahead(ctx, depth=PLAN_DEPTH)
        self._key: Keyframe | None = None
        self._key_prompt: str | None = None
        self._injected: tuple[Image.Image, str] | None = None
        # The next in-betweens are a transition from the picture on screen (restart_from).
        self._transition = False

    @property
    def _latents_back(self) -> bool:
        """Ask the backend for each keyframe's latent: there are in-betweens to slerp, in its space."""
        return self._ctx.config.keyframe_interval > 1 and self._maker.encoder.shares_backend_latents

    def seed_image(self, image: Image.Image) -> None:
        self._key = Keyframe(fit(image, self._ctx.config.width, self._ctx.config.height))
        self._key_prompt = None  # unknown: the next keyframe grows from it by img2img

    def restart_from(self, frame: Frame) -> None:
        self._key = restart_keyframe(frame, self.name, self._ctx)
        self._key_prompt = frame.prompt
        self._injected = None
        self._transition = True

    def inject(self, image: Image.Image, label: str) -> None:
        self._injected = (fit(image, self._ctx.config.width, self._ctx.config.height), label)

    def _plan(self, prompt: str) -> Plan:
        if self._transition:
            # The user is waiting for this keyframe and the transition into it: work planned behind
            # it would take the server before the transition's encode and decode. Plan next time.
            return NO_PLAN
        return self._ahead.plan(
            prompt, chained=True, denoise=self._ctx.config.denoise, return_latent=self._latents_back
        )

    async def _next_keyframe(
        self, prompt: str, previous: Keyframe | None
    ) -> tuple[GeneratedImage, FrameKind, str | None]:
        ctx, backend, latent = self._ctx, self._ctx.backend, self._latents_back
        denoise = ctx.config.denoise
        if previous is not None and self._injected is not None:
            # The cached frame becomes the next keyframe, grown lightly so it belongs to this prompt.
            target, label = self._injected
            self._injected = None
            request = self._ahead.next(prompt, denoise=min(denoise, 0.3), return_latent=latent)
            return await backend.img2img(target, request, plan=self._plan(prompt)), "injected", label
        if previous is None or (self._key_prompt is not None and prompt != self._key_prompt):
            request = self._ahead.next(prompt, return_latent=latent)
            return await backend.txt2img(request, plan=self._plan(prompt)), "keyframe", None
        request = self._ahead.next(prompt, denoise=denoise, return_latent=latent)
        return await backend.img2img(previous.image, request, plan=self._plan(prompt)), "keyframe", None

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        prompt = ctx.prompt()
        previous = self._key
        result, kind, label = await self._next_keyframe(prompt, previous)
        # Held to the prompt's colours before its latent is taken: a corrected keyframe is encoded
        # from the corrected picture, so the in-betweens into it and out of it inherit the correction.
        image = ctx.cohere(result.image, prompt)
        key = Keyframe(image)
        self._maker.adopt(key, result.latent if image is result.image else None)
        params = result.request.params()
        if label is not None:
            params["injected_from"] = label
        frames: list[Frame] = []
        transition = self._transition
        n = ctx.config.transition_frames if transition else ctx.config.keyframe_interval - 1
        if previous is not None and n > 0:
            ts = inbetween_ts(n)
            made = ctx.hold_detail(await self._maker.make(previous, key, ts), prompt)
            frames = inbetween_frames(made, prompt, params, ts, transition=transition)
        frames.append(Frame(image, prompt, kind, result.elapsed_ms, params, key.latent))
        self._key, self._key_prompt, self._transition = key, prompt, False
        return frames
