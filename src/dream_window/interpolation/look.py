"""In-betweens that look like their keyframes: no sharpness or contrast "pop" at each keyframe.

A slerped latent decodes softer than a keyframe when the decoder that makes in-betweens is not
the one that made the keyframe (a small local VAE beside ComfyUI's full one, the ComfyUI test
server's stand-in VAE) or when averaging two latents smooths detail. Then every keyframe flashes
crisp for one frame between soft neighbours. Each in-between is therefore measured (on the same
small copy the quality metrics use) against the blend of its two keyframes at its t, and lifted
toward it: an unsharp mask sized from a trial run for sharpness, a luma stretch for contrast.
Only ever raised, bounded, and skipped when already within ``TOLERANCE``: an exact decoder (the
built-in engine's) pays two measurements per frame and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from dream_window.values.quality import downscale, luma, sharpness

# Within this fraction of the target, an in-between is left as it is.
TOLERANCE = 0.1
# The most an in-between is sharpened (unsharp-mask percent) or its contrast stretched.
MAX_PERCENT = 400
MAX_STRETCH = 1.5
_RADIUS = 2.0


def _small(img: Image.Image) -> np.ndarray:
    return downscale(np.asarray(img.convert("RGB")))


def _unsharp(img: Image.Image, percent: int) -> Image.Image:
    return img.filter(ImageFilter.UnsharpMask(radius=_RADIUS, percent=percent, threshold=0))


def _sharpen_to(img: Image.Image, have: float, want: float) -> Image.Image:
    if have <= 1e-6 or have >= want * (1.0 - TOLERANCE):
        return img
    # Sharpness grows about linearly with the mask's percent: one trial at 100 % gives the slope.
    trial = sharpness(_small(_unsharp(img, 100)))
    gain = trial - have
    if gain <= 1e-6:
        return img
    percent = int(min(MAX_PERCENT, max(1.0, 100.0 * (want - have) / gain)))
    return _unsharp(img, percent)


def _stretch_to(img: Image.Image, have: float, want: float) -> Image.Image:
    if have <= 1e-6 or have >= want * (1.0 - TOLERANCE):
        return img
    k = min(MAX_STRETCH, want / have)
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    mean = float(luma(a / 255.0).mean()) * 255.0
    out = Image.fromarray(np.clip((a - mean) * k + mean + 0.5, 0, 255).astype(np.uint8), "RGB")
    out.info.update(img.info)
    return out


def match_look(
    images: Sequence[Image.Image], ts: Sequence[float], a: Image.Image, b: Image.Image
) -> list[Image.Image]:
    """``images`` (decoded at ``ts`` between keyframes ``a`` and ``b``), each lifted toward the
    keyframes' sharpness and contrast at its t."""
    ka, kb = _small(a), _small(b)
    sharp_a, sharp_b = sharpness(ka), sharpness(kb)
    con_a, con_b = float(luma(ka).std()), float(luma(kb).std())
    out: list[Image.Image] = []
    for img, t in zip(images, ts, strict=True):
        t = float(t)
        stretched = _stretch_to(img, float(luma(_small(img)).std()), (1.0 - t) * con_a + t * con_b)
        want = (1.0 - t) * sharp_a + t * sharp_b
        out.append(_sharpen_to(stretched, sharpness(_small(stretched)), want))
    return out
