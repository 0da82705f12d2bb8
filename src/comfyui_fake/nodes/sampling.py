"""Samplers and their parts: KSampler, SamplerCustom(Advanced), schedulers, noise, guiders.

A sampler renders with the built-in engine: txt2img from an empty latent or at denoise 1, img2img
from its input latent's pixels otherwise, so the output depends on prompt, seed, input and denoise.
Each step goes through the run's step hook first (progress, previews, stalls, interrupts).

A sampler whose noise is disabled (``DisableNoise``, ``add_noise`` off) treats a non-empty
starting latent as the noise ComfyUI would otherwise have made: the picture is drawn from it
(``BuiltinEngine.render_noise``), the same noise giving the same picture and nearby noises nearby
pictures, so a latent walk of slerped noise moves smoothly, as on a real model. A conditioning that mixes
several prompts renders each and blends the pictures by weight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from PIL import Image

from comfyui_fake.nodes.values import Latent, RunContext, from_latent, noise_seed, parts_of, to_latent
from dream_window.values.generation import GenerationRequest

Result = tuple[tuple[Any, ...], None]


async def _sample(
    ctx: RunContext, *, cond: dict[str, Any], seed: int | None, steps: int, denoise: float, latent: Latent
) -> Latent:
    """``seed`` None: the sampler's noise is disabled; the starting latent is the noise."""
    b, channels, h, w = latent.samples.shape
    width, height = w * 8, h * 8
    empty = latent.pixels is None and not np.any(latent.samples)
    parts = [(text, weight) for text, weight in parts_of(cond) if weight > 0] or [
        (str(cond.get("text", "")), 1.0)
    ]
    prompt = max(parts, key=lambda p: p[1])[0]
    for i in range(1, steps + 1):
        await ctx.on_step(i, steps, latent)

    def render(k: int) -> Image.Image:
        def one(text: str) -> np.ndarray:
            if seed is None and np.any(latent.samples[k]):
                # The noise it was handed decides the picture, continuously: a slerp between two
                # noises walks between their pictures, as a real model's does.
                return ctx.engine.render_noise(text, latent.samples[k], width, height)
            seed_k = noise_seed(latent.samples[k]) if seed is None else (seed + k) % 2**63
            return ctx.engine.render(text, seed_k, width, height)

        if len(parts) == 1:
            return Image.fromarray(one(parts[0][0]))
        total = sum(weight for _, weight in parts)
        mix = sum(one(text).astype(np.float32) * (weight / total) for text, weight in parts)
        return Image.fromarray(np.clip(np.rint(mix), 0, 255).astype(np.uint8))

    def work() -> Latent:
        images = []
        for k in range(b):
            seed_k = noise_seed(latent.samples[k]) if seed is None else (seed + k) % 2**63
            if empty or denoise >= 0.999 or (seed is None and latent.pixels is None):
                images.append(render(k))
                continue
            src = latent.pixels[k] if latent.pixels else from_latent(ctx.engine, latent.samples[k : k + 1])[0]
            request = GenerationRequest(
                prompt=prompt,
                seed=seed_k,
                width=width,
                height=height,
                steps=steps,
                denoise=min(1.0, max(0.0, denoise)),
            )
            images.append(ctx.engine.grow(src, request))
        return Latent(to_latent(ctx.engine, images, channels), images)

    return await asyncio.to_thread(work)


async def ksampler(i: dict[str, Any], ctx: RunContext) -> Result:
    out = await _sample(
        ctx,
        cond=i["positive"],
        seed=int(i["seed"]),
        steps=int(i["steps"]),
        denoise=float(i.get("denoise", 1.0)),
        latent=i["latent_image"],
    )
    return (out,), None


async def sampler_custom(i: dict[str, Any], ctx: RunContext) -> Result:
    sigmas = i["sigmas"]
    out = await _sample(
        ctx,
        cond=i["positive"],
        seed=int(i["noise_seed"]) if i.get("add_noise", True) else None,
        steps=sigmas["steps"],
        denoise=sigmas["denoise"],
        latent=i["latent_image"],
    )
    return (out, out), None


async def sampler_custom_advanced(i: dict[str, Any], ctx: RunContext) -> Result:
    sigmas = i["sigmas"]
    seed = i["noise"]["seed"]
    out = await _sample(
        ctx,
        cond=i["guider"],
        seed=None if seed is None else int(seed),
        steps=sigmas["steps"],
        denoise=sigmas["denoise"],
        latent=i["latent_image"],
    )
    return (out, out), None


async def scheduler(i: dict[str, Any], ctx: RunContext) -> Result:
    """BasicScheduler / SDTurboScheduler: the SIGMAS stand-in is how many steps at which denoise."""
    return ({"steps": int(i["steps"]), "denoise": float(i.get("denoise", 1.0))},), None


async def sampler_select(i: dict[str, Any], ctx: RunContext) -> Result:
    return ({"sampler": i["sampler_name"]},), None


async def random_noise(i: dict[str, Any], ctx: RunContext) -> Result:
    return ({"seed": int(i["noise_seed"])},), None


async def disable_noise(i: dict[str, Any], ctx: RunContext) -> Result:
    return ({"seed": None},), None


async def guider(i: dict[str, Any], ctx: RunContext) -> Result:
    return (dict(i.get("conditioning") or i.get("positive") or {}),), None
