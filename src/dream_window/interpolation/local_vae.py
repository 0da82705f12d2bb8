"""LocalVAEEncoder: a diffusers VAE in this process, from one ``.safetensors`` file, fully offline.

Families (each ships a small ``vae_configs/<family>/config.json``, the single source of its
architecture and scaling constants):

=========  ===============  ========  ==============  ============
family     class            channels  scaling_factor  shift_factor
=========  ===============  ========  ==============  ============
sd         AutoencoderKL    4         0.18215         0
sdxl       AutoencoderKL    4         0.13025         0
flux       AutoencoderKL    16        0.3611          0.1159
taesd      AutoencoderTiny  4         1.0             0
taesdxl    AutoencoderTiny  4         1.0             0
taef1      AutoencoderTiny  16        1.0             0
=========  ===============  ========  ==============  ============

TAESD-family models are distilled to work in the diffusion space directly, hence 1.0 / 0: a
latent encoded by the full VAE of a family decodes with its tiny twin, and vice versa.

Loading, and why it is done this way:

* ``AutoencoderKL.from_single_file(checkpoint, config=<our dir>, local_files_only=True)``:
  without ``config=`` diffusers guesses a hub repo from the keys and downloads its config.
* The file is opened with ``safe_open`` and only VAE tensors are read, so ``vae_path`` may also
  name a full SD checkpoint (``first_stage_model.*``) without reading its 2-7 GB of UNet.
* diffusers loads single files with ``strict=False``: weights missing from the file silently
  stay random. We convert the keys ourselves first and refuse a file that does not cover the
  model, naming what is missing.
* ``AutoencoderTiny`` has no ``from_single_file``; it is built from our config and loaded with
  ``load_state_dict(strict=True)`` after mapping the known layouts (diffusers ``encoder.layers.*``,
  ComfyUI ``taesd_encoder.*``, and the original decoder-only / encoder-only files).
* CUDA → float16 (float32 when the config says ``force_upcast``: SDXL's and Flux's VAEs overflow
  in half precision); CPU → float32. Never bfloat16 on CPU.

torch and diffusers are imported inside, on first use: importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dream_window.errors import ModelLoadError
from dream_window.interpolation.batching import BatchingEncoder, check_latents

log = logging.getLogger(__name__)

FAMILIES = ("sd", "sdxl", "flux", "taesd", "taesdxl", "taef1")
_LDM_PREFIXES = ("first_stage_model.", "vae.")


def family_config_dir(family: str) -> Path:
    """The shipped config folder for ``family`` (a real directory: diffusers wants a path string)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown VAE family {family!r}; expected one of {', '.join(FAMILIES)}")
    return Path(str(files("dream_window.interpolation") / "vae_configs" / family))


