"""Fixtures for the viewer, control API, Rainmeter files and export: a real controller on the
built-in engine, a real aiohttp server on a loopback port, real files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import DreamConfig
from dream_window.dream.controller import DreamController
from dream_window.dream.frame_cache import FrameCache
from dream_window.dream.service import Service
from dream_window.events import Event, FramePublished
from dream_window.web.server import ViewerServer
from tests.conftest import fast_config, hang_guard


@dataclass
class Dream:
    controller: DreamController
    server: ViewerServer | None
    task: asyncio.Task[None] | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url.rstrip("/")

    def start(self) -> None:
        self.task = asyncio.create_task(self.controller.run())

    async def next_frame(self, within: float = 10.0) -> int:
        """Wait for the next published frame; returns its index."""
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on(event: FramePublished) -> None:
            if not got.done():
                got.set_result(event.index)

        unsubscribe = self.controller.events.subscribe(FramePublished, on)
        try:
            return await hang_guard(got, within)
        finally:
            unsubscribe()

    async def close(self) -> None:
        if self.task is not None:
            self.controller.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await hang_guard(self.task, 10)
        if self.server is not None:
            await self.server.close()


def dream_config(directory: Path, **sections: dict[str, Any]) -> DreamConfig:
    directory.mkdir(parents=True, exist_ok=True)
    # Small frames keep the built-in engine quick on a 2-core box.
    generation = {"width": 128, "height": 192, **sections.pop("generation", {})}
    return fast_config(directory, generation=generation, **sections)


DreamFactory = Callable[..., Awaitable[Dream]]


async def make_dream(
    tmp_path: Path,
    *,
    serve: bool = True,
    run: bool = False,
    frame_cache: FrameCache | None = None,
    services: Callable[[DreamConfig], Sequence[Service]] = lambda cfg: (),
    **sections: dict[str, Any],
) -> Dream:
    cfg = dream_config(
        tmp_path, viewer={"enabled": True, "port": 0, **sections.pop("viewer", {})}, **sections
    )
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False, frame_cache=frame_cache, services=services(cfg))
    server = None
    if serve:
        server = ViewerServer(controller, cfg.viewer)
        await server.start()
    dream = Dream(controller, server)
    controller.events.subscribe(Event, dream.events.append)
    if run:
        dream.start()
    return dream


@pytest.fixture
async def dreams(tmp_path: Path) -> AsyncIterator[DreamFactory]:
    """``await dreams(run=True, viewer={...})`` → a Dream, closed after the test."""
    made: list[Dream] = []

    async def factory(**kwargs: Any) -> Dream:
        d = await make_dream(tmp_path / f"d{len(made)}", **kwargs)
        made.append(d)
        return d

    yield factory
    for d in made:
        await d.close()


async def publish_frames(tmp_path: Path, n: int, **sections: dict[str, Any]) -> DreamController:
    """Run a dream (no viewer) until ``n`` frames are in the history; returns its stopped controller."""
    cfg = dream_config(tmp_path, **sections)
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False, max_frames=n)
    await hang_guard(controller.run(), 30)
    return controller


# --- a real browser: Debian's chromium through Playwright (never `playwright install`) -----------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """One Chromium per test module (the modules' tests run on its loop)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        await b.close()
