"""The test server's nodes, called as the executor calls them: what a real ComfyUI's would do with
the same values, where it matters to what the dream shows.

* VAEDecode decodes a latent's samples alone, as a real VAE can only do: a keyframe and a slerped
  in-between come out of the same decoder (the pop measured by ``bench/quality.py`` was the test
  server's, when keyframes were shown from the pixels they carried).
* A sampler handed noise (DisableNoise) draws its picture from that noise continuously, so a latent
  walk of slerped noise moves smoothly, as on a real model (it used to hash the noise to a seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from comfyui_fake.nodes.latents import vae_decode, vae_encode
from comfyui_fake.nodes.sampling import sampler_custom_advanced
from comfyui_fake.nodes.values import Latent, RunContext, conditioning
from dream_window.backends.builtin import BuiltinEngine
from dream_window.values.quality import as_float, change
from dream_window.values.slerp import spherical_lerp

PROMPT = "bioluminescent ocean at night, glowing waves"


def context(tmp_path: Path) -> RunContext:
    async def on_step(i: int, n: int, latent: Latent | None) -> None:
        return None

    return RunContext(BuiltinEngine(), tmp_path / "in", tmp_path / "out", tmp_path / "temp", on_step)


def pixels(out: tuple[tuple[Any, ...], None]) -> np.ndarray:
    (images,), _ = out
    (image,) = images
    return np.asarray(image.convert("RGB"))


async def test_vae_decode_uses_the_samples_only_so_keyframes_and_inbetweens_decode_alike(
    tmp_path: Path,
) -> None:
    ctx = context(tmp_path)
    picture = Image.fromarray(ctx.engine.render(PROMPT, 5, 64, 128))
    (encoded,), _ = await vae_encode({"pixels": [picture], "vae": {"channels": 4}}, ctx)
    assert encoded.pixels is not None  # the sampler still works from them
    with_pixels = pixels(await vae_decode({"samples": encoded}, ctx))
    samples_only = pixels(await vae_decode({"samples": Latent(encoded.samples.copy())}, ctx))
    assert np.array_equal(with_pixels, samples_only)
    assert not np.array_equal(with_pixels, np.asarray(picture))  # a 1/8 latent is not the picture


async def sample_noise(ctx: RunContext, noise: np.ndarray) -> np.ndarray:
    out = await sampler_custom_advanced(
        {
            "noise": {"seed": None},  # DisableNoise: the latent is the noise
            "guider": conditioning(PROMPT),
            "sigmas": {"steps": 1, "denoise": 1.0},
            "latent_image": Latent(noise[None].astype(np.float32)),
        },
        ctx,
    )
    (latent, _), _ = out
    assert latent.pixels is not None
    return as_float(np.asarray(latent.pixels[0]))


async def test_a_sampler_handed_noise_walks_smoothly_between_two_noises(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 16, 8))
    start = await sample_noise(ctx, a)
    assert np.array_equal(start, await sample_noise(ctx, a))  # the same noise, the same picture
    end = await sample_noise(ctx, b)
    near = await sample_noise(ctx, spherical_lerp(a, b, 0.05))
    far = change(start, end)
    assert far > 0.02  # two noises, two pictures
    # A twentieth of the way along the slerp moves the picture a small part of the whole way
    # (a hash of the noise would give an unrelated picture here, as far away as the end).
    assert change(start, near) < far / 3
