"""Wiring: config in, a running dream out. The CLI calls ``run_dream``; tests call the pieces.

Optional components plug in here, each behind its own factory so the core runs without them:
the ComfyUI backend, the frame memory (cache), the system monitor and the viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from dataclasses import dataclass, field
from typing import Any

from dream_window.backends.base import GenerationBackend
from dream_window.backends.builtin import BuiltinEngine
from dream_window.clock import Clock, SystemClock
from dream_window.config import BackendChoice, DreamConfig
from dream_window.dream.controller import DreamController
from dream_window.dream.modes import create_mode
from dream_window.dream.modes.base import ModeContext
from dream_window.dream.output import OutputWriter
from dream_window.dream.prompts import PromptManager
from dream_window.dream.status import StatusWriter
from dream_window.errors import BackendError, ComfyUIError
from dream_window.interpolation.latent_encoder import create_latent_encoder
from dream_window.optional import optional_module
from dream_window.rainmeter import attach_rainmeter
from dream_window.values.seeds import SeedSource

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Background components started with the controller and stopped after it (monitor, viewer)."""

    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)


async def select_backend(config: DreamConfig, choice: BackendChoice) -> tuple[GenerationBackend, list[str]]:
    """The backend to dream with, started. ``auto`` tries ComfyUI and falls back, saying so once."""
    notes: list[str] = []
    if choice is BackendChoice.BUILTIN:
        backend: GenerationBackend = BuiltinEngine()
        await backend.start()
        return backend, notes
    urls = ", ".join(config.system.comfyui_urls)
    try:
        from dream_window.backends.comfyui import create_comfyui_backend
    except ImportError as exc:  # the ComfyUI backend is part of the package; this is a broken install
        if choice is BackendChoice.COMFYUI:
            raise ComfyUIError(f"the ComfyUI backend is not available in this install: {exc}") from exc
        create_comfyui_backend = None  # type: ignore[assignment]
    if create_comfyui_backend is not None:
        backend = create_comfyui_backend(config)
        try:
            await backend.start()
            return backend, notes
        except ComfyUIError as exc:
            with contextlib.suppress(Exception):
                await backend.close()
            if choice is BackendChoice.COMFYUI:
                raise
            reason = str(exc)
    else:
        reason = "ComfyUI backend not installed"
    log.warning("ComfyUI not reachable at %s; falling back to the built-in engine (not AI)", urls)
    log.debug("ComfyUI start failed: %s", reason)
    notes.append(f"ComfyUI not reachable at {urls}: using the built-in engine (not AI)")
    backend = BuiltinEngine()
    await backend.start()
    return backend, notes


def build_controller(
    config: DreamConfig,
    backend: GenerationBackend,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    max_frames: int | None = None,
    notes: list[str] | None = None,
    memory: Any = None,
    fsync: bool = True,
) -> DreamController:
    clock = clock or SystemClock()
    rng = rng or random.Random()
    prompts = PromptManager(config.prompts, clock=clock, rng=rng, base_dir=config.base_dir)
    g = config.generation
    seeds = SeedSource(g.seed_policy, g.seed, rng)
    ctx = ModeContext(
        backend=backend,
        config=g,
        prompt=lambda: prompts.current,
        seeds=seeds,
        encoder=create_latent_encoder(config, backend),
        decode_batch_size=config.interpolation.decode_batch_size,
    )
    mode = create_mode(g.mode, ctx)
    output = OutputWriter(config.output_dir, history_size=g.history_size, fsync=fsync)
    status = StatusWriter(config.output_dir)
    controller = DreamController(
        config=config,
        backend=backend,
        mode=mode,
        prompts=prompts,
        output=output,
        status=status,
        clock=clock,
        memory=memory,
        max_frames=max_frames,
        notes=notes,
    )
    ctx.note = lambda msg: controller.notes.append(msg) if msg not in controller.notes else None
    if ctx.encoder is not None:
        controller.memory_holders.append(ctx.encoder.free_memory)  # a local VAE gives its VRAM back too
    return controller


async def open_memory(config: DreamConfig, rng: random.Random) -> Any:
    """The frame cache (issue: frame memory), or None when disabled or not available."""
    if not config.generation.cache.enabled:
        return None
    mod = optional_module("dream_window.cache")
    opener = getattr(mod, "open_frame_memory", None) if mod is not None else None
    return None if opener is None else await opener(config, rng=rng)


async def start_services(config: DreamConfig, controller: DreamController) -> Services:
    """Start the system monitor and the viewer when they are available and enabled."""
    services = Services()
    for mod_name, fn_name in (
        ("dream_window.monitor", "start_monitor"),
        ("dream_window.web", "start_viewer"),
    ):
        mod = optional_module(mod_name)
        starter = getattr(mod, fn_name, None) if mod is not None else None
        if starter is not None:
            await starter(config, controller, services)
    return services


async def stop_services(services: Services) -> None:
    for t in services.tasks:
        t.cancel()
    await asyncio.gather(*services.tasks, return_exceptions=True)
    for closer in reversed(services.closers):
        with contextlib.suppress(Exception):
            await closer()


async def run_dream(config: DreamConfig, *, backend_choice: BackendChoice, max_frames: int | None) -> int:
    """The main job. Returns the process exit code."""
    rng = random.Random()
    backend, notes = await select_backend(config, backend_choice)
    log.info(
        "dreaming with %s, mode %s, %dx%d, output %s",
        backend.name,
        config.generation.mode,
        config.generation.width,
        config.generation.height,
        config.output_dir,
    )
    memory = None
    services = Services()
    try:
        memory = await open_memory(config, rng)
        controller = build_controller(
            config, backend, rng=rng, max_frames=max_frames, notes=notes, memory=memory
        )
        attach_rainmeter(controller)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no add_signal_handler
                loop.add_signal_handler(sig, _on_signal, controller, sig)
        services = await start_services(config, controller)
        from dream_window.console import attach_console

        detach = attach_console(controller)
        try:
            await controller.run()
        finally:
            detach()
        log.info(
            "stopped after %d frame(s); last frame %s", controller.frame_count, controller.output.current_path
        )
        return 0
    except BackendError as exc:
        log.error("%s", exc)
        return 1
    finally:
        await stop_services(services)
        with contextlib.suppress(Exception):
            await backend.close()


def _on_signal(controller: DreamController, sig: signal.Signals) -> None:
    log.info("received %s: stopping", sig.name)
    controller.stop()
