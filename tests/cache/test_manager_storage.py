"""CacheManager: how embeddings are stored and read back, what use tracking records, and what the
images on disk keep for a rebuild."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dream_window.cache.embedders import FeatureEmbedder
from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.cache.rebuild import rebuild
from dream_window.errors import CacheError
from tests.cache.conftest import BLUE, GREEN, RED, picture


def test_an_embedding_given_as_float64_is_stored_as_float32_and_reads_back_the_same(tmp_path: Path) -> None:
    # A legacy index parsed from JSON, or numpy arithmetic, hands over float64 vectors.
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    v = np.array([0.5, -0.25, 0.125, 1.0 / 3.0])  # float64
    cid = m.add(picture(0), embedding=v, embedder="features-v1").entry.cache_id
    m.close()
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    entry = m.get(cid)
    assert entry is not None and entry.embedding is not None
    assert entry.embedding.dtype == np.float32
    np.testing.assert_array_equal(entry.embedding, v.astype(np.float32))
    ids, matrix, _scores = m.load_embeddings("features-v1")
    assert ids == [cid]
    np.testing.assert_array_equal(matrix, v.astype(np.float32)[None, :])
    m.close()


def test_load_embeddings_returns_float32_rows_and_int8_scores_empty_or_not(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    ids, matrix, scores = m.load_embeddings("features-v1")
    assert ids == [] and matrix.shape[0] == 0 and scores.shape == (0,)
    assert (matrix.dtype, scores.dtype) == (np.float32, np.int8)
    liked = m.add(picture(1, hue=RED), embedding=np.ones(3), embedder="features-v1", score=1).entry.cache_id
    disliked = m.add(
        picture(2, hue=BLUE), embedding=np.zeros(3), embedder="features-v1", score=-1
    ).entry.cache_id
    m.add(picture(3, hue=GREEN), embedding=np.ones(5), embedder="clip:other")  # another embedder: not read
    ids, matrix, scores = m.load_embeddings("features-v1")
    assert (matrix.dtype, matrix.shape, scores.dtype) == (np.float32, (2, 3), np.int8)
    assert dict(zip(ids, scores.tolist(), strict=True)) == {liked: 1, disliked: -1}
    m.close()


def test_embeddings_of_one_embedder_with_mixed_sizes_name_the_damaged_database(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    m.add(picture(1, hue=RED), embedding=np.ones(3), embedder="features-v1")
    m.add(picture(2, hue=BLUE), embedding=np.ones(4), embedder="features-v1")
    with pytest.raises(CacheError) as info:
        m.load_embeddings("features-v1")
    message = str(info.value)
    assert message.startswith(f"cache database {m.db_path} is damaged (")
    assert "embeddings of features-v1 have mixed sizes [12, 16]" in message
    m.close()


def test_each_use_moves_an_entry_to_the_young_end_in_order(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    a, b, c = (m.add(picture(i, hue=h)).entry.cache_id for i, h in enumerate((RED, BLUE, GREEN)))
    m.touch(a)
    seq = {e.cache_id: e.last_used_seq for e in m.get_all()}
    assert seq[b] < seq[c] < seq[a]
    assert [e.cache_id for e in m.get_all()] == [a, c, b]
    m.close()


def test_times_are_recorded_in_utc_to_the_second(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    entry = m.add(picture(0)).entry
    for stamp in (entry.timestamp, entry.last_used_at):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stamp), stamp
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
    m.close()


def test_a_rebuild_from_the_images_keeps_prompts_params_and_ratings_given_later(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    plain = m.add(picture(1, hue=RED)).entry.cache_id  # no prompt, never rated
    liked_img = picture(2, hue=BLUE)
    liked = m.add(liked_img, prompt="blue hour", params={"seed": 5}).entry.cache_id
    m.add(liked_img, score=1)  # rated when shown again: the same pixels, now liked
    disliked_img = picture(3, hue=GREEN)
    disliked = m.add(disliked_img, prompt="green").entry.cache_id
    m.add(disliked_img, score=-1)
    m.close()

    report = rebuild(tmp_path, FeatureEmbedder(), max_size=10)
    assert report.indexed == 3 and report.unreadable == 0
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    entries = {e.cache_id: e for e in m.get_all()}
    got = {cid: (e.prompt, e.generation_params, e.score) for cid, e in entries.items()}
    assert got == {plain: ("", {}, 0), liked: ("blue hour", {"seed": 5}, 1), disliked: ("green", {}, -1)}
    m.close()


def test_an_add_writes_the_image_before_its_row_and_commits_evictions_before_unlinking(
    tmp_path: Path,
) -> None:
    # The crash-safety rule, watched from another connection (what a process opening the cache
    # after a kill would find) at each point where a kill matters.
    m: CacheManager | None = None
    seen: list[tuple[str, bool, bool, bool, bool]] = []
    old_id = new_id = ""

    def committed(cid: str) -> bool:
        assert m is not None
        reader = sqlite3.connect(m.db_path)
        try:
            return reader.execute("SELECT 1 FROM entries WHERE cache_id = ?", (cid,)).fetchone() is not None
        finally:
            reader.close()

    def checkpoint(step: str) -> None:
        assert m is not None
        if new_id:
            files = (m.store.exists(new_id), m.store.exists(old_id))
            seen.append((step, files[0], committed(new_id), files[1], committed(old_id)))

    m = CacheManager(tmp_path, max_size=1, fsync=False, checkpoint=checkpoint)
    old_id = m.add(picture(1, hue=RED)).entry.cache_id  # not watched: new_id is still ""
    new_img = picture(2, hue=BLUE)
    new_id = pixel_hash(new_img)
    assert m.add(new_img).evicted == [old_id]
    # (step, new image on disk, new row committed, old image on disk, old row committed)
    assert seen == [
        ("image-written", True, False, True, True),
        ("row-inserted", True, False, True, True),
        ("rows-evicted", True, False, True, True),
        ("committed", True, True, True, False),
        ("image-unlinked-0", True, True, False, False),
    ]
    m.close()
