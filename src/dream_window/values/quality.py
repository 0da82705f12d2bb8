"""Per-frame quality metrics: pure functions of pixels, numpy only.

What a person sees going wrong in a long dream, as numbers (all on a 0..1 scale):

    brightness   mean luma (Rec. 709 weights on the sRGB values)
    contrast     standard deviation of luma (RMS contrast)
    saturation   mean HSV saturation, (max - min) / max per pixel; 0 for a grey picture
    clipped      fraction of pixels with luma below CLIP_DARK or above CLIP_BRIGHT (crushed blacks,
                 blown whites); ``dark`` and ``bright`` are the two parts
    sharpness    mean gradient magnitude of luma (forward differences): a step from 0 to 1 across a
                 picture W pixels wide gives 1 / (W - 1)
    change       mean |a - b| over all RGB values of two frames (0: the same picture)
    histogram    total-variation distance of two joint RGB histograms (0: same colours, 1: none shared)

Everything is measured on :func:`downscale`'s copy (an integer box filter down to at most
``MAX_SIDE`` pixels), so it is cheap enough for every frame, and the bench and status.json give
the same numbers for the same frame. This module imports nothing but numpy: ``bench/quality.py``
loads it by file path to measure older commits that do not have it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Frames are measured on a copy at most this many pixels on its long side (256x512 -> 128x256).
MAX_SIDE = 256
# Luma below / above these counts as clipped (near-black, near-white).
CLIP_DARK = 0.02
CLIP_BRIGHT = 0.98
# Joint RGB histogram: this many bins per channel.
HIST_BINS = 8
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class FrameMetrics:
    brightness: float
    contrast: float
    saturation: float
    clipped: float
    dark: float
    bright: float
    sharpness: float

    def to_dict(self, digits: int = 5) -> dict[str, float]:
        return {k: round(v, digits) for k, v in asdict(self).items()}


def as_float(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` ([H, W, 3], uint8 0..255 or float 0..1) as float32 in 0..1. ValueError for any other shape."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape [H, W, 3], got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32, copy=False)


def downscale(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """A float copy at most ``max_side`` on its long side, by an integer box filter (the mean of
    each k x k block; edge rows/columns that do not fill a block are dropped)."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape [H, W, 3], got {a.shape}")
    h, w = a.shape[:2]
    k = max(1, math.ceil(max(h, w) / max_side))
    if k == 1:
        return as_float(a)
    hh, ww = h // k, w // k
    a = a[: hh * k, : ww * k]
    if a.dtype != np.uint8:
        return as_float(a).reshape(hh, k, ww, k, 3).mean(axis=(1, 3), dtype=np.float32)
    # Frames arrive as uint8: their blocks are summed as integers, one strided add per row and
    # column of a block, and only the small result is made float. Ten times faster than the mean
    # of a float copy (every frame is downscaled several times: metrics, coherence, look matching).
    acc = np.uint16 if k * k * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows: np.ndarray = a[0::k].astype(acc)
    for i in range(1, k):
        np.add(rows, a[i::k], out=rows)
    out: np.ndarray = rows[:, 0::k].copy()
    for j in range(1, k):
        np.add(out, rows[:, j::k], out=out)
    return out.astype(np.float32) * np.float32(1.0 / (255 * k * k))


def luma(rgb: np.ndarray) -> np.ndarray:
    return as_float(rgb) @ _LUMA


def saturation(rgb: np.ndarray) -> float:
    a = as_float(rgb)
    hi = a.max(axis=2)
    lo = a.min(axis=2)
    s = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 1e-6)
    return float(s.mean())


def sharpness(rgb: np.ndarray) -> float:
    y = luma(rgb)
    if y.shape[0] < 2 or y.shape[1] < 2:
        return 0.0
    gx = y[:-1, 1:] - y[:-1, :-1]
    gy = y[1:, :-1] - y[:-1, :-1]
    return float(np.sqrt(gx * gx + gy * gy).mean())


def measure(rgb: np.ndarray) -> FrameMetrics:
    """The single-frame metrics of ``rgb`` (measure a :func:`downscale` copy for comparable numbers)."""
    a = as_float(rgb)
    y = a @ _LUMA
    dark = float((y < CLIP_DARK).mean())
    bright = float((y > CLIP_BRIGHT).mean())
    return FrameMetrics(
        brightness=float(y.mean()),
        contrast=float(y.std()),
        saturation=saturation(a),
        clipped=dark + bright,
        dark=dark,
        bright=bright,
        sharpness=sharpness(a),
    )


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames of the same size, 0..1."""
    fa, fb = as_float(a), as_float(b)
    if fa.shape != fb.shape:
        raise ValueError(f"frames differ in size: {fa.shape[:2]} and {fb.shape[:2]}")
    return float(np.abs(fa - fb).mean())


def colour_histogram(rgb: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """The joint RGB histogram (``bins`` per channel), normalised to sum 1."""
    a = as_float(rgb)
    q = np.clip((a * bins).astype(np.int32), 0, bins - 1)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
    return h / max(h.sum(), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray, bins: int = HIST_BINS) -> float:
    """Total-variation distance of the two frames' colour histograms: 0 same colours, 1 disjoint."""
    return float(0.5 * np.abs(colour_histogram(a, bins) - colour_histogram(b, bins)).sum())


def relative(value: float, reference: float, floor: float) -> float:
    """(value - reference) / reference, with the reference held at least ``floor`` (a grey
    reference must not turn a tiny change into a huge ratio)."""
    return (value - reference) / max(abs(reference), floor)


def pop_ratios(sharpness_values: Sequence[float], is_key: Sequence[bool]) -> list[float]:
    """For each keyframe with a frame either side: its sharpness over the mean of its two
    neighbours' (1.0: it looks like them; 2.0: it flashes twice as crisp)."""
    if len(sharpness_values) != len(is_key):
        raise ValueError(f"expected one kind per value, got {len(is_key)} for {len(sharpness_values)}")
    out = []
    for i in range(1, len(sharpness_values) - 1):
        if is_key[i]:
            around = (sharpness_values[i - 1] + sharpness_values[i + 1]) / 2.0
            if around > 0:
                out.append(sharpness_values[i] / around)
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0..100) percentile, linearly interpolated (numpy's default method); None for no
    values. Plain Python: status reads these over the last hundred frames several times a frame,
    and ``np.percentile`` cost ~3.8 ms a call inside the running service (0.1 ms alone)."""
    if not values:
        return None
    xs = sorted(float(v) for v in values)
    pos = (len(xs) - 1) * min(max(q, 0.0), 100.0) / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
