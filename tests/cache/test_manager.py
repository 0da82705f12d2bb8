"""CacheManager on a real SQLite file and real image files."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dream_window.cache import db
from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.errors import CacheError
from tests.cache.conftest import picture


def _vec(i: int, d: int = 8) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_add_get_persist_reload(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    img = picture(1)
    r = m.add(img, prompt="red dawn", params={"seed": 7}, embedding=_vec(1), embedder="features-v1")
    assert r.created and r.evicted == []
    cid = r.entry.cache_id
    assert cid == pixel_hash(img)
    assert r.entry.image_path.is_file()
    m.close()

    m2 = CacheManager(tmp_path, max_size=10)
    e = m2.get(cid)
    assert e is not None
    assert (e.prompt, e.generation_params, e.embedder, e.width, e.height) == (
        "red dawn",
        {"seed": 7},
        "features-v1",
        48,
        64,
    )
    np.testing.assert_array_equal(e.embedding, _vec(1))
    assert np.asarray(m2.load_image(cid)).tolist() == np.asarray(img).tolist()
    ids, matrix, scores = m2.load_embeddings("features-v1")
    assert ids == [cid] and matrix.dtype == np.float32 and matrix.shape == (1, 8) and scores.tolist() == [0]
    assert m2.load_embeddings("clip:other")[0] == []


def test_same_pixels_are_stored_once_and_refreshed(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    a = m.add(picture(1), prompt="x")
    m.add(picture(2))
    again = m.add(picture(1), prompt="ignored", score=1)
    assert not again.created and again.entry.cache_id == a.entry.cache_id
    assert again.entry.score == 1 and again.entry.prompt == "x"
    assert m.count() == 2
    assert m.get_all()[0].cache_id == a.entry.cache_id  # refreshed = most recently used


def test_true_lru_eviction_deletes_rows_and_files(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=3, fsync=False)
    ids = [m.add(picture(i)).entry.cache_id for i in range(3)]
    m.touch(ids[0])  # the oldest by creation is now the most recently used
    r = m.add(picture(3))
    assert r.evicted == [ids[1]], "FIFO would evict ids[0]; LRU evicts the least recently *used*"
    assert m.get(ids[1]) is None and not m.store.path_for(ids[1]).exists()
    assert [e.cache_id for e in m.get_all()] == [r.entry.cache_id, ids[0], ids[2]]
    assert m.get(ids[0]).use_count == 1  # type: ignore[union-attr]


def test_liked_frames_are_evicted_last(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=2, fsync=False)
    liked = m.add(picture(0)).entry.cache_id
    m.set_score(liked, 1)
    other = m.add(picture(1)).entry.cache_id
    m.touch(other)
    r = m.add(picture(2))
    assert r.evicted == [other]
    assert m.get(liked) is not None


def test_remove_random_and_prune_the_least_recently_used(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    ids = [m.add(picture(i)).entry.cache_id for i in range(5)]
    assert m.remove(ids[2]) and not m.remove(ids[2])
    assert not m.store.path_for(ids[2]).exists()
    picks = {m.get_random(random.Random(s)).cache_id for s in range(40)}  # type: ignore[union-attr]
    assert picks == set(ids) - {ids[2]}
    m.touch(ids[0])  # use order now 1, 3, 4, 0: oldest-added-first (FIFO) would evict ids[0]
    assert m.evict_to(2) == [ids[1], ids[3]]
    assert m.count() == 2 and sorted(m.store.ids()) == sorted([ids[4], ids[0]])
    assert CacheManager(tmp_path / "empty", max_size=1).get_random(random.Random(0)) is None


def test_set_score_validates(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    cid = m.add(picture(0)).entry.cache_id
    with pytest.raises(ValueError, match="score must be -1, 0 or 1, got 5"):
        m.set_score(cid, 5)


def test_migrations_are_recorded_and_not_reapplied(tmp_path: Path) -> None:
    CacheManager(tmp_path, max_size=1).close()
    conn = sqlite3.connect(tmp_path / db.DB_FILE)
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [v for v, _ in rows] == [v for v, _, _ in db.MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    c2 = db.connect(tmp_path / db.DB_FILE)
    assert db.migrate(c2, tmp_path / db.DB_FILE) == []
    c2.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    CacheManager(tmp_path, max_size=1).close()
    conn = sqlite3.connect(tmp_path / db.DB_FILE)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError, match=r"schema version 99, newer than this dream-window knows \(2\)"):
        CacheManager(tmp_path, max_size=1)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_database_names_file_and_fix(tmp_path: Path, damage: str) -> None:
    m = CacheManager(tmp_path, max_size=50, fsync=False)
    for i in range(30):
        m.add(picture(i, size=(8, 8)), prompt="p" * 200, embedding=_vec(i, 64), embedder="e")
    m.close()
    path = tmp_path / db.DB_FILE
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not sqlite" * 100)
    else:  # a valid header, pages overwritten in the middle
        path.write_bytes(data[:4096] + b"\xff" * (len(data) - 8192) + data[-4096:])
    with pytest.raises(CacheError) as info:
        m2 = CacheManager(tmp_path, max_size=50)
        m2.check()
        m2.load_embeddings("e")
    msg = str(info.value)
    assert str(path) in msg and "damaged" in msg and "dream-window cache rebuild" in msg


def test_reconcile_repairs_orphans_missing_images_and_temps(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    keep = m.add(picture(0)).entry.cache_id
    gone = m.add(picture(1)).entry.cache_id
    m.close()
    m.store.path_for(gone).unlink()  # a user deleted an image: the row must not outlive it
    orphan = "ab" + "0" * 30
    m.store.write(orphan, b"not really a png")
    temp = m.store.path_for(keep).parent / ".x.png.123.tmp"
    temp.write_bytes(b"half")
    foreign = m.store.root / "notes.txt"
    foreign.write_text("mine")

    m2 = CacheManager(tmp_path, max_size=10)
    r = m2.last_reconcile
    assert (r.temps_removed, r.rows_without_image, r.orphan_images) == (1, 1, 1)
    assert [e.cache_id for e in m2.get_all()] == [keep]
    assert sorted(m2.store.ids()) == [keep]
    assert foreign.exists(), "files not named like ours are left alone"
    assert not m2.reconcile()
