"""CachedFrameCache: background embedding, injection, ratings, fallback, status."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache import CachedFrameCache, FrameCacheService, open_frame_cache
from dream_window.cache.embedders import CLIPEmbedder, FeatureEmbedder
from dream_window.cache.frame_cache import QUEUE_LIMIT
from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.config import CacheConfig
from dream_window.dream.frame_cache import NoFrameCache
from dream_window.errors import CacheError, ModelLoadError
from dream_window.events import EventBus, FrameEmbedded
from dream_window.values.frame import Frame
from tests.cache.conftest import BLUE, GREEN, RED, Rolls, picture
from tests.conftest import fast_config, hang_guard


def _frame(i: int, hue: tuple[int, int, int], prompt: str = "p") -> Frame:
    return Frame(picture(i, hue=hue), prompt, "keyframe", 10.0, {"seed": i}, index=i)


def _memory(tmp_path: Path, rng: random.Random, embedder=None, **cfg) -> CachedFrameCache:  # type: ignore[no-untyped-def]
    conf = CacheConfig(
        **{"injection_probability": 1.0, "reinject_cooldown_frames": 0, "similarity_threshold": -1.0, **cfg}
    )
    manager = CacheManager(tmp_path / "cache", max_size=conf.max_size, fsync=False)
    return CachedFrameCache(manager, embedder or FeatureEmbedder(), conf, rng=rng)


async def test_remember_runs_in_the_background_and_persists(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), max_size=5)
    await mem.start()
    for i in range(7):
        await mem.remember(_frame(i, RED, f"prompt {i}"), tmp_path / f"{i}.png")
    await mem.flush()
    d = mem.describe()
    assert (d["size"], d["embedded"], d["pending"], d["embedder"]) == (5, 5, 0, FeatureEmbedder.label)
    await mem.close()
    m = CacheManager(tmp_path / "cache", max_size=5)
    assert [e.prompt for e in m.get_all()] == [f"prompt {i}" for i in range(6, 1, -1)]
    assert m.embedder_counts() == {"features-v1": 5}


async def test_injection_picks_a_similar_frame_never_the_current_one(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(3), top_k=2, temperature=0.05)
    await mem.start()
    frames = [
        _frame(0, RED, "red a"),
        _frame(1, RED, "red b"),
        _frame(2, BLUE, "blue"),
        _frame(3, GREEN, "green"),
    ]
    for f in frames:
        await mem.remember(f, tmp_path)
    await mem.flush()
    current = _frame(9, RED, "red now")
    picks = []
    for _ in range(30):
        got = await mem.pick_injection(current)
        assert got is not None
        picks.append(pixel_hash(got[0]))
    assert set(picks) <= {pixel_hash(frames[0].image), pixel_hash(frames[1].image)}
    # The current frame, once cached, is excluded even though it is the most similar.
    await mem.remember(current, tmp_path)
    await mem.flush()
    got = await mem.pick_injection(current)
    assert got is not None and pixel_hash(got[0]) != pixel_hash(current.image)
    last = mem.describe()["last_injection"]
    assert last["prompt"] in {"red a", "red b"} and last["similarity"] > 0.5
    assert mem.describe()["injections"] == 31
    await mem.close()


async def test_probability_is_rolled_with_the_injected_rng(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(11), injection_probability=0.3)
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    current = _frame(5, BLUE)
    hits = [await mem.pick_injection(current) is not None for _ in range(400)]
    rng = random.Random(11)
    want = []
    for _ in range(400):  # the same draws: one for the roll, one more for the choice when it hits
        hit = rng.random() < 0.3
        if hit:
            rng.random()
        want.append(hit)
    assert hits == want
    await mem.close()


async def test_recently_shown_frames_rest(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), reinject_cooldown_frames=10)
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    assert await mem.pick_injection(_frame(5, RED)) is None  # shown at frame 0, rests until 10
    assert await mem.pick_injection(_frame(10, RED)) is not None
    assert await mem.pick_injection(_frame(15, RED)) is None  # injected at 10: rests until 20
    assert await mem.pick_injection(_frame(20, RED)) is not None
    await mem.close()


async def test_ratings_disliked_never_chosen_unknown_frames_added(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    a, b = _frame(0, RED), _frame(1, RED)
    await mem.remember(a, tmp_path)
    await mem.flush()
    path_b = tmp_path / "b.png"
    b.image.save(path_b)
    await mem.rate(path_b, 1, prompt="liked one")  # not cached yet: added with its score
    path_a = tmp_path / "a.png"
    a.image.save(path_a)
    await mem.rate(path_a, -1)
    assert mem.describe()["size"] == 2
    for _ in range(20):
        got = await mem.pick_injection(_frame(7, RED))
        assert got is not None and pixel_hash(got[0]) == pixel_hash(b.image)
    entry = mem.manager.get(pixel_hash(b.image))
    assert entry is not None and (entry.score, entry.prompt) == (1, "liked one")
    with pytest.raises(CacheError, match="a rating must be -1, 0 or 1, got 3"):
        await mem.rate(path_a, 3)
    with pytest.raises(CacheError, match="cannot rate"):
        await mem.rate(tmp_path / "missing.png", 1)
    await mem.close()


class _FailsOnce(FeatureEmbedder):
    """Raises a non-Dream-Window error (as torch does on OOM) on its first call, then works."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA out of memory")
        return super().embed(images)


