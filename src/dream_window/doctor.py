"""``dream-window doctor``: is everything in place, and what is optional and missing, and why.

Each part contributes its own checks through a ``doctor_checks(config)`` coroutine in its
package (ComfyUI backend, cache, interpolation, monitor); the core checks live here.
"""

from __future__ import annotations

import importlib
import importlib.util
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dream_window.config import DreamConfig
from dream_window.optional import optional_module

Level = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str


def _writable(path: Path) -> tuple[bool, str]:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True):
            pass
        return True, str(path)
    except OSError as exc:
        return False, f"{path}: {exc.strerror or exc}"


def module_available(name: str) -> tuple[bool, str]:
    if importlib.util.find_spec(name) is None:
        return False, f"python package '{name}' not installed"
    return True, f"'{name}' installed"


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


# (module, attribute): optional contributors, imported only if present.
_CONTRIBUTORS = (
    "dream_window.backends.comfyui",
    "dream_window.cache",
    "dream_window.interpolation",
    "dream_window.monitor",
    "dream_window.web",
)


async def run_checks(config: DreamConfig) -> list[Check]:
    checks = await core_checks(config)
    for mod_name in _CONTRIBUTORS:
        mod = optional_module(mod_name)
        if mod is None:
            continue
        fn: Callable[[DreamConfig], Awaitable[list[Check]]] | None = getattr(mod, "doctor_checks", None)
        if fn is None:
            continue
        try:
            checks.extend(await fn(config))
        except Exception as exc:  # a broken check must not hide the others
            checks.append(Check(mod_name, "fail", f"check crashed: {exc!r}"))
    return checks
