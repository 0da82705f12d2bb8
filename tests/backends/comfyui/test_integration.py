"""The whole dream on ComfyUI: `dream-window run --backend comfyui` in every mode, and a running
controller taken through validation and execution errors, a pause with interrupt and free, a
server restart, a dropped WebSocket and a failover — the loop keeps producing frames throughout."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.app import build_controller
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.dream.controller import State
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import FakeClock, free_port, hang_guard, run_cli, until


@pytest.mark.parametrize("mode", ["img2img", "interpolate", "hybrid"])
async def test_cli_run_against_the_test_server(
    tmp_path: Path, comfy_server: ComfyTestServer, mode: str
) -> None:
    comfy_config(tmp_path, comfy_server.url, generation={"keyframe_interval": 3, "interpolation_frames": 2})
    out = tmp_path / "out"
    code, stderr = await run_cli(
        "run", "--backend", "comfyui", "--mode", mode, "--max-frames", "5",
        "-c", str(tmp_path / "config.yaml"), "-o", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, stderr[-2000:]
    status = json.loads((out / "status.json").read_text())
    assert status["backend"] == "ComfyUI (sd15)" and status["backend_is_ai"] is True
    assert status["frame_count"] == 5 and status["mode"] == mode
    assert (out / "current_frame.png").is_file()
    kinds = {p["prompt"]["1"]["class_type"] for p in (r.body for r in comfy_server.seen("/prompt", "POST"))}
    assert kinds == {"CheckpointLoaderSimple"}
    if mode != "img2img":  # in-betweens were decoded on the server, from uploaded .latent batches
        assert any(
            "LoadLatent" in {n["class_type"] for n in r.body["prompt"].values()}
            for r in comfy_server.seen("/prompt", "POST")
        )


async def test_cli_backend_comfyui_waits_for_a_server_and_says_why(tmp_path: Path) -> None:
    # At login ComfyUI may start after us: `--backend comfyui` waits for it (never falls back),
    # says why in status.json and its log, and stops cleanly.
    port = free_port()
    comfy_config(tmp_path, f"http://127.0.0.1:{port}", comfyui={"probe_interval": 0.2})
    out = tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dream_window",
        "run",
        "--backend",
        "comfyui",
        "-c",
        str(tmp_path / "config.yaml"),
        "-o",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:

        def waiting() -> bool:
            try:
                return json.loads((out / "status.json").read_text())["state"] == "waiting"
            except (OSError, ValueError, KeyError):
                return False

        await until(waiting, "status 'waiting'")
        reason = json.loads((out / "status.json").read_text())["backend_health"]["reason"]
        assert reason == (
            f"ComfyUI at http://127.0.0.1:{port} is not answering: connection refused: nothing is "
            f"listening on 127.0.0.1:{port} (is ComfyUI started?)"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = await hang_guard(proc.communicate(), 30)
    text = stderr.decode()
    assert proc.returncode == 0, text[-2000:]
    assert "is not answering: connection refused" in text and "Traceback" not in text
    assert "ssl:default" not in text  # aiohttp's words never reach the user


@pytest.mark.parametrize("mode", ["hybrid", "img2img"])
async def test_the_loop_survives_every_fault(tmp_path: Path, mode: str) -> None:
    async with (
        running_comfy_server(root=tmp_path / "a", step_delay=0.005) as a,
        running_comfy_server(root=tmp_path / "b", step_delay=0.005) as b,
    ):
        config = comfy_config(tmp_path, [a.url, b.url], generation={"mode": mode, "keyframe_interval": 3})
        backend = create_comfyui_backend(config)
        await backend.start()
        controller = build_controller(config, backend, clock=FakeClock(), fsync=False)
        run = asyncio.create_task(controller.run())

        def healthy() -> bool:
            return bool(controller.snapshot()["backend_health"]["ok"])

        async def more_frames(n: int, why: str) -> None:
            target = controller.frame_count + n
            await until(lambda: controller.frame_count >= target, f"{n} frames after {why}")

        async def failing_then_fixed(break_it: Callable[[], None], fix: Callable[[], None], why: str) -> None:
            break_it()
            await until(lambda: not healthy(), f"the failure to show ({why})")
            fix()
            await until(healthy, f"recovery from the {why}")  # frames already buffered do not count
            await more_frames(2, why)

        try:
            await more_frames(3, "start")
            servers = (a, b)

            def remove_model() -> None:
                for s in servers:
                    s.models["checkpoints"].remove("tiny_sd15.safetensors")

            def restore_model() -> None:
                for s in servers:
                    s.models["checkpoints"].append("tiny_sd15.safetensors")

            await failing_then_fixed(remove_model, restore_model, "validation error")
            await failing_then_fixed(
                lambda: [s.fail_classes.update(KSampler="boom") for s in servers],
                lambda: [s.fail_classes.clear() for s in servers],
                "execution error",
            )

            for s in servers:
                s.stall()
            await asyncio.sleep(0.05)
            await controller.pause("game running", free_memory=True)
            assert controller.state is State.PAUSED
            assert any(s.seen("/interrupt") for s in servers)
            assert all(s.seen("/free") for s in servers)
            for s in servers:
                s.release()
            await controller.resume("game running")
            await more_frames(2, "pause with interrupt")

            await a.restart()
            await b.restart()
            await more_frames(2, "server restart")

            for s in servers:
                s.drop_websockets_after(1)
            await more_frames(2, "dropped websocket")

            # Failover: each server in turn goes away; frames keep coming from the other.
            # (more frames than the buffer holds, so some were generated after the fault)
            depth = config.generation.buffer_size + 2
            await b.refuse_connections()
            await more_frames(depth, "server b down")
            await b.accept_connections()
            await a.refuse_connections()
            await until(lambda: not backend.pool.servers[0].up, "server a taken out")
            await more_frames(depth, "server a down")
            assert (await backend.health()).ok
        finally:
            controller.stop()
            await hang_guard(run, 20)
            await backend.close()
        assert controller.state is State.STOPPED
