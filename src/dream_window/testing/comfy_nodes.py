"""Node implementations for the ComfyUI test server, backed by the built-in engine.

The values flowing between nodes are small stand-ins with real behaviour: a sampler renders with
:class:`~dream_window.backends.builtin.BuiltinEngine` (txt2img at denoise 1, img2img from its input
latent's pixels otherwise), so output depends on prompt, seed, input image and denoise. A LATENT
carries its pixels along when it has them, so an img2img feedback loop does not degrade through the
engine's coarse latent; LatentBlend / LoadLatent give samples only, which are decoded.

Latent walks: a CONDITIONING carries weighted prompt texts (``ConditioningAverage`` mixes the
weights as ComfyUI mixes the tensors, ``to·s + from·(1 − s)``); a sampler renders each text and
blends the pictures by weight. A sampler whose noise is disabled (``DisableNoise``, ``add_noise``
off) treats a non-empty starting latent as the noise ComfyUI would otherwise have made: its seed
is derived from the latent's content, so the same uploaded noise gives the same picture.

Latent channels follow the model family, as in ComfyUI: 16 for Flux (EmptySD3LatentImage, the ``ae``
VAE, checkpoints named ``flux*``), 4 otherwise. The engine's 4-channel latent is tiled to 16.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.backends.builtin import LATENT_FACTOR, BuiltinEngine
from dream_window.backends.comfyui import latent_file
from dream_window.values.generation import GenerationRequest


class NodeFailure(Exception):
    """A node failed while executing (becomes ``execution_error``)."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class Interrupted(Exception):
    """/interrupt reached a running node (becomes ``execution_interrupted``)."""


@dataclass
class Latent:
    samples: np.ndarray  # [B, C, h, w]
    pixels: list[Image.Image] | None = None


@dataclass
class RunContext:
    """What a node may use while it runs: the engine, folders, and the step hook (progress, delay,
    interrupt checks, previews) owned by the server."""

    engine: BuiltinEngine
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    on_step: Callable[[int, int, Latent | None], Awaitable[None]]
    broken_models: set[str] = field(default_factory=set)
    fail_classes: dict[str, str] = field(default_factory=dict)
    # PreviewImage's per-node-object filename suffix (ComfyUI keeps one node object per id while
    # consecutive prompts have that node; the server owns this map and prunes it per prompt).
    preview_suffixes: dict[str, str] = field(default_factory=dict)


def _channels_for(name: str) -> int:
    n = name.lower()
    return 16 if ("flux" in n or n in ("ae.safetensors", "ae.sft")) else 4


