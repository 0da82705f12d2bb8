"""The built-in dream engine: fractal flames on the CPU, no ML, no GPU, no network.

It keeps the whole pipeline alive (modes, buffer, output, cache, viewer) when no ComfyUI server
is reachable, and it is what most tests run on. It is **not AI** and says so in its name.

It draws fractal flames, the family Electric Sheep made beautiful without any AI: an iterated
function system (a few affine maps, each bent by nonlinear *variations* such as sinusoidal,
spherical, swirl or horseshoe) is run by the chaos game, vectorised in numpy, and the points
land in a density histogram that is tone-mapped by log density and gamma, coloured per map.
Fine glowing filaments at the output size, on a dark ground tinted by the palette.

* **Prompt-shaped.** The prompt picks a *style*: palette words (ocean → blues, fire → reds, ...)
  colour the maps, structure words (waves, stars, crystal, trees, mist, flames) pick the
  variations and the symmetry; unknown words still hash to a stable palette and structure.
* **Seed → genome.** The seed draws the maps' coefficients, weights and colours (a few candidates,
  the first that fills the frame wins); the prompt fixes which variations each map uses, so any two
  genomes of one prompt can be *morphed* by interpolating their numbers.
* **Deterministic.** Same prompt + seed + size → the same pixels (seeded numpy Generators).
* **Real img2img semantics.** ``denoise`` 0 returns the input untouched, 1 ignores it (it is
  txt2img for that seed), and values in between blend continuously: the input drifts (a slight
  zoom and turn, scaled by denoise) and is mixed with a flame whose genome is morphed from the
  prompt's own genome toward the seed's by denoise. Fed back frame after frame at the usual
  0.3-0.5 the dream breathes around the prompt's flame instead of flickering between unrelated
  ones, and it cannot fade to mush: every step adds fresh, sharp filaments.
* **Noise → flame, continuously.** ``render_noise`` draws a genome from a noise tensor's direction
  (each number it needs is the normal CDF of the noise's projection on a fixed direction), so
  nearby noises give nearby flames, as a diffusion model maps slerped noise to a smooth walk. The
  ComfyUI test server's samplers use it when they are handed noise instead of a seed.
* **A latent space at full resolution.** ``encode`` maps pixels to a ``[B, 4, H, W]`` float32
  latent (``LATENT_FACTOR`` 1): luma, two chroma channels and the luma's detail band (luma minus its
  3x3 mean); ``decode`` maps back exactly. Slerped latents decode to in-betweens as sharp as the
  keyframes they join (no blocky upscaling, no sharpness pop at each keyframe), and interpolation
  modes need nothing more.

A 256×512 frame takes a few tens of milliseconds on one core (see ``bench/builtin_engine.py``).
"""

from __future__ import annotations

import asyncio
import colorsys
import functools
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from dream_window.values.generation import (
    NO_PLAN,
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    Plan,
    PreviewCallback,
    ProgressCallback,
)

T = TypeVar("T")

LATENT_CHANNELS = 4
# The latent keeps every pixel: decoded in-betweens are as sharp as the keyframes they join.
LATENT_FACTOR = 1

