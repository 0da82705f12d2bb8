"""One-time import of the seed's cache_index.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dream_window.cache import open_cache
from dream_window.cache.images import pixel_hash
from dream_window.cache.legacy import SEED_EMBEDDER
from dream_window.errors import CacheError
from tests.cache.conftest import picture
from tests.conftest import fast_config


def _seed_cache(tmp_path: Path) -> list:  # type: ignore[type-arg]
    images = tmp_path / "cache" / "images"
    images.mkdir(parents=True)
    pics = [picture(i) for i in range(3)]
    for i, p in enumerate(pics):
        p.save(images / f"cache_{i:05d}.png")
    emb = np.random.default_rng(0).normal(size=512)
    entries = [
        {
            "cache_id": "cache_00002",
            "image_path": "cache/images/cache_00002.png",
            "prompt": "third",
            "generation_params": {"steps": 4},
            "embedding": None,
            "timestamp": "2025-11-08T09:17:00",
        },
        {
            "cache_id": "cache_00000",
            "image_path": "cache/images/cache_00000.png",
            "prompt": "first",
            "generation_params": {"steps": 4, "denoise": 0.4},
            "embedding": emb.tolist(),
            "timestamp": "2025-11-08T09:15:00",
        },
        {
            "cache_id": "cache_00001",
            "image_path": "/nowhere/cache_00001.png",
            "prompt": "second",
            "generation_params": {},
            "embedding": [0.1, 0.2],
            "timestamp": "2025-11-08T09:16:00",
        },
        {
            "cache_id": "cache_00009",
            "image_path": "cache/images/gone.png",
            "prompt": "missing",
            "generation_params": {},
            "embedding": None,
            "timestamp": "2025-11-08T09:18:00",
        },
        "not an entry",
    ]
    (tmp_path / "cache" / "cache_index.json").write_text(
        json.dumps(
            {"version": "1.0", "last_updated": "2025-11-08T10:30:00", "entry_count": 5, "entries": entries}
        ),
        encoding="utf-8",
    )
    return pics


def test_seed_index_is_imported_once(tmp_path: Path) -> None:
    pics = _seed_cache(tmp_path)
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True}})
    m = open_cache(cfg)
    entries = m.get_all()
    # Found by relative path and by file name in cache/images; the missing one is skipped.
    assert [e.prompt for e in entries] == ["third", "second", "first"]  # timestamp order → LRU order
    first = m.get(pixel_hash(pics[0]))
    assert first is not None and first.embedder == SEED_EMBEDDER and first.embedding is not None
    assert first.embedding.shape == (512,) and abs(float(np.linalg.norm(first.embedding)) - 1) < 1e-5
    assert (
        first.generation_params == {"steps": 4, "denoise": 0.4} and first.timestamp == "2025-11-08T09:15:00"
    )
    second = m.get(pixel_hash(pics[1]))
    assert second is not None and second.embedding is None  # a 2-d vector is not the seed's CLIP: re-embed
    record = json.loads(m.get_meta("legacy_import") or "{}")
    assert (record["imported"], record["missing_images"]) == (3, 1)
    m.close()
    index = tmp_path / "cache" / "cache_index.json"
    assert not index.exists() and index.with_name("cache_index.json.imported").exists()
    assert (tmp_path / "cache" / "images" / "cache_00000.png").exists(), "originals are left in place"


def test_a_second_start_does_not_import_the_seed_index_again(tmp_path: Path) -> None:
    _seed_cache(tmp_path)
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True}})
    m = open_cache(cfg)
    m.touch(m.get_all()[-1].cache_id)  # "first" is used: now the most recently used
    before = [(e.cache_id, e.last_used_seq, e.last_used_at, e.use_count) for e in m.get_all()]
    record = m.get_meta("legacy_import")
    m.close()
    # The old index is put back (a user restoring a backup): it is recorded as imported, so it is
    # neither read nor renamed again.
    index = tmp_path / "cache" / "cache_index.json"
    index.with_name("cache_index.json.imported").rename(index)
    m2 = open_cache(cfg)
    # The same pixels imported again would refresh each row's use time (in timestamp order, undoing
    # the use above) without adding a row: the count alone cannot tell.
    assert [(e.cache_id, e.last_used_seq, e.last_used_at, e.use_count) for e in m2.get_all()] == before
    assert [e.prompt for e in m2.get_all()] == ["first", "third", "second"]
    assert m2.get_meta("legacy_import") == record
    m2.close()
    assert index.exists() and not index.with_name("cache_index.json.imported").exists()


def test_unreadable_seed_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cache_index.json").write_text("{not json", encoding="utf-8")
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True}})
    with pytest.raises(CacheError, match=r"cannot read the old cache index .*cache_index.json"):
        open_cache(cfg)
