"""The ComfyUI backend: async client, workflow builders, multi-server pool.

``create_comfyui_backend(config)`` is what ``app.select_backend`` calls; ``doctor_checks(config)``
is what ``dream-window doctor`` runs. Module map:

* ``client``     — ComfyUIClient: HTTP + one WebSocket per server, retries, completion, uploads
* ``messages``   — WebSocket text events and binary preview frames (both header layouts)
* ``validation`` — graph checks against object_info, the recorded error shapes, readable rendering
* ``workflows``  — Flux / SD1.5 / SDXL-Turbo builders and the bring-your-own workflow adapter
* ``latent_file``— ComfyUI .latent files without torch
* ``pool``       — several servers: least busy first, failover, backoff probing
* ``backend``    — ComfyUIBackend (GenerationBackend) with speculative queueing
"""

from __future__ import annotations

import random

from dream_window.backends.base import GenerationBackend
from dream_window.backends.comfyui.backend import ComfyUIBackend
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.pool import ServerPool
from dream_window.backends.comfyui.workflows import (
    CustomWorkflow,
    FluxWorkflowBuilder,
    SD15WorkflowBuilder,
    SDXLTurboWorkflowBuilder,
    create_builder,
)
from dream_window.clock import Clock
from dream_window.config import BackendChoice, DreamConfig
from dream_window.errors import ComfyUIError, ConfigError
from dream_window.values.check import Check

__all__ = [
    "ComfyUIBackend",
    "ComfyUIClient",
    "CustomWorkflow",
    "FluxWorkflowBuilder",
    "SD15WorkflowBuilder",
    "SDXLTurboWorkflowBuilder",
    "ServerPool",
    "create_comfyui_backend",
    "doctor_checks",
]


def _clients(
    config: DreamConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    max_retries: int | None = None,
) -> list[ComfyUIClient]:
    c = config.comfyui
    return [
        ComfyUIClient(
            url,
            clock=clock,
            rng=rng,
            request_timeout=c.request_timeout,
            connect_timeout=c.connect_timeout,
            max_retries=c.max_retries if max_retries is None else max_retries,
        )
        for url in config.system.comfyui_urls
    ]


def create_comfyui_backend(
    config: DreamConfig, *, clock: Clock | None = None, rng: random.Random | None = None
) -> GenerationBackend:
    """The backend for ``config`` (not started: ``await backend.start()``)."""
    builder = create_builder(config.generation.model, config.comfyui, base_dir=config.base_dir)
    pool = ServerPool(_clients(config, clock=clock, rng=rng), clock=clock)
    return ComfyUIBackend(config, pool, builder, clock=clock, rng=rng, speculate=config.comfyui.speculate)


async def doctor_checks(config: DreamConfig) -> list[Check]:
    """Reachable? Models present? Do our graphs validate against the live object_info?"""
    # Without a reachable server the built-in engine takes over in auto mode: a warning, not a failure.
    down: str = "fail" if config.system.backend is BackendChoice.COMFYUI else "warn"
    try:
        builder = create_builder(config.generation.model, config.comfyui, base_dir=config.base_dir)
    except ConfigError as exc:
        return [Check("comfyui workflow", "fail", str(exc))]
    checks: list[Check] = []
    for client in _clients(config, max_retries=0):
        name = f"comfyui {client.base_url}"
        try:
            await client.open()
        except ComfyUIError as exc:
            checks.append(Check(name, down, f"not reachable: {exc}"))  # type: ignore[arg-type]
            continue
        try:
            stats = await client.get_system_stats()
            version = (stats.get("system") or {}).get("comfyui_version", "?")
            checks.append(Check(name, "ok", f"reachable, ComfyUI {version}"))
            backend = ComfyUIBackend(config, ServerPool([client]), builder, speculate=False)
            problems = await backend._check_server(client)
            if problems:
                checks.extend(Check(f"{name} models", "fail", p) for p in problems)
            else:
                checks.append(
                    Check(
                        f"{name} workflow",
                        "ok",
                        f"{builder.family} graphs validate against the server's object_info",
                    )
                )
        except ComfyUIError as exc:
            checks.append(Check(name, "fail", str(exc)))
        finally:
            await client.close()
    return checks
