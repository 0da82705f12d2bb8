"""spherical_lerp's magnitudes: every path (parallel, general, opposite, a zero latent) moves the
norm linearly from one keyframe's to the other's, and the in-between t values are evenly spaced.

A latent's norm is its "energy": a frame whose norm sags or swells mid-way decodes washed out or
burnt. test_slerp.py checks the norm stays between the endpoints'; these pin it to the straight
line the seed design asks for, with keyframes of different norms so a swapped or inverted
coefficient cannot hide behind a ratio of one.
"""

from __future__ import annotations

import numpy as np
import pytest

from dream_window.values.slerp import inbetween_ts, spherical_lerp
from tests.values.latents import at_angle

torch = pytest.importorskip("torch")

TS = np.linspace(0.0, 1.0, 9)


def _at_angle(angle: float) -> tuple[np.ndarray, np.ndarray]:
    return at_angle(angle, size=1024, seed=21)


@pytest.mark.parametrize(
    "angle",
    [
        pytest.param(0.0, id="parallel"),
        pytest.param(1e-9, id="nearly-parallel"),
        pytest.param(1.0, id="general"),
        pytest.param(np.pi - 1e-9, id="nearly-opposite"),
        pytest.param(np.pi, id="opposite"),
    ],
)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_the_norm_moves_linearly_from_one_keyframe_to_the_other(angle: float, kind: str) -> None:
    a, b = _at_angle(angle)
    if kind == "torch":
        out = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), TS).numpy()
    else:
        out = spherical_lerp(a, b, TS)
    norms = np.linalg.norm(out, axis=1)
    np.testing.assert_allclose(norms, (1 - TS) * 3.0 + TS * 5.0, rtol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 1.0, np.pi])
def test_frames_turn_from_a_towards_b_by_t_of_the_angle(angle: float) -> None:
    # The direction of frame t is t of the way round the great circle (parallel: no turn at all).
    a, b = _at_angle(angle)
    out = spherical_lerp(a, b, TS)
    ua = a / np.linalg.norm(a)
    turned = np.arccos(np.clip(out @ ua / np.linalg.norm(out, axis=1), -1.0, 1.0))
    np.testing.assert_allclose(turned, TS * angle, atol=1e-6)


def test_a_zero_keyframe_fades_the_other_in_or_out_along_the_line() -> None:
    a = np.arange(1.0, 9.0)
    zero = np.zeros(8)
    np.testing.assert_allclose(spherical_lerp(a, zero, TS), (1 - TS)[:, None] * a[None])
    np.testing.assert_allclose(spherical_lerp(zero, a, TS), TS[:, None] * a[None])


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, [0.5]), (3, [0.25, 0.5, 0.75]), (4, [0.2, 0.4, 0.6, 0.8])],
)
def test_inbetween_ts_are_evenly_spaced_strictly_between_the_keyframes(
    count: int, expected: list[float]
) -> None:
    ts = inbetween_ts(count)
    assert ts.dtype == np.float64
    np.testing.assert_allclose(ts, expected, rtol=0, atol=1e-15)
    assert inbetween_ts(0).shape == (0,)
