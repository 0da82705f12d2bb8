"""LatentEncoder: where pixels become latents and back. A strategy with two implementations.

* :class:`BackendLatentEncoder` delegates to the backend's own ``encode``/``decode``: on ComfyUI
  that is the VAE of the model the server already has loaded (no second copy in GPU memory); on the
  built-in engine it is its procedural latent, so the interpolation modes run without a GPU.
* :class:`~dream_window.interpolation.local_vae.LocalVAEEncoder` runs a diffusers VAE in this
  process, loaded from one ``.safetensors`` file, fully offline.

Both build on :class:`~dream_window.interpolation.batching.BatchingEncoder` (chunked calls, the
latent shape check). ``create_latent_encoder(config, backend)`` picks one per ``interpolation.encoder``.

Latents are numpy float32 ``[B, C, H, W]`` in the *diffusion* space of their family, i.e. what a
sampler sees: ``(z - shift_factor) * scaling_factor`` of the raw VAE latent. That space is roughly
zero-mean and unit-variance, which is where slerp's "stay on the sphere" reasoning holds.

A latent path that cannot work at all (weights missing, the backend cannot encode) raises
:class:`~dream_window.errors.ModelLoadError`; the modes then fall back to a pixel crossfade.
Transient failures (a ComfyUI timeout) raise their own errors and are retried by the controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from dream_window.errors import ConfigError, ModelLoadError
from dream_window.interpolation.batching import BatchingEncoder, check_batch_size, check_latents
from dream_window.interpolation.local_vae import LocalVAEEncoder

if TYPE_CHECKING:
    from dream_window.backends.base import GenerationBackend
    from dream_window.config import DreamConfig


@runtime_checkable
class LatentEncoder(Protocol):
    """Pixels ↔ latents, one call per batch."""

    @property
    def name(self) -> str:
        """Shown in logs, status and ``doctor``."""
        ...

    @property
    def latent_channels(self) -> int:
        """Channels of the latents this encoder makes and accepts (4 for SD/SDXL, 16 for Flux)."""
        ...

    #: True when this encoder's latents are the backend's own, so a latent the backend returned
    #: with a generation can be used without encoding the image again.
    shares_backend_latents: bool

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images (all the same size) → latents ``[B, C, H, W]`` float32, in one batch."""
        ...

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        """Latents ``[B, C, H, W]`` → one RGB image per entry, in one batch."""
        ...

    async def encode_batch(self, images: Sequence[Image.Image], batch_size: int | None = None) -> np.ndarray:
        """Like ``encode``, in chunks of ``batch_size`` (bounded memory for long lists)."""
        ...

    async def decode_batch(self, latents: np.ndarray, batch_size: int | None = None) -> list[Image.Image]:
        """Like ``decode``, in chunks of ``batch_size``."""
        ...

    async def free_memory(self) -> None:
        """Release model memory; the next call loads again."""
        ...


class BackendLatentEncoder(BatchingEncoder):
    """The backend's own VAE: ComfyUI's loaded model on the server, or the built-in engine's latent."""

    shares_backend_latents = True

    def __init__(self, backend: GenerationBackend, *, batch_size: int = 4) -> None:
        self._backend = backend
        self.batch_size = check_batch_size(batch_size)

    # Read each time: the backend the dream holds can switch (ComfyUI adopted, or the built-in
    # engine filling in), and with it the latent space.
    @property
    def name(self) -> str:
        return f"{self._backend.name}: its own VAE"

    @property
    def latent_channels(self) -> int:
        return int(self._backend.latent_channels)

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        try:
            z = await self._backend.encode(list(images))
        except NotImplementedError as exc:
            raise ModelLoadError(f"{self._backend.name} cannot encode images to latents") from exc
        return check_latents(z, None)

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        z = check_latents(latents, self.latent_channels)
        try:
            return list(await self._backend.decode(z))
        except NotImplementedError as exc:
            raise ModelLoadError(f"{self._backend.name} cannot decode latents") from exc

    async def free_memory(self) -> None:
        return None  # the backend owns the model; the controller frees it through the backend


def create_latent_encoder(config: DreamConfig, backend: GenerationBackend) -> LatentEncoder:
    """The encoder ``interpolation.encoder`` asks for, wired to ``backend``.

    ``auto`` and ``backend`` use the backend's own VAE (no second copy of the VAE in GPU memory when
    the backend is ComfyUI); ``local`` needs ``interpolation.vae_path``. Nothing is loaded here:
    the local VAE loads on first use, so a broken file degrades to crossfades instead of stopping
    the dream (``dream-window doctor`` reports it up front).
    """
    ic = config.interpolation
    if ic.encoder in ("auto", "backend"):
        return BackendLatentEncoder(backend, batch_size=ic.decode_batch_size)
    if ic.vae_path is None:
        raise ConfigError(
            "interpolation.encoder is 'local' but interpolation.vae_path is not set: "
            "name a VAE .safetensors file, or use encoder: auto"
        )
    return LocalVAEEncoder(config.resolve(ic.vae_path), ic.vae_family, batch_size=ic.decode_batch_size)
