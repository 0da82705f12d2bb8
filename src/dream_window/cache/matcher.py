"""AestheticMatcher: which cached frames look like this one, and which one to bring back.

Embeddings live in one float32 matrix (rows grown by doubling, removal by moving the last row
into the hole), kept in step with the database by the CachedFrameCache. A search is one
matrix-vector product plus ``argpartition``: no Python loop over entries (the seed's design
looped per entry; ``bench/cache_search.py`` measures both).

Beside the matrix sit two small arrays the search masks with: each frame's rating (-1 disliked,
never chosen; +1 liked, weighted up) and the frame index until which it *rests* (a frame shown
or injected recently is not brought back soon).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import numpy as np


class AestheticMatcher:
    def __init__(self, *, temperature: float = 0.1, like_boost: float = 3.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if like_boost < 1:
            raise ValueError(f"like_boost must be at least 1, got {like_boost}")
        self.temperature = temperature
        self.like_boost = like_boost
        self._m = np.zeros((0, 0), np.float32)
        self._score = np.zeros(0, np.int8)
        self._rest = np.zeros(0, np.int64)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}

    # --- keeping in step with the database ------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, cache_id: object) -> bool:
        return cache_id in self._row

    @property
    def dim(self) -> int:
        return int(self._m.shape[1])

    def load(self, ids: Sequence[str], matrix: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Replace everything with ``ids`` and their embeddings (the bulk load at start)."""
        n = len(ids)
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape[0] != n:
            raise ValueError(f"expected {n} embeddings, got {matrix.shape[0]}")
        cap = max(16, n)
        d = matrix.shape[1] if n else 0
        self._m = np.zeros((cap, d), np.float32)
        self._m[:n] = matrix
        self._score = np.zeros(cap, np.int8)
        if scores is not None:
            self._score[:n] = scores
        self._rest = np.zeros(cap, np.int64)
        self._ids = list(ids)
        self._row = {cid: i for i, cid in enumerate(self._ids)}

    def _grow(self, d: int) -> None:
        n = len(self._ids)
        if self._m.shape[1] != d:
            if n:
                raise ValueError(f"expected a {self._m.shape[1]}-d embedding, got {d}-d")
            cap = max(16, self._m.shape[0])
            self._m = np.zeros((cap, d), np.float32)
            self._score = np.zeros(cap, np.int8)
            self._rest = np.zeros(cap, np.int64)
        if n == self._m.shape[0]:
            cap = max(16, 2 * n)
            for name in ("_m", "_score", "_rest"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), old.dtype)
                new[:n] = old[:n]
                setattr(self, name, new)

    def add(self, cache_id: str, embedding: np.ndarray, *, score: int = 0, rest_until: int = 0) -> None:
        v = np.asarray(embedding, dtype=np.float32).ravel()
        row = self._row.get(cache_id)
        if row is None:
            self._grow(v.shape[0])
            row = len(self._ids)
            self._ids.append(cache_id)
            self._row[cache_id] = row
            self._rest[row] = 0
        elif v.shape[0] != self.dim:
            raise ValueError(f"expected a {self.dim}-d embedding, got {v.shape[0]}-d")
        self._m[row] = v
        self._score[row] = score
        self._rest[row] = max(int(self._rest[row]), rest_until)

    def remove(self, cache_id: str) -> bool:
        row = self._row.pop(cache_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._m[row] = self._m[last]
            self._score[row] = self._score[last]
            self._rest[row] = self._rest[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
        return True

    def remove_many(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.remove(cid)

    def set_score(self, cache_id: str, score: int) -> None:
        row = self._row.get(cache_id)
        if row is not None:
            self._score[row] = score

    def score(self, cache_id: str) -> int:
        row = self._row.get(cache_id)
        return 0 if row is None else int(self._score[row])

    def rest(self, cache_id: str, until_frame: int) -> None:
        """Keep ``cache_id`` out of injections until frame index ``until_frame``."""
        row = self._row.get(cache_id)
        if row is not None:
            self._rest[row] = max(int(self._rest[row]), until_frame)

    def vector(self, cache_id: str) -> np.ndarray | None:
        row = self._row.get(cache_id)
        return None if row is None else self._m[row].copy()

    # --- search ---------------------------------------------------------------------------

    def find_similar(
        self,
        target: np.ndarray,
        threshold: float = 0.7,
        top_k: int = 5,
        *,
        at_frame: int | None = None,
        exclude: Iterable[str] = (),
        include_disliked: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``top_k`` entries with cosine similarity ≥ ``threshold``, most similar first.

        With ``at_frame``, entries resting until after that frame are left out (injection use).
        Disliked entries are left out unless ``include_disliked``.
        """
        n = len(self._ids)
        if n == 0 or top_k <= 0:
            return []
        t = np.asarray(target, dtype=np.float32).ravel()
        if t.shape[0] != self.dim:
            raise ValueError(f"target has {t.shape[0]} dimensions, the index {self.dim}")
        sims = self._m[:n] @ t
        masked = sims
        if not include_disliked or at_frame is not None:
            masked = sims.copy()
            if not include_disliked:
                masked[self._score[:n] < 0] = -np.inf
            if at_frame is not None:
                masked[self._rest[:n] > at_frame] = -np.inf
        for cid in exclude:
            row = self._row.get(cid)
            if row is not None:
                if masked is sims:
                    masked = sims.copy()
                masked[row] = -np.inf
        k = min(top_k, n)
        top = np.argpartition(-masked, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-masked[top], kind="stable")]
        return [(self._ids[i], float(masked[i])) for i in top if masked[i] >= threshold]

    def selection_weights(self, candidates: Sequence[tuple[str, float]]) -> np.ndarray:
        """Probabilities for ``candidates``: softmax of similarity / temperature, liked ×like_boost."""
        if not candidates:
            return np.zeros(0)
        sims = np.array([s for _, s in candidates], dtype=np.float64)
        logits = sims / self.temperature
        liked = np.array([self.score(cid) > 0 for cid, _ in candidates])
        logits = logits + liked * math.log(self.like_boost)
        logits -= logits.max()
        w = np.exp(logits)
        return w / w.sum()

    def weighted_random_selection(
        self, candidates: Sequence[tuple[str, float]], rng: random.Random
    ) -> str | None:
        """One of ``candidates``, drawn with :meth:`selection_weights` from the injected ``rng``."""
        if not candidates:
            return None
        w = self.selection_weights(candidates)
        r = rng.random()
        idx = int(np.searchsorted(np.cumsum(w), r, side="right"))
        return candidates[min(idx, len(candidates) - 1)][0]