# Colour stops by keyword, RGB in 0..1. Order in the prompt decides which dominates.
_PALETTES: dict[str, list[tuple[float, float, float]]] = {
    "ocean": [(0.01, 0.04, 0.15), (0.02, 0.22, 0.45), (0.05, 0.55, 0.70), (0.60, 0.92, 0.95)],
    "water": [(0.02, 0.06, 0.18), (0.05, 0.30, 0.50), (0.30, 0.65, 0.80), (0.85, 0.95, 1.00)],
    "night": [(0.00, 0.00, 0.04), (0.04, 0.05, 0.20), (0.18, 0.15, 0.45), (0.70, 0.75, 0.95)],
    "nebula": [(0.02, 0.00, 0.06), (0.30, 0.05, 0.40), (0.85, 0.30, 0.55), (1.00, 0.85, 0.70)],
    "cosmic": [(0.00, 0.00, 0.05), (0.12, 0.05, 0.35), (0.55, 0.20, 0.70), (0.95, 0.80, 1.00)],
    "space": [(0.00, 0.00, 0.02), (0.05, 0.05, 0.20), (0.30, 0.25, 0.60), (0.90, 0.90, 1.00)],
    "fire": [(0.08, 0.00, 0.00), (0.55, 0.06, 0.02), (0.95, 0.45, 0.05), (1.00, 0.92, 0.55)],
    "sunset": [(0.15, 0.04, 0.20), (0.65, 0.18, 0.35), (0.98, 0.52, 0.25), (1.00, 0.85, 0.55)],
    "forest": [(0.02, 0.06, 0.02), (0.08, 0.25, 0.08), (0.35, 0.55, 0.20), (0.85, 0.90, 0.55)],
    "moss": [(0.04, 0.08, 0.03), (0.18, 0.35, 0.10), (0.45, 0.60, 0.25), (0.80, 0.85, 0.60)],
    "gold": [(0.12, 0.06, 0.00), (0.50, 0.32, 0.05), (0.90, 0.70, 0.20), (1.00, 0.95, 0.70)],
    "golden": [(0.12, 0.06, 0.00), (0.50, 0.32, 0.05), (0.90, 0.70, 0.20), (1.00, 0.95, 0.70)],
    "lavender": [(0.15, 0.10, 0.25), (0.45, 0.35, 0.65), (0.75, 0.65, 0.90), (0.98, 0.92, 1.00)],
    "neon": [(0.02, 0.00, 0.06), (0.90, 0.05, 0.70), (0.10, 0.90, 0.95), (0.95, 1.00, 0.40)],
    "crystal": [(0.05, 0.08, 0.15), (0.35, 0.60, 0.85), (0.80, 0.65, 0.95), (0.98, 1.00, 1.00)],
    "prismatic": [(0.20, 0.05, 0.40), (0.10, 0.60, 0.90), (0.95, 0.85, 0.20), (1.00, 0.45, 0.60)],
    "light": [(0.20, 0.18, 0.30), (0.60, 0.55, 0.75), (0.95, 0.90, 0.85), (1.00, 1.00, 0.97)],
    "angel": [(0.25, 0.20, 0.35), (0.70, 0.60, 0.80), (0.98, 0.88, 0.75), (1.00, 1.00, 0.98)],
    "ice": [(0.05, 0.10, 0.18), (0.40, 0.60, 0.75), (0.80, 0.90, 0.98), (1.00, 1.00, 1.00)],
    "desert": [(0.25, 0.12, 0.05), (0.65, 0.40, 0.20), (0.90, 0.70, 0.45), (1.00, 0.92, 0.75)],
    "rose": [(0.20, 0.02, 0.08), (0.65, 0.12, 0.30), (0.95, 0.55, 0.65), (1.00, 0.90, 0.92)],
    "mist": [(0.30, 0.33, 0.38), (0.55, 0.60, 0.65), (0.78, 0.82, 0.85), (0.95, 0.96, 0.97)],
}

# Structure by keyword: which shaping the noise field gets.
_STRUCTURES: dict[str, str] = {
    "wave": "waves",
    "waves": "waves",
    "ocean": "waves",
    "water": "waves",
    "sea": "waves",
    "nebula": "stars",
    "cosmic": "stars",
    "space": "stars",
    "stars": "stars",
    "galaxy": "stars",
    "night": "stars",
    "crystal": "cells",
    "geometric": "cells",
    "prismatic": "cells",
    "cathedral": "cells",
    "ice": "cells",
    "forest": "trees",
    "tree": "trees",
    "trees": "trees",
    "rain": "trees",
    "waterfall": "trees",
    "mist": "mist",
    "fog": "mist",
    "cloud": "mist",
    "clouds": "mist",
    "dreamy": "mist",
    "ethereal": "mist",
    "fire": "flames",
    "flame": "flames",
    "flames": "flames",
    "aurora": "flames",
    "smoke": "flames",
}


# Which variations a structure bends its maps with, and its rotational symmetry.
_VARIATIONS: dict[str, tuple[str, ...]] = {
    "waves": ("waves", "sinusoidal", "linear"),
    "stars": ("julia", "spherical", "bubble"),
    "cells": ("linear", "disc", "spherical"),
    "trees": ("linear", "linear", "sinusoidal"),
    "mist": ("bubble", "handkerchief", "sinusoidal"),
    "flames": ("swirl", "horseshoe", "heart"),
    "swirl": ("swirl", "spherical", "handkerchief", "sinusoidal"),
}
_SYMMETRY: dict[str, tuple[int, ...]] = {"cells": (3, 4, 5, 6), "stars": (1, 2), "swirl": (1, 2, 3)}

# The chaos game's budget: points x iterations, of which the first few are not plotted (they have
# not reached the attractor yet). Points follow the pixel count: about 36 k points and 0.8 M plotted
# samples for a 256x512 frame (well under 100 ms), a few ms for the small frames tests use.
_POINTS_PER_PIXEL = 0.275
_ITERATIONS = 26
_BURN_IN = 4
_CANDIDATES = 6  # genomes tried per seed; the first that fills the frame is drawn
_GAMMA = 2.4
_DENSITY_FLOOR = 0.12

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _digest(*parts: object) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(s, 1.0), min(v, 1.0))


