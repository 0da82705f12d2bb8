"""The backend supervisor against the ComfyUI test server: a ComfyUI that starts after the dream
is adopted, one that goes away is waited for, then fallen back from and adopted again, a model that
is missing or does not load is named, and the same failure over and over opens the breaker.
Real HTTP and WebSocket, real time (the waits are the point); states read from status.json."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_fake import ComfyTestServer
from dream_window.app import build_controller
from dream_window.clock import SystemClock
from dream_window.config import BackendChoice, DreamConfig
from dream_window.dream.controller import DreamController
from dream_window.dream.supervisor import BackendSupervisor, Health
from dream_window.errors import ModelUnavailable
from dream_window.events import FramePublished
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import free_port, hang_guard, run_cli, until


class Dream:
    """A supervised dream as `dream-window run` makes it, with what it published and said."""

    def __init__(self, config: DreamConfig, choice: BackendChoice) -> None:
        self.config = config
        self.supervisor = BackendSupervisor.for_config(config, choice, clock=SystemClock())
        self.frames: list[FramePublished] = []
        self.controller: DreamController | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.supervisor.start()
        c = build_controller(self.config, self.supervisor.backend, supervisor=self.supervisor, fsync=False)
        c.events.subscribe(FramePublished, self.frames.append)
        self.controller = c
        self.task = asyncio.create_task(c.run())

    def status(self) -> dict[str, Any]:
        return json.loads((self.config.output_dir / "status.json").read_text(encoding="utf-8"))

    def state(self) -> str:
        return str(self.status()["state"])

    def comfy_frames(self) -> list[FramePublished]:
        return [f for f in self.frames if f.backend.startswith("ComfyUI")]

    async def close(self) -> None:
        if self.controller is not None and self.task is not None:
            self.controller.stop()
            await hang_guard(self.task, 20)
        await self.supervisor.close()


def config_for(tmp_path: Path, url: str, **comfyui: Any) -> DreamConfig:
    return comfy_config(
        tmp_path,
        url,
        system={"backend": "auto", "fallback_after_seconds": 2},
        generation={"mode": "hybrid", "keyframe_interval": 3, "frame_interval": 0.1},
        comfyui={"probe_interval": 0.2, "connect_timeout": 1, "max_retries": 0, **comfyui},
    )


async def test_a_comfyui_that_starts_after_the_dream_is_adopted(tmp_path: Path) -> None:
    port = free_port()
    dream = Dream(config_for(tmp_path, f"http://127.0.0.1:{port}"), BackendChoice.AUTO)
    await dream.start()
    server: ComfyTestServer | None = None
    try:
        # Nothing answers yet: the built-in engine fills in, and status says why.
        await until(lambda: len(dream.frames) >= 3, "built-in frames")
        s = dream.status()
        assert s["state"] == "degraded" and s["backend_is_ai"] is False
        assert "connection refused" in s["backend_health"]["reason"]
        assert dream.frames[0].backend == "built-in engine (not AI)"
        await asyncio.sleep(20)  # ComfyUI takes its time to boot at login
        server = ComfyTestServer(port=port, root=tmp_path / "comfy", step_delay=0.005)
        await server.start()
        await until(lambda: dream.comfy_frames(), "a ComfyUI frame after it started", limit=20)
        s = dream.status()
        assert s["state"] == "running" and s["backend"] == "ComfyUI (sd15)" and s["backend_is_ai"]
        assert s["backend_health"]["reason"] is None
        # The switch is a transition from the last built-in frame, not a cut.
        first = dream.frames.index(dream.comfy_frames()[0])
        assert dream.frames[first].kind == "transition"
        # The model check ran before the first frame: one step at 64x64, nothing kept.
        checks = [
            r for r in server.seen("/prompt", "POST") if "dream-window model check" in json.dumps(r.body)
        ]
        assert checks
    finally:
        await dream.close()
        if server is not None:
            await server.stop()


async def test_comfyui_going_away_is_waited_for_then_fallen_back_from_then_adopted_again(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = ComfyTestServer(port=port, root=tmp_path / "comfy", step_delay=0.005)
    await server.start()
    dream = Dream(config_for(tmp_path, server.url), BackendChoice.AUTO)
    await dream.start()
    try:
        await until(lambda: len(dream.comfy_frames()) >= 3, "ComfyUI frames")
        assert dream.state() == "running"
        await server.stop()  # killed
        await until(lambda: dream.state() == "waiting", "waiting")
        # The first failure may be a request cut mid-way (a reset); the next probe finds nothing
        # listening, and that is what status says while it waits.
        refused = (
            f"ComfyUI at {server.url} is not answering: connection refused: nothing is listening "
            f"on 127.0.0.1:{port} (is ComfyUI started?)"
        )
        await until(lambda: dream.status()["backend_health"]["reason"] == refused, "the reason: refused")
        assert dream.state() == "waiting"
        # Waiting, not yet fallen back: the last ComfyUI frame stays, nothing else was published.
        assert all(f.backend.startswith("ComfyUI") for f in dream.frames)
        await until(lambda: dream.state() == "degraded", "the fallback")
        assert dream.status()["backend_is_ai"] is False
        n = len(dream.frames)
        await until(lambda: len(dream.frames) > n + 2, "built-in frames while ComfyUI is away")
        server = ComfyTestServer(port=port, root=tmp_path / "comfy2", step_delay=0.005)
        await server.start()
        n = len(dream.comfy_frames())
        await until(lambda: len(dream.comfy_frames()) > n, "ComfyUI frames again", limit=20)
        assert dream.state() == "running"
    finally:
        await dream.close()
        await server.stop()


async def test_a_missing_model_is_named_and_auto_falls_back_with_the_reason(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    cfg = config_for(tmp_path, comfy_server.url, sd15_checkpoint="v1-5-pruned-emaonly.safetensors")
    with pytest.raises(ModelUnavailable) as info:
        await BackendSupervisor.for_config(cfg, BackendChoice.COMFYUI, clock=SystemClock()).start()
    assert "checkpoint 'v1-5-pruned-emaonly.safetensors' is not on the ComfyUI server" in str(info.value)
    assert "models/checkpoints" in str(info.value) and "it has: " in str(info.value)

    dream = Dream(cfg, BackendChoice.AUTO)
    await dream.start()
    try:
        await until(lambda: dream.frames, "built-in frames")
        s = dream.status()
        assert s["state"] == "degraded" and "v1-5-pruned-emaonly.safetensors" in s["backend_health"]["reason"]
    finally:
        await dream.close()


async def test_cli_exits_2_naming_a_missing_or_broken_model(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    for name, words in (
        ("v1-5-pruned-emaonly.safetensors", "is not on the ComfyUI server"),
        ("corrupt_checkpoint.safetensors", "header too"),  # the server's own words: SafetensorError
    ):
        config_for(tmp_path, comfy_server.url, sd15_checkpoint=name)
        code, text = await run_cli(
            "run",
            "--backend",
            "comfyui",
            "--max-frames",
            "1",
            "-c",
            str(tmp_path / "config.yaml"),
            cwd=tmp_path,
        )
        assert code == 2, text[-2000:]
        assert words in text and name in text and "Traceback" not in text


def sampling_prompts(server: ComfyTestServer) -> int:
    """Prompts that sampled, or tried to: the failures the breaker counts and the steps planned
    behind them. Hybrid's decode-only prompts (the in-betweens of keyframes made before the fault,
    a number that depends on timing: a clean-clone run drew 2 more) are frames already made, not
    retries."""
    return sum(
        any("Sampler" in str(node.get("class_type", "")) for node in entry["prompt"][2].values())
        for entry in server.history.values()
    )


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("sampler", "illegal memory access"),
        ("model", "header too small"),  # the checkpoint stopped loading (a truncated file)
    ],
)
async def test_the_same_failure_again_and_again_opens_the_breaker(
    tmp_path: Path, comfy_server: ComfyTestServer, fault: str, words: str
) -> None:
    cfg = config_for(tmp_path, comfy_server.url, breaker_threshold=3, breaker_retry_seconds=1.5)
    dream = Dream(cfg, BackendChoice.AUTO)
    await dream.start()
    try:
        await until(lambda: len(dream.comfy_frames()) >= 2, "ComfyUI frames")
        if fault == "sampler":
            comfy_server.fail_classes["KSampler"] = "CUDA error: an illegal memory access was encountered"
        else:
            comfy_server.break_model("tiny_sd15.safetensors")
            comfy_server.executor.free()  # (as after /free: the loader runs again, and fails)
        before = sampling_prompts(comfy_server)
        await until(lambda: dream.state() == "degraded", "the breaker to open")
        s = dream.status()
        assert s["backend_health"]["breaker"]["open"] is True
        assert "3 times in a row" in s["backend_health"]["reason"]
        assert words in s["backend_health"]["reason"]
        opened = sampling_prompts(comfy_server)
        await asyncio.sleep(4.0)  # no hot retry loop: only a check every 1.5 s
        checks = sampling_prompts(comfy_server) - opened
        assert checks <= 4, f"{checks} prompts in 4 s with the breaker open"
        # Before it opened: the three failures, each with at most the one planned step behind it
        # (prompts that sampled: see sampling_prompts).
        assert opened - before <= 2 * 3 + 1
        failed = [e for e in comfy_server.history.values() if e["status"]["status_str"] == "error"]
        assert len(failed) >= 3  # (the three in a row the breaker counted are there)
        comfy_server.fail_classes.clear()
        comfy_server.fix_model("tiny_sd15.safetensors")
        await until(lambda: dream.state() == "running", "the breaker to close")
        n = len(dream.comfy_frames())
        await until(lambda: len(dream.comfy_frames()) > n, "ComfyUI frames after the breaker closed")
        assert dream.supervisor.state is Health.RUNNING
    finally:
        await dream.close()
