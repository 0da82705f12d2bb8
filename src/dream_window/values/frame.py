"""Frame: one picture on its way to the screen, and what kind of frame it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

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
