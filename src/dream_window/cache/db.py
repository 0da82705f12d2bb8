"""The cache's SQLite file: opening it (WAL), migrating it, and mapping sqlite3 errors to ours.

Migrations are an ordered list applied in order, each in its own transaction together with the
row that records it in ``schema_migrations``; a database written by a newer Dream Window (a
version we do not know) is refused rather than guessed at.

Only SQLite's own verdicts of damage (a malformed image, not a database, a broken constraint) are
called damaged, with the rebuild hint; a full disk (SQLITE_FULL: the WAL cannot grow) or an I/O
error is a condition of the disk, and saying "rebuild" for it would be wrong advice.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dream_window.errors import CacheError

DB_FILE = "cache.db"
REBUILD_HINT = "run `dream-window cache rebuild` to re-create the index from the images on disk"

Migration = tuple[int, str, Callable[[sqlite3.Connection], None]]


def _m1_entries(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE entries (
            cache_id      TEXT PRIMARY KEY,          -- content hash of the pixels; names the image file
            prompt        TEXT NOT NULL DEFAULT '',
            params        TEXT NOT NULL DEFAULT '{}', -- generation parameters, JSON
            embedding     BLOB,                       -- little-endian float32, L2-normalised
            embedder      TEXT,                       -- which embedder made it; others are never compared
            width         INTEGER NOT NULL,
            height        INTEGER NOT NULL,
            created_at    TEXT NOT NULL,
            last_used_at  TEXT NOT NULL,
            last_used_seq INTEGER NOT NULL,           -- strictly increasing: a tie-free LRU order
            use_count     INTEGER NOT NULL DEFAULT 0,
            score         INTEGER NOT NULL DEFAULT 0 CHECK (score IN (-1, 0, 1))
        )
        """
    )
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _m2_lru_index(conn: sqlite3.Connection) -> None:
    # Eviction order: liked frames last, then least recently used first.
    conn.execute("CREATE INDEX entries_eviction ON entries ((score > 0), last_used_seq)")


MIGRATIONS: list[Migration] = [
    (1, "entries and meta tables", _m1_entries),
    (2, "eviction index", _m2_lru_index),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def damaged(path: Path, exc: BaseException | str) -> CacheError:
    return CacheError(f"cache database {path} is damaged ({exc}); {REBUILD_HINT}")


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_IOERR = 10
_SQLITE_FULL = 13


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else None


def is_disk_full(exc: sqlite3.Error) -> bool:
    return _code(exc) == _SQLITE_FULL or "database or disk is full" in str(exc)


def map_error(path: Path, exc: sqlite3.Error) -> CacheError:
    """One clear CacheError for any sqlite3 error, naming the file and what to do."""
    text = str(exc)
    if is_disk_full(exc):
        return CacheError(f"cannot write cache database {path}: disk full", disk_full=True)
    if _code(exc) == _SQLITE_IOERR or "disk I/O error" in text:
        return CacheError(f"cache database {path}: disk I/O error ({text}); check the disk it is on")
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return CacheError(f"cache database {path} is busy (another dream-window holds it): {text}")
    if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "readonly" in text):
        return CacheError(f"cannot open cache database {path}: {text}")
    if isinstance(exc, sqlite3.DatabaseError | sqlite3.IntegrityError):
        return damaged(path, text)
    return CacheError(f"cache database {path}: {text}")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating when absent) and migrate the database at ``path``.

    The connection is in autocommit mode; callers open transactions with ``BEGIN IMMEDIATE``.
    It may be used from several threads, one at a time (the manager holds a lock).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create cache folder {path.parent}: {exc.strerror or exc}") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    except sqlite3.Error as exc:
        raise map_error(path, exc) from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CacheError(f"cache database {path}: WAL mode not available (got {mode})")
        # NORMAL is durable against a killed process in WAL mode; only power loss can drop the last commits,
        # and the startup reconcile repairs the index against the images either way.
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise map_error(path, exc) from exc
    except CacheError:
        conn.close()
        raise
    return conn


def applied_versions(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def migrate(conn: sqlite3.Connection, path: Path, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now."""
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = set(applied_versions(conn))
    known = {v for v, _, _ in migrations}
    newer = sorted(done - known)
    if newer:
        raise CacheError(
            f"cache database {path} has schema version {newer[-1]}, newer than this dream-window knows "
            f"({max(known)}); upgrade dream-window or use another cache_dir"
        )
    applied: list[int] = []
    for version, name, apply in migrations:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        applied.append(version)
    return applied


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back after a failure without hiding it. SQLite may have rolled back already (a full
    disk, an I/O error), when a second ROLLBACK fails with "no transaction is active"; a failed
    COMMIT leaves the transaction open, and the next BEGIN would fail with "within a transaction".
    Either error would replace the real one."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Raise CacheError when SQLite's own integrity check finds damage (used by doctor and stats)."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as exc:
        raise map_error(path, exc) from exc
    if rows != ["ok"]:
        raise damaged(path, "; ".join(str(r) for r in rows[:3]))
