"""Headroom: how many frames to keep made ahead of the screen, sized by need, in seconds.

Frames are made ahead so that a slow generation does not stall the cadence. Every frame made ahead
is also a frame the user waits through after changing the prompt, so we keep just enough: the
producer starts its next batch once the buffer holds no more than it takes to cover that batch's
generation time (its p95 over the recent batches) plus one interval of slack. A batch is what
one call of the mode returns (hybrid: a keyframe and its in-betweens), however many frames.

Before anything has been measured we assume a batch takes one interval. ``capacity``
(``generation.buffer_size``) caps the target.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

# Recent batches the p95 is taken over: about a minute of a typical dream, so one slow start (a
# model loading) stops counting soon.
WINDOW = 24


class Headroom:
    def __init__(self, *, interval: float, capacity: int) -> None:
        self.interval = interval
        self.capacity = capacity
        self._seconds: deque[float] = deque(maxlen=WINDOW)
        # Taken once per batch, not on every read: status.json and the producer read it per frame.
        self._p95: float | None = None

    def record(self, seconds: float) -> None:
        """One batch took ``seconds`` from asking to having its frames."""
        self._seconds.append(max(0.0, seconds))
        self._p95 = float(np.percentile(np.fromiter(self._seconds, dtype=float), 95))

    def reset(self) -> None:
        """Forget the measurements (the backend or the mode changed: old times say nothing)."""
        self._seconds.clear()
        self._p95 = None

    @property
    def p95(self) -> float | None:
        return self._p95

    def target(self) -> int:
        """Frames to hold before starting the next batch: the next batch then arrives before the
        screen runs dry, 95 times in 100."""
        if self.interval <= 0:
            return 1  # as fast as frames come: nothing to smooth
        p95 = self.p95 if self.p95 is not None else self.interval
        need = math.ceil((p95 + self.interval) / self.interval - 1e-9)
        return max(1, min(self.capacity, need))

    def describe(self) -> dict[str, object]:
        p95 = self.p95
        return {
            "target": self.target(),
            "capacity": self.capacity,
            "p95_batch_s": None if p95 is None else round(p95, 3),
        }
