"""What a restart needs: ``state.json`` saved on stop, and the dream grown on from the last frame.

The next start continues from ``current_frame.png`` (the mode seeds from it; it is the frame on
screen until the first new one, with the label its PNG text carries) and, when the saved prompt is
still one of the configured prompts, with that prompt; frame numbers keep counting from the
history (see :mod:`.output`). A missing or unreadable file means a cold start, never a failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import get_args

from PIL import UnidentifiedImageError

from dream_window.clock import Clock, iso
from dream_window.dream.modes.base import DreamMode
from dream_window.dream.output import OutputWriter, read_label
from dream_window.dream.prompts import PromptManager
from dream_window.errors import FrameWriteError
from dream_window.file_ops import atomic_write_json
from dream_window.values.frame import Frame, FrameKind, FrameLabel

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


def continue_from_last_frame(
    output: OutputWriter, prompts: PromptManager, mode: DreamMode
) -> tuple[Frame, FrameLabel | None] | None:
    """Grow the dream on from the last frame of a previous run, when there is one; returns it as
    the frame on screen, with the label its PNG carries (None for a picture without one)."""
    path = output.current_path
    if not path.exists():
        return None
    on_screen: tuple[Frame, FrameLabel | None] | None = None
    try:
        image, label = read_label(path)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        log.warning("not continuing from %s: %s", path, exc)
    else:
        mode.seed_image(image)
        log.info("continuing from the last frame of the previous run (%s)", path)
        known = label or FrameLabel(prompt="", index=output.last_index)
        kind: FrameKind = known.kind if known.kind in get_args(FrameKind) else "keyframe"  # type: ignore[assignment]
        seed = {} if known.seed is None else {"seed": known.seed}
        frame = Frame(image, known.prompt, kind, 0.0, seed, None, known.mode, known.backend, known.model)
        frame.index = known.index
        on_screen = (frame, label)
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((output.dir / STATE_FILE).read_text(encoding="utf-8"))
        if (
            isinstance(saved, dict)
            and isinstance(saved.get("prompt"), str)
            and saved["prompt"] in {p.text for p in prompts.prompts}
        ):
            prompts.continue_with(saved["prompt"])
    return on_screen
