"""Frame-cache search and index-load benchmark: our matrix search vs the seed's per-entry loop.

    .venv/bin/python bench/cache_search.py [--dim 512] [--full]

BLAS is pinned to one thread (set before numpy loads) so the numbers are fair on a shared box.
Prints, side by side: top-5 search latency (median) for N = 1e3, 1e4, 1e5, with a bare numpy
matrix-vector product as the floor (the search cannot beat reading the matrix once); the time to open the
SQLite index and load the matrix at start for 1e4 and 1e5 entries (with the seed's JSON index
beside it at 1e4, and at 1e5 with --full); and the index's bytes per entry.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dream_window.cache import db  # noqa: E402
from dream_window.cache.manager import CacheManager, embedding_to_blob  # noqa: E402
from dream_window.cache.matcher import AestheticMatcher  # noqa: E402

TOP_K = 5
THRESHOLD = 0.0  # random unit vectors: about half pass, so both paths do real filtering and sorting


def seed_find_similar(
    target: np.ndarray, candidates: list[tuple[str, np.ndarray]], threshold: float, top_k: int
) -> list[tuple[str, float]]:
    """The seed design's algorithm: a Python loop computing one dot product per entry."""
    results = []
    for cache_id, emb in candidates:
        sim = float(np.dot(target, emb))
        if sim >= threshold:
            results.append((cache_id, sim))
    results.sort(key=lambda r: r[1], reverse=True)
    return results[:top_k]


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def bench_search(d: int) -> None:
    print(f"top-{TOP_K} search, d={d}, median ms (1 BLAS thread)")
    print(f"{'N':>8} {'seed loop':>11} {'matrix':>9} {'speed-up':>9} {'bare m@t':>9}")
    for n in (1_000, 10_000, 100_000):
        m = unit_rows(n, d)
        ids = [f"{i:032x}" for i in range(n)]
        matcher = AestheticMatcher()
        matcher.load(ids, m)
        target = unit_rows(1, d, seed=1)[0]
        cands = list(zip(ids, m, strict=True))
        fast = median_ms(
            lambda: matcher.find_similar(target, THRESHOLD, TOP_K, at_frame=0),  # noqa: B023 (called at once)
            51 if n < 100_000 else 21,
        )
        slow = median_ms(lambda: seed_find_similar(target, cands, THRESHOLD, TOP_K), 11 if n < 100_000 else 3)  # noqa: B023 (called at once)
        floor = median_ms(lambda: m @ target, 51 if n < 100_000 else 21)  # the bandwidth floor: one matvec  # noqa: B023 (called at once)
        same = [c for c, _ in matcher.find_similar(target, THRESHOLD, TOP_K)] == [
            c for c, _ in seed_find_similar(target, cands, THRESHOLD, TOP_K)
        ]
        print(
            f"{n:>8} {slow:>11.3f} {fast:>9.3f} {slow / fast:>8.0f}x {floor:>9.3f}"
            f"{'' if same else '  RESULTS DIFFER'}"
        )


def build_index(directory: Path, n: int, d: int) -> None:
    conn = db.connect(directory / db.DB_FILE)
    m = unit_rows(n, d)
    now = "2026-01-01T00:00:00+00:00"
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO entries (cache_id, prompt, params, embedding, embedder, width, height, created_at, "
        "last_used_at, last_used_seq, use_count, score) VALUES (?, ?, ?, ?, 'bench', 256, 512, ?, ?, ?, 0, 0)",
        (
            (
                f"{i:032x}",
                "ethereal angel made of light, flowing robes, cosmic nebula, dreamy, soft glow",
                json.dumps({"seed": i, "steps": 4, "cfg": 1.0, "denoise": 0.4}),
                embedding_to_blob(m[i]),
                now,
                now,
                i + 1,
            )
            for i in range(n)
        ),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def build_seed_json(path: Path, n: int, d: int) -> None:
    m = unit_rows(n, d)
    entries = [
        {
            "cache_id": f"cache_{i:05d}",
            "image_path": f"cache/images/cache_{i:05d}.png",
            "prompt": "ethereal angel made of light, flowing robes, cosmic nebula, dreamy, soft glow",
            "generation_params": {"steps": 4, "denoise": 0.4, "cfg": 1.0},
            "embedding": m[i].tolist(),
            "timestamp": "2025-11-08T09:15:00",
        }
        for i in range(n)
    ]
    path.write_text(json.dumps({"version": "1.0", "entries": entries}), encoding="utf-8")


def bench_load(d: int, full: bool) -> None:
    print(f"\nindex load at start (open + migrate check + read embeddings + build matrix), d={d}")
    print(f"{'N':>8} {'sqlite ms':>10} {'bytes/entry':>12} {'seed json ms':>13} {'json bytes/entry':>17}")
    for n in (10_000, 100_000):
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            build_index(tmpdir, n, d)
            size = (tmpdir / db.DB_FILE).stat().st_size

            def load() -> None:
                mgr = CacheManager(tmpdir, max_size=n, reconcile=False)  # noqa: B023 (called at once)
                ids, matrix, scores = mgr.load_embeddings("bench")
                AestheticMatcher().load(ids, matrix, scores)
                mgr.close()

            sql_ms = median_ms(load, 5)
            json_ms = json_bpe = None
            if n <= 10_000 or full:
                path = tmpdir / "cache_index.json"
                build_seed_json(path, n, d)
                json_bpe = path.stat().st_size / n

                def load_json() -> None:
                    data = json.loads(path.read_text(encoding="utf-8"))  # noqa: B023 (called at once)
                    np.array([e["embedding"] for e in data["entries"]], dtype=np.float32)

                json_ms = median_ms(load_json, 3)
            js = f"{json_ms:>13.0f}" if json_ms is not None else f"{'(--full)':>13}"
            jb = f"{json_bpe:>17.0f}" if json_bpe is not None else f"{'':>17}"
            print(f"{n:>8} {sql_ms:>10.0f} {size / n:>12.0f} {js} {jb}")
    print(f"in-memory matrix: {d * 4} bytes/entry (float32) + ~100 bytes of id bookkeeping")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=512, help="embedding size (CLIP ViT-B/32: 512)")
    ap.add_argument("--full", action="store_true", help="also time the seed's JSON index at 1e5 (~1 GB)")
    args = ap.parse_args()
    bench_search(args.dim)
    bench_load(args.dim, args.full)


if __name__ == "__main__":
    main()
