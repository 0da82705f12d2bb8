"""End to end with ComfyUI: a game pauses the dream, the running prompt is interrupted, the server
is asked to free its memory, and the dream resumes against the same server when the game ends.

The server is the ComfyUI-protocol test server (real aiohttp on loopback, real WebSocket), the
backend is the real ComfyUI backend, the game is a real process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.app import build_controller
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.dream.controller import DreamController
from dream_window.monitor import MonitorService
from tests.conftest import fast_config, hang_guard, until
from tests.monitor.conftest import stop_process
from tests.monitor.test_integration import INTERVAL, read_status


@pytest.fixture(autouse=True)
def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)


@dataclass
class Paused:
    server: ComfyTestServer
    controller: DreamController
    game: Any
    frames_at_pause: int


async def running_prompts(server: ComfyTestServer) -> int:
    """How many prompts the server is executing, asked over its public HTTP API."""
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/queue") as r:
        return len((await r.json())["queue_running"])


@pytest.fixture
async def paused_by_a_game(tmp_path: Path, game_process: Any) -> AsyncIterator[Paused]:
    """A dream on ComfyUI, paused by a game that started while a prompt was executing."""
    async with running_comfy_server(root=tmp_path / "comfy", step_delay=0.02) as server:
        cfg = fast_config(
            tmp_path,
            system={"backend": "comfyui", "comfyui_url": server.url},
            generation={"model": "sd15", "width": 64, "height": 128, "steps": 2, "mode": "img2img"},
            comfyui={"sd15_checkpoint": "tiny_sd15.safetensors", "generation_timeout": 20, "max_retries": 1},
            game_detection={
                "enabled": True,
                "check_interval": INTERVAL,
                "cooldown_seconds": 0.3,
                "fullscreen": False,
                "pause_when_unseen": False,  # a developer's own locked screen must not pause it
            },
        )
        backend = create_comfyui_backend(cfg)
        await backend.start()
        controller = build_controller(cfg, backend, fsync=False, services=[MonitorService(cfg)])
        run = asyncio.create_task(controller.run())  # starts the monitor first, closes it last
        try:
            await until(lambda: controller.frame_count >= 2, "frames from ComfyUI")
            server.stall()  # samplers hang before their next step: a prompt stays mid-run
            for _ in range(500):
                if await running_prompts(server):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("no prompt executing")
            game = game_process("eldenring.exe")
            await until(lambda: read_status(controller).get("state") == "paused", "the pause")
            yield Paused(server, controller, game, controller.frame_count)
        finally:
            server.release()
            controller.stop()
            await hang_guard(run, 15)
            await backend.close()


async def test_game_interrupts_frees_and_resumes_against_comfyui(paused_by_a_game: Paused) -> None:
    p = paused_by_a_game
    assert read_status(p.controller)["pause_reason"] == "game: eldenring.exe"
    await until(
        lambda: bool(p.server.seen("/interrupt")) and bool(p.server.seen("/free")), "/interrupt and /free"
    )
    free = p.server.seen("/free")[0].body
    assert free.get("unload_models") is True and free.get("free_memory") is True
    interrupted = {r.body.get("prompt_id") for r in p.server.seen("/interrupt")}
    assert interrupted & {r.body.get("prompt_id") for r in p.server.seen("/prompt", "POST")}  # one of ours
    p.server.release()

    await asyncio.sleep(INTERVAL * 3)
    assert p.controller.frame_count == p.frames_at_pause  # nothing published while the game runs
    posts_before_resume = len(p.server.seen("/prompt", "POST"))

    stop_process(p.game)
    await until(lambda: read_status(p.controller).get("state") == "running", "the resume")
    await until(lambda: p.controller.frame_count >= p.frames_at_pause + 2, "frames after the resume")
    assert len(p.server.seen("/prompt", "POST")) > posts_before_resume  # from the same server


async def test_no_new_prompts_reach_comfyui_while_a_game_runs(paused_by_a_game: Paused) -> None:
    p = paused_by_a_game
    await until(lambda: bool(p.server.seen("/free")), "/free")
    posts = len(p.server.seen("/prompt", "POST"))
    p.server.release()
    await asyncio.sleep(INTERVAL * 4)
    assert len(p.server.seen("/prompt", "POST")) == posts
    assert await running_prompts(p.server) == 0
