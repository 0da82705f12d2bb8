"""A user's change on ComfyUI: what was queued, running or planned for the old prompt comes off
the server before the call returns, and nothing of it runs afterwards (read from the test server's
own queue and history, the protocol's record)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from comfyui_fake import running_comfy_server
from dream_window.app import build_controller
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.events import FramePublished
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import hang_guard, until

NEW = "a lighthouse in fog"


def texts(graph: dict[str, Any]) -> set[str]:
    """The prompt texts a graph encodes (the empty negative prompt left out)."""
    return {
        n["inputs"]["text"]
        for n in graph.values()
        if "CLIPTextEncode" in n.get("class_type", "") and isinstance(n["inputs"].get("text"), str)
    } - {""}


def started_ms(entry: dict[str, Any]) -> int | None:
    return next(
        (d["timestamp"] for name, d in entry["status"]["messages"] if name == "execution_start"), None
    )


def interrupted(entry: dict[str, Any]) -> bool:
    return any(name == "execution_interrupted" for name, _ in entry["status"]["messages"])


@pytest.mark.parametrize(
    ("mode", "speculate"),
    # Planned frames (the plan is withdrawn) and frames made on request (the cancelled call takes
    # its own prompt off the server).
    [("img2img", True), ("hybrid", True), ("img2img", False)],
)
@pytest.mark.parametrize("action", ["prompt", "skip"])
async def test_a_change_leaves_nothing_of_the_old_plan_on_the_server(
    tmp_path: Path, mode: str, speculate: bool, action: str
) -> None:
    # 0.04 s per step, 2 steps: frames are running and planned ones queued when the user acts.
    async with running_comfy_server(root=tmp_path / "comfy", step_delay=0.04) as server:
        config = comfy_config(
            tmp_path,
            server.url,
            generation={"mode": mode, "keyframe_interval": 3, "frame_interval": 0.05},
            comfyui={"speculate": speculate},
        )
        backend = create_comfyui_backend(config)
        await backend.start()
        controller = build_controller(config, backend, fsync=False)
        published: list[FramePublished] = []
        controller.events.subscribe(FramePublished, published.append)
        run = asyncio.create_task(controller.run())
        try:
            await until(lambda: len(published) >= 3)
            await until(lambda: server.running is not None)  # work in flight for the old prompt
            called_ms = time.time() * 1000
            if action == "prompt":
                wanted = await controller.set_prompt(NEW)
            else:
                wanted = await controller.skip()
            returned_ms = time.time() * 1000
            # When the call returns, nothing for any other prompt is queued, and one running has
            # been told to stop (ComfyUI stops it at its next sampler step) ...
            assert all(texts(item.graph) in ({wanted}, set()) for item in server.pending)
            running = server.running
            if running is not None and texts(running.graph) not in ({wanted}, set()):
                assert server.executor.interrupt_requested, texts(running.graph)
            # ... and nothing made for it is waiting to be shown.
            assert all(f.prompt == wanted for _, f in list(controller.buffer._items))
            before = len(published)
            await until(lambda: len(published) >= before + 4)
            assert {f.prompt for f in published[before:]} == {wanted}
        finally:
            controller.stop()
            await hang_guard(run, 20)
            await backend.close()
        # Nothing for the old prompt started executing after the call returned: the server's own
        # record. One may start while the call is on its way (the server takes the next queued
        # prompt before our delete arrives, as ComfyUI's worker does); that one must have been
        # interrupted.
        old_runs = [
            (t, entry)
            for entry in server.history.values()
            if (t := started_ms(entry)) is not None
            and t > called_ms
            and (txt := texts(entry["prompt"][2]))
            and txt != {wanted}
        ]
        late = [entry for t, entry in old_runs if t > returned_ms or not interrupted(entry)]
        assert late == []
        assert server.history  # (it did run our work: the check above is not vacuous)
