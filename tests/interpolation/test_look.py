"""In-betweens matched to their keyframes' look (interpolation/look.py): a soft decode is lifted
toward the keyframes' sharpness and contrast; an exact one is left alone."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from dream_window.backends.builtin import BuiltinEngine
from dream_window.interpolation.look import match_look
from dream_window.values.quality import downscale, luma, sharpness

PROMPT = "ethereal nebula swirling cosmic colours"


def keyframes() -> tuple[Image.Image, Image.Image]:
    engine = BuiltinEngine(offload=False)
    return (
        Image.fromarray(engine.render(PROMPT, 1, 128, 256)),
        Image.fromarray(engine.render(PROMPT, 2, 128, 256)),
    )


def sharp(img: Image.Image) -> float:
    return sharpness(downscale(np.asarray(img)))


def test_a_soft_inbetween_is_sharpened_toward_its_keyframes() -> None:
    a, b = keyframes()
    soft = a.filter(ImageFilter.GaussianBlur(2))  # what a lossy decoder gives at t = 0
    (matched,) = match_look([soft], [0.0], a, b)
    assert sharp(soft) < 0.7 * sharp(a)
    assert sharp(matched) > sharp(soft) + 0.5 * (sharp(a) - sharp(soft))  # more than half the gap closed
    assert sharp(matched) < 1.3 * sharp(a)  # and not past it


def test_a_flat_inbetween_gets_its_keyframes_contrast_back() -> None:
    a, _ = keyframes()
    arr = np.asarray(a, dtype=np.float32)
    flat = Image.fromarray(((arr - arr.mean()) * 0.6 + arr.mean()).astype(np.uint8))
    (matched,) = match_look([flat], [0.0], a, a)
    want = float(luma(downscale(np.asarray(a))).std())
    got = float(luma(downscale(np.asarray(matched))).std())
    assert abs(got - want) < 0.15 * want


def test_an_inbetween_that_already_looks_right_is_left_as_it_is() -> None:
    a, b = keyframes()
    same = match_look([a, b], [0.0, 1.0], a, b)
    assert same[0] is a and same[1] is b
