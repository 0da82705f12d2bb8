"""Quality metrics beside a real dream: status.json's ``quality`` section, the metrics log and its
bound, the reference and CLIP rules of the tracker, with real frames and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.cache.service import FrameCacheService
from dream_window.events import FramePublished
from dream_window.quality import METRICS_LOG, QualityService, QualityTracker
from dream_window.quality.service import MetricsLog
from tests.conftest import FakeClock, fast_config, hang_guard


def solid(rgb: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


# --- the tracker ------------------------------------------------------------------------------


def test_change_is_against_the_frame_just_before_and_none_across_a_gap() -> None:
    t = QualityTracker()
    assert t.frame(1, "txt2img", "p", solid((0, 0, 0)))["change"] is None
    assert t.frame(2, "img2img", "p", solid((51, 51, 51)))["change"] == pytest.approx(0.2)
    assert t.frame(4, "img2img", "p", solid((255, 255, 255)))["change"] is None  # frame 3 skipped


def test_the_reference_is_the_first_generated_frame_of_a_prompt() -> None:
    t = QualityTracker()
    first = t.frame(1, "keyframe", "ocean", solid((100, 50, 50)))
    assert first["reference"] == 1 and first["saturation_drift"] == 0.0
    darker = t.frame(2, "inbetween", "ocean", solid((80, 40, 40)))
    assert darker["reference"] == 1
    assert darker["brightness_drift"] == pytest.approx(-0.2, abs=1e-3)
    # A new prompt: its transition frames wait for its first keyframe.
    assert t.frame(3, "transition", "fire", solid((80, 40, 40)))["reference"] is None
    assert t.frame(4, "keyframe", "fire", solid((200, 10, 10)))["reference"] == 4
    assert t.describe()["reference"] == {"index": 4, "prompt": "fire"}


def test_clip_distance_only_from_clip_vectors_and_against_the_reference() -> None:
    t = QualityTracker()
    t.frame(1, "keyframe", "p", solid((1, 2, 3)))
    t.embedded(1, np.array([1.0, 0.0]), embedder="colour/layout features", clip=False)
    clip = t.describe()["clip"]
    assert clip["distance"] is None and "colour/layout features" in clip["reason"]  # type: ignore[index]
    t.embedded(1, np.array([1.0, 0.0]), embedder="CLIP", clip=True)
    t.embedded(5, np.array([0.6, 0.8]), embedder="CLIP", clip=True)
    assert t.describe()["clip"] == {"distance": pytest.approx(0.4), "index": 5, "embedder": "CLIP"}
    assert t.frame(6, "inbetween", "p", solid((1, 2, 3)))["clip_distance"] == pytest.approx(0.4)


def test_rolling_summaries_cover_the_last_frames_only() -> None:
    t = QualityTracker(window=3)
    for i, v in enumerate([100, 0, 0, 0, 0], start=1):
        t.frame(i, "img2img", "p", solid((v, v, v)))
    recent = t.describe()["recent"]
    # The jump (frame 2) is out of the window: frames 3, 4 and 5 did not change.
    assert recent == {**recent, "frames": 3, "change_p95": 0.0, "sharpness_min": 0.0}  # type: ignore[dict-item]
    assert recent["brightness_drift_max"] == -1.0  # type: ignore[index]  (all black against the grey reference)
    # Status reads the summaries several times a frame; each read after a new frame sees it.
    assert t.describe()["recent"] == recent
    t.frame(6, "img2img", "p", solid((255, 255, 255)))
    after = t.describe()["recent"]
    assert after["change_p95"] > 0.5 and after["brightness_drift_max"] > 0  # type: ignore[index, operator]


def test_the_metrics_log_rotates_past_its_bound(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / METRICS_LOG, max_bytes=400)
    for i in range(40):
        log.append({"index": i, "pad": "x" * 20})
    assert log.path.stat().st_size <= 400 and log.old.stat().st_size <= 400
    lines = [json.loads(x) for x in (log.old.read_text() + log.path.read_text()).splitlines()]
    assert [r["index"] for r in lines] == list(range(40 - len(lines), 40))  # newest kept, in order


# --- beside a running dream ----------------------------------------------------------------------


async def test_every_published_frame_is_measured_into_status_and_the_log(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = fast_config(
        tmp_path,
        generation={
            "mode": "hybrid",
            "width": 64,
            "height": 128,
            "cache": {"enabled": True, "embedder": "features"},
        },
    )
    engine = BuiltinEngine()
    await engine.start()
    cache = FrameCacheService(cfg)
    quality = QualityService(cfg)
    controller = build_controller(
        cfg, engine, clock=clock, max_frames=24, fsync=False, frame_cache=cache, services=[cache, quality]
    )
    seen: list[int] = []
    controller.events.subscribe(FramePublished, lambda e: seen.append(e.index))
    await hang_guard(controller.run(), 60)  # closes the services: what was queued is measured
    await engine.close()

    lines = [json.loads(x) for x in (cfg.output_dir / METRICS_LOG).read_text().splitlines()]
    assert len(lines) + quality.skipped == 24 == len(seen)
    assert [r["index"] for r in lines] == sorted(r["index"] for r in lines)
    keys = {"brightness", "contrast", "saturation", "clipped", "sharpness", "change", "histogram_distance"}
    assert keys <= set(lines[-1])
    assert all(0.0 <= r["saturation"] <= 1.0 and r["sharpness"] > 0 for r in lines)
    assert lines[0]["reference"] == lines[0]["index"]  # the first keyframe

    section = json.loads((cfg.output_dir / "status.json").read_text())["quality"]
    assert section["measured"] == len(lines)
    assert section["latest"] == lines[-1]
    assert section["recent"]["frames"] == len(lines)
    assert section["recent"]["change_p95"] is not None
    # The cache embeds with colour/layout features here, so no CLIP distance, and it says why.
    assert section["clip"]["distance"] is None and "not CLIP" in section["clip"]["reason"]


async def test_the_metrics_are_those_of_the_published_pictures(tmp_path: Path, clock: FakeClock) -> None:
    # The service measures the picture the event carries (no PNG decode); what it measured must be
    # what was written: each logged record equals the metrics of the history file of that index.
    from PIL import Image

    from dream_window.values.quality import downscale, measure

    cfg = fast_config(tmp_path, generation={"mode": "img2img", "width": 64, "height": 96})
    engine = BuiltinEngine()
    await engine.start()
    quality = QualityService(cfg)
    controller = build_controller(cfg, engine, clock=clock, max_frames=6, fsync=False, services=[quality])
    await hang_guard(controller.run(), 60)
    await engine.close()
    lines = [json.loads(x) for x in (cfg.output_dir / METRICS_LOG).read_text().splitlines()]
    compared = 0
    for record in lines:
        path = controller.output.path_for(record["index"])
        if not path.exists():
            continue
        with Image.open(path) as img:
            want = measure(downscale(np.asarray(img.convert("RGB")))).to_dict()
        assert {k: record[k] for k in want} == want, record["index"]
        compared += 1
    assert compared >= 3


async def test_an_event_without_the_picture_is_measured_from_its_png(
    tmp_path: Path, clock: FakeClock
) -> None:
    import io

    from PIL import Image

    from dream_window.values.quality import downscale, measure

    cfg = fast_config(tmp_path)
    engine = BuiltinEngine()
    quality = QualityService(cfg)
    controller = build_controller(cfg, engine, clock=clock, fsync=False, services=[quality])
    await quality.start(controller)
    rgb = np.random.default_rng(3).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    controller.events.emit(FramePublished(7, "p", "keyframe", tmp_path / "gone.png", buf.getvalue()))
    await hang_guard(quality.close(), 30)
    [record] = [json.loads(x) for x in (cfg.output_dir / METRICS_LOG).read_text().splitlines()]
    want = measure(downscale(rgb)).to_dict()
    assert record["index"] == 7 and {k: record[k] for k in want} == want
