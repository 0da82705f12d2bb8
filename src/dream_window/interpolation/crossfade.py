"""Pixel-space crossfade: the last resort when no latent path exists.

Blends two pictures for every ``t`` at once. It looks like a dissolve, not a morph (content does
not move), which is why the modes use it only when encoding or decoding latents is impossible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def crossfade(image_a: Image.Image, image_b: Image.Image, ts: np.ndarray) -> list[Image.Image]:
    """``(1 - t)·a + t·b`` for each ``t``; ``b`` is resized to ``a``'s size when they differ."""
    a = np.asarray(image_a.convert("RGB"), dtype=np.float32)
    b_img = image_b.convert("RGB")
    if b_img.size != image_a.size:
        b_img = b_img.resize(image_a.size, Image.Resampling.BICUBIC)
    b = np.asarray(b_img, dtype=np.float32)
    t = np.asarray(ts, dtype=np.float32).reshape(-1, 1, 1, 1)
    if t.size and (t.min() < 0.0 or t.max() > 1.0):
        raise ValueError("crossfade: t must lie in [0, 1]")
    out = a[None] + t * (b - a)[None]
    return [Image.fromarray(f) for f in (out + 0.5).clip(0, 255).astype(np.uint8)]
