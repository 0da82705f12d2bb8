"""Flux schnell graphs: its loaders (one checkpoint, or split unet + text encoders + VAE) and its
walk, which lerps the conditioning under one sampler seed because a flow model takes no uploaded
starting noise (see :mod:`.noise`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dream_window.backends.comfyui.graphs.base import BuiltGraph, FamilyBuilder, Link, node
from dream_window.backends.comfyui.graphs.noise import NoiseConvention
from dream_window.values.generation import GenerationRequest


class FluxWorkflowBuilder(FamilyBuilder):
    """Flux schnell: 4 steps, cfg 1.0, euler/simple, 16-channel latents (EmptySD3LatentImage);
    an all-in-one checkpoint or split unet + clip_l/t5 + ae files."""

    family = "flux-schnell"
    latent_channels = 16
    empty_latent = "EmptySD3LatentImage"

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        f = self.config.flux
        if f.layout == "checkpoint":
            return (
                {"1": node("CheckpointLoaderSimple", ckpt_name=f.checkpoint)},
                ["1", 0],
                ["1", 1],
                ["1", 2],
            )
        g = {
            "1": node("UNETLoader", unet_name=f.unet, weight_dtype=f.unet_weight_dtype),
            "2": node("DualCLIPLoader", clip_name1=f.clip_l, clip_name2=f.t5, type="flux"),
            "3": node("VAELoader", vae_name=f.vae),
        }
        return g, ["1", 0], ["2", 0], ["3", 0]

    @property
    def walk_noise(self) -> NoiseConvention:
        return NoiseConvention(self.latent_channels, None)  # flow model: see noise.py

    def build_walk_frame(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        t: float,
        *,
        prefix: str,
        noise: str | None = None,
        index: int = 0,
        want_latent: bool = False,
    ) -> BuiltGraph:
        """Flux: the sampler's own noise from ONE seed for the whole walk (``start.seed``), the
        conditioning lerped. ``noise``/``index`` are not used (a flow sampler at σ=1 ignores any
        starting latent when its noise is disabled)."""
        g, model, clip, vae = self.loaders()
        pos = self._lerp_text(g, clip, start.prompt, end.prompt, t, ("10", "15", "16"))
        neg = self._lerp_text(g, clip, start.negative_prompt, end.negative_prompt, t, ("11", "17", "18"))
        g["12"] = node(self.empty_latent, width=end.width, height=end.height, batch_size=1)
        samples = self.sampler(g, model, pos, neg, ["12", 0], dataclasses.replace(end, seed=start.seed), 1.0)
        return self._outputs(g, samples, vae, prefix, want_latent)
