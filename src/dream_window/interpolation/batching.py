"""What every LatentEncoder implementation shares: chunked encode/decode and the latent shape check.

Its own module so that both implementations (:mod:`.latent_encoder`'s ``BackendLatentEncoder`` and
:mod:`.local_vae`'s ``LocalVAEEncoder``) build on it, and ``create_latent_encoder`` can import the
local VAE without the local VAE importing back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


class BatchingEncoder:
    """Chunking shared by every encoder: subclasses implement ``encode`` and ``decode`` only."""

    batch_size: int = 4

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def encode_batch(self, images: Sequence[Image.Image], batch_size: int | None = None) -> np.ndarray:
        size = check_batch_size(batch_size or self.batch_size)
        if not images:
            raise ValueError("encode_batch needs at least one image")
        parts = [await self.encode(images[i : i + size]) for i in range(0, len(images), size)]
        return np.concatenate(parts, axis=0)

    async def decode_batch(self, latents: np.ndarray, batch_size: int | None = None) -> list[Image.Image]:
        size = check_batch_size(batch_size or self.batch_size)
        z = check_latents(latents, None)
        out: list[Image.Image] = []
        for i in range(0, z.shape[0], size):
            out.extend(await self.decode(z[i : i + size]))
        return out


def check_batch_size(n: int) -> int:
    if n < 1:
        raise ValueError(f"batch_size must be at least 1, got {n}")
    return n


def check_latents(latents: np.ndarray, channels: int | None) -> np.ndarray:
    """``latents`` as float32 ``[B, C, H, W]``; a clear ValueError naming the shape otherwise."""
    z = np.asarray(latents, dtype=np.float32)
    if z.ndim == 3:
        z = z[None]
    if z.ndim != 4 or z.shape[0] == 0 or (channels is not None and z.shape[1] != channels):
        want = f"[B, {channels}, H, W]" if channels is not None else "[B, C, H, W]"
        raise ValueError(f"expected latents shaped {want}, got {list(np.shape(latents))}")
    return z
