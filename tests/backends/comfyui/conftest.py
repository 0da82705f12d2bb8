"""Configs for the ComfyUI backend tests. The test server (``comfy_server``) and the recorded
traffic (``recorded``) are shared with tests/comfyui_fake and live in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dream_window.backends.comfyui.graphs import (
    FluxWorkflowBuilder,
    SD15WorkflowBuilder,
    SDXLTurboWorkflowBuilder,
)
from dream_window.config import ComfyUIConfig, DreamConfig, FluxModelFiles
from tests.conftest import fast_config

# Every built-in builder, against the test server's tiny SD 1.5 checkpoint name.
CFG = ComfyUIConfig(sd15_checkpoint="tiny_sd15.safetensors")
BUILDERS = {
    "flux-checkpoint": FluxWorkflowBuilder(CFG),
    "flux-split": FluxWorkflowBuilder(CFG.model_copy(update={"flux": FluxModelFiles(layout="split")})),
    "sd15": SD15WorkflowBuilder(CFG),
    "sdxl-turbo": SDXLTurboWorkflowBuilder(CFG),
}


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
