"""Nodes that read and write files: SaveImage, PreviewImage, LoadImage, SaveLatent, LoadLatent.

As in ComfyUI: outputs are named ``<prefix>_<5-digit counter>_.<ext>`` with the counter kept per
prefix and subfolder; PreviewImage saves into ``temp/`` under ``ComfyUI_temp_<5 letters>``;
``"name [temp]"`` / ``"name [output]"`` point into the other folders. ``.latent`` files are real
safetensors (``latent_tensor`` plus an empty ``latent_format_version_0`` marker, the graph in the
metadata), read and written with the ``safetensors`` library as ComfyUI does, so a mistake in our
client's own reader or writer cannot hide behind a fake that shares it.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from PIL import Image, UnidentifiedImageError

from comfyui_fake.nodes.values import Latent, NodeFailure, RunContext

Result = tuple[tuple[Any, ...], dict[str, Any] | None]

# ComfyUI's PreviewImage alphabet, as written in its nodes.py ("p" twice, no "w").
_PREVIEW_LETTERS = "abcdefghijklmnopqrstupvxyz"
# LoadLatent's factor for files without the version marker (the legacy, unscaled format).
_LEGACY_LATENT_SCALE = 1.0 / 0.18215


def resolve_annotated(name: str, ctx: RunContext) -> Path:
    """``"sub/x.png [output]"`` → the file; names without an annotation live in input/."""
    folder = ctx.input_dir
    for tag, d in ((" [output]", ctx.output_dir), (" [input]", ctx.input_dir), (" [temp]", ctx.temp_dir)):
        if name.endswith(tag):
            name, folder = name[: -len(tag)], d
            break
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise NodeFailure("ValueError", f"path outside its folder: {name}")
    return path


def _next_counter(folder: Path, base: str) -> int:
    """One past the highest ``base_NNNNN_`` already in the folder."""
    best = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(base + "_") and len(p.name) > len(base) + 7:
                digits = p.name[len(base) + 1 : len(base) + 6]
                if digits.isdigit():
                    best = max(best, int(digits))
    return best + 1


def _save_path(prefix: str, folder: Path, ext: str) -> tuple[Path, str, str]:
    sub, _, base = prefix.replace("\\", "/").rpartition("/")
    target = (folder / sub).resolve()
    if folder.resolve() != target and folder.resolve() not in target.parents:
        raise NodeFailure("Exception", f"Saving image outside the output folder is not allowed: {prefix}")
    target.mkdir(parents=True, exist_ok=True)
    name = f"{base}_{_next_counter(target, base):05d}_.{ext}"
    return target / name, name, sub


async def save_image(i: dict[str, Any], ctx: RunContext, *, temp: bool = False) -> Result:
    images: list[Image.Image] = i["images"]
    folder = ctx.temp_dir if temp else ctx.output_dir
    prefix = str(i.get("filename_prefix", "ComfyUI"))
    refs = []
    for img in images:
        path, name, sub = _save_path(prefix, folder, "png")
        await asyncio.to_thread(img.save, path, "PNG", compress_level=1)
        refs.append({"filename": name, "subfolder": sub, "type": "temp" if temp else "output"})
    return (images,), {"images": refs}


async def preview_image(i: dict[str, Any], ctx: RunContext, node_id: str) -> Result:
    """SaveImage into temp/ with a prefix chosen once per node object, subfolder ``""``."""
    suffix = ctx.preview_suffixes.get(node_id)
    if suffix is None:
        suffix = "".join(random.choice(_PREVIEW_LETTERS) for _ in range(5))
        ctx.preview_suffixes[node_id] = suffix
    return await save_image({**i, "filename_prefix": f"ComfyUI_temp_{suffix}"}, ctx, temp=True)


async def load_image(i: dict[str, Any], ctx: RunContext) -> Result:
    path = resolve_annotated(str(i["image"]), ctx)
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError as exc:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: '{path}'") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise NodeFailure("PIL.UnidentifiedImageError", f"cannot identify image file '{path}'") from exc
    return ([rgb], None), None


async def save_latent(i: dict[str, Any], ctx: RunContext, prompt: Any) -> Result:
    latent: Latent = i["samples"]
    path, name, sub = _save_path(str(i.get("filename_prefix", "latents/ComfyUI")), ctx.output_dir, "latent")
    tensors = {
        "latent_tensor": np.ascontiguousarray(latent.samples, dtype=np.float32),
        "latent_format_version_0": np.zeros((0,), np.float32),
    }
    data = safetensors.numpy.save(tensors, metadata={"prompt": json.dumps(prompt)})
    await asyncio.to_thread(path.write_bytes, data)
    return (latent,), {"latents": [{"filename": name, "subfolder": sub, "type": "output"}]}


async def load_latent(i: dict[str, Any], ctx: RunContext) -> Result:
    path = resolve_annotated(str(i["latent"]), ctx)
    tensors = safetensors.numpy.load(await asyncio.to_thread(path.read_bytes))
    scale = 1.0 if "latent_format_version_0" in tensors else _LEGACY_LATENT_SCALE
    samples = tensors["latent_tensor"].astype(np.float32) * np.float32(scale)
    return (Latent(samples),), None
