"""The viewer at a live cadence, in a real headless Chromium: frames pushed as binary WebSocket
messages (no fetch per frame), the newest one shown, crossfades skipped when frames come faster
than the fade, and a page that cannot keep up skipping frames instead of queueing them (nothing
grows: the server's outbox, the page's pending frames, its object URLs)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dream_window.events import FramePublished
from tests.conftest import hang_guard
from tests.web.conftest import CHROMIUM, Dream, make_dream
from tests.web.test_browser import FRONT_INDEX, SHOWS_AT_LEAST, open_page, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed"),
]

# Installed before the page's own script: counts object URLs made and given back (the most alive
# at once), images decoded, and opacity transitions started on the layers.
COUNTERS = """
window.__live = {made: 0, revoked: 0, alive: 0, mostAlive: 0, transitions: 0};
const make = URL.createObjectURL.bind(URL), revoke = URL.revokeObjectURL.bind(URL);
URL.createObjectURL = (b) => {
  const c = window.__live; c.made++; c.alive++; c.mostAlive = Math.max(c.mostAlive, c.alive);
  return make(b);
};
URL.revokeObjectURL = (u) => { const c = window.__live; c.revoked++; c.alive--; return revoke(u); };
document.addEventListener('transitionrun', (ev) => {
  if (ev.propertyName === 'opacity' && ev.target.classList.contains('layer')) window.__live.transitions++;
}, true);
"""
COUNTS = "() => ({...window.__live})"


class Watched:
    """A page with what it asked the server for and what came over its WebSocket."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.fetched: list[str] = []  # /api/frames/N requests
        self.binary: list[int] = []  # sizes of binary WebSocket messages received
        self.text: list[str] = []


@contextlib.asynccontextmanager
async def watched_page(browser: Any, dream: Dream) -> AsyncIterator[Watched]:
    """The viewer's page (``open_page``: offline, no JavaScript errors) with the counters installed
    and its /api/frames requests and WebSocket messages recorded."""
    watched: list[Watched] = []

    async def watch(page: Any) -> None:
        await page.add_init_script(COUNTERS)
        w = Watched(page)
        watched.append(w)
        page.on("request", lambda r: w.fetched.append(r.url) if "/api/frames/" in r.url else None)

        def on_socket(ws: Any) -> None:
            def received(payload: str | bytes) -> None:
                if isinstance(payload, bytes):
                    w.binary.append(len(payload))
                else:
                    w.text.append(payload)

            ws.on("framereceived", received)

        page.on("websocket", on_socket)

    async with open_page(browser, dream, before_load=watch):
        yield watched[0]


async def test_frames_arrive_as_binary_messages_and_are_never_fetched(browser: Any, tmp_path: Path) -> None:
    # 10 frames a second against a 600 ms crossfade: a live cadence for this page.
    d = await make_dream(
        tmp_path,
        run=True,
        viewer={"crossfade_ms": 600},
        generation={"frame_interval": 0.1, "mode": "img2img"},
    )
    try:
        async with watched_page(browser, d) as w:
            first = await wait_until(w.page, FRONT_INDEX, within=15)
            # The hello's frame, if any, is the one fetched by URL; from here on none is.
            fetched_at_start = list(w.fetched)
            assert len(fetched_at_start) <= 1
            await wait_until(w.page, SHOWS_AT_LEAST, first + 12, within=30)
            await d.controller.pause("user")
            newest = d.controller.output.last_index
            await wait_until(w.page, f"(n) => ({FRONT_INDEX})() === n", newest, within=10)

            assert w.fetched == fetched_at_start, w.fetched[len(fetched_at_start) :]
            assert len(w.binary) >= 3  # at least the three frames seen in front after the first
            assert not any('"type": "frame"' in t[:20] for t in w.text)  # frames came as binary only
            counts = await w.page.evaluate(COUNTS)
            # Each frame decoded got an object URL; all but the two layers' are given back.
            assert counts["alive"] <= 2 < counts["made"] and counts["mostAlive"] <= 3, counts
            # The picture in front is the newest frame's own PNG.
            shown = await w.page.evaluate(
                "() => { const l = [...document.querySelectorAll('.layer')]"
                ".sort((a, b) => b.style.zIndex - a.style.zIndex)[0];"
                " return [l.naturalWidth, l.naturalHeight, l.src.startsWith('blob:')]; }"
            )
            with Image.open(d.controller.output.path_for(newest)) as im:
                assert shown == [im.width, im.height, True]
    finally:
        await d.close()


