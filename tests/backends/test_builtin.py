"""The built-in engine: deterministic, prompt-shaped, real img2img semantics, a slerpable latent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from dream_window.backends.base import GenerationBackend
from dream_window.backends.builtin import LATENT_FACTOR, BuiltinEngine, Style
from dream_window.values.generation import GenerationRequest
from dream_window.values.slerp import spherical_lerp

OCEAN = "bioluminescent ocean at night, glowing waves"
FIRE = "fire and flames, embers"


@pytest.fixture
def engine() -> BuiltinEngine:
    return BuiltinEngine(offload=False)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def test_implements_the_backend_protocol_and_says_it_is_not_ai(engine: BuiltinEngine) -> None:
    assert isinstance(engine, GenerationBackend)
    assert engine.is_ai is False
    assert "not AI" in engine.name


async def test_same_prompt_and_seed_give_the_same_pixels(engine: BuiltinEngine) -> None:
    a = await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=7))
    b = await BuiltinEngine(offload=False).txt2img(GenerationRequest(prompt=OCEAN, seed=7))
    c = await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=8))
    assert a.image.size == (256, 512)
    assert np.array_equal(_arr(a.image), _arr(b.image))
    assert not np.array_equal(_arr(a.image), _arr(c.image))


async def test_the_prompt_shapes_the_palette(engine: BuiltinEngine) -> None:
    ocean = _arr((await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=1))).image).mean(axis=(0, 1))
    fire = _arr((await engine.txt2img(GenerationRequest(prompt=FIRE, seed=1))).image).mean(axis=(0, 1))
    assert ocean[2] > ocean[0]  # ocean: more blue than red
    assert fire[0] > fire[2]  # fire: more red than blue
    assert Style.from_prompt(OCEAN).structure == "waves"
    assert Style.from_prompt("a quiet teapot").palette.shape[1] == 3  # unknown words still get a palette


async def test_img2img_denoise_zero_returns_the_input_and_one_ignores_it(engine: BuiltinEngine) -> None:
    src = (await engine.txt2img(GenerationRequest(prompt=FIRE, seed=3))).image
    other = (await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=4))).image
    same = await engine.img2img(src, GenerationRequest(prompt=OCEAN, seed=5, denoise=0.0))
    assert np.array_equal(_arr(same.image), _arr(src))
    full_a = await engine.img2img(src, GenerationRequest(prompt=OCEAN, seed=5, denoise=1.0))
    full_b = await engine.img2img(other, GenerationRequest(prompt=OCEAN, seed=5, denoise=1.0))
    assert np.array_equal(_arr(full_a.image), _arr(full_b.image))


async def test_img2img_moves_away_from_the_input_continuously_with_denoise(engine: BuiltinEngine) -> None:
    src = (await engine.txt2img(GenerationRequest(prompt=FIRE, seed=3))).image
    dists = []
    for d in (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0):
        out = await engine.img2img(src, GenerationRequest(prompt=OCEAN, seed=9, denoise=d))
        dists.append(float(np.abs(_arr(out.image) - _arr(src)).mean()))
    assert dists[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(dists)), dists
    # Continuity: a small denoise step makes a small change, not a jump.
    small = await engine.img2img(src, GenerationRequest(prompt=OCEAN, seed=9, denoise=0.02))
    assert float(np.abs(_arr(small.image) - _arr(src)).mean()) < 0.2 * dists[-1]


async def test_latent_shape_round_trip_and_slerp_decodes_between_keyframes(engine: BuiltinEngine) -> None:
    a = (await engine.txt2img(GenerationRequest(prompt=FIRE, seed=1))).image
    b = (await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=2))).image
    z = await engine.encode([a, b])
    assert z.shape == (2, engine.latent_channels, 512 // LATENT_FACTOR, 256 // LATENT_FACTOR)
    assert z.dtype == np.float32
    back = await engine.decode(z)
    # Decoding loses detail (lower resolution) but keeps the picture: close to the source, far from the other.
    err_same = np.abs(_arr(back[0]) - _arr(a)).mean()
    err_other = np.abs(_arr(back[0]) - _arr(b)).mean()
    assert err_same < 0.5 * err_other
    mid = await engine.decode(spherical_lerp(z[0], z[1], np.array([0.25, 0.5, 0.75])))
    d_to_a = [np.abs(_arr(m) - _arr(back[0])).mean() for m in mid]
    assert d_to_a == sorted(d_to_a)  # moves monotonically from a toward b


async def test_decode_rejects_wrong_shapes_with_a_clear_message(engine: BuiltinEngine) -> None:
    with pytest.raises(ValueError, match=r"expected latents shaped \[B, 4, H, W\]"):
        await engine.decode(np.zeros((1, 16, 8, 8), np.float32))


async def test_progress_callback_is_called(engine: BuiltinEngine) -> None:
    seen: list[tuple[int, int]] = []
    engine.set_progress_callback(lambda v, m: seen.append((v, m)))
    await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=1, steps=4))
    assert seen and seen[-1] == (4, 4)
