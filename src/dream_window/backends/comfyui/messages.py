"""ComfyUI WebSocket messages as the client reads them: text events and binary preview frames.

Binary frames, as recorded from ComfyUI v0.33.0 (all integers big-endian u32):

* type 1 (client sent no feature flags): ``[1][format: 1 = JPEG, 2 = PNG][image bytes]``;
  it arrives *after* that step's ``progress`` message;
* type 4 (client sent ``supports_preview_metadata``): ``[4][meta_len][meta JSON][image bytes]``;
  it arrives *before* that step's ``progress`` message.

The test server (``comfyui_fake``) encodes with its own code, and the tests decode both its frames
and the recorded raw frames here, so a mistake shared by client and server cannot hide.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

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
        return self.meta.get("prompt_id")


class MessageError(ValueError):
    """A frame that is not a ComfyUI message (mapped to our errors by the client)."""


def parse_text(text: str) -> Message:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(f"not JSON: {text[:80]!r}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MessageError(f"no message type in {text[:80]!r}")
    data = obj.get("data")
    return Message(obj["type"], data if isinstance(data, dict) else {})


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
        try:
            meta = json.loads(frame[8 : 8 + meta_len])
        except json.JSONDecodeError as exc:
            raise MessageError("preview metadata is not JSON") from exc
        mime = str(meta.get("image_type", "image/jpeg")) if isinstance(meta, dict) else "image/jpeg"
        return Preview(frame[8 + meta_len :], mime, event, meta if isinstance(meta, dict) else {})
    return None
