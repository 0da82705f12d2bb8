"""Spherical linear interpolation between two latents, for one ``t`` or many at once.

Differences from the seed's version, and why:

* **Vectorised over t.** A vector of ``t`` values gives every frame in one call, shaped
  ``[len(t), *a.shape]`` — no Python loop per in-between.
* **float64 angle.** The cosine is computed in float64 and clamped to [-1, 1]: float32 self-dots
  of unit vectors exceed 1 by an ulp and ``acos`` then returns NaN.
* **Lerp only when the angle is really ~0** (sin(omega) tiny). The popular ``abs(dot) > 0.9995``
  guard also fires for nearly *opposite* latents, where a lerp passes through ~zero norm and
  decodes to a grey blank frame. For (nearly) opposite latents we rotate through a deterministic
  orthogonal direction instead, so the path keeps its norm.
* **Magnitude as the seed intends.** The direction is interpolated on the unit sphere and the norm
  is interpolated linearly between the endpoints' norms, so norms stay between them.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import numpy as np

T = TypeVar("T")

_PARALLEL_EPS = 1e-6  # sin(omega) below this: directions coincide, lerp is exact enough
_OPPOSITE_EPS = 1e-6  # pi - omega below this: directions opposite, choose a detour


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


@overload
def spherical_lerp(latent_a: np.ndarray, latent_b: np.ndarray, t: float | np.ndarray | list[float]) -> np.ndarray: ...
@overload
def spherical_lerp(latent_a: T, latent_b: T, t: Any) -> T: ...


def spherical_lerp(latent_a: Any, latent_b: Any, t: Any) -> Any:
    """Slerp from ``latent_a`` (t=0) to ``latent_b`` (t=1).

    ``latent_a`` and ``latent_b`` are numpy arrays or torch tensors of the same shape; the result
    has their type, dtype and device. A scalar ``t`` gives one latent shaped like the inputs; a
    1-D ``t`` gives ``[len(t), *shape]``.
    """
    if _is_torch(latent_a) or _is_torch(latent_b):
        import torch

        if not (_is_torch(latent_a) and _is_torch(latent_b)):
            raise TypeError("spherical_lerp: both latents must be torch tensors, or both numpy arrays")
        a_np = latent_a.detach().to("cpu", torch.float64).numpy()
        b_np = latent_b.detach().to("cpu", torch.float64).numpy()
        t_np = t.detach().cpu().numpy() if _is_torch(t) else t
        out = _slerp_np(a_np, b_np, t_np)
        return torch.from_numpy(out).to(device=latent_a.device, dtype=latent_a.dtype)
    a = np.asarray(latent_a)
    b = np.asarray(latent_b)
    dtype = np.result_type(a.dtype, b.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    return _slerp_np(a.astype(np.float64), b.astype(np.float64), t).astype(dtype, copy=False)


def _slerp_np(a: np.ndarray, b: np.ndarray, t: Any) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"spherical_lerp: latents must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    t_arr = np.asarray(t, dtype=np.float64)
    scalar = t_arr.ndim == 0
    if t_arr.ndim > 1:
        raise ValueError(f"spherical_lerp: t must be a scalar or 1-D, got shape {list(t_arr.shape)}")
    if not np.all(np.isfinite(t_arr)):
        raise ValueError("spherical_lerp: t must be finite")
    ts = t_arr.reshape(-1)

    fa = a.reshape(-1)
    fb = b.reshape(-1)
    na = float(np.linalg.norm(fa))
    nb = float(np.linalg.norm(fb))
    if na == 0.0 or nb == 0.0:
        # No direction to follow: a plain lerp is the only sensible path.
        out = (1.0 - ts)[:, None] * fa[None] + ts[:, None] * fb[None]
        return out.reshape((*(() if scalar else (len(ts),)), *a.shape)) if not scalar else out[0].reshape(a.shape)

    ua = fa / na
    ub = fb / nb
    cos = float(np.clip(np.dot(ua, ub), -1.0, 1.0))
    omega = float(np.arccos(cos))
    sin_o = float(np.sin(omega))
    norms = (1.0 - ts) * na + ts * nb  # magnitude interpolated linearly, as the seed intends

    if sin_o < _PARALLEL_EPS and omega < np.pi / 2:
        # Same direction (up to float noise): lerp of directions, re-normalised.
        dirs = (1.0 - ts)[:, None] * ua[None] + ts[:, None] * ub[None]
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    elif np.pi - omega < _OPPOSITE_EPS:
        # Opposite: every great circle joins them. Take the one through a fixed orthogonal direction
        # (deterministic, so slerp(a,b,t) == slerp(b,a,1-t) still holds up to sign of the detour).
        ortho = _orthogonal(ua)
        ang = ts * np.pi
        dirs = np.cos(ang)[:, None] * ua[None] + np.sin(ang)[:, None] * ortho[None]
    else:
        wa = np.sin((1.0 - ts) * omega) / sin_o
        wb = np.sin(ts * omega) / sin_o
        dirs = wa[:, None] * ua[None] + wb[:, None] * ub[None]
    out = dirs * norms[:, None]
    if scalar:
        return out[0].reshape(a.shape)
    return out.reshape((len(ts), *a.shape))


def _orthogonal(u: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to ``u``, the same for ``u`` and ``-u``."""
    n = u.size
    probe = np.cos(np.arange(n, dtype=np.float64) * 0.7071) + 0.5  # fixed, not parallel to basis axes
    v = probe - np.dot(probe, u) * u
    nv = np.linalg.norm(v)
    if nv < 1e-12:  # u happened to be parallel to the probe
        v = np.zeros(n)
        v[int(np.argmin(np.abs(u)))] = 1.0
        v -= np.dot(v, u) * u
        nv = np.linalg.norm(v)
    return v / nv
