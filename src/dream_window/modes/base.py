"""The contract every generation mode implements, and what modes share.

A mode turns "the dream so far" into the next frames. ``next_frames()`` returns one or more
frames per call (img2img: one; hybrid: a keyframe and its in-betweens) in display order. Modes
own their own state (last image, last keyframe latent) and nothing else: prompts, seeds and the
backend arrive through :class:`ModeContext`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from PIL import Image

from dream_window.backends.base import GenerationBackend, GenerationRequest
from dream_window.config import GenerationConfig, SeedPolicy
from dream_window.interpolation.latent_encoder import LatentEncoder

if TYPE_CHECKING:
    from dream_window.interpolation.inbetweens import InBetweens

FrameKind = Literal["txt2img", "img2img", "keyframe", "inbetween", "injected", "crossfade"]


@dataclass(slots=True)
class Frame:
    """One picture on its way to the screen."""

    image: Image.Image
    prompt: str
    kind: FrameKind
    generation_ms: float
    params: dict[str, Any] = field(default_factory=dict)
    latent: np.ndarray | None = None
    # Set by the output writer when the frame is published.
    index: int = 0


class SeedSource:
    """Seeds per the configured policy: random, increment from a start, or fixed."""

    def __init__(self, policy: SeedPolicy, start: int, rng: random.Random) -> None:
        self._policy = policy
        self._next = start
        self._rng = rng

    def next(self) -> int:
        if self._policy is SeedPolicy.FIXED:
            return self._next
        if self._policy is SeedPolicy.INCREMENT:
            s = self._next
            self._next = (self._next + 1) % (2**63)
            return s
        # ComfyUI's KSampler accepts 0 .. 2**64-1; stay in int64 for every node and SQLite.
        return self._rng.randrange(0, 2**63)


@dataclass
class ModeContext:
    backend: GenerationBackend
    config: GenerationConfig
    prompt: Callable[[], str]
    seeds: SeedSource
    # Set by the controller so modes can tell the status line what they fell back to.
    note: Callable[[str], None] = lambda _msg: None
    # Pixels <-> latents for in-betweens (interpolation.encoder); None: the backend's own.
    encoder: LatentEncoder | None = None
    # In-betweens decoded per batch (interpolation.decode_batch_size).
    decode_batch_size: int = 4

    def request(self, prompt: str, *, denoise: float = 1.0, seed: int | None = None) -> GenerationRequest:
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


def inbetween_ts(count: int) -> np.ndarray:
    """``count`` evenly spaced t values strictly between 0 and 1 (the endpoints are keyframes)."""
    return np.arange(1, count + 1, dtype=np.float64) / (count + 1)


def inbetween_frames(made: InBetweens, prompt: str, params: dict[str, Any], ts: np.ndarray) -> list[Frame]:
    """Frames for the in-betweens ``made`` at ``ts``: each records how it was made and its ``t``."""
    how = "slerp" if made.kind == "inbetween" else "crossfade"
    return [
        Frame(img, prompt, made.kind, made.ms_per_frame, {**params, "interpolation": how, "t": float(t)})  # type: ignore[arg-type]
        for img, t in zip(made.images, ts, strict=True)
    ]
