"""Spherical linear interpolation between two latents, for one ``t`` or many at once.

Differences from the seed's version, and why:

* **Vectorised over t.** A vector of ``t`` values gives every frame in one call, shaped
  ``[len(t), *a.shape]``: the angle is measured once, each frame is ``c_a[t]·a + c_b[t]·b`` with
  two scalar coefficients, so all frames come from one broadcast multiply-add in the inputs' own
  library (numpy or torch, on the inputs' device). No Python loop per in-between.
* **A precise angle.** The angle comes from ``2·atan2(|û−v̂|, |û+v̂|)`` on float64 copies. The
  seed's ``acos(dot)`` is NaN when a float32 self-dot exceeds 1 (it does, by an ulp) and, even
  clamped, loses half the digits near 0 and π: ``acos(1−ε)`` is only good to √ε.
* **Lerp only when the angle is really ~0.** The popular ``abs(dot) > 0.9995`` guard also fires
  for nearly *opposite* latents, where a lerp passes through ~zero norm and decodes to a grey
  blank frame. Nearly opposite latents follow the great circle the formula defines (computed in
  float64, where the ``1/sin ω`` weights do not cancel catastrophically); exactly opposite ones
  (no great circle is preferred) rotate through a fixed orthogonal direction, chosen identically
  for ``û`` and ``−û`` so the path is the same whichever end it starts from.
* **Magnitude as the seed intends** ("scale back to original magnitude"): the direction moves on
  the unit sphere and the norm is interpolated linearly between the endpoints' norms, so every
  frame's norm lies between them. (The seed's code slerped the raw vectors, which for unequal
  norms drifts off both its stated intent and the endpoints' scale.)
* **Exact endpoints.** ``t == 0`` returns ``a`` and ``t == 1`` returns ``b`` bit for bit.

A latent is treated as one vector (batch dimension included), as in the seed.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar, overload

import numpy as np

T = TypeVar("T")

_PARALLEL_EPS = 1e-7  # angle below this (radians): directions coincide, normalised lerp is exact enough
_OPPOSITE_EPS = 1e-7  # π − angle below this: no preferred great circle; take the fixed detour
# Below this sin(ω) the two 1/sin(ω) weights are large and opposite in sign: float32 would cancel.
_FLOAT64_COMBINE_BELOW = 1e-2


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


@overload
def spherical_lerp(
    latent_a: np.ndarray, latent_b: np.ndarray, t: float | np.ndarray | list[float]
) -> np.ndarray: ...
@overload
def spherical_lerp(latent_a: T, latent_b: T, t: Any) -> T: ...


def spherical_lerp(latent_a: Any, latent_b: Any, t: Any) -> Any:
    """Slerp from ``latent_a`` (t=0) to ``latent_b`` (t=1).

    ``latent_a`` and ``latent_b`` are numpy arrays or torch tensors of the same shape; the result
    has their type, dtype and device. A scalar ``t`` gives one latent shaped like the inputs; a
    1-D ``t`` gives ``[len(t), *shape]``. ``t`` must lie in [0, 1]; latents must be finite.
    """
    ts, scalar = _check_t(t)
    if _is_torch(latent_a) or _is_torch(latent_b):
        if not (_is_torch(latent_a) and _is_torch(latent_b)):
            raise TypeError("spherical_lerp: both latents must be torch tensors, or both numpy arrays")
        return _slerp_torch(latent_a, latent_b, ts, scalar)
    a = np.asarray(latent_a)
    b = np.asarray(latent_b)
    _check_shapes(a.shape, b.shape)
    dtype = np.result_type(a.dtype, b.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    plan = _plan(a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64), ts)
    # float16 arithmetic is slow and imprecise on CPU: combine in float32 at least.
    work = np.float64 if plan.needs_float64 else np.promote_types(dtype, np.float32)
    fa = a.reshape(-1).astype(work, copy=False)
    fb = b.reshape(-1).astype(work, copy=False)
    if plan.detour is not None:
        out = plan.ca[:, None] * fa[None] + plan.detour_coef[:, None] * plan.detour[None]
    else:
        out = plan.ca.astype(work)[:, None] * fa[None] + plan.cb.astype(work)[:, None] * fb[None]
    out = out.astype(dtype, copy=False)
    out[plan.at0] = a.reshape(-1).astype(dtype, copy=False)
    out[plan.at1] = b.reshape(-1).astype(dtype, copy=False)
    return out[0].reshape(a.shape) if scalar else out.reshape((len(ts), *a.shape))


def _check_t(t: Any) -> tuple[np.ndarray, bool]:
    if _is_torch(t):
        t = t.detach().cpu().numpy()
    t_arr = np.asarray(t, dtype=np.float64)
    if t_arr.ndim > 1:
        raise ValueError(f"spherical_lerp: t must be a scalar or 1-D, got shape {list(t_arr.shape)}")
    if not np.all(np.isfinite(t_arr)):
        raise ValueError("spherical_lerp: t must be finite")
    if t_arr.size and (t_arr.min() < 0.0 or t_arr.max() > 1.0):
        raise ValueError(
            f"spherical_lerp: t must lie in [0, 1], got values from {t_arr.min():g} to {t_arr.max():g}"
        )
    return t_arr.reshape(-1), t_arr.ndim == 0


def _check_shapes(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    if tuple(sa) != tuple(sb):
        raise ValueError(f"spherical_lerp: latents must have the same shape, got {list(sa)} and {list(sb)}")
    if math.prod(sa) == 0:
        raise ValueError(f"spherical_lerp: latents must not be empty, got shape {list(sa)}")


class _Plan:
    """Per-frame coefficients: frame = ca·a + cb·b (or ca·a + detour_coef·detour)."""

    __slots__ = ("at0", "at1", "ca", "cb", "detour", "detour_coef", "needs_float64")

    def __init__(self, ts: np.ndarray) -> None:
        self.at0 = ts == 0.0
        self.at1 = ts == 1.0
        self.ca = 1.0 - ts
        self.cb = ts.copy()
        self.detour: np.ndarray | None = None
        self.detour_coef = np.zeros_like(ts)
        self.needs_float64 = False


def _plan(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> _Plan:
    """Measure the angle once (float64) and turn every t into two coefficients."""
    plan = _Plan(ts)
    na = _norm(a)
    nb = _norm(b)
    if not (math.isfinite(na) and math.isfinite(nb)):
        raise ValueError("spherical_lerp: latents must be finite (found NaN or infinity)")
    if na == 0.0 or nb == 0.0:
        return plan  # no direction to follow: a plain lerp is the only sensible path
    ua = a / na
    ub = b / nb
    omega = 2.0 * math.atan2(_norm(ua - ub), _norm(ua + ub))
    norms = (1.0 - ts) * na + ts * nb  # linear in magnitude, as the seed intends
    if omega < _PARALLEL_EPS:
        # Same direction: the normalised lerp of directions is slerp to within O(ω²).
        cos = math.cos(omega)
        length = np.sqrt(np.maximum((1.0 - ts) ** 2 + ts**2 + 2.0 * ts * (1.0 - ts) * cos, 1e-300))
        plan.ca = (1.0 - ts) / length * (norms / na)
        plan.cb = ts / length * (norms / nb)
        return plan
    if math.pi - omega < _OPPOSITE_EPS:
        # Exactly opposite: every great circle joins them; take the one through a fixed direction.
        ortho = _orthogonal(ua)
        ang = ts * math.pi
        plan.ca = np.cos(ang) * (norms / na)
        plan.detour = ortho
        plan.detour_coef = np.sin(ang) * norms
        plan.needs_float64 = True
        return plan
    sin_o = math.sin(omega)
    plan.ca = np.sin((1.0 - ts) * omega) / sin_o * (norms / na)
    plan.cb = np.sin(ts * omega) / sin_o * (norms / nb)
    plan.needs_float64 = sin_o < _FLOAT64_COMBINE_BELOW
    return plan


def _norm(x: np.ndarray) -> float:
    # Pairwise summation, not BLAS: BLAS threads fight torch's for the cores (measured 10x slower).
    return math.sqrt(float(np.sum(x * x)))


def _slerp_torch(a: Any, b: Any, ts: np.ndarray, scalar: bool) -> Any:
    import torch

    _check_shapes(tuple(a.shape), tuple(b.shape))
    dtype = a.dtype if a.dtype.is_floating_point else torch.float32
    if b.dtype != a.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        if not dtype.is_floating_point:
            dtype = torch.float32
    # The angle needs float64, which some devices (MPS) lack: measure it on the CPU. It is one
    # pass over the latent; the heavy part (all frames) stays on the inputs' device.
    a64 = a.detach().reshape(-1).to("cpu", torch.float64).numpy()
    b64 = b.detach().reshape(-1).to("cpu", torch.float64).numpy()
    plan = _plan(a64, b64, ts)
    device = a.device
    if plan.needs_float64:
        work = torch.float64
        if device.type == "mps":  # no float64 there: this rare path runs on the CPU
            device = torch.device("cpu")
    else:
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    fa = a.detach().reshape(-1).to(device=device, dtype=work)
    ca = torch.as_tensor(plan.ca, dtype=work, device=device)[:, None]
    if plan.detour is not None:
        fd = torch.as_tensor(plan.detour, dtype=work, device=device)
        cd = torch.as_tensor(plan.detour_coef, dtype=work, device=device)[:, None]
        out = ca * fa[None] + cd * fd[None]
    else:
        fb = b.detach().reshape(-1).to(device=device, dtype=work)
        cb = torch.as_tensor(plan.cb, dtype=work, device=device)[:, None]
        out = torch.mul(ca, fa[None]).addcmul_(cb, fb[None])  # one allocation for all frames
    out = out.to(device=a.device, dtype=dtype)
    if plan.at0.any():
        out[torch.as_tensor(plan.at0, device=a.device)] = a.detach().reshape(-1).to(dtype)
    if plan.at1.any():
        out[torch.as_tensor(plan.at1, device=a.device)] = (
            b.detach().reshape(-1).to(device=a.device, dtype=dtype)
        )
    return out[0].reshape(a.shape) if scalar else out.reshape((len(ts), *a.shape))


def _orthogonal(u: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to ``u``, the same for ``u`` and ``-u``."""
    n = u.size
    probe = np.cos(np.arange(n, dtype=np.float64) * 0.7071) + 0.5  # fixed, not parallel to basis axes
    v = probe - np.dot(probe, u) * u
    nv = float(np.linalg.norm(v))
    if nv < 1e-12:  # u happened to be parallel to the probe (or n == 1: no orthogonal direction)
        v = np.zeros(n)
        v[int(np.argmin(np.abs(u)))] = 1.0
        v -= np.dot(v, u) * u
        nv = float(np.linalg.norm(v))
        if nv < 1e-12:
            return np.zeros(n)
    return v / nv


def inbetween_ts(count: int) -> np.ndarray:
    """``count`` evenly spaced t values strictly between 0 and 1 (the endpoints are keyframes).
    The one list of in-between t values: slerped in-betweens, latent walks and their plans use it."""
    return np.arange(1, count + 1, dtype=np.float64) / (count + 1)
