"""The fullscreen detector for this platform: the Windows or X11 reader, or one that says why none.

This module sits above the platform readers and imports them; they share the geometry in
:mod:`.fullscreen_geometry`, not this module, so nothing here is imported back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from dream_window.monitor.detector import Detector, Reading, StaticDetector
from dream_window.monitor.fullscreen_windows import WindowsFullscreen


def create_fullscreen_detector(env: Mapping[str, str] | None = None, platform: str | None = None) -> Detector:
    """The fullscreen detector for this platform, or one that says once why there is none."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform == "win32":
        return WindowsFullscreen()
    if platform == "darwin":
        return StaticDetector("fullscreen", Reading.unsupported("not supported on macOS"))
    if env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or (
        env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")
    ):
        # XWayland's _NET_ACTIVE_WINDOW does not see native Wayland windows: answers would be wrong.
        return StaticDetector("fullscreen", Reading.unsupported("not supported on Wayland"))
    display = env.get("DISPLAY")
    if not display:
        return StaticDetector("fullscreen", Reading.unsupported("no X display (DISPLAY is not set)"))
    try:  # python-xlib is optional (the monitor extra)
        from dream_window.monitor.fullscreen_x11 import X11Fullscreen
    except ImportError:
        return StaticDetector(
            "fullscreen",
            Reading.unavailable("python-xlib not installed (pip install 'dream-window[monitor]')"),
        )
    return X11Fullscreen(display)
