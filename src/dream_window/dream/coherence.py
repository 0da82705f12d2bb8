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
chain); one that does is matched to the reference, blended by the strength: lightness by the line
through two anchors, its ground (5th percentile) and its mean,
the colour channels by mean and standard deviation::

    L' = G' + (L - G) (M' - G') / (M - G),  G' = G + s (G_ref - G),  M' = M + s (M_ref - M)
    ab' = mean_ab + s (mean_ab_ref - mean_ab) + (ab - mean_ab) (std_ab_ref / std_ab) ** s

Modes apply it through ``ModeContext.cohere`` to every frame they make by generation (img2img's
fed-back frame, hybrid's and interpolate's keyframes before their latents are taken, so the
slerped in-betweens inherit it, and the frames of a latent walk), before the frame is fed back or
shown: the same for every backend.

**Detail floor.** The other way a long dream dies is softness: feedback loops blur ("darken and
blob"), a morph between two flames passes through a thin one, a slerp halfway between two pictures
holds less edge than either. A frame whose sharpness (mean luma gradient, as the metrics measure
it) is under ``detail_floor`` times its reference's is sharpened (an unsharp mask on its luma,
after its colours are matched) just enough to reach it: one trial mask measures how much this
picture responds, the strength is then scaled to the gap (at most ``MAX_UNSHARP_PERCENT``, with a
wider mask for a softer picture). Sharper frames are never softened. In-betweens get the floor too (``hold_detail``), since they are shown;
Deforum's anti-blur is the same idea.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from dream_window.dream.lab import lab_to_srgb, srgb_to_lab
from dream_window.values.quality import MAX_SIDE, downscale, measure, relative, saturation, sharpness

# The controller's band: no correction while the drift is within DEAD_BAND; full strength from FULL_AT.
DEAD_BAND = 0.05
FULL_AT = 0.15
# Floors for the relative deviations (a grey or flat reference must not make noise look like drift).
_FLOOR_SATURATION = 0.05
_FLOOR_BRIGHTNESS = 0.05
# LAB a/b units that count as a drift of 1.0 (10 units, a visible cast, is 0.1).
_CAST_SCALE = 100.0
_STD_FLOOR = 1e-3
# The detail floor's default (generation.detail_floor) and the strongest unsharp mask it uses.
DETAIL_FLOOR = 0.6
MAX_UNSHARP_PERCENT = 400
_TRIAL_PERCENT = 100


@dataclass(frozen=True, slots=True)
class ColourStats:
    """What coherence compares: the metrics it holds steady and the LAB statistics it matches."""

    saturation: float
    brightness: float
    contrast: float
    sharpness: float
    ground: float  # the 5th percentile of L: where a dream's dark ground sits
    lab_mean: np.ndarray  # [3]
    lab_std: np.ndarray  # [3]

    @classmethod
    def of(cls, image: Image.Image | np.ndarray) -> ColourStats:
        arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
        small = downscale(arr)
        m = measure(small)
        lab = srgb_to_lab(small).reshape(-1, 3)
        ground = float(np.percentile(lab[:, 0], 5.0))
        return cls(
            m.saturation, m.brightness, m.contrast, m.sharpness, ground, lab.mean(axis=0), lab.std(axis=0)
        )


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


def _lightness_toward(light: np.ndarray, now: ColourStats, ref: ColourStats, s: float) -> np.ndarray:
    """Lightness mapped by the line that moves two anchors ``s`` of the way to the reference's:
    the ground (the 5th percentile: where the dark ground of a dream sits) and the mean. A frame
    holding more light than the reference has its light dimmed and its ground kept (a gain about
    black would crush the ground); a frame darkened all over has its ground lifted back too."""
    mean_now, ground_now = float(now.lab_mean[0]), now.ground
    mean_to = mean_now + s * (float(ref.lab_mean[0]) - mean_now)
    # The ground is lifted back when a frame darkened, never pushed down: darkening a dark ground
    # crushes it, and its colours' HSV saturation jumps as it nears black.
    ground_to = ground_now + s * max(ref.ground - ground_now, 0.0)
    if mean_now - ground_now < 1.0 or mean_to - ground_to < 0.0:  # a flat frame: shift it
        return np.clip(light + (mean_to - mean_now), 0.0, 100.0)
    slope = (mean_to - ground_to) / (mean_now - ground_now)
    return np.clip(ground_to + (light - ground_now) * slope, 0.0, 100.0)


