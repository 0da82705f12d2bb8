"""Latent nodes: empty latents, VAE encode / decode, LatentFromBatch, LatentBlend; and the step
preview a sampler shows (latent2rgb-like, scaled up to 512 px as recorded)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from PIL import Image

from comfyui_fake.nodes.values import Latent, RunContext, from_latent, to_latent
from dream_window.backends.builtin import BuiltinEngine

Result = tuple[tuple[Any, ...], None]


def empty_latent(channels: int) -> Callable[[dict[str, Any], RunContext], Awaitable[Result]]:
    """EmptyLatentImage (4 channels) and EmptySD3LatentImage (16, used by Flux)."""

    async def node(i: dict[str, Any], ctx: RunContext) -> Result:
        b = int(i.get("batch_size", 1))
        shape = (b, channels, int(i["height"]) // 8, int(i["width"]) // 8)
        return (Latent(np.zeros(shape, np.float32)),), None

    return node


async def vae_decode(i: dict[str, Any], ctx: RunContext) -> Result:
    # From the samples only, even when the latent carries its pixels: a real VAE has nothing else,
    # and keyframes shown sharper than the in-betweens decoded between them would pop.
    latent: Latent = i["samples"]
    if ctx.decode_delay > 0:
        # Like ComfyUI's, a decode is not interruptible: an interrupt lands before the next node.
        await asyncio.sleep(ctx.decode_delay * latent.samples.shape[0])
    return (await asyncio.to_thread(from_latent, ctx.engine, latent.samples),), None


async def vae_encode(i: dict[str, Any], ctx: RunContext) -> Result:
    images: list[Image.Image] = i["pixels"]
    z = await asyncio.to_thread(to_latent, ctx.engine, images, i["vae"]["channels"])
    return (Latent(z, list(images)),), None


async def latent_from_batch(i: dict[str, Any], ctx: RunContext) -> Result:
    src: Latent = i["samples"]
    n = src.samples.shape[0]
    start = min(max(int(i["batch_index"]), 0), n - 1)  # ComfyUI clamps both to the batch
    end = min(start + int(i["length"]), n)
    pixels = src.pixels[start:end] if src.pixels else None
    return (Latent(src.samples[start:end].copy(), pixels),), None


async def latent_blend(i: dict[str, Any], ctx: RunContext) -> Result:
    a: Latent = i["samples1"]
    b: Latent = i["samples2"]
    f = float(i.get("blend_factor", 0.5))
    return (Latent(a.samples * f + b.samples * (1.0 - f)),), None


def preview_jpeg(engine: BuiltinEngine, latent: Latent | None, size: int = 512) -> bytes:
    """The picture at latent resolution, scaled up to fit ``size`` (ComfyUI's --preview-size)."""
    if latent is not None and latent.pixels:
        first = latent.pixels[0]
        img = first.resize((max(1, first.width // 8), max(1, first.height // 8)))
    elif latent is not None:
        z = latent.samples[0, :3]
        img = Image.fromarray(np.clip((z.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255).astype(np.uint8))
    else:
        img = Image.new("RGB", (16, 16))
    scale = size / max(img.size)
    img = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.NEAREST
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)  # ComfyUI encodes previews at quality 95
    return buf.getvalue()
