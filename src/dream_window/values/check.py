"""Check: one line of ``dream-window doctor``. Every part that can be checked returns a list of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
