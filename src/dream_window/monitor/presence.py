"""Pause when nobody can see the dream: a locked session, a running screensaver, displays off.

Three detectors, one per part, so each says for itself whether it can tell here (``dream-window
doctor`` shows one line each) and each holds its own pause reason:

* ``lock`` — Windows: ``WTSQuerySessionInformationW`` (``WTSSessionInfoEx`` → ``SessionFlags``);
  Linux: logind's ``LockedHint`` on our session (system bus, :mod:`.presence_dbus`).
* ``screensaver`` — Windows: ``SystemParametersInfoW(SPI_GETSCREENSAVERRUNNING)``; Linux:
  ``GetActive`` of ``org.freedesktop.ScreenSaver`` or a desktop's own interface (session bus).
* ``displays`` — Windows: unsupported (the display state only arrives as a notification to a
  window); Linux X11: the DPMS power level and the X server's own screen saver (:mod:`.presence_x11`).

macOS: all three unsupported. Wayland: ``displays`` unsupported (the D-Bus parts still work).

This module is the platform choice. The readers share only :mod:`.presence_names` (the detector
names and pause reasons), never this module, so nothing imports in a circle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from dream_window.monitor.detector import Detector, Reading, StaticDetector
from dream_window.monitor.presence_names import (
    DISPLAYS,
    DISPLAYS_OFF,
    LOCK,
    LOCKED,
    NAMES,
    SCREENSAVER,
    SCREENSAVER_RUNNING,
)

__all__ = ["DISPLAYS_OFF", "LOCKED", "SCREENSAVER_RUNNING", "create_presence_detectors"]

MONITOR_EXTRA = "pip install 'dream-window[monitor]'"


def create_presence_detectors(
    env: Mapping[str, str] | None = None, platform: str | None = None
) -> list[Detector]:
    """The lock, screensaver and displays detectors for this platform, each able to say why not.

    ``env`` is where the bus addresses and the X display come from (``DBUS_SYSTEM_BUS_ADDRESS``,
    ``DBUS_SESSION_BUS_ADDRESS``, ``XDG_SESSION_ID``, ``DISPLAY``): tests point it at their own buses.
    """
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform == "win32":
        from dream_window.monitor.presence_windows import windows_presence_detectors

        return windows_presence_detectors()
    if platform == "darwin":
        return [StaticDetector(n, Reading.unsupported("not supported on macOS")) for n in NAMES]
    return [*_dbus_detectors(env), _displays_detector(env)]


def _dbus_detectors(env: Mapping[str, str]) -> list[Detector]:
    try:  # jeepney is optional (the monitor extra)
        from dream_window.monitor.presence_dbus import LogindLock, ScreenSaverState
    except ImportError:
        missing = Reading.unavailable(f"jeepney not installed ({MONITOR_EXTRA})")
        return [StaticDetector(LOCK, missing), StaticDetector(SCREENSAVER, missing)]
    return [LogindLock.from_env(env), ScreenSaverState.from_env(env)]


def _displays_detector(env: Mapping[str, str]) -> Detector:
    if env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or (
        env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")
    ):
        # XWayland's DPMS and screen saver are not the compositor's: their answer would be wrong.
        return StaticDetector(DISPLAYS, Reading.unsupported("not supported on Wayland"))
    display = env.get("DISPLAY")
    if not display:
        return StaticDetector(DISPLAYS, Reading.unsupported("no X display (DISPLAY is not set)"))
    try:  # python-xlib is optional (the monitor extra)
        from dream_window.monitor.presence_x11 import X11Displays
    except ImportError:
        return StaticDetector(DISPLAYS, Reading.unavailable(f"python-xlib not installed ({MONITOR_EXTRA})"))
    return X11Displays(display)
