"""FrameCacheService: the frame cache as the app runs it, and as the dream sees it.

As a :class:`~dream_window.dream.service.Service` it opens the cache when the dream starts (the
database, the embedder, the background worker), closes it after the last frame, gives a loaded
CLIP model's GPU memory back when a game pauses the dream and answers ``dream-window doctor``.
As the dream's :class:`~dream_window.dream.frame_cache.FrameCache` it hands every call on to the
cache it opened, or to ``NoFrameCache`` when the cache is switched off or could not be opened: a
damaged database does not stop the dream; the error is logged once and shown in status.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

from PIL import Image

from dream_window.cache.embedders import FeatureEmbedder, clip_source, select_embedder
from dream_window.cache.frame_cache import CachedFrameCache
from dream_window.cache.legacy import import_legacy
from dream_window.cache.manager import CacheManager
from dream_window.config import DreamConfig
from dream_window.dream.frame_cache import NoFrameCache
from dream_window.dream.service import Dream
from dream_window.errors import CacheError
from dream_window.events import EventBus
from dream_window.values.check import Check
from dream_window.values.frame import Frame

log = logging.getLogger(__name__)


def open_cache(config: DreamConfig, *, reconcile: bool = True) -> CacheManager:
    """The CacheManager for ``config`` (blocking), with the old seed index imported once."""
    manager = CacheManager(config.cache_dir, max_size=config.generation.cache.max_size, reconcile=reconcile)
    try:
        if reconcile:
            import_legacy(manager, base_dir=config.base_dir)
    except CacheError:
        manager.close()
        raise
    return manager


async def open_frame_cache(
    config: DreamConfig, *, rng: random.Random, events: EventBus | None = None
) -> CachedFrameCache | NoFrameCache:
    """The frame cache for the dream, started; ``NoFrameCache`` with the reason when it cannot open.
    ``events``: the dream's bus, told each published frame's embedding (``FrameEmbedded``)."""
    cfg = config.generation.cache
    try:
        manager = await asyncio.to_thread(open_cache, config)
    except CacheError as exc:
        log.error("frame cache disabled: %s", exc)
        return NoFrameCache(str(exc))
    embedder, reason = select_embedder(cfg.embedder, cfg.clip_model)
    level = (
        logging.WARNING if cfg.embedder == "clip" and isinstance(embedder, FeatureEmbedder) else logging.INFO
    )
    log.log(level, "frame cache embedder: %s; %s", embedder.label, reason)
    cache = CachedFrameCache(manager, embedder, cfg, rng=rng, embedder_reason=reason, events=events)
    try:
        await cache.start()
    except CacheError as exc:
        await asyncio.to_thread(manager.close)
        log.error("frame cache disabled: %s", exc)
        return NoFrameCache(str(exc))
    return cache


class FrameCacheService:
    name = "cache"

    def __init__(self, config: DreamConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self.cache: CachedFrameCache | NoFrameCache = (
            NoFrameCache("not opened yet") if config.generation.cache.enabled else NoFrameCache()
        )

    # --- the service ----------------------------------------------------------------------

    async def start(self, dream: Dream) -> None:
        if self.config.generation.cache.enabled:
            self.cache = await open_frame_cache(self.config, rng=self._rng, events=dream.events)

    async def close(self) -> None:
        """Lets the worker store what it was given (a few seconds at most); status keeps the counts."""
        if isinstance(self.cache, CachedFrameCache):
            await self.cache.close()

    def describe(self) -> dict[str, object]:
        """The ``cache`` section of status.json, also when switched off (``enabled: false``)."""
        return self.cache.describe()

    async def free_memory(self) -> None:
        if isinstance(self.cache, CachedFrameCache):
            await self.cache.free_memory()

    async def doctor_checks(self) -> list[Check]:
        cfg = self.config.generation.cache
        if not cfg.enabled:
            return [Check("frame cache", "info", "disabled in config (generation.cache.enabled)")]
        out: list[Check] = []
        embedder, reason = select_embedder(cfg.embedder, cfg.clip_model)
        if isinstance(embedder, FeatureEmbedder) and cfg.embedder != "features":
            _ok, detail = clip_source(cfg.clip_model)
            out.append(Check("cache embedder", "warn", f"{embedder.label}: {detail}"))
        else:
            out.append(Check("cache embedder", "ok", f"{embedder.label}: {reason}"))

        def _db() -> Check:
            manager = CacheManager(self.config.cache_dir, max_size=cfg.max_size, reconcile=False)
            try:
                manager.check()
                n = manager.count()
                return Check(
                    "cache database",
                    "ok",
                    f"{manager.db_path}: healthy, {n} frame(s), schema v{manager.schema_version()}",
                )
            finally:
                manager.close()

        try:
            out.append(await asyncio.to_thread(_db))
        except CacheError as exc:
            out.append(Check("cache database", "fail", str(exc)))
        return out

    # --- the dream's FrameCache -----------------------------------------------------------

    async def remember(self, frame: Frame, path: Path) -> None:
        await self.cache.remember(frame, path)

    async def pick_injection(self, current: Frame | None) -> tuple[Image.Image, str] | None:
        return await self.cache.pick_injection(current)

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        await self.cache.rate(frame, score, prompt=prompt)
