"""Frame: one picture on its way to the screen; FrameLabel: who a published frame is.

A frame knows how it was made from the moment a mode makes it (prompt, kind, parameters, seed);
the generator adds the mode and the backend that made it, and the output writer its number. The
:class:`FrameLabel` is that identity as it leaves the process: PNG text chunks in every published
file, the frame on screen in status.json, the viewer's and the Rainmeter skin's prompt line.

PNG text keys (tEXt, or iTXt when the text is not Latin-1), the way ComfyUI and A1111 mark their
images so ordinary tools can read them::

    prompt      the plain prompt text
    frame       the frame number (the history file's number)
    seed        the seed of the generation that made it (absent for a picture with none)
    mode        img2img | interpolate | hybrid
    kind        txt2img | img2img | keyframe | inbetween | injected | crossfade | transition
    backend     the backend's name, e.g. "ComfyUI (flux-schnell)", "built-in engine (not AI)"
    model       the model family, or "procedural" for the built-in engine
    parameters  A1111's format: the prompt, then "Steps: 4, Seed: 7, Size: 256x512, ..."
    Software    dream-window and its version
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

FrameKind = Literal["txt2img", "img2img", "keyframe", "inbetween", "injected", "crossfade", "transition"]

# Kinds that came out of a real generation (not interpolated between two): the ones worth caching
# and the ones whose generation time says how long the backend takes.
GENERATED_KINDS: frozenset[str] = frozenset({"txt2img", "img2img", "keyframe", "injected"})


@dataclass(slots=True)
class Frame:
    """One picture on its way to the screen."""

    image: Image.Image
    prompt: str
    kind: FrameKind
    generation_ms: float
    params: dict[str, Any] = field(default_factory=dict)
    latent: np.ndarray | None = None
    # Set by the generator: which mode and backend made it.
    mode: str = ""
    backend: str = ""
    model: str = ""
    # Set by the output writer when the frame is published.
    index: int = 0

    @property
    def seed(self) -> int | None:
        seed = self.params.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    @property
    def generated(self) -> bool:
        return self.kind in GENERATED_KINDS

    def label(self, index: int) -> FrameLabel:
        return FrameLabel(
            prompt=self.prompt,
            index=index,
            seed=self.seed,
            mode=self.mode,
            kind=self.kind,
            backend=self.backend,
            model=self.model,
            params=_plain(self.params),
        )


def _plain(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in params.items() if isinstance(v, str | int | float) and v != ""}


# A1111's "parameters" names for ours, in its order.
_A1111 = (("steps", "Steps"), ("cfg", "CFG scale"), ("seed", "Seed"), ("denoise", "Denoising strength"))


@dataclass(frozen=True, slots=True)
class FrameLabel:
    """Who a published frame is. Round-trips through PNG text: ``from_png_text(l.png_text()) == l``
    up to ``params``, of which only what the ``parameters`` line shows survives."""

    prompt: str
    index: int
    seed: int | None = None
    mode: str = ""
    kind: str = ""
    backend: str = ""
    model: str = ""
    params: Mapping[str, str] = field(default_factory=dict, compare=False)

    def png_text(self, software: str = "") -> dict[str, str]:
        text = {
            "prompt": self.prompt,
            "frame": str(self.index),
            "mode": self.mode,
            "kind": self.kind,
            "backend": self.backend,
            "model": self.model,
            "parameters": self.parameters(),
        }
        if self.seed is not None:
            text["seed"] = str(self.seed)
        if software:
            text["Software"] = software
        return {k: v for k, v in text.items() if v != ""}

    def parameters(self) -> str:
        """A1111's ``parameters`` text: prompt, negative prompt, then ``Key: value, ...``."""
        p = self.params
        lines = [self.prompt]
        if p.get("negative_prompt"):
            lines.append(f"Negative prompt: {p['negative_prompt']}")
        fields = [f"{name}: {p[key]}" for key, name in _A1111 if key in p]
        if "width" in p and "height" in p:
            fields.append(f"Size: {p['width']}x{p['height']}")
        if self.model:
            fields.append(f"Model: {self.model}")
        if self.kind:
            fields.append(f"Dream Window kind: {self.kind}")
        lines.append(", ".join(f.replace(",", ";") for f in fields))
        return "\n".join(lines)

    @classmethod
    def from_png_text(cls, text: Mapping[str, str]) -> FrameLabel | None:
        """The label a published PNG carries; None for a picture we did not write."""
        prompt, index = text.get("prompt"), text.get("frame", "")
        if prompt is None or not index.isdigit():
            return None
        seed = text.get("seed", "")
        return cls(
            prompt=prompt,
            index=int(index),
            seed=int(seed) if seed.isdigit() else None,
            mode=text.get("mode", ""),
            kind=text.get("kind", ""),
            backend=text.get("backend", ""),
            model=text.get("model", ""),
        )

    def describe(self) -> dict[str, object]:
        """As status.json shows the frame on screen."""
        return {
            "index": self.index,
            "prompt": self.prompt,
            "seed": self.seed,
            "mode": self.mode,
            "kind": self.kind,
            "backend": self.backend,
            "model": self.model,
        }
