"""spherical_lerp on torch tensors against the numpy path, dtype by dtype, and the detour's corners.

test_slerp.py checks the properties; this file checks that the torch path gives the numpy path's
frames in the dtype the caller expects, on every path the angle can take, including inputs whose
float16 arithmetic would overflow, and that the opposite-latents detour stays well defined where
no orthogonal direction is easy (or possible) to find.
"""

from __future__ import annotations

import numpy as np
import pytest

from dream_window.values.slerp import _orthogonal, spherical_lerp
from tests.values.latents import at_angle

torch = pytest.importorskip("torch")

TS = np.array([0.0, 0.125, 0.5, 0.875, 1.0])


def _at_angle(angle: float) -> tuple[np.ndarray, np.ndarray]:
    return at_angle(angle, size=2048, seed=11)


ANGLES = [
    pytest.param(0.0, id="parallel"),
    pytest.param(0.7, id="general"),
    pytest.param(np.pi - 1e-9, id="nearly-opposite"),
    pytest.param(np.pi, id="opposite"),
]


@pytest.mark.parametrize("angle", ANGLES)
def test_float64_tensors_give_the_numpy_frames_to_float64_precision(angle: float) -> None:
    # A float64 latent is combined in float64: a float32 combine would be off by ~1e-7 relative.
    a, b = _at_angle(angle)
    want = spherical_lerp(a, b, TS)
    got = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), TS)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("angle", ANGLES)
def test_float32_tensors_give_the_numpy_frames(angle: float) -> None:
    a, b = (x.astype(np.float32) for x in _at_angle(angle))
    want = spherical_lerp(a, b, TS)
    got = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), TS)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=2e-6)
    # Every frame on the opposite path keeps a norm between the endpoints' (not a collapse to 0).
    norms = np.linalg.norm(got.numpy().astype(np.float64), axis=1)
    assert (norms > 3.0 * (1 - 1e-4)).all() and (norms < 5.0 * (1 + 1e-4)).all()


@pytest.mark.parametrize(
    ("dtype_a", "dtype_b", "expected"),
    [
        ("int64", "int64", "float32"),  # whole numbers in, frames out as float32, like numpy's path
        ("int32", "int64", "float32"),
        ("float16", "float16", "float16"),
        ("float16", "float32", "float32"),  # mixed: the wider of the two, as numpy promotes
        ("float32", "float16", "float32"),
        ("float16", "float64", "float64"),
        ("float64", "float32", "float64"),
    ],
)
def test_the_result_dtype_follows_numpys_rules(dtype_a: str, dtype_b: str, expected: str) -> None:
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(256) * 8).astype(dtype_a)
    b = (rng.standard_normal(256) * 8).astype(dtype_b)
    want = spherical_lerp(a, b, TS)
    got = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), TS)
    assert want.dtype == np.dtype(expected)
    assert got.dtype == getattr(torch, expected)
    tol = 2e-3 * 8 if expected == "float16" else 1e-5 * 8
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.astype(np.float64), atol=tol)


def test_float16_latents_whose_squares_overflow_float16_still_slerp() -> None:
    # A 4x64x64 float16 latent of values around 4 has a squared norm near 260,000: past float16's
    # 65,504. The angle is measured in float64, so this is an ordinary slerp, not "not finite".
    rng = np.random.default_rng(6)
    a64 = rng.standard_normal((4, 64, 64)) * 4
    b64 = rng.standard_normal((4, 64, 64)) * 4
    a, b = a64.astype(np.float16), b64.astype(np.float16)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(a * a, dtype=np.float16))  # (the overflow is real)
    reference = spherical_lerp(a.astype(np.float64), b.astype(np.float64), TS)
    for out in (spherical_lerp(a, b, TS), spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), TS)):
        values = np.asarray(out, dtype=np.float64)
        assert np.isfinite(values).all()
        np.testing.assert_allclose(values, reference, atol=0.02)


def test_float16_frames_are_combined_in_float32_then_rounded_once() -> None:
    # Combining in float16 rounds every product and sum; float32 rounds once at the end, as the
    # numpy path does. The two paths then agree to the last float16 bit almost everywhere.
    rng = np.random.default_rng(8)
    a = rng.standard_normal(8192).astype(np.float16)
    b = rng.standard_normal(8192).astype(np.float16)
    ts = np.linspace(0.05, 0.95, 7)
    want = spherical_lerp(a, b, ts)
    got = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), ts).numpy()
    ulps = np.abs(got.view(np.int16).astype(np.int32) - want.view(np.int16).astype(np.int32))
    assert ulps.max() <= 1
    assert (ulps == 0).mean() > 0.99


def test_one_dimensional_opposite_latents_run_along_the_line() -> None:
    # In one dimension there is no direction to detour through: the path runs along the line,
    # through zero, never overshooting either end.
    for a, b in ((np.array([2.0]), np.array([-3.0])), (torch.tensor([2.0]), torch.tensor([-3.0]))):
        out = np.asarray(spherical_lerp(a, b, np.linspace(0, 1, 9)), dtype=np.float64)[:, 0]
        assert np.isfinite(out).all()
        assert out[0] == 2.0 and out[-1] == -3.0
        assert (np.diff(out) < 0).all()
        assert np.abs(out).max() <= 3.0


def _probe(n: int) -> np.ndarray:
    # The fixed direction _orthogonal tries first (see its code): here to reach its fallback.
    return np.cos(np.arange(n, dtype=np.float64) * 0.7071) + 0.5


@pytest.mark.parametrize(
    "u",
    [
        pytest.param(np.eye(6)[2], id="an-axis"),
        pytest.param(np.random.default_rng(9).standard_normal(6), id="random"),
        pytest.param(_probe(6), id="parallel-to-the-probe"),
    ],
)
def test_the_detour_direction_is_a_unit_vector_orthogonal_to_u_and_the_same_for_minus_u(
    u: np.ndarray,
) -> None:
    u = u / np.linalg.norm(u)
    v = _orthogonal(u)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-12
    assert abs(float(v @ u)) < 1e-12
    np.testing.assert_array_equal(_orthogonal(-u), v)


def test_the_fallback_direction_is_the_axis_u_leans_on_least() -> None:
    # u parallel to the probe: the detour is built from the axis where u is smallest, made
    # orthogonal to u; for this u that axis is unambiguous.
    u = _probe(5)
    u /= np.linalg.norm(u)
    axis = int(np.argmin(np.abs(u)))
    v = _orthogonal(u)
    e = np.zeros(5)
    e[axis] = 1.0
    expected = e - (e @ u) * u
    np.testing.assert_allclose(v, expected / np.linalg.norm(expected), atol=1e-12)


def test_no_orthogonal_direction_in_one_dimension() -> None:
    np.testing.assert_array_equal(_orthogonal(np.array([1.0])), np.zeros(1))
    np.testing.assert_array_equal(_orthogonal(np.array([-1.0])), np.zeros(1))
