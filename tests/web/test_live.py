"""The live hub (web/live.py) over a real aiohttp server and a real aiohttp WebSocket client: frames
pushed as binary messages, only the newest unsent frame kept for a page that falls behind, the
in-order messages all delivered, the status sent apart from frames and rate-limited, and text-only
readers and hidden pages sent frames by URL."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from dream_window.events import FramePublished, PromptChanged, StateChanged
from dream_window.web.live import LiveHub
from tests.conftest import until
from tests.web.conftest import Dream, make_dream


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: ``side``² × 3 bytes and then some."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buf, format="PNG", compress_level=0
    )
    return buf.getvalue()


def frame_event(index: int, png: bytes | None, *, seed: int | None = None) -> FramePublished:
    return FramePublished(
        index=index,
        prompt=f"prompt {index}",
        kind="keyframe",
        path=Path(f"/nowhere/frame_{index:06d}.png"),
        png=png,
        seed=seed,
        mode="img2img",
        backend="built-in",
    )


def unpack(message: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack(">I", message[:4])
    return json.loads(message[4 : 4 + n]), message[4 + n :]


class Live:
    def __init__(self, dream: Dream, hub: LiveHub, server: TestServer) -> None:
        self.dream = dream
        self.hub = hub
        self.server = server

    def emit(self, event: Any) -> None:
        self.dream.controller.events.emit(event)

    def url(self, query: str = "") -> str:
        return str(self.server.make_url("/live" + query))


@pytest_asyncio.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    # A real controller (not running: only the test emits events) and the hub on a bare app.
    dream = await make_dream(tmp_path, serve=False)
    hub = LiveHub(dream.controller, crossfade_ms=0, show_previews=False, status_interval_s=3600)
    app = web.Application()
    app.router.add_get("/live", hub.handle)
    hub.start()
    server = TestServer(app)
    await server.start_server()
    try:
        yield Live(dream, hub, server)
    finally:
        await hub.close()
        await server.close()
        await dream.close()


async def receive_all(
    ws: aiohttp.ClientWebSocketResponse, until_done: Any, *, ready: bool = False
) -> list[aiohttp.WSMessage]:
    """Messages until ``until_done(messages)`` is true (a 10 s hang guard per message); ``ready``:
    say so after each binary frame, as the page does once it has room for the next."""
    got: list[aiohttp.WSMessage] = []
    while not until_done(got):
        got.append(await ws.receive(timeout=10))
        if ready and got[-1].type is aiohttp.WSMsgType.BINARY:
            await ws.send_json({"type": "ready"})
    return got


def is_binary(m: aiohttp.WSMessage) -> bool:
    return m.type is aiohttp.WSMsgType.BINARY


def kind(m: aiohttp.WSMessage) -> str:
    """ "binary", or a text message's type."""
    return "binary" if is_binary(m) else str(json.loads(m.data)["type"])


def texts(msgs: list[aiohttp.WSMessage]) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in msgs if not is_binary(m)]


async def test_a_frame_is_one_binary_message_with_its_header_and_png(live: Live) -> None:
    png = noise_png(64)
    seed = 2**63 + 12345  # past 2**53: JSON keeps its digits
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        live.emit(frame_event(7, png, seed=seed))
        msgs = await receive_all(ws, lambda got: any(map(is_binary, got)))
    frames = [m for m in msgs if is_binary(m)]
    header, body = unpack(frames[0].data)
    assert body == png
    assert isinstance(header.pop("t_ms"), int)  # when it was published, on the service's clock
    assert header == {
        "type": "frame",
        "index": 7,
        "url": "/api/frames/7",
        "prompt": "prompt 7",
        "kind": "keyframe",
        "seed": seed,
        "mode": "img2img",
        "backend": "built-in",
        "model": "",
    }
    assert "status" not in header  # the snapshot travels apart, rate-limited


async def test_a_burst_sends_only_the_newest_frame_and_every_prompt_message(live: Live) -> None:
    png = noise_png(32)
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        # One synchronous burst on the bus: the page's sender has not run in between.
        for i in range(1, 51):
            live.emit(frame_event(i, png))
            if i % 10 == 0:
                live.emit(PromptChanged(prompt=f"next {i}", why="rotation"))
        (box,) = live.hub.outboxes
        assert box.frames_replaced == 49
        msgs = await receive_all(
            ws, lambda got: "binary" in map(kind, got) and [kind(m) for m in got].count("prompt") == 5
        )
    frames = [unpack(m.data)[0]["index"] for m in msgs if is_binary(m)]
    assert frames == [50]
    assert [t["prompt"] for t in texts(msgs) if t["type"] == "prompt"] == [
        f"next {i}" for i in (10, 20, 30, 40, 50)
    ]
    assert [kind(m) for m in msgs].count("status") == 1


