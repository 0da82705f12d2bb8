"""The viewer in a real headless Chromium (Debian's /usr/bin/chromium), against a running dream.

One browser per module; each test gets its own dream and page. The whole module shares one event
loop with the browser, so the controller, the viewer server and Playwright run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from dream_window.dream.controller import State
from dream_window.dream.supervisor import Health
from tests.conftest import SLACK, hang_guard
from tests.web.conftest import CHROMIUM, Dream, make_dream

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed"),
]

FRONT_INDEX = """() => {
  const layers = [...document.querySelectorAll('.layer')];
  const front = layers.filter(l => l.dataset.index).sort((a, b) => b.style.zIndex - a.style.zIndex)[0];
  return front ? Number(front.dataset.index) : 0;
}"""

# Records both layers' computed opacity on every animation frame for `ms` milliseconds.
SAMPLE_OPACITY = """(ms) => new Promise(resolve => {
  const layers = [...document.querySelectorAll('.layer')];
  const out = [];
  const t0 = performance.now();
  function tick() {
    out.push(layers.map(l => [Number(getComputedStyle(l).opacity), Number(l.dataset.index || 0)]));
    if (performance.now() - t0 < ms) requestAnimationFrame(tick); else resolve(out);
  }
  requestAnimationFrame(tick);
})"""


async def wait_until(page: Any, fn: str, arg: Any = None, *, within: float = 5.0) -> Any:
    """Poll ``fn(arg)`` in the page until it is truthy, for at most ``within`` (times the suite's
    ``SLACK``: a hang guard) seconds. (Playwright's wait_for_function evaluates a string, which the
    viewer's Content-Security-Policy rightly forbids.)"""
    within *= SLACK
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(fn, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {fn} ({arg!r})")
        await asyncio.sleep(0.02)


SHOWS_AT_LEAST = f"(n) => ({FRONT_INDEX})() >= n"
TEXT_IS = "([id, text]) => document.getElementById(id).textContent.includes(text)"


@pytest_asyncio.fixture(loop_scope="module")
async def dream(tmp_path: Path) -> AsyncIterator[Dream]:
    d = await make_dream(
        tmp_path,
        run=True,
        viewer={"crossfade_ms": 600},
        generation={"frame_interval": 0.8, "mode": "img2img"},
    )
    yield d
    await d.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, dream: Dream) -> AsyncIterator[Any]:
    async with open_page(browser, dream) as p:
        yield p


@contextlib.asynccontextmanager
async def open_page(
    browser: Any, dream: Dream, *, before_load: Callable[[Any], Awaitable[None]] | None = None
) -> AsyncIterator[Any]:
    """A page on ``dream``'s viewer in a fresh context; fails the test on a request outside the
    viewer's origin or a JavaScript error. ``before_load(page)`` runs before the viewer loads
    (init scripts, listeners)."""
    context = await browser.new_context(viewport={"width": 640, "height": 400})
    # Offline: any request that leaves the viewer's own origin fails the test.
    foreign: list[str] = []
    url = dream.url  # (the test may close the server: the page still tries to reach it)

    async def route(r: Any) -> None:
        if r.request.url.startswith(url) or r.request.url.startswith(url.replace("http", "ws")):
            await r.continue_()
        else:
            foreign.append(r.request.url)
            await r.abort()

    await context.route("**/*", route)
    errors: list[str] = []
    p = await context.new_page()
    p.on("pageerror", lambda e: errors.append(str(e)))
    if before_load is not None:
        await before_load(p)
    await p.goto(url + "/")
    try:
        yield p
    finally:
        await context.close()
    assert foreign == [], f"the page reached outside its origin: {foreign}"
    assert errors == [], f"JavaScript errors: {errors}"


async def test_page_loads_offline_and_shows_frames(page: Any, dream: Dream) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    assert await page.title() == "Dream Window"
    assert await page.locator("#empty").is_hidden()


async def test_each_new_frame_is_shown_without_a_reload(page: Any, dream: Dream) -> None:
    # How fast is bench/latency.py's business; here only that every frame arrives, pushed.
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    for _ in range(3):
        index = await dream.next_frame()
        await wait_until(page, SHOWS_AT_LEAST, index, within=10)  # a hang guard, not a timing
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


# Watches the next opacity transition of a layer to its end: its duration, and both layers'
# opacity sampled on every animation frame while it runs (however few frames a loaded machine
# draws, each sample must hold).
WATCH_FADE = """() => new Promise(resolve => {
  const layers = [...document.querySelectorAll('.layer')];
  const samples = [];
  let running = null;
  function tick() {
    samples.push(layers.map(l => Number(getComputedStyle(l).opacity)));
    if (running) requestAnimationFrame(tick);
  }
  for (const [i, layer] of layers.entries()) {
    layer.addEventListener('transitionrun', ev => {
      if (ev.propertyName !== 'opacity' || running) return;
      running = {layer: i, duration: getComputedStyle(layer).transitionDuration};
      requestAnimationFrame(tick);
    });
    layer.addEventListener('transitionend', ev => {
      if (ev.propertyName !== 'opacity' || !running || running.layer !== i) return;
      const done = running;
      running = null;
      samples.push(layers.map(l => Number(getComputedStyle(l).opacity)));
      resolve({layer: done.layer, duration: done.duration, samples});
    });
  }
})"""


async def test_crossfade_fades_the_new_frame_in_over_the_old_one(page: Any, dream: Dream) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    await dream.next_frame()  # both layers hold a frame from here on
    await wait_until(page, SHOWS_AT_LEAST, dream.controller.output.last_index, within=10)
    watch = asyncio.ensure_future(page.evaluate(WATCH_FADE))
    await dream.next_frame()
    fade = await hang_guard(watch, 20)  # a hang guard
    assert fade["duration"] == "0.6s"  # viewer.crossfade_ms, as a CSS transition: it animates
    incoming = [s[fade["layer"]] for s in fade["samples"]]
    assert incoming == sorted(incoming), incoming  # rising, never back
    assert incoming[-1] == 1.0
    # The outgoing layer stays opaque under the incoming one: the picture never dims mid-fade.
    assert min(max(s) for s in fade["samples"]) > 0.98, fade["samples"]


async def test_pause_button_pauses_and_no_frames_are_published(page: Any, dream: Dream) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    await page.mouse.move(320, 200)
    # The answer to POST /api/pause comes once pause() has returned, and pause() lets a frame
    # being written when it landed finish first: from then on the count must not move.
    async with page.expect_response(lambda r: r.url.endswith("/api/pause")) as answer:
        await page.click("#btn-pause")
    assert (await answer.value).status == 200
    count = dream.controller.frame_count
    await wait_until(page, TEXT_IS, ["state", "paused"], within=3)
    assert dream.controller.state is State.PAUSED
    assert dream.controller.pause_reasons == ["user"]
    assert await page.locator("#btn-pause").inner_text() == "Resume"
    # An observation window, not a synchronisation: 2.5 frame intervals in which a dream that
    # ignored the pause would publish (it can only make this pass wrongly, never fail wrongly).
    await asyncio.sleep(2.0)
    assert dream.controller.frame_count == count
    await page.keyboard.press("Space")  # the shortcut resumes
    await wait_until(page, TEXT_IS, ["state", "running"], within=3)
    await dream.next_frame()
    assert dream.controller.frame_count > count


async def test_screenshot_is_not_blank(page: Any, dream: Dream, tmp_path: Path) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    await page.keyboard.press("i")  # status overlay on
    await wait_until(page, "() => !document.getElementById('overlay').hidden")
    await asyncio.sleep(0.8)
    shot = tmp_path / "viewer.png"
    await page.screenshot(path=str(shot))
    arr = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    # Not blank: the overlay's text and the picture make many colours. (Not "std > 20": a flame's
    # ground can be a flat, dark colour over most of the frame.)
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 50
    # Letterboxing: a 2:3 frame in a 640x400 window is 267 px wide, centred, with black bars beside it
    # (rows 230-290 lie between the overlay and the control bar).
    band = arr[230:290]
    assert band[:, :150].max() < 30 and band[:, -150:].max() < 30
    assert (band[:, 200:440].max(axis=2) > 4).mean() > 0.95  # the picture, not the page's #000


async def test_reconnects_after_the_service_restarts(page: Any, dream: Dream) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    assert dream.server is not None
    port = dream.server.port
    await dream.server.close()
    # The socket gone is the service gone, as far as the page can tell: it says so plainly.
    await wait_until(page, TEXT_IS, ["conn", "Dream Window is not running (service not running)"], within=5)
    assert "reconnecting" in await page.evaluate(TEXT, "conn")
    assert await page.evaluate(VISIBLE, "conn")
    assert await page.evaluate(TEXT, "state") == "not running"
    from dream_window.web.server import ViewerServer

    viewer = dream.controller.config.viewer.model_copy(update={"port": port})
    dream.server = ViewerServer(dream.controller, viewer)
    await dream.server.start()
    await wait_until(page, TEXT_IS, ["conn", "econnected"], within=8)
    index = await dream.next_frame()
    await wait_until(page, SHOWS_AT_LEAST, index, within=2)


VISIBLE = "(id) => { const el = document.getElementById(id); return !!el && !el.hidden && el.offsetParent !== null; }"
HIDDEN = "(id) => { const el = document.getElementById(id); return !!el && (el.hidden || el.offsetParent === null); }"
TEXT = "(id) => document.getElementById(id).textContent"


def png_text(dream: Dream, index: int) -> dict[str, str]:
    with Image.open(dream.controller.output.path_for(index)) as im:
        return dict(im.text)  # type: ignore[attr-defined]


async def wait_for_front(page: Any, dream: Dream, key: str, value: str, *, within: float) -> int:
    """Wait until the frame in front is one whose PNG says ``key: value``; returns its index."""
    within *= SLACK
    deadline = time.monotonic() + within
    while True:
        index = await page.evaluate(FRONT_INDEX)
        if index and png_text(dream, index).get(key) == value:
            return int(index)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within:g} s waiting for a frame with {key}={value!r} in front"
            )
        await asyncio.sleep(0.05)


