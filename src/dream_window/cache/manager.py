"""CacheManager: the frame cache's index (SQLite) and images (content-addressed PNGs).

Blocking on purpose: the async CachedFrameCache calls it from worker threads, the CLI directly.
One lock serialises use of the connection, so any thread may call any method.

Crash safety (a process killed at any instant) rests on one ordering rule:

* **add**: the image file is written first (atomically), then the row is committed;
* **evict/remove**: the row is deleted and committed first, then the file is unlinked.

So a kill can leave only an *orphan image* (a file with no row) or a stale temp file, never a row
without its image, and :meth:`reconcile` (run at every open) removes both. It also drops rows
whose image vanished for any other reason (a user deleting files), so the index never points
at nothing.

Eviction is true LRU by last *use* (added, injected or rated), not by creation time as in the
seed's design, with one exception: liked frames are evicted only when nothing else is left.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dream_window.cache import db
from dream_window.cache.images import ImageStore, encode, pixel_hash, rgb
from dream_window.cache.repair import ReconcileReport, reconcile
from dream_window.errors import CacheError

log = logging.getLogger(__name__)

# Called with a step name at each point where a crash would matter; tests use it to kill the
# process at exactly that point.
Checkpoint = Callable[[str], None]

_COLUMNS = (
    "cache_id, prompt, params, embedding, embedder, width, height, created_at, last_used_at, "
    "last_used_seq, use_count, score"
)


@dataclass(slots=True)
class CacheEntry:
    """One cached frame (the seed's CacheEntry, plus use tracking and a rating)."""

    cache_id: str
    image_path: Path
    prompt: str
    generation_params: dict[str, Any]
    embedding: np.ndarray | None
    embedder: str | None
    width: int
    height: int
    timestamp: str  # created_at, ISO 8601
    last_used_at: str
    last_used_seq: int
    use_count: int = 0
    score: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The seed's cache_index.json entry (what ``cache export`` writes)."""
        return {
            "cache_id": self.cache_id,
            "image_path": str(self.image_path),
            "prompt": self.prompt,
            "generation_params": self.generation_params,
            "embedding": None if self.embedding is None else [round(float(x), 6) for x in self.embedding],
            "timestamp": self.timestamp,
            "score": self.score,
        }


@dataclass(slots=True)
class AddResult:
    entry: CacheEntry
    created: bool  # False when the same pixels were already cached (the entry was refreshed)
    evicted: list[str] = field(default_factory=list)


def embedding_to_blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def blob_to_embedding(b: bytes | None) -> np.ndarray | None:
    return None if b is None else np.frombuffer(b, dtype="<f4").astype(np.float32)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CacheManager:
    def __init__(
        self,
        cache_dir: Path,
        *,
        max_size: int,
        now: Callable[[], str] = _now,
        reconcile: bool = True,
        checkpoint: Checkpoint | None = None,
        fsync: bool = True,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.db_path = self.cache_dir / db.DB_FILE
        self.store = ImageStore(self.cache_dir / "images", fsync=fsync)
        self.max_size = max_size
        self._now = now
        self._checkpoint = checkpoint or (lambda _step: None)
        self._lock = threading.RLock()
        self._conn = db.connect(self.db_path)
        self.last_reconcile = ReconcileReport()
        if reconcile:
            self.last_reconcile = self.reconcile()

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise db.map_error(self.db_path, exc) from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")  # where a full disk shows in WAL mode: the WAL cannot grow
            except BaseException:
                db.rollback(conn)
                raise

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise db.map_error(self.db_path, exc) from exc

    def _entry(self, row: tuple[Any, ...]) -> CacheEntry:
        cid, prompt, params, emb, embedder, w, h, created, used_at, seq, uses, score = row
        try:
            gp = json.loads(params)
        except ValueError:
            gp = {}
        return CacheEntry(
            cid,
            self.store.path_for(cid),
            prompt,
            gp if isinstance(gp, dict) else {},
            blob_to_embedding(emb),
            embedder,
            w,
            h,
            created,
            used_at,
            seq,
            uses,
            score,
        )

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(last_used_seq), 0) + 1 FROM entries").fetchone()[0])

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._db() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def schema_version(self) -> int:
        with self._db() as conn:
            versions = db.applied_versions(conn)
        return versions[-1] if versions else 0

    def check(self) -> None:
        """SQLite's integrity check; CacheError naming the fix when it fails."""
        with self._lock:
            db.quick_check(self._conn, self.db_path)

    # --- CRUD -------------------------------------------------------------------------------

    def add(
        self,
        image: Image.Image,
        *,
        prompt: str = "",
        params: dict[str, Any] | None = None,
        embedding: np.ndarray | None = None,
        embedder: str | None = None,
        score: int | None = None,
        created_at: str | None = None,
        cache_id: str | None = None,
    ) -> AddResult:
        """Store ``image`` (image first, then row), then evict down to ``max_size``.

        The same pixels added again refresh the existing entry (its use time, and its score or
        embedding when given) instead of storing a copy.
        """
        img = rgb(image)
        cid = cache_id or pixel_hash(img)
        params = params or {}
        now = self._now()
        existing = self.get(cid)
        if existing is not None and self.store.exists(cid):
            with self._tx() as conn:
                conn.execute(
                    "UPDATE entries SET last_used_at = ?, last_used_seq = ?, "
                    "score = COALESCE(?, score), embedding = COALESCE(?, embedding), "
                    "embedder = COALESCE(?, embedder) WHERE cache_id = ?",
                    (
                        now,
                        self._next_seq(conn),
                        score,
                        None if embedding is None else embedding_to_blob(embedding),
                        None if embedding is None else embedder,
                        cid,
                    ),
                )
            if score is not None and score != existing.score:
                self._persist_score(cid, score)
            entry = self.get(cid)
            assert entry is not None
            return AddResult(entry, created=False)

        created_at = created_at or now
        meta = {"prompt": prompt, "params": params, "created_at": created_at, "score": score or 0}
        self.store.write(cid, encode(img, meta))
        self._checkpoint("image-written")
        try:
            with self._tx() as conn:
                conn.execute(
                    f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (
                        cid,
                        prompt,
                        json.dumps(params, default=str),
                        None if embedding is None else embedding_to_blob(embedding),
                        None if embedding is None else embedder,
                        img.width,
                        img.height,
                        created_at,
                        now,
                        self._next_seq(conn),
                        score or 0,
                    ),
                )
                self._checkpoint("row-inserted")
                evicted = self._select_evictions(conn, self.max_size, protect=cid)
                conn.executemany("DELETE FROM entries WHERE cache_id = ?", [(e,) for e in evicted])
                self._checkpoint("rows-evicted")
        except CacheError:
            # No row names the new image: remove it now rather than at the next start, which also
            # gives a full disk some of its space back.
            if existing is None:
                self.store.delete(cid)
            raise
        self._checkpoint("committed")
        self._unlink(evicted)
        entry = self.get(cid)
        assert entry is not None
        return AddResult(entry, created=True, evicted=evicted)

    def _select_evictions(
        self, conn: sqlite3.Connection, keep: int, *, protect: str | None = None
    ) -> list[str]:
        n = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        if n <= keep:
            return []
        rows = conn.execute(
            "SELECT cache_id FROM entries WHERE cache_id != ? ORDER BY (score > 0), last_used_seq LIMIT ?",
            (protect or "", n - keep),
        ).fetchall()
        return [r[0] for r in rows]

    def _unlink(self, ids: list[str]) -> None:
        for i, cid in enumerate(ids):
            self.store.delete(cid)
            self._checkpoint(f"image-unlinked-{i}")

    def evict_to(self, keep: int) -> list[str]:
        """Remove least recently used entries until at most ``keep`` remain; returns their ids."""
        with self._tx() as conn:
            evicted = self._select_evictions(conn, keep)
            conn.executemany("DELETE FROM entries WHERE cache_id = ?", [(e,) for e in evicted])
        self._checkpoint("committed")
        self._unlink(evicted)
        return evicted

    def remove(self, cache_id: str) -> bool:
        with self._tx() as conn:
            gone = conn.execute("DELETE FROM entries WHERE cache_id = ?", (cache_id,)).rowcount > 0
        self.store.delete(cache_id)
        return gone

    def get(self, cache_id: str) -> CacheEntry | None:
        with self._db() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE cache_id = ?", (cache_id,)).fetchone()
        return None if row is None else self._entry(row)

    def get_all(self, *, limit: int | None = None) -> list[CacheEntry]:
        """Entries, most recently used first."""
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM entries ORDER BY last_used_seq DESC LIMIT ?", (limit or -1,)
            ).fetchall()
        return [self._entry(r) for r in rows]

    def get_random(self, rng: random.Random) -> CacheEntry | None:
        with self._db() as conn:
            n = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            if n == 0:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM entries ORDER BY rowid LIMIT 1 OFFSET ?", (rng.randrange(n),)
            ).fetchone()
        return self._entry(row)

    def count(self) -> int:
        with self._db() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def touch(self, cache_id: str) -> None:
        """Mark a use (an injection): moves the entry to the young end of the LRU order."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE entries SET last_used_at = ?, last_used_seq = ?, use_count = use_count + 1 "
                "WHERE cache_id = ?",
                (self._now(), self._next_seq(conn), cache_id),
            )

    def set_score(self, cache_id: str, score: int) -> bool:
        if score not in (-1, 0, 1):
            raise ValueError(f"score must be -1, 0 or 1, got {score}")
        with self._tx() as conn:
            found = (
                conn.execute(
                    "UPDATE entries SET score = ?, last_used_at = ?, last_used_seq = ? WHERE cache_id = ?",
                    (score, self._now(), self._next_seq(conn), cache_id),
                ).rowcount
                > 0
            )
        if found:
            self._persist_score(cache_id, score)
        return found

    def _persist_score(self, cache_id: str, score: int) -> None:
        # Ratings are rare and precious: keep them in the PNG too, so a rebuild does not lose them.
        meta = self.store.read_meta(cache_id)
        if meta.get("score", 0) != score:
            meta["score"] = score
            self.store.write(cache_id, encode(self.store.load(cache_id), meta))

    def set_embedding(self, cache_id: str, embedding: np.ndarray, embedder: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE entries SET embedding = ?, embedder = ? WHERE cache_id = ?",
                (embedding_to_blob(embedding), embedder, cache_id),
            )

    def load_image(self, cache_id: str) -> Image.Image:
        return self.store.load(cache_id)

    # --- bulk reads for the matcher ---------------------------------------------------------

    def load_embeddings(self, embedder: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, float32 matrix [n, d], scores int8 [n]) for every entry embedded by ``embedder``.

        One query and one ``frombuffer`` over the joined blobs: no per-row numpy work.
        """
        with self._db() as conn:
            rows = conn.execute(
                "SELECT cache_id, embedding, score FROM entries WHERE embedder = ? AND embedding IS NOT NULL",
                (embedder,),
            ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32), np.zeros(0, np.int8)
        ids, blobs, scores = zip(*rows, strict=True)
        dims = {len(b) for b in blobs}
        if len(dims) != 1:
            raise db.damaged(self.db_path, f"embeddings of {embedder} have mixed sizes {sorted(dims)}")
        d = dims.pop() // 4
        matrix = (
            np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), d).astype(np.float32, copy=False)
        )
        return list(ids), matrix, np.asarray(scores, dtype=np.int8)

    def ids_without_embedding(self, embedder: str, *, limit: int = 64) -> list[str]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT cache_id FROM entries WHERE embedder IS NOT ? OR embedding IS NULL "
                "ORDER BY last_used_seq DESC LIMIT ?",
                (embedder, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def embedder_counts(self) -> dict[str, int]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT COALESCE(embedder, 'none'), COUNT(*) FROM entries GROUP BY 1"
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def score_counts(self) -> dict[int, int]:
        with self._db() as conn:
            rows = conn.execute("SELECT score, COUNT(*) FROM entries GROUP BY score").fetchall()
        return {int(k): int(v) for k, v in rows}

    # --- repair -----------------------------------------------------------------------------

    def row_ids(self) -> set[str]:
        with self._db() as conn:
            return {r[0] for r in conn.execute("SELECT cache_id FROM entries")}

    def delete_rows(self, cache_ids: list[str]) -> None:
        """Rows only (their images are already gone): the repair pass's half of a removal."""
        with self._tx() as conn:
            conn.executemany("DELETE FROM entries WHERE cache_id = ?", [(c,) for c in cache_ids])

    def reconcile(self) -> ReconcileReport:
        """Make rows and files agree after a crash (see :mod:`.repair`)."""
        return reconcile(self)
