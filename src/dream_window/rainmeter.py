"""What the core writes for the Rainmeter skin (``rainmeter/DreamWindow``), and any other widget
that cannot parse JSON comfortably.

Two things, both written atomically, whether or not the browser viewer is enabled::

    output/
      status.ini                 [DreamWindow] State=…, FrameName=…, StatusLine=… (UTF-8, no BOM)
      rainmeter/frame_000042.png the newest few frames under names never reused

Why numbered names: Rainmeter caches images by path, so a skin pointing at ``current_frame.png``
can keep showing a stale picture, and on Windows a skin holding that file open makes the core's
``os.replace`` fail with a sharing violation. A name that is never reused has neither problem. The
files are copies (the PNG bytes are in hand, so a copy costs one small write; a hard link to the
history frame would tie the history's pruning to whatever Windows thinks of the skin's handle);
the newest ``KEEP`` stay, independent of ``generation.history_size``.

``status.ini`` is rewritten on every published frame and on every state, prompt and injection
event; progress ticks rewrite it at most once per ``PROGRESS_EVERY_S``. The skin reads it from a
Lua script (``@Resources/Scripts/DreamWindow.lua``), whose key list the tests check against this
writer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream_window.dream.output import frame_name
from dream_window.errors import FrameWriteError
from dream_window.file_ops import atomic_write_bytes, atomic_write_text, clean_stale_temps

if TYPE_CHECKING:
    from dream_window.dream.controller import DreamController

log = logging.getLogger(__name__)

STATUS_INI = "status.ini"
FRAMES_DIR = "rainmeter"
SECTION = "DreamWindow"
KEEP = 4
PROGRESS_EVERY_S = 1.0
# The INI is small and written on the event loop; a reader holding it (Windows) gets a short grace.
_INI_RETRIES = (0.01, 0.02, 0.05)


def _clean(value: Any) -> str:
    """One INI-safe line: no line breaks (they would end the value), no surrounding space."""
    if value is None:
        return ""
    text = str(value)
    return " ".join(text.split())


def status_line(s: dict[str, Any]) -> str:
    """The one line the skin shows under the picture."""
    state = s.get("state", "?")
    if s.get("pause_reasons"):
        state = f"paused ({'; '.join(s['pause_reasons'])})"
    parts = [state]
    fpm = s.get("frames_per_minute") or 0
    if fpm:
        parts.append(f"{fpm:.1f}/min")
    if not s.get("backend_is_ai", True):
        parts.append("not AI")
    if s.get("current_prompt"):
        parts.append(str(s["current_prompt"]))
    return " · ".join(parts)


def render_ini(s: dict[str, Any], frame: str | None) -> str:
    progress = s.get("progress") or {}
    fraction = (progress.get("value", 0) / progress["max"]) if progress.get("max") else 0.0
    fields = {
        "State": s.get("state"),
        "Paused": 1 if s.get("state") == "paused" else 0,
        "UserPaused": 1 if "user" in (s.get("pause_reasons") or []) else 0,
        "PauseReason": "; ".join(s.get("pause_reasons") or []),
        "Prompt": s.get("current_prompt"),
        "FrameIndex": s.get("frame_index") or 0,
        "FrameName": frame or "",
        "FramesPerMinute": f"{float(s.get('frames_per_minute') or 0):.1f}",
        "Backend": s.get("backend"),
        "IsAI": 1 if s.get("backend_is_ai") else 0,
        "Mode": s.get("mode"),
        "Progress": f"{min(1.0, max(0.0, fraction)):.3f}",
        "StatusLine": status_line(s),
        "Updated": s.get("updated_at"),
    }
    lines = [
        "; Written by Dream Window for the Rainmeter skin. Rewritten atomically; do not edit.",
        f"[{SECTION}]",
    ]
    lines += [f"{k}={_clean(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


class RainmeterWriter:
    def __init__(self, controller: DreamController) -> None:
        self.controller = controller
        self.dir = controller.output.dir
        self.frames_dir = self.dir / FRAMES_DIR
        self.ini_path = self.dir / STATUS_INI
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.frames_dir)
        self._lock = threading.Lock()  # the publish hook runs in a worker thread, events on the loop
        self._kept: deque[int] = deque(sorted(self._existing()))
        self._frame: str | None = frame_name(self._kept[-1]) if self._kept else None
        self._last_progress_write = float("-inf")
        self._failing = False
        self._prune()

    def _existing(self) -> list[int]:
        out = []
        for p in self.frames_dir.glob("frame_*.png"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem.split("_", 1)[1]))
        return out

    # --- the publish hook (worker thread) --------------------------------------------------

    def on_publish(self, index: int, data: bytes, history_path: Path) -> None:
        target = self.frames_dir / frame_name(index)
        try:
            atomic_write_bytes(target, data, fsync=False)
        except FrameWriteError as exc:
            self._report(exc)
            return
        with self._lock:
            self._kept.append(index)
            self._frame = target.name
            self._prune()

    def _prune(self) -> None:
        while len(self._kept) > KEEP:
            old = self._kept.popleft()
            # A reader holding the file (Windows) makes this fail; the next run's prune retries.
            with contextlib.suppress(OSError):
                (self.frames_dir / frame_name(old)).unlink()

    # --- controller events (event loop) ----------------------------------------------------

    def on_event(self, name: str, payload: dict[str, Any]) -> None:
        if name == "progress":
            now = self.controller.clock.monotonic()
            if now - self._last_progress_write < PROGRESS_EVERY_S:
                return
            self._last_progress_write = now
        elif name not in ("frame", "state", "prompt", "injection"):
            return
        self.write()

    def write(self) -> None:
        with self._lock:
            frame = self._frame
        try:
            atomic_write_text(
                self.ini_path,
                render_ini(self.controller.snapshot(), frame),
                fsync=False,
                retry_delays=_INI_RETRIES,
            )
        except FrameWriteError as exc:
            self._report(exc)
            return
        if self._failing:
            log.info("rainmeter files written again")
            self._failing = False

    def _report(self, exc: Exception) -> None:
        if not self._failing:  # once when it starts failing, not on every frame
            log.error("rainmeter files not written: %s", exc)
            self._failing = True


def attach_rainmeter(controller: DreamController) -> None:
    """Write the skin's files for this controller from now on."""
    writer = RainmeterWriter(controller)
    controller.output.hooks.append(writer.on_publish)
    controller.events.subscribe(writer.on_event)
    writer.write()