async def test_overlay_shows_the_prompt_of_the_frame_on_screen(page: Any, dream: Dream) -> None:
    new = "a lighthouse in fog"
    await wait_until(page, SHOWS_AT_LEAST, 2, within=10)
    await page.keyboard.press("i")  # status overlay on
    await dream.controller.pause("user")
    shown = dream.controller.on_screen
    assert shown is not None
    await wait_until(page, f"(n) => ({FRONT_INDEX})() === n", shown.index, within=5)
    await dream.controller.set_prompt(new)

    # The prompt message has arrived (it feeds "next: ..."), yet the old frame is still on screen,
    # and so is its prompt: a page that showed the prompt message's prompt fails here.
    await wait_until(page, TEXT_IS, ["next-text", new], within=3)
    await asyncio.sleep(1.0)  # more than a frame interval: nothing is published while paused
    front = await page.evaluate(FRONT_INDEX)
    assert dream.controller.on_screen == shown
    assert front == shown.index
    assert shown.prompt != new
    assert png_text(dream, front)["prompt"] == shown.prompt
    assert await page.evaluate(TEXT, "prompt") == shown.prompt
    # 64-bit seeds, digit for digit (a JS number would round them past 2**53).
    assert await page.evaluate(TEXT, "seed") == png_text(dream, front)["seed"]
    assert await page.evaluate(VISIBLE, "next-prompt")
    assert (await page.evaluate(TEXT, "next-prompt")).startswith("next:")
    assert await page.evaluate(VISIBLE, "hold")
    assert (await page.evaluate(TEXT, "hold")).startswith("held")

    # A page opened now learns the frame on screen from hello, and what comes next from its status.
    late = await page.context.new_page()
    await late.goto(dream.url + "/")
    await late.keyboard.press("i")
    await wait_until(late, TEXT_IS, ["next-text", new], within=5)
    await wait_until(late, SHOWS_AT_LEAST, shown.index, within=5)
    assert await late.evaluate(TEXT, "prompt") == shown.prompt
    assert await late.evaluate(TEXT, "seed") == png_text(dream, shown.index)["seed"]
    assert await late.evaluate(VISIBLE, "hold")
    await late.close()

    await dream.controller.resume("user")
    index = await wait_for_front(page, dream, "prompt", new, within=15)
    assert index > shown.index
    assert await page.evaluate(TEXT, "prompt") == new
    await wait_until(page, HIDDEN, "next-prompt", within=2)
    assert await page.evaluate(VISIBLE, "hold")  # a typed prompt holds for prompts.hold_minutes


