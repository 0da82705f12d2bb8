"""Wallpaper mode and the fit choice in a real headless Chromium, against a running dream.

The wallpaper packages' page is opened the way a wallpaper host opens it (from its folder, file://)
and must hand over to the viewer in wallpaper mode. Screenshots for the README are written into
docs/ when DREAM_WINDOW_SCREENSHOTS=1, else into the test's temp folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from dream_window.wallpaper import WallpaperKind, build_package
from dream_window.web.server import ViewerServer
from tests.conftest import SLACK, free_port
from tests.web.conftest import CHROMIUM, Dream, make_dream
from tests.web.test_browser import FRONT_INDEX, SHOWS_AT_LEAST, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed"),
]

DOCS = Path(__file__).resolve().parents[2] / "docs"
LANDSCAPE = {"width": 1280, "height": 720}
# Wallpaper mode hides these; the test looks at each one's computed display.
CHROME = ["controls", "overlay", "help", "toast", "health"]
IS_HIDDEN = "(id) => getComputedStyle(document.getElementById(id)).display === 'none'"
CURSORS = """() => [document.documentElement, document.body, document.getElementById('stage'),
  ...document.querySelectorAll('.layer')].map(el => getComputedStyle(el).cursor)"""
FIT = "() => getComputedStyle(document.querySelector('.layer')).objectFit"
# The box the front layer's picture is drawn in, from object-fit and the picture's own size.
DRAWN_BOX = f"""() => {{
  const n = ({FRONT_INDEX})();
  const img = [...document.querySelectorAll('.layer')].find(l => Number(l.dataset.index) === n);
  const vw = innerWidth, vh = innerHeight, iw = img.naturalWidth, ih = img.naturalHeight;
  const fit = getComputedStyle(img).objectFit;
  const s = fit === 'cover' ? Math.max(vw / iw, vh / ih) : Math.min(vw / iw, vh / ih);
  return {{fit, vw, vh, w: iw * s, h: ih * s}};
}}"""
# What a wallpaper host does when the desktop is covered: the page is hidden. (Headless Chromium
# has no window to minimise, and another tab in front leaves it "visible" here, so the page's own
# Page Visibility state is set and its visibilitychange fired, which is what the viewer listens to.)
SET_VISIBILITY = """(hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def shot_path(name: str, tmp_path: Path) -> Path:
    if os.environ.get("DREAM_WINDOW_SCREENSHOTS") == "1":
        return DOCS / name
    return tmp_path / name


@pytest_asyncio.fixture(loop_scope="module")
async def dream(tmp_path: Path) -> AsyncIterator[Dream]:
    # Portrait frames (the widget's default aspect) on a landscape screen: the case fit is for.
    d = await make_dream(
        tmp_path / "dream",
        run=True,
        viewer={"crossfade_ms": 300},
        generation={"frame_interval": 0.5, "mode": "img2img", "width": 128, "height": 256},
    )
    yield d
    await d.close()


@contextlib.asynccontextmanager
async def open_page(browser: Any, url: str, allowed: list[str]) -> AsyncIterator[Any]:
    """A page at ``url`` in a fresh landscape context; fails the test on a request outside
    ``allowed`` (prefixes) or a JavaScript error."""
    context = await browser.new_context(viewport=LANDSCAPE)
    foreign: list[str] = []

    async def route(r: Any) -> None:
        if any(r.request.url.startswith(a) for a in allowed):
            await r.continue_()
        else:
            foreign.append(r.request.url)
            await r.abort()

    await context.route("**/*", route)
    errors: list[str] = []
    p = await context.new_page()
    p.on("pageerror", lambda e: errors.append(str(e)))
    await p.goto(url)
    try:
        yield p
    finally:
        await context.close()
    assert foreign == [], f"the page reached outside its origin: {foreign}"
    assert errors == [], f"JavaScript errors: {errors}"


async def handed_over(page: Any, prefix: str, *, within: float) -> None:
    """Wait until the page has navigated to ``prefix``... (the viewer in wallpaper mode)."""
    await page.wait_for_url(lambda u: u.startswith(prefix), timeout=within * SLACK * 1000)
    await page.wait_for_load_state("domcontentloaded")


def origins(dream: Dream) -> list[str]:
    return [dream.url, dream.url.replace("http", "ws"), "file://"]


async def screenshot(page: Any, path: Path) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


async def test_package_page_hands_over_to_the_viewer_in_wallpaper_mode(
    browser: Any, dream: Dream, tmp_path: Path
) -> None:
    package = build_package(WallpaperKind.LIVELY, tmp_path / "lively", url=dream.url + "/")
    page_url = (package.folder / "index.html").as_uri()
    async with open_page(browser, page_url, origins(dream)) as page:
        await handed_over(page, dream.url + "/?wallpaper=1", within=10)
        assert "fit=cover" in page.url
        first = await wait_until(page, FRONT_INDEX, within=10)

        # No controls, no overlay, no cursor; the keys that drive the viewer do nothing here.
        for element in CHROME:
            assert await page.evaluate(IS_HIDDEN, element), element
        assert set(await page.evaluate(CURSORS)) == {"none"}
        await page.keyboard.press("i")
        await page.keyboard.press("Space")
        assert await page.evaluate(IS_HIDDEN, "overlay")
        assert dream.controller.pause_reasons == []

        # Cover is the default: a portrait frame fills the landscape screen, edges cropped.
        box = await page.evaluate(DRAWN_BOX)
        assert box["fit"] == "cover"
        assert box["w"] >= box["vw"] - 0.5 and box["h"] >= box["vh"] - 0.5, box
        arr = await screenshot(page, shot_path("wallpaper-screenshot.png", tmp_path))
        # No black bars: the left and right tenths of the screen show the picture, not the page's
        # #000. (Not "bright and varied": a flame's own ground at its edges can be a flat, dark
        # colour, as CI once drew: mean 10.7, std 0.9.)
        for edge in (arr[:, : LANDSCAPE["width"] // 10], arr[:, -LANDSCAPE["width"] // 10 :]):
            assert (edge.max(axis=2) > 4).mean() > 0.95, (edge.mean(), edge.std())

        # Frames keep coming, crossfaded, without a reload.
        await wait_until(page, SHOWS_AT_LEAST, first + 2, within=15)
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1


async def test_contain_letterboxes_a_portrait_frame(browser: Any, dream: Dream, tmp_path: Path) -> None:
    package = build_package(WallpaperKind.WALLPAPER_ENGINE, tmp_path / "we", url=dream.url, fit="contain")
    async with open_page(browser, (package.folder / "index.html").as_uri(), origins(dream)) as page:
        await handed_over(page, dream.url + "/?wallpaper=1", within=10)
        first = await wait_until(page, FRONT_INDEX, within=10)
        box = await page.evaluate(DRAWN_BOX)
        assert box["fit"] == "contain"
        assert box["h"] == pytest.approx(box["vh"], abs=0.5) and box["w"] < box["vw"] / 2, box
        await wait_until(page, SHOWS_AT_LEAST, first + 1, within=15)
        arr = await screenshot(page, tmp_path / "contain.png")
        bar = int((box["vw"] - box["w"]) / 2) - 4
        assert arr[:, :bar].max() < 30 and arr[:, -bar:].max() < 30  # black bars beside the picture
        mid = LANDSCAPE["width"] // 2
        assert (arr[:, mid - 40 : mid + 40].max(axis=2) > 4).mean() > 0.95  # the picture between them


async def test_no_frame_is_fetched_while_hidden_and_the_newest_shows_when_visible(
    browser: Any, dream: Dream
) -> None:
    async with open_page(browser, dream.url + "/?wallpaper=1", origins(dream)) as page:
        fetched: list[int] = []
        page.on(
            "request",
            lambda r: fetched.append(int(r.url.rsplit("/", 1)[1])) if "/api/frames/" in r.url else None,
        )
        await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
        await page.evaluate(SET_VISIBILITY, True)
        assert await page.evaluate("document.visibilityState") == "hidden"
        shown = await page.evaluate(FRONT_INDEX)
        # A frame already on its way when the page was hidden may still arrive; after it, none.
        await dream.next_frame()
        before = len(fetched)
        published = [await dream.next_frame(), await dream.next_frame(), await dream.next_frame()]
        await asyncio.sleep(0.3)  # let the page hear of the last one: it must still fetch nothing
        assert fetched[before:] == []
        assert await page.evaluate(FRONT_INDEX) <= max(shown, published[0] - 1)

        await page.evaluate(SET_VISIBILITY, False)
        # At once the newest frame, not the backlog: the first fetch is for the last one published.
        await wait_until(page, SHOWS_AT_LEAST, published[-1], within=5)
        assert fetched[before] >= published[-1], fetched[before:]
        await wait_until(page, SHOWS_AT_LEAST, published[-1] + 1, within=10)  # and it goes on


async def test_package_page_says_not_running_then_finds_the_service(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    package = build_package(WallpaperKind.WALLPAPER_ENGINE, tmp_path / "we", url=url)
    d = await make_dream(
        tmp_path / "dream",
        serve=False,
        run=True,
        viewer={"crossfade_ms": 0, "port": port},
        generation={"frame_interval": 0.5},
    )
    try:
        allowed = [url, url.replace("http", "ws"), "file://"]
        async with open_page(browser, (package.folder / "index.html").as_uri(), allowed) as page:
            await wait_until(page, "() => !document.getElementById('down').hidden", within=10)
            text = await page.evaluate("() => document.getElementById('down').textContent")
            assert "Dream Window is not running" in text and "dream-window run" in text
            assert url in text
            assert page.url.startswith("file://")

            d.server = ViewerServer(d.controller, d.controller.config.viewer)
            await d.server.start()
            await handed_over(page, url + "/?wallpaper=1", within=15)
            await wait_until(page, SHOWS_AT_LEAST, 1, within=10)

            # The service goes away under the wallpaper: it says so, and how to start it.
            await d.server.close()
            d.server = None
            await wait_until(page, "() => !document.getElementById('conn').hidden", within=10)
            banner = await page.evaluate("() => document.getElementById('conn').textContent")
            assert "not running" in banner and "dream-window run" in banner
    finally:
        await d.close()


async def test_viewer_fit_choice_is_remembered(browser: Any, dream: Dream, tmp_path: Path) -> None:
    async with open_page(browser, dream.url + "/", origins(dream)) as page:
        await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
        assert await page.evaluate(FIT) == "contain"  # the viewer's default: the whole picture
        await page.mouse.move(640, 360)  # wake the controls
        assert await page.inner_text("#btn-fit") == "Contain"
        await page.click("#btn-fit")
        assert await page.evaluate(FIT) == "cover"
        assert await page.inner_text("#btn-fit") == "Cover"
        await page.mouse.move(600, 300)
        await asyncio.sleep(0.4)  # the toast and the controls settle for the picture
        box = await page.evaluate(DRAWN_BOX)
        assert box["fit"] == "cover"
        assert box["w"] >= box["vw"] - 0.5 and box["h"] >= box["vh"] - 0.5, box
        # The picture reaches the left edge: the page's #000 does not show there. (Not "varied": a
        # flame's ground can be flat at its edges, as CI once drew: (9, 10, 12), std 1.2.)
        arr = await screenshot(page, shot_path("viewer-fit-screenshot.png", tmp_path))
        edge = arr[:, :100]
        assert (edge.max(axis=2) > 4).mean() > 0.95, (edge.mean(), edge.std())

        # Remembered: a reload comes back in cover, and frames still crossfade in.
        await page.reload()
        await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
        assert await page.evaluate(FIT) == "cover"
        n = await page.evaluate(FRONT_INDEX)
        await wait_until(page, SHOWS_AT_LEAST, n + 1, within=10)
        # The C key toggles back; an explicit ?fit= wins over what was remembered.
        await page.keyboard.press("c")
        assert await page.evaluate(FIT) == "contain"
        await page.goto(dream.url + "/?fit=cover")
        assert await page.evaluate(FIT) == "cover"


async def test_crossfade_never_dims_in_cover(browser: Any, dream: Dream) -> None:
    from tests.web.test_browser import SAMPLE_OPACITY

    async with open_page(browser, dream.url + "/?wallpaper=1&fit=cover", origins(dream)) as page:
        await wait_until(page, SHOWS_AT_LEAST, 1, within=10)
        await dream.next_frame()
        samples = await page.evaluate(SAMPLE_OPACITY, 1500)
        values = [o for s in samples for o, _ in s]
        assert any(0.02 < v < 0.98 for v in values), "no fade was seen"
        assert min(max(o for o, _ in s) for s in samples) > 0.98
