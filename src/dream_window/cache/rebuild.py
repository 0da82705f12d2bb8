"""``dream-window cache rebuild``: a fresh index from the images on disk.

The old database (damaged or not) is moved aside, never deleted: ``cache.db.bak-<time>`` with its
WAL files. Prompts, parameters, creation times and ratings come back from each PNG's metadata
chunk (a rating rewrites it); use counts and the exact LRU order are not kept in the files, so
creation order stands in for it. Every image is embedded again with the active embedder, in batches.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from dream_window.cache.db import DB_FILE
from dream_window.cache.embedders import ImageEmbedder
from dream_window.cache.images import ImageStore, pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.errors import CacheError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RebuildReport:
    indexed: int = 0
    unreadable: int = 0
    backup: Path | None = None


def move_db_aside(cache_dir: Path) -> Path | None:
    db = cache_dir / DB_FILE
    if not db.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    backup = db.with_name(f"{DB_FILE}.bak-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = db.with_name(DB_FILE + suffix)
            if src.exists():
                src.replace(backup.with_name(backup.name + suffix))
    except OSError as exc:
        raise CacheError(f"cannot move {db} aside: {exc.strerror or exc}") from exc
    return backup


def rebuild(
    cache_dir: Path,
    embedder: ImageEmbedder,
    *,
    max_size: int,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    cache_dir = Path(cache_dir)
    report = RebuildReport(backup=move_db_aside(cache_dir))
    store = ImageStore(cache_dir / "images")
    store.clean_temps()
    ids = sorted(store.ids())
    metas = {cid: store.read_meta(cid) for cid in ids}
    # Oldest first, so creation order becomes the LRU order.
    ids.sort(key=lambda c: str(metas[c].get("created_at", "")))
    manager = CacheManager(cache_dir, max_size=max(max_size, len(ids), 1), reconcile=False)
    try:
        for start in range(0, len(ids), batch_size):
            chunk: list[tuple[str, Image.Image]] = []
            for cid in ids[start : start + batch_size]:
                try:
                    img = store.load(cid)
                except CacheError as exc:
                    log.warning("set aside: %s", exc)
                    report.unreadable += 1
                    _quarantine(store, cid, cache_dir)
                    continue
                if pixel_hash(img) != cid:  # the file does not hold what its name promises
                    log.warning("set aside %s: its pixels do not match its name", store.path_for(cid))
                    report.unreadable += 1
                    _quarantine(store, cid, cache_dir)
                    continue
                chunk.append((cid, img))
            vectors: np.ndarray | list[np.ndarray] = (
                embedder.embed([img for _, img in chunk]) if chunk else []
            )
            for (cid, img), v in zip(chunk, vectors, strict=True):
                meta = metas[cid]
                params = meta.get("params")
                score = meta.get("score", 0)
                manager.add(
                    img,
                    cache_id=cid,
                    prompt=str(meta.get("prompt", "")),
                    params=params if isinstance(params, dict) else {},
                    embedding=v,
                    embedder=embedder.id,
                    score=score if score in (-1, 0, 1) else 0,
                    created_at=str(meta.get("created_at") or "") or None,
                )
                report.indexed += 1
            if progress is not None:
                progress(min(start + batch_size, len(ids)), len(ids))
        manager.max_size = max_size
        manager.evict_to(max_size)
    finally:
        with contextlib.suppress(CacheError):
            manager.close()
    return report


def _quarantine(store: ImageStore, cache_id: str, cache_dir: Path) -> None:
    """Move a bad image out of the store (the next reconcile would delete it) without destroying it."""
    dest = cache_dir / "quarantine"
    with contextlib.suppress(OSError):
        dest.mkdir(parents=True, exist_ok=True)
        store.path_for(cache_id).replace(dest / f"{cache_id}.png")