async def test_worker_survives_an_unexpected_error_while_reembedding(tmp_path: Path) -> None:
    # An entry without an embedding makes the worker re-embed (backfill) as soon as it starts.
    CacheManager(tmp_path / "cache", max_size=10, fsync=False).add(picture(0, hue=BLUE), prompt="old")
    embedder = _FailsOnce()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder)
    await mem.start()
    # A dead worker would leave each of these waiting forever.
    await hang_guard(mem.flush(backfill=True), 10)
    assert embedder.calls == 1
    await mem.remember(_frame(1, RED), tmp_path / "1.png")
    frame_path = tmp_path / "2.png"
    picture(2, hue=GREEN).save(frame_path)
    await hang_guard(mem.flush(), 10)
    await hang_guard(mem.rate(frame_path, 1), 10)
    assert embedder.calls >= 2
    assert mem.describe()["size"] == 3
    await mem.close()


async def test_clip_that_fails_to_load_falls_back_to_features(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    mem = _memory(tmp_path, random.Random(0), embedder=CLIPEmbedder(str(broken)))
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    d = mem.describe()
    assert d["embedder"] == FeatureEmbedder.label and "CLIP failed" in d["embedder_reason"]
    assert d["embedded"] == 1
    await mem.close()


async def test_tiny_clip_end_to_end_and_reembedding_after_a_model_change(
    tmp_path: Path, tiny_clip: Path
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    for i, hue in enumerate([RED, BLUE, GREEN]):
        await mem.remember(_frame(i, hue), tmp_path)
    await mem.flush()
    await mem.close()
    # Same cache, now with CLIP: the three feature embeddings are replaced in the background.
    mem2 = _memory(tmp_path, random.Random(0), embedder=CLIPEmbedder(str(tiny_clip)))
    await mem2.start()
    assert mem2.describe()["embedded"] == 0
    await mem2.flush(backfill=True)
    assert mem2.describe()["embedded"] == 3 and mem2.matcher.dim == 8
    got = await mem2.pick_injection(_frame(9, RED))
    assert got is not None
    await mem2.close()
    counts = CacheManager(tmp_path / "cache", max_size=10).embedder_counts()
    assert counts == {f"clip:{tiny_clip}": 3}


async def test_open_frame_cache_with_a_damaged_database_keeps_dreaming(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True, "embedder": "features"}})
    cfg.cache_dir.mkdir(parents=True)
    (cfg.cache_dir / "cache.db").write_bytes(b"garbage" * 500)
    assert isinstance(await open_frame_cache(cfg, rng=random.Random(0)), NoFrameCache)
    # The service the app runs: it starts, stands in with NoFrameCache, says why, and closes.
    mem = FrameCacheService(cfg, rng=random.Random(0))
    controller = build_controller(
        cfg, BuiltinEngine(offload=False), frame_cache=mem, services=[mem], fsync=False
    )
    await mem.start(controller)
    d = mem.describe()
    assert d["enabled"] is False and "dream-window cache rebuild" in d["error"]
    assert await mem.pick_injection(_frame(0, RED)) is None
    with pytest.raises(CacheError, match="not available"):
        await mem.rate(cfg.output_dir / "frame_000001.png", 1)
    await mem.close()


