"""Colour coherence: a closed loop that keeps a long dream from burning, darkening or washing out.

Long img2img feedback loops on real models drift: every pass adds a little saturation, takes a
little light, shifts the cast, and after a few hundred frames the dream is dark mush (Deforum has
its colour-coherence setting for this). Here the frames a mode makes are held to a **reference**:
the first frame made for the prompt now being dreamed (a new prompt, rotated or typed, or another
backend, starts a new reference from its first frame).

Each frame is measured on a small copy (``values.quality.downscale``) and its **drift** from the
reference is the largest of three relative deviations: saturation, brightness (each against the
reference's value, held at least a small floor) and the colour cast (the shift of the mean a/b in
LAB, per 100 units). Contrast is left to the picture: a dream's frames hold more or less light
from frame to frame, and forcing one spread on them crushes their dark ground. The
**controller** leaves a frame alone while the drift is inside ``band``; from there the strength
rises linearly to full at ``full`` (times ``max_strength``). A frame that needs no correction is
returned as the very same object (a ComfyUI backend working ahead recognises it and keeps its
chain); one that does is matched to the reference, blended by the strength: lightness by a gain,
the colour channels by mean and standard deviation::

    L' = L (mean_L_ref / mean_L) ** s
    ab' = mean_ab + s (mean_ab_ref - mean_ab) + (ab - mean_ab) (std_ab_ref / std_ab) ** s

Modes apply it through ``ModeContext.cohere`` to every frame they make by generation (img2img's
fed-back frame, hybrid's and interpolate's keyframes before their latents are taken, so the
slerped in-betweens inherit it, and the frames of a latent walk), before the frame is fed back or
shown: the same for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from dream_window.dream.lab import lab_to_srgb, srgb_to_lab
from dream_window.values.quality import downscale, measure, relative

# The controller's band: no correction while the drift is within DEAD_BAND; full strength from FULL_AT.
DEAD_BAND = 0.05
FULL_AT = 0.15
# Floors for the relative deviations (a grey or flat reference must not make noise look like drift).
_FLOOR_SATURATION = 0.05
_FLOOR_BRIGHTNESS = 0.05
# LAB a/b units that count as a drift of 1.0 (10 units, a visible cast, is 0.1).
_CAST_SCALE = 100.0
_STD_FLOOR = 1e-3


@dataclass(frozen=True, slots=True)
class ColourStats:
    """What coherence compares: the metrics it holds steady and the LAB statistics it matches."""

    saturation: float
    brightness: float
    contrast: float
    lab_mean: np.ndarray  # [3]
    lab_std: np.ndarray  # [3]

    @classmethod
    def of(cls, image: Image.Image | np.ndarray) -> ColourStats:
        arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
        small = downscale(arr)
        m = measure(small)
        lab = srgb_to_lab(small).reshape(-1, 3)
        return cls(m.saturation, m.brightness, m.contrast, lab.mean(axis=0), lab.std(axis=0))


def drift(now: ColourStats, ref: ColourStats) -> float:
    """How far ``now`` has wandered from ``ref``: the largest relative deviation (0.1 = 10 %)."""
    cast = float(np.hypot(*(now.lab_mean[1:] - ref.lab_mean[1:]))) / _CAST_SCALE
    return max(
        abs(relative(now.saturation, ref.saturation, _FLOOR_SATURATION)),
        abs(relative(now.brightness, ref.brightness, _FLOOR_BRIGHTNESS)),
        cast,
    )


def strength_for(
    d: float, *, max_strength: float = 1.0, band: float = DEAD_BAND, full: float = FULL_AT
) -> float:
    """The controller law: 0 inside ``band``, rising linearly to ``max_strength`` at ``full``."""
    if not 0.0 <= band < full:
        raise ValueError(f"expected 0 <= band < full, got band={band}, full={full}")
    return max_strength * min(1.0, max(0.0, (d - band) / (full - band)))


def match(image: Image.Image, now: ColourStats, ref: ColourStats, strength: float) -> Image.Image:
    """``image`` moved toward ``ref`` in LAB by ``strength`` (0: unchanged colours, 1: the
    reference's lightness and its colours' mean and spread).

    Lightness is scaled by a gain (L * ref/now), not shifted and stretched: a picture of glowing
    lines on a dark ground (most frames of a dream) has a bimodal L, and mean/std matching would
    push its ground below 0, crushing it to black, whenever a frame holds more light than the
    reference. A gain keeps black at black and the ground's depth in proportion.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    lab = srgb_to_lab(rgb)
    s = float(np.clip(strength, 0.0, 1.0))
    gain = (max(float(ref.lab_mean[0]), 1.0) / max(float(now.lab_mean[0]), 1.0)) ** s
    lab[..., 0] = np.clip(lab[..., 0] * gain, 0.0, 100.0)
    ab_to = now.lab_mean[1:] + s * (ref.lab_mean[1:] - now.lab_mean[1:])
    ab_scale = (np.maximum(ref.lab_std[1:], _STD_FLOOR) / np.maximum(now.lab_std[1:], _STD_FLOOR)) ** s
    lab[..., 1:] = (lab[..., 1:] - now.lab_mean[1:]) * ab_scale + ab_to
    out = Image.fromarray(np.rint(lab_to_srgb(lab) * 255.0).astype(np.uint8), "RGB")
    # What a backend keeps with its picture rides along: the built-in engine's morph between
    # genomes is there, and an img2img dream without it would settle on one flame per prompt.
    out.info.update(image.info)
    return out


@dataclass(frozen=True, slots=True)
class Correction:
    """The last decision: the drift measured and the strength applied (0: left alone)."""

    drift: float
    strength: float


class ColourCoherence:
    """Holds the frames of one prompt (and one backend) to the colours of its first frame."""

    def __init__(self, *, max_strength: float = 1.0, band: float = DEAD_BAND, full: float = FULL_AT) -> None:
        if not 0.0 <= max_strength <= 1.0:
            raise ValueError(f"expected a strength in 0..1, got {max_strength}")
        strength_for(0.0, band=band, full=full)  # checks the band up front
        self.max_strength = max_strength
        self.band = band
        self.full = full
        self._key: object = None
        self.reference: ColourStats | None = None
        self.last: Correction | None = None
        self.corrected = 0

    def reset(self) -> None:
        """Forget the reference: the next frame becomes it."""
        self._key, self.reference = None, None

    def cohere(self, image: Image.Image, key: object) -> Image.Image:
        """``image`` corrected toward the reference of ``key`` (the prompt and backend it was made
        for). The first frame for a new key becomes the reference and is returned as it is; so is
        any frame within the band."""
        now = ColourStats.of(image)
        if self.reference is None or key != self._key:
            self._key, self.reference, self.last = key, now, Correction(0.0, 0.0)
            return image
        d = drift(now, self.reference)
        s = strength_for(d, max_strength=self.max_strength, band=self.band, full=self.full)
        self.last = Correction(d, s)
        if s <= 0.0:
            return image
        self.corrected += 1
        return match(image, now, self.reference, s)
