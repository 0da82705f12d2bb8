"""QualityService: every published frame measured, off the publishing path.

It listens to ``FramePublished`` (which carries the picture and the PNG the output writer
encoded) and to the frame cache's ``FrameEmbedded``. The listener only queues the frame; one task
measures its pixels (decoding the PNG only for an event without the picture) in a worker thread
on a small copy (``values/quality.py``, through :class:`QualityTracker`) and
appends one line to ``output/metrics.jsonl``. Publishing never waits for it: when it falls behind,
the oldest frames waiting are skipped (counted in status) rather than queued without end.

The log holds one JSON object per measured frame::

    {"index": 42, "kind": "inbetween", "brightness": .., "contrast": .., "saturation": ..,
     "clipped": .., "dark": .., "bright": .., "sharpness": .., "change": ..,
     "reference": 40, "histogram_distance": .., "saturation_drift": .., "brightness_drift": ..,
     "clip_distance": null}

It is bounded: past ``LOG_MAX_BYTES`` it is renamed ``metrics.jsonl.1`` (replacing the one before)
and a new one begun, so at most twice that is kept. status.json's ``quality`` section is the
tracker's (latest record, rolling summaries over the last frames, reference, CLIP distance) plus
``skipped`` and the log's path.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.config import DreamConfig
from dream_window.dream.service import Dream
from dream_window.events import FrameEmbedded, FramePublished
from dream_window.quality.tracker import QualityTracker
from dream_window.values.check import Check

log = logging.getLogger(__name__)

METRICS_LOG = "metrics.jsonl"
LOG_MAX_BYTES = 4 * 1024 * 1024
# Frames waiting to be measured; older ones are skipped when more arrive.
QUEUE = 8


class MetricsLog:
    """Append-only JSON lines, rotated once past ``max_bytes`` (one older file kept)."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_MAX_BYTES) -> None:
        self.path = path
        self.old = path.with_name(path.name + ".1")
        self.max_bytes = max_bytes
        self._failing = False

    def append(self, record: dict[str, object]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(line) > self.max_bytes:
                os.replace(self.path, self.old)
            with self.path.open("ab") as f:
                f.write(line)
        except OSError as exc:
            if not self._failing:  # once when it starts failing, once when it recovers
                log.warning("metrics log not written: %s", exc)
                self._failing = True
            return
        if self._failing:
            log.info("metrics log written again")
            self._failing = False


class QualityService:
    """Per-frame quality metrics for status.json and the metrics log (a ``Service``)."""

    name = "quality"

    def __init__(self, config: DreamConfig, *, log_max_bytes: int = LOG_MAX_BYTES) -> None:
        cache = config.generation.cache
        self.tracker = QualityTracker(
            no_clip_reason="no embedder: the frame cache is off"
            if not cache.enabled
            else "no frame embedded yet"
        )
        self.log = MetricsLog(config.output_dir / METRICS_LOG, max_bytes=log_max_bytes)
        self._queue: deque[FramePublished] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._closing = False
        self.skipped = 0

    async def start(self, dream: Dream) -> None:
        self._unsubscribe = [
            dream.events.subscribe(FramePublished, self._on_frame),
            dream.events.subscribe(FrameEmbedded, self._on_embedded),
        ]
        self._task = asyncio.create_task(self._work(), name="quality-metrics")

    async def close(self) -> None:
        """Measure what is queued, then stop."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._task is not None:
            self._closing = True
            self._wake.set()
            task, self._task = self._task, None
            await task

    def describe(self) -> dict[str, object]:
        return {**self.tracker.describe(), "skipped": self.skipped, "log": str(self.log.path)}

    async def doctor_checks(self) -> list[Check]:
        return []  # it writes into the output folder, which the core checks already

    async def free_memory(self) -> None:
        return None

    async def flush(self) -> None:
        """Wait until every frame queued so far is measured and logged (tests)."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # --- events (event loop): queue, never measure here ------------------------------------

    def _on_frame(self, event: FramePublished) -> None:
        if len(self._queue) >= QUEUE:
            self._queue.popleft()
            self.skipped += 1
        self._queue.append(event)
        self._idle.clear()
        self._wake.set()

    def _on_embedded(self, event: FrameEmbedded) -> None:
        self.tracker.embedded(event.index, event.vector, embedder=event.embedder, clip=event.clip)

    # --- the worker ------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                event = self._queue.popleft()
                try:
                    await asyncio.to_thread(self._measure, event)
                except Exception:  # a bug: say so, keep measuring the next frames
                    log.exception("frame %d not measured", event.index)
            self._idle.set()
            if self._closing:
                return

    def _measure(self, event: FramePublished) -> None:
        if event.image is not None:  # the picture itself: no PNG to decode (~3 ms at 256x512)
            rgb = np.asarray(event.image.convert("RGB"))
        else:
            try:
                data = event.png if event.png is not None else event.path.read_bytes()
                with Image.open(io.BytesIO(data)) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:  # pruned from the history before we read it
                log.debug("frame %d not measured: %s", event.index, exc)
                return
        self.log.append(self.tracker.frame(event.index, event.kind, event.prompt, rgb))
