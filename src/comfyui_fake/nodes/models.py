"""Loaders and conditioning: checkpoints, UNETs, VAEs, CLIPs, text encoding and its mixing.

Every file a loader names goes through the run's ``load_model``: the executor fails it the way
ComfyUI fails on a 0-byte or corrupt safetensors file when it is in ``broken_models`` (recorded in
``07_runtime_error`` and ``09_flux_sdxl_validation``), and spends the load time on a file it has
not loaded since start or ``/free``.
"""

from __future__ import annotations

from typing import Any

from comfyui_fake.nodes.values import RunContext, channels_for, conditioning, parts_of

Result = tuple[tuple[Any, ...], None]


async def checkpoint(i: dict[str, Any], ctx: RunContext) -> Result:
    name = i["ckpt_name"]
    await ctx.load_model(name)
    ch = channels_for(name)
    return ({"channels": ch, "name": name}, {"clip": name}, {"channels": ch}), None


async def unet(i: dict[str, Any], ctx: RunContext) -> Result:
    await ctx.load_model(i["unet_name"])
    return ({"channels": 16, "name": i["unet_name"]},), None


async def vae(i: dict[str, Any], ctx: RunContext) -> Result:
    await ctx.load_model(i["vae_name"])
    return ({"channels": channels_for(i["vae_name"])},), None


async def dual_clip(i: dict[str, Any], ctx: RunContext) -> Result:
    await ctx.load_model(i["clip_name1"])
    await ctx.load_model(i["clip_name2"])
    return ({"clip": i["type"]},), None


async def clip_text(i: dict[str, Any], ctx: RunContext) -> Result:
    return (conditioning(str(i["text"])),), None


async def conditioning_average(i: dict[str, Any], ctx: RunContext) -> Result:
    """``to·s + from·(1 − s)``, on the prompt weights instead of the tensors."""
    s = float(i["conditioning_to_strength"])
    mixed: dict[str, float] = {}
    for parts, scale in ((parts_of(i["conditioning_to"]), s), (parts_of(i["conditioning_from"]), 1.0 - s)):
        for text, weight in parts:
            mixed[text] = mixed.get(text, 0.0) + weight * scale
    parts_out = tuple(mixed.items())
    strongest = max(parts_out, key=lambda p: p[1])[0]
    return ({**i["conditioning_to"], "text": strongest, "parts": parts_out},), None


async def passthrough(i: dict[str, Any], ctx: RunContext) -> Result:
    """FluxGuidance, ModelSamplingFlux: nothing to change in the stand-ins."""
    return (next(v for k, v in i.items() if k in ("conditioning", "model")),), None
