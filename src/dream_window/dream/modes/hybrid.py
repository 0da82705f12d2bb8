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

**The next keyframe is asked for before this segment's in-betweens are decoded.** Keyframe k+1
grows from keyframe k (as held to the prompt's colours), not from k's in-betweens, so the backend
makes it while they decode: on several ComfyUI servers the keyframe chain keeps one busy while the
decodes go to the others. (The backend's own plan cannot do this once colour coherence corrects a
keyframe: the corrected picture exists only here.) The call made ahead is the one the next
``next_frames()`` would make (same seed, same source, same prompt), so the frames are the ones
made one by one; when the next call is a different one (the prompt changed, a frame was injected,
the dream restarted), it is dropped, its server work withdrawn and its seed given back, so what is
shown next is what it would have been without working ahead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from PIL import Image

from dream_window.dream.modes.base import ModeContext, fit, inbetween_frames, restart_keyframe
from dream_window.dream.modes.img2img import PLAN_DEPTH
from dream_window.dream.modes.lookahead import Lookahead
from dream_window.errors import ExecutionFailed
from dream_window.interpolation.inbetweens import InBetweenMaker, Keyframe
from dream_window.interpolation.latent_encoder import BackendLatentEncoder
from dream_window.values.frame import Frame, FrameKind
from dream_window.values.generation import NO_PLAN, GeneratedImage, GenerationRequest, Plan
from dream_window.values.slerp import inbetween_ts

log = logging.getLogger(__name__)

_Made = tuple[GeneratedImage, FrameKind, str | None]  # a keyframe, its kind, what it was injected from


@dataclass(eq=False)
class _Ahead:
    """The next keyframe, asked for ahead: grown from ``source`` with ``request``."""

    source: Keyframe  # by identity: the next call's ``previous`` when this is what it would make
    prompt: str
    request: GenerationRequest
    task: asyncio.Task[tuple[GeneratedImage, Keyframe]]


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
        # The last keyframe was changed by colour coherence: the backend's plan would grow the next
        # one from the picture as it came, which the chain does not use (see _plan).
        self._corrected = False
        self._next: _Ahead | None = None
        self._dropped: list[asyncio.Task[tuple[GeneratedImage, Keyframe]]] = []  # until settled

    @property
    def _latents_back(self) -> bool:
        """Ask the backend for each keyframe's latent: there are in-betweens to slerp, in its space."""
        return self._ctx.config.keyframe_interval > 1 and self._maker.encoder.shares_backend_latents

    def seed_image(self, image: Image.Image) -> None:
        self._drop_next()
        self._key = Keyframe(fit(image, self._ctx.config.width, self._ctx.config.height))
        self._key_prompt = None  # unknown: the next keyframe grows from it by img2img

    def restart_from(self, frame: Frame) -> None:
        self._drop_next()
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
        if self._corrected:
            # Corrections come in runs (a drift lasts): a planned step would grow from the picture
            # before its correction and be thrown away, GPU time spent for nothing. The keyframe
            # asked for ahead (from the corrected picture) keeps the chain going instead.
            return NO_PLAN
        return self._ahead.plan(
            prompt, chained=True, denoise=self._ctx.config.denoise, return_latent=self._latents_back
        )

    async def _next_keyframe(self, prompt: str, previous: Keyframe | None) -> _Made:
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
        return await self._grow(prompt, previous), "keyframe", None

    async def _grow(self, prompt: str, previous: Keyframe) -> GeneratedImage:
        """The next keyframe of the chain: img2img from ``previous``."""
        request = self._chain_request(prompt)
        return await self._ctx.backend.img2img(previous.image, request, plan=self._plan(prompt))

    def _chain_request(self, prompt: str) -> GenerationRequest:
        return self._ahead.next(prompt, denoise=self._ctx.config.denoise, return_latent=self._latents_back)

    def _held(self, result: GeneratedImage, prompt: str) -> Keyframe:
        """The keyframe as shown and fed back: held to the prompt's colours before its latent is
        taken, so the in-betweens into it and out of it inherit the correction."""
        image = self._ctx.cohere(result.image, prompt)
        self._corrected = image is not result.image
        key = Keyframe(image)
        self._maker.adopt(key, result.latent if image is result.image else None)
        return key

    # --- the next keyframe, asked for ahead -----------------------------------------------------

    def _ask_ahead(self, prompt: str, key: Keyframe) -> None:
        """Ask for the keyframe that grows from ``key`` (the one about to be shown)."""
        self._drop_next()
        request = self._chain_request(prompt)
        plan = self._plan(prompt)

        async def make() -> tuple[GeneratedImage, Keyframe]:
            result = await self._ctx.backend.img2img(key.image, request, plan=plan)
            return result, self._held(result, prompt)

        task = asyncio.create_task(make(), name="hybrid: next keyframe")
        task.add_done_callback(_retrieve)
        self._next = _Ahead(key, prompt, request, task)

    def _drop_next(self) -> None:
        """The keyframe asked for ahead is not wanted: cancelled (a cancelled backend call takes its
        own prompt off the server; awaited by :meth:`_settle`) and its seed given back."""
        if self._next is not None:
            self._next.task.cancel()
            self._dropped.append(self._next.task)
            self._ahead.give_back([self._next.request.seed])
            self._next = None

    async def _settle(self) -> None:
        """Wait until what was dropped has left the server."""
        dropped, self._dropped = self._dropped, []
        if dropped:
            await asyncio.gather(*dropped, return_exceptions=True)

    async def _take_ahead(
        self, prompt: str, previous: Keyframe | None
    ) -> tuple[GeneratedImage, Keyframe] | None:
        """The keyframe asked for ahead, when it is exactly the one this call would make."""
        ahead = self._next
        if ahead is None:
            return None
        if ahead.source is not previous or ahead.prompt != prompt or self._injected is not None:
            self._drop_next()
            await self._settle()
            return None
        self._next = None
        try:
            return await ahead.task
        except asyncio.CancelledError:
            # We are cancelled, not the keyframe: it leaves the server before we do.
            self._next = ahead
            self._drop_next()
            await self._settle()
            raise
        except ExecutionFailed as exc:
            # Interrupted or taken off the queue by a pause since it was asked for (or failed
            # there): made now, as it would have been. A failure that lasts fails that call too;
            # an unreachable server or a timeout is not retried here (the pool already tried twice).
            log.debug("the keyframe asked for ahead did not come (%s); asking again", exc)
            self._ahead.give_back([ahead.request.seed])  # the same request again
            return None

    async def next_frames(self) -> list[Frame]:
        ctx = self._ctx
        await self._settle()
        prompt = ctx.prompt()
        previous = self._key
        ahead = await self._take_ahead(prompt, previous)
        kind: FrameKind = "keyframe"
        label: str | None = None
        if ahead is not None:
            result, key = ahead
        else:
            result, kind, label = await self._next_keyframe(prompt, previous)
            key = self._held(result, prompt)
        params = result.request.params()
        if label is not None:
            params["injected_from"] = label
        frames: list[Frame] = []
        transition = self._transition
        n = ctx.config.transition_frames if transition else ctx.config.keyframe_interval - 1
        if previous is not None and n > 0:
            ts = inbetween_ts(n)
            try:
                if not transition:
                    # The user waits for a transition's frames: nothing is queued before its decode.
                    self._ask_ahead(prompt, key)
                    # One turn of the loop for it to reach its server first, so the backend places
                    # the decodes below beside it rather than in front of it.
                    await asyncio.sleep(0)
                made = ctx.hold_detail(await self._maker.make(previous, key, ts), prompt)
            except (Exception, asyncio.CancelledError):
                # Not shown: the next call grows from ``previous`` again, not from this keyframe.
                # (Cancelled: a user's change or a pause; nothing of ours may stay on the server
                # once the batch is gone, so the keyframe asked for ahead leaves it first.)
                self._drop_next()
                await self._settle()
                raise
            frames = inbetween_frames(made, prompt, params, ts, transition=transition)
        frames.append(Frame(key.image, prompt, kind, result.elapsed_ms, params, key.latent))
        self._key, self._key_prompt, self._transition = key, prompt, False
        return frames


def _retrieve(task: asyncio.Task[tuple[GeneratedImage, Keyframe]]) -> None:
    """A keyframe asked for ahead may fail where nobody awaits it any more (dropped as the dream
    stops): its error is read here, not reported as never retrieved."""
    if not task.cancelled():
        task.exception()
