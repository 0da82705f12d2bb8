"""The latent walk on ComfyUI: graphs for every family, the starting-noise convention, frames spread
over servers, speculation of the next segment, interrupt mid-walk, and interpolate mode end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_fake import ComfyTestServer, recorded_object_info, running_comfy_server
from dream_window.app import build_controller
from dream_window.backends.comfyui import ComfyUIBackend, create_comfyui_backend, latent_file
from dream_window.backends.comfyui.graphs import (
    SD15_SCALE_FACTOR,
    SDXL_SCALE_FACTOR,
    discrete_sigma_max,
)
from dream_window.backends.comfyui.validation import validate_graph
from dream_window.dream.modes.interpolate import SLERP_NOTE, WALK_NOTE
from dream_window.errors import ExecutionFailed
from dream_window.values.generation import GenerationRequest, Plan, Step
from tests.backends.comfyui.conftest import BUILDERS, comfy_config
from tests.conftest import hang_guard, run_cli

A = GenerationRequest(
    prompt="misty forest", seed=2**62, width=256, height=512, steps=4, cfg=1.0, negative_prompt="blurry"
)
B = dataclasses.replace(A, prompt="ocean waves", seed=7, negative_prompt="dark")


def _by_class(graph: dict, cls: str) -> list[dict]:  # type: ignore[type-arg]
    return [n["inputs"] for n in graph.values() if n["class_type"] == cls]


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("t", [0.0, 0.25, 1.0])
def test_walk_graphs_validate_and_lerp_the_conditioning(name: str, t: float) -> None:
    builder = BUILDERS[name]
    built = builder.build_walk_frame(
        A,
        B,
        t,
        prefix="dream-window/x/walk",
        noise="dream-window/x/walk_1.latent",
        index=2,
        want_latent=t == 1.0,
    )
    g = built.graph
    result = validate_graph(g, recorded_object_info())
    assert result.ok, result.body()
    texts = {n["text"] for n in _by_class(g, "CLIPTextEncode")}
    averages = _by_class(g, "ConditioningAverage")
    if t == 0.25:
        assert texts == {"misty forest", "ocean waves", "blurry", "dark"}
        assert len(averages) == 2  # positive and negative
        for avg in averages:  # to·s + from·(1 − s): "to" is the end, "from" the start
            assert avg["conditioning_to_strength"] == 0.25
            assert g[avg["conditioning_to"][0]]["inputs"]["text"] in ("ocean waves", "dark")
            assert g[avg["conditioning_from"][0]]["inputs"]["text"] in ("misty forest", "blurry")
    else:  # endpoints are plain keyframes
        assert averages == [] and texts == (
            {"misty forest", "blurry"} if t == 0.0 else {"ocean waves", "dark"}
        )
    assert bool(built.latent_nodes) == (t == 1.0)
    if name.startswith("flux"):  # flow model: one sampler seed for the whole walk, nothing uploaded
        assert _by_class(g, "LoadLatent") == [] and _by_class(g, "KSampler")[0]["seed"] == A.seed
        assert _by_class(g, "EmptySD3LatentImage")
    else:
        assert _by_class(g, "LoadLatent") == [{"latent": "dream-window/x/walk_1.latent"}]
        assert _by_class(g, "LatentFromBatch")[0]["batch_index"] == 2
        assert _by_class(g, "DisableNoise") == [{}]
        sampler = _by_class(g, "SamplerCustomAdvanced")[0]
        assert g[sampler["noise"][0]]["class_type"] == "DisableNoise"
        assert g[sampler["latent_image"][0]]["class_type"] == "LatentFromBatch"


def test_noise_prescale_follows_the_sd_schedule() -> None:
    # The schedule recomputed plainly (a running product, no numpy), against k-diffusion's published 14.6146.
    n, lo, hi = 1000, math.sqrt(0.00085), math.sqrt(0.012)
    alpha_bar = 1.0
    for i in range(n):
        alpha_bar *= 1.0 - (lo + (hi - lo) * i / (n - 1)) ** 2
    sigma_max = math.sqrt((1.0 - alpha_bar) / alpha_bar)
    assert discrete_sigma_max() == pytest.approx(sigma_max, rel=1e-6)
    assert sigma_max == pytest.approx(14.6146, abs=1e-4)
    k = math.sqrt(1.0 + sigma_max**2)
    assert BUILDERS["sd15"].walk_noise.prescale == pytest.approx(k / SD15_SCALE_FACTOR, rel=1e-6)
    assert BUILDERS["sdxl-turbo"].walk_noise.prescale == pytest.approx(k / SDXL_SCALE_FACTOR, rel=1e-6)
    assert BUILDERS["flux-checkpoint"].walk_noise.prescale is None
    conv = BUILDERS["sd15"].walk_noise
    z = conv.walk(1, 2, [0.0, 0.5, 1.0], 64, 128)
    assert z.shape == (3, 4, 16, 8) and z.dtype == np.float32
    # Endpoints are exactly each seed's noise, scaled: x_T = z · scale_factor = noise · sqrt(1 + σ²).
    np.testing.assert_allclose(z[0] * SD15_SCALE_FACTOR, conv.noise(1, 64, 128) * k, rtol=1e-5)
    np.testing.assert_allclose(z[2] * SD15_SCALE_FACTOR, conv.noise(2, 64, 128) * k, rtol=1e-5)
    np.testing.assert_array_equal(conv.noise(1, 64, 128), conv.noise(1, 64, 128))
    assert not np.allclose(z[1], (z[0] + z[2]) / 2)  # slerp, not lerp: the middle keeps its norm
    assert np.linalg.norm(z[1]) == pytest.approx(np.linalg.norm(z[0]), rel=0.05)


def _req(prompt: str, seed: int) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, width=64, height=128, steps=2)


async def _backend(tmp_path: Path, urls: list[str], **sections: dict) -> ComfyUIBackend:  # type: ignore[type-arg]
    gen = {"mode": "interpolate", "interpolation_frames": 3, **sections.pop("generation", {})}
    backend = create_comfyui_backend(comfy_config(tmp_path, urls, generation=gen, **sections))
    await backend.start()
    return backend  # type: ignore[return-value]


def _next(seed: int, ts: list[float], prompt: str = "misty forest") -> Plan:
    """Interpolate's plan for a walk: the next segment, to the same prompt with the next seed."""
    return Plan((Step(_req(prompt, seed), True, tuple(ts)),))