async def test_mode_select_switches_the_running_dream(page: Any, dream: Dream) -> None:
    await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
    await page.mouse.move(320, 200)  # wake the controls
    modes = await page.evaluate(
        "() => [...document.querySelectorAll('#mode-select option')].map(o => o.value)"
    )
    assert modes == dream.controller.snapshot()["modes"]
    before = dream.controller.mode.name
    assert await page.evaluate("() => document.getElementById('mode-select').value") == before
    target = next(m for m in modes if m != before)

    await page.select_option("#mode-select", target)
    await wait_for_front(page, dream, "mode", target, within=15)
    assert dream.controller.mode.name == target
    await wait_until(page, TEXT_IS, ["mode", target], within=3)
    assert await page.evaluate("() => document.getElementById('mode-select').value") == target

    # M cycles to the next mode, but not while typing a prompt.
    await page.click("#prompt-input")
    await page.keyboard.type("m")
    await asyncio.sleep(0.3)
    assert dream.controller.mode.name == target
    await page.keyboard.press("Escape")
    await page.keyboard.press("m")
    after = modes[(modes.index(target) + 1) % len(modes)]
    await wait_until(page, "(m) => document.getElementById('mode-select').value === m", after, within=3)
    await wait_for_front(page, dream, "mode", after, within=15)
    assert dream.controller.mode.name == after


