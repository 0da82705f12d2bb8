"""The frame memory: published frames kept with their embeddings, and brought back now and then.

Module map::

    db.py          the SQLite file: WAL, recorded self-applied migrations, sqlite3 → CacheError
    images.py      content-addressed PNG store (pixel hash names, metadata chunk for rebuilds)
    manager.py     CacheManager: add/get/remove, true LRU eviction, crash-safe ordering, reconcile
    legacy.py      one-time import of the seed's cache_index.json
    embedders.py   ImageEmbedder strategy: CLIPEmbedder (transformers) and FeatureEmbedder (numpy)
    matcher.py     AestheticMatcher: in-memory float32 matrix, find_similar, weighted selection
    memory.py      CachedFrameMemory: what the controller calls; a background worker embeds
    rebuild.py     re-create the index from the images on disk
    cli.py         `dream-window cache ...`

Importing this package is cheap: torch is imported only when CLIP is first used.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from dream_window.cache.embedders import FeatureEmbedder, ImageEmbedder, clip_source, select_embedder
from dream_window.cache.legacy import import_legacy
from dream_window.cache.manager import CacheEntry, CacheManager
from dream_window.cache.matcher import AestheticMatcher
from dream_window.cache.memory import CachedFrameMemory, DisabledFrameMemory
from dream_window.config import DreamConfig
from dream_window.errors import CacheError

if TYPE_CHECKING:
    from dream_window.values.check import Check

log = logging.getLogger(__name__)

__all__ = [
    "AestheticMatcher",
    "CacheEntry",
    "CacheManager",
    "CachedFrameMemory",
    "DisabledFrameMemory",
    "FeatureEmbedder",
    "ImageEmbedder",
    "doctor_checks",
    "open_cache",
    "open_frame_memory",
]


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


async def open_frame_memory(
    config: DreamConfig, *, rng: random.Random
) -> CachedFrameMemory | DisabledFrameMemory:
    """The frame memory for the controller. A cache that cannot be opened does not stop the dream:
    the error is logged once and shown in status, and the dream runs without re-injection."""
    cfg = config.generation.cache
    try:
        manager = await asyncio.to_thread(open_cache, config)
    except CacheError as exc:
        log.error("frame cache disabled: %s", exc)
        return DisabledFrameMemory(str(exc))
    embedder, reason = select_embedder(cfg.embedder, cfg.clip_model)
    level = (
        logging.WARNING if cfg.embedder == "clip" and isinstance(embedder, FeatureEmbedder) else logging.INFO
    )
    log.log(level, "frame cache embedder: %s; %s", embedder.label, reason)
    memory = CachedFrameMemory(manager, embedder, cfg, rng=rng, embedder_reason=reason)
    try:
        await memory.start()
    except CacheError as exc:
        await asyncio.to_thread(manager.close)
        log.error("frame cache disabled: %s", exc)
        return DisabledFrameMemory(str(exc))
    return memory


async def doctor_checks(config: DreamConfig) -> list[Check]:
    from dream_window.values.check import Check

    cfg = config.generation.cache
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
        manager = CacheManager(config.cache_dir, max_size=cfg.max_size, reconcile=False)
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
