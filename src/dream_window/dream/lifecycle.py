"""The dream's lifecycle: a state enum with legal transitions, and the pause reasons that hold it.

::

    STARTING → RUNNING ⇄ PAUSED
        ↘         ↘       ↓
              STOPPED (final)

Several parts may pause at once (a game *and* the user): each holds the pause with its own
reason, and the dream runs again only when the last reason is released. An illegal transition,
a reason held twice or released without being held raises ``LifecycleError`` saying why.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

from dream_window.errors import LifecycleError
from dream_window.events import EventBus, StateChanged

log = logging.getLogger(__name__)


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


_LEGAL: dict[State, set[State]] = {
    State.STARTING: {State.RUNNING, State.STOPPED},
    State.RUNNING: {State.PAUSED, State.STOPPED},
    State.PAUSED: {State.RUNNING, State.STOPPED},
    State.STOPPED: set(),
}


class Lifecycle:
    def __init__(self, events: EventBus) -> None:
        self._events = events
        self.state = State.STARTING
        self._reasons: list[str] = []
        self.running = asyncio.Event()  # set while RUNNING: the loops wait on it

    @property
    def reasons(self) -> list[str]:
        return list(self._reasons)

    def to(self, state: State) -> None:
        if state not in _LEGAL[self.state]:
            raise LifecycleError(f"cannot go from {self.state.value} to {state.value}")
        why = f" ({'; '.join(self._reasons)})" if state is State.PAUSED else ""
        log.info("state: %s → %s%s", self.state.value, state.value, why)
        self.state = state
        if state is State.RUNNING:
            self.running.set()
        else:
            self.running.clear()
        self._announce()

    def start(self) -> None:
        """STARTING → RUNNING, or straight on to PAUSED when a reason arrived first (a game was
        already running when the dream started)."""
        self.to(State.RUNNING)
        if self._reasons:
            self.to(State.PAUSED)

    def stop(self) -> None:
        if self.state is not State.STOPPED:
            self.to(State.STOPPED)

    def hold(self, reason: str) -> bool:
        """Pause for ``reason``; True when this paused a running dream."""
        if self.state is State.STOPPED:
            raise LifecycleError(f"cannot pause ({reason}): the dream is stopped")
        if reason in self._reasons:
            raise LifecycleError(f"already paused for {reason!r}")
        self._reasons.append(reason)
        if self.state is State.RUNNING:
            self.to(State.PAUSED)
            return True
        log.info("also paused for: %s", reason)
        self._announce()
        return False

    def release(self, reason: str) -> None:
        """Drop ``reason``; the dream runs again when it was the last one."""
        if self.state is State.STOPPED:
            raise LifecycleError(f"cannot resume ({reason}): the dream is stopped")
        if reason not in self._reasons:
            held = ", ".join(repr(r) for r in self._reasons) or "nothing"
            raise LifecycleError(f"cannot resume {reason!r}: not paused for it (paused for: {held})")
        self._reasons.remove(reason)
        if not self._reasons and self.state is State.PAUSED:
            log.info("resumed (%s)", reason)
            self.to(State.RUNNING)
        else:
            self._announce()

    def _announce(self) -> None:
        self._events.emit(StateChanged(self.state.value, tuple(self._reasons)))