def family_config(family: str) -> dict[str, Any]:
    return json.loads((family_config_dir(family) / "config.json").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: Any
    device: Any
    dtype: Any
    scaling: float
    shift: float
    factor: int  # pixels per latent cell
    can_encode: bool


class LocalVAEEncoder(BatchingEncoder):
    """A diffusers VAE (``AutoencoderKL`` or ``AutoencoderTiny``) loaded lazily, once."""

    shares_backend_latents = False

    def __init__(
        self,
        path: Path,
        family: str,
        *,
        batch_size: int = 4,
        device: str | None = None,
        config_dir: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.family = family
        self._config_dir = Path(config_dir) if config_dir is not None else family_config_dir(family)
        cfg_file = self._config_dir / "config.json"
        try:
            self._config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"VAE config {cfg_file} is unreadable: {exc}") from exc
        self._tiny = self._config.get("_class_name") == "AutoencoderTiny"
        self.latent_channels = int(self._config.get("latent_channels", 4))
        self.batch_size = max(1, int(batch_size))
        self.name = f"local VAE ({family}, {self.path.name})"
        self._device_choice = device
        self._loaded: _Loaded | None = None
        self._lock = asyncio.Lock()

    # --- loading --------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def device(self) -> str | None:
        return None if self._loaded is None else str(self._loaded.device)

    async def load(self) -> None:
        """Load the weights now (first use does it anyway). Raises ModelLoadError."""
        await self._ensure()

    async def _ensure(self) -> _Loaded:
        if self._loaded is None:
            async with self._lock:
                if self._loaded is None:
                    self._loaded = await asyncio.to_thread(self._load_sync)
                    log.info("loaded %s on %s (%s)", self.name, self._loaded.device, self._loaded.dtype)
        return self._loaded

    def _load_sync(self) -> _Loaded:
        if not self.path.is_file():
            raise ModelLoadError(f"VAE file {self.path} does not exist (interpolation.vae_path)")
        try:
            import torch
            from safetensors import SafetensorError
        except ImportError as exc:
            raise ModelLoadError(
                f"the local VAE needs torch, diffusers and safetensors (pip install 'dream-window[ml]'): {exc}"
            ) from exc
        try:
            device = torch.device(self._device_choice or ("cuda" if torch.cuda.is_available() else "cpu"))
            half = device.type == "cuda" and not self._config.get("force_upcast", False)
            dtype = torch.float16 if half else torch.float32  # never bfloat16: CPUs without it crash
            tensors = self._read_tensors()
            model, can_encode = (
                self._build_tiny(tensors, dtype) if self._tiny else self._build_kl(tensors, dtype)
            )
            model = model.to(device).eval()
        except ModelLoadError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise ModelLoadError(f"cannot load VAE {self.path} as family '{self.family}': {exc}") from exc
        cfg = model.config
        n_down = len(cfg.block_out_channels if not self._tiny else cfg.encoder_block_out_channels)
        return _Loaded(
            model=model,
            device=device,
            dtype=dtype,
            scaling=float(getattr(cfg, "scaling_factor", 1.0) or 1.0),
            shift=float(getattr(cfg, "shift_factor", 0.0) or 0.0),
            factor=2 ** (n_down - 1),
            can_encode=can_encode,
        )

    def _read_tensors(self) -> dict[str, Any]:
        """Only the VAE's tensors: a full checkpoint's UNet and text encoders are never read."""
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            prefix = next((p for p in _LDM_PREFIXES if any(k.startswith(p) for k in keys)), "")
            wanted = [k for k in keys if k.startswith(prefix)] if prefix else keys
            if not wanted:
                raise ModelLoadError(f"{self.path} holds no tensors")
            return {k[len(prefix) :]: f.get_tensor(k) for k in wanted}

    def _build_kl(self, tensors: dict[str, Any], dtype: Any) -> tuple[Any, bool]:
        import torch
        from diffusers import AutoencoderKL
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        with torch.device("meta"):
            expected = set(AutoencoderKL.from_config(self._config).state_dict())
        converted = (
            tensors if expected <= set(tensors) else convert_ldm_vae_checkpoint(dict(tensors), self._config)
        )
        missing = sorted(expected - set(converted))
        if missing:
            raise ModelLoadError(
                f"{self.path} is not a complete '{self.family}' VAE: {len(missing)} of {len(expected)} weights "
                f"missing (e.g. {', '.join(missing[:3])}); check interpolation.vae_family"
            )
        model = AutoencoderKL.from_single_file(
            dict(tensors), config=str(self._config_dir), local_files_only=True, torch_dtype=dtype
        )
        return model, True

    def _build_tiny(self, tensors: dict[str, Any], dtype: Any) -> tuple[Any, bool]:
        import torch
        from diffusers import AutoencoderTiny

        state = _tiny_state_dict(tensors)
        model = AutoencoderTiny.from_config(self._config)
        want = model.state_dict()
        dec = {k for k in want if k.startswith("decoder.")}
        enc = {k for k in want if k.startswith("encoder.")}
        if not dec <= set(state):
            raise ModelLoadError(
                f"{self.path} is not a '{self.family}' tiny autoencoder: decoder weights missing "
                f"(e.g. {', '.join(sorted(dec - set(state))[:3])})"
            )
        has_encoder = enc <= set(state)
        if not has_encoder:
            state = {**state, **{k: want[k] for k in enc}}  # keeps load strict; encode() refuses
        model.load_state_dict(state, strict=True)
        return (model if dtype == torch.float32 else model.to(dtype)), has_encoder

    async def free_memory(self) -> None:
        async with self._lock:
            loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded.device.type == "cuda":
            import torch

            del loaded
            torch.cuda.empty_cache()

    # --- encode / decode ------------------------------------------------------------------

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        loaded = await self._ensure()
        if not loaded.can_encode:
            raise ModelLoadError(f"{self.path} holds only a decoder; encoding needs the encoder weights too")
        if not images:
            raise ValueError("encode needs at least one image")
        return await asyncio.to_thread(self._encode_sync, loaded, list(images))

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        z = check_latents(latents, self.latent_channels)
        loaded = await self._ensure()
        return await asyncio.to_thread(self._decode_sync, loaded, z)

    def _encode_sync(self, loaded: _Loaded, images: list[Image.Image]) -> np.ndarray:
        import torch

        sizes = {im.size for im in images}
        if len(sizes) != 1:
            raise ValueError(f"encode needs images of one size, got {sorted(sizes)}")
        w, h = sizes.pop()
        if w % loaded.factor or h % loaded.factor:
            raise ValueError(f"image size must be a multiple of {loaded.factor}, got {w}x{h}")
        arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).div_(127.5).sub_(1.0)
        with torch.inference_mode():
            x = x.to(device=loaded.device, dtype=loaded.dtype)
            if self._tiny:
                z = loaded.model.encode(x).latents
            else:
                # The distribution's mean, not a sample: sampled latents would make in-betweens shimmer.
                z = loaded.model.encode(x).latent_dist.mode()
            z = (z.float() - loaded.shift) * loaded.scaling
        return z.cpu().numpy().astype(np.float32, copy=False)

    def _decode_sync(self, loaded: _Loaded, z: np.ndarray) -> list[Image.Image]:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(z)) / loaded.scaling + loaded.shift
            x = loaded.model.decode(t.to(device=loaded.device, dtype=loaded.dtype)).sample
            x = ((x.float().clamp_(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)
        arr = x.permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]


def _tiny_state_dict(tensors: dict[str, Any]) -> dict[str, Any]:
    """Map the TAESD layouts seen in the wild onto diffusers' ``AutoencoderTiny`` keys."""
    keys = set(tensors)
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return dict(tensors)  # diffusers layout (madebyollin/taesd diffusion_pytorch_model.safetensors)
    out: dict[str, Any] = {}
    if any(k.startswith(("taesd_encoder.", "taesd_decoder.")) for k in keys):  # ComfyUI's TAESD module
        for k, v in tensors.items():
            if k.startswith("taesd_encoder."):
                out["encoder.layers." + k[len("taesd_encoder.") :]] = v
            elif k.startswith("taesd_decoder."):
                out["decoder.layers." + _shift_index(k[len("taesd_decoder.") :])] = v
        return out
    # The original taesd_encoder / taesd_decoder files: a bare nn.Sequential. The decoder starts
    # with a parameter-free Clamp at index 0 (diffusers folds it into forward), so it has no "0.*".
    part = "encoder" if any(k.startswith("0.") for k in keys) else "decoder"
    for k, v in tensors.items():
        out[f"{part}.layers." + (k if part == "encoder" else _shift_index(k))] = v
    return out


def _shift_index(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{int(head) - 1}.{rest}" if head.isdigit() else key
