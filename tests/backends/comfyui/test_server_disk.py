"""An always-on service must not fill the ComfyUI server's disk: frames go to temp/ (PreviewImage,
wiped at every server start), feed back from there, survive a restart that wipes it, and only the
latents a mode really slerps are saved to output/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_fake import ComfyTestServer
from dream_window.app import build_controller
from dream_window.backends.comfyui import ComfyUIBackend, create_comfyui_backend
from dream_window.values.generation import GenerationRequest
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import FakeClock, hang_guard, hang_timeout


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _posts(server: ComfyTestServer) -> list[dict]:
    return [r.body["prompt"] for r in server.seen("/prompt", "POST")]


async def _run_frames(tmp_path: Path, server: ComfyTestServer, mode: str, frames: int) -> ComfyUIBackend:
    config = comfy_config(
        tmp_path,
        server.url,
        # Colour coherence and the detail floor off: a frame either corrects or sharpens is a new
        # picture, uploaded rather than named on the server, and a corrected keyframe's latent is
        # encoded again (dream/coherence.py). Whether one does depends on the seeds drawn.
        generation={
            "mode": mode,
            "keyframe_interval": 3,
            "interpolation_frames": 2,
            "colour_coherence": False,
            "detail_floor": 0.0,
        },
    )
    backend = create_comfyui_backend(config)
    await backend.start()
    controller = build_controller(config, backend, clock=FakeClock(), fsync=False)
    run = asyncio.create_task(controller.run())
    try:
        async with hang_timeout(30):
            while controller.frame_count < frames:  # noqa: ASYNC110 (no event per frame)
                await asyncio.sleep(0.01)
    finally:
        controller.stop()
        await hang_guard(run, 20)
        await backend.close()
    return backend  # type: ignore[return-value]


@pytest.mark.parametrize("mode", ["img2img", "hybrid", "interpolate"])
async def test_a_run_leaves_nothing_in_output_but_the_latents_hybrid_slerps(
    tmp_path: Path, comfy_server: ComfyTestServer, mode: str
) -> None:
    backend = await _run_frames(tmp_path, comfy_server, mode, 9)
    posts = _posts(comfy_server)
    classes = [n["class_type"] for p in posts for n in p.values()]
    assert "SaveImage" not in classes and "PreviewImage" in classes
    assert [p for p in _files(comfy_server.root / "temp") if p.suffix == ".png"]  # the frames went here
    left = _files(comfy_server.root / "output")
    if mode == "hybrid":
        # Keyframe latents (slerped for the in-betweens) are the only thing core ComfyUI cannot put
        # in temp/: one per keyframe, nothing else.
        keyframes = sum(1 for p in posts if any(n["class_type"] == "KSampler" for n in p.values()))
        assert left and all(p.suffix == ".latent" for p in left)
        assert len(left) <= keyframes
    else:
        assert left == [], left  # interpolate is the latent walk here: its keyframes need no latent
    if mode == "interpolate":
        assert backend.latent_walk_available and "SamplerCustomAdvanced" in classes


async def test_img2img_feeds_each_frame_back_from_temp(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    await _run_frames(tmp_path, comfy_server, "img2img", 5)
    made: dict[str, str] = {}  # prompt id -> its frame, as LoadImage names it
    for pid, entry in comfy_server.history.items():
        if not entry["outputs"]:  # a speculation dropped at stop
            continue
        (image,) = next(o["images"] for o in entry["outputs"].values() if "images" in o)
        assert (image["type"], image["subfolder"]) == ("temp", "")
        made[pid] = f"{image['filename']} [temp]"
    loads = [
        n["inputs"]["image"]
        for p in _posts(comfy_server)
        for n in p.values()
        if n["class_type"] == "LoadImage"
    ]
    assert len(loads) >= 4
    # Every img2img input is a frame the server made (by name, no upload), and they differ.
    assert all(name in made.values() for name in loads) and len(set(loads)) >= 4
    assert comfy_server.seen("/upload/image") == []


def _req(seed: int, denoise: float = 0.5) -> GenerationRequest:
    return GenerationRequest(prompt="ocean waves", seed=seed, width=64, height=128, steps=2, denoise=denoise)


async def test_a_restart_wipes_temp_and_the_next_frame_is_uploaded_instead(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    config = comfy_config(
        tmp_path, comfy_server.url, generation={"mode": "img2img"}, comfyui={"speculate": False}
    )
    b = create_comfyui_backend(config)
    await b.start()
    try:
        first = await b.txt2img(_req(1))
        # The test server is faithful: /view?type=temp serves the frame, LoadImage "[temp]" reads it.
        assert first.meta["file"].endswith(" [temp]") and _files(comfy_server.root / "temp")
        await comfy_server.restart()
        assert _files(comfy_server.root / "temp") == []  # as ComfyUI's cleanup_temp() at start
        second = await b.img2img(first.image, _req(2))
        assert len(comfy_server.seen("/upload/image")) == 1  # the lost frame, re-sent once
        loads = [
            n["inputs"]["image"]
            for p in _posts(comfy_server)
            for n in p.values()
            if n["class_type"] == "LoadImage"
        ]
        assert loads[0] == first.meta["file"] and loads[-1].endswith(".png") and "[temp]" not in loads[-1]
        # ... and it still grew from the frame it was given (img2img from a black frame differs).
        black = await b.img2img(Image.new("RGB", (64, 128)), _req(2))
        assert not np.array_equal(np.asarray(second.image), np.asarray(black.image))
        third = await b.img2img(second.image, _req(3))  # the chain goes on from temp/ again
        assert len(comfy_server.seen("/upload/image")) == 2 and third.meta["file"].endswith(" [temp]")
    finally:
        await b.close()
    assert _files(comfy_server.root / "output") == []
