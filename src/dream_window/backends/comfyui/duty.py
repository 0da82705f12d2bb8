"""How much of the last minute one ComfyUI server spent executing our prompts: its GPU duty cycle.

A user should see what the widget costs their GPU. The measure is the server's own: each of our
prompts is busy from its ``execution_start`` to its ``execution_success`` / ``execution_error``
/ ``execution_interrupted``, by the ``timestamp`` (ms, the server's wall clock) those messages
carry. Busy intervals are merged, so prompts that overlap (a message out of order, a clock step)
are never counted twice, and cut to the window: ``busy_s`` of the last ``window_s`` seconds
(60, or the time since we connected when that is shorter), a prompt still running counting up to
now.

The server's clock is not ours. A timestamp is placed on our monotonic clock by the smallest
``arrival - timestamp`` seen (the message that came with the least delay), so durations are the
server's own and only the window's edge is ours; the estimate only improves as messages come.

ComfyUI executes one prompt at a time: a start closes an interval still open on the same server
at that moment (its end was lost with a dropped socket). An end without a start we saw (we
connected while it ran) is not counted: we do not know when it began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dream_window.backends.comfyui.messages import Message
from dream_window.clock import Clock

WINDOW_S = 60.0
START = "execution_start"
ENDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


@dataclass(frozen=True, slots=True)
class Duty:
    busy_s: float
    window_s: float
    running: bool  # one of our prompts is executing now

    @property
    def fraction(self) -> float:
        return min(1.0, self.busy_s / self.window_s) if self.window_s > 0 else 0.0

    def describe(self) -> dict[str, object]:
        return {
            "fraction": round(self.fraction, 4),
            "busy_s": round(self.busy_s, 3),
            "window_s": round(self.window_s, 3),
            "running": self.running,
        }


def _timestamp_s(msg: Message) -> float | None:
    ts = msg.data.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    return ts / 1000.0


class DutyCycle:
    """The busy intervals of our prompts on one server over a rolling window (see the module docstring)."""

    def __init__(self, clock: Clock, *, window_s: float = WINDOW_S) -> None:
        self._clock = clock
        self.window_s = window_s
        self._since = clock.monotonic()
        self._offset: float | None = None  # our monotonic time minus the server's, in seconds
        self._done: list[tuple[float, float]] = []  # on the server's clock, sorted, not overlapping
        self._open: tuple[str, float] | None = None  # (prompt id, start) on the server's clock

    def on_message(self, msg: Message, *, ours: bool) -> None:
        """Feed one message; ``ours``: it is about a prompt we queued (only those open an interval)."""
        if msg.type != START and msg.type not in ENDS:
            return
        ts = _timestamp_s(msg)
        if ts is None:
            return
        self._observe_offset(ts)
        pid = msg.prompt_id
        if msg.type == START:
            if self._open is not None:  # one prompt at a time: that one is over
                self._close(ts)
            if ours and pid is not None:
                self._open = (pid, ts)
        elif self._open is not None and self._open[0] == pid:
            self._close(ts)

    def _observe_offset(self, ts: float) -> None:
        offset = self._clock.monotonic() - ts
        if self._offset is None or offset < self._offset:
            self._offset = offset

    def _close(self, end: float) -> None:
        assert self._open is not None
        start = self._open[1]
        self._open = None
        if end > start:
            self._add(start, end)

    def _add(self, start: float, end: float) -> None:
        """Insert ``[start, end]`` keeping the list sorted and merged."""
        merged: list[tuple[float, float]] = []
        placed = False
        for s, e in self._done:
            if e < start:
                merged.append((s, e))
            elif s > end:
                if not placed:
                    merged.append((start, end))
                    placed = True
                merged.append((s, e))
            else:
                start, end = min(s, start), max(e, end)
        if not placed:
            merged.append((start, end))
        self._done = merged

    def measure(self) -> Duty:
        now = self._clock.monotonic()
        window = min(self.window_s, max(0.0, now - self._since))
        if self._offset is None or window <= 0:
            return Duty(0.0, window, running=False)
        server_now = now - self._offset
        edge = server_now - window
        self._done = [(s, e) for s, e in self._done if e > edge]  # older ones never count again
        intervals = list(self._done)
        if self._open is not None:
            intervals.append((self._open[1], max(server_now, self._open[1])))
        busy = 0.0
        reached = edge  # the union, swept left to right: overlaps count once
        for s, e in sorted(intervals):
            s, e = max(s, reached), min(e, server_now)
            if e > s:
                busy += e - s
                reached = e
        return Duty(busy, window, running=self._open is not None)
