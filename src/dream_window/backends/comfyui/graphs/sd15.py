"""Stable Diffusion 1.5 graphs: one checkpoint, KSampler, and the shared walk fed with our own
noise pre-scaled for SD 1.5's VAE (see :mod:`.noise`)."""

from __future__ import annotations

from typing import Any

from dream_window.backends.comfyui.graphs.base import FamilyBuilder, Link, node
from dream_window.backends.comfyui.graphs.noise import SD15_SCALE_FACTOR, NoiseConvention, eps_convention


class SD15WorkflowBuilder(FamilyBuilder):
    family = "sd15"
    latent_channels = 4

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        return (
            {"1": node("CheckpointLoaderSimple", ckpt_name=self.config.sd15_checkpoint)},
            ["1", 0],
            ["1", 1],
            ["1", 2],
        )

    @property
    def walk_noise(self) -> NoiseConvention:
        return eps_convention(self.latent_channels, SD15_SCALE_FACTOR)
