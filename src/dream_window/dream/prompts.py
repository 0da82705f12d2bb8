"""PromptManager: which prompt the dream follows now, and when it moves on.

Prompts come from config (``prompts.list``) or a prompts file (one per line, ``#`` comments,
``text :: weight``). The manager rotates every N frames or every N minutes (whichever comes
first), picks by weight without repeating the current prompt, and can prefer a time-of-day theme.
A prompt set by the user (viewer, CLI) holds until the next rotation. Every change is announced
as a :class:`~dream_window.events.PromptChanged` event.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dream_window.clock import Clock
from dream_window.config import PromptsConfig
from dream_window.errors import ConfigError
from dream_window.events import EventBus, PromptChanged

log = logging.getLogger(__name__)

WEIGHT_SEP = "::"


@dataclass(frozen=True, slots=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


def parse_prompt_line(line: str, *, where: str) -> WeightedPrompt | None:
    """``text :: weight`` → WeightedPrompt; blank lines and ``#`` comments → None."""
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    text, weight = s, 1.0
    if WEIGHT_SEP in s:
        text, _, w = s.rpartition(WEIGHT_SEP)
        text = text.strip()
        try:
            weight = float(w.strip())
        except ValueError:
            raise ConfigError(f"{where}: weight must be a number, got {w.strip()!r}") from None
        if not weight > 0:
            raise ConfigError(f"{where}: weight must be greater than 0, got {w.strip()}")
    if not text:
        raise ConfigError(f"{where}: empty prompt text")
    return WeightedPrompt(text, weight)


def load_prompts_file(path: Path) -> list[WeightedPrompt]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"prompts.file {path}: cannot read it ({exc.strerror or exc})") from None
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
        self.changes = 0

    # --- reading --------------------------------------------------------------------------

    @property
    def current(self) -> str:
        return self._current

    @property
    def prompts(self) -> list[WeightedPrompt]:
        return list(self._prompts)

    # --- moving on ------------------------------------------------------------------------

    def _pool(self) -> list[WeightedPrompt]:
        theme = self._themes.get(part_of_day(self._local_now().hour))  # type: ignore[call-overload]
        return theme if theme else self._prompts

    def _pick(self, exclude: str | None) -> WeightedPrompt:
        pool = self._pool()
        choices = [p for p in pool if p.text != exclude] or pool
        return self._rng.choices(choices, weights=[p.weight for p in choices], k=1)[0]

    def _set(self, text: str, why: str) -> None:
        self._current = text
        self._frames_on = 0
        self._since = self._clock.monotonic()
        self.changes += 1
        log.info("prompt (%s): %s", why, text)
        self._events.emit(PromptChanged(text, why))

    def frame_done(self) -> None:
        """Count one published frame; rotate when the frame or time budget is spent."""
        self._frames_on += 1
        self.maybe_rotate()

    def maybe_rotate(self) -> bool:
        c = self._cfg
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
        """Move to another prompt now."""
        self._set(self._pick(exclude=self._current).text, "skip")
        return self._current

    def set_prompt(self, text: str) -> None:
        text = text.strip()
        if not text:
            raise ValueError("prompt must not be empty")
        if len(text) > 2000:
            raise ValueError(f"prompt must be at most 2000 characters, got {len(text)}")
        self._set(text, "set by user")
