"""What the user asks for is on screen within a frame or two: frames carry who they are, a change
cuts the queue and restarts from the frame on screen, a typed prompt holds, the look-ahead is
sized by need. Driven by a fake clock: one publish tick is one ``frame_interval`` of fake time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.dream.controller import DreamController
from dream_window.dream.output import read_label
from dream_window.events import FramePublished
from dream_window.values.frame import FrameLabel
from dream_window.values.generation import NO_PLAN
from tests.conftest import FakeClock, fast_config, hang_guard, until

INTERVAL = 1.5


def dream(
    tmp_path: Path, clock: FakeClock, prompts: dict[str, object] | None = None, **generation: object
) -> DreamController:
    # The defaults a user has: 1.5 s cadence, 8-frame keyframe interval, up to 16 frames ahead.
    cfg = fast_config(
        tmp_path,
        prompts=prompts or {},
        generation={
            "frame_interval": INTERVAL,
            "keyframe_interval": 8,
            "buffer_size": 16,
            "width": 64,
            "height": 96,
            **generation,
        },
    )
    return build_controller(cfg, BuiltinEngine(offload=False), clock=clock, fsync=False)


class Published:
    """Every FramePublished, with the fake time it was published at."""

    def __init__(self, c: DreamController, clock: FakeClock) -> None:
        self.events: list[tuple[float, FramePublished]] = []
        c.events.subscribe(FramePublished, lambda e: self.events.append((clock.monotonic(), e)))

    async def until(self, n: int, limit: float = 20.0) -> None:
        async def wait() -> None:
            while len(self.events) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        await hang_guard(wait(), limit)

    def after(self, i: int) -> list[FramePublished]:
        return [e for _, e in self.events[i:]]


@pytest.mark.parametrize("mode", ["hybrid", "interpolate", "img2img"])
@pytest.mark.parametrize("action", ["prompt", "skip", "mode"])
async def test_a_change_is_on_screen_within_two_publish_ticks(
    tmp_path: Path, clock: FakeClock, mode: str, action: str
) -> None:
    c = dream(tmp_path, clock, mode=mode)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(6)
        at = clock.monotonic()
        if action == "prompt":
            wanted = await c.set_prompt("a lighthouse in fog")
        elif action == "skip":
            wanted = await c.skip()
        else:
            await c.set_mode("img2img" if mode != "img2img" else "hybrid")
            wanted = c.prompts.current
        before = len(seen.events)  # (a frame being written at the call finishes first)
        await seen.until(before + 3)
        t_first, first = seen.events[before]
        # The very next frame published is the first one made for the change ...
        assert first.prompt == wanted
        if action == "mode":
            assert first.mode == c.mode.name != mode
        # ... and it came within two ticks of fake time: nothing made before it was played out.
        assert t_first - at <= 2 * INTERVAL + 1e-9
        assert all(e.prompt == wanted for e in seen.after(before))
    finally:
        c.stop()
        await run


async def test_a_second_change_drops_what_was_made_for_the_first(tmp_path: Path, clock: FakeClock) -> None:
    # Each change makes everything before it stale, the first change's frames included: a frame
    # made for the first and waiting for its publish tick must not follow the second one.
    c = dream(tmp_path, clock, mode="hybrid")
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(3)
        first = await c.set_prompt("a lighthouse in fog")
        await until(lambda: any(e.prompt == first for e in seen.after(0)), "a frame for the first change")
        await until(lambda: len(c.buffer) > 0, "frames made ahead for it")
        second = await c.set_prompt("a harbour at dawn")
        before = len(seen.events)
        await seen.until(before + 3)
        assert [e.prompt for e in seen.after(before)] == [second] * len(seen.after(before))
    finally:
        c.stop()
        await run


@pytest.mark.parametrize("mode", ["hybrid", "interpolate"])
async def test_the_change_is_a_short_transition_from_the_frame_on_screen(
    tmp_path: Path, clock: FakeClock, mode: str
) -> None:
    c = dream(tmp_path, clock, mode=mode, transition_frames=4, interpolation_frames=12)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(4)
        await c.set_prompt("a lighthouse in fog")
        before = len(seen.events)
        await seen.until(before + 6)
        kinds = [e.kind for e in seen.after(before)][:5]
        # Four slerped frames from the picture on screen, then the new keyframe: no hard cut, no
        # 7- or 12-frame wait.
        assert kinds == ["transition"] * 4 + ["keyframe"]
    finally:
        c.stop()
        await run


async def test_the_png_text_of_every_published_frame_round_trips(tmp_path: Path, clock: FakeClock) -> None:
    c = dream(tmp_path, clock, keyframe_interval=3, seed_policy="increment", seed=40)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(3)
        await c.set_prompt("un phare dans la brume — 霧の灯台")  # not Latin-1: iTXt
        await seen.until(12)
    finally:
        c.stop()
        await run
    for _, e in seen.events:
        _, label = read_label(e.path)
        assert label == FrameLabel(e.prompt, e.index, e.seed, e.mode, e.kind, e.backend, e.model)
        assert (label.mode, label.backend, label.model) == (
            "hybrid",
            "built-in engine (not AI)",
            "procedural",
        )
    keyframes = [e for _, e in seen.events if e.kind in ("keyframe", "txt2img")]
    assert all(isinstance(e.seed, int) and e.seed >= 40 for e in keyframes)
    # current_frame.png is the last frame, labelled as such; status says it is what is on screen.
    _, on_disk = read_label(c.output.current_path)
    last = seen.events[-1][1]
    assert on_disk is not None and on_disk.index == last.index == c.snapshot()["on_screen"]["index"]  # type: ignore[index]
    assert c.snapshot()["current_prompt"] == last.prompt


async def test_status_separates_the_prompt_on_screen_from_the_next_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    c = dream(tmp_path, clock)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(3)
        await c.pause("user")
        old = c.on_screen
        assert old is not None
        await c.set_prompt("a lighthouse in fog")  # while paused: nothing new reaches the screen
        s = c.snapshot()
        assert s["current_prompt"] == old.prompt != "a lighthouse in fog"
        assert s["next_prompt"] == "a lighthouse in fog"
        assert s["prompt_hold"]["prompt"] == "a lighthouse in fog"  # type: ignore[index]
        assert len(c.buffer) == 0  # what was made for the old prompt is gone
        n = len(seen.events)
        await c.resume("user")
        await seen.until(n + 1)
        assert c.snapshot()["current_prompt"] == "a lighthouse in fog" == seen.events[n][1].prompt
    finally:
        c.stop()
        await run


async def test_a_held_prompt_is_not_rotated_away_until_the_hold_ends(
    tmp_path: Path, clock: FakeClock
) -> None:
    c = dream(tmp_path, clock, prompts={"rotate_every_frames": 3, "hold_minutes": 10}, keyframe_interval=2)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(2)
        await c.set_prompt("a lighthouse in fog")
        start = len(seen.events)
        await seen.until(start + 30)  # 30 frames: ten rotations' worth, 45 s of fake time
        shown = [e.prompt for e in seen.after(start)]
        assert shown == ["a lighthouse in fog"] * len(shown)
        assert c.prompts.held_for is not None and 0 < c.prompts.held_for < 600
        clock.advance(600)  # the ten minutes are up: the next frame lets go, rotation resumes
        n = len(seen.events)
        await seen.until(n + 12)
        later = [e.prompt for e in seen.after(n)]
        assert later[-1] != "a lighthouse in fog" and c.prompts.held_for is None
    finally:
        c.stop()
        await run


async def test_skip_lets_a_held_prompt_go(tmp_path: Path, clock: FakeClock) -> None:
    c = dream(tmp_path, clock)
    await c.set_prompt("a lighthouse in fog")
    assert c.snapshot()["prompt_hold"] is not None
    assert await c.skip() != "a lighthouse in fog"
    assert c.snapshot()["prompt_hold"] is None


async def test_the_look_ahead_is_sized_by_generation_time_not_a_fixed_backlog(
    tmp_path: Path, clock: FakeClock
) -> None:
    c = dream(tmp_path, clock, mode="img2img")
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(20)
        # The built-in engine takes no fake time: one frame of headroom covers it, plus one
        # interval of slack; never the 16 frames buffer_size allows.
        assert c.headroom.target() == 1
        assert len(c.buffer) <= 2
        assert c.snapshot()["buffer"]["capacity"] == 16  # type: ignore[index]
    finally:
        c.stop()
        await run


class GatedEngine(BuiltinEngine):
    """The built-in engine whose GPU work (keyframes, and the decodes and encodes of in-betweens)
    waits for ``gate``: a slow GPU, at the test's say. (Hybrid asks for the next keyframe while it
    decodes a segment, so gating keyframes alone would not stall it.)"""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__(offload=False)
        self.gate = gate

    async def txt2img(self, request: Any, *, plan: Any = NO_PLAN) -> Any:
        await self.gate.wait()
        return await super().txt2img(request, plan=plan)

    async def img2img(self, image: Any, request: Any, *, plan: Any = NO_PLAN) -> Any:
        await self.gate.wait()
        return await super().img2img(image, request, plan=plan)

    async def encode(self, images: Any) -> Any:
        await self.gate.wait()
        return await super().encode(images)

    async def decode(self, latents: Any) -> Any:
        await self.gate.wait()
        return await super().decode(latents)


async def test_resume_shows_a_frame_made_before_the_pause_or_restarts_from_the_screen(
    tmp_path: Path, clock: FakeClock
) -> None:
    gate = asyncio.Event()
    gate.set()
    c = build_controller(dream(tmp_path, clock).config, GatedEngine(gate), clock=clock, fsync=False)
    seen = Published(c, clock)
    run = asyncio.create_task(c.run())
    try:
        await seen.until(3)
        await c.pause("user")
        assert len(c.buffer) > 0  # frames made before the pause wait for the resume ...
        waiting = [f.prompt for _, f in c.buffer._items]
        n = len(seen.events)
        await c.resume("user")
        await seen.until(n + 1)
        assert seen.events[n][1].prompt == waiting[0]  # ... and the first of them is shown at once
        assert seen.events[n][0] - clock.monotonic() <= INTERVAL

        gate.clear()  # generation stalls: the screen runs through what was made ahead
        for _ in range(5):
            await until(lambda: len(c.buffer) == 0 and c._next_out is None and c.generating)
            await c.pause("user")  # the batch in the making is dropped
            if len(c.buffer) == 0 and c._next_out is None:
                break
            # A batch already past the gate when it closed (hybrid asks for its next keyframe
            # while it decodes) landed before the pause: those frames are shown; try again.
            await c.resume("user")
        else:
            raise AssertionError("no pause found the dream with nothing made")
        gate.set()
        n = len(seen.events)
        await c.resume("user")
        await seen.until(n + 5)
        # Nothing to show: the mode restarts from the frame on screen, a short transition.
        assert [e.kind for e in seen.after(n)][:5] == ["transition"] * 4 + ["keyframe"]
    finally:
        c.stop()
        await run
