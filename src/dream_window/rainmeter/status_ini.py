"""What the core writes for the Rainmeter skin (``rainmeter/skin/DreamWindow``), and any other
widget that cannot parse JSON comfortably.

Three things, all written atomically, whether or not the browser viewer is enabled::

    output/
      status.ini                 [DreamWindow] State=…, FrameName=…, StatusLine=… (UTF-8, no BOM)
      rainmeter/status.lua       the same fields as a Lua table, UTF-16 LE with a BOM: what the skin
                                 reads (with Rainmeter's dofile; see encoding.py for why)
      rainmeter/frame_000042.png the newest few frames under names never reused

Why numbered names: Rainmeter caches images by path, so a skin pointing at ``current_frame.png``
can keep showing a stale picture, and on Windows a skin holding that file open makes the core's
``os.replace`` fail with a sharing violation. A name that is never reused has neither problem. The
files are copies (the PNG bytes are in hand, so a copy costs one small write; a hard link to the
history frame would tie the history's pruning to whatever Windows thinks of the skin's handle);
the newest ``KEEP`` stay, independent of ``generation.history_size``.

``status.ini`` is rewritten on every published frame and on every state, prompt and injection
event, at most once per ``generation.status_interval`` (a live cadence of 60 frames a second
would otherwise rewrite three files and copy a frame 60 times a second, for a skin that looks
once a second; the frames that came meanwhile are copied together, the newest ``KEEP``);
progress ticks rewrite it at most once per ``PROGRESS_EVERY_S``; and with nothing to say it
is rewritten anyway every ``heartbeat_s`` (status.json's heartbeat), so that ``UpdatedEpoch`` tells
a living dream from one whose process is gone: the skin shows "stopped" when it is older than three
intervals. The skin reads ``status.lua`` from a Lua script (``@Resources/Scripts/DreamWindow.lua``),
whose key list the tests check against this writer (and whose logic they run, in lupa). The
frames are written before the status that names them, so the skin never names a missing frame.

The writer is a service (``dream/service.py``) listening to the dream's events. Listeners run on
the event loop, so they only note what changed; one task writes it in a worker thread, the files
of every frame still worth keeping (the newest ``KEEP``) and then one ``status.ini`` for however
many events came in meanwhile. The PNG bytes come with the FramePublished event: never encoded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from dream_window.config import DreamConfig
from dream_window.dream.output import frame_name
from dream_window.dream.service import Dream
from dream_window.errors import FrameWriteError
from dream_window.events import Event, FramePublished, Injection, Progress, PromptChanged, StateChanged
from dream_window.file_ops import atomic_write_bytes, atomic_write_text, clean_stale_temps
from dream_window.rainmeter.encoding import lua_string, rainmeter_text
from dream_window.values.check import Check

log = logging.getLogger(__name__)

STATUS_INI = "status.ini"
FRAMES_DIR = "rainmeter"
STATUS_LUA = "status.lua"  # in FRAMES_DIR: the skin's own folder of files
SECTION = "DreamWindow"
KEEP = 4
PROGRESS_EVERY_S = 1.0
# Until the first snapshot says otherwise (status.json's ``heartbeat_s``).
DEFAULT_HEARTBEAT_S = 5.0
# The states a status line explains with the backend's reason.
_TROUBLE = ("waiting", "degraded")
# A reader holding the INI (Windows) gets a short grace before this write is given up.
_INI_RETRIES = (0.01, 0.02, 0.05)


def _clean(value: object) -> str:
    """One INI-safe line: no line breaks (they would end the value), no surrounding space."""
    if value is None:
        return ""
    text = str(value)
    return " ".join(text.split())


def _epoch(updated_at: object) -> int | None:
    """Unix seconds of status.json's ``updated_at`` (ISO 8601 with its offset), for a reader that
    can compare numbers but not parse dates (the skin's Lua: ``os.time()`` is Unix seconds too)."""
    if not isinstance(updated_at, str) or not updated_at:
        return None
    try:
        # (a naive time would be the local clock's: .timestamp() reads it so)
        return int(datetime.fromisoformat(updated_at).timestamp())
    except ValueError:
        return None


def _health(s: Mapping[str, Any]) -> Mapping[str, Any]:
    health = s.get("backend_health")
    return health if isinstance(health, Mapping) else {}


def status_line(s: Mapping[str, Any]) -> str:
    """The one line the skin shows under the picture: the state, and for ``waiting`` and
    ``degraded`` what is wrong, first (the skin clips the line; its tooltip has all of it)."""
    state = s.get("state", "?")
    if s.get("pause_reasons"):
        state = f"paused ({'; '.join(s['pause_reasons'])})"
    parts = [state]
    reason = _health(s).get("reason")
    if s.get("state") in _TROUBLE and reason:
        parts.append(str(reason))
    fpm = s.get("frames_per_minute") or 0
    if fpm:
        parts.append(f"{fpm:.1f}/min")
    if not s.get("backend_is_ai", True):
        parts.append("not AI")
    if s.get("current_prompt"):  # the frame on screen's prompt, not the one being made next
        held = s.get("prompt_hold") or {}
        mark = " (held)" if held.get("prompt") == s["current_prompt"] else ""
        parts.append(f"{s['current_prompt']}{mark}")
    return " · ".join(parts)


def status_fields(s: Mapping[str, Any], frame: str | None) -> dict[str, str]:
    """The fields of status.ini and status.lua (one owner: the two files say the same), each one
    line of text."""
    progress = s.get("progress") or {}
    fraction = (progress.get("value", 0) / progress["max"]) if progress.get("max") else 0.0
    health = _health(s)
    fields = {
        "State": s.get("state"),
        "Paused": 1 if s.get("state") == "paused" else 0,
        "UserPaused": 1 if "user" in (s.get("pause_reasons") or []) else 0,
        "PauseReason": "; ".join(s.get("pause_reasons") or []),
        # Prompt: the frame on screen's; NextPrompt: what frames are made for now (they differ for
        # a frame or two after a change); PromptHeld: a typed prompt holds off rotation.
        "Prompt": s.get("current_prompt"),
        "NextPrompt": s.get("next_prompt"),
        "PromptHeld": 1 if s.get("prompt_hold") else 0,
        "FrameIndex": s.get("frame_index") or 0,
        "FrameName": frame or "",
        "FramesPerMinute": f"{float(s.get('frames_per_minute') or 0):.1f}",
        "Backend": s.get("backend"),
        "IsAI": 1 if s.get("backend_is_ai") else 0,
        "Mode": s.get("mode"),
        "Progress": f"{min(1.0, max(0.0, fraction)):.3f}",
        "StatusLine": status_line(s),
        # The backend's own state and, when it is not running, why (status.json's backend_health).
        "BackendState": health.get("state"),
        "BackendReason": health.get("reason"),
        # Updated: ISO 8601 for people; UpdatedEpoch: the same in Unix seconds for the skin, which
        # shows "stopped" when it is older than 3 x max(Heartbeat, its own tick).
        "Updated": s.get("updated_at"),
        "UpdatedEpoch": _epoch(s.get("updated_at")),
        "Heartbeat": f"{float(s.get('heartbeat_s') or DEFAULT_HEARTBEAT_S):g}",
    }
    return {k: _clean(v) for k, v in fields.items()}


def render_ini(s: Mapping[str, Any], frame: str | None) -> str:
    lines = [
        "; Written by Dream Window for the Rainmeter skin. Rewritten atomically; do not edit.",
        f"[{SECTION}]",
    ]
    lines += [f"{k}={v}" for k, v in status_fields(s, frame).items()]
    return "\n".join(lines) + "\n"


def render_lua(fields: Mapping[str, str]) -> str:
    """status.lua's text: one table of string literals, nothing else (the skin runs it)."""
    lines = [
        "-- Written by Dream Window for the Rainmeter skin. Rewritten atomically; do not edit.",
        "return {",
    ]
    lines += [f"  {k} = {lua_string(v)}," for k, v in fields.items()]
    return "\n".join(lines) + "\n}\n"


def lua_bytes(s: Mapping[str, Any], frame: str | None) -> bytes:
    """status.lua as written: UTF-16 LE with a BOM, so Rainmeter's dofile reads it as Unicode."""
    return rainmeter_text(render_lua(status_fields(s, frame)))


class RainmeterWriter:
    """The skin's files, for as long as the dream runs (a :class:`~dream_window.dream.service.Service`)."""

    name = "rainmeter"

    def __init__(self, config: DreamConfig) -> None:
        self.dir = config.output_dir
        self.frames_dir = self.dir / FRAMES_DIR
        self.ini_path = self.dir / STATUS_INI
        self.lua_path = self.frames_dir / STATUS_LUA
        self._min_gap = config.generation.status_interval
        self._dream: Dream | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        # What the events asked for since the last write (loop side) ...
        self._frames: deque[FramePublished] = deque(maxlen=KEEP)  # older ones would be pruned at once
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()  # ends the wait between two writes
        self._last_progress_write = float("-inf")
        self._heartbeat_s = DEFAULT_HEARTBEAT_S  # then the snapshot's heartbeat_s
        # ... and what is on disk (only ever touched by the one write running, under _write_lock).
        self._write_lock = asyncio.Lock()
        self._kept: deque[int] = deque()
        self._frame: str | None = None
        self._failing = False

    # --- the service ----------------------------------------------------------------------

    async def start(self, dream: Dream) -> None:
        self._dream = dream
        await asyncio.to_thread(self._open)
        events = dream.events
        self._unsubscribe = [
            events.subscribe(FramePublished, self._on_frame),
            events.subscribe(StateChanged, self._on_change),
            events.subscribe(PromptChanged, self._on_change),
            events.subscribe(Injection, self._on_change),
            events.subscribe(Progress, self._on_progress),
        ]
        await self.flush()  # the skin has something to show before the first frame
        self._task = asyncio.create_task(self._work(), name="rainmeter-writer")

    async def close(self) -> None:
        """Write what is still pending (the final ``stopped``, say), then stop."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._task is not None:
            self._closing = True
            self._closed.set()
            self._wake.set()
            task, self._task = self._task, None
            await task

    def describe(self) -> None:
        return None  # the skin's files are its own status

    async def doctor_checks(self) -> list[Check]:
        return []  # it writes into the output folder, which the core checks already

    async def free_memory(self) -> None:
        return None

    # --- events (event loop): note what changed, wake the writer ---------------------------

    def _on_frame(self, event: FramePublished) -> None:
        self._frames.append(event)
        self._wake.set()

    def _on_change(self, event: Event) -> None:
        self._wake.set()

    def _on_progress(self, event: Progress) -> None:
        assert self._dream is not None
        now = self._dream.clock.monotonic()
        if now - self._last_progress_write < PROGRESS_EVERY_S:
            return
        self._last_progress_write = now
        self._wake.set()

    # --- writing (a worker thread) ---------------------------------------------------------

    async def _work(self) -> None:
        while True:
            # Events or not, status.ini is rewritten every heartbeat (real time, like status.json's:
            # the skin compares UpdatedEpoch with its own wall clock).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._heartbeat_s)
            try:
                await self.flush()
            except Exception:  # a bug: say so, keep the skin's files coming
                log.exception("rainmeter files not written")
            if self._closing and not self._wake.is_set():
                return
            with contextlib.suppress(TimeoutError):  # what comes meanwhile goes in the next write
                await asyncio.wait_for(self._closed.wait(), self._min_gap)

    async def flush(self) -> None:
        """Write everything the events so far asked for; returns once it is on disk."""
        assert self._dream is not None, "start() first"
        async with self._write_lock:
            self._wake.clear()
            frames = list(self._frames)
            self._frames.clear()
            status = self._dream.snapshot()  # taken on the loop; the thread only renders it
            heartbeat = status.get("heartbeat_s")
            if isinstance(heartbeat, int | float) and heartbeat > 0:
                self._heartbeat_s = float(heartbeat)
            await asyncio.to_thread(self._write, frames, status)

    def _open(self) -> None:
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.frames_dir)
        self._kept = deque(sorted(self._existing()))
        self._frame = frame_name(self._kept[-1]) if self._kept else None
        self._prune()

    def _existing(self) -> list[int]:
        out = []
        for p in self.frames_dir.glob("frame_*.png"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem.split("_", 1)[1]))
        return out

    def _write(self, frames: list[FramePublished], status: Mapping[str, Any]) -> None:
        for frame in frames:
            self._copy(frame)
        try:
            atomic_write_text(
                self.ini_path, render_ini(status, self._frame), fsync=False, retry_delays=_INI_RETRIES
            )
            atomic_write_bytes(
                self.lua_path, lua_bytes(status, self._frame), fsync=False, retry_delays=_INI_RETRIES
            )
        except FrameWriteError as exc:
            self._report(exc)
            return
        if self._failing:
            log.info("rainmeter files written again")
            self._failing = False

    def _copy(self, frame: FramePublished) -> None:
        target = self.frames_dir / frame_name(frame.index)
        try:
            data = frame.png if frame.png is not None else frame.path.read_bytes()
            atomic_write_bytes(target, data, fsync=False)
        except (OSError, FrameWriteError) as exc:  # OSError: the history pruned it before we read it
            self._report(exc)
            return
        self._kept.append(frame.index)
        self._frame = target.name
        self._prune()

    def _prune(self) -> None:
        while len(self._kept) > KEEP:
            old = self._kept.popleft()
            # A reader holding the file (Windows) makes this fail; the next run's prune retries.
            with contextlib.suppress(OSError):
                (self.frames_dir / frame_name(old)).unlink()

    def _report(self, exc: Exception) -> None:
        if not self._failing:  # once when it starts failing, not on every frame
            log.error("rainmeter files not written: %s", exc)
            self._failing = True
