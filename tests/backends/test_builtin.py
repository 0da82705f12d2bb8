"""The built-in engine: deterministic, prompt-shaped, real img2img semantics, a slerpable latent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from dream_window.backends.base import GenerationBackend
from dream_window.backends.builtin import LATENT_FACTOR, BuiltinEngine, Morph, Style
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
    # Decoding keeps the picture: close to the source, far from the other.
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


def _sharpness(img: Image.Image) -> float:
    y = _arr(img) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0
    return float(np.hypot(np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]).mean())


async def test_it_draws_fractal_flames_on_a_palette_tinted_ground(engine: BuiltinEngine) -> None:
    img = _arr((await engine.txt2img(GenerationRequest(prompt=FIRE, seed=2))).image)
    lum = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert (lum < 20).mean() > 0.2  # a dark ground ...
    assert (lum > 100).mean() > 0.02  # ... with bright filaments on it
    assert ((img.max(axis=-1) <= 2) | (img.min(axis=-1) >= 253)).mean() < 0.01  # nothing crushed or burnt


async def test_many_img2img_passes_leave_no_smeared_border(engine: BuiltinEngine) -> None:
    # Start from noise so the border has content to smear; a clamped sampler copies the edge
    # pixel inward pass after pass and the outer rows and columns flatten out.
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (512, 256, 3), dtype=np.uint8))
    for seed in range(12):
        img = (await engine.img2img(img, GenerationRequest(prompt=OCEAN, seed=seed, denoise=0.1))).image
    lum = _arr(img) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    def step(a: np.ndarray) -> float:  # mean change from one line to the next, across the edge
        return float(np.abs(np.diff(a, axis=0)).mean())

    # The outermost lines change from one to the next as much as lines a little further in do.
    pairs = [(lum[:3], lum[8:11]), (lum[-3:], lum[-11:-8]), (lum[:, :3].T, lum[:, 8:11].T)]
    pairs.append((lum[:, -3:].T, lum[:, -11:-8].T))
    for border, inside in pairs:
        assert step(border) > 0.5 * step(inside)


async def test_decoded_inbetweens_are_as_sharp_as_their_keyframes(engine: BuiltinEngine) -> None:
    a = (await engine.txt2img(GenerationRequest(prompt=OCEAN, seed=1))).image
    b = (await engine.img2img(a, GenerationRequest(prompt=OCEAN, seed=2, denoise=0.4))).image
    z = await engine.encode([a, b])
    (mid,) = await engine.decode(spherical_lerp(z[0], z[1], np.array([0.5])))
    keys = (_sharpness(a) + _sharpness(b)) / 2
    assert 0.7 * keys < _sharpness(mid) < 1.3 * keys


async def test_encode_decode_round_trip_is_near_exact(engine: BuiltinEngine) -> None:
    a = (await engine.txt2img(GenerationRequest(prompt=FIRE, seed=5))).image
    (back,) = await engine.decode(await engine.encode([a]))
    assert float(np.abs(_arr(back) - _arr(a)).max()) <= 2.0  # float rounding only, at full resolution


async def test_palette_words_move_the_colour_with_the_same_seed(engine: BuiltinEngine) -> None:
    def mean_rgb(prompt: str) -> np.ndarray:
        return _arr(Image.fromarray(engine.render(prompt, 4, 128, 256))).mean(axis=(0, 1))

    forest, rose = mean_rgb("a forest of moss"), mean_rgb("a rose garden")
    assert forest[1] > forest[0] and rose[0] > rose[1]


# --- img2img keeps dreaming: the morph between genomes ----------------------------------------


def test_img2img_fed_back_keeps_moving_in_small_steps(engine: BuiltinEngine) -> None:
    # Random seeds every frame, as the default seed policy gives: the picture must still travel
    # (a morph carried by the picture), not settle on one flame per prompt.
    seeds = np.random.default_rng(7).integers(0, 2**31, 48)
    img = Image.fromarray(engine.render(OCEAN, 3, 64, 128))

    Morph.start(3).label(img)
    frames = [_arr(img)]
    for seed in seeds:
        img = engine.grow(
            img, GenerationRequest(prompt=OCEAN, seed=int(seed), width=64, height=128, denoise=0.4)
        )
        frames.append(_arr(img))
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(frames)]
    travelled = np.abs(frames[-1] - frames[16]).mean()  # well after the start: no settling counted
    assert travelled > 3 * float(np.median(steps)), "the dream stood still"


def test_the_morph_heads_on_to_a_new_genome_when_it_arrives() -> None:

    m = Morph.start(5)
    assert m.step(0.25, 9) == Morph(5, 9, 0.25)  # leaves seed 5's genome toward seed 9's
    assert Morph(5, 9, 0.9).step(0.25, 11) == Morph(9, 11, pytest.approx(0.15))
    assert Morph(5, 9, 0.5).step(0.25, 11) == Morph(5, 9, 0.75)  # the next seed is not used yet


def test_a_picture_from_elsewhere_morphs_from_the_prompts_own_genome(engine: BuiltinEngine) -> None:

    foreign = Image.new("RGB", (64, 128), (40, 40, 60))  # no morph in it (ComfyUI, a file)
    out = engine.grow(foreign, GenerationRequest(prompt=FIRE, seed=4, width=64, height=128, denoise=0.4))
    assert Morph.of(foreign) == Morph(None, 0, 1.0)
    assert Morph.of(out) == Morph(None, 4, pytest.approx(0.04))