def noise_png(side: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buf, format="PNG", compress_level=0
    )
    return buf.getvalue()


async def test_frames_faster_than_the_crossfade_are_cut_and_slow_ones_fade(
    browser: Any, tmp_path: Path
) -> None:
    # The test publishes (a served dream that is not running): 40 frames 30 ms apart against a
    # 600 ms crossfade, then two 1.5 s apart.
    d = await make_dream(tmp_path, viewer={"crossfade_ms": 600})
    pngs = [noise_png(128, seed) for seed in range(4)]

    def publish(i: int) -> None:
        d.controller.events.emit(
            FramePublished(index=i, prompt="p", kind="keyframe", path=Path("unused"), png=pngs[i % len(pngs)])
        )

    try:
        async with watched_page(browser, d) as w:
            await wait_until(w.page, "() => document.getElementById('conn').hidden", within=10)
            for i in range(1, 41):
                publish(i)
                await asyncio.sleep(0.03)  # the dream's cadence, not a synchronisation
            await wait_until(w.page, f"(n) => ({FRONT_INDEX})() === n", 40, within=20)
            fast = await w.page.evaluate(COUNTS)
            # The first two frames have no cadence yet to judge by; after them, cuts. (A loaded
            # machine may hold a frame back past the fade, and the next one or two fade: few.)
            assert fast["made"] >= 4 and fast["transitions"] <= 2 + (fast["made"] - 2) // 4, fast
            for i in (41, 42):
                await asyncio.sleep(1.5)  # a slow cadence: 1.5 s between frames
                publish(i)
            await wait_until(w.page, f"(n) => ({FRONT_INDEX})() === n", 42, within=20)
            slow = await w.page.evaluate(COUNTS)
            assert slow["transitions"] > fast["transitions"], (fast, slow)  # the slow one faded in
    finally:
        await d.close()


BUSY = "(ms) => { const t = performance.now(); while (performance.now() - t < ms) {} return true; }"


async def test_a_burst_faster_than_the_page_is_skipped_not_queued(browser: Any, tmp_path: Path) -> None:
    # A served dream that is not running: only the test publishes, 80 frames of 3 MB as fast as
    # the loop goes, while the page's main thread is busy for 1.5 s and reads nothing.
    d = await make_dream(tmp_path, viewer={"crossfade_ms": 1200})
    n = 80
    pngs = [noise_png(1024, seed) for seed in range(4)]
    try:
        async with watched_page(browser, d) as w:
            await wait_until(w.page, "() => document.getElementById('conn').hidden", within=10)
            assert d.server is not None
            (box,) = d.server.hub.outboxes
            busy = asyncio.ensure_future(w.page.evaluate(BUSY, 1500))
            for i in range(1, n + 1):
                d.controller.events.emit(
                    FramePublished(
                        index=i, prompt="burst", kind="keyframe", path=Path("unused"), png=pngs[i % len(pngs)]
                    )
                )
                await asyncio.sleep(0)  # the page's sender runs between publishes
            await hang_guard(busy, 30)  # a hang guard
            await wait_until(w.page, f"(n) => ({FRONT_INDEX})() === n", n, within=20)
            counts = await w.page.evaluate(COUNTS)

        # The server sent fewer frames than were published, each unsent one replaced by a newer
        # one (never queued), and the page decoded no more than it was sent.
        assert len(w.binary) < n, len(w.binary)
        assert box.frames_replaced == n - len(w.binary)
        assert w.fetched == []
        assert counts["made"] <= len(w.binary), counts
        assert counts["mostAlive"] <= 3 and counts["alive"] <= 2, counts
    finally:
        await d.close()
