"""Model files in the test server: the first load after a start or ``/free`` takes
``model_load_delay`` (counted in ``stats.model_loads``), and broken files fail as recorded.

Nothing here times the wall clock: the server's own record (``stats.model_loads``,
``loaded_models``, the node running now) says what happened.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyui_fake import ComfyTestServer, running_comfy_server
from tests.conftest import load_json, until

CHECKPOINT = "tiny_sd15.safetensors"
_seeds = itertools.count(1)


def txt2img(checkpoint: str = CHECKPOINT) -> dict[str, Any]:
    """The recorded txt2img graph at 64 px, with a fresh seed so the sampler runs every time."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a window", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": next(_seeds),
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "loads", "images": ["8", 0]}},
    }


async def submit(server: ComfyTestServer, http: aiohttp.ClientSession, graph: dict[str, Any]) -> str:
    async with http.post(server.url + "/prompt", json={"prompt": graph}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["prompt_id"])


async def finished(server: ComfyTestServer, prompt_id: str) -> dict[str, Any]:
    """The prompt's history entry, once it is written."""
    await until(lambda: prompt_id in server.history)
    return server.history[prompt_id]


async def run(server: ComfyTestServer, http: aiohttp.ClientSession, graph: dict[str, Any]) -> dict[str, Any]:
    return await finished(server, await submit(server, http, graph))


