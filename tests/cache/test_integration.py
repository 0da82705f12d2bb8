"""The dream loop with the built-in engine and a real frame cache: frames really get re-injected."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache import CachedFrameCache, FrameCacheService
from dream_window.cache.manager import CacheManager
from dream_window.events import Event, FramePublished, Injection
from tests.conftest import fast_config


@pytest.mark.parametrize("mode", ["img2img", "hybrid"])
async def test_loop_injects_cached_frames(tmp_path: Path, mode: str) -> None:
    cfg = fast_config(
        tmp_path,
        generation={
            "mode": mode,
            "width": 64,
            "height": 64,
            "cache": {
                "enabled": True,
                "embedder": "features",
                "injection_probability": 1.0,
                "similarity_threshold": -1.0,
                "reinject_cooldown_frames": 0,
                "max_size": 50,
            },
        },
    )
    rng = random.Random(5)
    memory = FrameCacheService(cfg, rng=rng)
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(
        cfg, backend, rng=rng, max_frames=24, frame_cache=memory, services=[memory], fsync=False
    )
    events: list[Event] = []
    controller.events.subscribe(Event, events.append)
    await controller.run()  # opens the cache first and closes it on the way out
    await backend.close()
    assert isinstance(memory.cache, CachedFrameCache)

    injections = [e for e in events if isinstance(e, Injection)]
    assert injections, "no frame was injected"
    assert all("similarity" in e.label for e in injections)
    kinds = [e.kind for e in events if isinstance(e, FramePublished)]
    assert "injected" in kinds
    status = json.loads((cfg.output_dir / "status.json").read_text(encoding="utf-8"))
    cache = status["cache"]
    assert cache["enabled"] is True and cache["embedder"].startswith("features")
    assert cache["last_injection"] is not None and cache["injections"] == len(injections)
    # Every published non-in-between frame went into the cache, and it survives the run.
    m = CacheManager(cfg.cache_dir, max_size=50)
    keyframes = sum(1 for k in kinds if k != "inbetween")
    assert m.count() == keyframes == cache["size"]
    # Each injection counts as a use (LRU); the producer may be cancelled mid-pick at the stop, after the
    # use was recorded, hence the +1.
    assert len(injections) <= sum(e.use_count for e in m.get_all()) <= len(injections) + 1
