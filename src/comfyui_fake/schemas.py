"""The node schemas the fake serves: the recorded ``object_info`` with this server's files filled in.

ComfyUI builds its combo lists from disk at every request: loader inputs list the model folder,
LoadImage and LoadLatent list the top level of ``input/`` (not its subfolders, as recorded in
``04_img2img/object_info_LoadImage_after_upload.json``). The fake does the same from its
``models`` mapping and its ``input/`` folder.
"""

from __future__ import annotations

import copy
import gzip
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from comfyui_fake.validation import FILE_CHECKED

# The dummy files of the recording (PROTOCOL.md): only tiny_sd15 loads; the rest stand for the
# Flux and SDXL-Turbo files (0 bytes there) and a corrupt checkpoint.
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": [
        "corrupt_checkpoint.safetensors",
        "flux1-schnell-fp8.safetensors",
        "sd_xl_turbo_1.0_fp16.safetensors",
        "tiny_sd15.safetensors",
    ],
    "diffusion_models": ["flux1-schnell.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"],
    "vae": ["ae.safetensors"],
}

# GET /models, in the recorded order (01_server_info/models.json): every folder ComfyUI knows,
# whether or not it holds files.
MODEL_FOLDERS: list[str] = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "datasets",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
    "background_removal",
    "frame_interpolation",
    "geometry_estimation",
    "optical_flow",
    "detection",
]

# Loader inputs whose options are a model folder's files.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("VAELoader", "vae_name"): "vae",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("LoraLoader", "lora_name"): "loras",
}
# VAELoader also offers the approximate decoders it finds; with none installed, only this one.
_VAE_EXTRA = ["pixel_space"]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def recorded_object_info() -> dict[str, Any]:
    """The 886 node schemas recorded from ComfyUI v0.33.0 (packaged, gzipped)."""
    raw = (files("comfyui_fake") / "data" / "object_info.json.gz").read_bytes()
    info: dict[str, Any] = json.loads(gzip.decompress(raw))
    return info


class Schemas:
    """``object_info`` as this server would report it right now."""

    def __init__(self, recorded: dict[str, Any], models: dict[str, list[str]], input_dir: Path) -> None:
        self.recorded = recorded
        self.models = models  # tests edit this in place to take a file away
        self.input_dir = input_dir

    def model_folders(self) -> list[str]:
        return MODEL_FOLDERS + [f for f in self.models if f not in MODEL_FOLDERS]

    def object_info(self) -> dict[str, Any]:
        info = dict(self.recorded)
        for (node, name), folder in MODEL_INPUTS.items():
            if node in info:
                extra = _VAE_EXTRA if node == "VAELoader" else []
                info[node] = _with_choices(info[node], name, sorted(self.models.get(folder, [])) + extra)
        top = sorted(p.name for p in self.input_dir.iterdir() if p.is_file())
        for (node, name), kind in FILE_CHECKED.items():
            if node in info:
                suffixes = (".latent",) if kind == "latent" else _IMAGE_SUFFIXES
                info[node] = _with_choices(info[node], name, [n for n in top if n.lower().endswith(suffixes)])
        return info


def _with_choices(schema: dict[str, Any], name: str, choices: list[str]) -> dict[str, Any]:
    """A copy of one node's schema with input ``name``'s options replaced, in either combo encoding."""
    schema = copy.deepcopy(schema)
    for section in ("required", "optional"):
        spec = (schema.get("input", {}).get(section) or {}).get(name)
        if spec is None:
            continue
        if isinstance(spec[0], list):
            spec[0] = choices
        elif spec[0] == "COMBO":
            spec[1]["options"] = choices
    return schema
