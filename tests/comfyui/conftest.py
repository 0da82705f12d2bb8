"""Fixtures for the ComfyUI tests: the recorded traffic, the test server, configs pointing at it.

The recording lives beside the repository (``../shared/comfyui``, as CI checks it out); tests that
replay it skip with a reason when it is absent. The test server itself needs nothing from there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.config import DreamConfig
from tests.conftest import fast_config

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "comfyui" / "recorded"


@pytest.fixture
def recorded() -> Path:
    if not (RECORDED / "01_server_info" / "object_info.json").is_file():
        pytest.skip(f"the recorded ComfyUI traffic is not at {RECORDED} (clone shared/ beside the repo)")
    return RECORDED


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
async def comfy_server(tmp_path: Path) -> AsyncIterator[ComfyTestServer]:
    """A ComfyUI test server on a free loopback port (no step delay)."""
    async with running_comfy_server(root=tmp_path / "comfy") as server:
        yield server


def comfy_config(tmp_path: Path, urls: str | list[str], **sections: dict[str, Any]) -> DreamConfig:
    """A fast config for the ComfyUI backend against the test server's tiny SD 1.5 checkpoint."""
    merged: dict[str, dict[str, Any]] = {
        "system": {"backend": "comfyui", "comfyui_url": urls},
        "generation": {"model": "sd15", "width": 64, "height": 128, "steps": 2},
        "comfyui": {
            "sd15_checkpoint": "tiny_sd15.safetensors",
            "generation_timeout": 20,
            "max_retries": 1,
            "connect_timeout": 1,
        },
    }
    for name, values in sections.items():
        merged[name] = {**merged.get(name, {}), **values}
    return fast_config(tmp_path, **merged)
