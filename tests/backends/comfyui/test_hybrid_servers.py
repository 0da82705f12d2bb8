"""hybrid over several ComfyUI servers: the keyframe chain on one, the in-betweens decoded on the
others from keyframe latents handed over as .latent files, the same frames as on one server, and
the chain taken over when its server dies (img2img too)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.backends.comfyui.backend import ComfyUIBackend
from dream_window.config import SeedPolicy
from dream_window.dream.coherence import ColourCoherence
from dream_window.dream.modes import create_mode
from dream_window.dream.modes.base import ModeContext
from dream_window.values.frame import Frame
from dream_window.values.seeds import SeedSource
from tests.backends.comfyui.conftest import comfy_config

PROMPT = "misty forest at dawn, golden light"
SAMPLERS = {"KSampler", "SamplerCustom", "SamplerCustomAdvanced"}


def _classes(entry: dict[str, Any]) -> set[str]:
    return {node["class_type"] for node in entry["prompt"][2].values()}


def samplings(server: ComfyTestServer) -> int:
    """Keyframes (sampling prompts) the server ran to the end."""
    return sum(
        1
        for e in server.history.values()
        if _classes(e) & SAMPLERS and e["status"]["status_str"] == "success"
    )


def decodes(server: ComfyTestServer) -> int:
    """In-between decodes (LoadLatent → VAEDecode) the server ran."""
    return sum(1 for e in server.history.values() if {"LoadLatent", "VAEDecode"} <= _classes(e))


def uploads(server: ComfyTestServer) -> tuple[int, int]:
    """(uploads received, .latent files in its input folder)."""
    return len(server.seen("/upload/image", "POST")), len(list((server.root / "input").rglob("*.latent")))


async def dream(
    tmp_path: Path,
    servers: Sequence[ComfyTestServer],
    mode: str,
    calls: int,
    *,
    coherence: bool = False,
    during: Callable[[ComfyUIBackend, int], Awaitable[None]] | None = None,
    prompts: Sequence[str] = (PROMPT,),
) -> list[Frame]:
    """``calls`` batches of ``mode`` on a backend over ``servers``, seeds 1, 2, 3 ...; ``during``
    (the backend, the call index) runs before each call; call i is made for ``prompts[i]`` (the
    last one from there on)."""
    home = tmp_path / f"{mode}-{'-'.join(str(s.port) for s in servers)}"
    home.mkdir()
    config = comfy_config(
        home,
        [s.url for s in servers],
        generation={"mode": mode, "keyframe_interval": 4, "denoise": 0.5},
        comfyui={"probe_interval": 0.2},
    )
    backend = create_comfyui_backend(config)
    assert isinstance(backend, ComfyUIBackend)
    await backend.start()
    ctx = ModeContext(
        backend=backend,
        config=config.generation,
        prompt=lambda: prompts[min(len(made), len(prompts) - 1)],
        seeds=SeedSource(SeedPolicy.INCREMENT, 1, random.Random(0)),
        decode_batch_size=4,
        coherence=ColourCoherence() if coherence else None,
    )
    dreamer = create_mode(mode, ctx)
    made: list[list[Frame]] = []
    try:
        for i in range(calls):
            if during is not None:
                await during(backend, i)
            made.append(await dreamer.next_frames())
    finally:
        if made:
            dreamer.restart_from(made[-1][-1])  # drops the keyframes asked for ahead
        await backend.close()
    return [f for batch in made for f in batch]


def pixels(frames: list[Frame]) -> list[tuple[str, np.ndarray]]:
    return [(f.kind, np.asarray(f.image)) for f in frames]


def assert_same_frames(a: list[Frame], b: list[Frame]) -> None:
    assert [f.kind for f in a] == [f.kind for f in b]
    assert [f.params.get("seed") for f in a] == [f.params.get("seed") for f in b]
    for i, ((_, x), (_, y)) in enumerate(zip(pixels(a), pixels(b), strict=True)):
        assert np.array_equal(x, y), f"frame {i} ({a[i].kind}) differs"


async def test_inbetweens_are_decoded_beside_the_keyframe_chain_from_handed_over_latents(
    tmp_path: Path,
) -> None:
    async with (
        running_comfy_server(root=tmp_path / "a", step_delay=0.02) as a,
        running_comfy_server(root=tmp_path / "b", step_delay=0.02) as b,
    ):
        frames = await dream(tmp_path, [a, b], "hybrid", 5)
        assert [f.kind for f in frames] == ["keyframe"] + (["inbetween"] * 3 + ["keyframe"]) * 4
        # The chain stays on one server (each keyframe grows from the one before, by file name)...
        chain, other = (a, b) if samplings(a) > samplings(b) else (b, a)
        assert samplings(other) == 0 and samplings(chain) >= 5
        # ... and every segment's in-betweens were decoded on the other one, from keyframe latents
        # made on the chain's server, handed over as uploaded .latent files.
        assert decodes(other) == 4 and decodes(chain) == 0
        sent, files = uploads(other)
        assert sent == 4 and files >= 1
        assert uploads(chain) == (0, 0)


async def test_the_same_frames_on_one_server_and_on_two(tmp_path: Path) -> None:
    # Colour coherence on (the default): the chain grows from corrected pictures, uploaded. The
    # prompt changes at the fifth call: the keyframes made ahead for the old one are dropped (how
    # many depends on the servers' speed) and their seeds used next, so the frames stay the same.
    prompts = [PROMPT] * 4 + ["a lighthouse in a storm, dramatic clouds"]
    async with running_comfy_server(root=tmp_path / "one", step_delay=0.01) as one:
        alone = await dream(tmp_path, [one], "hybrid", 7, coherence=True, prompts=prompts)
    async with (
        running_comfy_server(root=tmp_path / "a", step_delay=0.01) as a,
        running_comfy_server(root=tmp_path / "b", step_delay=0.01) as b,
    ):
        spread = await dream(tmp_path, [a, b], "hybrid", 7, coherence=True, prompts=prompts)
        assert decodes(a) > 0 and decodes(b) > 0  # really spread
    assert_same_frames(alone, spread)
    assert {f.prompt for f in spread[-4:]} == {prompts[-1]}


async def _chain_server_dies(tmp_path: Path, mode: str, calls: int, kill_at: int) -> None:
    async with running_comfy_server(root=tmp_path / "one", step_delay=0.01) as one:
        alone = await dream(tmp_path, [one], mode, calls)
    async with (
        running_comfy_server(root=tmp_path / "a", step_delay=0.01) as a,
        running_comfy_server(root=tmp_path / "b", step_delay=0.01) as b,
    ):
        killed: list[ComfyTestServer] = []

        async def kill_the_chain_server(backend: ComfyUIBackend, i: int) -> None:
            if i == kill_at:
                chain = a if samplings(a) > samplings(b) else b
                killed.append(chain)
                # Gone mid-chain: the keyframe asked for ahead (or planned) is on it now.
                await chain.refuse_connections()

        frames = await dream(tmp_path, [a, b], mode, calls, during=kill_the_chain_server)
        survivor = b if killed[0] is a else a
        assert samplings(survivor) >= calls - kill_at  # the rest of the chain was made there
    # The dream went on from the last keyframe it had, without a gap or a different picture.
    assert_same_frames(alone, frames)


async def test_another_server_takes_the_keyframe_chain_over_when_its_server_dies(tmp_path: Path) -> None:
    await _chain_server_dies(tmp_path, "hybrid", calls=6, kill_at=3)


async def test_img2img_fails_over_to_the_second_server(tmp_path: Path) -> None:
    await _chain_server_dies(tmp_path, "img2img", calls=6, kill_at=3)