async def test_describe_says_what_the_cache_holds_and_what_it_injected(tmp_path: Path) -> None:
    import json

    mem = _memory(tmp_path, random.Random(0), max_size=7, top_k=1)
    fresh = {
        "enabled": True,
        "size": 0,
        "max_size": 7,
        "embedder": FeatureEmbedder.label,
        "embedder_reason": "",
        "embedded": 0,
        "pending": 0,
        "injections": 0,
        "last_injection": None,
        "writes": {"ok": True},
    }
    assert json.loads(json.dumps(mem.describe())) == fresh  # JSON-ready as it is
    await mem.start()
    red, blue, now = _frame(0, RED, "red a"), _frame(1, BLUE, "blue"), _frame(9, RED, "red now")
    for f in (red, blue):
        await mem.remember(f, tmp_path)
    await mem.flush()
    assert await mem.pick_injection(now) is not None
    va, vq = FeatureEmbedder().embed([red.image, now.image])
    last = {
        "cache_id": pixel_hash(red.image),  # top_k=1: the most similar, the other red frame
        "similarity": round(float(va @ vq), 3),
        "prompt": "red a",
        "at_frame": 9,
        "candidates": 1,
    }
    d = json.loads(json.dumps(mem.describe()))
    assert d == {**fresh, "size": 2, "embedded": 2, "injections": 1, "last_injection": last}
    await mem.close()


