"""spherical_lerp: properties over random latents (hypothesis), numpy and torch, and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dream_window.values.slerp import spherical_lerp
from tests.values.latents import at_angle

torch = pytest.importorskip("torch")

SHAPE = (2, 3, 4)
_finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)
latents = arrays(np.float32, SHAPE, elements=_finite).filter(lambda a: float(np.linalg.norm(a)) > 1e-3)
ts = st.floats(0.0, 1.0, allow_nan=False)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64)))


@fast
@given(latents, latents)
def test_endpoints_are_exact(a: np.ndarray, b: np.ndarray) -> None:
    out = spherical_lerp(a, b, np.array([0.0, 1.0]))
    assert np.array_equal(out[0], a) and np.array_equal(out[1], b)
    assert np.array_equal(spherical_lerp(a, b, 0.0), a)
    assert np.array_equal(spherical_lerp(a, b, 1.0), b)


def _at_angle(angle: float) -> tuple[np.ndarray, np.ndarray]:
    return at_angle(angle, size=4096, seed=7)


# Each of slerp's paths: nearly parallel (normalised lerp), the general formula near both ends
# (float64 weights), nearly and exactly opposite (the fixed detour, which never uses b itself).
PATH_ANGLES = [
    pytest.param(0.0, id="parallel"),
    pytest.param(1e-9, id="nearly-parallel"),
    pytest.param(1e-3, id="small-angle"),
    pytest.param(np.pi - 1e-3, id="wide-angle"),
    pytest.param(np.pi - 1e-9, id="nearly-opposite"),
    pytest.param(np.pi, id="opposite"),
]


@pytest.mark.parametrize("angle", PATH_ANGLES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_endpoints_are_exact_on_every_path(angle: float, dtype: str) -> None:
    a64, b64 = _at_angle(angle)
    for a, b in [(a64.astype(dtype), b64.astype(dtype)), (b64.astype(dtype), a64.astype(dtype))]:
        out = spherical_lerp(a, b, np.array([0.0, 0.5, 1.0]))
        assert np.array_equal(out[0], a) and np.array_equal(out[2], b)
        assert np.array_equal(spherical_lerp(a, b, 0.0), a) and np.array_equal(spherical_lerp(a, b, 1.0), b)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out_t = spherical_lerp(ta, tb, np.array([0.0, 0.5, 1.0]))
        assert torch.equal(out_t[0], ta) and torch.equal(out_t[2], tb)


@fast
@given(latents, latents, ts)
def test_norm_stays_between_the_endpoint_norms(a: np.ndarray, b: np.ndarray, t: float) -> None:
    n = _norm(spherical_lerp(a, b, t))
    lo, hi = sorted((_norm(a), _norm(b)))
    assert lo * (1 - 1e-5) <= n <= hi * (1 + 1e-5)
    assert np.isfinite(spherical_lerp(a, b, t)).all()


@fast
@given(latents, latents, ts)
def test_symmetry(a: np.ndarray, b: np.ndarray, t: float) -> None:
    ab = spherical_lerp(a, b, t)
    ba = spherical_lerp(b, a, 1.0 - t)
    scale = max(_norm(a), _norm(b))
    assert np.abs(ab - ba).max() <= 1e-5 * scale


@fast
@given(latents, latents, st.lists(ts, min_size=1, max_size=12))
def test_vector_t_equals_a_loop_of_scalar_t(a: np.ndarray, b: np.ndarray, tl: list[float]) -> None:
    out = spherical_lerp(a, b, np.array(tl))
    assert out.shape == (len(tl), *SHAPE) and out.dtype == np.float32
    for i, t in enumerate(tl):
        np.testing.assert_allclose(
            out[i], spherical_lerp(a, b, t), rtol=0, atol=1e-6 * max(_norm(a), _norm(b))
        )


@fast
@given(latents, latents, ts)
def test_torch_matches_numpy_and_keeps_dtype(a: np.ndarray, b: np.ndarray, t: float) -> None:
    out_t = spherical_lerp(torch.from_numpy(a), torch.from_numpy(b), t)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(
        out_t.numpy(), spherical_lerp(a, b, t), rtol=0, atol=1e-5 * max(_norm(a), _norm(b))
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_dtype_is_preserved(dtype: type) -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((4, 8, 8)).astype(dtype) for _ in range(2))
    assert spherical_lerp(a, b, np.linspace(0, 1, 5)).dtype == dtype


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_torch_dtype_is_preserved(dtype: str) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, 8, 8, generator=g).to(getattr(torch, dtype)) for _ in range(2))
    out = spherical_lerp(a, b, torch.tensor([0.25, 0.5]))
    assert out.dtype == getattr(torch, dtype) and out.shape == (2, 4, 8, 8)


def test_a_slerp_is_on_the_great_circle_not_the_chord() -> None:
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 1.0], np.float32)
    mid = spherical_lerp(a, b, 0.5)
    np.testing.assert_allclose(mid, [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)  # a lerp would give [0.5, 0.5]


def test_float32_self_dot_above_one_gives_no_nan() -> None:
    # Identical float32 latents: the seed's acos(dot) sees dot = 1 + ulp and returns NaN.
    a = np.random.default_rng(1).standard_normal((16, 64, 32)).astype(np.float32)
    out = spherical_lerp(a, a.copy(), np.linspace(0, 1, 7))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, np.broadcast_to(a, out.shape), atol=1e-5)


@pytest.mark.parametrize("eps", [0.0, 1e-9, 1e-6, 1e-3])
def test_nearly_parallel_latents_stay_smooth(eps: float) -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal(4096)
    b = a + eps * rng.standard_normal(4096)
    out = spherical_lerp(a, b, np.linspace(0, 1, 11))
    lerp = np.linspace(0, 1, 11)[:, None] * (b - a)[None] + a[None]
    assert np.isfinite(out).all()
    assert np.abs(out - lerp).max() < 1e-6 + eps  # as close to the chord as the tiny arc allows


@pytest.mark.parametrize("eps", [0.0, 1e-9, 1e-5, 1e-3])
def test_opposite_and_nearly_opposite_latents_keep_their_norm(eps: float) -> None:
    # The common `abs(dot) > 0.9995 → lerp` guard collapses these to ~zero norm mid-way (a grey frame).
    rng = np.random.default_rng(3)
    a = rng.standard_normal(4096).astype(np.float32)
    b = (-a + eps * rng.standard_normal(4096)).astype(np.float32)
    out = spherical_lerp(a, b, np.linspace(0, 1, 21))
    assert np.isfinite(out).all()
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    lo, hi = sorted((_norm(a), _norm(b)))
    assert (norms >= lo * (1 - 1e-4)).all() and (norms <= hi * (1 + 1e-4)).all()
    # Consecutive frames move by similar small steps: no jump anywhere along the path.
    steps = np.linalg.norm(np.diff(out.astype(np.float64), axis=0), axis=1)
    assert steps.max() < 1.5 * steps.min() + 1e-6
    np.testing.assert_allclose(out[-1], b)  # and it ends exactly at b
    back = spherical_lerp(b, a, np.linspace(1, 0, 21))
    np.testing.assert_allclose(back, out, atol=1e-4 * _norm(a))  # the same path from either end


def test_zero_latent_falls_back_to_lerp() -> None:
    a = np.zeros(8, np.float32)
    b = np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(spherical_lerp(a, b, 0.25), 0.25 * b)


@pytest.mark.parametrize(
    ("a", "b", "t", "message"),
    [
        (np.ones(3), np.ones(4), 0.5, "same shape"),
        (np.ones(3), np.ones(3), 1.5, r"t must lie in \[0, 1\]"),
        (np.ones(3), np.ones(3), float("nan"), "t must be finite"),
        (np.ones(3), np.ones(3), np.ones((2, 2)) * 0.5, "scalar or 1-D"),
        (
            np.array([1.0, np.nan]),
            np.ones(2),
            0.5,
            r"^spherical_lerp: latents must be finite \(found NaN or infinity\)$",
        ),
        (
            np.ones((0, 3)),
            np.ones((0, 3)),
            0.5,
            r"^spherical_lerp: latents must not be empty, got shape \[0, 3\]$",
        ),
    ],
)
def test_bad_input_gives_a_clear_error(a: np.ndarray, b: np.ndarray, t: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spherical_lerp(a, b, t)


@pytest.mark.parametrize("order", ["numpy-torch", "torch-numpy"])
def test_mixing_numpy_and_torch_is_refused(order: str) -> None:
    pair = (np.ones(3), torch.ones(3)) if order == "numpy-torch" else (torch.ones(3), np.ones(3))
    with pytest.raises(
        TypeError, match=r"^spherical_lerp: both latents must be torch tensors, or both numpy arrays$"
    ):
        spherical_lerp(*pair, 0.5)


def test_one_element_latents_are_not_empty() -> None:
    np.testing.assert_allclose(spherical_lerp(np.array([2.0]), np.array([4.0]), 0.5), [3.0])