def _walk_posts(server: ComfyTestServer) -> list[dict]:  # type: ignore[type-arg]
    return [
        r.body["prompt"]
        for r in server.seen("/prompt", "POST")
        if any(n["class_type"] == "SamplerCustomAdvanced" for n in r.body["prompt"].values())
    ]


async def test_a_segment_is_spread_over_servers_and_its_keyframe_is_the_walk_endpoint(tmp_path: Path) -> None:
    async with (
        running_comfy_server(root=tmp_path / "a", step_delay=0.01) as a,
        running_comfy_server(root=tmp_path / "b", step_delay=0.01) as b,
    ):
        backend = await _backend(tmp_path, [a.url, b.url], comfyui={"speculate": False})
        try:
            (start,) = await backend.latent_walk(_req("misty forest", 11), _req("misty forest", 11), [1.0])
            frames = await backend.latent_walk(start.request, _req("ocean waves", 12), [0.25, 0.5, 0.75, 1.0])
            assert [f.meta["walk_t"] for f in frames] == [0.25, 0.5, 0.75, 1.0]
            assert all(f.image.size == (64, 128) for f in frames)
            assert {f.meta["server"] for f in frames} == {a.url, b.url}  # concurrently, both got work
            assert len(_walk_posts(a)) >= 2 and len(_walk_posts(b)) >= 2
            # A walk's keyframe needs no latent (every frame is sampled): nothing lands in
            # output/latents, which ComfyUI never cleans.
            assert frames[-1].latent is None
            assert not any(
                n["class_type"] == "SaveLatent" for p in _walk_posts(a) + _walk_posts(b) for n in p.values()
            )
            # The uploaded noise batch is ours, all t of the segment in one file per server.
            names = {
                n["inputs"]["latent"].removesuffix(" [input]")
                for p in _walk_posts(a) + _walk_posts(b)
                for n in p.values()
                if n["class_type"] == "LoadLatent"
            }
            stored = [
                latent_file.loads((s.root / "input" / n).read_bytes())
                for s in (a, b)
                for n in names
                if (s.root / "input" / n).is_file()
            ]
            seg = backend.builder.walk_noise.walk(11, 12, [0.25, 0.5, 0.75, 1.0], 64, 128)
            assert sum(z.shape == seg.shape and np.allclose(z, seg) for z in stored) == 2
            # The walk's last frame is exactly the keyframe interpolate makes for the end request
            # when no walk leads into it (a walk of one frame, its own endpoint).
            (key,) = await backend.latent_walk(_req("ocean waves", 12), _req("ocean waves", 12), [1.0])
            np.testing.assert_array_equal(np.asarray(key.image), np.asarray(frames[-1].image))
            # In between: a blend of both prompts from slerped noise, unlike either end.
            mid = np.asarray(frames[1].image, np.float32)
            assert np.abs(mid - np.asarray(start.image, np.float32)).mean() > 1.0
            assert np.abs(mid - np.asarray(key.image, np.float32)).mean() > 1.0
        finally:
            await backend.close()


