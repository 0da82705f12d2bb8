"""CachedFrameCache: background embedding, injection, ratings, fallback, status."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache import CachedFrameCache, FrameCacheService, open_frame_cache
from dream_window.cache.embedders import CLIPEmbedder, FeatureEmbedder
from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.config import CacheConfig
from dream_window.dream.frame_cache import NoFrameCache
from dream_window.errors import CacheError
from dream_window.values.frame import Frame
from tests.cache.conftest import BLUE, GREEN, RED, picture
from tests.conftest import fast_config


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
    await asyncio.wait_for(mem.flush(backfill=True), 10)
    assert embedder.calls == 1
    await mem.remember(_frame(1, RED), tmp_path / "1.png")
    frame_path = tmp_path / "2.png"
    picture(2, hue=GREEN).save(frame_path)
    await asyncio.wait_for(mem.flush(), 10)
    await asyncio.wait_for(mem.rate(frame_path, 1), 10)
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
