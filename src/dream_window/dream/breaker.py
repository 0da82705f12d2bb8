"""CircuitBreaker: the same failure over and over means stop trying, and check now and then.

A generation that fails the same way ``threshold`` times in a row (a model that does not load, a
node that always raises) will not succeed on the next try either; retrying it hot only fills the
server's queue and the log. The breaker *opens*: no more tries until ``retry_after`` seconds have
passed, when one check is let through (*half-open*); it closes when that check succeeds and waits
another ``retry_after`` when it does not. Different failures in a row do not add up: a flaky
network and a broken model are different problems.

Failures are compared by their *kind*: the text with the parts that change every time (prompt
ids, numbers) taken out.
"""

from __future__ import annotations

import re

from dream_window.clock import Clock

_VARYING = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(\.\d+)?")


def failure_kind(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_VARYING.sub('#', str(exc))}"


class CircuitBreaker:
    def __init__(self, *, threshold: int, retry_after: float, clock: Clock) -> None:
        if threshold < 1:
            raise ValueError(f"a breaker threshold must be at least 1, got {threshold}")
        self.threshold = threshold
        self.retry_after = retry_after
        self._clock = clock
        self._kind: str | None = None
        self._count = 0
        self._opened_at: float | None = None
        self.last_error: str | None = None

    @property
    def failures(self) -> int:
        """The same failure, this many times in a row."""
        return self._count

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def failed(self, exc: BaseException) -> bool:
        """Count a failure; True when this one opened the breaker (or kept it open)."""
        kind = failure_kind(exc)
        self._count = self._count + 1 if kind == self._kind else 1
        self._kind, self.last_error = kind, str(exc)
        if self._count >= self.threshold:
            self._opened_at = self._clock.monotonic()
        return self.open

    def succeeded(self) -> None:
        self._kind, self._count, self._opened_at, self.last_error = None, 0, None, None

    def check_due(self) -> bool:
        """Open and ``retry_after`` has passed since it opened (or since the last check failed)."""
        return self._opened_at is not None and self._clock.monotonic() - self._opened_at >= self.retry_after

    def check_failed(self, exc: BaseException) -> None:
        """The half-open check failed: stay open for another ``retry_after``."""
        self._opened_at = self._clock.monotonic()
        self.last_error = str(exc)

    def describe(self) -> dict[str, object]:
        return {
            "open": self.open,
            "failures_in_a_row": self._count,
            "threshold": self.threshold,
            "retry_after_s": self.retry_after,
        }
