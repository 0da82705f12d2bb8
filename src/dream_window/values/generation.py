"""What a generation asks for, what it returns, and the plan a mode hands down with it.

Modes fill :class:`GenerationRequest`; backends execute it and never read a mode's settings.
Latents are numpy float32 arrays shaped ``[B, C, H, W]``; ``C`` and the spatial factor depend on
the backend (the built-in engine uses 4 channels at 1/4 resolution; SD 4 and Flux 16 at 1/8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

# progress(value, max) while a sampler runs.
ProgressCallback = Callable[[int, int], None]
# A live preview while a sampler runs: (encoded image bytes, mime type).
PreviewCallback = Callable[[bytes, str], None]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything one generation needs. Modes fill it; backends never read config themselves."""

    prompt: str
    seed: int
    width: int = 256
    height: int = 512
    steps: int = 4
    cfg: float = 1.0
    denoise: float = 1.0
    negative_prompt: str = ""
    # The mode will slerp this frame's latent: return it with the image when that is cheap (a
    # ComfyUI graph saves it beside the frame) so it is never encoded again.
    return_latent: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.denoise <= 1.0:
            raise ValueError(f"denoise must be between 0 and 1, got {self.denoise}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")

    def params(self) -> dict[str, Any]:
        """Generation parameters as stored with a frame (cache, history)."""
        return {
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg": self.cfg,
            "denoise": self.denoise,
            "negative_prompt": self.negative_prompt,
        }


@dataclass(slots=True)
class GeneratedImage:
    """A backend's result: the picture, how long it took, and the latent when it came cheaply."""

    image: Image.Image
    request: GenerationRequest
    elapsed_ms: float
    latent: np.ndarray | None = None
    # Backend-specific facts worth keeping (server, prompt_id, filename ...).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ok: bool
    detail: str  # one line for status.json and `doctor`


@dataclass(frozen=True, slots=True)
class Step:
    """One request a mode expects to make next. ``chained``: it grows from the picture of the step
    before it (the first step: from the result of the call the plan came with), i.e. an img2img
    or the next walk segment; otherwise it is independent (a txt2img)."""

    request: GenerationRequest
    chained: bool
    # A latent walk segment's t values (from the previous step's end to ``request``); empty for a
    # single frame.
    ts: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """What the mode will most likely ask for after the current call, in order.

    A mode hands its plan down with each generation; a backend that can work ahead (ComfyUI)
    starts the steps early so the GPU never waits, and withdraws every started step as a unit when
    the mode asks for something else, or on ``withdraw()``. A backend that cannot work ahead
    ignores it. The plan is a hint about the future, never a request: only calls produce frames.
    """

    steps: tuple[Step, ...] = ()

    @classmethod
    def chain(cls, requests: list[GenerationRequest] | tuple[GenerationRequest, ...]) -> Plan:
        """Each request grows from the one before (a feedback loop)."""
        return cls(tuple(Step(r, True) for r in requests))

    @classmethod
    def independent(cls, requests: list[GenerationRequest] | tuple[GenerationRequest, ...]) -> Plan:
        return cls(tuple(Step(r, False) for r in requests))


NO_PLAN = Plan()
