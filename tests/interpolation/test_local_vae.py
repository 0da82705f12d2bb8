"""LocalVAEEncoder on tiny random VAEs written as real weight files are (one .safetensors, original
key layout), loaded through the same offline single-file path as real weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream_window.errors import ConfigError, ModelLoadError
from dream_window.interpolation.latent_encoder import BackendLatentEncoder, create_latent_encoder
from dream_window.interpolation.local_vae import LocalVAEEncoder, family_config
from tests.conftest import fast_config
from tests.interpolation.vae_files import torch, write_tiny_kl, write_tiny_taesd


def _images(n: int, w: int = 48, h: int = 32, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def _pixels(images: list[Image.Image]) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


@pytest.mark.parametrize(
    ("family", "channels", "scale", "shift"),
    [("sd", 4, 0.18215, 0.0), ("sdxl", 4, 0.13025, 0.0), ("flux", 16, 0.3611, 0.1159)],
)
def test_shipped_configs_carry_the_published_constants(
    family: str, channels: int, scale: float, shift: float
) -> None:
    cfg = family_config(family)
    assert cfg["_class_name"] == "AutoencoderKL"
    assert (cfg["latent_channels"], cfg["scaling_factor"], cfg.get("shift_factor", 0.0)) == (
        channels,
        scale,
        shift,
    )


@pytest.mark.parametrize(("family", "channels"), [("sd", 4), ("flux", 16)])
async def test_single_file_ldm_layout_loads_offline_and_scales_latents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str, channels: int
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, cfg_dir, reference = write_tiny_kl(tmp_path, family)
    enc = LocalVAEEncoder(path, family, config_dir=cfg_dir, batch_size=2)
    images = _images(3)
    z = await enc.encode(images)
    assert enc.loaded and enc.device == "cpu"
    assert z.shape == (3, channels, 16, 24) and z.dtype == np.float32
    # The weights really came from the file: the model we saved gives the same raw latent, and
    # the encoder applied (z - shift) * scale with the family's constants.
    with torch.no_grad():
        raw = reference.encode(_pixels(images)).latent_dist.mode().numpy()
    cfg = json.loads((cfg_dir / "config.json").read_text())
    np.testing.assert_allclose(z, (raw - cfg.get("shift_factor", 0.0)) * cfg["scaling_factor"], atol=1e-5)
    # decode undoes the scaling: same pixels as the reference decoder fed the raw latent.
    out = await enc.decode_batch(z)
    with torch.no_grad():
        ref = ((reference.decode(torch.from_numpy(raw)).sample.clamp(-1, 1) + 1) * 127.5).round().byte()
    assert [im.size for im in out] == [(48, 32)] * 3
    got = np.stack([np.asarray(im) for im in out])
    assert np.abs(got.astype(int) - ref.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1


async def test_batches_give_the_same_latents_as_one_call(tmp_path: Path) -> None:
    path, cfg_dir, _ = write_tiny_kl(tmp_path, "flux")
    enc = LocalVAEEncoder(path, "flux", config_dir=cfg_dir, batch_size=2)
    images = _images(5, seed=3)
    whole = await enc.encode(images)
    chunked = await enc.encode_batch(images)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    one_by_one = await enc.decode_batch(whole, batch_size=1)
    together = await enc.decode(whole)
    assert len(one_by_one) == 5
    for a, b in zip(one_by_one, together, strict=True):
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


async def test_a_full_checkpoint_prefix_is_read(tmp_path: Path) -> None:
    path, cfg_dir, _ = write_tiny_kl(tmp_path, "sd", prefix="first_stage_model.")
    enc = LocalVAEEncoder(path, "sd", config_dir=cfg_dir)
    assert (await enc.encode(_images(1))).shape == (1, 4, 16, 24)


@pytest.mark.parametrize("layout", ["diffusers", "decoder-only"])
async def test_tiny_autoencoder_single_file(tmp_path: Path, layout: str) -> None:
    path, cfg_dir, reference = write_tiny_taesd(tmp_path, "taef1", layout=layout)
    enc = LocalVAEEncoder(path, "taef1", config_dir=cfg_dir)
    z = np.random.default_rng(0).standard_normal((3, 16, 8, 12)).astype(np.float32)
    out = await enc.decode(z)
    with torch.no_grad():
        ref = ((reference.decode(torch.from_numpy(z)).sample.clamp(-1, 1) + 1) * 127.5).round().byte()
    got = np.stack([np.asarray(im) for im in out])
    assert np.abs(got.astype(int) - ref.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1
    if layout == "diffusers":
        assert (await enc.encode(_images(2, 24, 16))).shape == (2, 16, 8, 12)
    else:
        with pytest.raises(ModelLoadError, match="only a decoder"):
            await enc.encode(_images(1, 24, 16))


async def test_missing_file_is_a_model_load_error(tmp_path: Path) -> None:
    enc = LocalVAEEncoder(tmp_path / "nope.safetensors", "sd")
    with pytest.raises(ModelLoadError, match=r"nope\.safetensors does not exist"):
        await enc.decode(np.zeros((1, 4, 4, 4), np.float32))


async def test_wrong_family_is_refused_not_half_loaded(tmp_path: Path) -> None:
    path, _, _ = write_tiny_kl(tmp_path, "sd")
    _, flux_cfg, _ = write_tiny_kl(tmp_path / "other", "flux")
    enc = LocalVAEEncoder(path, "flux", config_dir=flux_cfg)
    with pytest.raises(ModelLoadError, match="flux"):
        await enc.load()


async def test_incomplete_file_names_the_missing_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path, cfg_dir, _ = write_tiny_kl(tmp_path, "sd")
    sd = {k: v for k, v in load_file(str(path)).items() if not k.startswith("decoder.up.")}
    save_file(sd, str(path))
    with pytest.raises(ModelLoadError, match=r"not a complete 'sd' VAE: \d+ of \d+ weights missing"):
        await LocalVAEEncoder(path, "sd", config_dir=cfg_dir).load()


async def test_garbage_file_is_a_model_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelLoadError, match="cannot load VAE"):
        await LocalVAEEncoder(bad, "sd").load()


def test_factory_follows_the_config(tmp_path: Path) -> None:
    from dream_window.backends.builtin import BuiltinEngine

    engine = BuiltinEngine(offload=False)
    assert isinstance(create_latent_encoder(fast_config(tmp_path), engine), BackendLatentEncoder)
    cfg = fast_config(
        tmp_path, interpolation={"encoder": "local", "vae_path": "vae/ae.safetensors", "vae_family": "flux"}
    )
    enc = create_latent_encoder(cfg, engine)
    assert isinstance(enc, LocalVAEEncoder) and enc.latent_channels == 16
    assert enc.path == tmp_path / "vae" / "ae.safetensors" and not enc.loaded  # lazy
    with pytest.raises(ConfigError, match=r"interpolation\.vae_path must be set"):
        fast_config(tmp_path, interpolation={"encoder": "local"})


async def test_doctor_reports_the_local_vae(tmp_path: Path) -> None:
    from dream_window.interpolation.checks import doctor_checks

    path, _, _ = write_tiny_kl(tmp_path, "sd")
    # The shipped (full-size) sd config does not fit the tiny file: doctor says so instead of crashing.
    cfg = fast_config(tmp_path, interpolation={"encoder": "local", "vae_path": str(path), "vae_family": "sd"})
    checks = {c.name: c for c in await doctor_checks(cfg)}
    assert checks["local VAE"].level == "fail" and "sd" in checks["local VAE"].detail
    auto = {c.name: c for c in await doctor_checks(fast_config(tmp_path))}
    assert auto["interpolation encoder"].level == "ok" and "own VAE" in auto["interpolation encoder"].detail
