"""The viewer's overlay shows ComfyUI's GPU duty (status.json's ``comfyui.gpu_duty``) while there
is one, and nothing while the frames come from the built-in engine; in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dream_window.events import StateChanged
from dream_window.values.check import Check
from tests.web.conftest import CHROMIUM, make_dream
from tests.web.test_browser import HIDDEN, TEXT, VISIBLE, open_page, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed"),
]


class ComfyUISection:
    """Writes the ``comfyui`` section the supervisor adds to status while ComfyUI makes the frames."""

    name = "comfyui"

    def __init__(self) -> None:
        self.section: dict[str, object] | None = None

    async def start(self, dream: Any) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, object] | None:
        return self.section

    async def doctor_checks(self) -> list[Check]:
        return []

    async def free_memory(self) -> None:
        return None


async def test_overlay_shows_the_gpu_duty_only_while_comfyui_makes_frames(
    browser: Any, tmp_path: Path
) -> None:
    stub = ComfyUISection()
    duty = {"fraction": 0.4167, "busy_s": 25.0, "window_s": 60.0, "running": True}
    stub.section = {
        "servers": [{"url": "http://127.0.0.1:8188", "up": True, "gpu_duty": duty}],
        "gpu_duty": duty,
    }
    d = await make_dream(tmp_path, viewer={"crossfade_ms": 0}, services=lambda cfg: [stub])
    try:
        d.controller.lifecycle.start()
        async with open_page(browser, d) as page:
            await page.keyboard.press("i")
            await wait_until(page, VISIBLE, "gpu-duty", within=10)
            assert await page.evaluate(TEXT, "gpu-duty") == "42% of the last 60 s"

            # The built-in engine took over: the next status has no comfyui section.
            stub.section = None
            d.controller.events.emit(StateChanged(state="degraded"))
            await wait_until(page, HIDDEN, "gpu-duty", within=10)
            assert await page.evaluate(
                "() => [...document.querySelectorAll('.gpu-duty')].every(el => el.hidden)"
            )
    finally:
        await d.close()
