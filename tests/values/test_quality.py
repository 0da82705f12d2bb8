"""The metric functions on pictures whose values are known by construction, and sRGB <-> LAB."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dream_window.dream.lab import lab_to_srgb, srgb_to_lab
from dream_window.values.quality import (
    CLIP_BRIGHT,
    CLIP_DARK,
    change,
    downscale,
    histogram_distance,
    measure,
    percentile,
    pop_ratios,
    relative,
    saturation,
    sharpness,
)


def solid(rgb: tuple[int, int, int], h: int = 16, w: int = 24) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def test_a_grey_picture_has_no_saturation_no_contrast_and_no_edges() -> None:
    m = measure(solid((128, 128, 128)))
    assert m.saturation == 0.0
    assert m.contrast == pytest.approx(0.0, abs=1e-7)
    assert m.sharpness == 0.0
    assert m.brightness == pytest.approx(128 / 255, abs=1e-6)
    assert m.clipped == 0.0


def test_pure_colours_are_fully_saturated_and_luma_uses_rec709_weights() -> None:
    red = measure(solid((255, 0, 0)))
    assert red.saturation == pytest.approx(1.0)
    assert red.brightness == pytest.approx(0.2126, abs=1e-6)
    assert measure(solid((0, 255, 0))).brightness == pytest.approx(0.7152, abs=1e-6)
    # Half-saturated: max 200, min 100.
    assert saturation(solid((200, 100, 150))) == pytest.approx(0.5)


def test_black_counts_as_clipped_dark_and_white_as_clipped_bright() -> None:
    img = solid((128, 128, 128), h=10, w=10)
    img[:3] = 0  # 30 % black
    img[3:4] = 255  # 10 % white
    m = measure(img)
    assert m.dark == pytest.approx(0.3)
    assert m.bright == pytest.approx(0.1)
    assert m.clipped == pytest.approx(0.4)
    # Just inside the thresholds is not clipped.
    inside = solid((round(CLIP_DARK * 255) + 2,) * 3), solid((round(CLIP_BRIGHT * 255) - 2,) * 3)
    assert [measure(x).clipped for x in inside] == [0.0, 0.0]


def test_a_black_white_half_split_has_the_contrast_of_a_fair_coin() -> None:
    img = solid((0, 0, 0), h=8, w=8)
    img[:, 4:] = 255
    assert measure(img).contrast == pytest.approx(0.5)


def test_a_vertical_step_edge_has_a_gradient_of_one_over_the_width() -> None:
    w = 21
    img = np.zeros((9, w, 3), dtype=np.uint8)
    img[:, 10:] = 255  # one step from 0 to 1 between columns 9 and 10
    assert sharpness(img) == pytest.approx(1 / (w - 1))
    # Half the step, half the gradient; turned on its side (21 rows), one over the height.
    assert sharpness(img // 2) == pytest.approx(127 / 255 / (w - 1), rel=1e-5)
    assert sharpness(np.ascontiguousarray(img.transpose(1, 0, 2))) == pytest.approx(1 / (w - 1))


def test_change_is_zero_for_a_frame_against_itself_and_one_for_black_against_white() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    assert change(img, img) == 0.0
    assert change(solid((0, 0, 0)), solid((255, 255, 255))) == 1.0
    assert change(solid((0, 0, 0)), solid((51, 51, 51))) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="differ in size"):
        change(img, img[:6])


def test_histogram_distance_is_zero_for_the_same_colours_and_one_for_disjoint_ones() -> None:
    a = solid((10, 200, 30))
    shuffled = np.random.default_rng(1).permutation(a.reshape(-1, 3)).reshape(a.shape)
    assert histogram_distance(a, shuffled) == 0.0
    assert histogram_distance(solid((0, 0, 0)), solid((255, 255, 255))) == 1.0
    half = solid((0, 0, 0))
    half[:8] = 255
    assert histogram_distance(solid((0, 0, 0)), half) == pytest.approx(0.5)


def test_downscale_is_a_box_mean_to_at_most_the_long_side() -> None:
    img = np.zeros((512, 256, 3), dtype=np.uint8)
    img[::2] = 255  # alternate rows: every 2x2 block averages to 0.5
    small = downscale(img, max_side=256)
    assert small.shape == (256, 128, 3)
    assert np.allclose(small, 0.5)
    assert downscale(img[:100, :100], max_side=256).shape == (100, 100, 3)  # small ones stay
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        downscale(np.zeros((4, 4)))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    max_side=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_downscale_of_uint8_frames_is_the_mean_of_each_block(
    h: int, w: int, max_side: int, seed: int
) -> None:
    # The integer fast path against the definition: the float mean of every k x k block, edge rows
    # and columns that do not fill one dropped. Blocks up to 90 x 90 reach the 32-bit accumulator.
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    k = max(1, -(-max(h, w) // max_side))
    hh, ww = h // k, w // k
    want = img[: hh * k, : ww * k].astype(np.float64).reshape(hh, k, ww, k, 3).mean(axis=(1, 3)) / 255.0
    got = downscale(img, max_side=max_side)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.allclose(got, want, atol=1e-6)
    assert np.allclose(downscale(img.astype(np.float32) / 255.0, max_side=max_side), want, atol=1e-6)


def test_pop_ratio_is_a_keyframe_over_the_mean_of_its_neighbours() -> None:
    sharp = [0.014, 0.040, 0.015, 0.02, 0.02, 0.02]
    keys = [False, True, False, False, True, False]
    assert pop_ratios(sharp, keys) == pytest.approx([0.040 / 0.0145, 1.0])
    assert pop_ratios([0.1, 0.2], [True, True]) == []  # no frame on both sides


def test_relative_drift_holds_the_reference_at_its_floor() -> None:
    assert relative(1.1, 1.0, 0.05) == pytest.approx(0.1)
    assert relative(0.03, 0.01, 0.05) == pytest.approx(0.4)  # not 2.0
    assert percentile([], 95) is None
    assert percentile([0.0, 1.0], 50) == 0.5


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=120),
    q=st.floats(0, 100),
)
def test_percentile_is_numpys_linear_percentile(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        # Reference values (CIE formulas, sRGB D65), e.g. from Bruce Lindbloom's calculator.
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
        ((119 / 255, 119 / 255, 119 / 255), (50.0, 0.0, 0.0)),
    ],
)
def test_srgb_to_lab_matches_known_values(
    rgb: tuple[float, float, float], lab: tuple[float, float, float]
) -> None:
    assert srgb_to_lab(np.array(rgb)) == pytest.approx(np.array(lab), abs=0.15)


def test_lab_round_trips_every_8_bit_colour_level() -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (4096, 3)) / 255.0
    assert np.abs(lab_to_srgb(srgb_to_lab(rgb)) - rgb).max() < 1e-6


def test_lab_of_bytes_and_of_float32_agree_with_float64() -> None:
    # Frames are converted from uint8 (a table of the transfer curve) and in float32: both must be
    # the float64 conversion to well under a level of 8-bit colour, and come back to the same bytes.
    rgb = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    exact = srgb_to_lab(rgb / 255.0)
    assert exact.dtype == np.float64
    for frame in (rgb, (rgb / 255.0).astype(np.float32)):
        lab = srgb_to_lab(frame)
        assert lab.dtype == np.float32
        assert np.abs(lab - exact).max() < 1e-3
        back = lab_to_srgb(lab)
        assert back.dtype == np.float32
        assert np.array_equal(np.rint(back * 255.0).astype(np.uint8), rgb)
