"""Latents for slerp's tests: two keyframes a chosen angle apart, of different norms."""

from __future__ import annotations

import numpy as np


def at_angle(angle: float, size: int = 4096, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 latents of norms 3 and 5 whose directions are ``angle`` radians apart."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(size)
    u /= np.linalg.norm(u)
    w = rng.standard_normal(size)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    return 3.0 * u, 5.0 * (np.cos(angle) * u + np.sin(angle) * w)
