"""SeedSource: the one owner of the seed policy. Modes draw every seed here, including the seeds
of the requests they plan ahead, so no other part ever works out "the next seed"."""

from __future__ import annotations

import random

from dream_window.config import SeedPolicy

# ComfyUI's KSampler accepts 0 .. 2**64-1; stay in int64 for every node and SQLite.
SEED_LIMIT = 2**63


class SeedSource:
    """Seeds per the configured policy: random, increment from a start, or fixed."""

    def __init__(self, policy: SeedPolicy, start: int, rng: random.Random) -> None:
        self._policy = policy
        self._next = start
        self._rng = rng

    def next(self) -> int:
        if self._policy is SeedPolicy.FIXED:
            return self._next
        if self._policy is SeedPolicy.INCREMENT:
            s = self._next
            self._next = (self._next + 1) % SEED_LIMIT
            return s
        return self._rng.randrange(0, SEED_LIMIT)
