"""Colour coherence: the controller law, LAB matching, and the closed loop on a backend that drifts
on purpose (3 % more saturated, 2 % darker every img2img pass: tests/dream/drifting.py)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import GenerationConfig, SeedPolicy
from dream_window.dream.coherence import (
    DEAD_BAND,
    FULL_AT,
    ColourCoherence,
    ColourStats,
    drift,
    lift_detail,
    match,
    strength_for,
)
from dream_window.dream.modes.base import ModeContext
from dream_window.dream.modes.hybrid import HybridMode
from dream_window.dream.modes.img2img import Img2ImgMode
from dream_window.values.quality import downscale, measure, sharpness
from dream_window.values.seeds import SeedSource
from tests.conftest import FakeClock, fast_config
from tests.dream.drifting import DriftingBackend, burn

PROMPT = "sunset over lavender fields, warm orange and purple sky"
BAND = 0.15  # the goal: saturation and brightness within ±15 % of the reference


def picture(seed: int = 0, size: tuple[int, int] = (48, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)


# --- the controller law and the matching --------------------------------------------------------


def test_the_law_is_zero_inside_the_band_then_rises_to_full() -> None:
    assert strength_for(0.0) == 0.0
    assert strength_for(DEAD_BAND) == 0.0
    assert strength_for((DEAD_BAND + FULL_AT) / 2) == pytest.approx(0.5)
    assert strength_for(FULL_AT) == 1.0
    assert strength_for(3.0) == 1.0
    assert strength_for(3.0, max_strength=0.6) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="band < full"):
        strength_for(0.1, band=0.2, full=0.1)
    with pytest.raises(ValueError, match=r"strength in 0\.\.1"):
        ColourCoherence(max_strength=1.5)


def test_full_strength_matching_gives_the_reference_lightness_and_colours() -> None:
    ref_img, img = picture(1), burn(burn(burn(picture(2))))
    ref, now = ColourStats.of(ref_img), ColourStats.of(img)
    out = ColourStats.of(match(img, now, ref, 1.0))
    assert out.lab_mean == pytest.approx(ref.lab_mean, abs=1.0)
    assert out.lab_std[1:] == pytest.approx(ref.lab_std[1:], rel=0.05)  # the colours' spread
    # Lightness matched at two anchors: the ground (5th percentile) and the mean take the
    # reference's, the spread scales by the slope between them.
    assert out.ground == pytest.approx(ref.ground, abs=1.5)
    slope = (ref.lab_mean[0] - ref.ground) / (now.lab_mean[0] - now.ground)
    assert out.lab_std[0] == pytest.approx(now.lab_std[0] * slope, rel=0.05)
    # Strength 0 changes nothing (up to 8-bit rounding through LAB).
    same = np.asarray(match(img, now, ref, 0.0), dtype=int)
    assert np.abs(same - np.asarray(img, dtype=int)).max() <= 1


def test_a_frame_within_the_band_is_returned_as_the_same_object() -> None:
    coh = ColourCoherence()
    first, second = picture(3), picture(3)
    assert coh.cohere(first, ("p", "b")) is first  # the first becomes the reference
    assert coh.cohere(second, ("p", "b")) is second  # no drift at all
    assert coh.last is not None and coh.last.strength == 0.0 and coh.corrected == 0


def test_a_drifted_frame_is_pulled_back_and_a_new_prompt_starts_a_new_reference() -> None:
    coh = ColourCoherence()
    ref = picture(4)
    coh.cohere(ref, ("p", "b"))
    burnt = ref
    for _ in range(12):
        burnt = burn(burnt)
    before = drift(ColourStats.of(burnt), ColourStats.of(ref))
    assert before > FULL_AT
    fixed = coh.cohere(burnt, ("p", "b"))
    assert fixed is not burnt and coh.corrected == 1
    assert coh.last is not None and coh.last.strength == 1.0
    assert drift(ColourStats.of(fixed), ColourStats.of(ref)) < DEAD_BAND
    # Another prompt (or backend): this frame is its reference, untouched.
    assert coh.cohere(burnt, ("q", "b")) is burnt
    assert coh.cohere(burnt, ("q", "other backend")) is burnt


# --- the closed loop: 1,000 frames of img2img on the drifting backend ----------------------------


async def img2img_frames(
    coherence: ColourCoherence | None, frames: int, *, soften: float = 0.0
) -> list[Image.Image]:
    """``frames`` frames of the img2img feedback loop on the drifting backend (64x64, a gentle
    denoise: most of each frame is fed back, as in the long runs where real models burn)."""
    engine = BuiltinEngine()
    await engine.start()
    backend = DriftingBackend(engine, soften=soften)
    cfg = GenerationConfig(mode="img2img", model="sd15", width=64, height=64, denoise=0.15)
    ctx = ModeContext(
        backend=backend,
        config=cfg,
        prompt=lambda: PROMPT,
        seeds=SeedSource(SeedPolicy.INCREMENT, 1, random.Random(0)),
        coherence=coherence,
    )
    mode = Img2ImgMode(ctx)
    out = []
    for _ in range(frames):
        (frame,) = await mode.next_frames()
        out.append(frame.image)
    await engine.close()
    return out


async def worst_drift(coherence: ColourCoherence | None, frames: int = 1000) -> tuple[float, float]:
    """The largest |saturation| and |brightness| drift from the first frame over ``frames`` frames."""
    ref, *rest = [measure(downscale(np.asarray(img))) for img in await img2img_frames(coherence, frames)]
    worst_s = max(abs(m.saturation / ref.saturation - 1) for m in rest)
    worst_b = max(abs(m.brightness / ref.brightness - 1) for m in rest)
    return worst_s, worst_b


async def test_with_coherence_1000_drifting_frames_stay_within_15_percent_and_without_they_leave() -> None:
    free_s, free_b = await worst_drift(None)
    held_s, held_b = await worst_drift(ColourCoherence())
    print(f"without coherence: saturation {free_s:+.1%} brightness {free_b:+.1%} (worst |drift|)")
    print(f"with coherence:    saturation {held_s:+.1%} brightness {held_b:+.1%}")
    assert max(free_s, free_b) > BAND
    assert held_s <= BAND and held_b <= BAND


# --- the detail floor ------------------------------------------------------------------------------


def sharp(image: Image.Image) -> float:
    return sharpness(downscale(np.asarray(image.convert("RGB"))))


def flame(size: tuple[int, int] = (128, 256), seed: int = 3) -> Image.Image:
    return Image.fromarray(BuiltinEngine().render(PROMPT, seed, *size))


def test_a_soft_frame_is_sharpened_up_to_the_floor_and_a_sharp_one_is_left_alone() -> None:
    ref = flame()
    soft = ref.filter(ImageFilter.GaussianBlur(2.5))
    soft.info["kept"] = "what the backend keeps with its picture"
    target = 0.6 * sharp(ref)
    assert sharp(soft) < 0.8 * target  # the blur took it well under the floor
    coh = ColourCoherence(detail_floor=0.6)
    assert coh.cohere(ref, "k") is ref  # the reference
    lifted = coh.cohere(soft, "k")
    assert lifted is not soft and coh.sharpened == 1 and coh.last is not None and coh.last.sharpened
    # Sharpened to the floor (a single trial predicts the strength), not far past it.
    assert 0.9 * target <= sharp(lifted) <= 1.4 * target
    assert lifted.info["kept"] == soft.info["kept"]
    # A frame above the floor, and any frame with the floor off, come back as the same object.
    crisp = ref.filter(ImageFilter.GaussianBlur(0.3))
    assert sharp(crisp) > target and coh.cohere(crisp, "k") is crisp
    off = ColourCoherence(max_strength=0.0, detail_floor=0.0)  # (colour matching off too)
    off.cohere(ref, "k")
    assert off.cohere(soft, "k") is soft and off.sharpened == 0


def test_in_betweens_get_the_floor_of_their_prompts_reference_only() -> None:
    ref = flame()
    soft = ref.filter(ImageFilter.GaussianBlur(2.5))
    coh = ColourCoherence()
    assert coh.hold_detail(soft, "k") is soft  # no reference yet: nothing to hold it to
    coh.cohere(ref, "k")
    assert sharp(coh.hold_detail(soft, "k")) >= 0.9 * 0.6 * sharp(ref)
    assert coh.hold_detail(soft, "another prompt") is soft


def test_a_flat_picture_is_not_sharpened_into_noise() -> None:
    grey = Image.new("RGB", (64, 64), (90, 90, 90))
    assert lift_detail(grey, 0.0, 0.05) is grey
    with pytest.raises(ValueError, match=r"detail floor in 0\.\.1"):
        ColourCoherence(detail_floor=1.5)


async def test_a_loop_that_blurs_stays_above_half_the_first_frames_sharpness_with_the_floor() -> None:
    # The drifting backend blurs every pass too (radius 0.6); colour coherence is on in both runs.
    def lowest(frames: list[Image.Image]) -> float:
        first, *rest = [sharp(f) for f in frames]
        return min(rest) / first

    free = lowest(await img2img_frames(ColourCoherence(detail_floor=0.0), 300, soften=0.6))
    held = lowest(await img2img_frames(ColourCoherence(detail_floor=0.6), 300, soften=0.6))
    print(f"lowest sharpness / first frame's over 300 blurring passes: without {free:.2f}, with {held:.2f}")
    assert free < 0.5
    assert held >= 0.5


# --- through the real controller and modes --------------------------------------------------------


async def test_the_corrected_frame_is_both_the_one_fed_back_and_the_one_published(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = fast_config(
        tmp_path,
        generation={
            "mode": "img2img",
            "width": 64,
            "height": 64,
            "denoise": 0.15,
            "history_size": 500,
            "colour_coherence": True,
        },
        prompts={"list": [PROMPT], "rotate_every_frames": 0},
    )
    engine = BuiltinEngine()
    await engine.start()
    backend = DriftingBackend(engine)
    controller = build_controller(
        cfg,
        backend,  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(0),  # the same seeds every run: a flame-dependent outcome is not a flake
        max_frames=60,
        fsync=False,
    )
    await controller.run()
    await engine.close()

    published = {
        int(p.stem.split("_")[1]): np.asarray(Image.open(p).convert("RGB"))
        for p in sorted((cfg.output_dir / "frames").glob("frame_*.png"))
    }
    assert sorted(published) == list(range(1, 61))
    # Frame 1 came from txt2img; frame k (k >= 2) is what img2img call k-2 returned, after
    # coherence; img2img call k-1 grew from it.
    corrected = 0
    for k in range(2, 61):
        shown = published[k]
        assert np.array_equal(np.asarray(backend.sources[k - 1]), shown), f"frame {k} was not fed back"
        made = np.asarray(backend.made[k - 2])
        if not np.array_equal(made, shown):
            corrected += 1
    assert corrected > 10, "coherence never corrected the drifting backend's frames"
    # And what was shown stayed near the first frame's colours: the last ten frames on average
    # (one frame's HSV saturation swings with how much dark ground it shows).
    ref = measure(downscale(published[1]))
    last = [measure(downscale(published[k])) for k in range(51, 61)]
    assert abs(np.mean([m.saturation for m in last]) / ref.saturation - 1) <= BAND
    assert abs(np.mean([m.brightness for m in last]) / ref.brightness - 1) <= BAND


async def test_hybrid_takes_a_corrected_keyframes_latent_from_the_corrected_picture() -> None:
    engine = BuiltinEngine()
    await engine.start()
    backend = DriftingBackend(engine)
    cfg = GenerationConfig(
        mode="hybrid", model="sd15", width=64, height=64, denoise=0.15, keyframe_interval=3
    )
    coherence = ColourCoherence()
    ctx = ModeContext(
        backend=backend,
        config=cfg,
        prompt=lambda: PROMPT,
        seeds=SeedSource(SeedPolicy.INCREMENT, 1, random.Random(0)),
        coherence=coherence,
    )
    mode = HybridMode(ctx)
    checked = 0
    await mode.next_frames()  # the first keyframe: txt2img, the reference
    for i in range(40):
        frames = await mode.next_frames()
        key = frames[-1]
        assert key.kind == "keyframe" and key.latent is not None  # slerped into, so it has one
        # What the backend made for this keyframe: its i-th img2img (not the newest: the keyframe
        # after this one is asked for ahead and may have come back already).
        made = backend.made[i]
        if not np.array_equal(np.asarray(made), np.asarray(key.image)):
            # Corrected: its latent is the shown picture's, not the drifted one the backend made.
            assert np.allclose(key.latent, await engine.encode([key.image]), atol=1e-5)
            assert not np.allclose(key.latent, await engine.encode([made]), atol=1e-3)
            checked += 1
    await engine.close()
    assert checked > 5 and coherence.corrected == checked, (checked, coherence.corrected)
