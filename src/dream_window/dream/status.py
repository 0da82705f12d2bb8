"""status.json: what the dream is doing, for widgets, the viewer and ``dream-window status``.

Written atomically on every published frame and on every state change. Readers must tolerate
unknown keys (we add, never rename). Keys::

    state           running | paused | stopped | starting
    pause_reasons   list of reasons, e.g. ["game: eldenring.exe"]; pause_reason is the first or null
    mode, backend, backend_is_ai, model, backend_health {ok, detail}
    modes           the modes set_mode (POST /api/mode) accepts
    frame_count, frame_index, current_frame, last_generation_ms, frames_per_minute
    current_prompt  the prompt of the frame on screen (null before the first frame)
    on_screen       {index, prompt, seed, mode, kind, backend, model} of that frame (its PNG text)
    next_prompt     the prompt frames are being made for now (differs for a frame or two after a change)
    prompt_hold     {prompt, until_skipped, remaining_s, until} while a typed prompt holds, else null
    buffer          {size, target, capacity, p95_batch_s}: frames made ahead and how many are kept
    progress        {value, max} of the generation running now, or null
    started_at, updated_at (ISO 8601), version, pid, notes (list of fallbacks in effect)

and one section per service (``Service.describe()``, under its name)::

    cache           {enabled, size, embedder, last_injection ...}; {enabled: false} when off
    monitor         {interval_s, paused_for, detectors ...}; only when game_detection is on
    viewer          {url, clients, token_required ...}, or {url: null, error}; only when enabled
    quality         {measured, skipped, latest {metrics of the newest measured frame}, recent
                    {change_p50, change_p95, sharpness_min, clipped_p95, ... over the last 100},
                    reference {index, prompt}, clip {distance, index, embedder} or {distance: null,
                    reason}, log}: see quality/service.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dream_window.errors import DreamWindowError
from dream_window.file_ops import atomic_write_json

STATUS_FILE = "status.json"


class StatusWriter:
    def __init__(self, output_dir: Path, *, fsync: bool = False) -> None:
        self.path = Path(output_dir) / STATUS_FILE
        self._fsync = fsync
        self.last: dict[str, Any] = {}

    def write(self, status: dict[str, Any]) -> None:
        self.last = status
        atomic_write_json(self.path, status, fsync=self._fsync)


def read_status(path: Path) -> dict[str, Any]:
    """Read a status file, mapping the ways it can be missing or broken to one clear error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DreamWindowError(
            f"no status file at {path}: is dream-window running with this output folder?"
        ) from None
    except (OSError, ValueError) as exc:
        raise DreamWindowError(f"cannot read status file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DreamWindowError(f"status file {path} does not hold a JSON object")
    return data
