"""One-time import of the seed design's ``cache_index.json`` (a migration path for old caches).

Format (see the seed's BACKEND_ARCHITECTURE.md)::

    {"version": "1.0", "entries": [{"cache_id": "cache_00001",
      "image_path": "cache/images/cache_00001.png", "prompt": "...",
      "generation_params": {...}, "embedding": [...], "timestamp": "2025-11-08T09:15:00"}, ...]}

Images are copied into the content-addressed store (the originals are left where they are), in
timestamp order so the oldest become the least recently used. Embeddings of the seed's model
(512-d ``openai/clip-vit-base-patch32``) are kept and tagged as such; others are re-embedded.
Afterwards the index is renamed ``cache_index.json.imported`` and the import recorded in the
database, so it never runs twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.cache.manager import CacheManager
from dream_window.errors import CacheError

log = logging.getLogger(__name__)

LEGACY_FILE = "cache_index.json"
SEED_EMBEDDER = "clip:openai/clip-vit-base-patch32"
SEED_DIM = 512


@dataclass(slots=True)
class LegacyReport:
    imported: int = 0
    missing_images: int = 0
    bad_entries: int = 0


def _find_image(raw: str, cache_dir: Path, base_dir: Path) -> Path | None:
    p = Path(raw).expanduser()
    candidates = [p] if p.is_absolute() else [base_dir / p, cache_dir.parent / p, cache_dir / p]
    candidates.append(cache_dir / "images" / p.name)
    return next((c for c in candidates if c.is_file()), None)


def import_legacy(manager: CacheManager, *, base_dir: Path) -> LegacyReport | None:
    """Import ``<cache_dir>/cache_index.json`` once. None when there is nothing to import."""
    index = manager.cache_dir / LEGACY_FILE
    if not index.is_file() or manager.get_meta("legacy_import") is not None:
        return None
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(
            f"cannot read the old cache index {index}: {exc} "
            f"(fix or move the file away to start a fresh cache)"
        ) from exc
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CacheError(f"old cache index {index} has no 'entries' list (move the file away to start fresh)")
    report = LegacyReport()
    ok: list[dict[str, Any]] = [
        e for e in entries if isinstance(e, dict) and isinstance(e.get("image_path"), str)
    ]
    report.bad_entries = len(entries) - len(ok)
    ok.sort(key=lambda e: str(e.get("timestamp", "")))
    for e in ok:
        path = _find_image(e["image_path"], manager.cache_dir, base_dir)
        if path is None:
            report.missing_images += 1
            continue
        try:
            with Image.open(path) as img:
                img.load()
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError):
            report.missing_images += 1
            continue
        emb = e.get("embedding")
        vec = None
        if isinstance(emb, list) and len(emb) == SEED_DIM:
            try:
                vec = np.asarray(emb, dtype=np.float32)
                vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
            except (TypeError, ValueError):
                vec = None
        params = e.get("generation_params")
        manager.add(
            image,
            prompt=str(e.get("prompt", "")),
            params=params if isinstance(params, dict) else {},
            embedding=vec,
            embedder=SEED_EMBEDDER if vec is not None else None,
            created_at=str(e.get("timestamp") or "") or None,
        )
        report.imported += 1
    manager.set_meta(
        "legacy_import",
        json.dumps(
            {"from": str(index), "imported": report.imported, "missing_images": report.missing_images}
        ),
    )
    try:
        index.replace(index.with_name(LEGACY_FILE + ".imported"))
    except OSError as exc:  # recorded in meta, so a rename failure cannot cause a second import
        log.warning("could not rename %s after importing it: %s", index, exc)
    log.info(
        "imported %d frame(s) from the old cache index %s (%d image(s) missing, %d bad entries)",
        report.imported,
        index,
        report.missing_images,
        report.bad_entries,
    )
    return report