async def test_close_does_not_swallow_its_own_cancellation(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    worker = mem._worker
    assert worker is not None
    closing = asyncio.create_task(mem.close())
    # Step the loop until close() has cancelled the worker and waits for it (no event marks that).
    while not worker.cancelling():  # noqa: ASYNC110
        await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert worker.done()
    mem.manager.close()


async def test_free_memory_drops_a_loaded_clip_model_and_the_next_embedding_reloads_it(
    tmp_path: Path, tiny_clip: Path
) -> None:
    mem = _memory(tmp_path, random.Random(0), embedder=CLIPEmbedder(str(tiny_clip)))
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    before = mem.embedder
    assert isinstance(before, CLIPEmbedder) and before.loaded
    await mem.free_memory()  # a game starts: the model leaves the GPU
    after = mem.embedder
    assert isinstance(after, CLIPEmbedder) and not after.loaded and after.id == before.id
    await mem.remember(_frame(1, BLUE), tmp_path)
    await mem.flush()
    assert after.loaded and mem.describe()["embedded"] == 2  # same model, same matrix
    await mem.close()


async def test_free_memory_without_clip_is_a_no_op(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    embedder = mem.embedder
    await mem.free_memory()
    assert mem.embedder is embedder


class _Counting(FeatureEmbedder):
    """Colour features that record how many images each call embedded."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, images):  # type: ignore[no-untyped-def]
        self.batches.append(len(images))
        return super().embed(images)


class _StandInModel:
    """A stand-in for CLIP (its own id, colour features underneath) whose device can go away."""

    id = "clip:stand-in"
    label = "clip (stand-in)"

    def __init__(self) -> None:
        self.gone = False
        self._features = FeatureEmbedder()

    def embed(self, images):  # type: ignore[no-untyped-def]
        if self.gone:
            raise ModelLoadError("CUDA device lost")
        return self._features.embed(images)


def _unrated_entries(tmp_path: Path, *hues: tuple[int, int, int], **add) -> list[str]:  # type: ignore[no-untyped-def]
    """Entries as a legacy import leaves them: no embedding, so the worker re-embeds them."""
    m = CacheManager(tmp_path / "cache", max_size=100, fsync=False)
    ids = [m.add(picture(i, hue=hue), prompt=f"old {i}", **add).entry.cache_id for i, hue in enumerate(hues)]
    m.close()
    return ids


async def test_a_zero_rating_clears_a_like_and_an_unknown_frame_is_added_without_a_prompt(
    tmp_path: Path,
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    path = tmp_path / "f.png"
    picture(0, hue=RED).save(path)
    await mem.rate(path, 1)
    cid = pixel_hash(picture(0, hue=RED))
    await mem.rate(path, 0)
    entry = mem.manager.get(cid)
    assert entry is not None and (entry.score, entry.prompt) == (0, "")
    await mem.close()


async def test_rating_after_close_says_the_cache_is_closed(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    await mem.close()
    path = tmp_path / "f.png"
    picture(0).save(path)
    with pytest.raises(CacheError, match=r"^the frame cache is closed$"):
        await mem.rate(path, 1)


async def test_no_current_frame_or_a_closed_cache_injects_nothing_and_draws_nothing(tmp_path: Path) -> None:
    rng = random.Random(5)
    mem = _memory(tmp_path, rng)
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    state = rng.getstate()
    assert await mem.pick_injection(None) is None
    await mem.close()
    assert await mem.pick_injection(_frame(5, RED)) is None
    assert rng.getstate() == state and mem.describe()["embedded"] == 1


async def test_probability_zero_never_injects_even_on_a_roll_of_zero(tmp_path: Path) -> None:
    mem = _memory(tmp_path, Rolls(0.0), injection_probability=0.0)
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    assert await mem.pick_injection(_frame(5, RED)) is None  # a roll must be *below* the probability
    await mem.close()


async def test_a_cached_current_frame_is_matched_by_its_stored_embedding_not_embedded_again(
    tmp_path: Path,
) -> None:
    embedder = _Counting()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder)
    await mem.start()
    current = _frame(1, RED)
    for f in (_frame(0, RED), current):
        await mem.remember(f, tmp_path)
    await mem.flush()
    calls = len(embedder.batches)
    assert await mem.pick_injection(current) is not None
    assert len(embedder.batches) == calls  # CLIP on a CPU takes 100 ms a frame: not twice
    await mem.close()


async def test_a_model_failing_while_matching_the_current_frame_falls_back_and_says_why(
    tmp_path: Path,
) -> None:
    model = _StandInModel()
    mem = _memory(tmp_path, random.Random(0), embedder=model)
    await mem.start()
    for i, hue in enumerate((RED, BLUE)):
        await mem.remember(_frame(i, hue), tmp_path)
    await mem.flush()
    model.gone = True
    assert await mem.pick_injection(_frame(5, RED)) is None
    d = mem.describe()
    assert d["embedder"] == FeatureEmbedder.label and "CLIP failed (CUDA device lost)" in d["embedder_reason"]
    # The next frame wakes the worker, which then re-embeds the cached ones with the fallback.
    await mem.remember(_frame(6, GREEN), tmp_path)
    await hang_guard(mem.flush(backfill=True), 10)
    assert mem.describe()["embedded"] == 3
    await mem.close()


async def test_an_injection_counts_as_a_use_of_the_injected_frame(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), top_k=1)
    await mem.start()
    red, blue = _frame(0, RED), _frame(1, BLUE)
    for f in (red, blue):
        await mem.remember(f, tmp_path)
    await mem.flush()
    got = await mem.pick_injection(_frame(5, RED))
    assert got is not None and pixel_hash(got[0]) == pixel_hash(red.image)
    used = mem.manager.get_all()[0]  # most recently used first: evicted last
    assert (used.cache_id, used.use_count) == (pixel_hash(red.image), 1)
    await mem.close()


async def test_an_entry_whose_image_vanished_is_dropped_not_injected(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    red = _frame(0, RED)
    await mem.remember(red, tmp_path)
    await mem.flush()
    cid = pixel_hash(red.image)
    mem.manager.store.path_for(cid).unlink()  # a user cleaning up the cache folder
    assert await mem.pick_injection(_frame(5, RED)) is None
    assert mem.describe()["embedded"] == 0 and mem.manager.get(cid) is None
    assert await mem.pick_injection(_frame(6, RED)) is None
    await mem.close()


async def test_an_unreadable_image_and_an_unusable_index_still_only_skip_the_injection(
    tmp_path: Path,
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    red = _frame(0, RED)
    await mem.remember(red, tmp_path)
    await mem.flush()
    mem.manager.store.path_for(pixel_hash(red.image)).write_bytes(b"not a png")
    mem.manager.close()  # the index fails too: dropping the entry from it fails
    assert await mem.pick_injection(_frame(5, RED)) is None
    assert mem.describe()["embedded"] == 0
    await mem.close()


async def test_an_entry_removed_from_the_index_elsewhere_still_injects_with_no_prompt(
    tmp_path: Path,
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    red = _frame(0, RED, "red")
    await mem.remember(red, tmp_path)
    await mem.flush()
    mem.manager.delete_rows([pixel_hash(red.image)])  # e.g. the CLI, while the image still exists
    got = await mem.pick_injection(_frame(5, RED))
    assert got is not None and pixel_hash(got[0]) == pixel_hash(red.image)
    assert mem.describe()["last_injection"]["prompt"] == ""
    await mem.close()


@pytest.mark.parametrize(
    ("prompt", "shown"),
    [("a" * 48, "a" * 48), ("b" * 49, "b" * 48 + "…"), ("short", "short")],
)
async def test_the_injection_caption_names_the_frame_and_cuts_prompts_over_48_characters(
    tmp_path: Path, prompt: str, shown: str
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    cached = _frame(0, RED, prompt)
    await mem.remember(cached, tmp_path)
    await mem.flush()
    near = cached.image.copy()
    r, g, b = near.getpixel((0, 0))  # type: ignore[misc]
    near.putpixel((0, 0), (r ^ 1, g, b))  # other pixels, the same picture to the embedder
    got = await mem.pick_injection(Frame(near, "now", "keyframe", 10.0, {}, index=5))
    assert got is not None
    assert got[1] == f"{pixel_hash(cached.image)[:8]} “{shown}” (similarity 1.00)"
    await mem.close()


async def test_free_memory_keeps_the_chosen_device_and_batch_size(tmp_path: Path, tiny_clip: Path) -> None:
    mem = _memory(
        tmp_path, random.Random(0), embedder=CLIPEmbedder(str(tiny_clip), device="cpu:0", batch_size=3)
    )
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.flush()
    await mem.free_memory()
    await mem.remember(_frame(1, BLUE), tmp_path)
    await mem.flush()
    after = mem.embedder
    assert isinstance(after, CLIPEmbedder) and after.loaded
    assert (after.device, after.batch_size) == ("cpu:0", 3)
    await mem.close()


async def test_reembedding_works_in_batches_of_the_batch_size(tmp_path: Path) -> None:
    _unrated_entries(tmp_path, RED, BLUE, GREEN, RED, BLUE)
    embedder = _Counting()
    mem = CachedFrameCache(
        CacheManager(tmp_path / "cache", max_size=100, fsync=False),
        embedder,
        CacheConfig(),
        rng=random.Random(0),
        batch_size=2,
    )
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    assert embedder.batches == [2, 2, 1] and mem.describe()["embedded"] == 5
    await mem.close()


async def test_reembedding_stores_each_frames_own_vector_and_keeps_its_rating(tmp_path: Path) -> None:
    disliked, other = _unrated_entries(tmp_path, RED, RED)
    CacheManager(tmp_path / "cache", max_size=100, fsync=False).set_score(disliked, -1)
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    for _ in range(20):
        got = await mem.pick_injection(_frame(9, RED))
        assert got is not None and pixel_hash(got[0]) == other  # disliked: never injected
    await mem.close()
    m = CacheManager(tmp_path / "cache", max_size=100)
    ids, matrix, scores = m.load_embeddings(FeatureEmbedder.id)
    want = FeatureEmbedder().embed([m.load_image(cid) for cid in ids])
    np.testing.assert_allclose(matrix, want, rtol=0, atol=1e-6)
    assert dict(zip(ids, scores.tolist(), strict=True)) == {disliked: -1, other: 0}


async def test_once_everything_is_embedded_the_worker_says_so_once_and_stops_looking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dream_window.cache.frame_cache")
    _unrated_entries(tmp_path, RED, BLUE)
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    await mem.remember(_frame(5, GREEN), tmp_path)
    await hang_guard(mem.flush(), 10)
    said = [r for r in caplog.records if f"every frame embedded by {FeatureEmbedder.label}" in r.getMessage()]
    assert len(said) == 1
    await mem.close()


async def test_an_unreadable_cached_image_is_dropped_while_reembedding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad, *good = _unrated_entries(tmp_path, RED, BLUE, GREEN)
    store = CacheManager(tmp_path / "cache", max_size=100, fsync=False).store
    store.path_for(bad).write_bytes(b"not a png")
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    assert mem.manager.get(bad) is None and not store.exists(bad)
    assert sorted(mem.manager.row_ids()) == sorted(good) and mem.describe()["embedded"] == 2
    assert any("unreadable" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    await mem.close()


class _DropsTheLastVector(FeatureEmbedder):
    """Breaks the embedder contract: one vector short for a batch of more than one image."""

    def embed(self, images):  # type: ignore[no-untyped-def]
        vectors = super().embed(images)
        return vectors[:-1] if len(images) > 1 else vectors


async def test_an_embedder_returning_too_few_vectors_stops_the_reembedding_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _unrated_entries(tmp_path, RED, BLUE, GREEN)
    mem = _memory(tmp_path, random.Random(0), embedder=_DropsTheLastVector())
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    assert any("re-embedding failed" in r.getMessage() for r in caplog.records)
    # No frame is left holding a vector that may be another's: the one short stays unembedded.
    assert len(mem.manager.ids_without_embedding(FeatureEmbedder.id)) == 1
    await mem.close()


async def test_frames_beyond_the_queue_limit_are_skipped_and_a_rating_is_told_busy(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))  # not started: nothing drains the queue
    for i in range(QUEUE_LIMIT + 1):
        await mem.remember(Frame(picture(i, size=(8, 8)), "p", "keyframe", 1.0, {}, index=i), tmp_path)
    assert mem.describe()["pending"] == QUEUE_LIMIT
    path = tmp_path / "f.png"
    picture(0).save(path)
    with pytest.raises(CacheError, match="busy"):
        await mem.rate(path, 1)
    await mem.start()
    await hang_guard(mem.flush(), 20)
    assert mem.describe()["size"] == QUEUE_LIMIT
    await mem.close()


async def test_each_remembered_frame_is_announced_with_its_embedding_but_ratings_are_not(
    tmp_path: Path,
) -> None:
    events = EventBus()
    seen: list[FrameEmbedded] = []
    events.subscribe(FrameEmbedded, seen.append)
    conf = CacheConfig(reinject_cooldown_frames=0)
    manager = CacheManager(tmp_path / "cache", max_size=10, fsync=False)
    mem = CachedFrameCache(manager, FeatureEmbedder(), conf, rng=random.Random(0), events=events)
    await mem.start()
    frames = [_frame(3, RED), _frame(4, BLUE)]
    for f in frames:
        await mem.remember(f, tmp_path)
    path = tmp_path / "g.png"
    picture(7, hue=GREEN).save(path)
    await mem.rate(path, 1)
    await mem.flush()
    assert [(e.index, e.embedder, e.clip) for e in seen] == [
        (3, FeatureEmbedder.label, False),
        (4, FeatureEmbedder.label, False),
    ]
    want = FeatureEmbedder().embed([f.image for f in frames])
    np.testing.assert_allclose(np.stack([e.vector for e in seen]), want, atol=1e-6)
    await mem.close()


async def test_frames_the_index_cannot_take_are_counted_and_a_rating_fails_with_the_reason(
    tmp_path: Path,
) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    mem.manager.close()  # every write to the index now fails
    await mem.remember(_frame(0, RED), tmp_path)
    await mem.remember(_frame(1, RED), tmp_path)
    await hang_guard(mem.flush(), 10)
    path = tmp_path / "f.png"
    picture(2).save(path)
    with pytest.raises(CacheError):
        await hang_guard(mem.rate(path, 1), 10)
    d = mem.describe()
    assert d["size"] == 0 and d["writes"]["ok"] is False and d["writes"]["frames_lost"] == 3
    await mem.close()


class _BrokenFeatures(FeatureEmbedder):
    def embed(self, images):  # type: ignore[no-untyped-def]
        raise ModelLoadError("numpy is broken")


async def test_a_failing_feature_embedder_has_nothing_to_fall_back_to(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), embedder=_BrokenFeatures())
    await mem.start()
    path = tmp_path / "f.png"
    picture(0).save(path)
    with pytest.raises(CacheError, match="feature embedder failed: numpy is broken"):
        await hang_guard(mem.rate(path, 1), 10)
    assert mem.describe()["size"] == 0 and mem.manager.count() == 0
    await mem.close()


async def test_an_entry_dropped_for_an_unreadable_image_leaves_the_size_it_reports(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    red = _frame(0, RED)
    await mem.remember(red, tmp_path)
    await mem.flush()
    assert mem.describe()["size"] == 1
    mem.manager.store.path_for(pixel_hash(red.image)).write_bytes(b"not a png")
    assert await mem.pick_injection(_frame(5, RED)) is None  # dropped from the index and the table
    assert mem.manager.count() == 0
    assert mem.describe()["size"] == 0  # what status.json shows agrees with the table
    await mem.close()
