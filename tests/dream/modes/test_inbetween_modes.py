"""hybrid and interpolate end to end on the built-in engine: keyframes, slerped in-betweens decoded
in batches, the crossfade fallback said in status, and the latent-walk seam."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream_window.app import build_controller
from dream_window.backends.base import SupportsLatentWalk
from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import SeedPolicy
from dream_window.dream.modes.base import ModeContext
from dream_window.dream.modes.hybrid import HybridMode
from dream_window.dream.modes.interpolate import InterpolateMode
from dream_window.events import FramePublished
from dream_window.interpolation.latent_encoder import BackendLatentEncoder
from dream_window.interpolation.local_vae import LocalVAEEncoder
from dream_window.values.frame import Frame
from dream_window.values.generation import NO_PLAN, GeneratedImage, GenerationRequest, Plan
from dream_window.values.seeds import SeedSource
from tests.conftest import fast_config, hang_guard

OCEAN = "bioluminescent ocean at night, glowing waves"
FIRE = "fire and flames, embers"


class CountingEncoder(BackendLatentEncoder):
    """The real backend encoder, recording decode batch sizes."""

    def __init__(self, backend: BuiltinEngine, batch_size: int) -> None:
        super().__init__(backend, batch_size=batch_size)
        self.decode_sizes: list[int] = []
        self.encodes = 0

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.encodes += 1
        return await super().encode(images)

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        self.decode_sizes.append(int(latents.shape[0]))
        return await super().decode(latents)


def _ctx(tmp_path: Path, prompts: list[str], encoder=None, notes: list[str] | None = None, **gen):  # type: ignore[no-untyped-def]
    cfg = fast_config(tmp_path, generation={"width": 64, "height": 128, **gen})
    it = iter(prompts)
    current = {"p": next(it)}

    def prompt() -> str:
        return current["p"]

    def advance() -> None:
        current["p"] = next(it)

    engine = BuiltinEngine(offload=False)
    ctx = ModeContext(
        backend=engine,
        config=cfg.generation,
        prompt=prompt,
        seeds=SeedSource(SeedPolicy.INCREMENT, 1, random.Random(0)),
        encoder=encoder,
        decode_batch_size=3,
    )
    if notes is not None:
        ctx.note = notes.append
    return ctx, engine, advance


def _dist(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


async def _assert_moves_monotonically(engine: BuiltinEngine, frames: list[Frame], start: Image.Image) -> None:
    # Compare with the keyframes as seen through the latent (encode → decode), the space we slerp in.
    za, zb = await engine.encode([start]), await engine.encode([frames[-1].image])
    a, b = await engine.decode(np.concatenate([za, zb]))
    inb = [f.image for f in frames[:-1]]
    to_a = [_dist(x, a) for x in inb]
    to_b = [_dist(x, b) for x in inb]
    assert to_a == sorted(to_a) and to_b == sorted(to_b, reverse=True)
    for x in inb:  # in-betweens really differ from both keyframes
        assert _dist(x, a) > 0.5 and _dist(x, b) > 0.5


async def test_hybrid_keyframes_and_batched_slerped_inbetweens(tmp_path: Path) -> None:
    engine0 = BuiltinEngine(offload=False)
    enc = CountingEncoder(engine0, batch_size=3)
    ctx, engine, advance = _ctx(tmp_path, [OCEAN, FIRE], encoder=enc, keyframe_interval=8, denoise=0.6)
    mode = HybridMode(ctx)
    first = await mode.next_frames()
    assert [f.kind for f in first] == ["keyframe"]
    second = await mode.next_frames()
    assert [f.kind for f in second] == ["inbetween"] * 7 + ["keyframe"]
    assert enc.decode_sizes == [3, 3, 1]  # decoded in batches of decode_batch_size
    assert enc.encodes == 2  # each keyframe encoded once (the engine returns no latent with a frame)
    assert [f.params["t"] for f in second[:-1]] == pytest.approx([i / 8 for i in range(1, 8)])
    assert all(f.image.size == (64, 128) for f in second)
    await _assert_moves_monotonically(engine, second, first[0].image)
    # A prompt change makes the next keyframe by txt2img (the same picture txt2img gives).
    advance()
    third = await mode.next_frames()
    fresh = await engine.txt2img(GenerationRequest(FIRE, seed=third[-1].params["seed"], width=64, height=128))
    assert _dist(third[-1].image, fresh.image) == 0.0
    assert enc.encodes == 3  # the previous keyframe's latent is kept, not encoded again


async def test_hybrid_injection_supplies_the_next_keyframe(tmp_path: Path) -> None:
    ctx, engine, _ = _ctx(tmp_path, [OCEAN], keyframe_interval=3, denoise=0.5)
    mode = HybridMode(ctx)
    previous = (await mode.next_frames())[-1].image
    cached = (await engine.txt2img(GenerationRequest(FIRE, seed=99, width=64, height=128))).image
    mode.inject(cached, "cached #7")
    frames = await mode.next_frames()
    assert frames[-1].kind == "injected" and frames[-1].params["injected_from"] == "cached #7"
    # Grown lightly from the cached frame: far closer to it than to the previous keyframe.
    assert _dist(frames[-1].image, cached) < 0.5 * _dist(frames[-1].image, previous)


async def test_interpolate_walks_between_txt2img_keyframes(tmp_path: Path) -> None:
    ctx, engine, _ = _ctx(tmp_path, [OCEAN], interpolation_frames=5)
    mode = InterpolateMode(ctx)
    first = await mode.next_frames()
    frames = await mode.next_frames()
    assert [f.kind for f in first] == ["keyframe"]
    assert [f.kind for f in frames] == ["inbetween"] * 5 + ["keyframe"]
    assert first[0].params["seed"] != frames[-1].params["seed"]  # a new seed per keyframe
    await _assert_moves_monotonically(engine, frames, first[0].image)


async def test_no_latent_path_falls_back_to_crossfade_and_says_so_once(tmp_path: Path) -> None:
    notes: list[str] = []
    broken = LocalVAEEncoder(tmp_path / "missing.safetensors", "sd")
    ctx, _, _ = _ctx(tmp_path, [OCEAN], encoder=broken, notes=notes, keyframe_interval=4)
    mode = HybridMode(ctx)
    first = await mode.next_frames()
    for _ in range(2):
        frames = await mode.next_frames()
        assert [f.kind for f in frames] == ["crossfade"] * 3 + ["keyframe"]
    assert len(notes) == 1 and "crossfade" in notes[0] and "missing.safetensors" in notes[0]
    assert first[0].kind == "keyframe"


async def test_crossfade_frames_are_exact_blends(tmp_path: Path) -> None:
    ctx, _, _ = _ctx(
        tmp_path, [OCEAN], encoder=LocalVAEEncoder(tmp_path / "x.safetensors", "sd"), keyframe_interval=2
    )
    mode = HybridMode(ctx)
    a = (await mode.next_frames())[0].image
    mid, b = await mode.next_frames()
    want = (np.asarray(a, np.float32) + np.asarray(b.image, np.float32)) / 2
    assert mid.kind == "crossfade"
    assert np.abs(np.asarray(mid.image, np.float32) - want).max() <= 0.5 + 1e-3


class WalkingEngine(BuiltinEngine):
    """The built-in engine plus a latent_walk, to exercise the seam a ComfyUI backend fills."""

    def __init__(self) -> None:
        super().__init__(offload=False)
        self.walks: list[tuple[GenerationRequest, GenerationRequest, list[float]]] = []
        self.latent_walk_available = True

    async def latent_walk(
        self, start: GenerationRequest, end: GenerationRequest, ts: Sequence[float], *, plan: Plan = NO_PLAN
    ) -> list[GeneratedImage]:
        self.walks.append((start, end, list(ts)))
        za = self.encode_sync(
            [Image.fromarray(self.render(start.prompt, start.seed, start.width, start.height))]
        )
        zb = self.encode_sync([Image.fromarray(self.render(end.prompt, end.seed, end.width, end.height))])
        from dream_window.values.slerp import spherical_lerp

        images = self.decode_sync(spherical_lerp(za[0], zb[0], np.asarray(ts)))
        return [GeneratedImage(im, end, 1.0) for im in images]


async def test_interpolate_uses_the_backends_latent_walk_when_it_has_one(tmp_path: Path) -> None:
    engine = WalkingEngine()
    assert isinstance(engine, SupportsLatentWalk)
    cfg = fast_config(tmp_path, generation={"width": 64, "height": 128, "interpolation_frames": 3})
    ctx = ModeContext(
        backend=engine,
        config=cfg.generation,
        prompt=lambda: OCEAN,
        seeds=SeedSource(SeedPolicy.INCREMENT, 5, random.Random(0)),
    )
    mode = InterpolateMode(ctx)
    await mode.next_frames()
    frames = await mode.next_frames()
    assert [f.kind for f in frames] == ["inbetween"] * 3 + ["keyframe"]
    # The first keyframe is the walk's own endpoint (a walk of one frame), then the segment to the next.
    (key, key_end, key_ts), (start, end, ts) = engine.walks
    assert (key.seed, key_end.seed, key_ts) == (5, 5, [1.0])
    assert (start.seed, end.seed) == (5, 6) and ts == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(f.params["interpolation"] == "latent_walk" for f in frames[:-1])


@pytest.mark.parametrize("mode", ["hybrid", "interpolate"])
async def test_controller_publishes_inbetweens_end_to_end(tmp_path: Path, mode: str) -> None:
    cfg = fast_config(tmp_path, generation={"mode": mode, "width": 64, "height": 128})
    c = build_controller(cfg, BuiltinEngine(offload=False), max_frames=7, fsync=False)
    kinds: list[str] = []
    c.events.subscribe(FramePublished, lambda e: kinds.append(e.kind))
    await hang_guard(c.run(), 60)
    # fast_config: keyframe_interval 3, interpolation_frames 2 → keyframe, two in-betweens, keyframe ...
    assert kinds == ["keyframe", "inbetween", "inbetween", "keyframe", "inbetween", "inbetween", "keyframe"]
    status = json.loads((tmp_path / "output" / "status.json").read_text())
    assert status["frame_count"] == 7 and status["mode"] == mode
    assert len(list((tmp_path / "output" / "frames").glob("frame_*.png"))) == 7
    assert not any("crossfade" in n for n in status["notes"])


async def test_controller_states_the_crossfade_fallback_in_status(tmp_path: Path) -> None:
    cfg = fast_config(
        tmp_path,
        generation={"width": 64, "height": 128},
        interpolation={"encoder": "local", "vae_path": "nowhere/vae.safetensors", "vae_family": "sd"},
    )
    c = build_controller(cfg, BuiltinEngine(offload=False), max_frames=5, fsync=False)
    await hang_guard(c.run(), 60)
    status = json.loads((tmp_path / "output" / "status.json").read_text())
    assert status["frame_count"] == 5
    assert sum("crossfade" in n for n in status["notes"]) == 1
