"""The frame cache: published frames kept with their embeddings, and brought back now and then.

Module map::

    db.py           the SQLite file: WAL, recorded self-applied migrations, sqlite3 → CacheError
    images.py       content-addressed PNG store (pixel hash names, metadata chunk for rebuilds)
    manager.py      CacheManager: add/get/remove, true LRU eviction, crash-safe ordering, reconcile
    legacy.py       one-time import of the seed's cache_index.json
    embedders.py    ImageEmbedder strategy: CLIPEmbedder (transformers) and FeatureEmbedder (numpy)
    matcher.py      AestheticMatcher: in-memory float32 matrix, find_similar, weighted selection
    frame_cache.py  CachedFrameCache: what the dream calls; a background worker embeds
    service.py      FrameCacheService: opens, closes and checks it for the app; open_cache for the CLI
    rebuild.py      re-create the index from the images on disk

Importing this package is cheap: torch is imported only when CLIP is first used.
"""

from __future__ import annotations

from dream_window.cache.embedders import FeatureEmbedder, ImageEmbedder, select_embedder
from dream_window.cache.frame_cache import CachedFrameCache
from dream_window.cache.manager import CacheEntry, CacheManager
from dream_window.cache.matcher import AestheticMatcher
from dream_window.cache.service import FrameCacheService, open_cache, open_frame_cache

__all__ = [
    "AestheticMatcher",
    "CacheEntry",
    "CacheManager",
    "CachedFrameCache",
    "FeatureEmbedder",
    "FrameCacheService",
    "ImageEmbedder",
    "open_cache",
    "open_frame_cache",
    "select_embedder",
]
