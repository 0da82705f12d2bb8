"""Wiring: config in, a running dream out. The CLI calls ``run_dream``; tests call the pieces.

:func:`build_services` is the one place the services that run beside the dream are registered
(the frame cache, the system monitor, the viewer, the Rainmeter writer); ``dream-window doctor``
asks the same list for its checks. :func:`build_controller` makes the event bus first, so the
prompts, the mode's notes and the controller all share it from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from dream_window import early_signals
from dream_window.backends.base import GenerationBackend
from dream_window.cache.service import FrameCacheService
from dream_window.clock import Clock, SystemClock
from dream_window.config import BackendChoice, DreamConfig
from dream_window.console import attach_console
from dream_window.dream.coherence import ColourCoherence
from dream_window.dream.controller import DreamController
from dream_window.dream.frame_cache import FrameCache
from dream_window.dream.modes import create_mode
from dream_window.dream.modes.base import ModeContext
from dream_window.dream.output import OUTPUT_DIR_KEY, OutputWriter, check_output_dir
from dream_window.dream.prompts import PromptManager
from dream_window.dream.service import Service
from dream_window.dream.status import StatusWriter
from dream_window.dream.supervisor import BackendSupervisor
from dream_window.errors import AlreadyRunning, BackendError, ConfigError, ModelUnavailable, WorkflowRejected
from dream_window.events import EventBus, Note
from dream_window.instances import InstanceLock, RegistryService
from dream_window.interpolation.latent_encoder import create_latent_encoder
from dream_window.monitor import MonitorService
from dream_window.quality import QualityService
from dream_window.rainmeter import RainmeterWriter
from dream_window.values.seeds import SeedSource
from dream_window.web import ViewerService
from dream_window.web.security import token_path

log = logging.getLogger(__name__)


def build_services(
    config: DreamConfig, *, frame_cache: FrameCacheService | None = None, config_path: Path | None = None
) -> list[Service]:
    """Every service, in start order (closed in reverse). Each reads its own config section; one
    that is switched off starts nothing. ``frame_cache``: the one the controller was given;
    ``config_path``: the file the dream was started with (commands naming it find this dream)."""
    return [
        frame_cache if frame_cache is not None else FrameCacheService(config),
        MonitorService(config),
        ViewerService(config),
        # After the viewer: it registers the viewer's address for commands run from elsewhere.
        RegistryService(config, config_path=config_path, token_path=token_path),
        RainmeterWriter(config),
        QualityService(config),
    ]


def build_controller(
    config: DreamConfig,
    backend: GenerationBackend,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    max_frames: int | None = None,
    notes: list[str] | None = None,
    frame_cache: FrameCache | None = None,
    services: Sequence[Service] = (),
    fsync: bool = True,
    supervisor: BackendSupervisor | None = None,
    status_clock: Clock | None = None,
) -> DreamController:
    """A controller dreaming with ``backend``: used as it is, or, with ``supervisor``, the one it
    chose (``backend`` is then its ``supervisor.backend``), switched as ComfyUI comes and goes.
    ``status_clock`` paces status.json (the system's unless a test holds it)."""
    clock = clock or SystemClock()
    supervisor = supervisor or BackendSupervisor.fixed(backend, config, clock=clock)
    backend = supervisor.backend
    rng = rng or random.Random()
    events = EventBus()
    prompts = PromptManager(config.prompts, clock=clock, rng=rng, base_dir=config.base_dir, events=events)
    g = config.generation
    seeds = SeedSource(g.seed_policy, g.seed, rng)
    encoder = create_latent_encoder(config, backend)
    ctx = ModeContext(
        backend=backend,
        config=g,
        prompt=lambda: prompts.current,
        seeds=seeds,
        note=lambda text: events.emit(Note(text)),
        encoder=encoder,
        decode_batch_size=config.interpolation.decode_batch_size,
        coherence=(
            ColourCoherence(
                max_strength=g.colour_coherence_strength if g.colour_coherence else 0.0,
                detail_floor=g.detail_floor,
            )
            if g.colour_coherence or g.detail_floor > 0.0
            else None
        ),
    )
    return DreamController(
        config=config,
        backend=backend,
        mode=create_mode(g.mode, ctx),
        mode_factory=lambda name: create_mode(name, ctx),
        supervisor=supervisor,
        prompts=prompts,
        output=OutputWriter(
            config.output_dir,
            history_size=g.history_size,
            history_interval=g.history_every_s,
            fsync=fsync,
            monotonic=clock.monotonic,
        ),
        status=StatusWriter(config.output_dir),
        clock=clock,
        events=events,
        frame_cache=frame_cache,
        services=services,
        encoder=encoder,
        max_frames=max_frames,
        notes=notes,
        status_clock=status_clock,
    )


def stopped_line(frames: int, current: Path) -> str:
    """The last line of a run. A run that made nothing names no file: current_frame.png is
    either absent or an earlier run's picture."""
    if frames == 0:
        return "stopped before the first frame was made"
    return f"stopped after {frames} frame{'s' if frames != 1 else ''}; last frame {current}"


async def run_dream(
    config: DreamConfig,
    *,
    backend_choice: BackendChoice,
    max_frames: int | None,
    config_path: Path | None = None,
) -> int:
    """The main job. Returns the process exit code: 2 when the chosen ComfyUI's model is missing
    or does not load (a setup error). Raises :class:`AlreadyRunning` when another instance dreams
    into the same folder, and :class:`ConfigError` naming ``system.output_dir`` for a folder that
    cannot be made, locked or written (both exit 2 in the CLI)."""
    rng = random.Random()
    clock = SystemClock()
    supervisor = BackendSupervisor.for_config(config, backend_choice, clock=clock)
    try:
        with _output_folder_lock(config.output_dir):
            try:
                await supervisor.start()
            except (ModelUnavailable, WorkflowRejected) as exc:
                log.error("%s", exc)
                return 2
            log.info(
                "dreaming with %s, mode %s, %dx%d, output %s",
                supervisor.backend.name,
                config.generation.mode,
                config.generation.width,
                config.generation.height,
                config.output_dir,
            )
            frame_cache = FrameCacheService(config, rng=rng)
            controller = build_controller(
                config,
                supervisor.backend,
                supervisor=supervisor,
                clock=clock,
                rng=rng,
                max_frames=max_frames,
                frame_cache=frame_cache,
                services=build_services(config, frame_cache=frame_cache, config_path=config_path),
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no add_signal_handler
                    loop.add_signal_handler(sig, _on_signal, controller, sig)
            if early_signals.received() is not None:
                # A signal before these handlers whose exit was swallowed on the way (see
                # early_signals): stop as it asked, cleanly, before a frame is made.
                log.info("received a signal while starting: stopping")
                controller.stop()
            detach = attach_console(controller)
            try:
                await controller.run()  # starts the services first and closes them last
            finally:
                detach()
            log.info("%s", stopped_line(controller.frame_count, controller.output.current_path))
            return 0
    except BackendError as exc:
        log.error("%s", exc)
        return 1
    finally:
        await supervisor.close()


@contextlib.contextmanager
def _output_folder_lock(output_dir: Path) -> Iterator[None]:
    """Hold the one-instance lock on a checked output folder; every way the folder is unusable is
    a :class:`ConfigError` naming ``system.output_dir``."""
    # Check first: on a folder it cannot write, filelock reports "already locked" (a Timeout), which
    # would blame another dream-window for a file in the folder's place or a path under /proc.
    check_output_dir(output_dir)
    lock = InstanceLock(output_dir)
    try:
        lock.acquire()
    except AlreadyRunning:
        raise
    except ConfigError as exc:
        raise ConfigError(f"{OUTPUT_DIR_KEY}: {exc}") from exc
    try:
        yield
    finally:
        lock.release()


def _on_signal(controller: DreamController, sig: signal.Signals) -> None:
    log.info("received %s: stopping", sig.name)
    controller.stop()
