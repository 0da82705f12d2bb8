"""The latent walk's starting noise: ours, deterministic per seed, pre-scaled for ComfyUI's sampler.

A walk frame at ``t`` starts from ``slerp(noise(seed_a), noise(seed_b), t)``. ComfyUI makes its
own noise inside the sampler, so we upload ours as a ``.latent`` file and sample it with the
sampler's noise switched off (``DisableNoise``). For that to be the *same* starting point the
sampler would have built from real noise, the file must hold what becomes ``x_T`` after ComfyUI's
own steps (comfy/samplers.py, comfy/model_sampling.py, both read, not copied):

* LoadLatent's tensor goes through ``process_latent_in`` — ``latent · scale_factor`` for SD
  (0.18215 for SD 1.5, 0.13025 for SDXL);
* then the EPS ``noise_scaling`` adds the (here zero) noise: ``x = noise·sqrt(1 + σ²) + latent``
  when the schedule starts at ``σ_max`` (``max_denoise``), which full-denoise schedules do.

So with real noise ``n``, ``x_T = n·sqrt(1 + σ_max²)``; we upload ``n·sqrt(1 + σ_max²) / scale_factor``
and get exactly that. ``σ_max`` is not a guess: it is the last entry of the discrete schedule SD 1.5
and SDXL (Turbo included) were trained with, ``betas = linspace(√0.00085, √0.012, 1000)²``,
``σ = sqrt((1 − ᾱ)/ᾱ)`` (≈ 14.6146, the value k-diffusion publishes for these models).

Flux is a flow model (CONST sampling): ``x = σ·noise + (1 − σ)·latent``, so at ``σ = 1`` with the
noise disabled the start is 0 whatever we upload; core ComfyUI has no node that feeds our noise in.
A Flux walk therefore keeps one ``RandomNoise`` seed for the whole walk and lerps the conditioning.

This is plain numpy maths with no graph in it: each family's builder picks its convention
(``walk_noise``), the backend makes and uploads the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dream_window.values.slerp import spherical_lerp

SD15_SCALE_FACTOR = 0.18215
SDXL_SCALE_FACTOR = 0.13025


def discrete_sigma_max(
    linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000
) -> float:
    """σ at the last timestep of the "scaled linear" beta schedule (float64, rounded to float32 as
    ComfyUI stores its sigmas)."""
    betas = np.linspace(math.sqrt(linear_start), math.sqrt(linear_end), timesteps, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    sigmas = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    return float(np.float32(sigmas[-1]))


@dataclass(frozen=True, slots=True)
class NoiseConvention:
    """How a family's walk noise is made: ``prescale`` multiplies unit Gaussian noise before upload;
    ``None`` means the family cannot take our noise (flow models) and shares one sampler seed."""

    channels: int
    prescale: float | None

    def noise(self, seed: int, width: int, height: int) -> np.ndarray:
        """Unit Gaussian noise ``[C, H/8, W/8]`` for ``seed`` (numpy PCG64: the same on every machine)."""
        rng = np.random.Generator(np.random.PCG64(seed))
        return rng.standard_normal((self.channels, height // 8, width // 8), dtype=np.float32)

    def walk(self, seed_a: int, seed_b: int, ts: Sequence[float], width: int, height: int) -> np.ndarray:
        """The starting latents of every frame of a segment at once: ``[len(ts), C, H/8, W/8]``."""
        if self.prescale is None:
            raise ValueError("this model family takes no uploaded starting noise (a flow model)")
        a = self.noise(seed_a, width, height)
        b = a if seed_b == seed_a else self.noise(seed_b, width, height)
        out = spherical_lerp(a, b, np.asarray(ts, dtype=np.float64))
        out *= np.float32(self.prescale)
        return np.ascontiguousarray(out, dtype=np.float32)


def eps_convention(channels: int, scale_factor: float) -> NoiseConvention:
    """The convention of an EPS (SD-style) family with VAE ``scale_factor``: see the module docstring."""
    return NoiseConvention(channels, math.sqrt(1.0 + discrete_sigma_max() ** 2) / scale_factor)