async def test_the_next_segment_is_queued_before_it_is_asked_for(tmp_path: Path) -> None:
    async with running_comfy_server(root=tmp_path / "a", step_delay=0.01) as a:
        backend = await _backend(tmp_path, [a.url], generation={"seed_policy": "increment"})
        try:
            ts = [0.25, 0.5, 0.75, 1.0]
            key_req = _req("misty forest", 5)
            (key,) = await backend.latent_walk(key_req, key_req, [1.0], plan=_next(6, ts))
            seg1 = await backend.latent_walk(key.request, _req("misty forest", 6), ts, plan=_next(7, ts))
            posts = len(a.seen("/prompt", "POST"))
            assert posts == 1 + 4 + 4  # keyframe, this segment, and the next one already queued
            seg2 = await backend.latent_walk(seg1[-1].request, _req("misty forest", 7), ts, plan=_next(8, ts))
            assert all(f.request.seed == 7 for f in seg2)
            assert len(a.seen("/prompt", "POST")) == posts + 4  # seg2 was there; only seg3 is new
            # A different request drops the speculation (deleted from the queue) and walks anew.
            await backend.latent_walk(seg2[-1].request, _req("a new prompt", 8), ts, plan=_next(9, ts))
            deleted = [r.body for r in a.seen("/queue", "POST") if "delete" in r.body]
            assert deleted and len(deleted[-1]["delete"]) == 4
        finally:
            await backend.close()


async def test_interrupt_mid_walk_fails_the_walk_and_queues_nothing_new(tmp_path: Path) -> None:
    async with running_comfy_server(root=tmp_path / "a", step_delay=0.01) as a:
        backend = await _backend(tmp_path, [a.url], generation={"interpolation_frames": 5})
        try:
            key_req = _req("misty forest", 5)
            (key,) = await backend.latent_walk(key_req, key_req, [1.0])
            a.stall()  # the first walk frame hangs mid-run; the rest wait in the queue
            ts = [i / 6 for i in range(1, 6)] + [1.0]
            walk = asyncio.create_task(
                backend.latent_walk(key.request, _req("misty forest", 6), ts, plan=_next(7, ts))
            )
            for _ in range(500):
                if a._running is not None and len(_walk_posts(a)) >= 12:  # this segment and the next
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("walk frames never queued")
            await backend.interrupt()
            with pytest.raises(ExecutionFailed) as err:
                await hang_guard(walk, 10)
            assert err.value.interrupted
            posts = len(a.seen("/prompt", "POST"))
            assert a.seen("/interrupt")
            a.release()
            await asyncio.sleep(0.3)
            assert len(a.seen("/prompt", "POST")) == posts
            assert a._queue == [] and a._running is None
            assert backend.walks is not None and backend.walks.in_flight == []
        finally:
            a.release()
            await backend.close()


async def test_cli_interpolate_walks_on_comfyui(tmp_path: Path) -> None:
    async with running_comfy_server(root=tmp_path / "a") as a, running_comfy_server(root=tmp_path / "b") as b:
        comfy_config(tmp_path, [a.url, b.url], generation={"interpolation_frames": 2})
        out = tmp_path / "out"
        code, stderr = await run_cli(
            "run", "--backend", "comfyui", "--mode", "interpolate", "--max-frames", "7",
            "-c", str(tmp_path / "config.yaml"), "-o", str(out), cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, stderr[-2000:]
        status = json.loads((out / "status.json").read_text())
        assert status["frame_count"] == 7 and WALK_NOTE in status["notes"]
        walks = _walk_posts(a) + _walk_posts(b)
        assert _walk_posts(a) and _walk_posts(b)
        # One prompt all along: no conditioning to lerp, the noise walks (entries 0..2 of each segment's batch).
        assert {_by_class(p, "LatentFromBatch")[0]["batch_index"] for p in walks} == {0, 1, 2}
        # Every frame was sampled: nothing was decoded from slerped output latents. (Besides the
        # frames: the start's model check on each server, one step at 64x64.)
        posts = [r.body["prompt"] for s in (a, b) for r in s.seen("/prompt", "POST")]
        frames = [p for p in posts if "dream-window model check" not in json.dumps(p)]
        assert len(posts) - len(frames) == 2
        assert all(_by_class(p, "SamplerCustomAdvanced") for p in frames)
        assert Image.open(out / "current_frame.png").size == (64, 128)


@pytest.mark.parametrize("walk", ["off", "auto"])
async def test_the_switch_picks_the_path_and_says_so(
    tmp_path: Path, comfy_server: ComfyTestServer, walk: str
) -> None:
    config = comfy_config(
        tmp_path,
        comfy_server.url,
        generation={"mode": "interpolate", "interpolation_frames": 2},
        interpolation={"walk": walk},
    )
    backend = create_comfyui_backend(config)
    await backend.start()
    try:
        controller = build_controller(config, backend, max_frames=4, fsync=False)
        await hang_guard(controller.run(), 30)
    finally:
        await backend.close()
    graphs = [r.body["prompt"] for r in comfy_server.seen("/prompt", "POST")]
    walked = any(_by_class(g, "DisableNoise") for g in graphs)
    assert walked == (walk == "auto")
    assert (WALK_NOTE if walk == "auto" else SLERP_NOTE) in controller.notes