def events(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {event: data for event, data in entry["status"]["messages"]}


async def test_a_model_is_loaded_once_until_free_unloads_it(tmp_path: Path) -> None:
    async with (
        running_comfy_server(root=tmp_path / "c", model_load_delay=0.01) as server,
        aiohttp.ClientSession() as http,
    ):
        assert server.stats.model_loads == 0 and server.loaded_models == frozenset()
        first = await run(server, http, txt2img())
        assert first["status"]["status_str"] == "success"
        assert server.stats.model_loads == 1 and server.loaded_models == {CHECKPOINT}
        # Another seed: the sampler runs again, the loader's output is cached; no second load.
        second = await run(server, http, txt2img())
        assert "4" in events(second)["execution_cached"]["nodes"]
        assert server.stats.model_loads == 1
        async with http.post(server.url + "/free", json={"unload_models": True, "free_memory": True}) as r:
            assert r.status == 200
        assert server.loaded_models == frozenset()
        third = await run(server, http, txt2img())
        assert events(third)["execution_cached"]["nodes"] == []
        assert server.stats.model_loads == 2 and server.loaded_models == {CHECKPOINT}


@pytest.mark.parametrize("body", [{"unload_models": True}, {"free_memory": True}])
async def test_either_free_flag_unloads(comfy_server: ComfyTestServer, body: dict[str, bool]) -> None:
    async with aiohttp.ClientSession() as http:
        await run(comfy_server, http, txt2img())
        async with http.post(comfy_server.url + "/free", json=body):
            pass
        await run(comfy_server, http, txt2img())
    assert comfy_server.stats.model_loads == 2


async def test_a_free_without_flags_keeps_the_model(comfy_server: ComfyTestServer) -> None:
    async with aiohttp.ClientSession() as http:
        await run(comfy_server, http, txt2img())
        async with http.post(comfy_server.url + "/free", json={}):
            pass
        await run(comfy_server, http, txt2img())
    assert comfy_server.stats.model_loads == 1


async def test_a_restart_loads_again(comfy_server: ComfyTestServer) -> None:
    async with aiohttp.ClientSession() as http:
        await run(comfy_server, http, txt2img())
        await comfy_server.restart()
        assert comfy_server.loaded_models == frozenset()
        await run(comfy_server, http, txt2img())
    assert comfy_server.stats.model_loads == 2


async def test_each_file_is_loaded_once(comfy_server: ComfyTestServer) -> None:
    comfy_server.models["checkpoints"].append("other.safetensors")
    async with aiohttp.ClientSession() as http:
        await run(comfy_server, http, txt2img())
        await run(comfy_server, http, txt2img("other.safetensors"))
        await run(comfy_server, http, txt2img("other.safetensors"))
    assert comfy_server.stats.model_loads == 2
    assert comfy_server.loaded_models == {CHECKPOINT, "other.safetensors"}


async def test_the_server_answers_while_a_model_loads(tmp_path: Path) -> None:
    """The load waits without holding the event loop: the server answers HTTP meanwhile, and
    /queue shows the prompt running at its loader. (Stopping the server cancels the load.)"""
    async with (
        running_comfy_server(root=tmp_path / "c", model_load_delay=600) as server,
        aiohttp.ClientSession() as http,
    ):
        pid = await submit(server, http, txt2img())
        await until(lambda: server.executor.current_node == "4")  # the loader, loading
        async with http.get(server.url + "/queue") as r:
            assert [item[1] for item in (await r.json())["queue_running"]] == [pid]
        async with http.get(server.url + "/system_stats") as r:
            assert r.status == 200
        assert server.stats.model_loads == 0 and pid not in server.history


async def test_an_interrupt_during_a_load_lands_before_the_sampler(tmp_path: Path) -> None:
    """As in ComfyUI, which checks for interrupts at sampler steps: the load finishes (the file
    counts as loaded), then the prompt stops before its sampler takes a step."""
    async with (
        running_comfy_server(root=tmp_path / "c", model_load_delay=0.3) as server,
        aiohttp.ClientSession() as http,
    ):
        pid = await submit(server, http, txt2img())
        await until(lambda: server.executor.current_node == "4")  # the loader, loading
        async with http.post(server.url + "/interrupt", json={"prompt_id": pid}):
            pass
        entry = await finished(server, pid)
        seen = events(entry)
        assert "execution_interrupted" in seen and "execution_success" not in seen
        assert seen["execution_interrupted"]["node_type"] != "KSampler"
        assert server.stats.model_loads == 1 and server.loaded_models == {CHECKPOINT}


async def test_break_model_fails_as_a_zero_byte_file_until_fixed(comfy_server: ComfyTestServer) -> None:
    comfy_server.break_model(CHECKPOINT)
    async with aiohttp.ClientSession() as http:
        error = events(await run(comfy_server, http, txt2img()))["execution_error"]
        assert (error["node_id"], error["node_type"]) == ("4", "CheckpointLoaderSimple")
        assert error["exception_type"] == "safetensors._safetensors_rust.SafetensorError"
        assert error["exception_message"] == "Error while deserializing header: header too small\n"
        assert comfy_server.stats.model_loads == 0  # a broken file fails before any load time
        comfy_server.break_model(CHECKPOINT, garbage=True)
        error = events(await run(comfy_server, http, txt2img()))["execution_error"]
        assert error["exception_message"] == "Error while deserializing header: header too large\n"
        comfy_server.fix_model(CHECKPOINT)
        ok = await run(comfy_server, http, txt2img())
    assert ok["status"]["status_str"] == "success"
    assert comfy_server.stats.model_loads == 1 and CHECKPOINT not in comfy_server.broken_models


async def test_a_broken_model_that_is_cached_keeps_working_until_free(comfy_server: ComfyTestServer) -> None:
    """ComfyUI does not read a file again while the loader's output is cached."""
    async with aiohttp.ClientSession() as http:
        await run(comfy_server, http, txt2img())
        comfy_server.break_model(CHECKPOINT)
        assert (await run(comfy_server, http, txt2img()))["status"]["status_str"] == "success"
        async with http.post(comfy_server.url + "/free", json={"unload_models": True}):
            pass
        assert "execution_error" in events(await run(comfy_server, http, txt2img()))


async def test_the_recorded_corrupt_checkpoint_fails_with_the_recorded_error(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    """``07_runtime_error``: garbage bytes in corrupt_checkpoint.safetensors read as a header that
    is too large (the 0-byte dummies of ``09_…`` say "too small")."""
    transcript = load_json(recorded / "07_runtime_error" / "transcript.json")
    want = next(
        e["json"]["data"]
        for e in transcript
        if e["dir"] == "ws_in" and e.get("kind") == "text" and e["json"]["type"] == "execution_error"
    )
    graph = copy.deepcopy(load_json(recorded / "07_runtime_error" / "workflow_api.json"))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            comfy_server.url + "/prompt", json={"prompt": graph, "client_id": str(uuid.uuid4())}
        ) as r:
            assert r.status == 200, await r.text()
            pid = (await r.json())["prompt_id"]
        error = events(await finished(comfy_server, pid))["execution_error"]
    for key in ("node_id", "node_type", "exception_type", "exception_message"):
        assert error[key] == want[key], key
