"""Generation modes: img2img, interpolate and hybrid, each in its own module, one contract."""

from dream_window.config import Mode
from dream_window.dream.modes.base import DreamMode, ModeContext
from dream_window.dream.modes.hybrid import HybridMode
from dream_window.dream.modes.img2img import Img2ImgMode
from dream_window.dream.modes.interpolate import InterpolateMode
from dream_window.values.frame import Frame


def create_mode(mode: Mode, ctx: ModeContext) -> DreamMode:
    """The mode named in config, wired to its context."""
    if mode is Mode.IMG2IMG:
        return Img2ImgMode(ctx)
    if mode is Mode.INTERPOLATE:
        return InterpolateMode(ctx)
    return HybridMode(ctx)


__all__ = ["DreamMode", "Frame", "HybridMode", "Img2ImgMode", "InterpolateMode", "ModeContext", "create_mode"]
