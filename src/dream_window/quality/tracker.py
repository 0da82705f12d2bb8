"""QualityTracker: the metrics of each published frame against the one before it and the reference.

Fed one published frame at a time (in a worker thread) and the frame cache's embeddings (on the
event loop), it keeps what status.json's ``quality`` section shows: the latest frame's record, short
rolling summaries over the last ``window`` frames, the reference and the CLIP distance.

* **change** is measured against the previous *published* frame only: when frames were skipped (the
  worker fell behind) it is None rather than a jump across the gap.
* The **reference** is the first generated frame (txt2img, img2img, keyframe, injected) published
  for a prompt: the same rule colour coherence uses, so status shows the drift it works against.
  In-betweens and transitions into a new prompt wait for it (their drift is None).
* The **CLIP distance** (1 - cosine) is between the newest frame the cache embedded with CLIP and
  the reference's embedding. With colour/layout features, or no frame cache, it is None with the
  reason: those vectors are not a measure of what a picture shows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from dream_window.values.frame import GENERATED_KINDS
from dream_window.values.quality import (
    FrameMetrics,
    change,
    downscale,
    histogram_distance,
    measure,
    percentile,
    relative,
)

WINDOW = 100
# Embeddings kept while their frame may still become (or be compared with) the reference.
_EMBEDDINGS_KEPT = 64
# A reference this dark or grey is held at this floor for relative drifts.
_FLOOR = 0.02


@dataclass(slots=True)
class _Reference:
    index: int
    prompt: str
    small: np.ndarray
    metrics: FrameMetrics


class QualityTracker:
    def __init__(self, *, window: int = WINDOW, no_clip_reason: str = "no frame embedded yet") -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, object]] = deque(maxlen=window)
        self._prev: tuple[int, np.ndarray] | None = None
        self._ref: _Reference | None = None
        self._embeddings: OrderedDict[int, np.ndarray] = OrderedDict()
        self._clip_label = ""
        self._no_clip = no_clip_reason
        self._clip: tuple[int, float] | None = None  # (frame index, distance)
        self.latest: dict[str, object] | None = None
        # The rolling summaries, made when status asks and kept until the next frame is measured:
        # status is read several times per frame (status.json, the Rainmeter files, the viewer),
        # and the percentiles were most of what a snapshot cost.
        self._summary: dict[str, object] | None = None
        self.measured = 0

    # --- frames (a worker thread) ---------------------------------------------------------

    def frame(self, index: int, kind: str, prompt: str, rgb: np.ndarray) -> dict[str, object]:
        """Measure published frame ``index``; returns its record (one line of the metrics log)."""
        small = downscale(rgb)
        m = measure(small)
        with self._lock:
            prev = self._prev
            moved = (
                change(prev[1], small)
                if prev is not None and prev[0] == index - 1 and prev[1].shape == small.shape
                else None
            )
            self._prev = (index, small)
            if kind in GENERATED_KINDS and (self._ref is None or self._ref.prompt != prompt):
                self._ref = _Reference(index, prompt, small, m)
                self._clip = None
            ref = self._ref if self._ref is not None and self._ref.prompt == prompt else None
            record: dict[str, object] = {"index": index, "kind": kind, **m.to_dict()}
            record["change"] = _r(moved)
            if ref is not None and ref.small.shape == small.shape:
                record["reference"] = ref.index
                record["histogram_distance"] = _r(histogram_distance(small, ref.small))
                record["saturation_drift"] = _r(relative(m.saturation, ref.metrics.saturation, _FLOOR))
                record["brightness_drift"] = _r(relative(m.brightness, ref.metrics.brightness, _FLOOR))
            else:
                record.update(
                    reference=None, histogram_distance=None, saturation_drift=None, brightness_drift=None
                )
            self._update_clip()
            record["clip_distance"] = _r(self._clip[1]) if self._clip is not None else None
            self._recent.append(record)
            self.latest = record
            self._summary = None
            self.measured += 1
            return record

    # --- embeddings (the event loop) ------------------------------------------------------

    def embedded(self, index: int, vector: np.ndarray, *, embedder: str, clip: bool) -> None:
        """The frame cache embedded frame ``index``; only CLIP vectors count for the distance."""
        with self._lock:
            if not clip:
                self._no_clip = f"the frame cache embeds with {embedder}, not CLIP"
                return
            self._clip_label = embedder
            self._embeddings[index] = np.asarray(vector, dtype=np.float32).ravel()
            while len(self._embeddings) > _EMBEDDINGS_KEPT:
                self._embeddings.popitem(last=False)
            self._update_clip()

    def _update_clip(self) -> None:
        ref = self._ref
        if ref is None or ref.index not in self._embeddings:
            return
        newest = max(self._embeddings)
        if newest < ref.index:
            return
        a, b = self._embeddings[ref.index], self._embeddings[newest]
        cos = float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
        self._clip = (newest, 1.0 - cos)

    # --- status ---------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """status.json's ``quality`` section (less what the service adds)."""
        with self._lock:
            if self._summary is None:
                self._summary = summarise(list(self._recent))
            ref = self._ref
            clip: dict[str, object]
            if self._clip is not None:
                clip = {"distance": _r(self._clip[1]), "index": self._clip[0], "embedder": self._clip_label}
            else:
                clip = {
                    "distance": None,
                    "reason": self._no_clip if not self._clip_label else "waiting for embeddings",
                }
            return {
                "measured": self.measured,
                "latest": dict(self.latest) if self.latest is not None else None,
                "recent": dict(self._summary),
                "reference": {"index": ref.index, "prompt": ref.prompt} if ref is not None else None,
                "clip": clip,
            }


def summarise(records: list[dict[str, object]]) -> dict[str, object]:
    """Short rolling summaries of ``records`` (the last frames' metrics)."""

    def values(key: str) -> list[float]:
        return [float(v) for r in records if isinstance(v := r.get(key), int | float)]

    changes, sharp, clipped = values("change"), values("sharpness"), values("clipped")
    sat, bright = values("saturation_drift"), values("brightness_drift")
    return {
        "frames": len(records),
        "change_p50": _r(percentile(changes, 50)),
        "change_p95": _r(percentile(changes, 95)),
        "sharpness_min": _r(min(sharp)) if sharp else None,
        "sharpness_mean": _r(sum(sharp) / len(sharp)) if sharp else None,
        "clipped_p95": _r(percentile(clipped, 95)),
        "saturation_drift_max": _r(max(sat, key=abs)) if sat else None,
        "brightness_drift_max": _r(max(bright, key=abs)) if bright else None,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 5)
