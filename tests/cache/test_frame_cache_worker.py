"""CachedFrameCache's background worker and lifecycle: batching, failures, restarts, shutdown.

The companion of test_frame_cache.py for what the worker does when things go wrong (an embedder
that breaks, an index that refuses writes, a queue that overflows, a worker stuck at shutdown) and
what a restart reads back. The messages asserted here are the lines a user reads in the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from dream_window.cache.embedders import CLIPEmbedder, FeatureEmbedder, ImageEmbedder
from dream_window.cache.frame_cache import QUEUE_LIMIT, CachedFrameCache
from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager
from dream_window.config import CacheConfig
from dream_window.errors import CacheError, ModelLoadError
from dream_window.events import EventBus, FrameEmbedded
from dream_window.values.frame import Frame
from tests.cache.conftest import BLUE, GREEN, RED, Rolls, picture
from tests.conftest import hang_guard

LOGGER = "dream_window.cache.frame_cache"


def _frame(i: int, hue: tuple[int, int, int], prompt: str = "p", **params: object) -> Frame:
    return Frame(picture(i, hue=hue), prompt, "keyframe", 10.0, dict(params), index=i)


def _memory(
    tmp_path: Path,
    rng: random.Random,
    embedder: ImageEmbedder | None = None,
    batch_size: int = 8,
    close_timeout: float = 15.0,
    **cfg: Any,
) -> CachedFrameCache:
    conf = CacheConfig(
        **{"injection_probability": 1.0, "reinject_cooldown_frames": 0, "similarity_threshold": -1.0, **cfg}
    )
    manager = CacheManager(tmp_path / "cache", max_size=conf.max_size, fsync=False)
    return CachedFrameCache(
        manager,
        embedder or FeatureEmbedder(),
        conf,
        rng=rng,
        batch_size=batch_size,
        close_timeout=close_timeout,
    )


def _unembedded(tmp_path: Path, *hues: tuple[int, int, int]) -> list[str]:
    """Entries as a legacy import leaves them: no embedding, so the worker re-embeds them."""
    m = CacheManager(tmp_path / "cache", max_size=100, fsync=False)
    ids = [m.add(picture(i, hue=hue), prompt=f"old {i}").entry.cache_id for i, hue in enumerate(hues)]
    m.close()
    return ids


def _saved(tmp_path: Path, name: str, frame: Frame) -> Path:
    path = tmp_path / name
    frame.image.save(path)
    return path


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def _until_pending(mem: CachedFrameCache, n: int) -> None:
    # A rating loads its image in a thread before it queues: step the loop until it has.
    while mem.describe()["pending"] < n:  # noqa: ASYNC110
        await asyncio.sleep(0)


class _Counting(FeatureEmbedder):
    """Colour features that record how many images each call embedded."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, images):  # type: ignore[no-untyped-def]
        self.batches.append(len(images))
        return super().embed(images)


