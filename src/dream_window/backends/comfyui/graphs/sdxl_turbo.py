"""SDXL-Turbo graphs: its own scheduler and sampler (KSampler's schedulers do not fit a model
distilled for 1-4 steps), and the shared walk fed with noise pre-scaled for SDXL's VAE."""

from __future__ import annotations

from typing import Any

from dream_window.backends.comfyui.graphs.base import FamilyBuilder, Link, node
from dream_window.backends.comfyui.graphs.noise import SDXL_SCALE_FACTOR, NoiseConvention, eps_convention
from dream_window.values.generation import GenerationRequest


class SDXLTurboWorkflowBuilder(FamilyBuilder):
    """SDXL-Turbo: SDTurboScheduler + SamplerCustom (KSampler's schedulers do not fit turbo)."""

    family = "sdxl-turbo"
    latent_channels = 4

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        return (
            {"1": node("CheckpointLoaderSimple", ckpt_name=self.config.sdxl_turbo_checkpoint)},
            ["1", 0],
            ["1", 1],
            ["1", 2],
        )

    def sampler(
        self,
        g: dict[str, Any],
        model: Link,
        pos: Link,
        neg: Link,
        latent: Link,
        request: GenerationRequest,
        denoise: float,
    ) -> Link:
        g["21"] = node("SDTurboScheduler", model=model, steps=min(request.steps, 10), denoise=denoise)
        g["22"] = node("KSamplerSelect", sampler_name="euler_ancestral")
        g["20"] = node(
            "SamplerCustom",
            model=model,
            add_noise=True,
            noise_seed=request.seed,
            cfg=request.cfg,
            positive=pos,
            negative=neg,
            sampler=["22", 0],
            sigmas=["21", 0],
            latent_image=latent,
        )
        return ["20", 0]

    @property
    def walk_noise(self) -> NoiseConvention:
        return eps_convention(self.latent_channels, SDXL_SCALE_FACTOR)

    def walk_sigmas(self, g: dict[str, Any], model: Link, request: GenerationRequest) -> Link:
        # SDTurboScheduler at denoise 1 starts at timestep 999, i.e. σ_max: max_denoise holds.
        g["21"] = node("SDTurboScheduler", model=model, steps=min(request.steps, 10), denoise=1.0)
        g["22"] = node("KSamplerSelect", sampler_name="euler_ancestral")
        return ["21", 0]
