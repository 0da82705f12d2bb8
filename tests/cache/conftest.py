"""Fixtures for the frame cache: pictures that are alike or not, and a tiny random CLIP on disk."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def picture(
    seed: int,
    *,
    hue: tuple[int, int, int] = (200, 80, 40),
    size: tuple[int, int] = (48, 64),
    noise: float = 40.0,
) -> Image.Image:
    """A gradient of ``hue`` with seeded noise: same hue → alike, other hue → different."""
    rng = np.random.default_rng(seed)
    w, h = size
    ramp = np.linspace(0.3, 1.0, h)[:, None, None] * np.array(hue, dtype=np.float64)[None, None, :]
    arr = np.broadcast_to(ramp, (h, w, 3)) + rng.normal(0, noise, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


RED = (220, 40, 30)
BLUE = (20, 60, 220)
GREEN = (30, 200, 50)


def build_tiny_clip(directory: Path) -> Path:
    """A random-weight CLIP with a 32-px vision tower and a 6-token vocabulary, saved like real weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    torch.manual_seed(0)
    model_dir = directory / "tiny-clip"
    CLIPModel(config).save_pretrained(model_dir)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="CLIP path needs torch")
    pytest.importorskip("transformers", reason="CLIP path needs transformers")
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


class Rolls(random.Random):
    """An rng whose every draw is ``value`` (the probability roll, then the weighted choice)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value
