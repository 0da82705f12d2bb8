"""Plain records the server's parts pass between them: queue items, folders, busy-time stats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class QueueItem:
    """One accepted prompt. ``/queue`` and ``history[id]["prompt"]`` show it as the recorded 5-tuple."""

    number: float | int
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return cid if isinstance(cid, str) else None

    def as_tuple(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


@dataclass(frozen=True, slots=True)
class Folders:
    input: Path
    output: Path
    temp: Path


@dataclass
class Stats:
    """Busy-time accounting for benchmarks and tests: seconds spent executing prompts, and how
    often a model file was loaded (each one paid ``model_load_delay``)."""

    busy_s: float = 0.0
    prompts: int = 0
    executed_nodes: int = 0
    model_loads: int = 0
    first_start: float | None = None
    last_end: float | None = None


# What a node id last produced: its cache key (class, widget values, inputs' keys), its outputs
# and its ui (None for nodes that show nothing).
CacheEntry = tuple[str, tuple[Any, ...], dict[str, Any] | None]