class _Gated(FeatureEmbedder):
    """A slow model: each call waits (in the worker thread) until the test opens ``go``."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def embed(self, images):  # type: ignore[no-untyped-def]
        if not self.go.wait(60):  # a hang guard, never reached when the test opens the gate
            raise RuntimeError("the gate was never opened")
        return super().embed(images)


class _FailsOn(FeatureEmbedder):
    """Raises a non-Dream-Window error (a bug, a torch error) on the listed calls (1-based)."""

    def __init__(self, *calls: int) -> None:
        self.failing = set(calls)
        self.calls = 0

    def embed(self, images):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls in self.failing:
            raise RuntimeError("boom")
        return super().embed(images)


class _DropsTheLastVector(FeatureEmbedder):
    """Breaks the embedder contract: one vector short for a batch of more than one image."""

    def embed(self, images):  # type: ignore[no-untyped-def]
        vectors = super().embed(images)
        return vectors[:-1] if len(images) > 1 else vectors


class _LostDevice:
    """A stand-in for CLIP whose device is gone: every call fails to load the model."""

    id = "clip:lost"
    label = "clip (lost)"

    def embed(self, images):  # type: ignore[no-untyped-def]
        raise ModelLoadError("CUDA device lost")


class _BrokenFeatures(FeatureEmbedder):
    def embed(self, images):  # type: ignore[no-untyped-def]
        raise ModelLoadError("numpy is broken")


# --- lifecycle ------------------------------------------------------------------------------


async def test_closing_a_cache_that_never_started_closes_its_index(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.close()
    with pytest.raises(CacheError):
        mem.manager.count()  # the index is closed: nothing holds the database open


async def test_a_restart_reads_back_embeddings_and_ratings_without_embedding_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _memory(tmp_path, random.Random(0))
    await first.start()
    liked, disliked = _frame(0, RED), _frame(1, RED)
    for f in (liked, disliked):
        await first.remember(f, tmp_path)
    await first.rate(_saved(tmp_path, "d.png", disliked), -1)
    await first.close()

    caplog.clear()
    caplog.set_level(logging.INFO, logger=LOGGER)
    embedder = _Counting()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder)
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    assert embedder.batches == []  # CLIP on a CPU takes 100 ms a frame: the stored ones are used
    assert _messages(caplog, logging.INFO) == [
        f"frame cache: 2 frame(s), 2 embedded by {FeatureEmbedder.label}"
    ]
    assert mem.describe()["embedded"] == 2
    for _ in range(20):  # the dislike survived the restart
        got = await mem.pick_injection(_frame(9, RED))
        assert got is not None and pixel_hash(got[0]) == pixel_hash(liked.image)
    await mem.close()


async def test_flush_without_backfill_does_not_wait_for_old_frames_to_be_reembedded(tmp_path: Path) -> None:
    _unembedded(tmp_path, RED, BLUE)
    embedder = _Gated()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder)
    await mem.start()
    try:
        await hang_guard(mem.flush(), 10)  # nothing remembered: nothing to wait for
        assert mem.describe()["embedded"] == 0  # re-embedding is still held at the gate
    finally:
        embedder.go.set()
    await hang_guard(mem.flush(backfill=True), 10)
    assert mem.describe()["embedded"] == 2
    await mem.close()


async def test_close_gives_up_on_a_stuck_worker_and_says_how_many_frames_were_not_cached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # close() waits close_timeout of real time for the stuck worker, then gives up.
    embedder = _Gated()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder, batch_size=1, close_timeout=0.2)
    await mem.start()
    try:
        for i in range(3):  # the worker takes the first and is stuck embedding it
            await mem.remember(_frame(i, RED), tmp_path)
        await mem.close()
        assert _messages(caplog, logging.WARNING) == ["frame cache: 2 frame(s) not cached at shutdown"]
        with pytest.raises(CacheError):
            mem.manager.count()  # closed all the same
    finally:
        embedder.go.set()


# --- what the worker stores -----------------------------------------------------------------


async def test_a_remembered_frame_keeps_its_generation_parameters(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    frame = _frame(3, RED, seed=1234, denoise=0.45)
    await mem.remember(frame, tmp_path)
    await mem.flush()
    entry = mem.manager.get(pixel_hash(frame.image))
    assert entry is not None and entry.generation_params == {"seed": 1234, "denoise": 0.45}
    await mem.close()


async def test_frames_that_piled_up_are_embedded_in_batches_of_the_batch_size(tmp_path: Path) -> None:
    embedder = _Counting()
    mem = _memory(tmp_path, random.Random(0), embedder=embedder, batch_size=2)  # not started yet
    for i in range(5):
        await mem.remember(_frame(i, RED), tmp_path)
    await mem.start()
    await hang_guard(mem.flush(), 10)
    assert embedder.batches == [2, 2, 1] and mem.describe()["size"] == 5
    await mem.close()


async def test_a_disliked_frame_shown_again_stays_disliked(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    disliked, other = _frame(0, RED), _frame(1, RED)
    await mem.remember(other, tmp_path)
    await mem.rate(_saved(tmp_path, "d.png", disliked), -1)
    await mem.remember(disliked, tmp_path)  # the same pixels published again
    await mem.flush()
    for _ in range(20):
        got = await mem.pick_injection(_frame(9, RED))
        assert got is not None and pixel_hash(got[0]) == pixel_hash(other.image)
    await mem.close()


async def test_a_frame_embedded_by_clip_is_announced_as_clip(tmp_path: Path, tiny_clip: Path) -> None:
    events = EventBus()
    seen: list[FrameEmbedded] = []
    events.subscribe(FrameEmbedded, seen.append)
    embedder = CLIPEmbedder(str(tiny_clip))
    manager = CacheManager(tmp_path / "cache", max_size=10, fsync=False)
    mem = CachedFrameCache(manager, embedder, CacheConfig(), rng=random.Random(0), events=events)
    await mem.start()
    await mem.remember(_frame(4, RED), tmp_path)
    await mem.flush()
    assert [(e.index, e.embedder, e.clip) for e in seen] == [(4, embedder.label, True)]
    await mem.close()


# --- ratings, choice and rest ----------------------------------------------------------------


async def test_a_frame_rated_before_anything_was_shown_rests_from_frame_zero(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), reinject_cooldown_frames=5)
    await mem.start()
    rated = _frame(0, RED)
    await mem.rate(_saved(tmp_path, "r.png", rated), 1)
    assert await mem.pick_injection(_frame(4, BLUE)) is None  # still resting
    got = await mem.pick_injection(_frame(5, BLUE))
    assert got is not None and pixel_hash(got[0]) == pixel_hash(rated.image)
    assert mem.describe()["last_injection"]["at_frame"] == 5  # type: ignore[index]
    await mem.close()


async def test_a_frame_is_rated_from_its_png_bytes_as_from_its_file(tmp_path: Path) -> None:
    # A live cadence keeps the newest frame only in memory: its PNG is rated like a file would be.
    import io

    mem = _memory(tmp_path, random.Random(0), reinject_cooldown_frames=0)
    await mem.start()
    rated = _frame(0, RED)
    buf = io.BytesIO()
    rated.image.save(buf, "PNG")
    await mem.rate(buf.getvalue(), 1)
    got = await mem.pick_injection(_frame(1, BLUE))
    assert got is not None and pixel_hash(got[0]) == pixel_hash(rated.image)
    with pytest.raises(CacheError, match="cannot rate the frame"):
        await mem.rate(b"not a png", 1)
    await mem.close()


async def _pick_from_red_and_blue(tmp_path: Path, roll: float, *, like_blue: bool = False, **cfg: Any) -> str:
    """Cache a red and a blue frame, then inject next to a red one with every draw = ``roll``:
    red is the more similar. Returns the chosen frame's colour."""
    mem = _memory(tmp_path, Rolls(roll), **cfg)
    await mem.start()
    red, blue = _frame(0, RED), _frame(1, BLUE)
    await mem.remember(red, tmp_path)
    await mem.remember(blue, tmp_path)
    if like_blue:
        await mem.rate(_saved(tmp_path, "b.png", blue), 1)
    await mem.flush()
    got = await mem.pick_injection(_frame(9, RED))
    await mem.close()
    assert got is not None
    return {pixel_hash(red.image): "red", pixel_hash(blue.image): "blue"}[pixel_hash(got[0])]


