"""The values that flow between the fake's nodes, and what a node may use while it runs.

They are small stand-ins with real behaviour. A LATENT is ComfyUI-shaped (``[B, C, H/8, W/8]``,
4 channels, 16 for Flux) and carries its pixels along when it has them, so an img2img sampler
works from them rather than the engine's coarse latent (a feedback loop would blur). VAEDecode
never takes that shortcut: a real VAE decodes the samples alone, so a keyframe and a slerped
in-between come out of the same decoder. A CONDITIONING carries weighted prompt
texts, so ``ConditioningAverage`` can mix them as ComfyUI mixes tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dream_window.backends.builtin import LATENT_FACTOR, BuiltinEngine


class NodeFailure(Exception):
    """A node failed while executing; it becomes ``execution_error`` with this type and message."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class Interrupted(Exception):
    """/interrupt reached a running node; it becomes ``execution_interrupted``."""


@dataclass
class Latent:
    samples: np.ndarray  # [B, C, h, w]
    pixels: list[Image.Image] | None = None


StepHook = Callable[[int, int, Latent | None], Awaitable[None]]
# Loads one model file by name, or raises NodeFailure as a broken file does (the executor's).
ModelLoad = Callable[[str], Awaitable[None]]


async def _loads_anything(name: str) -> None:
    return None


@dataclass
class RunContext:
    """What a node may use while it runs: the engine, the folders, the faults that apply to nodes,
    the step hook (progress, delay, interrupt checks, previews) owned by the prompt run, and the
    model loader (load time, broken files) owned by the executor."""

    engine: BuiltinEngine
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    on_step: StepHook
    load_model: ModelLoad = _loads_anything
    fail_classes: dict[str, str] = field(default_factory=dict)
    # PreviewImage's filename suffix per node object: ComfyUI keeps a node object per id while
    # consecutive prompts have that node; the executor prunes this map per prompt.
    preview_suffixes: dict[str, str] = field(default_factory=dict)
    # Seconds VAEDecode takes per image of its batch: a real decode costs real GPU time, in
    # proportion to the images it makes (a bench sets it so a segment's decodes weigh like a keyframe).
    decode_delay: float = 0.0


def channels_for(model_name: str) -> int:
    """Latent channels by model family, as in ComfyUI: 16 for Flux (and its ``ae`` VAE), else 4."""
    n = model_name.lower()
    return 16 if ("flux" in n or n in ("ae.safetensors", "ae.sft")) else 4


def to_latent(engine: BuiltinEngine, images: list[Image.Image], channels: int) -> np.ndarray:
    """Pixels → ``[B, C, H/8, W/8]`` through the engine's own latent (whatever its spatial factor):
    the image is shrunk first so the engine's latent lands on 1/8; 4 channels are tiled to 16."""
    shrunk = [
        img.convert("RGB").resize(
            (img.width // 8 * LATENT_FACTOR, img.height // 8 * LATENT_FACTOR), Image.Resampling.BOX
        )
        for img in images
    ]
    z = engine.encode_sync(shrunk)
    return np.tile(z, (1, channels // 4, 1, 1)) if channels > 4 else z


def from_latent(engine: BuiltinEngine, z: np.ndarray) -> list[Image.Image]:
    z = np.asarray(z, dtype=np.float32)
    if z.shape[1] > 4:
        z = z.reshape(z.shape[0], z.shape[1] // 4, 4, *z.shape[2:]).mean(axis=1)
    h, w = z.shape[2] * 8, z.shape[3] * 8
    return [img.resize((w, h), Image.Resampling.BICUBIC) for img in engine.decode_sync(z)]


def conditioning(text: str) -> dict[str, Any]:
    return {"text": text, "parts": ((text, 1.0),)}


def parts_of(cond: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """A conditioning's (text, weight) pairs."""
    return tuple(cond.get("parts") or ((str(cond.get("text", "")), 1.0),))


def noise_seed(samples: np.ndarray) -> int:
    """A seed from a starting latent's content: the noise a DisableNoise sampler was handed."""
    digest = hashlib.sha256(np.ascontiguousarray(samples, np.float32).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
