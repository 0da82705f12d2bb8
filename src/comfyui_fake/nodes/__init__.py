"""The node classes the fake executes, backed by the built-in engine.

``run_node`` is the one entry point: it applies the ``fail_classes`` fault, then dispatches by
class_type. Classes the fake validates (all 886 recorded) but does not execute fail at run time
with NotImplementedError, as a node whose code raised would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from comfyui_fake.nodes import files, latents, models, sampling
from comfyui_fake.nodes.files import resolve_annotated
from comfyui_fake.nodes.latents import preview_jpeg
from comfyui_fake.nodes.values import Interrupted, Latent, NodeFailure, RunContext

__all__ = [
    "Interrupted",
    "Latent",
    "NodeFailure",
    "RunContext",
    "preview_jpeg",
    "resolve_annotated",
    "run_node",
]

NodeResult = tuple[tuple[Any, ...], dict[str, Any] | None]
_Node = Callable[[dict[str, Any], RunContext], Awaitable[NodeResult]]

_NODES: dict[str, _Node] = {
    "CheckpointLoaderSimple": models.checkpoint,
    "UNETLoader": models.unet,
    "VAELoader": models.vae,
    "DualCLIPLoader": models.dual_clip,
    "CLIPTextEncode": models.clip_text,
    "ConditioningAverage": models.conditioning_average,
    "FluxGuidance": models.passthrough,
    "ModelSamplingFlux": models.passthrough,
    "KSampler": sampling.ksampler,
    "SamplerCustom": sampling.sampler_custom,
    "SamplerCustomAdvanced": sampling.sampler_custom_advanced,
    "BasicScheduler": sampling.scheduler,
    "SDTurboScheduler": sampling.scheduler,
    "KSamplerSelect": sampling.sampler_select,
    "RandomNoise": sampling.random_noise,
    "DisableNoise": sampling.disable_noise,
    "BasicGuider": sampling.guider,
    "CFGGuider": sampling.guider,
    "EmptyLatentImage": latents.empty_latent(4),
    "EmptySD3LatentImage": latents.empty_latent(16),
    "VAEDecode": latents.vae_decode,
    "VAEEncode": latents.vae_encode,
    "LatentFromBatch": latents.latent_from_batch,
    "LatentBlend": latents.latent_blend,
    "SaveImage": files.save_image,
    "LoadImage": files.load_image,
    "LoadLatent": files.load_latent,
}


async def run_node(
    class_type: str, inputs: dict[str, Any], ctx: RunContext, *, prompt: Any, node_id: str
) -> NodeResult:
    """Execute one node: (outputs, ui). Raises NodeFailure, Interrupted, or whatever the node raised."""
    if class_type in ctx.fail_classes:
        raise NodeFailure("RuntimeError", ctx.fail_classes[class_type])
    if class_type == "PreviewImage":
        return await files.preview_image(inputs, ctx, node_id)
    if class_type == "SaveLatent":  # the graph goes into the file's metadata
        return await files.save_latent(inputs, ctx, prompt)
    node = _NODES.get(class_type)
    if node is None:
        raise NodeFailure("NotImplementedError", f"the test server does not execute {class_type} nodes")
    return await node(inputs, ctx)
