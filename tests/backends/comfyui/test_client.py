"""ComfyUIClient against the test server: completion, retries, rejection, timeout, drops, restarts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from comfyui_fake import ComfyTestServer
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import SD15WorkflowBuilder
from dream_window.backends.comfyui.messages import Preview
from dream_window.config import ComfyUIConfig
from dream_window.errors import ComfyUITimeout, ComfyUIUnavailable, ExecutionFailed, WorkflowRejected
from dream_window.values.generation import GenerationRequest
from tests.conftest import free_port, hang_guard, until

BUILDER = SD15WorkflowBuilder(ComfyUIConfig(sd15_checkpoint="tiny_sd15.safetensors"))


def graph(seed: int = 1, steps: int = 2, **kw: Any) -> dict[str, Any]:
    req = GenerationRequest(prompt=kw.pop("prompt", "ocean"), seed=seed, width=64, height=64, steps=steps)
    return BUILDER.build_txt2img(req, prefix="dream-window/test/frame", **kw).graph


@pytest.fixture
async def client(comfy_server: ComfyTestServer):  # type: ignore[no-untyped-def]
    c = ComfyUIClient(comfy_server.url, max_retries=2, backoff_base=0.01)
    await c.open()
    yield c
    await c.close()


async def test_run_collects_outputs_from_executed_messages(
    client: ComfyUIClient, comfy_server: ComfyTestServer
) -> None:
    result = await client.run(graph(want_latent=True), timeout=10)
    (img,) = result.files("31")
    (lat,) = result.files("32", "latents")
    # PreviewImage, as ComfyUI writes it: temp/, no subfolder, a per-node random prefix.
    assert (img.type, img.subfolder) == ("temp", "") and img.filename.startswith("ComfyUI_temp_")
    assert (lat.type, lat.subfolder) == ("output", "dream-window/test")
    assert lat.filename.endswith(".latent")
    assert (await client.download(img))[:4] == b"\x89PNG"
    assert comfy_server.seen("/history/" + result.prompt_id) == []  # no round trip on the hot path
    assert (await client.get_output_images(result.prompt_id))["31"] == [img]
    body = comfy_server.seen("/prompt", "POST")[0].body
    assert body["client_id"] == client.client_id and body["prompt_id"] == result.prompt_id


async def test_refused_connection_fails_fast() -> None:
    c = ComfyUIClient(f"http://127.0.0.1:{free_port()}", max_retries=3, backoff_base=0.01)
    with pytest.raises(ComfyUIUnavailable, match=r"unreachable|failed"):
        await c.open()  # open() does not retry: `--backend auto` must fall back quickly
    await c.close()


async def test_5xx_is_retried_then_raised(client: ComfyUIClient, comfy_server: ComfyTestServer) -> None:
    comfy_server.fail_requests(2)
    assert (await client.get_system_stats())["system"]["comfyui_version"] == "0.33.0"
    comfy_server.fail_requests(10)
    with pytest.raises(ComfyUIUnavailable, match="HTTP 500"):
        await client.get_queue()
    comfy_server.fail_requests(0)


async def test_rejected_workflow_is_readable(client: ComfyUIClient) -> None:
    await client.get_object_info()
    g = graph()
    g["1"]["inputs"]["ckpt_name"] = "flux1-dev.safetensors"
    g["20"]["inputs"]["steps"] = 0
    with pytest.raises(WorkflowRejected) as info:
        await client.queue_prompt(g)
    text = str(info.value)
    assert (
        "checkpoint 'flux1-dev.safetensors' is not on the ComfyUI server (put it in ComfyUI's "
        "models/checkpoints folder); it has: corrupt_checkpoint" in text
    )
    assert "node 20 (KSampler) input 'steps': Value 0 smaller than min of 1" in text
    assert set(info.value.node_errors) == {"1", "20"}
    assert client.in_flight_ids() == []


async def test_execution_error(client: ComfyUIClient, comfy_server: ComfyTestServer) -> None:
    comfy_server.fail_classes["VAEDecode"] = "CUDA out of memory"
    with pytest.raises(
        ExecutionFailed, match="node 30 \\(VAEDecode\\) failed: RuntimeError: CUDA out of memory"
    ) as info:
        await client.run(graph(), timeout=10)
    assert info.value.node_type == "VAEDecode" and not info.value.interrupted


async def test_timeout_interrupts_the_prompt(client: ComfyUIClient, comfy_server: ComfyTestServer) -> None:
    comfy_server.stall()
    with pytest.raises(ComfyUITimeout) as info:
        await client.run(graph(), timeout=0.3)
    assert [r.body for r in comfy_server.seen("/interrupt")] == [{"prompt_id": info.value.prompt_id}]
    comfy_server.release()
    assert (await client.run(graph(seed=2), timeout=10)).files("31")


async def test_a_failing_interrupt_still_deletes_the_timed_out_prompt(
    client: ComfyUIClient, comfy_server: ComfyTestServer
) -> None:
    comfy_server.stall()
    await client.queue_prompt(graph())  # runs, stalled
    pid = await client.queue_prompt(graph(seed=2))  # waits behind it
    comfy_server.fail_requests(3, path="/interrupt")  # fails, retries included
    with pytest.raises(ComfyUITimeout):
        await client.wait_for_completion(pid, timeout=0.3)
    assert {"prompt_id": pid} in [r.body for r in comfy_server.seen("/interrupt")]
    assert {"delete": [pid]} in [r.body for r in comfy_server.seen("/queue", "POST")]
    queue = await client.get_queue()
    assert pid not in [item[1] for item in queue["queue_pending"]]  # it will not run later
    comfy_server.release()


async def running_on(server: ComfyTestServer, pid: str) -> None:
    """Until ``pid`` executes on ``server`` (a stalled sampler holds it there); the task waiting for
    it has started by then (until() yields to the loop)."""
    await until(lambda: server.running is not None and server.running.prompt_id == pid, f"{pid} running")


async def test_interrupt_raises_interrupted(client: ComfyUIClient, comfy_server: ComfyTestServer) -> None:
    comfy_server.stall()
    pid = await client.queue_prompt(graph())
    waiter = asyncio.create_task(client.wait_for_completion(pid, timeout=10))
    await running_on(comfy_server, pid)
    await client.interrupt()  # no body: whatever runs
    with pytest.raises(ExecutionFailed) as info:
        await waiter
    assert info.value.interrupted and info.value.prompt_id == pid
    comfy_server.release()


async def test_dropped_websocket_mid_run_resumes(
    client: ComfyUIClient, comfy_server: ComfyTestServer
) -> None:
    comfy_server.step_delay = 0.03
    comfy_server.drop_websockets_after(2)
    progress: list[tuple[int, int]] = []
    result = await client.run(graph(steps=8), timeout=20, on_progress=lambda v, m: progress.append((v, m)))
    assert result.files("31")
    assert client.ws_connects >= 2
    assert progress[0] == (1, 8)


async def test_a_socket_open_but_silent_is_noticed_and_prompts_follow_history_quickly(
    client: ComfyUIClient, comfy_server: ComfyTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.run(graph(seed=1), timeout=10)
    assert client.quiet_poll_s == 5.0  # messages flow: /history only after 5 s of silence
    comfy_server.silence_websockets()
    first = await client.run(graph(seed=2), timeout=20)  # settled by /history, after the long wait
    assert first.files("31") and client.connected
    assert client.quiet_poll_s == 0.5  # open but silent: from now on the short interval
    assert sum("open but silent" in r.getMessage() for r in caplog.records) == 1
    polls = len(comfy_server.seen(f"/history/{first.prompt_id}"))
    await client.run(graph(seed=3), timeout=20)
    await client.run(graph(seed=4), timeout=20)
    assert sum("open but silent" in r.getMessage() for r in caplog.records) == 1  # said once
    assert polls >= 1
    comfy_server.silence_websockets(False)
    await client.run(graph(seed=5), timeout=20)
    assert client.quiet_poll_s == 5.0  # it carries messages again: back to the long wait
    assert any("carries messages again" in r.getMessage() for r in caplog.records)


async def test_server_restart_mid_run_is_reported_not_hung(
    client: ComfyUIClient, comfy_server: ComfyTestServer
) -> None:
    comfy_server.stall()
    pid = await client.queue_prompt(graph())
    waiter = asyncio.create_task(client.wait_for_completion(pid, timeout=30))
    await running_on(comfy_server, pid)
    comfy_server.release()
    comfy_server.stall()
    await comfy_server.restart()
    comfy_server.release()
    with pytest.raises(ExecutionFailed, match="lost prompt"):
        await hang_guard(waiter, 10)
    result = await client.run(graph(seed=5), timeout=10)  # the same client goes on
    assert result.files("31")


async def test_previews_and_progress(client: ComfyUIClient) -> None:
    previews: list[Preview] = []
    progress: list[tuple[int, int]] = []
    await client.run(
        graph(steps=3),
        timeout=10,
        extra_data={"preview_method": "latent2rgb"},
        on_progress=lambda v, m: progress.append((v, m)),
        on_preview=previews.append,
    )
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert len(previews) == 3 and all(p.event == 4 and p.image[:2] == b"\xff\xd8" for p in previews)


async def test_history_race_is_tolerated(client: ComfyUIClient, comfy_server: ComfyTestServer) -> None:
    comfy_server.stall()
    pid = await client.queue_prompt(graph())
    late = asyncio.create_task(client.get_output_images(pid, attempts=10))
    # It has asked at least once while the history is still {} (the prompt is stalled).
    await until(lambda: comfy_server.seen(f"/history/{pid}"), "a history request while it runs")
    assert pid not in comfy_server.history
    comfy_server.release()
    assert (await late)["31"]
    await client.wait_for_completion(pid, timeout=10)


async def test_upload_ring_overwrites(
    client: ComfyUIClient, comfy_server: ComfyTestServer, tmp_path: Path
) -> None:
    a = await client.upload_image(b"\x89PNG first", "in_1.png", subfolder="dream-window/x")
    b = await client.upload_image(b"\x89PNG second", "in_1.png", subfolder="dream-window/x")
    assert a.annotated() == b.annotated() == "dream-window/x/in_1.png"
    assert len(list((comfy_server.root / "input" / "dream-window" / "x").iterdir())) == 1


async def test_a_failing_progress_callback_does_not_kill_the_socket_reader(
    client: ComfyUIClient, comfy_server: ComfyTestServer
) -> None:
    def broken(value: int, maximum: int) -> None:
        raise RuntimeError("display went away")

    first = await client.run(graph(steps=3), timeout=10, on_progress=broken)
    assert first.files("31")
    # The reader still routes messages: the next prompt completes by its WebSocket, not by polling.
    connects = client.ws_connects
    second = await client.run(graph(seed=2, steps=2), timeout=10)
    assert second.files("31") and client.ws_connects == connects
    assert comfy_server.seen("/history/" + second.prompt_id) == []
