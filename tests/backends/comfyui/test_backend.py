"""ComfyUIBackend end to end against the test server: frames, latents, no re-uploads, speculation,
interrupt/free, fast failure, model checks, several servers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.backends.base import GenerationBackend
from dream_window.backends.comfyui import ComfyUIBackend, create_comfyui_backend, doctor_checks
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import create_builder
from dream_window.backends.comfyui.pool import ServerPool
from dream_window.backends.comfyui.probe import probe_request
from dream_window.errors import (
    ComfyUIError,
    ComfyUIUnavailable,
    ExecutionFailed,
    ModelUnavailable,
    WorkflowRejected,
)
from dream_window.values.generation import GenerationRequest, Plan
from tests.backends.comfyui.conftest import comfy_config
from tests.conftest import FakeClock, free_port, hang_guard, hang_timeout, until


def req(
    prompt: str = "ocean waves", seed: int = 1, denoise: float = 1.0, latent: bool = False
) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, seed=seed, width=64, height=128, steps=2, denoise=denoise, return_latent=latent
    )


def chain(*seeds: int, prompt: str = "ocean waves", denoise: float = 0.4) -> Plan:
    """The plan img2img and hybrid hand down: the next frames, each grown from the one before."""
    return Plan.chain([req(prompt, seed=s, denoise=denoise) for s in seeds])


async def started(tmp_path: Path, urls: str | list[str], **sections: dict) -> ComfyUIBackend:  # type: ignore[type-arg]
    backend = create_comfyui_backend(comfy_config(tmp_path, urls, **sections))
    await backend.start()
    assert isinstance(backend, GenerationBackend)
    return backend  # type: ignore[return-value]


async def test_frames_and_latents(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(tmp_path, comfy_server.url, generation={"mode": "hybrid"})
    try:
        r = await b.txt2img(req(latent=True))  # hybrid asks for keyframe latents it will slerp
        assert r.image.size == (64, 128) and r.latent is not None and r.latent.shape == (1, 4, 16, 8)
        # PreviewImage's name in ComfyUI's temp/ (wiped at each server start), not a SaveImage file.
        assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_\d{5}_\.png \[temp\]", r.meta["file"]), r.meta["file"]
        z = await b.encode([r.image, r.image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
        assert z.shape == (2, 4, 16, 8) and z.dtype == np.float32
        frames = await b.decode(np.stack([z[0], (z[0] + z[1]) / 2, z[1]]))
        assert [f.size for f in frames] == [(64, 128)] * 3
        assert not np.array_equal(np.asarray(frames[0]), np.asarray(frames[2]))
        with pytest.raises(ValueError, match=r"expected latents shaped \[N, 4, H, W\]"):
            await b.decode(np.zeros((1, 16, 16, 8), np.float32))
    finally:
        await b.close()


async def test_flux_latents_have_16_channels(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(tmp_path, comfy_server.url, generation={"model": "flux-schnell", "mode": "hybrid"})
    try:
        assert b.latent_channels == 16 and b.name == "ComfyUI (flux-schnell)"
        r = await b.txt2img(req(latent=True))
        assert r.latent is not None and r.latent.shape == (1, 16, 16, 8)
        assert len(await b.decode(r.latent)) == 1
    finally:
        await b.close()


async def test_img2img_depends_on_input_and_denoise(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(
        tmp_path, comfy_server.url, generation={"mode": "img2img"}, comfyui={"speculate": False}
    )
    try:
        red = Image.new("RGB", (64, 128), (200, 30, 30))
        blue = Image.new("RGB", (64, 128), (30, 30, 200))
        kept = await b.img2img(red, req(denoise=0.0))
        assert np.array_equal(np.asarray(kept.image), np.asarray(red))
        from_red = np.asarray((await b.img2img(red, req(denoise=0.4, seed=3))).image, dtype=float)
        from_blue = np.asarray((await b.img2img(blue, req(denoise=0.4, seed=3))).image, dtype=float)
        stronger = np.asarray((await b.img2img(red, req(denoise=0.9, seed=3))).image, dtype=float)
        assert from_red[..., 0].mean() > from_blue[..., 0].mean() + 20
        assert (
            np.abs(stronger - np.asarray(red, float)).mean()
            > np.abs(from_red - np.asarray(red, float)).mean()
        )
    finally:
        await b.close()


async def test_restarts_reuse_the_upload_names(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    # An always-on service restarts (reboots, updates): each start must overwrite the same ring of
    # input/ names, not open a fresh folder of them (ComfyUI has no delete API).
    for start in range(3):
        b = await started(
            tmp_path, comfy_server.url, generation={"mode": "img2img"}, comfyui={"speculate": False}
        )
        try:
            for i in range(5):
                await b.img2img(Image.new("RGB", (64, 128), (start, i, 3)), req(denoise=0.3, seed=i))
        finally:
            await b.close()
    files = [p for p in (comfy_server.root / "input").rglob("*") if p.is_file()]
    assert 1 <= len(files) <= 4, files


async def test_feedback_chain_never_reuploads(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(
        tmp_path, comfy_server.url, generation={"mode": "img2img"}, comfyui={"speculate": False}
    )
    try:
        r = await b.txt2img(req())
        for i in range(3):
            r = await b.img2img(r.image, req(denoise=0.4, seed=10 + i))
        assert comfy_server.seen("/upload/image") == []
        loads = [
            n["inputs"]["image"]
            for rec in comfy_server.seen("/prompt", "POST")
            for n in rec.body["prompt"].values()
            if n["class_type"] == "LoadImage"
        ]
        assert len(loads) == 3 and all(x.endswith(" [temp]") for x in loads)
        # A foreign image is uploaded into a small ring of names, not a new file each time.
        for _ in range(6):
            await b.img2img(Image.new("RGB", (64, 128), (1, 2, 3)), req(denoise=0.3, seed=99))
        files = list((comfy_server.root / "input" / "dream-window" / b.jobs.tag).iterdir())
        assert 1 <= len(files) <= 4
    finally:
        await b.close()


async def test_speculation_serves_the_next_frame_and_drops_wrong_guesses(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    b = await started(
        tmp_path, comfy_server.url, generation={"mode": "img2img", "denoise": 0.4, "seed_policy": "increment"}
    )
    try:
        r = await b.txt2img(req(seed=100), plan=chain(101, 102))
        r2 = await b.img2img(r.image, req(seed=101, denoise=0.4), plan=chain(102, 103))
        r3 = await b.img2img(r2.image, req(seed=102, denoise=0.4), plan=chain(103, 104))
        assert r2.meta.get("speculative") and r3.meta.get("speculative")
        assert (r2.request.seed, r3.request.seed) == (101, 102)  # exactly what the mode asked for
        before = len(comfy_server.seen("/interrupt"))
        other = await b.img2img(
            r3.image, req(prompt="fire and smoke", seed=103, denoise=0.4), plan=chain(104, 105)
        )
        assert not other.meta.get("speculative") and other.request.prompt == "fire and smoke"
        assert len(comfy_server.seen("/interrupt")) > before  # the wrong guesses were stopped
    finally:
        await b.close()


async def test_a_cancelled_caller_takes_its_speculation_off_the_server(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    comfy_server.step_delay = 0.1
    b = await started(
        tmp_path, comfy_server.url, generation={"mode": "img2img", "denoise": 0.4, "seed_policy": "increment"}
    )
    try:
        r = await b.txt2img(req(seed=100), plan=chain(101))  # the next frame (seed 101) is queued ahead
        comfy_server.stall()
        spec = b.plans.started[0]
        async with hang_timeout(5):
            while spec.handle.prompt_id is None:  # noqa: ASYNC110 (set just before its POST)
                await asyncio.sleep(0.01)
        pid = spec.handle.prompt_id
        caller = asyncio.create_task(b.img2img(r.image, req(seed=101, denoise=0.4)))
        # The caller takes the speculation over (it leaves the plan's started list).
        await until(lambda: b.plans.started == [] or b.plans.started[0] is not spec, "the take-over")
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert {"prompt_id": pid} in [x.body for x in comfy_server.seen("/interrupt")]
        comfy_server.release()
        async with hang_timeout(5):
            while pid not in comfy_server.history:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert comfy_server.history[pid]["status"]["completed"] is False  # it did not run on
    finally:
        comfy_server.release()
        await b.close()


async def test_interrupt_and_free(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(tmp_path, comfy_server.url)
    try:
        comfy_server.stall()
        gen = asyncio.create_task(b.txt2img(req()))
        await until(lambda: comfy_server.running is not None, "the prompt running on the server")
        await b.interrupt()
        with pytest.raises(ExecutionFailed) as info:
            await gen
        assert info.value.interrupted
        assert any(
            r.body and r.body.get("prompt_id") == info.value.prompt_id
            for r in comfy_server.seen("/interrupt")
        )
        comfy_server.release()
        await b.free_memory()
        assert comfy_server.seen("/free")[-1].body == {"unload_models": True, "free_memory": True}
    finally:
        comfy_server.release()
        await b.close()


async def test_previews_reach_the_callback(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = await started(tmp_path, comfy_server.url, comfyui={"preview_method": "latent2rgb"})
    got: list[tuple[bytes, str]] = []
    progress: list[tuple[int, int]] = []
    b.set_preview_callback(lambda data, mime: got.append((data, mime)))
    b.set_progress_callback(lambda v, m: progress.append((v, m)))
    try:
        await b.txt2img(req())
        assert got and all(m == "image/jpeg" and d[:2] == b"\xff\xd8" for d, m in got)
        assert (1, 2) in progress and (2, 2) in progress  # (a speculative next frame may report too)
    finally:
        await b.close()


async def test_start_fails_fast_without_a_server(tmp_path: Path) -> None:
    b = create_comfyui_backend(comfy_config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ComfyUIUnavailable, match="no ComfyUI server reachable"):
        await hang_guard(b.start(), 10)
    await b.close()


async def test_start_names_a_missing_model(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    b = create_comfyui_backend(
        comfy_config(
            tmp_path, comfy_server.url, comfyui={"sd15_checkpoint": "v1-5-pruned-emaonly.safetensors"}
        )
    )
    with pytest.raises(ModelUnavailable) as info:
        await b.start()
    assert (
        "checkpoint 'v1-5-pruned-emaonly.safetensors' is not on the ComfyUI server "
        "(put it in ComfyUI's models/checkpoints folder); it has: "
        "corrupt_checkpoint.safetensors, flux1-schnell-fp8.safetensors" in str(info.value)
    )


async def test_doctor(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    ok = await doctor_checks(comfy_config(tmp_path, comfy_server.url))
    assert [c.level for c in ok] == ["ok", "ok"] and "validate" in ok[1].detail
    bad = await doctor_checks(
        comfy_config(
            tmp_path,
            comfy_server.url,
            generation={"model": "sdxl-turbo"},
            comfyui={"sdxl_turbo_checkpoint": "turbo.safetensors"},
        )
    )
    assert (
        bad[-1].level == "fail"
        and "checkpoint 'turbo.safetensors' is not on the ComfyUI server" in bad[-1].detail
    )
    down = await doctor_checks(comfy_config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert [c.level for c in down] == ["fail"] and "not reachable" in down[0].detail
    assert "connection refused: nothing is listening on" in down[0].detail  # not aiohttp's words


async def test_doctor_deep_loads_the_model_and_names_one_that_does_not_load(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    deep = await doctor_checks(comfy_config(tmp_path, comfy_server.url), deep=True)
    assert deep[-1].name == "comfyui model check" and deep[-1].level == "ok"
    assert "first image in" in deep[-1].detail
    checks = [r.body for r in comfy_server.seen("/prompt", "POST") if "model check" in json.dumps(r.body)]
    assert len(checks) == 1  # one step at 64x64: the smallest image the model makes
    sampler = next(n for n in checks[0]["prompt"].values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["steps"] == 1
    # The names check passes (the file exists); only the deep check finds it does not load.
    broken = comfy_config(
        tmp_path, comfy_server.url, comfyui={"sd15_checkpoint": "corrupt_checkpoint.safetensors"}
    )
    shallow = await doctor_checks(broken)
    assert all(c.level == "ok" for c in shallow)
    deep = await doctor_checks(broken, deep=True)
    assert deep[-1].level == "fail" and "header too" in deep[-1].detail
    assert "corrupt_checkpoint.safetensors" in deep[-1].detail


async def test_failover_and_probe_back(tmp_path: Path, comfy_server: ComfyTestServer) -> None:
    async with running_comfy_server(root=tmp_path / "second") as second:
        config = comfy_config(
            tmp_path,
            [comfy_server.url, second.url],
            generation={"mode": "interpolate"},
            comfyui={"speculate": False},
        )
        clock = FakeClock()
        pool = ServerPool([ComfyUIClient(u, max_retries=0) for u in config.system.comfyui_urls], clock=clock)
        b = ComfyUIBackend(
            config.comfyui,
            pool,
            create_builder(config.generation.model, config.comfyui),
            probe=probe_request(config.generation),
            speculate=False,
        )
        await b.start()
        try:
            used = {(await b.txt2img(req(seed=i))).meta["server"] for i in range(4)}
            assert used == {comfy_server.url, second.url}  # spread over both (least busy first)
            await second.refuse_connections()
            results = [await b.txt2img(req(seed=10 + i)) for i in range(3)]
            assert {r.meta["server"] for r in results} == {comfy_server.url}
            assert not (await b.health()).ok or "1/2" in (await b.health()).detail
            await second.accept_connections()
            clock.advance(5.0)  # past the backoff: the next pick probes it back
            await b.txt2img(req(seed=20))
            assert pool.up_count() == 2
        finally:
            await b.close()


async def test_interpolate_spreads_speculation_over_servers(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    comfy_server.step_delay = 0.02
    async with running_comfy_server(root=tmp_path / "second", step_delay=0.02) as second:
        # Keyframe speculation is the slerp path's (with the walk, segments are speculated instead).
        b = await started(
            tmp_path,
            [comfy_server.url, second.url],
            generation={"mode": "interpolate"},
            interpolation={"walk": "off"},
        )
        try:
            # Interpolate's keyframes are independent: it plans the next few, and each server gets one.
            results = [
                await b.txt2img(
                    req(seed=i), plan=Plan.independent([req(seed=j) for j in range(i + 1, i + 5)])
                )
                for i in range(6)
            ]
            assert sum(bool(r.meta.get("speculative")) for r in results) >= 4
            assert {r.meta["server"] for r in results} == {comfy_server.url, second.url}
            assert len({r.request.seed for r in results}) == 6
        finally:
            await b.close()


def test_comfyui_error_tree() -> None:
    assert issubclass(ComfyUIUnavailable, ComfyUIError) and issubclass(WorkflowRejected, ComfyUIError)


async def test_a_step_that_executed_before_it_was_asked_for_still_leads_the_plan(
    tmp_path: Path, comfy_server: ComfyTestServer
) -> None:
    # The mode is slower than the server (its buffer is full): the planned frame has executed long
    # before the mode asks for it. Its follower must still be queued from it, not left waiting for
    # an "executed" that already happened.
    b = await started(tmp_path, comfy_server.url, generation={"mode": "img2img"})
    try:
        r = await b.txt2img(req(seed=100), plan=chain(101))
        (ahead,) = b.plans.started
        await hang_guard(asyncio.shield(ahead.task), 10)  # executed and downloaded, unclaimed
        r2 = await b.img2img(r.image, req(seed=101, denoise=0.4), plan=chain(102))
        assert r2.meta.get("speculative") and r2.request.seed == 101
        assert [s.step.request.seed for s in b.plans.started] == [102]  # started from r2's frame at once
        r3 = await b.img2img(r2.image, req(seed=102, denoise=0.4))
        assert r3.meta.get("speculative")
    finally:
        await b.close()