@dataclass(frozen=True, slots=True)
class Style:
    """What the prompt decides: the palette, the structure, and the shape of every genome."""

    palette: np.ndarray  # [stops, 3], dark → light
    structure: str
    variations: tuple[tuple[str, ...], ...]  # per map: the variations it blends
    symmetry: int

    @classmethod
    def from_prompt(cls, prompt: str) -> Style:
        words = [w.strip(".,;:!?()[]\"'").lower() for w in prompt.split()]
        stops: list[tuple[float, float, float]] = []
        for w in words:
            if w in _PALETTES and len(stops) < 8:
                stops.extend(_PALETTES[w])
        if not stops:
            # Unknown words still give a stable, harmonious palette: hues around one base hue.
            base = (_digest("hue", prompt.lower()) % 360) / 360.0
            stops = [_hsv(base + 0.08 * i, 0.35 + 0.15 * i, 0.12 + 0.28 * i) for i in range(4)]
        # Sorted by luminance: the darkest stop tints the ground, the others colour the maps.
        arr = np.array(stops, dtype=np.float32)
        arr = arr[np.argsort(arr @ _LUMA, kind="stable")]
        structure = next((_STRUCTURES[w] for w in words if w in _STRUCTURES), "swirl")
        h = _digest("style", prompt.lower())
        pool = _VARIATIONS[structure]
        n_maps = 3 + h % 2
        variations = tuple(
            tuple(sorted({pool[(h >> (4 * i + 2)) % len(pool)], pool[(h >> (4 * i + 20)) % len(pool)]}))
            for i in range(n_maps)
        )
        sym = _SYMMETRY.get(structure, (1,))
        return cls(arr, structure, variations, sym[(h >> 40) % len(sym)])


@dataclass(frozen=True, slots=True)
class Genome:
    """One flame: the numbers a seed draws for a style's maps. Two genomes of one style morph by
    interpolating these arrays (Electric Sheep's genome morph)."""

    affine: np.ndarray  # [maps, 6]: x' = a x + b y + c, y' = d x + e y + f
    var_weights: np.ndarray  # [maps, 2]: weights of the map's variations (one used when it has one)
    weights: np.ndarray  # [maps]: how often each map is chosen
    colours: np.ndarray  # [maps]: the colour index each map pulls points toward, 0..1
    hue_shift: float  # where along the palette this flame starts

    def lerp(self, other: Genome, t: float) -> Genome:
        def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return ((1.0 - t) * a + t * b).astype(np.float32)

        return Genome(
            mix(self.affine, other.affine),
            mix(self.var_weights, other.var_weights),
            mix(self.weights, other.weights),
            mix(self.colours, other.colours),
            (1.0 - t) * self.hue_shift + t * other.hue_shift,
        )


class _NoiseDraws:
    """The few draws ``_draw_genome`` makes, read off a noise tensor instead of a generator: the
    k-th uniform is the normal CDF of the noise's projection on the k-th of a fixed set of random
    directions (for independent gaussian noise those projections are standard normal, so the
    uniforms are uniform). Continuous in the noise; the colour order never permutes (a swap would
    be a jump)."""

    def __init__(self, noise: np.ndarray, count: int) -> None:
        z = np.asarray(noise, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(z))
        p = _directions(z.size, count) @ z / (norm if norm > 0.0 else 1.0)
        self._u = 0.5 * (1.0 + np.vectorize(math.erf)(p / math.sqrt(2.0)))
        self._i = 0

    def _take(self, k: int) -> np.ndarray:
        out = self._u[self._i : self._i + k]
        self._i += k
        return out

    def uniform(self, lo: float, hi: float, size: int | tuple[int, ...]) -> np.ndarray:
        shape = (size,) if isinstance(size, int) else size
        return lo + (hi - lo) * self._take(math.prod(shape)).reshape(shape)

    def random(self) -> float:
        return float(self._take(1)[0])

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)


# How far from the prompt's own genome a noise can take ``render_noise``'s flame (0..1).
NOISE_REACH = 0.5


@functools.lru_cache(maxsize=4)
def _directions(size: int, count: int) -> np.ndarray:
    """``count`` fixed random directions in a noise of ``size`` numbers, gaussian entries: the
    projection of a unit vector on one has a variance of about 1."""
    return np.random.default_rng(_digest("noise-directions", size, count)).standard_normal((count, size))


