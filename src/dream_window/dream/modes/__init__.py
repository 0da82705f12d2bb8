"""Generation modes, one module each, one contract (:class:`~dream_window.dream.modes.base.DreamMode`).

Adding a mode is its module plus one :func:`register_mode` line; nothing below the modes (the
backends) knows which mode runs. The registry is the one list of modes: the config accepts its
names, the CLI offers them, the app builds from it.
"""

from __future__ import annotations

from collections.abc import Callable

from dream_window.config import MODE_NAMES
from dream_window.dream.modes.base import DreamMode, ModeContext
from dream_window.dream.modes.hybrid import HybridMode
from dream_window.dream.modes.img2img import Img2ImgMode
from dream_window.dream.modes.interpolate import InterpolateMode
from dream_window.errors import ConfigError

ModeFactory = Callable[[ModeContext], DreamMode]

MODES: dict[str, ModeFactory] = {}


def register_mode(name: str, factory: ModeFactory) -> None:
    """Make ``name`` a valid ``generation.mode`` that builds its mode with ``factory``."""
    if not name.isidentifier():
        raise ValueError(f"a mode name must be a plain word, got {name!r}")
    MODES[name] = factory
    if name not in MODE_NAMES:
        MODE_NAMES.append(name)


register_mode("img2img", Img2ImgMode)
register_mode("interpolate", InterpolateMode)
register_mode("hybrid", HybridMode)


def mode_names() -> list[str]:
    return list(MODES)


def create_mode(name: str, ctx: ModeContext) -> DreamMode:
    """The mode named in config, wired to its context."""
    factory = MODES.get(name)
    if factory is None:
        raise ConfigError(f"generation.mode must be one of {', '.join(map(repr, MODES))}, got {name!r}")
    return factory(ctx)


__all__ = [
    "MODES",
    "DreamMode",
    "HybridMode",
    "Img2ImgMode",
    "InterpolateMode",
    "ModeContext",
    "create_mode",
    "mode_names",
    "register_mode",
]