async def test_a_page_that_falls_behind_skips_frames_and_is_never_queued_for(live: Live) -> None:
    # 3 MB frames published as fast as the loop goes, to a page that reads nothing meanwhile: it
    # is sent one frame, then none until it says it has room, each newer frame replacing the
    # unsent one. Then it reads, saying it is ready after each frame, as the viewer does.
    png = noise_png(1024)
    n = 60
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        (box,) = live.hub.outboxes
        for i in range(1, n + 1):
            live.emit(frame_event(i, png))
            live.emit(PromptChanged(prompt=f"next {i}", why="rotation"))
            await asyncio.sleep(0)  # the sender runs between publishes, as at a live cadence
        msgs = await receive_all(
            ws,
            lambda got: (
                any(is_binary(m) and unpack(m.data)[0]["index"] == n for m in got)
                and [kind(m) for m in got].count("prompt") == n
            ),
            ready=True,
        )
    frames = [unpack(m.data)[0]["index"] for m in msgs if is_binary(m)]
    prompts = [t["prompt"] for t in texts(msgs) if t["type"] == "prompt"]
    assert frames == sorted(set(frames)) and frames[-1] == n  # in order, the newest last
    assert len(frames) < n  # frames were skipped ...
    assert box.frames_replaced == n - len(frames)  # ... each replaced by a newer one, none queued
    assert prompts == [f"next {i}" for i in range(1, n + 1)]  # every prompt, in order


async def test_a_binary_page_is_sent_a_frame_only_when_it_has_room(live: Live) -> None:
    png = noise_png(16)
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        live.emit(frame_event(1, png))
        first = await receive_all(ws, lambda got: "binary" in map(kind, got))
        live.emit(frame_event(2, png))
        live.emit(frame_event(3, png))
        live.emit(PromptChanged(prompt="after 3", why="rotation"))
        # Messages go in the order they happened: had frame 3 been sendable, it would come first.
        held = await receive_all(ws, lambda got: "prompt" in map(kind, got))
        assert "binary" not in map(kind, held)
        await ws.send_json({"type": "ready"})
        sent = await receive_all(ws, lambda got: "binary" in map(kind, got))
    assert [unpack(m.data)[0]["index"] for m in first + sent if is_binary(m)] == [1, 3]


async def test_status_is_sent_apart_from_frames_and_rate_limited(live: Live, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        for i in range(1, 21):
            live.emit(frame_event(i, noise_png(8, i)))
            await asyncio.sleep(0)
        live.emit(StateChanged(state="paused", reasons=("user",)))
        msgs = await receive_all(ws, lambda got: "state" in map(kind, got))
    sent = texts(msgs)
    kinds = [t["type"] for t in sent]
    # The first frame's status at once; the interval (an hour here) holds back every later one;
    # the state change carries its own fresh snapshot.
    assert kinds.count("status") == 1, kinds
    assert kinds[-1] == "state" and sent[-1]["status"]["state"] == live.dream.controller.state


async def test_a_text_reader_and_a_hidden_page_get_frames_by_url(live: Live) -> None:
    png = noise_png(16)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(live.url()) as text_ws, s.ws_connect(live.url("?frames=binary")) as page:
            for ws in (text_ws, page):
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
            await page.send_json({"type": "visibility", "hidden": True})
            await until(lambda: any(b.hidden for b in live.hub.outboxes), "the page to be hidden", 10)
            live.emit(frame_event(1, png))
            for ws in (text_ws, page):
                msgs = await receive_all(ws, lambda got: "frame" in map(kind, got))
                assert not any(map(is_binary, msgs))
                frame = json.loads(msgs[-1].data)
                assert frame["index"] == 1 and frame["url"] == "/api/frames/1"

            await page.send_json({"type": "visibility", "hidden": False})
            await until(
                lambda: not any(b.hidden for b in live.hub.outboxes if b.binary), "the page shown", 10
            )
            live.emit(frame_event(2, png))
            msgs = await receive_all(page, lambda got: any(map(is_binary, got)))
            header, body = unpack(msgs[-1].data)
            assert header["index"] == 2 and body == png


async def test_a_frame_without_its_png_goes_by_url_even_to_a_binary_page(live: Live) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        live.emit(frame_event(3, None))
        msgs = await receive_all(ws, lambda got: "frame" in map(kind, got))
    assert not any(map(is_binary, msgs))
    assert json.loads(msgs[-1].data)["url"] == "/api/frames/3"


async def test_closing_the_hub_ends_every_page(live: Live) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(live.url("?frames=binary")) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        await live.hub.close()
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await until(lambda: live.hub.client_count == 0, "the page to be let go", 10)
