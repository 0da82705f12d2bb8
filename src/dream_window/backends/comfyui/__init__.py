"""The ComfyUI backend: async client, graph builders, multi-server pool.

``create_comfyui_backend(config)`` is what the app calls; ``doctor_checks(config)`` is what
``dream-window doctor`` runs. Module map:

* ``client``       — ComfyUIClient: HTTP + one WebSocket per server, retries, completion, uploads
* ``reasons``      — why a request did not get through, in plain words
* ``messages``     — WebSocket text events and binary preview frames (both header layouts)
* ``validation``   — graph checks against object_info, the recorded error shapes, readable rendering
* ``graphs/``      — one builder per model family, the bring-your-own workflow adapter, walk noise
* ``latent_file``  — ComfyUI .latent files without torch
* ``pool``         — several servers: least busy first, failover, probing back every probe_interval
* ``server_files`` — where each returned picture lives on which server; upload name rings
* ``jobs``         — one job on one server: feed, queue, wait, download, re-feed after a restart
* ``speculation``  — working ahead on the mode's plan; withdrawing it as a unit
* ``walk_runner``  — the latent walk, spread over the pool, next segment queued behind
* ``probe``        — the start-up check of our graphs against a server (doctor runs it too), and
                     the model check's request
* ``backend``      — ComfyUIBackend: the thin GenerationBackend facade over the above
"""

from __future__ import annotations

import random

from dream_window.backends.comfyui.backend import ComfyUIBackend
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import create_builder
from dream_window.backends.comfyui.pool import ServerPool
from dream_window.backends.comfyui.probe import check_server, probe_request
from dream_window.clock import Clock
from dream_window.config import BackendChoice, DreamConfig
from dream_window.errors import ComfyUIError, ConfigError
from dream_window.values.check import Check

__all__ = ["ComfyUIBackend", "ComfyUIClient", "ServerPool", "create_comfyui_backend", "doctor_checks"]


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
) -> ComfyUIBackend:
    """The backend for ``config`` (not started: ``await backend.start()``)."""
    builder = create_builder(config.generation.model, config.comfyui, base_dir=config.base_dir)
    # A server that is down is probed again every probe_interval, not after a growing backoff: it
    # is back within that long of answering.
    pool = ServerPool(
        _clients(config, clock=clock, rng=rng), clock=clock, max_backoff=config.comfyui.probe_interval
    )
    return ComfyUIBackend(
        config.comfyui,
        pool,
        builder,
        probe=probe_request(config.generation),
        walk=config.interpolation.walk,
        speculate=config.comfyui.speculate,
    )


async def doctor_checks(config: DreamConfig, *, deep: bool = False) -> list[Check]:
    """Reachable? Models present? Do our graphs validate against the live object_info? ``deep``:
    also run the model check the dream runs at start (a one-step 64x64 generation), timed."""
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
            found = await check_server(
                client, builder, probe_request(config.generation), walk=config.interpolation.walk != "off"
            )
            if found.problems:
                checks.extend(Check(f"{name} models", "fail", p) for p in found.problems)
            else:
                checks.append(
                    Check(
                        f"{name} workflow",
                        "ok",
                        f"{builder.family} graphs validate against the server's object_info",
                    )
                )
            if found.walk_problems:
                level = "fail" if config.interpolation.walk == "on" else "warn"
                detail = "; ".join(found.walk_problems)
                checks.append(Check(f"{name} latent walk", level, f"cannot run here ({detail})"))  # type: ignore[arg-type]
        except ComfyUIError as exc:
            checks.append(Check(name, "fail", str(exc)))
        finally:
            await client.close()
    if deep and checks and not any(c.level == "fail" for c in checks):
        checks.append(await _model_check(config))
    return checks


async def _model_check(config: DreamConfig) -> Check:
    backend = create_comfyui_backend(config)
    try:
        await backend.start()
        seconds = await backend.check_model()
    except ComfyUIError as exc:
        return Check("comfyui model check", "fail", str(exc))
    finally:
        await backend.close()
    return Check(
        "comfyui model check",
        "ok",
        f"{config.generation.model.value} loads and makes an image: first image in {seconds:.1f} s",
    )