async def test_the_configured_temperature_decides_how_far_from_the_closest_frame_the_choice_strays(
    tmp_path: Path,
) -> None:
    # At temperature 10 the softmax is nearly flat (red's share is under 0.55, similarities being
    # in [-1, 1]): a draw of 0.6 lands on blue. At the default 0.1, red, far closer, takes it.
    assert await _pick_from_red_and_blue(tmp_path / "hot", 0.6, temperature=10.0) == "blue"
    assert await _pick_from_red_and_blue(tmp_path / "cold", 0.6) == "red"


async def test_the_configured_like_boost_decides_how_strongly_a_liked_frame_is_preferred(
    tmp_path: Path,
) -> None:
    # Flat softmax (temperature 10): a like ×100 leaves red a share under 0.02, the default ×3
    # leaves it over 0.2; a draw of 0.1 tells the two apart.
    boosted = await _pick_from_red_and_blue(
        tmp_path / "x100", 0.1, like_blue=True, temperature=10.0, like_boost=100.0
    )
    assert boosted == "blue"
    default = await _pick_from_red_and_blue(tmp_path / "x3", 0.1, like_blue=True, temperature=10.0)
    assert default == "red"


# --- an embedder that keeps up or does not ------------------------------------------------------


async def test_a_full_queue_says_once_that_frames_are_skipped_and_a_rating_is_told_to_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mem = _memory(tmp_path, random.Random(0))  # not started: nothing drains the queue
    for i in range(QUEUE_LIMIT + 1):
        await mem.remember(Frame(picture(i, size=(8, 8)), "p", "keyframe", 1.0, {}, index=i), tmp_path)
    said = ["frame cache: embedding cannot keep up; skipping frames for now"]
    assert _messages(caplog, logging.WARNING) == said  # at the first frame skipped
    for i in range(3):
        await mem.remember(Frame(picture(100 + i, size=(8, 8)), "p", "keyframe", 1.0, {}, index=i), tmp_path)
    with pytest.raises(CacheError, match=r"^the frame cache is busy; try again in a moment$"):
        await mem.rate(_saved(tmp_path, "f.png", _frame(0, RED)), 1)
    assert _messages(caplog, logging.WARNING) == said  # once, not once a frame
    await mem.close()


