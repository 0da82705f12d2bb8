"""Interpolation benchmark: vectorised slerp vs the seed's per-frame function, and local VAE decode
throughput on this CPU. Ratios are measured side by side in one process; run:

    .venv/bin/python bench/interpolation.py

Random-weight models of the REAL sizes (SD-VAE: AutoencoderKL 128/256/512/512; TAESD: AutoencoderTiny
64x4), float32, 2 threads: the arithmetic is the same as with trained weights.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dream_window.interpolation.local_vae import family_config
from dream_window.values.slerp import spherical_lerp


def seed_spherical_lerp(latent_a: torch.Tensor, latent_b: torch.Tensor, t: float) -> torch.Tensor:
    """The seed design's function (BACKEND_ARCHITECTURE.md), verbatim apart from formatting."""
    a_flat = latent_a.flatten()
    b_flat = latent_b.flatten()
    a_norm = a_flat / torch.norm(a_flat)
    b_norm = b_flat / torch.norm(b_flat)
    dot_product = torch.dot(a_norm, b_norm)
    omega = torch.acos(torch.clamp(dot_product, -1, 1))
    if torch.abs(omega) < 1e-6:
        return (1.0 - t) * latent_a + t * latent_b
    sin_omega = torch.sin(omega)
    result_flat = (
        torch.sin((1.0 - t) * omega) / sin_omega * a_flat + torch.sin(t * omega) / sin_omega * b_flat
    )
    return result_flat.reshape(latent_a.shape)


def best_of(fn, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_slerp() -> None:
    print("slerp: 60 in-betweens, float32 torch tensors (best of 7)")
    print(f"  {'latent':<16}{'seed loop':>12}{'vectorised':>12}{'ratio':>8}")
    ts = np.arange(1, 61) / 61
    for shape in ((1, 16, 64, 32), (1, 4, 64, 32)):
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        seed = best_of(lambda a=a, b=b: torch.stack([seed_spherical_lerp(a, b, float(t)) for t in ts]))
        ours = best_of(lambda a=a, b=b: spherical_lerp(a, b, ts))
        print(f"  {list(shape)!s:<16}{seed * 1e3:>10.2f}ms{ours * 1e3:>10.2f}ms{seed / ours:>7.1f}x")
    # Correctness at the same time: the two agree where the seed is well defined (equal norms).
    a = torch.randn(1, 16, 64, 32)
    b = torch.randn(1, 16, 64, 32)
    b = b / b.norm() * a.norm()
    diff = (
        (torch.stack([seed_spherical_lerp(a, b, float(t)) for t in ts]) - spherical_lerp(a, b, ts))
        .abs()
        .max()
    )
    print(f"  max |seed - ours| on equal-norm latents: {float(diff):.2e}")


def bench_decode() -> None:
    from diffusers import AutoencoderKL, AutoencoderTiny

    torch.manual_seed(0)
    models = {
        "SD-VAE (AutoencoderKL, 4ch)": AutoencoderKL.from_config(family_config("sd")).eval(),
        "TAESD (AutoencoderTiny, 4ch)": AutoencoderTiny.from_config(family_config("taesd")).eval(),
    }
    print("decode 256x512 (latent [B,4,64,32]), CPU float32, 2 threads, frames/s")
    print(f"  {'model':<30}{'B=1':>8}{'B=4':>8}{'B=8':>8}")
    for name, model in models.items():
        fps = []
        for bs in (1, 4, 8):
            z = torch.randn(bs, 4, 64, 32)
            with torch.inference_mode():
                if "KL" in name:  # ~10 s a frame here: warm up once at B=1, then time each batch once
                    if bs == 1:
                        model.decode(z)
                    t0 = time.perf_counter()
                    model.decode(z)
                    dt = time.perf_counter() - t0
                else:
                    dt = best_of(lambda z=z, model=model: model.decode(z).sample, repeat=3)
            fps.append(bs / dt)
        print(f"  {name:<30}" + "".join(f"{f:>8.2f}" for f in fps))


if __name__ == "__main__":
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    bench_slerp()
    bench_decode()
    print(f"(bench took {time.perf_counter() - t0:.0f}s)")
