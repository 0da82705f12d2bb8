"""Embedders: the feature fallback, and CLIP through the same loading code real weights use."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dream_window.cache.embedders import CLIPEmbedder, FeatureEmbedder, clip_source, select_embedder
from dream_window.errors import ModelLoadError
from tests.cache.conftest import BLUE, GREEN, RED, picture


def test_features_are_unit_length_and_rank_alike_pictures_first() -> None:
    e = FeatureEmbedder()
    v = e.embed([picture(1, hue=RED), picture(2, hue=RED), picture(3, hue=BLUE), picture(4, hue=GREEN)])
    assert v.shape == (4, FeatureEmbedder.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    sims = v @ v[0]
    assert sims[1] > 0.8, sims
    assert sims[1] > sims[2] + 0.3 and sims[1] > sims[3] + 0.3, sims


def test_features_are_deterministic_and_survive_flat_pictures() -> None:
    from PIL import Image

    e = FeatureEmbedder()
    flat = Image.new("RGB", (32, 32), (10, 20, 30))
    a, b = e.embed([flat, picture(5)]), e.embed([flat, picture(5)])
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and abs(np.linalg.norm(a[0]) - 1.0) < 1e-5
    assert e.embed([]).shape == (0, FeatureEmbedder.dim)


def test_tiny_clip_loads_offline_through_the_real_path(tiny_clip: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    ok, detail = clip_source(str(tiny_clip))
    assert ok and "local folder" in detail
    embedder, reason = select_embedder("auto", str(tiny_clip))
    assert isinstance(embedder, CLIPEmbedder) and "CLIP" in reason
    assert not embedder.loaded
    embedder.batch_size = 2  # 5 pictures → 3 forward passes
    pics = [picture(i, hue=h) for i, h in enumerate([RED, RED, BLUE, GREEN, BLUE])]
    v = embedder.embed(pics)
    assert embedder.loaded and embedder.device == "cpu"
    import torch

    assert embedder.dtype == torch.float32  # never bf16 on a CPU
    assert v.shape == (5, 8) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # Batching changes nothing: each picture alone gives the same vector.
    single = np.concatenate([embedder.embed([p]) for p in pics])
    np.testing.assert_allclose(v, single, atol=1e-5)
    assert embedder.id == f"clip:{tiny_clip}"


def test_clip_falls_back_when_weights_are_missing(tmp_path: Path) -> None:
    embedder, reason = select_embedder("clip", str(tmp_path / "no-such-model"))
    assert isinstance(embedder, FeatureEmbedder)
    assert "does not exist" in reason and reason.startswith("CLIP unavailable")
    embedder, reason = select_embedder("auto", "nobody/not-a-cached-model")
    assert isinstance(embedder, FeatureEmbedder) and "not in the local Hugging Face cache" in reason
    embedder, reason = select_embedder("features", "openai/clip-vit-base-patch32")
    assert isinstance(embedder, FeatureEmbedder) and "chosen in config" in reason


def test_unloadable_clip_folder_raises_model_load_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    assert clip_source(str(broken))[0]
    with pytest.raises(ModelLoadError, match="cannot load CLIP model"):
        CLIPEmbedder(str(broken)).embed([picture(0)])
