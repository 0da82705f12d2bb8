"""PromptManager: which prompt the dream follows now, and when it moves on.

Prompts come from config (``prompts.list``) or a prompts file (one per line, ``#`` comments,
``text :: weight``). The manager rotates every N frames or every N minutes (whichever comes
first), picks by weight without repeating the current prompt, and can prefer a time-of-day theme.

A prompt the user types (viewer, CLI) *holds*: rotation leaves it alone until the user skips, or
for ``prompts.hold_minutes`` (0: until skipped). When the hold ends the dream moves on to a prompt
of its own and the rotation timer starts again from there. Every change is announced as a
:class:`~dream_window.events.PromptChanged` event. ``current`` is the prompt frames are made for
*now*; the frame on screen may still be an older one (the controller knows which).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dream_window.clock import Clock
from dream_window.config import PromptsConfig
from dream_window.errors import ConfigError
from dream_window.events import EventBus, PromptChanged
from dream_window.text_files import clip, read_text_file

log = logging.getLogger(__name__)

WEIGHT_SEP = "::"


@dataclass(frozen=True, slots=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


# A weight is a relative chance; past this the sum of weights can overflow (random.choices refuses).
MAX_WEIGHT = 1_000_000.0
MAX_PROMPTS_FILE_BYTES = 8 * 1024 * 1024


def parse_prompt_line(line: str, *, where: str) -> WeightedPrompt | None:
    """``text :: weight`` → WeightedPrompt; blank lines and ``#`` comments → None."""
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    text, weight = s, 1.0
    if WEIGHT_SEP in s:
        text, _, w = s.rpartition(WEIGHT_SEP)
        text, w = text.strip(), w.strip()
        shown = clip(w, 40)
        try:
            weight = float(w)
        except ValueError:
            raise ConfigError(f"{where}: weight must be a number, got {shown!r}") from None
        if not 0 < weight <= MAX_WEIGHT:  # also refuses nan and inf
            raise ConfigError(
                f"{where}: weight must be greater than 0 and at most {MAX_WEIGHT:g}, got {shown}"
            )
    if not text:
        raise ConfigError(f"{where}: empty prompt text")
    try:
        text = check_prompt(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return WeightedPrompt(text, weight)


def load_prompts_file(path: Path) -> list[WeightedPrompt]:
    text = read_text_file(Path(path), what="prompts.file", max_bytes=MAX_PROMPTS_FILE_BYTES)
    lines = text.splitlines()
    out = [p for i, line in enumerate(lines, 1) if (p := parse_prompt_line(line, where=f"{path} line {i}"))]
    if not out:
        raise ConfigError(f"prompts.file {path}: holds no prompts (only blank lines or comments)")
    return out


def part_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 22:
        return "evening"
    return "night"


class PromptManager:
    def __init__(
        self,
        config: PromptsConfig,
        *,
        clock: Clock,
        rng: random.Random,
        base_dir: Path = Path("."),
        local_now: Callable[[], datetime] = datetime.now,
        events: EventBus | None = None,
    ) -> None:
        self._cfg = config
        self._events = events if events is not None else EventBus()
        self._clock = clock
        self._rng = rng
        self._local_now = local_now
        if config.file is not None:
            path = config.file if config.file.is_absolute() else base_dir / config.file
            self._prompts = load_prompts_file(path)
        else:
            self._prompts = [
                p
                for i, line in enumerate(config.list)
                if (p := parse_prompt_line(line, where=f"prompts.list[{i}]"))
            ]
        if not self._prompts:
            raise ConfigError("prompts.list must hold at least one prompt (or set prompts.file)")
        self._themes = {
            k: [
                p
                for i, line in enumerate(v)
                if (p := parse_prompt_line(line, where=f"prompts.themes.{k}[{i}]"))
            ]
            for k, v in config.themes.items()
        }
        self._current = self._pick(exclude=None).text
        self._frames_on = 0
        self._since = clock.monotonic()
        # monotonic time a typed prompt holds until (math.inf: until skipped); None: not held.
        self._held_until: float | None = None
        self.changes = 0

    # --- reading --------------------------------------------------------------------------

    @property
    def current(self) -> str:
        return self._current

    @property
    def prompts(self) -> list[WeightedPrompt]:
        return list(self._prompts)

    @property
    def held_for(self) -> float | None:
        """Seconds the typed prompt still holds (``math.inf``: until skipped); None when not held."""
        if self._held_until is None:
            return None
        return max(0.0, self._held_until - self._clock.monotonic())

    def describe_hold(self) -> dict[str, object] | None:
        """status.json's ``prompt_hold``: the held prompt and until when, or None."""
        left = self.held_for
        if left is None:
            return None
        forever = math.isinf(left)
        return {
            "prompt": self._current,
            "until_skipped": forever,
            "remaining_s": None if forever else round(left, 1),
            "until": None if forever else (self._clock.now() + timedelta(seconds=left)).isoformat(),
        }

    # --- moving on ------------------------------------------------------------------------

    def _pool(self) -> list[WeightedPrompt]:
        theme = self._themes.get(part_of_day(self._local_now().hour))  # type: ignore[call-overload]
        return theme if theme else self._prompts

    def _pick(self, exclude: str | None) -> WeightedPrompt:
        pool = self._pool()
        choices = [p for p in pool if p.text != exclude] or pool
        return self._rng.choices(choices, weights=[p.weight for p in choices], k=1)[0]

    def _set(self, text: str, why: str, *, hold: bool = False) -> None:
        self._current = text
        self._frames_on = 0
        self._since = self._clock.monotonic()
        minutes = self._cfg.hold_minutes
        self._held_until = (self._since + minutes * 60 if minutes > 0 else math.inf) if hold else None
        self.changes += 1
        log.info("prompt (%s): %s", why, text)
        self._events.emit(PromptChanged(text, why, self.held_for))

    def frame_done(self) -> None:
        """Count one published frame; rotate when the frame or time budget is spent."""
        self._frames_on += 1
        self.maybe_rotate()

    def maybe_rotate(self) -> bool:
        c = self._cfg
        if self._held_until is not None:
            if self._clock.monotonic() < self._held_until:
                return False  # a typed prompt is not rotated away
            self._set(self._pick(exclude=self._current).text, "hold ended")
            return True
        by_frames = c.rotate_every_frames > 0 and self._frames_on >= c.rotate_every_frames
        by_time = (
            c.rotate_every_minutes > 0
            and (self._clock.monotonic() - self._since) >= c.rotate_every_minutes * 60
        )
        if by_frames or by_time:
            self._set(self._pick(exclude=self._current).text, "rotation")
            return True
        return False

    def skip(self) -> str:
        """Move to another prompt now (a held prompt is let go)."""
        self._set(self._pick(exclude=self._current).text, "skip")
        return self._current

    def set_prompt(self, text: str) -> str:
        """Dream of ``text`` now; it holds (see the module docstring). Raises ValueError for an
        empty or over-long prompt."""
        text = check_prompt(text)
        self._set(text, "set by user", hold=True)
        return text

    def continue_with(self, text: str) -> None:
        """Go on with ``text`` (a restart continuing the last run's prompt); not a hold."""
        self._set(check_prompt(text), "continued")


MAX_PROMPT_CHARS = 2000


def check_prompt(text: str) -> str:
    """``text`` stripped; ValueError naming the problem when it cannot be a prompt."""
    text = text.strip()
    if not text:
        raise ValueError("prompt must not be empty")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):  # NUL would end a PNG text chunk
        raise ValueError("prompt must not contain control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("prompt must be valid Unicode text (it holds a lone surrogate)") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text
