"""What a restart needs: ``state.json`` saved on stop, and the dream grown on from the last frame.

The next start continues from ``current_frame.png`` (the mode seeds from it) and, when the saved
prompt is still one of the configured prompts, with that prompt; frame numbers keep counting from
the history (see :mod:`.output`). A missing or unreadable file means a cold start, never a failure.
"""

from __future__ import annotations

import contextlib
import json
import logging

from PIL import Image, UnidentifiedImageError

from dream_window.clock import Clock, iso
from dream_window.dream.modes.base import DreamMode
from dream_window.dream.output import OutputWriter
from dream_window.dream.prompts import PromptManager
from dream_window.errors import FrameWriteError
from dream_window.file_ops import atomic_write_json

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


def save_state(output: OutputWriter, prompts: PromptManager, mode: DreamMode, clock: Clock) -> None:
    state = {
        "frame_index": output.last_index,
        "prompt": prompts.current,
        "mode": mode.name,
        "saved_at": iso(clock.now()),
    }
    try:
        atomic_write_json(output.dir / STATE_FILE, state)
    except FrameWriteError as exc:
        log.error("state not saved: %s", exc)


def continue_from_last_frame(output: OutputWriter, prompts: PromptManager, mode: DreamMode) -> None:
    """Grow the dream on from the last frame of a previous run, when there is one."""
    path = output.current_path
    if not path.exists():
        return
    try:
        with Image.open(path) as img:
            img.load()
            mode.seed_image(img)
        log.info("continuing from the last frame of the previous run (%s)", path)
    except (OSError, UnidentifiedImageError) as exc:
        log.warning("not continuing from %s: %s", path, exc)
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((output.dir / STATE_FILE).read_text(encoding="utf-8"))
        if (
            isinstance(saved, dict)
            and isinstance(saved.get("prompt"), str)
            and saved["prompt"] in {p.text for p in prompts.prompts}
        ):
            prompts.set_prompt(saved["prompt"])
