"""In-between frames for the hybrid and interpolate modes: slerp in latent space, decode in
batches, match them to their keyframes' look (``look.py``), and fall back to a pixel crossfade
(once, said in status) when no latent path exists."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dream_window.errors import ModelLoadError
from dream_window.interpolation.crossfade import crossfade
from dream_window.interpolation.latent_encoder import LatentEncoder
from dream_window.interpolation.look import match_look
from dream_window.values.slerp import spherical_lerp

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Keyframe:
    """A keyframe and, once known, its latent in the encoder's space."""

    image: Image.Image
    latent: np.ndarray | None = None  # [1, C, H, W]


@dataclass(slots=True)
class InBetweens:
    images: list[Image.Image]
    kind: str  # "inbetween" (latent slerp) or "crossfade"
    ms_per_frame: float


class InBetweenMaker:
    """Owns the encoder for a mode; remembers when the latent path is gone for good."""

    def __init__(self, encoder: LatentEncoder, *, batch_size: int, note: Callable[[str], None]) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self._note = note
        self.latent_ok = True

    def adopt(self, key: Keyframe, backend_latent: np.ndarray | None) -> None:
        """Keep the latent a backend returned with the keyframe when it is in the encoder's own
        space, so the keyframe is never encoded again."""
        if backend_latent is not None and self.encoder.shares_backend_latents:
            key.latent = np.asarray(backend_latent, dtype=np.float32)

    async def latent_of(self, key: Keyframe) -> np.ndarray:
        """The keyframe's latent, encoded once."""
        if key.latent is None:
            key.latent = await self.encoder.encode([key.image])
        return key.latent

    async def make(self, a: Keyframe, b: Keyframe, ts: np.ndarray) -> InBetweens:
        t0 = time.perf_counter()
        if self.latent_ok:
            try:
                za = await self.latent_of(a)
                zb = await self.latent_of(b)
                lat = spherical_lerp(za[0], zb[0], ts).astype(np.float32, copy=False)
                images = await self.encoder.decode_batch(lat, self.batch_size)
                # Decoded in-betweens can be softer than the keyframes they join: matched here, off
                # the event loop, so keyframes do not flash crisp between soft neighbours.
                images = await asyncio.to_thread(match_look, images, list(ts), a.image, b.image)
                return InBetweens(images, "inbetween", _per(t0, len(ts)))
            except ModelLoadError as exc:
                self.latent_ok = False
                log.warning("no latent path (%s): in-betweens fall back to pixel crossfades", exc)
                self._note(f"in-betweens are pixel crossfades: {exc}")
        return InBetweens(crossfade(a.image, b.image, ts), "crossfade", _per(t0, len(ts)))


def _per(t0: float, n: int) -> float:
    return (time.perf_counter() - t0) * 1000.0 / max(n, 1)