def match(image: Image.Image, now: ColourStats, ref: ColourStats, strength: float) -> Image.Image:
    """``image`` moved toward ``ref`` in LAB by ``strength`` (0: unchanged colours, 1: the
    reference's lightness and its colours' mean and spread).

    Lightness is matched at two anchors, the ground and the mean (``_lightness_toward``), not by
    mean and spread: a picture of glowing lines on a dark ground (most frames of a dream) has a
    bimodal L, and mean/std matching would push its ground below 0, crushing it to black, whenever
    a frame holds more light than the reference; a gain about black would darken the ground too.
    """
    rgb = np.asarray(image.convert("RGB"))
    s = float(np.clip(strength, 0.0, 1.0))
    mean_ab = now.lab_mean[1:].astype(np.float32)
    ab_to = mean_ab + s * (ref.lab_mean[1:].astype(np.float32) - mean_ab)
    ab_scale = (np.maximum(ref.lab_std[1:], _STD_FLOOR) / np.maximum(now.lab_std[1:], _STD_FLOOR)) ** s
    ab_scale = ab_scale.astype(np.float32)

    def moved(lab: np.ndarray) -> np.ndarray:
        lab[..., 0] = _lightness_toward(lab[..., 0], now, ref, s)
        lab[..., 1:] = (lab[..., 1:] - mean_ab) * ab_scale + ab_to
        return lab

    # The loop measures saturation as the metrics do (HSV, which also moves with lightness: the
    # same chroma on a darker pixel is more saturated), so matching LAB spreads can leave it off
    # target. One step closes the gap: the chroma scaled by target / measured, found on the small
    # copy the metrics read, so the full frame is converted once each way (float32, uint8 in).
    target = now.saturation + s * (ref.saturation - now.saturation)
    measured = saturation(lab_to_srgb(moved(srgb_to_lab(downscale(rgb)))))
    lab = moved(srgb_to_lab(rgb))
    if measured > 1e-3 and abs(target / measured - 1.0) > 0.01:
        lab[..., 1:] *= float(np.clip(target / measured, 0.5, 2.0))
    srgb = lab_to_srgb(lab)
    out = Image.fromarray(np.rint(srgb * 255.0).astype(np.uint8), "RGB")
    # What a backend keeps with its picture rides along: the built-in engine's morph between
    # genomes is there, and an img2img dream without it would settle on one flame per prompt.
    out.info.update(image.info)
    return out


def _sharpness_of(image: Image.Image) -> float:
    return sharpness(downscale(np.asarray(image.convert("RGB"))))


def _unsharp_luma(ycc: tuple[Image.Image, ...], radius: float, percent: int) -> Image.Image:
    """An unsharp mask on the luma only: sharpening each RGB channel would also push the colours
    apart (more saturation), which the colour loop would then have to pull back."""
    y, cb, cr = ycc
    sharp = y.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0))
    return Image.merge("YCbCr", (sharp, cb, cr)).convert("RGB")


