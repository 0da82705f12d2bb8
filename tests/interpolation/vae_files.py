"""Tiny random VAEs written the way real weight files are: one .safetensors, original key layout."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers is imported

torch = pytest.importorskip("torch", reason="the local VAE tests need torch")
pytest.importorskip("diffusers", reason="the local VAE tests need diffusers")

from diffusers import AutoencoderKL, AutoencoderTiny  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from dream_window.interpolation.local_vae import family_config  # noqa: E402


def tiny_kl_config(family: str) -> dict[str, Any]:
    """The shipped family config (scaling constants, quant convs, channels), shrunk to toy size."""
    cfg = family_config(family)
    cfg.update(
        block_out_channels=[8, 16],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    )
    return cfg


def tiny_taesd_config(family: str) -> dict[str, Any]:
    cfg = family_config(family)
    cfg.update(
        encoder_block_out_channels=[8, 8],
        decoder_block_out_channels=[8, 8],
        num_encoder_blocks=[1, 1],
        num_decoder_blocks=[1, 1],
    )
    return cfg


def diffusers_to_ldm_vae(sd: dict[str, Any], n_blocks: int) -> dict[str, Any]:
    """diffusers AutoencoderKL keys → the original LDM/ComfyUI layout of real VAE files (ae.safetensors,
    sd-vae-ft-mse, the first_stage_model of full checkpoints). The inverse of diffusers' converter."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        n = k
        n = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", n)
        n = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", n)
        n = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)",
            lambda m: f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}",
            n,
        )
        n = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0",
            lambda m: f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample",
            n,
        )
        n = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m[1]) + 1}", n)
        n = n.replace("mid_block.attentions.0", "mid.attn_1").replace("conv_shortcut", "nin_shortcut")
        n = n.replace("conv_norm_out", "norm_out")
        if ".mid.attn_1." in n:
            n = (
                n.replace("group_norm", "norm")
                .replace("to_q", "q")
                .replace("to_k", "k")
                .replace("to_v", "v")
                .replace("to_out.0", "proj_out")
            )
            if v.ndim == 2:  # real files store the attention projections as 1x1 convs
                v = v[:, :, None, None]
        out[n] = v.contiguous()
    return out


def write_tiny_kl(directory: Path, family: str, *, seed: int = 0, prefix: str = "") -> tuple[Path, Path, Any]:
    """A random tiny AutoencoderKL saved as ONE ldm-layout .safetensors, plus its config dir."""
    cfg = tiny_kl_config(family)
    torch.manual_seed(seed)
    model = AutoencoderKL.from_config(cfg).eval()
    ldm = diffusers_to_ldm_vae(model.state_dict(), len(cfg["block_out_channels"]))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{family}-vae.safetensors"
    save_file({prefix + k: v for k, v in ldm.items()}, str(path))
    cfg_dir = directory / f"{family}-config"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return path, cfg_dir, model


def write_tiny_taesd(
    directory: Path, family: str, *, layout: str = "diffusers", seed: int = 0
) -> tuple[Path, Path, Any]:
    """A random tiny AutoencoderTiny as one file: diffusers layout, or the original decoder-only file."""
    cfg = tiny_taesd_config(family)
    torch.manual_seed(seed)
    model = AutoencoderTiny.from_config(cfg).eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if layout == "decoder-only":  # taesd_decoder.safetensors: a bare Sequential led by a Clamp at index 0
        sd = {
            f"{int(k.split('.')[2]) + 1}.{'.'.join(k.split('.')[3:])}": v
            for k, v in sd.items()
            if k.startswith("decoder.layers.")
        }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{family}-{layout}.safetensors"
    save_file(sd, str(path))
    cfg_dir = directory / f"{family}-config"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return path, cfg_dir, model