def to_latent(engine: BuiltinEngine, images: list[Image.Image], channels: int) -> np.ndarray:
    """Pixels → a ComfyUI-shaped latent ``[B, C, H/8, W/8]`` through the engine's own latent
    (whatever its spatial factor): the image is shrunk so the engine's latent lands on 1/8."""
    shrunk = []
    for img in images:
        w, h = img.size
        shrunk.append(
            img.convert("RGB").resize((w // 8 * LATENT_FACTOR, h // 8 * LATENT_FACTOR), Image.Resampling.BOX)
        )
    z = engine.encode_sync(shrunk)
    return np.tile(z, (1, channels // 4, 1, 1)) if channels > 4 else z


def from_latent(engine: BuiltinEngine, z: np.ndarray) -> list[Image.Image]:
    z = np.asarray(z, dtype=np.float32)
    if z.shape[1] > 4:
        z = z.reshape(z.shape[0], z.shape[1] // 4, 4, *z.shape[2:]).mean(axis=1)
    h, w = z.shape[2] * 8, z.shape[3] * 8
    return [img.resize((w, h), Image.Resampling.BICUBIC) for img in engine.decode_sync(z)]


def _next_counter(folder: Path, base: str) -> int:
    """ComfyUI's counter: one past the highest ``base_NNNNN_`` already in the folder (per prefix)."""
    best = 0
    if folder.is_dir():
        for p in folder.iterdir():
            stem = p.name
            if stem.startswith(base + "_") and len(stem) > len(base) + 7:
                digits = stem[len(base) + 1 : len(base) + 6]
                if digits.isdigit():
                    best = max(best, int(digits))
    return best + 1


def resolve_annotated(name: str, ctx: RunContext) -> Path:
    """``"sub/x.png [output]"`` → the file; plain names live in input/."""
    folder = ctx.input_dir
    for tag, d in ((" [output]", ctx.output_dir), (" [input]", ctx.input_dir), (" [temp]", ctx.temp_dir)):
        if name.endswith(tag):
            name, folder = name[: -len(tag)], d
            break
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise NodeFailure("ValueError", f"path outside its folder: {name}")
    return path


def conditioning(text: str) -> dict[str, Any]:
    return {"text": text, "parts": ((text, 1.0),)}


def _parts(cond: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    return tuple(cond.get("parts") or ((str(cond.get("text", "")), 1.0),))


def noise_seed(samples: np.ndarray) -> int:
    """A seed from a starting latent's content (the noise a DisableNoise sampler was handed)."""
    return (
        int.from_bytes(
            hashlib.sha256(np.ascontiguousarray(samples, np.float32).tobytes()).digest()[:8], "little"
        )
        >> 1
    )


async def _sample(
    ctx: RunContext,
    *,
    cond: dict[str, Any],
    seed: int | None,
    steps: int,
    denoise: float,
    latent: Latent,
    channels: int,
) -> Latent:
    """``seed`` None: the sampler's noise is disabled; the starting latent is the noise."""
    b, _c, h, w = latent.samples.shape
    width, height = w * 8, h * 8
    empty = latent.pixels is None and not np.any(latent.samples)
    parts = [(text, weight) for text, weight in _parts(cond) if weight > 0] or [
        (str(cond.get("text", "")), 1.0)
    ]
    prompt = max(parts, key=lambda p: p[1])[0]
    for i in range(1, steps + 1):
        await ctx.on_step(i, steps, latent)

    def render(seed_k: int) -> Image.Image:
        if len(parts) == 1:
            return Image.fromarray(ctx.engine.render(parts[0][0], seed_k, width, height))
        total = sum(weight for _, weight in parts)
        mix = sum(
            ctx.engine.render(text, seed_k, width, height).astype(np.float32) * (weight / total)
            for text, weight in parts
        )
        return Image.fromarray(np.clip(np.rint(mix), 0, 255).astype(np.uint8))

    def work() -> Latent:
        images = []
        for k in range(b):
            seed_k = noise_seed(latent.samples[k]) if seed is None else (seed + k) % 2**63
            req = GenerationRequest(
                prompt=prompt,
                seed=seed_k,
                width=width,
                height=height,
                steps=steps,
                denoise=min(1.0, max(0.0, denoise)),
            )
            if empty or denoise >= 0.999 or (seed is None and latent.pixels is None):
                images.append(render(seed_k))
            else:
                src = (
                    latent.pixels[k]
                    if latent.pixels
                    else from_latent(ctx.engine, latent.samples[k : k + 1])[0]
                )
                images.append(ctx.engine.grow(src, req))
        return Latent(to_latent(ctx.engine, images, channels), images)

    return await asyncio.to_thread(work)


async def run_node(
    class_type: str, inputs: dict[str, Any], ctx: RunContext, *, prompt: Any, node_id: str
) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """Execute one node: (outputs, ui). Raises NodeFailure / Interrupted."""
    if class_type in ctx.fail_classes:
        raise NodeFailure("RuntimeError", ctx.fail_classes[class_type])
    if class_type == "PreviewImage":
        return await _preview_image(inputs, ctx, node_id)
    fn = _NODES.get(class_type)
    if fn is None:
        raise NodeFailure("NotImplementedError", f"the test server does not execute {class_type} nodes")
    return await fn(inputs, ctx)


def _load_model(name: str, ctx: RunContext) -> None:
    if name in ctx.broken_models:
        raise NodeFailure(
            "safetensors._safetensors_rust.SafetensorError",
            "Error while deserializing header: header too small\n",
        )


async def _checkpoint(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    _load_model(i["ckpt_name"], ctx)
    ch = _channels_for(i["ckpt_name"])
    return ({"channels": ch, "name": i["ckpt_name"]}, {"clip": i["ckpt_name"]}, {"channels": ch}), None


async def _unet(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    _load_model(i["unet_name"], ctx)
    return ({"channels": 16, "name": i["unet_name"]},), None


async def _vae(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    _load_model(i["vae_name"], ctx)
    return ({"channels": _channels_for(i["vae_name"])},), None


async def _dual_clip(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    _load_model(i["clip_name1"], ctx)
    _load_model(i["clip_name2"], ctx)
    return ({"clip": i["type"]},), None


async def _clip_text(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return (conditioning(str(i["text"])),), None


async def _conditioning_average(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    s = float(i["conditioning_to_strength"])
    mixed: dict[str, float] = {}
    for parts, scale in ((_parts(i["conditioning_to"]), s), (_parts(i["conditioning_from"]), 1.0 - s)):
        for text, weight in parts:
            mixed[text] = mixed.get(text, 0.0) + weight * scale
    parts_out = tuple(mixed.items())
    return (
        {**i["conditioning_to"], "text": max(parts_out, key=lambda p: p[1])[0], "parts": parts_out},
    ), None


async def _passthrough(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return (next(iter(v for k, v in i.items() if k in ("conditioning", "model"))),), None


def _empty(channels: int) -> Callable[[dict[str, Any], RunContext], Awaitable[tuple[tuple[Any, ...], None]]]:
    async def node(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
        b = int(i.get("batch_size", 1))
        return (
            Latent(np.zeros((b, channels, int(i["height"]) // 8, int(i["width"]) // 8), np.float32)),
        ), None

    return node


async def _ksampler(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    latent: Latent = i["latent_image"]
    out = await _sample(
        ctx,
        cond=i["positive"],
        seed=int(i["seed"]),
        steps=int(i["steps"]),
        denoise=float(i.get("denoise", 1.0)),
        latent=latent,
        channels=latent.samples.shape[1],
    )
    return (out,), None


async def _sampler_custom(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    latent: Latent = i["latent_image"]
    sig = i["sigmas"]
    seed = int(i["noise_seed"]) if i.get("add_noise", True) else None
    out = await _sample(
        ctx,
        cond=i["positive"],
        seed=seed,
        steps=sig["steps"],
        denoise=sig["denoise"],
        latent=latent,
        channels=latent.samples.shape[1],
    )
    return (out, out), None


async def _sampler_custom_advanced(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    latent: Latent = i["latent_image"]
    sig = i["sigmas"]
    seed = i["noise"]["seed"]
    out = await _sample(
        ctx,
        cond=i["guider"],
        seed=None if seed is None else int(seed),
        steps=sig["steps"],
        denoise=sig["denoise"],
        latent=latent,
        channels=latent.samples.shape[1],
    )
    return (out, out), None


async def _sigmas(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return ({"steps": int(i["steps"]), "denoise": float(i.get("denoise", 1.0))},), None


async def _select(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return ({"sampler": i["sampler_name"]},), None


async def _noise(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return ({"seed": int(i["noise_seed"])},), None


async def _no_noise(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return ({"seed": None},), None


async def _guider(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    return (dict(i.get("conditioning") or i.get("positive") or {}),), None


async def _vae_decode(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    latent: Latent = i["samples"]
    if latent.pixels is not None and len(latent.pixels) == latent.samples.shape[0]:
        return (list(latent.pixels),), None
    return (await asyncio.to_thread(from_latent, ctx.engine, latent.samples),), None


async def _vae_encode(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    images: list[Image.Image] = i["pixels"]
    z = await asyncio.to_thread(to_latent, ctx.engine, images, i["vae"]["channels"])
    return (Latent(z, list(images)),), None


def _save_path(ctx: RunContext, prefix: str, folder: Path, ext: str) -> tuple[Path, str, str]:
    sub, _, base = prefix.replace("\\", "/").rpartition("/")
    target = (folder / sub).resolve()
    if folder.resolve() != target and folder.resolve() not in target.parents:
        raise NodeFailure("Exception", f"Saving image outside the output folder is not allowed: {prefix}")
    target.mkdir(parents=True, exist_ok=True)
    counter = _next_counter(target, base)
    name = f"{base}_{counter:05d}_.{ext}"
    return target / name, name, sub


async def _save_image(
    i: dict[str, Any], ctx: RunContext, *, temp: bool = False
) -> tuple[tuple[Any, ...], dict]:
    images: list[Image.Image] = i["images"]
    folder = ctx.temp_dir if temp else ctx.output_dir
    prefix = str(i.get("filename_prefix", "ComfyUI"))
    refs = []
    for img in images:
        path, name, sub = _save_path(ctx, prefix, folder, "png")
        await asyncio.to_thread(img.save, path, "PNG", compress_level=1)
        refs.append({"filename": name, "subfolder": sub, "type": "temp" if temp else "output"})
    return (images,), {"images": refs}


# ComfyUI's PreviewImage alphabet, as written in nodes.py ("p" twice, no "w").
_PREVIEW_LETTERS = "abcdefghijklmnopqrstupvxyz"


async def _preview_image(
    i: dict[str, Any], ctx: RunContext, node_id: str = ""
) -> tuple[tuple[Any, ...], dict]:
    """ComfyUI's PreviewImage: SaveImage into temp/ with prefix ``ComfyUI_temp_<5 random letters>``
    (chosen once per node object), subfolder ``""``, ``type: "temp"``."""
    suffix = ctx.preview_suffixes.get(node_id)
    if suffix is None:
        suffix = "".join(random.choice(_PREVIEW_LETTERS) for _ in range(5))
        ctx.preview_suffixes[node_id] = suffix
    return await _save_image({**i, "filename_prefix": f"ComfyUI_temp_{suffix}"}, ctx, temp=True)


async def _load_image(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    path = resolve_annotated(str(i["image"]), ctx)
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError as exc:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: '{path}'") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise NodeFailure("PIL.UnidentifiedImageError", f"cannot identify image file '{path}'") from exc
    return ([rgb], None), None


async def _save_latent(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], dict]:
    latent: Latent = i["samples"]
    path, name, sub = _save_path(
        ctx, str(i.get("filename_prefix", "latents/ComfyUI")), ctx.output_dir, "latent"
    )
    path.write_bytes(latent_file.dumps(latent.samples))
    return (latent,), {"latents": [{"filename": name, "subfolder": sub, "type": "output"}]}


async def _load_latent(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    path = resolve_annotated(str(i["latent"]), ctx)
    try:
        return (Latent(latent_file.loads(path.read_bytes())),), None
    except (OSError, ValueError) as exc:
        raise NodeFailure(type(exc).__name__, str(exc)) from exc


async def _latent_from_batch(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    src: Latent = i["samples"]
    n = src.samples.shape[0]
    start = min(max(int(i["batch_index"]), 0), n - 1)  # ComfyUI clamps both to the batch
    end = min(start + int(i["length"]), n)
    pixels = src.pixels[start:end] if src.pixels else None
    return (Latent(src.samples[start:end].copy(), pixels),), None


async def _latent_blend(i: dict[str, Any], ctx: RunContext) -> tuple[tuple[Any, ...], None]:
    a: Latent = i["samples1"]
    b: Latent = i["samples2"]
    f = float(i.get("blend_factor", 0.5))
    return (Latent(a.samples * f + b.samples * (1.0 - f)),), None


_NODES: dict[str, Callable[[dict[str, Any], RunContext], Awaitable[tuple[tuple[Any, ...], Any]]]] = {
    "CheckpointLoaderSimple": _checkpoint,
    "UNETLoader": _unet,
    "VAELoader": _vae,
    "DualCLIPLoader": _dual_clip,
    "CLIPTextEncode": _clip_text,
    "FluxGuidance": _passthrough,
    "ModelSamplingFlux": _passthrough,
    "EmptyLatentImage": _empty(4),
    "EmptySD3LatentImage": _empty(16),
    "KSampler": _ksampler,
    "SamplerCustom": _sampler_custom,
    "SamplerCustomAdvanced": _sampler_custom_advanced,
    "BasicScheduler": _sigmas,
    "SDTurboScheduler": _sigmas,
    "KSamplerSelect": _select,
    "RandomNoise": _noise,
    "BasicGuider": _guider,
    "CFGGuider": _guider,
    "DisableNoise": _no_noise,
    "ConditioningAverage": _conditioning_average,
    "LatentFromBatch": _latent_from_batch,
    "VAEDecode": _vae_decode,
    "VAEEncode": _vae_encode,
    "SaveImage": _save_image,
    "PreviewImage": _preview_image,
    "LoadImage": _load_image,
    "SaveLatent": _save_latent,
    "LoadLatent": _load_latent,
    "LatentBlend": _latent_blend,
}


def preview_jpeg(engine: BuiltinEngine, latent: Latent | None, size: int = 512) -> bytes:
    """A latent2rgb-like preview: the latent at its own resolution, scaled up to ``size`` (as recorded)."""
    if latent is not None and latent.pixels:
        img = latent.pixels[0].resize(
            (max(1, latent.pixels[0].width // 8), max(1, latent.pixels[0].height // 8))
        )
    elif latent is not None:
        z = latent.samples[0, :3]
        arr = np.clip((z.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.new("RGB", (16, 16))
    scale = size / max(img.size)
    img = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.NEAREST
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()
