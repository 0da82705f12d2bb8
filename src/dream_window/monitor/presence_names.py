"""What every "nobody can see it" reader shares: the detector names and their pause reasons.

The platform readers (``presence_windows``, ``presence_dbus``, ``presence_x11``) import these from
here; :mod:`.presence`, which chooses the readers, imports them too, so nothing imports in a circle.
"""

from __future__ import annotations

LOCK = "lock"
SCREENSAVER = "screensaver"
DISPLAYS = "displays"
NAMES = (LOCK, SCREENSAVER, DISPLAYS)

LOCKED = "screen locked"
SCREENSAVER_RUNNING = "screensaver running"
DISPLAYS_OFF = "displays off"
