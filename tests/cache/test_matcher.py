"""AestheticMatcher: search ordering against brute force, masks, and selection statistics."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from dream_window.cache.matcher import AestheticMatcher


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    m = rng.normal(size=(n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _filled(n: int = 200, d: int = 16, seed: int = 0) -> tuple[AestheticMatcher, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = _unit(rng, n, d)
    matcher = AestheticMatcher()
    for i in range(n):  # one at a time: exercises growth by doubling
        matcher.add(f"id{i}", m[i])
    return matcher, m


def test_find_similar_matches_brute_force_ordering() -> None:
    matcher, m = _filled()
    t = _unit(np.random.default_rng(9), 1, 16)[0]
    got = matcher.find_similar(t, threshold=-1.0, top_k=7)
    sims = [float(np.dot(row, t)) for row in m]
    want = sorted(range(len(sims)), key=lambda i: -sims[i])[:7]
    assert [cid for cid, _ in got] == [f"id{i}" for i in want]
    np.testing.assert_allclose([s for _, s in got], [sims[i] for i in want], rtol=1e-5)
    assert all(a >= b for (_, a), (_, b) in itertools.pairwise(got))


def test_threshold_and_top_k() -> None:
    matcher, m = _filled()
    got = matcher.find_similar(m[3], threshold=0.999, top_k=5)
    assert got == [("id3", pytest.approx(1.0, abs=1e-5))]
    assert len(matcher.find_similar(m[3], threshold=-1.0, top_k=500)) == 200
    assert matcher.find_similar(m[3], threshold=2.0, top_k=5) == []
    with pytest.raises(ValueError, match="target has 4 dimensions, the index 16"):
        matcher.find_similar(np.ones(4), 0.0, 1)


def test_remove_keeps_ids_and_rows_in_step() -> None:
    matcher, m = _filled(n=20)
    for i in (0, 7, 19, 3):
        assert matcher.remove(f"id{i}")
    assert not matcher.remove("id7") and len(matcher) == 16
    for i in range(20):
        got = matcher.find_similar(m[i], threshold=0.999, top_k=1)
        assert got == ([] if i in (0, 7, 19, 3) else [(f"id{i}", pytest.approx(1.0, abs=1e-5))])


def test_disliked_and_resting_frames_are_left_out() -> None:
    matcher, m = _filled(n=10)
    matcher.set_score("id0", -1)
    matcher.rest("id1", until_frame=50)
    t = m[0] + m[1]
    ids = [c for c, _ in matcher.find_similar(t, -1.0, 10, at_frame=49)]
    assert "id0" not in ids and "id1" not in ids and len(ids) == 8
    ids = [c for c, _ in matcher.find_similar(t, -1.0, 10, at_frame=50)]
    assert "id1" in ids and "id0" not in ids
    assert "id0" in [c for c, _ in matcher.find_similar(t, -1.0, 10, include_disliked=True)]
    assert "id2" not in [c for c, _ in matcher.find_similar(t, -1.0, 10, exclude=["id2"])]


def test_dimension_mismatch_is_refused() -> None:
    matcher, _ = _filled(n=2, d=4)
    with pytest.raises(ValueError, match="expected a 4-d embedding, got 3-d"):
        matcher.add("x", np.ones(3))


def _draw_counts(matcher: AestheticMatcher, cands: list[tuple[str, float]], n: int, seed: int) -> np.ndarray:
    rng = random.Random(seed)
    index = {c: i for i, (c, _) in enumerate(cands)}
    counts = np.zeros(len(cands))
    for _ in range(n):
        counts[index[matcher.weighted_random_selection(cands, rng)]] += 1  # type: ignore[index]
    return counts


def test_selection_follows_softmax_weights_statistically() -> None:
    matcher = AestheticMatcher(temperature=0.1)
    cands = [("a", 0.9), ("b", 0.85), ("c", 0.8), ("d", 0.7)]
    for c, _ in cands:
        matcher.add(c, np.ones(2) / np.sqrt(2))
    w = matcher.selection_weights(cands)
    want = np.exp(np.array([0.9, 0.85, 0.8, 0.7]) / 0.1)
    np.testing.assert_allclose(w, want / want.sum())
    n = 20_000
    counts = _draw_counts(matcher, cands, n, seed=42)
    expected = w * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.27, (counts, expected)  # p = 0.001 for 3 degrees of freedom


def test_liked_frames_are_chosen_more_often_and_temperature_sharpens() -> None:
    matcher = AestheticMatcher(temperature=0.1, like_boost=3.0)
    cands = [("a", 0.8), ("b", 0.8)]
    for c, _ in cands:
        matcher.add(c, np.ones(2) / np.sqrt(2))
    matcher.set_score("b", 1)
    np.testing.assert_allclose(matcher.selection_weights(cands), [0.25, 0.75])
    counts = _draw_counts(matcher, cands, 8000, seed=1)
    assert 0.72 < counts[1] / counts.sum() < 0.78

    cold, hot = AestheticMatcher(temperature=0.01), AestheticMatcher(temperature=1.0)
    sims = [("a", 0.9), ("b", 0.8)]
    assert cold.selection_weights(sims)[0] > 0.99
    assert 0.5 < hot.selection_weights(sims)[0] < 0.53
    assert matcher.weighted_random_selection([], random.Random(0)) is None
