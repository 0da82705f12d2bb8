"""Generation modes: img2img, interpolate and hybrid, each in its own module, one contract."""

from dream_window.config import Mode
from dream_window.modes.base import DreamMode, Frame, ModeContext
from dream_window.modes.hybrid import HybridMode
from dream_window.modes.img2img import Img2ImgMode
from dream_window.modes.interpolate import InterpolateMode


def create_mode(mode: Mode, ctx: ModeContext) -> DreamMode:
    """The mode named in config, wired to its context."""
    if mode is Mode.IMG2IMG:
        return Img2ImgMode(ctx)
    if mode is Mode.INTERPOLATE:
        return InterpolateMode(ctx)
    return HybridMode(ctx)


__all__ = ["DreamMode", "Frame", "HybridMode", "Img2ImgMode", "InterpolateMode", "ModeContext", "create_mode"]
