"""``dream-window doctor``: is everything in place, and what is optional and missing, and why.

The core checks live here; the ComfyUI backend and the interpolation part have their own
``doctor_checks(config)``, and every service registered in ``app.build_services`` answers
``doctor_checks()`` (frame cache, system monitor, viewer, Rainmeter writer).
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from dream_window.app import build_services
from dream_window.backends import comfyui
from dream_window.config import DreamConfig
from dream_window.interpolation import checks as interpolation
from dream_window.values.check import Check


def _writable(path: Path) -> tuple[bool, str]:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True):
            pass
        return True, str(path)
    except OSError as exc:
        return False, f"{path}: {exc.strerror or exc}"


async def core_checks(config: DreamConfig) -> list[Check]:
    out = [
        Check(
            "config",
            "ok",
            f"valid (mode {config.generation.mode}, model {config.generation.model.value})",
        )
    ]
    for label, path in (("output dir", config.output_dir), ("cache dir", config.cache_dir)):
        ok, detail = _writable(path)
        out.append(Check(label, "ok" if ok else "fail", ("writable: " if ok else "not writable: ") + detail))
    return out


async def run_checks(config: DreamConfig, *, deep: bool = False) -> list[Check]:
    """Every check; ``deep`` also loads the model on ComfyUI (a one-step generation, timed)."""
    parts: list[tuple[str, Callable[[], Awaitable[list[Check]]]]] = [
        ("comfyui", lambda: comfyui.doctor_checks(config, deep=deep)),
        ("interpolation", lambda: interpolation.doctor_checks(config)),
    ]
    parts += [(service.name, service.doctor_checks) for service in build_services(config)]
    checks = await core_checks(config)
    for name, part_checks in parts:
        try:
            checks.extend(await part_checks())
        except Exception as exc:  # a broken check must not hide the others
            checks.append(Check(name, "fail", f"check crashed: {exc!r}"))
    return checks