# What the service says when ComfyUI is down and the built-in engine fills in; markup in a reason
# is shown as text.
DEGRADED = (
    "ComfyUI at http://127.0.0.1:8188 is not answering: connection refused: nothing is listening on "
    "127.0.0.1:8188 (is ComfyUI started?); dreaming with the built-in engine (not AI) until it does"
)
WAITING = "ComfyUI rejected the workflow: <b>node 4</b> CheckpointLoaderSimple: ckpt_name not in []"
HAS_CLASS = "([id, name]) => document.getElementById(id).classList.contains(name)"


def set_backend_health(d: Dream, state: Health, reason: str | None) -> None:
    """What the supervisor does when the backend's state changes; the controller announces it
    (StateChanged), which is how the page learns of it."""
    d.controller.supervisor._set(state, reason)


async def test_backend_trouble_shows_a_banner_with_the_reason(browser: Any, tmp_path: Path) -> None:
    d = await make_dream(tmp_path, viewer={"crossfade_ms": 0})
    try:
        # Running, with no producer: only this test changes the backend's state.
        d.controller.lifecycle.start()
        async with open_page(browser, d) as page:
            await wait_until(page, TEXT_IS, ["state", "running"], within=10)
            assert await page.evaluate(HIDDEN, "health")

            set_backend_health(d, Health.DEGRADED, DEGRADED)
            await wait_until(page, TEXT_IS, ["health-reason", DEGRADED], within=3)
            assert await page.evaluate(VISIBLE, "health")  # a banner, without opening the overlay
            assert await page.evaluate(HIDDEN, "overlay")
            assert await page.evaluate(TEXT, "health-reason") == DEGRADED
            assert await page.evaluate(TEXT, "health-state") == "degraded"
            assert await page.evaluate(HAS_CLASS, ["health", "degraded"])
            assert await page.evaluate(TEXT, "state") == "degraded"
            assert await page.evaluate(HAS_CLASS, ["state", "degraded"])
            assert await page.title() == "Dream Window (degraded)"

            set_backend_health(d, Health.WAITING, WAITING)
            await wait_until(page, TEXT_IS, ["health-reason", WAITING], within=3)
            assert await page.evaluate(HAS_CLASS, ["health", "waiting"])
            assert not await page.evaluate(HAS_CLASS, ["health", "degraded"])
            assert await page.evaluate("() => document.querySelector('#health b') === null")
            assert await page.evaluate(TEXT, "state") == "waiting"

            set_backend_health(d, Health.RUNNING, None)
            await wait_until(page, HIDDEN, "health", within=3)
            assert await page.evaluate(TEXT, "state") == "running"
            assert await page.title() == "Dream Window"

            # The service goes away while its backend is in trouble: the page says it is not
            # running, and drops the trouble it can no longer vouch for.
            set_backend_health(d, Health.DEGRADED, DEGRADED)
            await wait_until(page, VISIBLE, "health", within=3)
            assert d.server is not None
            await d.server.close()
            d.server = None
            await wait_until(page, TEXT_IS, ["conn", "Dream Window is not running"], within=5)
            assert await page.evaluate(HIDDEN, "health")
            assert await page.evaluate(TEXT, "state") == "not running"
    finally:
        await d.close()
