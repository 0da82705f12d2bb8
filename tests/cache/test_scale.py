"""The frame cache at 10⁵ entries (the seed design's "cache scalability" test): behaviour, not speed.

The rows are written straight into the cache's SQLite file (seeded vectors, no pictures to encode),
then the cache is opened as the dream opens it. Its search must return exactly what a brute-force
numpy computation returns, and eviction must follow the order of last *use*, which here differs
from the order of insertion.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream_window.cache import CachedFrameCache, CacheManager
from dream_window.cache.db import DB_FILE
from dream_window.cache.manager import embedding_to_blob
from dream_window.config import CacheConfig

N = 100_000
DIM = 64
SEED = 20260822


class SeededVectors:
    """The embedder of the rows written here: they come with their vectors, so it embeds nothing."""

    id = "seeded-64"
    label = "seeded vectors (test)"
    dim = DIM

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("every row already carries its embedding")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.normal(size=(n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _ids() -> list[str]:
    return [f"{i:064x}" for i in range(N)]  # shaped like the pixel hashes that name real entries


def _fill(cache_dir: Path, vectors: np.ndarray, scores: np.ndarray) -> None:
    """Schema by the manager itself (its migrations), then 10⁵ rows in one transaction; row i was
    added i-th (``last_used_seq`` i+1) and never used since."""
    CacheManager(cache_dir, max_size=N, reconcile=False).close()
    with sqlite3.connect(cache_dir / DB_FILE) as conn:
        conn.executemany(
            "INSERT INTO entries (cache_id, prompt, params, embedding, embedder, width, height, "
            "created_at, last_used_at, last_used_seq, use_count, score) "
            "VALUES (?, '', '{}', ?, ?, 64, 64, '2026-01-01T00:00:00+00:00', "
            "'2026-01-01T00:00:00+00:00', ?, 0, ?)",
            (
                (cid, embedding_to_blob(vectors[i]), SeededVectors.id, i + 1, int(scores[i]))
                for i, cid in enumerate(_ids())
            ),
        )
    conn.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[CacheManager, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    vectors = _unit(rng, N)
    scores = np.zeros(N, np.int8)
    marked = rng.choice(N, 2_300, replace=False)
    scores[marked[:2_000]] = -1  # disliked: never found unless asked for
    scores[marked[2_000:]] = 1  # liked: found as any other, evicted last
    _fill(tmp_path / "cache", vectors, scores)
    m = CacheManager(tmp_path / "cache", max_size=N, reconcile=False)
    try:
        yield m, vectors, scores
    finally:
        m.close()


async def test_search_over_a_hundred_thousand_entries_equals_brute_force(
    manager: tuple[CacheManager, np.ndarray, np.ndarray],
) -> None:
    mgr, vectors, scores = manager
    cache = CachedFrameCache(mgr, SeededVectors(), CacheConfig(), rng=random.Random(0))
    await cache.start()
    try:
        assert len(cache.matcher) == N and cache.describe()["size"] == N
        ids = _ids()
        targets = _unit(np.random.default_rng(SEED + 1), 12)
        for j, t in enumerate(targets):
            top_k = (1, 10, 100, 1_000)[j % 4]
            sims = vectors @ t  # float32, as the cache stores them
            eligible = np.where(scores < 0, -np.inf, sims)
            want = np.argsort(-eligible, kind="stable")[:top_k]
            got = cache.matcher.find_similar(t, threshold=-1.0, top_k=top_k)
            assert [cid for cid, _ in got] == [ids[i] for i in want], f"query {j}, top {top_k}"
            np.testing.assert_allclose([s for _, s in got], sims[want], rtol=1e-5, atol=1e-6)
            # A threshold cuts the same list where brute force says it ends.
            cut = float(sims[want[len(want) // 2]])
            kept = cache.matcher.find_similar(t, threshold=cut, top_k=top_k)
            assert [cid for cid, _ in kept] == [ids[i] for i in want if eligible[i] >= cut]
            # Disliked frames are found only when asked for.
            every = cache.matcher.find_similar(t, threshold=-1.0, top_k=top_k, include_disliked=True)
            assert [cid for cid, _ in every] == [ids[i] for i in np.argsort(-sims, kind="stable")[:top_k]]
    finally:
        await cache.close()


@pytest.mark.slow
def test_eviction_at_a_hundred_thousand_entries_follows_last_use_not_insertion(
    manager: tuple[CacheManager, np.ndarray, np.ndarray],
) -> None:
    mgr, _, scores = manager
    ids = _ids()
    rng = random.Random(SEED)
    # A thousand of the oldest entries are used again, in an order unrelated to their age: by
    # insertion (or creation) order they would go first, by last use they go last.
    used = rng.sample(range(10_000), 1_000)
    for i in used:
        mgr.touch(ids[i])
    # The model: insertion order, each use moves the entry to the young end; liked ones go last.
    moved = set(used)
    seq = [i for i in range(N) if i not in moved] + used
    order = [i for i in seq if scores[i] <= 0] + [i for i in seq if scores[i] > 0]
    assert order[:1_000] != list(range(1_000))  # use order differs from insertion order here
    # Pictures for a sample of entries, so that eviction is seen to remove files too.
    drop = 20_000
    with_files = [*rng.sample(order[:drop], 100), *rng.sample(order[drop:], 100)]
    for i in with_files:
        mgr.store.write(ids[i], b"not decoded here")

    evicted = mgr.evict_to(N - drop)

    assert evicted == [ids[i] for i in order[:drop]]  # least recently used first, exactly
    assert mgr.count() == N - drop
    assert not set(evicted) & {ids[i] for i in used}
    # Most recently used first: the used entries, in reverse order of use.
    assert [e.cache_id for e in mgr.get_all(limit=100)] == [ids[i] for i in reversed(used[-100:])]
    gone = set(evicted)
    for i in with_files:
        assert mgr.store.exists(ids[i]) is (ids[i] not in gone), ids[i]
