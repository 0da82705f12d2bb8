"""sRGB <-> CIELAB (D65), vectorised in numpy, for colour coherence (``coherence.py``).

LAB separates lightness (L, 0..100) from two colour axes (a: green-red, b: blue-yellow), so a
picture's brightness and its colourfulness can be pulled back independently, the way Deforum's
colour coherence does. The formulas are the CIE's, with the sRGB transfer curve and D65 white.
"""

from __future__ import annotations

import numpy as np

# Linear sRGB -> XYZ (D65), and back.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # XYZ of sRGB white (D65), Y = 1
_EPS = (6.0 / 29.0) ** 3
_KAPPA = 3.0 * (6.0 / 29.0) ** 2


def _linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve undone: sRGB values 0..1 to linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# The curve at every 8-bit value: frames arrive as uint8, and the power over a whole frame is most
# of a conversion's cost.
_LINEAR_OF_BYTE = _linear(np.arange(256) / 255.0).astype(np.float32)


def _work_dtype(a: np.ndarray) -> type[np.floating]:
    # float32 when the caller gives float32 or bytes (a frame's worth of colour needs no more, and
    # it is three times faster), float64 otherwise.
    return np.float32 if a.dtype in (np.float32, np.uint8) else np.float64


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` ([..., 3]: uint8 0..255, or float 0..1) as LAB ([..., 3]: L 0..100, a and b about
    -128..127); float32 for uint8 or float32 input, float64 otherwise."""
    c = np.asarray(rgb)
    dtype = _work_dtype(c)
    if c.dtype == np.uint8:
        lin = _LINEAR_OF_BYTE[c]
    else:
        lin = _linear(c.astype(dtype, copy=False))
    xyz = lin @ _RGB_TO_XYZ.T.astype(dtype) / _WHITE.astype(dtype)
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz / _KAPPA + 4.0 / 29.0)
    return np.stack(
        [116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """LAB back to sRGB (float, clipped to 0..1: colours outside the gamut are clamped); float32
    for float32 input, float64 otherwise."""
    lab = np.asarray(lab)
    dtype = np.float32 if lab.dtype == np.float32 else np.float64
    lab = lab.astype(dtype, copy=False)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f > 6.0 / 29.0, f**3, (f - 4.0 / 29.0) * _KAPPA) * _WHITE.astype(dtype)
    lin = np.clip(xyz @ _XYZ_TO_RGB.T.astype(dtype), 0.0, 1.0)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1.0 / 2.4) - 0.055)
    return np.clip(c, 0.0, 1.0)
