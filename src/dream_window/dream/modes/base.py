"""The contract every generation mode implements, and what modes share.

A mode turns "the dream so far" into the next frames. ``next_frames()`` returns one or more
frames per call (img2img: one; hybrid: a keyframe and its in-betweens) in display order. Modes
own their own state (last image, last keyframe latent) and nothing else: prompts, seeds and the
backend arrive through :class:`ModeContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from PIL import Image

from dream_window.backends.base import GenerationBackend
from dream_window.config import GenerationConfig
from dream_window.dream.coherence import ColourCoherence
from dream_window.interpolation.inbetweens import InBetweens, Keyframe
from dream_window.interpolation.latent_encoder import LatentEncoder
from dream_window.values.frame import Frame, FrameKind
from dream_window.values.generation import GenerationRequest
from dream_window.values.seeds import SeedSource


@dataclass
class ModeContext:
    backend: GenerationBackend
    config: GenerationConfig
    prompt: Callable[[], str]
    seeds: SeedSource
    # Tells the status line what a mode fell back to ("in-betweens are pixel crossfades"); given
    # by whoever builds the context (the app sends it to the controller's notes).
    note: Callable[[str], None] = lambda _msg: None
    # Pixels <-> latents for in-betweens (interpolation.encoder); None: the backend's own.
    encoder: LatentEncoder | None = None
    # In-betweens decoded per batch (interpolation.decode_batch_size).
    decode_batch_size: int = 4
    # Colour coherence (generation.colour_coherence); None: frames are shown as the backend made them.
    coherence: ColourCoherence | None = None

    def cohere(self, image: Image.Image, prompt: str) -> Image.Image:
        """A generated frame held to the colours of the first frame made for ``prompt`` on this
        backend (see ``dream/coherence.py``): before it is fed back, its latent taken or it is
        shown. The very same ``image`` when nothing needed correcting."""
        if self.coherence is None:
            return image
        return self.coherence.cohere(image, (prompt, self.backend.name))

    def hold_detail(self, made: InBetweens, prompt: str) -> InBetweens:
        """In-betweens kept above the detail floor of ``prompt``'s reference (``dream/coherence.py``):
        a slerp halfway between two pictures can hold less edge than either."""
        if self.coherence is None:
            return made
        key = (prompt, self.backend.name)
        return replace(made, images=[self.coherence.hold_detail(img, key) for img in made.images])

    def request(
        self, prompt: str, *, denoise: float = 1.0, seed: int | None = None, return_latent: bool = False
    ) -> GenerationRequest:
        c = self.config
        return GenerationRequest(
            prompt=prompt,
            seed=self.seeds.next() if seed is None else seed,
            width=c.width,
            height=c.height,
            steps=c.steps,
            cfg=c.cfg,
            denoise=denoise,
            negative_prompt=c.negative_prompt,
            return_latent=return_latent,
        )


class DreamMode(Protocol):
    name: str

    def __init__(self, ctx: ModeContext) -> None: ...

    async def next_frames(self) -> list[Frame]:
        """The next frames in display order (at least one)."""
        ...

    def inject(self, image: Image.Image, label: str) -> None:
        """Steer the dream toward ``image`` (a cached frame): img2img uses it as the next source,
        hybrid as the next keyframe target."""
        ...

    def seed_image(self, image: Image.Image) -> None:
        """Continue from ``image`` (the last frame of a previous run) instead of starting cold."""
        ...

    def restart_from(self, frame: Frame) -> None:
        """Forget what was made ahead: the next frames grow from ``frame``, the one on screen (the
        user changed the prompt, skipped, switched mode). Hybrid and interpolate lead from it to
        their next keyframe in ``transition_frames`` frames (kind ``transition``)."""
        ...


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` as RGB at exactly ``width``×``height`` (cover-crop, no distortion)."""
    img = image.convert("RGB")
    if img.size == (width, height):
        return img
    scale = max(width / img.width, height / img.height)
    resized = img.resize(
        (max(width, round(img.width * scale)), max(height, round(img.height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def inbetween_frames(
    made: InBetweens, prompt: str, params: dict[str, Any], ts: np.ndarray, *, transition: bool = False
) -> list[Frame]:
    """Frames for the in-betweens ``made`` at ``ts``: each records how it was made and its ``t``.
    ``transition``: they lead from the picture on screen to a new keyframe after a user's change."""
    how = "slerp" if made.kind == "inbetween" else "crossfade"
    kind: FrameKind = "transition" if transition else made.kind  # type: ignore[assignment]
    return [
        Frame(img, prompt, kind, made.ms_per_frame, {**params, "interpolation": how, "t": float(t)})
        for img, t in zip(made.images, ts, strict=True)
    ]


def restart_keyframe(frame: Frame, mode: str, ctx: ModeContext) -> Keyframe:
    """The frame on screen as the keyframe a mode grows on from. Its latent is reused only when
    this mode made it as a keyframe with the backend in use now (then it is in the mode's own
    latent space: ComfyUI's and the built-in engine's are not the same); otherwise the in-betweens
    encode the picture once."""
    key = Keyframe(fit(frame.image, ctx.config.width, ctx.config.height))
    same_space = frame.mode == mode and frame.backend == ctx.backend.name
    if same_space and frame.kind in ("keyframe", "injected") and frame.latent is not None:
        key.latent = frame.latent
    return key
