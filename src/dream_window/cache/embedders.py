"""Image embedders: pictures in, L2-normalised float32 vectors out (cosine = dot product).

Two strategies behind one small protocol:

* :class:`CLIPEmbedder` — CLIP's image tower (``transformers`` CLIPModel + CLIPProcessor). The
  model is a Hugging Face id, loaded from the local cache only (``local_files_only``: a dream
  must never stall on a download), or a local folder. CUDA in fp16 when available, else CPU in
  fp32 (never bf16 on CPU: some CPUs die on it with "Illegal instruction"). Loaded lazily, once.
* :class:`FeatureEmbedder` — no torch. A 256-d vector of two documented parts:

  - **colour** (64 d, weight² 0.6): a 4×4×4 RGB histogram of a 64×64 thumbnail, square-rooted
    (so the dot product of two is the Bhattacharyya coefficient of the palettes);
  - **layout** (192 d, weight² 0.4): an 8×8 thumbnail in YCbCr with each channel's mean removed,
    so it says *where* light and colour sit, independent of the overall palette.

  Each part is unit-length before weighting, so cosine = 0.6·palette + 0.4·layout similarity.

Each embedder has an ``id`` stored with every embedding; vectors of different ids are never
compared (a switch of model re-embeds the cache in the background).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from dream_window.errors import ModelLoadError

log = logging.getLogger(__name__)


class ImageEmbedder(Protocol):
    #: Stored with each embedding; e.g. "clip:openai/clip-vit-base-patch32" or "features-v1".
    id: str
    #: One line for status and doctor.
    label: str

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``[len(images), d]`` float32, each row unit length. Blocking: call from a thread."""
        ...


def l2_normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return (m / np.maximum(norms, 1e-12)).astype(np.float32)


class FeatureEmbedder:
    """Colour + layout features (see the module docstring). Deterministic, fast, torch-free."""

    id = "features-v1"
    label = "features (colour + layout, not CLIP)"
    dim = 64 + 192
    _COLOUR_W = np.sqrt(0.6)
    _LAYOUT_W = np.sqrt(0.4)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._one(img) for img in images]).astype(np.float32)

    def _one(self, image: Image.Image) -> np.ndarray:
        img = image.convert("RGB")
        small = np.asarray(img.resize((64, 64), Image.Resampling.BOX), dtype=np.uint8)
        bins = (small // 64).reshape(-1, 3).astype(np.int64)  # 4 levels per channel
        hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).astype(np.float64)
        colour = np.sqrt(hist / hist.sum())  # already unit length: sum of squares = 1
        layout = np.asarray(img.convert("YCbCr").resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
        layout = (layout - layout.mean(axis=(0, 1), keepdims=True)).ravel()
        norm = np.linalg.norm(layout)
        layout = layout / norm if norm > 1e-9 else layout  # a flat picture has no layout to speak of
        v = np.concatenate([self._COLOUR_W * colour, self._LAYOUT_W * layout])
        return l2_normalise(v)


def clip_source(model: str) -> tuple[bool, str]:
    """Can CLIP run here, from what, and if not, why not (for doctor and the embedder choice)."""
    for pkg in ("torch", "transformers"):
        if importlib.util.find_spec(pkg) is None:
            return False, f"python package '{pkg}' not installed (pip install 'dream-window[ml]')"
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return False, f"{path} has no config.json (not a saved CLIP model)"
        return True, f"local folder {path}"
    if model.startswith((".", "/", "~")) or "\\" in model:
        return False, f"model folder {path} does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "huggingface_hub not installed"
    hit = try_to_load_from_cache(model, "config.json")
    if not isinstance(hit, str):
        return False, (
            f"weights for {model} are not in the local Hugging Face cache "
            f"(download once with: huggingface-cli download {model})"
        )
    return True, f"{model} from the local Hugging Face cache"


class CLIPEmbedder:
    """CLIP image embeddings. Construct freely; the model loads on the first ``embed`` (or ``load``)."""

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 8) -> None:
        self.model_name = model
        self.id = f"clip:{model}"
        self.label = f"clip ({model})"
        self.batch_size = batch_size
        self._device_choice = device
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self.device: str | None = None
        self.dtype: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from transformers import CLIPModel, CLIPProcessor
            except ImportError as exc:
                raise ModelLoadError(f"CLIP needs torch and transformers: {exc}") from exc
            device = self._device_choice or ("cuda" if torch.cuda.is_available() else "cpu")
            # fp16 only on CUDA; CPU stays fp32 (bf16 on CPU can kill the process).
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            src = (
                str(Path(self.model_name).expanduser())
                if Path(self.model_name).expanduser().is_dir()
                else self.model_name
            )
            try:
                model = CLIPModel.from_pretrained(src, local_files_only=True, dtype=dtype)
                processor = CLIPProcessor.from_pretrained(src, local_files_only=True)
                model = model.to(device).eval()  # type: ignore[arg-type]
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ModelLoadError(f"cannot load CLIP model {self.model_name}: {exc}") from exc
            self._processor, self.device, self.dtype = processor, device, dtype
            self._model = model
            log.info(
                "CLIP model %s loaded on %s (%s)", self.model_name, device, str(dtype).removeprefix("torch.")
            )

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.load()
        import torch

        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            try:
                inputs = self._processor(images=batch, return_tensors="pt")
                pixels = inputs["pixel_values"].to(self.device, dtype=self.dtype)
                with torch.inference_mode():
                    feats = self._model.get_image_features(pixel_values=pixels)
                # transformers 5 returns an output object (projected embedding in pooler_output); 4.x a tensor.
                tensor = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
                out.append(tensor.float().cpu().numpy())
            except RuntimeError as exc:
                raise ModelLoadError(f"CLIP embedding failed: {exc}") from exc
        if not out:
            return np.zeros((0, 0), np.float32)
        return l2_normalise(np.concatenate(out))


def select_embedder(choice: str, clip_model: str) -> tuple[ImageEmbedder, str]:
    """The embedder for ``generation.cache.embedder`` and one line saying why it was chosen."""
    if choice == "features":
        return FeatureEmbedder(), "embedder: features chosen in config"
    ok, detail = clip_source(clip_model)
    if ok:
        return CLIPEmbedder(clip_model), f"CLIP from {detail}"
    return FeatureEmbedder(), f"CLIP unavailable: {detail}"