def lift_detail(image: Image.Image, now: float, target: float) -> Image.Image:
    """``image`` (of sharpness ``now``) sharpened just enough to reach ``target``; the very same
    ``image`` when it already does, or when a mask would not help (a flat picture).

    The mask starts at the scale the metric reads (one pixel of the downscaled copy); a trial at
    one strength predicts the others, since the gain in sharpness is close to linear in the
    percent. A picture too soft for the strongest mask at that radius is tried at twice and three
    times the radius (a wider blur needs a wider mask), else given the strongest at the widest."""
    if now >= target or now <= 0.0:
        return image
    base = max(1.0, max(image.size) / MAX_SIDE)
    ycc = image.convert("RGB").convert("YCbCr").split()
    out: Image.Image | None = None
    for radius in (base, 2.0 * base, 3.0 * base):
        trial = _unsharp_luma(ycc, radius, _TRIAL_PERCENT)
        gain = _sharpness_of(trial) / now - 1.0
        if gain <= 1e-3:
            continue
        percent = round(_TRIAL_PERCENT * (target / now - 1.0) / gain)
        if percent <= 0:
            return image
        if percent <= MAX_UNSHARP_PERCENT or radius == 3.0 * base:
            percent = min(percent, MAX_UNSHARP_PERCENT)
            out = trial if percent == _TRIAL_PERCENT else _unsharp_luma(ycc, radius, percent)
            break
    if out is None:
        return image
    out.info.update(image.info)  # (what the backend keeps with its picture, as in match())
    return out


@dataclass(frozen=True, slots=True)
class Correction:
    """The last decision: the drift measured and the strength applied (0: left alone), and whether
    the frame was sharpened up to the detail floor."""

    drift: float
    strength: float
    sharpened: bool = False


class ColourCoherence:
    """Holds the frames of one prompt (and one backend) to the colours of its first frame, and
    keeps them from going softer than ``detail_floor`` times its sharpness (0: no floor)."""

    def __init__(
        self,
        *,
        max_strength: float = 1.0,
        band: float = DEAD_BAND,
        full: float = FULL_AT,
        detail_floor: float = DETAIL_FLOOR,
    ) -> None:
        if not 0.0 <= max_strength <= 1.0:
            raise ValueError(f"expected a strength in 0..1, got {max_strength}")
        if not 0.0 <= detail_floor <= 1.0:
            raise ValueError(f"expected a detail floor in 0..1, got {detail_floor}")
        strength_for(0.0, band=band, full=full)  # checks the band up front
        self.max_strength = max_strength
        self.band = band
        self.full = full
        self.detail_floor = detail_floor
        self._key: object = None
        self.reference: ColourStats | None = None
        self.last: Correction | None = None
        self.corrected = 0
        self.sharpened = 0

    def reset(self) -> None:
        """Forget the reference: the next frame becomes it."""
        self._key, self.reference = None, None

    def cohere(self, image: Image.Image, key: object) -> Image.Image:
        """``image`` corrected toward the reference of ``key`` (the prompt and backend it was made
        for). The first frame for a new key becomes the reference and is returned as it is; so is
        any frame within the band and above the detail floor."""
        now = ColourStats.of(image)
        if self.reference is None or key != self._key:
            self._key, self.reference, self.last = key, now, Correction(0.0, 0.0)
            return image
        d = drift(now, self.reference)
        s = strength_for(d, max_strength=self.max_strength, band=self.band, full=self.full)
        out = image
        if s > 0.0:
            self.corrected += 1
            out = match(image, now, self.reference, s)
        # Detail last: matching lightness can flatten a frame, so the floor is checked on what
        # will be shown. The mask works on luma only, so the colours just matched stay put.
        lifted = self._lift(out, now.sharpness if out is image else _sharpness_of(out))
        self.last = Correction(d, s, lifted is not out)
        return lifted

    def hold_detail(self, image: Image.Image, key: object) -> Image.Image:
        """The detail floor alone, for frames made from generated ones (slerped in-betweens): their
        colours follow their keyframes', their sharpness may dip between them."""
        if self.reference is None or key != self._key or self.detail_floor <= 0.0:
            return image
        return self._lift(image, _sharpness_of(image))

    def _lift(self, image: Image.Image, sharp: float) -> Image.Image:
        assert self.reference is not None
        if self.detail_floor <= 0.0:
            return image
        out = lift_detail(image, sharp, self.detail_floor * self.reference.sharpness)
        if out is not image:
            self.sharpened += 1
        return out