def _draw_genome(style: Style, rng: np.random.Generator | _NoiseDraws) -> Genome:
    n = len(style.variations)
    ang = rng.uniform(-np.pi, np.pi, n)
    scale = rng.uniform(0.45, 0.95, n)
    shear = rng.uniform(-0.35, 0.35, n)
    squash = rng.uniform(0.55, 1.0, n)
    if style.structure == "trees":
        ang = rng.uniform(-0.5, 0.5, n)  # branches stay upright-ish
    a = scale * np.cos(ang)
    b = -scale * np.sin(ang) * squash + shear
    d = scale * np.sin(ang)
    e = scale * np.cos(ang) * squash
    c = rng.uniform(-1.0, 1.0, n)
    f = rng.uniform(-1.0, 1.0, n)
    affine = np.stack([a, b, c, d, e, f], axis=1).astype(np.float32)
    var_weights = rng.uniform(0.3, 1.0, (n, 2)).astype(np.float32)
    var_weights /= var_weights.sum(axis=1, keepdims=True)
    weights = rng.uniform(0.4, 1.0, n).astype(np.float32)
    colours = np.linspace(0.0, 1.0, n, dtype=np.float32)[rng.permutation(n)]
    return Genome(affine, var_weights, weights, colours, float(rng.random()))


