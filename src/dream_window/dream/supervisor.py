"""BackendSupervisor: which backend makes the frames, and whether any can. One owner for it.

The dream holds one :class:`~dream_window.backends.switching.SwitchingBackend`; the supervisor
points it at ComfyUI or at the built-in engine and says, in one state with a reason, what is
going on:

* ``running``  — the backend you chose makes the frames;
* ``waiting``  — no frame can be made now: ComfyUI is not answering (with ``auto``, for the first
  ``system.fallback_after_seconds``; with ``comfyui``, until it answers). The last frame stays;
* ``degraded`` — the built-in engine fills in for ComfyUI (``auto``), or the circuit breaker is
  open after the same error ``comfyui.breaker_threshold`` times in a row.

With ``backend: auto`` ComfyUI is checked every ``comfyui.probe_interval`` seconds while it is not
in use, and adopted the moment it answers *and* its model check passes (a one-step 64x64
generation: a missing or unloadable model is named then, not at the first frame). A switch
happens between two batches: the controller restarts the mode from the newest frame (a short
transition in the new backend's latent space, not a cut). ``backend: comfyui`` never falls back
but goes through the same states; a missing or broken model at start is a setup error (exit 2).

A backend handed in as it is (:meth:`BackendSupervisor.fixed`: ``--backend builtin``, tests)
never switches; its failures still go through the states and the breaker, and a server that is
down is retried every ``probe_interval`` (its server pool probes it back), not after an ever
growing backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum

from dream_window.backends.base import GenerationBackend
from dream_window.backends.builtin import BuiltinEngine
from dream_window.backends.comfyui import ComfyUIBackend, create_comfyui_backend
from dream_window.backends.switching import SwitchingBackend
from dream_window.clock import Clock, iso
from dream_window.config import BackendChoice, DreamConfig
from dream_window.dream.breaker import CircuitBreaker
from dream_window.errors import (
    ComfyUIError,
    ComfyUIUnavailable,
    DreamWindowError,
    ModelUnavailable,
    WorkflowRejected,
)

log = logging.getLogger(__name__)


def exc_server(exc: BaseException) -> str:
    return getattr(exc, "server", None) or "?"


class Health(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    DEGRADED = "degraded"


# Points the dream's backend elsewhere: the controller runs ``apply`` between two batches and
# restarts the mode in the new backend's latent space.
SwitchHook = Callable[[Callable[[], None]], Awaitable[None]]


async def _apply_now(apply: Callable[[], None]) -> None:
    apply()


class BackendSupervisor:
    def __init__(
        self,
        initial: GenerationBackend,
        *,
        clock: Clock,
        choice: BackendChoice,
        make_comfyui: Callable[[], ComfyUIBackend] | None = None,
        urls: str = "",
        fallback_after: float = 30.0,
        probe_interval: float = 1.0,
        breaker_threshold: int = 3,
        breaker_retry: float = 20.0,
    ) -> None:
        self.backend = SwitchingBackend(initial)
        self._clock = clock
        self._choice = choice
        self._make_comfyui = make_comfyui
        self._urls = urls
        self._fallback_after = fallback_after
        self.probe_interval = probe_interval
        self.breaker = CircuitBreaker(threshold=breaker_threshold, retry_after=breaker_retry, clock=clock)
        self._comfy: ComfyUIBackend | None = initial if isinstance(initial, ComfyUIBackend) else None
        self._builtin: GenerationBackend | None = initial if not initial.is_ai else None
        self._hook: SwitchHook = _apply_now
        self.state = Health.RUNNING
        self.reason: str | None = None
        self._since = clock.monotonic()
        self._since_wall: datetime = clock.now()
        self._down_since: float | None = None
        self._next_check = 0.0
        self._failures = 0
        self._checked = False
        self._ready = asyncio.Event()
        self._ready.set()
        # Told of every change of state or reason (the controller announces it and writes status).
        self.listener: Callable[[], None] = lambda: None

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def fixed(cls, backend: GenerationBackend, config: DreamConfig, *, clock: Clock) -> BackendSupervisor:
        """Supervise ``backend`` as it is: it is never switched for another."""
        c = config.comfyui
        return cls(
            backend,
            clock=clock,
            choice=BackendChoice.COMFYUI if backend.is_ai else BackendChoice.BUILTIN,
            probe_interval=c.probe_interval,
            breaker_threshold=c.breaker_threshold,
            breaker_retry=c.breaker_retry_seconds,
        )

    @classmethod
    def for_config(cls, config: DreamConfig, choice: BackendChoice, *, clock: Clock) -> BackendSupervisor:
        """The supervisor ``dream-window run`` uses (call :meth:`start` next)."""
        c = config.comfyui
        make = (
            None if choice is BackendChoice.BUILTIN else (lambda: create_comfyui_backend(config, clock=clock))
        )
        # Before start() the dream's backend is ComfyUI's, unconnected (its name is what status shows).
        initial: GenerationBackend = BuiltinEngine() if make is None else make()
        supervisor = cls(
            initial,
            clock=clock,
            choice=choice,
            make_comfyui=make,
            urls=", ".join(config.system.comfyui_urls),
            fallback_after=config.system.fallback_after_seconds,
            probe_interval=c.probe_interval,
            breaker_threshold=c.breaker_threshold,
            breaker_retry=c.breaker_retry_seconds,
        )
        supervisor._comfy = None  # (the unconnected one is not in use: start() connects its own)
        return supervisor

    def set_switch_hook(self, hook: SwitchHook) -> None:
        self._hook = hook

    # --- the states --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a frame can be tried now: false only while the ComfyUI the dream needs is not
        connected (waiting for it, or its breaker open with no fallback)."""
        active = self.backend.active
        return self._make_comfyui is None or active is self._builtin or active is self._comfy

    async def until_ready(self) -> None:
        await self._ready.wait()

    @property
    def on_comfyui(self) -> bool:
        return self._comfy is not None and self.backend.active is self._comfy

    def _set(self, state: Health, reason: str | None) -> None:
        if self.ready:
            self._ready.set()
        else:
            self._ready.clear()
        if (state, reason) == (self.state, self.reason):
            return
        if state is not self.state:
            self._since, self._since_wall = self._clock.monotonic(), self._clock.now()
        if state is Health.RUNNING:
            log.info("backend: %s%s", self.backend.name, f" ({reason})" if reason else "")
        else:
            log.warning("backend %s: %s", state.value, reason)
        self.state, self.reason = state, reason
        self.listener()

    def describe(self) -> dict[str, object]:
        """status.json's ``backend_health``."""
        return {
            "ok": self.state is Health.RUNNING,
            "state": self.state.value,
            "reason": self.reason,
            "since": iso(self._since_wall),
            "backend": self.backend.name,
            "choice": self._choice.value,
            "breaker": self.breaker.describe(),
            # (kept for readers of the first wave's status: one line of what is going on)
            "detail": self.reason or f"{self.backend.name} ok",
        }

    # --- start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Choose the first backend. With ``comfyui`` a missing or unloadable model raises
        ModelUnavailable (a setup error); anything else leaves the dream waiting or falling back."""
        if self._make_comfyui is None:
            await self.backend.active.start()
            self._builtin = self.backend.active
            self._set(Health.RUNNING, None)
            return
        try:
            comfy = await self._connect()
        except (ModelUnavailable, WorkflowRejected) as exc:
            if self._choice is BackendChoice.COMFYUI:
                raise
            await self._fall_back(f"{exc}; dreaming with the built-in engine (not AI)")
            self._next_check = self._clock.monotonic() + self.breaker.retry_after
        except ComfyUIError as exc:
            self._down_since = self._clock.monotonic()
            if self._choice is BackendChoice.COMFYUI:
                self._set(Health.WAITING, self._unreachable(exc))
            else:
                await self._fall_back(self._fallback_reason(exc))
        else:
            await self._adopt(comfy)

    async def _connect(self) -> ComfyUIBackend:
        """A new ComfyUI backend, started and its model checked, or the error that stopped it."""
        assert self._make_comfyui is not None
        comfy = self._make_comfyui()
        try:
            await comfy.start()
            # Said once: later checks (every probe or breaker interval) would repeat it.
            level = logging.INFO if not self._checked else logging.DEBUG
            self._checked = True
            log.log(
                level, "ComfyUI answers: checking that the model loads (the first load can take a minute)"
            )
            seconds = await comfy.check_model()
        except BaseException:
            with contextlib.suppress(Exception):
                await comfy.close()
            raise
        log.info("ComfyUI model check passed: first image in %.1f s", seconds)
        return comfy

    async def _adopt(self, comfy: ComfyUIBackend) -> None:
        old = self._comfy
        self._comfy = comfy
        await self._hook(lambda: self.backend.point_at(comfy))
        if old is not None and old is not comfy:
            with contextlib.suppress(Exception):
                await old.close()
        self._down_since = None
        self.breaker.succeeded()
        self._set(Health.RUNNING, None)

    async def _fall_back(self, reason: str) -> None:
        if self._builtin is None:
            self._builtin = BuiltinEngine()
            await self._builtin.start()
        builtin = self._builtin
        if self.backend.active is not builtin:
            await self._hook(lambda: self.backend.point_at(builtin))
        self._set(Health.DEGRADED, reason)

    async def _drop_comfyui(self) -> None:
        """The ComfyUI backend in use is gone or broken: close it; checks make a new one."""
        comfy, self._comfy = self._comfy, None
        if comfy is not None:
            with contextlib.suppress(Exception):
                await comfy.close()

    # --- what the producer reports ---------------------------------------------------------------

    async def failed(self, exc: Exception) -> float:
        """A batch failed with ``exc``; returns the seconds to wait before the next try (the
        producer then also waits for :attr:`ready`)."""
        switching = self._make_comfyui is not None
        if isinstance(exc, ComfyUIUnavailable) and self.backend.active.is_ai:
            self.breaker.succeeded()  # unreachable is not a failure of the work
            if self._down_since is None:
                self._down_since = self._clock.monotonic()
            self._set(Health.WAITING, self._unreachable(exc))
            if switching:
                await self._drop_comfyui()
                if self._choice is BackendChoice.AUTO and self._fallback_after <= 0:
                    await self._fall_back(self._fallback_reason(exc))
                return 0.0
            return self.probe_interval  # a fixed backend: its pool probes the server back
        if isinstance(exc, ComfyUIError) and self.backend.active.is_ai:
            if self.breaker.open or self.breaker.failed(exc):
                return await self._breaker_opened(exc)
            self._set(Health.WAITING, f"generation failed: {exc} (retrying)")
            return min(self.probe_interval, 0.5 * self.breaker.failures)
        # The built-in engine failing, or a bug: keep the dream alive, back off a little.
        self._failures += 1
        what = "" if isinstance(exc, DreamWindowError) else "unexpected "  # (a bug: the log has it)
        self._set(Health.WAITING, f"generation failed: {what}{type(exc).__name__}: {exc} (retrying)")
        return min(self.probe_interval * 5, 0.5 * 2 ** min(self._failures - 1, 6))

    async def _breaker_opened(self, exc: Exception) -> float:
        n = self.breaker.threshold
        reason = (
            f"ComfyUI failed the same way {n} times in a row: {exc}; "
            f"trying again every {self.breaker.retry_after:g} s"
        )
        if self._make_comfyui is None:
            self._set(Health.DEGRADED, reason)
            return self.breaker.retry_after  # the next real generation is the half-open check
        await self._drop_comfyui()
        if self._choice is BackendChoice.AUTO:
            await self._fall_back(f"{reason}; dreaming with the built-in engine (not AI) meanwhile")
        else:
            self._set(Health.DEGRADED, reason)
        return 0.0

    def succeeded(self) -> None:
        """A batch came out: what failed before works again."""
        self._failures = 0
        if self.backend.active.is_ai or self._choice is BackendChoice.BUILTIN:
            self.breaker.succeeded()
            self._down_since = None
            self._set(Health.RUNNING, None)
        elif self.state is Health.WAITING and self.backend.active is self._builtin:
            self._set(Health.DEGRADED, self.reason)

    def _unreachable(self, exc: BaseException) -> str:
        """The same words for the same outage, whichever request found it."""
        reason = exc.reason if isinstance(exc, ComfyUIUnavailable) else str(exc)
        return f"ComfyUI at {self._urls or exc_server(exc)} is not answering: {reason}"

    def _fallback_reason(self, exc: BaseException) -> str:
        return f"{self._unreachable(exc)}; dreaming with the built-in engine (not AI) until it does"

    # --- the watch ---------------------------------------------------------------------------------

    @property
    def switches(self) -> bool:
        """Whether it may point the dream at another backend (and so has ComfyUI to look for)."""
        return self._make_comfyui is not None

    async def check_once(self) -> None:
        """One look: adopt ComfyUI when it answers and its model loads; fall back when it has been
        away for ``fallback_after_seconds`` (auto)."""
        if self._make_comfyui is None or self.on_comfyui:
            return
        now = self._clock.monotonic()
        if self.breaker.open and not self.breaker.check_due():
            return
        if now < self._next_check:
            return
        try:
            comfy = await self._connect()
        except (ModelUnavailable, WorkflowRejected) as exc:
            # It answers, but the model (or graph) is wrong: that will not change in a second.
            self._next_check = self._clock.monotonic() + self.breaker.retry_after
            if self.breaker.open:
                self.breaker.check_failed(exc)
            await self._not_yet(str(exc), answering=True)
        except ComfyUIError as exc:
            if self.breaker.open:
                self.breaker.check_failed(exc)
            await self._not_yet(self._unreachable(exc), answering=False)
        else:
            await self._adopt(comfy)

    async def _not_yet(self, reason: str, *, answering: bool) -> None:
        waited = self._clock.monotonic() - (self._down_since or self._clock.monotonic())
        if self._choice is BackendChoice.AUTO:
            if self.backend.active is self._builtin or answering or waited >= self._fallback_after:
                await self._fall_back(f"{reason}; dreaming with the built-in engine (not AI) until it does")
            else:
                self._set(Health.WAITING, reason)
        elif not self.breaker.open:
            self._set(Health.WAITING, reason)

    async def close(self) -> None:
        for backend in {id(b): b for b in (self._comfy, self._builtin, self.backend.active) if b}.values():
            with contextlib.suppress(Exception):
                await backend.close()
