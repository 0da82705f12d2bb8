"""``dream-window doctor`` checks for the interpolation part: which encoder, and can it load."""

from __future__ import annotations

import importlib.util

from dream_window.config import DreamConfig
from dream_window.errors import ModelLoadError
from dream_window.values.check import Check


async def doctor_checks(config: DreamConfig) -> list[Check]:
    ic = config.interpolation
    checks: list[Check] = []
    # find_spec, not import: torch takes seconds to import and doctor only asks whether it is there.
    have = {m: importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "safetensors")}
    missing = [m for m, ok in have.items() if not ok]
    if ic.encoder != "local":
        checks.append(
            Check(
                "interpolation encoder",
                "ok",
                "the backend's own VAE (ComfyUI's loaded model on the server; the built-in "
                "engine's latent without ComfyUI): no second VAE in memory",
            )
        )
        checks.append(
            Check(
                "local VAE",
                "info",
                "not used (interpolation.encoder is "
                f"'{ic.encoder}')"
                + (f"; would need {', '.join(missing)}" if missing else "; torch and diffusers present"),
            )
        )
        return checks
    if missing:
        checks.append(
            Check(
                "local VAE",
                "fail",
                f"interpolation.encoder is 'local' but {', '.join(missing)} missing "
                "(pip install 'dream-window[ml]'); in-betweens will be pixel crossfades",
            )
        )
        return checks
    from dream_window.interpolation.local_vae import LocalVAEEncoder

    assert ic.vae_path is not None  # the config validator guarantees it for encoder: local
    path = config.resolve(ic.vae_path)
    try:
        encoder = LocalVAEEncoder(path, ic.vae_family, device="cpu")
        await encoder.load()
    except ModelLoadError as exc:
        checks.append(Check("local VAE", "fail", f"{exc}; in-betweens will be pixel crossfades"))
        return checks
    checks.append(
        Check(
            "local VAE",
            "ok",
            f"{path} loads as '{ic.vae_family}' ({encoder.latent_channels} latent channels)",
        )
    )
    checks.append(Check("interpolation encoder", "ok", encoder.name))
    await encoder.free_memory()
    return checks