def _variation(name: str, x: np.ndarray, y: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One flame variation (the flam3 formulas) applied to points already through the map."""
    if name == "linear":
        return x, y
    if name == "sinusoidal":
        return np.sin(x), np.sin(y)
    r2 = x * x + y * y + np.float32(1e-6)
    if name == "spherical":
        return x / r2, y / r2
    if name == "swirl":
        s, c = np.sin(r2), np.cos(r2)
        return x * s - y * c, x * c + y * s
    if name == "bubble":
        k = 4.0 / (r2 + 4.0)
        return x * k, y * k
    if name == "waves":
        return (
            x + aff[1] * np.sin(y / (aff[2] * aff[2] + 0.1)),
            y + aff[4] * np.sin(x / (aff[5] * aff[5] + 0.1)),
        )
    r = np.sqrt(r2)
    if name == "horseshoe":
        return (x - y) * (x + y) / r, 2.0 * x * y / r
    theta = np.arctan2(x, y)
    if name == "handkerchief":
        return r * np.sin(theta + r), r * np.cos(theta - r)
    if name == "heart":
        return r * np.sin(theta * r), -r * np.cos(theta * r)
    if name == "disc":
        k = theta / np.float32(np.pi)
        return k * np.sin(np.pi * r), k * np.cos(np.pi * r)
    if name == "julia":
        # Half the points take the other square root: a fixed alternating pattern over shuffled
        # points is as random as drawing, and free.
        sr = np.sqrt(r)
        half = theta * 0.5 + np.where(np.arange(x.size) % 2 == 0, 0.0, np.pi).astype(np.float32)
        return sr * np.cos(half), sr * np.sin(half)
    raise ValueError(f"unknown variation {name!r}")


def _chaos_game(
    style: Style, genome: Genome, rng: np.random.Generator, points: int, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plotted samples (x, y, colour index) of the flame's attractor, [iterations - burn-in, points]."""
    n_maps = len(style.variations)
    share = genome.weights / genome.weights.sum()
    bounds = np.concatenate([[0], np.cumsum(np.round(share * points).astype(np.int64))])
    bounds[-1] = points
    x = rng.uniform(-1.0, 1.0, points).astype(np.float32)
    y = rng.uniform(-1.0, 1.0, points).astype(np.float32)
    col = rng.random(points, dtype=np.float32)
    keep = max(iterations - _BURN_IN, 1)
    xs = np.empty((keep, points), np.float32)
    ys = np.empty((keep, points), np.float32)
    cs = np.empty((keep, points), np.float32)
    sym = style.symmetry
    if sym > 1:
        rot_c = np.cos(2.0 * np.pi * np.arange(sym) / sym).astype(np.float32)
        rot_s = np.sin(2.0 * np.pi * np.arange(sym) / sym).astype(np.float32)
    for it in range(iterations):
        # Shuffle the points, then map k takes a fixed slice: each point's next map is drawn by weight,
        # and every map works on a contiguous block (fast numpy, no masks).
        order = rng.permutation(points)
        x, y, col = x[order], y[order], col[order]
        nx = np.empty_like(x)
        ny = np.empty_like(y)
        for k in range(n_maps):
            lo, hi = bounds[k], bounds[k + 1]
            if hi <= lo:
                continue
            a, b, c, d, e, f = genome.affine[k]
            px, py = x[lo:hi], y[lo:hi]
            ax = a * px + b * py + c
            ay = d * px + e * py + f
            vx = np.zeros_like(ax)
            vy = np.zeros_like(ay)
            for name, w in zip(style.variations[k], genome.var_weights[k], strict=False):
                ox, oy = _variation(name, ax, ay, genome.affine[k])
                vx += w * ox
                vy += w * oy
            if len(style.variations[k]) == 1:
                vx /= genome.var_weights[k][0]
                vy /= genome.var_weights[k][0]
            nx[lo:hi] = vx
            ny[lo:hi] = vy
            col[lo:hi] = 0.5 * (col[lo:hi] + genome.colours[k])
        if sym > 1:
            j = np.arange(points) % sym  # points are shuffled: a fixed pattern is a random choice
            cj, sj = rot_c[j], rot_s[j]
            nx, ny = cj * nx - sj * ny, sj * nx + cj * ny
        # Points thrown far out (or to nan by a singular map) restart inside: the attractor is unharmed.
        bad = ~(np.abs(nx) + np.abs(ny) < 1e3)
        if bad.any():
            nx[bad] = rng.uniform(-1.0, 1.0, int(bad.sum()))
            ny[bad] = rng.uniform(-1.0, 1.0, int(bad.sum()))
        x, y = nx, ny
        if it >= iterations - keep:
            i = it - (iterations - keep)
            xs[i], ys[i], cs[i] = x, y, col
    return xs, ys, cs


def _camera(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """Centre and pixels-per-unit that frame the attractor's bulk (robust to stray points)."""
    sx, sy = xs[-4:].ravel(), ys[-4:].ravel()
    x0, x1 = np.percentile(sx, (3.0, 97.0))
    y0, y1 = np.percentile(sy, (3.0, 97.0))
    span = max(float(x1 - x0) / width, float(y1 - y0) / height, 1e-6)
    return float(x0 + x1) * 0.5, float(y0 + y1) * 0.5, 0.92 / span


def _coverage(style: Style, genome: Genome, rng: np.random.Generator) -> float:
    """How much of a 16x32 grid a quick chaos game fills once framed: 0 for a dot or a line."""
    xs, ys, _ = _chaos_game(style, genome, rng, 1500, 14)
    cx, cy, s = _camera(xs, ys, 16, 32)
    ix = np.clip((xs - cx) * s + 8, 0, 15).astype(np.int32)
    iy = np.clip((ys - cy) * s + 16, 0, 31).astype(np.int32)
    return float(np.unique(iy * 16 + ix).size) / 512.0


def _blur121(a: np.ndarray) -> np.ndarray:
    """A separable [1, 2, 1]/4 blur, edges repeated."""
    p = np.pad(a, 1, mode="edge")
    h = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]
    return (h[:-2] + 2.0 * h[1:-1] + h[2:]) * np.float32(1.0 / 16.0)


def _box3(a: np.ndarray) -> np.ndarray:
    """A separable 3x3 mean, edges repeated: the base the latent's detail channel is measured from."""
    p = np.pad(a, 1, mode="edge")
    h = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return (h[:-2] + h[1:-1] + h[2:]) * np.float32(1.0 / 9.0)


GROUND_LUMA = 0.045


def _lut(style: Style, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A 256-entry colour table for the maps and the ground colour, from the palette."""
    stops = style.palette
    # The ground: the darkest stop's hue, lifted to a deep but visible luma (GROUND_LUMA), two thirds
    # toward neutral so a saturated stop does not flood the frame. Dark enough to make the
    # filaments glow; not black, so the picture has no crushed shadows to lose detail in.
    hue = stops[0] / max(float(stops[0] @ _LUMA), 1e-3) * GROUND_LUMA
    ground = np.clip(0.35 * hue + 0.65 * GROUND_LUMA, 0.0, 1.0)
    lit = stops[1:] if len(stops) > 2 else stops
    # Light comes from density, so each colour keeps its hue and saturation at full value.
    lit = lit / np.maximum(lit.max(axis=1, keepdims=True), 1e-3) * 0.92
    # Cyclic through the lit stops, starting at the genome's shift: every colour gets its turn.
    ring = np.concatenate([lit, lit[:1]], axis=0)
    pos = (np.linspace(0.0, 1.0, 256, dtype=np.float32) * 0.999 + shift) % 1.0
    stops_at = np.linspace(0.0, 1.0, len(ring), dtype=np.float32)
    table = np.stack([np.interp(pos, stops_at, ring[:, ch]) for ch in range(3)], axis=1)
    return table.astype(np.float32), ground.astype(np.float32)


def _reflect(v: np.ndarray, size: int) -> np.ndarray:
    """Coordinates folded back into [0, size - 1] (mirror): no smeared copies of the border."""
    m = np.float32(size - 1)
    v = np.abs(v)
    return m - np.abs(m - v)


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``img`` [H, W, C] at float pixel coordinates, mirrored at the edges."""
    h, w = img.shape[:2]
    x = np.clip(_reflect(x, w), 0, w - 1.001)
    y = np.clip(_reflect(y, h), 0, h - 1.001)
    x0 = x.astype(np.int32)
    y0 = y.astype(np.int32)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    a = img[y0, x0]
    b = img[y0, x0 + 1]
    c = img[y0 + 1, x0]
    d = img[y0 + 1, x0 + 1]
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    return top + (bot - top) * fy


@functools.lru_cache(maxsize=64)
def _genome_for(prompt: str, seed: int | None) -> Genome:
    """The genome a seed draws for a prompt: the first of a few candidates that fills the frame, else
    the one that fills it most. ``None`` draws the prompt's own genome (the one img2img morphs from),
    always the fullest of its candidates: an img2img dream rests on it."""
    style = Style.from_prompt(prompt)
    best: tuple[float, Genome] | None = None
    for i in range(_CANDIDATES):
        key = ("genome", prompt.lower(), "prompt" if seed is None else seed, i)
        genome = _draw_genome(style, np.random.default_rng(_digest(*key)))
        cover = _coverage(style, genome, np.random.default_rng(_digest("coverage", *key)))
        if cover >= 0.4 and seed is not None:
            return genome  # good enough; the prompt's own genome is worth trying every candidate
        if best is None or cover > best[0]:
            best = (cover, genome)
    assert best is not None
    return best[1]


# How far one img2img step at denoise 1 moves along a morph: at the default 0.4 a morph from one
# genome to the next takes 1 / (0.1 * 0.4) = 25 frames (about 40 s at 1.5 s a frame).
MORPH_STEP = 0.1
MORPH_KEY = "dream_window.flame_morph"


@dataclass(frozen=True, slots=True)
class Morph:
    """Where an img2img dream is on its way between two genomes (Electric Sheep's morph): from the
    genome of seed ``origin`` (None: the prompt's own) toward ``target``'s, ``t`` of the way.

    The engine is a pure function of its inputs, and an img2img seed is new every frame, so nothing
    but the picture itself can carry where the dream was going. The morph rides along in the PIL
    image's ``info`` (in memory: it is what the mode feeds back). A picture without one (from
    ComfyUI, the frame cache, a file) starts afresh from the prompt's own genome.
    """

    origin: int | None
    target: int
    t: float

    @classmethod
    def start(cls, seed: int) -> Morph:
        """The morph a txt2img flame of ``seed`` sits at: that genome, about to leave it."""
        return cls(seed, seed, 1.0)

    @classmethod
    def of(cls, image: Image.Image) -> Morph:
        found = image.info.get(MORPH_KEY)
        if isinstance(found, Morph):
            return found
        return cls(None, 0, 1.0)  # the prompt's own genome: the first step picks a target

    def step(self, dt: float, next_seed: int) -> Morph:
        """``dt`` further; past the target the morph heads on from it toward ``next_seed``'s genome."""
        t = self.t + dt
        if t >= 1.0:
            origin = self.target if self.origin is not None or self.t < 1.0 else None
            return Morph(origin, next_seed, min(t - 1.0, 1.0))
        return Morph(self.origin, self.target, t)

    def genome(self, prompt: str) -> Genome:
        return _genome_for(prompt, self.origin).lerp(_genome_for(prompt, self.target), self.t)

    def label(self, image: Image.Image) -> None:
        image.info[MORPH_KEY] = self


def _flame(style: Style, genome: Genome, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """The chaos game's samples, binned and tone-mapped: a [H, W, 3] float32 picture in 0..1."""
    points = int(np.clip(width * height * _POINTS_PER_PIXEL, 2_000, 150_000))
    xs, ys, cs = _chaos_game(style, genome, rng, points, _ITERATIONS)
    # The framing is the genome's, not this run's: a genome morphed a little is framed a little
    # differently, and the same genome never jitters between frames.
    cx, cy, s = _camera(*_chaos_game(style, genome, np.random.default_rng(7), 6000, 16)[:2], width, height)
    # Integer pixel of every sample; +1 before truncating floors the (-1, 0) sliver correctly, and
    # samples off the frame go to one spare bin past the end (no boolean compress: it is slow).
    ix = ((xs - cx) * s + (width * 0.5 + 1.0)).astype(np.int32).ravel() - 1
    iy = ((ys - cy) * s + (height * 0.5 + 1.0)).astype(np.int32).ravel() - 1
    size = width * height
    idx = iy * width + ix
    idx[(ix.view(np.uint32) >= width) | (iy.view(np.uint32) >= height)] = size
    dens = np.bincount(idx, minlength=size + 1)[:size].astype(np.float32).reshape(height, width)
    csum = np.bincount(idx, weights=cs.ravel(), minlength=size + 1)[:size].astype(np.float32)
    csum = csum.reshape(height, width)
    # Density estimation, cheaply: where few points landed a wider blur hides the speckle; where
    # many did, the fine one keeps the filaments crisp.
    d1, c1 = _blur121(dens), _blur121(csum)
    d2, c2 = _blur121(_blur121(d1)), _blur121(_blur121(c1))
    fine = np.clip(d1 * np.float32(0.5), 0.0, 1.0)
    dens = fine * d1 + (1.0 - fine) * d2
    colour_index = (fine * c1 + (1.0 - fine) * c2) / np.maximum(dens, np.float32(1e-6))
    # Log-density tone mapping, normalised by a high percentile (not the max: one hot pixel would
    # dim the whole frame), then gamma: faint structure stays visible, cores stay bright.
    # A lone point (density well under one) is noise, not structure: it stays below the floor.
    ld = np.log1p(np.maximum(dens - np.float32(_DENSITY_FLOOR), 0.0))
    probe = ld[::3, ::3]
    lit = probe[probe > 0.05]
    ref = float(np.percentile(lit, 99.0)) if lit.size else 1.0
    alpha = np.clip(ld * np.float32(1.0 / max(ref, 1e-3)), 0.0, 1.0) ** np.float32(1.0 / _GAMMA)
    table, ground = _lut(style, genome.hue_shift)
    col = table[(np.clip(colour_index, 0.0, 1.0) * 255.0).astype(np.int32)]
    a2 = alpha * alpha
    a4 = a2 * a2
    rgb = ground + (col - ground) * alpha[..., None]
    rgb += (1.0 - rgb) * (np.float32(0.22) * a4 * a4)[..., None]  # dense cores run toward white
    yy, xx = np.ogrid[0:height, 0:width]
    r2 = ((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2).astype(np.float32)
    return (rgb * (1.0 - 0.45 * r2)[..., None]).astype(np.float32)


class BuiltinEngine:
    """Procedural CPU dream engine (fractal flames) implementing :class:`GenerationBackend`. Not AI."""

    name = "built-in engine (not AI)"
    is_ai = False
    latent_channels = LATENT_CHANNELS

    def __init__(self, *, offload: bool = True) -> None:
        # Work runs in a thread so the event loop stays responsive (signals, viewer, status).
        self._offload = offload
        self._progress: ProgressCallback | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> BackendHealth:
        return BackendHealth(True, "built-in engine (not AI) ready")

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        self._progress = callback

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        return None  # frames take tens of milliseconds here: nothing worth previewing

    def status_sections(self) -> dict[str, object]:
        return {}  # status.json's core keys say all there is (backend, health)

    async def withdraw(self) -> None:
        return None  # it never works ahead: plans are ignored

    async def interrupt(self) -> None:
        return None

    async def free_memory(self) -> None:
        _genome_for.cache_clear()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # --- the protocol ---------------------------------------------------------------------

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        t0 = time.perf_counter()
        arr = await self._run(self.render, request.prompt, request.seed, request.width, request.height)
        self._report(request)
        img = Image.fromarray(arr)
        Morph.start(request.seed).label(img)
        return GeneratedImage(img, request, (time.perf_counter() - t0) * 1000.0)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        t0 = time.perf_counter()
        out = await self._run(self.grow, image, request)
        self._report(request)
        return GeneratedImage(out, request, (time.perf_counter() - t0) * 1000.0)

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return await self._run(self.encode_sync, images)

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        return await self._run(self.decode_sync, latents)

    def _report(self, request: GenerationRequest) -> None:
        if self._progress is not None:
            self._progress(request.steps, request.steps)

    # --- the pictures (synchronous, pure functions of their inputs) -------------------------

    def render(self, prompt: str, seed: int, width: int, height: int) -> np.ndarray:
        """txt2img: a [H, W, 3] uint8 flame for ``prompt`` and ``seed``."""
        return _to_uint8(self._render_f(prompt, _genome_for(prompt, seed), width, height))

    def render_noise(self, prompt: str, noise: np.ndarray, width: int, height: int) -> np.ndarray:
        """A [H, W, 3] uint8 flame whose genome is a continuous function of ``noise`` (any shape,
        non-zero): a slerp between two noises walks between their flames."""
        style = Style.from_prompt(prompt)
        # Every draw _draw_genome can make for this style (10 per map, and one), once.
        draws = _NoiseDraws(noise, 10 * len(style.variations) + 1)
        # Halfway from the prompt's own genome: the prompt keeps the look, the noise moves the
        # composition (as on a model), and a walk's frames stay relatives, never a collapsed map.
        genome = _genome_for(prompt, None).lerp(_draw_genome(style, draws), NOISE_REACH)
        return _to_uint8(self._render_f(prompt, genome, width, height))

    def _render_f(self, prompt: str, genome: Genome, width: int, height: int) -> np.ndarray:
        # The chaos game's own randomness is the prompt's, not the seed's (the seed has drawn the
        # genome): two close genomes then land their points close together, so a morph moves the
        # filaments instead of re-rolling the grain of every frame.
        rng = np.random.default_rng(_digest("render", prompt, width, height))
        return _flame(Style.from_prompt(prompt), genome, rng, width, height)

    def grow(self, image: Image.Image, request: GenerationRequest) -> Image.Image:
        """img2img: drift the input by ``denoise`` and mix in the next flame of its morph."""
        d = float(request.denoise)
        src = image.convert("RGB")
        w, h = request.width, request.height
        if src.size != (w, h):
            src = src.resize((w, h), Image.Resampling.BICUBIC)
        if d <= 0.0:
            return src.copy()
        if d >= 1.0:
            out = Image.fromarray(self.render(request.prompt, request.seed, w, h))
            Morph.start(request.seed).label(out)
            return out
        # The fresh flame: one step further along the input's morph (see Morph), so successive
        # frames are close relatives that keep moving: breathing, not flicker, and never still.
        morph = Morph.of(image).step(MORPH_STEP * d, request.seed)
        fresh = self._render_f(request.prompt, morph.genome(request.prompt), w, h)
        a = np.asarray(src, dtype=np.float32) * np.float32(1.0 / 255.0)
        rng = np.random.default_rng(_digest("grow", request.prompt, request.seed, w, h))
        # Drift: a slight zoom toward a point near the middle and a slight turn, scaled by d.
        cx, cy = w * (0.4 + 0.2 * rng.random()), h * (0.4 + 0.2 * rng.random())
        zoom = 1.0 + 0.012 * d
        ang = (rng.random() - 0.5) * 0.02 * d
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = (xx - cx) / zoom, (yy - cy) / zoom
        ca, sa = np.float32(np.cos(ang)), np.float32(np.sin(ang))
        drifted = _sample(a, cx + ca * dx - sa * dy, cy + sa * dx + ca * dy)
        # k(d) = d: continuous, 0 at 0 and 1 at 1. The fresh flame is a close relative of the input's
        # (above), so even a large share of it changes little per step at the usual 0.3-0.5, and the
        # fed-back input (whose trails blur) weighs less.
        k = np.float32(d)
        out = Image.fromarray(_to_uint8((1.0 - k) * drifted + k * fresh))
        morph.label(out)
        return out

    def encode_sync(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            raise ValueError("encode needs at least one image")
        out = []
        for img in images:
            rgb = img.convert("RGB")
            w, h = rgb.size
            if w % LATENT_FACTOR or h % LATENT_FACTOR:
                raise ValueError(f"image size must be a multiple of {LATENT_FACTOR}, got {w}x{h}")
            a = np.asarray(rgb, dtype=np.float32) * np.float32(1.0 / 255.0)
            y = a @ _LUMA
            # Decorrelated colour (luma + two chroma) and the luma's detail band, scaled to a unit-ish
            # range like a VAE latent. Linear, so slerped latents stay consistent; luma is not centred
            # on grey, because slerp's norm-keeping gain (up to ~1.4 between unrelated keyframes)
            # would then push a flame's dark ground to black instead of lifting its light a little.
            z = np.stack(
                [y * 3.0, (a[..., 2] - y) * 4.0, (a[..., 0] - y) * 4.0, (y - _box3(y)) * 12.0], axis=0
            )
            out.append(z)
        return np.stack(out).astype(np.float32)

    def decode_sync(self, latents: np.ndarray) -> list[Image.Image]:
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim == 3:
            z = z[None]
        if z.ndim != 4 or z.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"expected latents shaped [B, {LATENT_CHANNELS}, H, W], got {list(z.shape)}")
        images = []
        for zi in z:
            # Base (3x3 mean of the luma channel) plus the detail band: exact for an encoded picture.
            y = _box3(zi[0] / 3.0) + zi[3] / 12.0
            r = y + zi[2] / 4.0
            b = y + zi[1] / 4.0
            g = (y - 0.299 * r - 0.114 * b) / 0.587
            images.append(Image.fromarray(_to_uint8(np.stack([r, g, b], axis=-1))))
        return images


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
