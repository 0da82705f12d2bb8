"""The GPU duty cycle against the ComfyUI test server: what the client measured from the execution
messages is what the server's own /history timestamps say, and it reaches status.json's
``comfyui`` section and ``dream-window status``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyui_fake import running_comfy_server
from dream_window.app import build_controller
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import SD15WorkflowBuilder
from dream_window.clock import SystemClock
from dream_window.config import ComfyUIConfig
from dream_window.dream.supervisor import BackendSupervisor
from dream_window.values.generation import GenerationRequest
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import dream_window, hang_guard

STEP_DELAY = 0.02
STEPS = 4
BUILDER = SD15WorkflowBuilder(ComfyUIConfig(sd15_checkpoint="tiny_sd15.safetensors"))
ENDS = ("execution_success", "execution_error", "execution_interrupted")
# More than a message from the test server on this machine takes to arrive, loaded or not: the
# most the client's estimate of the server's clock can lag it by.
MESSAGE_DELAY = 0.05


def graph(seed: int) -> dict[str, Any]:
    req = GenerationRequest(prompt="ocean", seed=seed, width=64, height=64, steps=STEPS)
    return BUILDER.build_txt2img(req, prefix="dream-window/test/duty").graph


async def history_busy_s(url: str, client_id: str, *, since: float = float("-inf")) -> tuple[float, int, int]:
    """The union of our prompts' [execution_start, end] from the server's /history, in seconds,
    cut to what came after ``since`` (the server's wall clock, seconds), how many prompts it spans,
    and how many of them ran to the end (an interrupted one stops early): an independent sweep,
    nothing of duty.py."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/history") as r:
        history = await r.json()
    intervals = []
    completed = 0
    for entry in history.values():
        if entry["prompt"][3].get("client_id") != client_id:
            continue
        stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
        end = next((stamps[e] for e in ENDS if e in stamps), None)
        if "execution_start" in stamps and end is not None:
            intervals.append((stamps["execution_start"] / 1000, end / 1000))
            completed += "execution_success" in stamps
    busy, reached = 0.0, since
    for start, end in sorted(intervals):
        start = max(start, reached)
        if end > start:
            busy += end - start
            reached = end
    return busy, len(intervals), completed


async def test_the_clients_duty_is_the_servers_own_history(tmp_path: Path) -> None:
    async with running_comfy_server(root=tmp_path / "comfy", step_delay=STEP_DELAY) as server:
        began = time.monotonic()
        client = ComfyUIClient(server.url, max_retries=2, backoff_base=0.01)
        await client.open()
        try:
            for seed in range(3):
                await client.run(graph(seed), timeout=20)
            # Two at once: the server runs them one after the other.
            await asyncio.gather(client.run(graph(10), timeout=20), client.run(graph(11), timeout=20))
            duty = client.duty.measure()
            elapsed = time.monotonic() - began
        finally:
            await client.close()
        expected, prompts, completed = await history_busy_s(server.url, client.client_id)
    assert prompts == completed == 5
    assert expected >= prompts * STEPS * STEP_DELAY  # the server's step delay, in its own timestamps
    assert duty.busy_s == pytest.approx(expected, abs=1e-6)
    assert not duty.running
    assert 0 < duty.window_s <= elapsed  # less than a minute since connecting: the window is that long
    assert duty.fraction == pytest.approx(expected / duty.window_s)


async def test_status_json_and_the_status_command_show_the_gpu_duty(tmp_path: Path) -> None:
    async with running_comfy_server(root=tmp_path / "comfy", step_delay=STEP_DELAY) as server:
        config = comfy_config(tmp_path, server.url, generation={"mode": "img2img", "steps": STEPS})
        backend = create_comfyui_backend(config)
        await backend.start()
        try:
            supervisor = BackendSupervisor.fixed(backend, config, clock=SystemClock())
            controller = build_controller(
                config,
                backend,
                supervisor=supervisor,
                fsync=False,
                max_frames=4,
            )
            await hang_guard(controller.run(), 60)  # a hang guard
            await backend.withdraw()  # the work planned ahead: taken off or interrupted
            (srv,) = backend.pool.servers
            # One more prompt through the same socket: once it is done, every earlier prompt's
            # last message has been read too.
            await srv.client.run(graph(99), timeout=20)
            before = time.time()  # the test server stamps its messages with this clock
            await controller.write_status()
            after = time.time()
            status = json.loads((config.output_dir / "status.json").read_text())
            duty = status["comfyui"]["gpu_duty"]
            # The window reaches back window_s from the moment status was written: the whole run
            # while it is under a minute, its last minute when a loaded machine made it longer.
            # Its edge lies between these two (the later edge cuts more), and the client may place
            # it up to one message's delay earlier still (its offset is the least delay it saw).
            window = duty["window_s"]
            late_edge, early_edge = after - window, before - window - MESSAGE_DELAY
            least, _, _ = await history_busy_s(server.url, srv.client.client_id, since=late_edge)
            most, prompts, completed = await history_busy_s(
                server.url, srv.client.client_id, since=early_edge
            )
            whole, _, _ = await history_busy_s(server.url, srv.client.client_id)
        finally:
            await backend.close()
    section = status["comfyui"]
    assert prompts >= 5
    # Every prompt that ran to the end slept its steps; the work withdrawn at the end stopped early.
    assert whole >= completed * STEPS * STEP_DELAY and completed >= 5
    # Rounded to the ms in status.json; on a quiet machine (a run under a minute) least == most.
    assert least - 2e-3 <= duty["busy_s"] <= most + 2e-3
    assert duty["fraction"] == pytest.approx(duty["busy_s"] / duty["window_s"], abs=1e-3)
    assert duty["running"] is False
    assert section["servers"] == [{"url": server.url, "up": True, "gpu_duty": duty}]

    shown = dream_window("status", "-o", str(config.output_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("GPU duty"))
    pct, window, busy = 100 * duty["fraction"], duty["window_s"], duty["busy_s"]
    assert (
        line.split(maxsplit=2)[2].rstrip()
        == f"{pct:.0f}% of the last {window:.0f} s ({busy:.1f} s on our prompts)"
    )