async def test_a_model_that_fails_to_load_says_why_it_falls_back_to_features(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mem = _memory(tmp_path, random.Random(0), embedder=_LostDevice())
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)
    await hang_guard(mem.flush(), 10)
    assert _messages(caplog, logging.ERROR) == [
        "frame cache: CUDA device lost; falling back to colour/layout features"
    ]
    assert mem.describe()["embedded"] == 1
    await mem.close()


async def test_reembedding_stopped_by_a_broken_embedder_is_said_once_and_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _unembedded(tmp_path, RED, BLUE)
    mem = _memory(tmp_path, random.Random(0), embedder=_BrokenFeatures())
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    await mem.remember(_frame(5, GREEN), tmp_path)  # fails too, but after the worker looked again
    await hang_guard(mem.flush(), 10)
    stopped = [m for m in _messages(caplog, logging.WARNING) if "re-embedding" in m]
    assert stopped == ["frame cache: re-embedding stopped: feature embedder failed: numpy is broken"]
    await mem.close()


async def test_an_unexpected_reembedding_error_stops_reembedding_until_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (old,) = _unembedded(tmp_path, BLUE)
    mem = _memory(tmp_path, random.Random(0), embedder=_FailsOn(1))
    await mem.start()
    await hang_guard(mem.flush(backfill=True), 10)
    await mem.remember(_frame(1, RED), tmp_path)  # embedding works again
    await hang_guard(mem.flush(), 10)
    failed = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        "frame cache: re-embedding failed; stopped until the next start"
    ]
    assert failed[0].exc_info is not None  # the traceback of the bug goes with it
    assert mem.manager.ids_without_embedding(FeatureEmbedder.id) == [old]
    assert mem.describe()["size"] == 2
    await mem.close()


async def test_an_entry_dropped_while_reembedding_leaves_the_size_it_reports(tmp_path: Path) -> None:
    bad, *_good = _unembedded(tmp_path, RED, BLUE, GREEN)
    CacheManager(tmp_path / "cache", max_size=100, fsync=False).store.path_for(bad).write_bytes(b"not a png")
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    assert mem.describe()["size"] == 3
    await hang_guard(mem.flush(backfill=True), 10)
    assert mem.describe()["size"] == 2 == mem.manager.count()
    await mem.close()


# --- failures while caching -------------------------------------------------------------------


async def test_a_bug_while_caching_fails_the_rating_with_its_cause_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = _FailsOn(1, 2)
    mem = _memory(tmp_path, random.Random(0), embedder=embedder)
    await mem.start()
    await mem.remember(_frame(0, RED), tmp_path)  # call 1 fails: a frame alone in its batch
    await hang_guard(mem.flush(), 10)
    with pytest.raises(CacheError, match=r"^frame cache failed: RuntimeError\('boom'\)$"):
        await hang_guard(mem.rate(_saved(tmp_path, "f.png", _frame(1, BLUE)), 1), 10)  # call 2
    failed = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["frame cache worker failed"] * 2
    await mem.remember(_frame(2, GREEN), tmp_path)  # call 3 works: the worker is still there
    await hang_guard(mem.flush(), 10)
    assert mem.describe()["size"] == 1
    await mem.close()


async def test_an_embedder_one_vector_short_fails_the_rating_it_left_out(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0), embedder=_DropsTheLastVector())  # not started yet
    first = _frame(0, RED)
    await mem.remember(first, tmp_path)
    rating = asyncio.create_task(mem.rate(_saved(tmp_path, "f.png", _frame(1, BLUE)), 1))
    await hang_guard(_until_pending(mem, 2), 10)
    await mem.start()  # one batch: the frame, then the rating, which gets no vector
    with pytest.raises(CacheError, match=r"^frame cache failed: ValueError\("):
        await hang_guard(rating, 10)
    assert [e.cache_id for e in mem.manager.get_all()] == [pixel_hash(first.image)]
    await mem.close()


async def test_a_failing_index_is_reported_with_its_own_reason_not_as_a_full_disk(tmp_path: Path) -> None:
    mem = _memory(tmp_path, random.Random(0))
    await mem.start()
    mem.manager.close()  # every write to the index now fails
    with pytest.raises(CacheError) as info:
        await hang_guard(mem.rate(_saved(tmp_path, "f.png", _frame(0, RED)), 1), 10)
    writes = mem.describe()["writes"]
    assert isinstance(writes, dict)
    assert (writes["problem"], writes["frames_lost"]) == (str(info.value), 1)
    assert writes["problem"] != "disk full"
    await mem.close()
