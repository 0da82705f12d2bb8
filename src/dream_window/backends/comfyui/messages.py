"""ComfyUI WebSocket messages as the client reads them: text events and binary preview frames.

Binary frames, as recorded from ComfyUI v0.33.0 (all integers big-endian u32):

* type 1 (client sent no feature flags): ``[1][format: 1 = JPEG, 2 = PNG][image bytes]``;
  it arrives *after* that step's ``progress`` message;
* type 4 (client sent ``supports_preview_metadata``): ``[4][meta_len][meta JSON][image bytes]``;
  it arrives *before* that step's ``progress`` message.

The test server (``comfyui_fake``) encodes with its own code, and the tests decode both its frames
and the recorded raw frames here, so a mistake shared by client and server cannot hide.

Whatever arrives is checked here, once: a frame that does not parse, or a message we act on whose
fields have the wrong types, raises :class:`MessageError` (a protocol error); the reader ignores it.
Past this module, a message's fields have the types :data:`_FIELDS` names.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dream_window.errors import ComfyUIProtocolError

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
_FORMATS = {1: "image/jpeg", 2: "image/png"}
_FORMAT_CODES = {v: k for k, v in _FORMATS.items()}


@dataclass(frozen=True, slots=True)
class Message:
    type: str
    data: dict[str, Any]

    @property
    def prompt_id(self) -> str | None:
        pid = self.data.get("prompt_id")
        return pid if isinstance(pid, str) else None

    @property
    def is_done(self) -> bool:
        """``executing {node: null}``: the last message of a prompt, sent after history is written."""
        return self.type == "executing" and self.data.get("node") is None


@dataclass(frozen=True, slots=True)
class Preview:
    image: bytes
    mime: str
    event: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str | None:
        pid = self.meta.get("prompt_id")
        return pid if isinstance(pid, str) else None


class MessageError(ComfyUIProtocolError):
    """A frame that is not a ComfyUI message, or one whose fields have the wrong types."""


def _count(v: object) -> bool:
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


Check = Callable[[object], bool]


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


# The fields we read of the messages we act on, each with its check (absent fields are allowed:
# the reader supplies defaults). Anything else in a message is never looked at.
_FIELDS: dict[str, dict[str, Check]] = {
    "status": {"status": lambda v: isinstance(v, dict)},
    "progress": {"value": _count, "max": _count},
    "execution_cached": {"nodes": lambda v: isinstance(v, list)},
    "executed": {"output": _optional(lambda v: isinstance(v, dict))},
}


def _load(raw: str | bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError as exc:  # nested deeper than the parser goes: no message of ComfyUI's
        raise MessageError(f"{what} is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise MessageError(f"{what} is not JSON: {str(raw[:80])!r}") from exc


def parse_text(text: str) -> Message:
    obj = _load(text, "text frame")
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MessageError(f"no message type in {text[:80]!r}")
    data = obj.get("data")
    data = data if isinstance(data, dict) else {}
    for key, ok in _FIELDS.get(obj["type"], {}).items():
        if key in data and not ok(data[key]):
            raise MessageError(f"{obj['type']} message with a bad {key!r}: {str(data[key])[:80]!r}")
    if obj["type"] == "status":
        info = data.get("status", {}).get("exec_info", {})
        if not isinstance(info, dict) or not _optional(_count)(info.get("queue_remaining")):
            raise MessageError(f"status message with a bad exec_info: {str(info)[:80]!r}")
    return Message(obj["type"], data)


def parse_binary(frame: bytes) -> Preview | None:
    """A preview image from a binary frame; None for event types we do not know (ignored, not fatal)."""
    if len(frame) < 8:
        raise MessageError(f"binary frame too short ({len(frame)} bytes)")
    (event,) = struct.unpack(">I", frame[:4])
    if event == PREVIEW_IMAGE:
        (fmt,) = struct.unpack(">I", frame[4:8])
        return Preview(frame[8:], _FORMATS.get(fmt, "application/octet-stream"), event)
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (meta_len,) = struct.unpack(">I", frame[4:8])
        if 8 + meta_len > len(frame):
            raise MessageError(f"preview metadata length {meta_len} exceeds the frame ({len(frame)} bytes)")
        meta = _load(frame[8 : 8 + meta_len], "preview metadata")
        meta = meta if isinstance(meta, dict) else {}
        mime = meta.get("image_type")
        return Preview(frame[8 + meta_len :], mime if isinstance(mime, str) else "image/jpeg", event, meta)
    return None
