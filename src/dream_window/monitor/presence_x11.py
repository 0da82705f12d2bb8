"""``displays`` on X11 with python-xlib (importing this module needs python-xlib).

Two things the X server knows say the screen shows nothing:

* **DPMS** (the extension, where the server has it): a power level other than *On* while DPMS is
  enabled — the monitors are in standby, suspend or off.
* **The X server's own screen saver** (the MIT-SCREEN-SAVER extension, or core blanking): its state
  is *On* or *Cycle* — the screen is blanked or a saver window covers it (``xset s activate``).

:func:`decide` turns the two answers into a :class:`Reading`; it is pure and tested on its own,
since Xvfb has no DPMS extension. The connection is kept open and reopened (at most every
``retry_seconds``) when the server goes away (``x11_link.X11Link``, shared with the fullscreen reader).
"""

from __future__ import annotations

from Xlib import error as xerror

from dream_window.monitor.detector import CheckContext, Condition, Reading
from dream_window.monitor.presence_names import DISPLAYS, DISPLAYS_OFF
from dream_window.monitor.x11_link import CONNECTION_LOST, X11Link

# DPMS power levels (the DPMS extension specification)
DPMS_ON, DPMS_STANDBY, DPMS_SUSPEND, DPMS_OFF = 0, 1, 2, 3
_DPMS_NAMES = {DPMS_STANDBY: "standby", DPMS_SUSPEND: "suspend", DPMS_OFF: "off"}
# MIT-SCREEN-SAVER states
SAVER_OFF, SAVER_ON, SAVER_CYCLE, SAVER_DISABLED = 0, 1, 2, 3


def decide(dpms: tuple[bool, int] | None, saver: int | None) -> Reading:
    """``dpms``: (enabled, power level), or None without the extension; ``saver``: the screen
    saver's state, or None without the extension."""
    if dpms is None and saver is None:
        return Reading.unsupported("the X server has neither the DPMS nor the MIT-SCREEN-SAVER extension")
    if dpms is not None:
        enabled, level = dpms
        if enabled and level != DPMS_ON:
            return Reading.active(DISPLAYS_OFF, f"DPMS {_DPMS_NAMES.get(level, str(level))}")
    if saver in (SAVER_ON, SAVER_CYCLE):
        return Reading.active(DISPLAYS_OFF, "the X screen saver blanked the screen")
    parts = []
    if dpms is not None:
        parts.append("DPMS on" if dpms[0] else "DPMS disabled")
    else:
        parts.append("no DPMS extension")
    if saver is not None:
        parts.append("X screen saver off")
    return Reading.clear(", ".join(parts))


class X11Displays:
    name = DISPLAYS

    def __init__(self, display_name: str, *, retry_seconds: float = 30.0) -> None:
        self.display_name = display_name
        self._x = X11Link(display_name, retry_seconds=retry_seconds)

    def read(self) -> tuple[tuple[bool, int] | None, int | None]:
        d = self._x.display
        dpms = None
        if d.has_extension("DPMS"):
            info = d.dpms_info()
            dpms = (bool(info.state), int(info.power_level))
        saver = None
        if d.has_extension("MIT-SCREEN-SAVER"):
            saver = int(d.screen().root.screensaver_query_info().state)
        return dpms, saver

    def check(self, ctx: CheckContext) -> Reading:
        if self._x.connect(ctx.now) is None:
            return Reading.unavailable(self._x.failure)
        try:
            return decide(*self.read())
        except CONNECTION_LOST as exc:
            self._x.lost(ctx.now, exc)
            return Reading.unavailable(self._x.failure)
        except xerror.XError as exc:
            return Reading(Condition.UNKNOWN, None, f"X error: {exc}")

    def describe(self) -> str:
        return f"X11 display {self.display_name}"

    def close(self) -> None:
        self._x.close()
