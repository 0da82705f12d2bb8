"""Service: the one contract of the parts that run beside the dream.

The viewer (``web``), the system monitor (``monitor``), the frame cache (``cache``) and the
Rainmeter writer (``rainmeter``) each implement it; ``app.build_services`` is the one place they
are registered, from the config, for ``dream-window run`` and ``dream-window doctor`` alike. A
service that its config switches off is still built: it starts nothing, has no status section
and says "disabled" to doctor.

The controller owns the lifecycle: it starts every service before its first frame (the system
monitor's first check can pause a dream that has not generated anything yet), asks each for its
status section on every status write and for GPU memory when a game pauses the dream, and closes
them in reverse order once its own tasks have stopped, before the last status write. A service
talks back through :class:`Dream`, the face of the controller services see, and its event bus;
never through lists on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

from dream_window.clock import Clock
from dream_window.config import DreamConfig
from dream_window.dream.frame_cache import FrameCache
from dream_window.dream.output import OutputWriter
from dream_window.dream.prompts import PromptManager
from dream_window.events import EventBus
from dream_window.values.check import Check
from dream_window.values.frame import FrameLabel

log = logging.getLogger(__name__)


class Dream(Protocol):
    """What a service may use of the running dream; the DreamController is the one implementation."""

    @property
    def config(self) -> DreamConfig: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def output(self) -> OutputWriter: ...

    @property
    def prompts(self) -> PromptManager: ...

    @property
    def frame_cache(self) -> FrameCache: ...

    @property
    def state(self) -> str:
        """The lifecycle: ``starting``, ``running``, ``paused`` or ``stopped`` (status.json's
        ``state`` also says ``waiting`` or ``degraded`` while running: see dream/supervisor.py)."""
        ...

    @property
    def generating(self) -> bool: ...

    @property
    def on_screen(self) -> FrameLabel | None:
        """Who the frame on screen is (its prompt, seed, mode ...); None before the first frame."""
        ...

    def snapshot(self) -> dict[str, object]:
        """The status document (what status.json holds)."""
        ...

    async def pause(self, reason: str, *, free_memory: bool = False) -> None:
        """Pause for ``reason`` (reasons stack); generation stops at once."""
        ...

    async def resume(self, reason: str) -> None: ...

    # What the user asks for is on screen with the next frames: these cut the queue.

    async def skip(self) -> str:
        """Move to another prompt; returns it."""
        ...

    async def set_prompt(self, text: str) -> str:
        """Dream of ``text`` (held a while); ValueError for an empty or over-long prompt."""
        ...

    async def set_mode(self, name: str) -> None:
        """Switch modes; ValueError for an unknown name."""
        ...


class Service(Protocol):
    #: Its key in status.json, and its name in logs.
    name: str

    async def start(self, dream: Dream) -> None:
        """Start with the dream (before its first frame). Failures a user can meet (a port in use,
        a damaged database) are logged and shown in :meth:`describe`; the dream goes on."""
        ...

    async def close(self) -> None:
        """Stop, letting work in hand finish (a few seconds at most); safe to call when never started."""
        ...

    def describe(self) -> dict[str, object] | None:
        """Its section of status.json under :attr:`name`, or None for none (switched off)."""
        ...

    async def doctor_checks(self) -> list[Check]:
        """Its lines of ``dream-window doctor``; works without :meth:`start`."""
        ...

    async def free_memory(self) -> None:
        """Give GPU memory back (a game is starting); most services hold none."""
        ...


class ServiceSet:
    """The services of one dream, in start order: started and closed together (closed in reverse),
    their status sections gathered, their GPU memory freed. A service's bug is logged and kept
    to itself: the dream and the other services go on."""

    def __init__(self, services: Sequence[Service]) -> None:
        self._services = tuple(services)
        self._started: list[Service] = []

    def __iter__(self) -> Iterator[Service]:
        return iter(self._services)

    async def start(self, dream: Dream) -> None:
        for service in self._services:
            self._started.append(service)
            try:
                await service.start(dream)
            except Exception:  # the service said nothing itself: a bug; the dream goes on without it
                log.exception("%s did not start", service.name)

    async def close(self) -> None:
        while self._started:
            service = self._started.pop()
            try:
                await service.close()
            except Exception:
                log.exception("%s did not close cleanly", service.name)

    def describe(self) -> dict[str, object]:
        sections: dict[str, object] = {}
        for service in self._services:
            try:
                section = service.describe()
            except Exception:
                log.exception("status of %s failed", service.name)
                continue
            if section is not None:
                sections[service.name] = section
        return sections

    async def free_memory(self) -> None:
        for service in self._services:
            try:
                await service.free_memory()
            except Exception:  # a service's bug must not keep the GPU from the game
                log.exception("free memory (%s) failed", service.name)
