"""SystemMonitor: asks every detector on its own interval and pauses/resumes the dream on changes.

Policy, the same for every condition:

* **Pause at once.** A game wants the GPU now; being a few seconds late costs the player frames.
  The generation in flight is interrupted and (``free_vram_on_pause``) the backend gives its VRAM
  back — only for the first of our reasons; a second one finds the GPU already free.
* **Resume after a cooldown.** The condition must stay clear for ``cooldown_seconds`` first. A
  flickering condition (a loading screen, a fullscreen popup) therefore holds the pause instead of
  thrashing it: at most one pause/resume cycle per cooldown, whatever the detector does.
* **One reason per condition**, e.g. ``game: eldenring.exe``, tracked here so we only ever resume
  what we paused (the user's own pause stacks beside ours). When the same condition changes its
  reason (another game), the new reason is paused before the old one is resumed: no gap.
* **Off the frame path.** Detectors block (process table, NVML, X11), so they run in a worker thread.
* Unavailable / unsupported detectors never pause; each says so once in the log, not every check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dream_window.clock import Clock
from dream_window.errors import LifecycleError
from dream_window.events import Progress
from dream_window.monitor.detector import CheckContext, Condition, Detector, Reading

log = logging.getLogger(__name__)


class PauseTarget(Protocol):
    """What the monitor needs from the dream."""

    @property
    def state(self) -> str: ...

    async def pause(self, reason: str, *, free_memory: bool = False) -> None: ...

    async def resume(self, reason: str) -> None: ...


@dataclass
class _Held:
    reason: str
    since: float
    clear_since: float | None = None


class SystemMonitor:
    def __init__(
        self,
        detectors: Sequence[Detector],
        target: PauseTarget,
        *,
        clock: Clock,
        interval: float = 2.0,
        cooldown: float = 5.0,
        free_memory: bool = True,
        generating: Callable[[], bool] | None = None,
    ) -> None:
        self.detectors = list(detectors)
        self.target = target
        self.clock = clock
        self.interval = interval
        self.cooldown = cooldown
        self.free_memory = free_memory
        self._generating_now = generating or (lambda: False)
        self._was_generating = False
        self._progress_seen = False
        self._held: dict[str, _Held] = {}
        self._readings: dict[str, Reading] = {}
        self._logged: dict[str, tuple[Condition, str]] = {}
        self.checks = 0
        self.last_check_ms: float | None = None
        self._inflight: asyncio.Future[list[tuple[str, Reading]]] | None = None
        self._stuck_logged = False

    # --- inputs --------------------------------------------------------------------------------

    def on_progress(self, event: Progress) -> None:
        """A progress event means our own prompt is executing."""
        self._progress_seen = True

    def _take_generating(self) -> bool:
        """Was our own prompt executing at any point since the previous check (as far as we can tell)?"""
        now = bool(self._generating_now())
        result = now or self._was_generating or self._progress_seen
        self._was_generating, self._progress_seen = now, False
        return result

    @property
    def paused_for(self) -> list[str]:
        return [h.reason for h in self._held.values()]

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, *, check_first: bool = True) -> None:
        """Check every ``interval`` until the dream stops. ``check_first=False``: one was just made."""
        log.info(
            "system monitor: checking %s every %gs", ", ".join(d.name for d in self.detectors), self.interval
        )
        if not check_first:
            await self.clock.sleep(self.interval)
        while True:
            if _stopped(self.target):
                return
            await self.check_once()
            await self.clock.sleep(self.interval)

    async def check_once(self) -> None:
        """Ask every detector once and act on the answers. While an earlier check is still stuck in
        its thread (an X server that stopped answering), this one is skipped: never two at once."""
        if self._inflight is not None and not self._inflight.done():
            if not self._stuck_logged:
                log.warning("system monitor: a check is taking very long; skipping checks until it returns")
                self._stuck_logged = True
            return
        self._stuck_logged = False
        ctx = CheckContext(now=self.clock.monotonic(), generating=self._take_generating())
        started = time.perf_counter()
        self._inflight = asyncio.ensure_future(asyncio.to_thread(self._read_all, ctx))
        # shield: a caller's timeout must not lose the answer of a thread that keeps running anyway
        readings = await asyncio.shield(self._inflight)
        self.last_check_ms = round((time.perf_counter() - started) * 1000, 2)
        self.checks += 1
        for name, reading in readings:
            self._readings[name] = reading
            self._log_change(name, reading)
            await self._apply(name, reading, ctx.now)

    def _read_all(self, ctx: CheckContext) -> list[tuple[str, Reading]]:
        out = []
        for d in self.detectors:
            try:
                r = d.check(ctx)
            except Exception as exc:  # one broken detector must not stop the others
                r = Reading(Condition.UNKNOWN, None, f"check failed: {exc!r}")
            out.append((d.name, r))
        return out

    def _log_change(self, name: str, r: Reading) -> None:
        # clear/active change every check in detail; only a change of condition is news there
        key: tuple[Condition, str] = (
            r.condition,
            "" if r.condition in (Condition.CLEAR, Condition.ACTIVE) else r.detail,
        )
        if self._logged.get(name) == key:
            return
        first = name not in self._logged
        self._logged[name] = key
        if r.condition in (Condition.UNAVAILABLE, Condition.UNSUPPORTED):
            log.info("%s detection %s: %s", name, r.condition.value, r.detail)
        elif r.condition is Condition.UNKNOWN:
            log.warning("%s detection failed: %s (keeping the last decision)", name, r.detail)
        elif not first:
            log.debug("%s detection: %s", name, r.detail or r.condition.value)

    async def _apply(self, name: str, r: Reading, now: float) -> None:
        held = self._held.get(name)
        if r.condition is Condition.UNKNOWN:
            return
        if r.condition is Condition.ACTIVE:
            reason = r.reason or name
            if held is None:
                await self._pause(name, reason, now)
            else:
                held.clear_since = None
                if reason != held.reason:
                    await self._swap(held, reason)
            return
        # clear, unavailable or unsupported: none of them keeps us paused
        if held is None:
            return
        if held.clear_since is None:
            held.clear_since = now
        if now - held.clear_since >= self.cooldown:
            await self._resume(name, held)

    async def _pause(self, name: str, reason: str, now: float) -> None:
        if _stopped(self.target):
            return
        first = not self._held
        self._held[name] = _Held(reason, now)  # before pause(): the status it writes shows it
        log.info("pausing: %s", reason)
        try:
            await self.target.pause(reason, free_memory=first and self.free_memory)
        except LifecycleError as exc:
            # Someone else paused for the very same words: it is held either way; do not resume it.
            log.debug("pause %r refused: %s", reason, exc)
            del self._held[name]

    async def _swap(self, held: _Held, reason: str) -> None:
        try:
            await self.target.pause(reason)
        except LifecycleError as exc:
            log.debug("keeping %r (pause %r refused: %s)", held.reason, reason, exc)
            return
        old, held.reason = held.reason, reason
        try:
            await self.target.resume(old)
        except LifecycleError as exc:
            log.debug("%r was already resumed: %s", old, exc)
        log.info("still paused, now for: %s", reason)

    async def _resume(self, name: str, held: _Held) -> None:
        del self._held[name]
        try:
            await self.target.resume(held.reason)
        except LifecycleError as exc:  # resumed by someone else (the user), or the dream stopped
            log.debug("not resuming %r: %s", held.reason, exc)
            return
        log.info("resuming: %s is over", held.reason)

    # --- status --------------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """The ``monitor`` block of status.json."""
        return {
            "interval_s": self.interval,
            "cooldown_s": self.cooldown,
            "paused_for": self.paused_for,
            "checks": self.checks,
            "last_check_ms": self.last_check_ms,
            "detectors": {d.name: _describe_reading(self._readings.get(d.name)) for d in self.detectors},
        }

    def close(self) -> None:
        for d in self.detectors:
            try:
                d.close()
            except Exception:  # closing must not hide the other detectors' close
                log.debug("closing %s failed", d.name, exc_info=True)


def _describe_reading(r: Reading | None) -> dict[str, object]:
    if r is None:
        return {"state": "not checked yet"}
    out: dict[str, object] = {"state": r.condition.value, "detail": r.detail}
    if r.reason:
        out["reason"] = r.reason
    return out


def _stopped(target: PauseTarget) -> bool:
    return target.state == "stopped"
