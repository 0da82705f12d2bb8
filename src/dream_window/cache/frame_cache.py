"""CachedFrameCache: the frame cache as the dream sees it (remember, inject, rate), and its status.

Embedding a frame with CLIP on a CPU takes 100 ms or more, so nothing here runs on the
publisher's path: ``remember`` and ``rate`` only enqueue a job. One background task, owned and
awaited by this object, drains the queue in batches (frames that piled up are embedded in one
forward pass), writes them through the CacheManager in a worker thread, and keeps the
AestheticMatcher's matrix in step. When it is idle it re-embeds entries whose embedding came
from another embedder (a model change, a legacy import).

``pick_injection`` rolls the injected RNG against ``injection_probability`` once per call, then
matches the current frame against the matrix. Frames shown or injected recently rest for
``reinject_cooldown_frames`` published frames; the current frame itself is never a candidate.

It implements the dream's :class:`~dream_window.dream.frame_cache.FrameCache`; a cache that cannot
be opened is the dream's ``NoFrameCache`` instead (see ``service.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.cache.embedders import CLIPEmbedder, FeatureEmbedder, ImageEmbedder
from dream_window.cache.images import pixel_hash, rgb
from dream_window.cache.manager import CacheManager
from dream_window.cache.matcher import AestheticMatcher
from dream_window.config import CacheConfig
from dream_window.errors import CacheError, DreamWindowError, ModelLoadError
from dream_window.events import EventBus, FrameEmbedded
from dream_window.file_ops import WriteFailures
from dream_window.values.frame import Frame

log = logging.getLogger(__name__)

BATCH = 8
QUEUE_LIMIT = 64
CLOSE_TIMEOUT = 15.0


@dataclass(slots=True)
class _Job:
    image: Image.Image
    prompt: str
    params: dict[str, Any]
    index: int
    score: int | None = None  # set for a rating
    done: asyncio.Future[None] | None = field(default=None)


class CachedFrameCache:
    def __init__(
        self,
        manager: CacheManager,
        embedder: ImageEmbedder,
        config: CacheConfig,
        *,
        rng: random.Random,
        embedder_reason: str = "",
        batch_size: int = BATCH,
        events: EventBus | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """``events``: where each published frame's embedding is announced (``FrameEmbedded``);
        ``close_timeout``: how long close() lets the worker finish what is queued."""
        self.manager = manager
        self._events = events
        self.embedder = embedder
        self.embedder_reason = embedder_reason
        self.config = config
        self.matcher = AestheticMatcher(temperature=config.temperature, like_boost=config.like_boost)
        self._rng = rng
        self._batch = batch_size
        self._close_timeout = close_timeout
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(QUEUE_LIMIT)
        self._worker: asyncio.Task[None] | None = None
        self._size = 0
        self._frame = 0  # latest published frame index seen
        self._last_injection: dict[str, Any] | None = None
        self._injections = 0
        self._dropped = 0
        self._closed = False
        self._backfill_done = False
        self._backfilled = asyncio.Event()
        # A full disk fails every frame: said once a minute with a count, and once when it passes.
        self._failures = WriteFailures(
            log,
            one="frame not cached",
            many="frames not cached",
            recovered="frame cache writable again",
            level=logging.WARNING,
        )

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_matrix()
        self._worker = asyncio.create_task(self._work(), name="frame-cache")

    async def _load_matrix(self) -> None:
        ids, matrix, scores = await asyncio.to_thread(self.manager.load_embeddings, self.embedder.id)
        self.matcher.load(ids, matrix, scores)
        self._size = await asyncio.to_thread(self.manager.count)
        self._backfill_done = len(ids) == self._size
        if self._backfill_done:
            self._backfilled.set()
        else:
            self._backfilled.clear()
        log.info("frame cache: %d frame(s), %d embedded by %s", self._size, len(ids), self.embedder.label)

    async def flush(self, *, backfill: bool = False) -> None:
        """Wait until every frame remembered so far is in the cache (tests, close); with
        ``backfill``, also until every older entry carries an embedding of the active embedder."""
        await self._queue.join()
        if backfill:
            await self._backfilled.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._close_timeout)
            except TimeoutError:
                log.warning("frame cache: %d frame(s) not cached at shutdown", self._queue.qsize())
            self._worker.cancel()
            # wait() neither raises the worker's CancelledError nor swallows one aimed at us, as a
            # suppress(CancelledError) around ``await self._worker`` would.
            await asyncio.wait([self._worker])
        await asyncio.to_thread(self.manager.close)

    # --- the dream's side -----------------------------------------------------------------

    async def remember(self, frame: Frame, path: Path) -> None:
        self._frame = max(self._frame, frame.index)
        if self._closed:
            return
        self._enqueue(_Job(frame.image.copy(), frame.prompt, dict(frame.params), frame.index))

    def _enqueue(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            # The embedder cannot keep up (CLIP on a slow CPU): skip frames rather than fall behind.
            if self._dropped == 0:
                log.warning("frame cache: embedding cannot keep up; skipping frames for now")
            self._dropped += 1
            if job.done is not None and not job.done.done():
                job.done.set_exception(CacheError("the frame cache is busy; try again in a moment"))

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        if score not in (-1, 0, 1):
            raise CacheError(f"a rating must be -1, 0 or 1, got {score}")
        if self._closed:
            raise CacheError("the frame cache is closed")
        try:
            image = await asyncio.to_thread(_load_image, frame)
        except (OSError, UnidentifiedImageError) as exc:
            what = "the frame" if isinstance(frame, bytes) else frame
            raise CacheError(f"cannot rate {what}: {exc}") from exc
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Job(image, prompt or "", {}, self._frame, score=score, done=done))
        await done

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        if current is None or self._closed:
            return None
        if self._rng.random() >= self.config.injection_probability or len(self.matcher) == 0:
            return None
        at = max(self._frame, current.index)
        cid_now = await asyncio.to_thread(pixel_hash, current.image)
        target = self.matcher.vector(cid_now)
        if target is None:
            try:
                target = (await asyncio.to_thread(self.embedder.embed, [current.image]))[0]
            except ModelLoadError as exc:
                await self._fall_back(exc)
                return None
            if target.shape[0] != self.matcher.dim:
                return None
        candidates = self.matcher.find_similar(
            target, self.config.similarity_threshold, self.config.top_k, at_frame=at, exclude=(cid_now,)
        )
        chosen = self.matcher.weighted_random_selection(candidates, self._rng)
        if chosen is None:
            return None
        similarity = dict(candidates)[chosen]
        try:
            image = await asyncio.to_thread(self.manager.load_image, chosen)
            await asyncio.to_thread(self.manager.touch, chosen)
            entry = await asyncio.to_thread(self.manager.get, chosen)
        except CacheError as exc:
            log.warning("frame cache: %s; dropping the entry", exc)
            self.matcher.remove(chosen)
            with contextlib.suppress(CacheError):
                if await asyncio.to_thread(self.manager.remove, chosen):
                    self._size -= 1
            return None
        self.matcher.rest(chosen, at + self.config.reinject_cooldown_frames)
        self._injections += 1
        prompt = entry.prompt if entry else ""
        self._last_injection = {
            "cache_id": chosen,
            "similarity": round(similarity, 3),
            "prompt": prompt,
            "at_frame": at,
            "candidates": len(candidates),
        }
        short = (prompt[:48] + "…") if len(prompt) > 48 else prompt
        return image, f"{chosen[:8]} “{short}” (similarity {similarity:.2f})"

    def describe(self) -> dict[str, object]:
        """The ``cache`` section of status.json."""
        return {
            "enabled": True,
            "size": self._size,
            "max_size": self.config.max_size,
            "embedder": self.embedder.label,
            "embedder_reason": self.embedder_reason,
            "embedded": len(self.matcher),
            "pending": self._queue.qsize(),
            "injections": self._injections,
            "last_injection": dict(self._last_injection) if self._last_injection else None,
            "writes": self._failures.describe(),
        }

    async def free_memory(self) -> None:
        """Drop a loaded CLIP model (a game wants the GPU); the next embedding loads it again. The
        worker may still be embedding with the old one: it finishes, then the model is freed."""
        old = self.embedder
        if not isinstance(old, CLIPEmbedder) or not old.loaded:
            return
        # Same model, same id: the matrix stays valid.
        self.embedder = CLIPEmbedder(old.model_name, device=old.device, batch_size=old.batch_size)
        del old
        await asyncio.to_thread(_release_gpu_cache)
        log.info("frame cache: CLIP model unloaded to free GPU memory")

    # --- the worker -----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            if self._queue.empty() and not self._backfill_done:
                try:
                    await self._backfill_some()
                except DreamWindowError as exc:  # give up re-embedding until the next start, say so once
                    log.warning("frame cache: re-embedding stopped: %s", exc)
                    self._backfill_done = True
                    self._backfilled.set()
                except Exception:  # a bug or a torch error must not kill the worker: new frames still come
                    log.exception("frame cache: re-embedding failed; stopped until the next start")
                    self._backfill_done = True
                    self._backfilled.set()
                continue
            jobs = [await self._queue.get()]
            while len(jobs) < self._batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._process(jobs)
                self._failures.succeeded()
            except DreamWindowError as exc:
                if isinstance(exc, CacheError) and exc.disk_full:
                    self._failures.failed("disk full", str(self.manager.cache_dir), count=len(jobs))
                else:
                    self._failures.failed(str(exc), count=len(jobs))
                for j in jobs:
                    if j.done is not None and not j.done.done():
                        j.done.set_exception(exc)
            except Exception as exc:  # a bug must not kill the worker silently, nor the dream
                log.exception("frame cache worker failed")
                for j in jobs:
                    if j.done is not None and not j.done.done():
                        j.done.set_exception(CacheError(f"frame cache failed: {exc!r}"))
            finally:
                for _ in jobs:
                    self._queue.task_done()

    async def _embed(self, images: list[Image.Image]) -> np.ndarray | None:
        try:
            return await asyncio.to_thread(self.embedder.embed, images)
        except ModelLoadError as exc:
            await self._fall_back(exc)
            return None

    async def _process(self, jobs: list[_Job]) -> None:
        vectors = await self._embed([j.image for j in jobs])
        if vectors is None:  # the embedder was just replaced: embed with the fallback
            vectors = await self._embed([j.image for j in jobs])
        for j, v in zip(jobs, vectors if vectors is not None else [None] * len(jobs), strict=True):
            result = await asyncio.to_thread(
                self.manager.add,
                j.image,
                prompt=j.prompt,
                params=j.params,
                embedding=v,
                embedder=self.embedder.id if v is not None else None,
                score=j.score,
            )
            cid = result.entry.cache_id
            self.matcher.remove_many(result.evicted)
            self._size += int(result.created) - len(result.evicted)
            if v is not None:
                # Just shown (or just rated, which means on screen): it rests before it can come back.
                self.matcher.add(
                    cid,
                    v,
                    score=result.entry.score,
                    rest_until=j.index + self.config.reinject_cooldown_frames,
                )
            if j.score is not None:
                self.matcher.set_score(cid, j.score)
            elif v is not None and self._events is not None:
                clip = isinstance(self.embedder, CLIPEmbedder)
                self._events.emit(FrameEmbedded(j.index, v, self.embedder.label, clip))
            if j.done is not None and not j.done.done():
                j.done.set_result(None)

    async def _backfill_some(self) -> None:
        ids = await asyncio.to_thread(self.manager.ids_without_embedding, self.embedder.id, limit=self._batch)
        if not ids:
            self._backfill_done = True
            self._backfilled.set()
            log.info("frame cache: every frame embedded by %s", self.embedder.label)
            return
        images: list[Image.Image] = []
        kept: list[str] = []
        for cid in ids:
            try:
                images.append(await asyncio.to_thread(self.manager.load_image, cid))
                kept.append(cid)
            except CacheError as exc:
                log.warning("frame cache: %s; dropping the entry", exc)
                if await asyncio.to_thread(self.manager.remove, cid):
                    self._size -= 1
        if not images:
            return
        vectors = await self._embed(images)
        if vectors is None:
            return
        for cid, v in zip(kept, vectors, strict=True):
            await asyncio.to_thread(self.manager.set_embedding, cid, v, self.embedder.id)
            entry = await asyncio.to_thread(self.manager.get, cid)
            if entry is not None:
                self.matcher.add(cid, v, score=entry.score)

    async def _fall_back(self, exc: Exception) -> None:
        """CLIP failed to load or run: switch to the feature embedder for good (said once)."""
        if isinstance(self.embedder, FeatureEmbedder):
            raise CacheError(f"feature embedder failed: {exc}") from exc
        log.error("frame cache: %s; falling back to colour/layout features", exc)
        self.embedder = FeatureEmbedder()
        self.embedder_reason = f"CLIP failed ({exc}); using colour/layout features"
        await self._load_matrix()


def _release_gpu_cache() -> None:
    gc.collect()
    torch = sys.modules.get("torch")  # loaded with CLIP; never imported just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load_image(frame: Path | bytes) -> Image.Image:
    with Image.open(io.BytesIO(frame) if isinstance(frame, bytes) else frame) as img:
        img.load()
        return rgb(img)
