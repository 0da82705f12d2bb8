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


def _clock(*stamps: str):  # type: ignore[no-untyped-def]
    """An injected ``now`` that hands out ``stamps`` in order, then repeats the last one."""
    left = list(stamps)

    def now() -> str:
        return left.pop(0) if len(left) > 1 else left[0]

    return now


def test_to_dict_is_the_seed_index_entry_with_embeddings_rounded_to_six_places(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False, now=_clock("2026-01-02T03:04:05+00:00"))
    v = np.array([0.12345678, -0.5, 1 / 3], dtype=np.float32)
    with_vec = m.add(picture(0), prompt="dawn", params={"seed": 3}, embedding=v, embedder="e", score=1)
    bare = m.add(picture(1), prompt="dusk")
    cid = with_vec.entry.cache_id
    assert with_vec.entry.to_dict() == {
        "cache_id": cid,
        "image_path": str(m.store.path_for(cid)),
        "prompt": "dawn",
        "generation_params": {"seed": 3},
        "embedding": [0.123457, -0.5, 0.333333],
        "timestamp": "2026-01-02T03:04:05+00:00",
        "score": 1,
    }
    assert bare.entry.to_dict()["embedding"] is None


def test_meta_values_round_trip_and_a_missing_key_reads_none(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    assert m.get_meta("clip_model") is None
    m.set_meta("clip_model", "openai/clip")
    m.set_meta("clip_model", "tiny")  # a second value replaces the first
    m.set_meta("other", "x")
    assert (m.get_meta("clip_model"), m.get_meta("other"), m.get_meta("missing")) == ("tiny", "x", None)
    m.close()
    assert CacheManager(tmp_path, max_size=10).get_meta("clip_model") == "tiny"


def test_schema_version_is_the_highest_recorded_migration(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    assert m.schema_version() == max(v for v, _, _ in db.MIGRATIONS) == 2
    other = sqlite3.connect(tmp_path / db.DB_FILE)
    other.execute("INSERT INTO schema_migrations VALUES (7, 'later', 'x')")
    other.commit()
    assert m.schema_version() == 7  # read from the table as it is now, not remembered
    other.execute("DELETE FROM schema_migrations")
    other.commit()
    other.close()
    assert m.schema_version() == 0


def test_score_and_embedder_counts_group_the_entries(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    m.add(picture(0), score=1)
    m.add(picture(1), score=-1, embedding=_vec(1), embedder="clip:x")
    m.add(picture(2), embedding=_vec(2), embedder="features-v1")
    m.add(picture(3), embedding=_vec(3), embedder="features-v1")
    m.add(picture(4), embedder="ignored without an embedding")
    assert m.score_counts() == {1: 1, -1: 1, 0: 3}
    assert m.embedder_counts() == {"none": 2, "clip:x": 1, "features-v1": 2}


def test_set_score_accepts_each_rating_and_keeps_it_in_the_png(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False, now=_clock("2026-01-01T00:00:00+00:00"))
    cid = m.add(picture(0), prompt="kept", params={"seed": 1}).entry.cache_id
    for score in (1, 0, -1, 0):
        assert m.set_score(cid, score) is True
        assert m.get(cid).score == score  # type: ignore[union-attr]
        # A rebuild reads ratings from the PNGs: the rest of the metadata must survive the rewrite.
        assert m.store.read_meta(cid) == {
            "prompt": "kept",
            "params": {"seed": 1},
            "created_at": "2026-01-01T00:00:00+00:00",
            "score": score,
        }
    assert np.asarray(m.load_image(cid)).tolist() == np.asarray(picture(0)).tolist()


def test_set_score_of_an_unknown_frame_is_false_and_writes_nothing(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    m.add(picture(0))
    unknown = "cd" + "0" * 30
    assert m.set_score(unknown, 1) is False
    assert not m.store.exists(unknown) and m.count() == 1


def test_rating_a_frame_with_the_score_it_has_does_not_rewrite_its_png(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    liked = m.add(picture(0), score=1).entry.cache_id
    plain = m.add(picture(1)).entry.cache_id
    # A PNG without our metadata (an older or hand-copied file) counts as unrated, score 0.
    path = m.store.path_for(plain)
    picture(1).save(path)

    def stamp(cid: str) -> tuple[int, int]:
        st = m.store.path_for(cid).stat()
        return st.st_ino, st.st_mtime_ns

    before = {cid: stamp(cid) for cid in (liked, plain)}
    assert m.set_score(liked, 1) and m.set_score(plain, 0)
    assert {cid: stamp(cid) for cid in (liked, plain)} == before
    assert m.store.read_meta(plain) == {}


def test_set_embedding_replaces_the_stored_vector_and_its_embedder(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    cid = m.add(picture(0), embedding=_vec(0), embedder="features-v1").entry.cache_id
    m.set_embedding(cid, _vec(5, 4), "clip:x")
    e = m.get(cid)
    assert e is not None and e.embedder == "clip:x"
    np.testing.assert_array_equal(e.embedding, _vec(5, 4))
    ids, matrix, _ = m.load_embeddings("clip:x")
    assert ids == [cid] and matrix.shape == (1, 4)


def test_ids_without_embedding_lists_other_embedders_most_recent_first_64_by_default(
    tmp_path: Path,
) -> None:
    m = CacheManager(tmp_path, max_size=100, fsync=False)
    done = m.add(picture(0, size=(4, 4)), embedding=_vec(0), embedder="clip:x").entry.cache_id
    ids = [m.add(picture(i, size=(4, 4))).entry.cache_id for i in range(1, 67)]
    stale = m.add(picture(99, size=(4, 4)), embedding=_vec(1), embedder="features-v1").entry.cache_id
    todo = m.ids_without_embedding("clip:x")
    assert len(todo) == 64 and done not in todo
    assert todo == [stale, *reversed(ids)][:64]
    assert m.ids_without_embedding("clip:x", limit=2) == [stale, ids[-1]]


def test_check_names_the_damaged_database_file(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=50, fsync=False)
    for i in range(30):
        m.add(picture(i, size=(8, 8)), prompt="p" * 200)
    m.close()
    path = tmp_path / db.DB_FILE
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries_eviction'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size : root * page_size] = b"\xff" * page_size  # only the LRU index page
    path.write_bytes(bytes(data))
    m2 = CacheManager(tmp_path, max_size=50, reconcile=False)  # it opens: the damage is further in
    with pytest.raises(CacheError) as info:
        m2.check()
    assert str(path) in str(info.value) and "damaged" in str(info.value)
    m2.close()


def test_evict_to_commits_the_deletions_before_unlinking_any_image(tmp_path: Path) -> None:
    ids = [pixel_hash(picture(i)) for i in range(4)]
    steps: list[tuple[str, int, bool]] = []
    m = CacheManager(
        tmp_path,
        max_size=10,
        fsync=False,
        checkpoint=lambda step: steps.append((step, m.count(), m.store.exists(ids[0]))),
    )
    for i in range(4):
        m.add(picture(i))
    steps.clear()
    assert m.evict_to(2) == ids[:2]
    # A crash at "committed" leaves orphan images (repaired at the next start), never rows without one.
    assert steps == [("committed", 2, True), ("image-unlinked-0", 2, False), ("image-unlinked-1", 2, False)]


def test_add_with_a_given_id_and_creation_time_keeps_both_and_stamps_the_use_now(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False, now=_clock("2026-05-05T05:05:05+00:00"))
    img = picture(0).convert("RGBA")  # stored as RGB whatever comes in
    r = m.add(img, prompt="old", params={"seed": 4}, cache_id="ef" * 16, created_at="2020-01-01")
    e = m.get("ef" * 16)
    assert r.created and e is not None
    assert (e.timestamp, e.last_used_at, e.use_count, e.generation_params) == (
        "2020-01-01",
        "2026-05-05T05:05:05+00:00",
        0,
        {"seed": 4},
    )
    assert m.store.read_meta("ef" * 16)["created_at"] == "2020-01-01"
    assert m.load_image("ef" * 16).mode == "RGB"


def test_adding_the_same_pixels_replaces_the_embedding_only_when_one_is_given(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    cid = m.add(picture(0), embedding=_vec(0), embedder="features-v1", score=-1).entry.cache_id
    kept = m.add(picture(0), embedder="clip:x").entry  # no embedding: nothing about it changes
    assert (kept.embedder, kept.score) == ("features-v1", -1)
    np.testing.assert_array_equal(kept.embedding, _vec(0))
    new = m.add(picture(0), embedding=_vec(1, 4), embedder="clip:x").entry
    assert (new.cache_id, new.embedder, new.score) == (cid, "clip:x", -1)
    np.testing.assert_array_equal(new.embedding, _vec(1, 4))
    assert m.store.read_meta(cid)["score"] == -1


def test_an_add_whose_commit_fails_leaves_neither_row_nor_image(tmp_path: Path) -> None:
    def fail_after_insert(step: str) -> None:
        if step == "row-inserted":
            raise CacheError("disk full")

    m = CacheManager(tmp_path, max_size=10, fsync=False, checkpoint=fail_after_insert)
    with pytest.raises(CacheError, match="disk full"):
        m.add(picture(0))
    assert m.count() == 0 and list(m.store.ids()) == []


def test_a_row_whose_image_vanished_is_written_again_by_the_next_add(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    cid = m.add(picture(0), prompt="first").entry.cache_id
    m.store.path_for(cid).unlink()
    r = m.add(picture(0), prompt="second")
    assert r.created and r.evicted == [] and m.count() == 1
    assert np.asarray(m.load_image(cid)).tolist() == np.asarray(picture(0)).tolist()
    assert r.entry.prompt == "second"


def test_the_frame_just_added_is_never_its_own_eviction_victim(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=1, fsync=False)
    liked = m.add(picture(0), score=1).entry.cache_id
    r = m.add(picture(1))  # unrated sorts before liked, but it is the frame being cached
    assert r.evicted == [liked] and [e.cache_id for e in m.get_all()] == [r.entry.cache_id]


def test_params_that_are_not_a_json_object_read_back_empty(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    a = m.add(picture(0), params={"seed": 1}).entry.cache_id
    b = m.add(picture(1), params={"seed": 2}).entry.cache_id
    conn = sqlite3.connect(tmp_path / db.DB_FILE)
    conn.execute("UPDATE entries SET params = 'not json' WHERE cache_id = ?", (a,))
    conn.execute("UPDATE entries SET params = '[1, 2]' WHERE cache_id = ?", (b,))
    conn.commit()
    conn.close()
    assert m.get(a).generation_params == {} and m.get(b).generation_params == {}  # type: ignore[union-attr]


def test_load_embeddings_refuses_vectors_of_mixed_sizes(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    m.add(picture(0), embedding=_vec(0, 8), embedder="e")
    m.add(picture(1), embedding=_vec(1, 4), embedder="e")
    with pytest.raises(CacheError, match=r"embeddings of e have mixed sizes \[16, 32\]"):
        m.load_embeddings("e")


def test_get_all_returns_the_most_recently_used_first_up_to_the_limit(tmp_path: Path) -> None:
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    ids = [m.add(picture(i)).entry.cache_id for i in range(4)]
    m.touch(ids[1])
    assert [e.cache_id for e in m.get_all(limit=2)] == [ids[1], ids[3]]
    assert [e.cache_id for e in m.get_all()] == [ids[1], ids[3], ids[2], ids[0]]


def test_params_json_has_no_type_for_are_kept_as_their_text(tmp_path: Path) -> None:
    # A Path or a numpy int in a frame's params once failed the PNG's metadata with a TypeError,
    # before the row was written: the frame cache worker lost the frame.
    m = CacheManager(tmp_path, max_size=10, fsync=False)
    try:
        r = m.add(picture(2), prompt="p", params={"seed": np.int64(9), "file": Path("a/b.png")})
        e = m.get(r.entry.cache_id)
        assert e is not None and e.generation_params == {"seed": "9", "file": str(Path("a/b.png"))}
        meta = m.store.read_meta(r.entry.cache_id)
        assert meta["params"] == {"seed": "9", "file": str(Path("a/b.png"))}
    finally:
        m.close()
