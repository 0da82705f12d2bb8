"""What the fake puts on the wire, in the layouts recorded from ComfyUI v0.33.0.

Written from the recordings in ``shared/comfyui/recorded`` (see its PROTOCOL.md), not from our
client: if the client misreads the protocol, a fake that shared its encoder would misread it the
same way and every test would still pass.

Text events are ``{"type": event, "data": {...}}`` as aiohttp's ``send_json`` writes them (default
``json.dumps`` separators). Binary frames start with a big-endian u32 event type:

* ``1`` PREVIEW_IMAGE, to a socket that sent no feature flags:
  ``[1][format: 1 = JPEG, 2 = PNG][image bytes]`` (``02_txt2img/binary/frame_*_evt1.bin``);
* ``4`` PREVIEW_IMAGE_WITH_METADATA, to a socket that announced ``supports_preview_metadata``:
  ``[4][meta_len][meta JSON][image bytes]``, the JSON keys in the recorded order
  (``03_txt2img_warm_feature_flags/binary/frame_*_evt4.bin``).

The payload builders below carry the recorded key sets, so the executor cannot drift from them
one message at a time.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
_FORMAT_CODES = {"image/jpeg": 1, "image/png": 2}

# /features and the WebSocket feature_flags answer (01_server_info/features.json).
FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,
}

# aiohttp's answer to a handler that raised (recorded for a non-JSON POST /prompt body).
CRASH_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"


def now_ms() -> int:
    return int(time.time() * 1000)


# --- frames -------------------------------------------------------------------------------------


def text_frame(event: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": event, "data": data})


def preview_frame(image: bytes, mime: str, *, prompt_id: str, node_id: str, with_metadata: bool) -> bytes:
    if with_metadata:
        meta = {
            "node_id": node_id,
            "prompt_id": prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
            "image_type": mime,
        }
        blob = json.dumps(meta).encode()
        return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(blob)) + blob + image
    return struct.pack(">II", PREVIEW_IMAGE, _FORMAT_CODES[mime]) + image


# --- event payloads -----------------------------------------------------------------------------


def status(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    """The greeting carries the socket's ``sid``; broadcasts do not."""
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return data


def stamped(prompt_id: str, **fields: Any) -> dict[str, Any]:
    """execution_start / execution_cached / execution_success: the fields, the id, then a timestamp."""
    return {**fields, "prompt_id": prompt_id, "timestamp": now_ms()}


def node_state(prompt_id: str, node_id: str, value: float, maximum: float, state: str) -> dict[str, Any]:
    """One entry of ``progress_state.nodes``."""
    return {
        "value": value,
        "max": maximum,
        "state": state,
        "node_id": node_id,
        "prompt_id": prompt_id,
        "display_node_id": node_id,
        "parent_node_id": None,
        "real_node_id": node_id,
    }


def executing(prompt_id: str, node_id: str | None) -> dict[str, Any]:
    """``node`` None is the last message of a prompt, sent after its history entry is written."""
    if node_id is None:
        return {"node": None, "prompt_id": prompt_id}
    return {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}


def progress(prompt_id: str, node_id: str, value: int, maximum: int) -> dict[str, Any]:
    return {"value": value, "max": maximum, "prompt_id": prompt_id, "node": node_id}


def executed(prompt_id: str, node_id: str, output: dict[str, Any]) -> dict[str, Any]:
    return {"node": node_id, "display_node": node_id, "output": output, "prompt_id": prompt_id}


def execution_error(
    prompt_id: str,
    node_id: str,
    node_type: str,
    executed_nodes: list[str],
    *,
    exception_type: str,
    exception_message: str,
    traceback: list[str],
    current_inputs: dict[str, list[Any]],
    current_outputs: list[str],
) -> dict[str, Any]:
    return {
        "prompt_id": prompt_id,
        "node_id": node_id,
        "node_type": node_type,
        "executed": executed_nodes,
        "exception_message": exception_message,
        "exception_type": exception_type,
        "traceback": traceback,
        "current_inputs": current_inputs,
        "current_outputs": current_outputs,
        "timestamp": now_ms(),
    }


def execution_interrupted(
    prompt_id: str, node_id: str | None, node_type: str | None, executed_nodes: list[str]
) -> dict[str, Any]:
    return {
        "prompt_id": prompt_id,
        "node_id": node_id,
        "node_type": node_type,
        "executed": executed_nodes,
        "timestamp": now_ms(),
    }


# --- HTTP bodies --------------------------------------------------------------------------------


def system_stats() -> dict[str, Any]:
    """The recorded keys (``01_server_info/system_stats.json``) with this process's values."""
    return {
        "system": {
            "os": "linux",
            "ram_total": 0,
            "ram_free": 0,
            "comfyui_version": "0.33.0",
            "required_frontend_version": "",
            "installed_templates_version": "",
            "required_templates_version": "",
            "comfy_package_versions": [{"name": "comfyui-frontend-package", "installed": "", "required": ""}],
            "python_version": "3",
            "pytorch_version": "none (comfyui_fake)",
            "embedded_python": False,
            "deploy_environment": "comfyui_fake",
            "argv": ["comfyui_fake"],
        },
        "devices": [
            {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": 0,
                "vram_free": 0,
                "torch_vram_total": 0,
                "torch_vram_free": 0,
            }
        ],
    }


def error_body(error_type: str, message: str, details: str = "", **extra_info: Any) -> dict[str, Any]:
    """A 400 from POST /prompt that names no node (no_prompt, invalid_prompt_id, ...)."""
    return {
        "error": {"type": error_type, "message": message, "details": details, "extra_info": extra_info},
        "node_errors": {},
    }


def history_entry(
    queue_tuple: list[Any],
    outputs: dict[str, Any],
    *,
    status_str: str,
    completed: bool,
    messages: list[list[Any]],
) -> dict[str, Any]:
    """``/history/{id}``: the queue 5-tuple, the ui outputs, the status with the recorded messages
    (execution_start, execution_cached and the terminal one) and ``meta`` per output node."""
    return {
        "prompt": queue_tuple,
        "outputs": outputs,
        "status": {"status_str": status_str, "completed": completed, "messages": messages},
        "meta": {
            nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
            for nid in outputs
        },
    }
