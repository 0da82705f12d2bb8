"""A live cadence (``frame_interval`` down to 1/60 s): the history on disk stays bounded and keeps a
frame per ``history_interval``, status.json is rate-limited without losing the newest frame, and
every frame still goes out with its PNG bytes."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import AUTO_HISTORY_S, GenerationConfig
from dream_window.dream.output import CURRENT_FRAME, FRAMES_DIR, OutputWriter, encode_png, read_label
from dream_window.dream.status import StatusWriter
from dream_window.events import FramePublished
from dream_window.rainmeter import RainmeterWriter
from dream_window.rainmeter.status_ini import KEEP, STATUS_INI
from dream_window.values.frame import Frame
from tests.conftest import FakeClock, fast_config

RATE = 60  # frames a second


def frame(i: int) -> Frame:
    rng = np.random.default_rng(i)
    return Frame(Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)), f"p{i}", "inbetween", 1.0)


def history(out: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (out / FRAMES_DIR).glob("frame_*.png"))


def test_history_at_60_frames_a_second_keeps_a_frame_per_interval_and_stays_bounded(tmp_path: Path) -> None:
    clock = FakeClock(start=0.0)
    w = OutputWriter(tmp_path, history_size=10, history_interval=0.5, fsync=False, monotonic=clock.monotonic)
    published = []
    for i in range(1, 1201):  # 20 s at 60 frames/s
        clock.t = (i - 1) / RATE  # (not summed: i/60 is exact at every half second)
        published.append(w.publish(frame(i)))
    # One frame in 30 is kept (frames 1, 31, 61 ...), and only the newest 10 of those.
    assert history(tmp_path) == list(range(1201 - 30 * 10, 1201, 30))
    assert [p.index for p in published if p.kept] == list(range(1, 1201, 30))
    # Every frame was published: numbered, written as the current frame, its bytes handed on.
    assert [p.index for p in published] == list(range(1, 1201))
    assert w.last_index == 1200
    _img, label = read_label(tmp_path / CURRENT_FRAME)
    assert label is not None and label.index == 1200 and label.prompt == "p1200"
    last = published[-1]
    assert not last.kept and last.path == tmp_path / CURRENT_FRAME
    assert last.png == (tmp_path / CURRENT_FRAME).read_bytes()
    kept = published[1170]
    assert kept.kept and kept.path == w.path_for(1171) and kept.png == kept.path.read_bytes()


def test_history_interval_zero_keeps_every_frame(tmp_path: Path) -> None:
    clock = FakeClock(start=0.0)
    w = OutputWriter(tmp_path, history_size=50, history_interval=0.0, fsync=False, monotonic=clock.monotonic)
    for i in range(1, 41):
        w.publish(frame(i))  # the clock never moves: all at one instant
    assert history(tmp_path) == list(range(1, 41))


def test_find_answers_the_newest_from_memory_a_kept_one_from_its_file_and_nothing_else(
    tmp_path: Path,
) -> None:
    clock = FakeClock(start=0.0)
    w = OutputWriter(tmp_path, history_size=2, history_interval=0.5, fsync=False, monotonic=clock.monotonic)
    assert w.find(1) is None  # nothing published yet
    published = []
    for i in range(1, 62):  # frames 1 and 31 kept, then 61 (which pushes 1 out of a history of 2)
        clock.t = (i - 1) / RATE
        published.append(w.publish(frame(i)))
    newest = w.find(61)
    assert newest is not None and newest.source == published[-1].png and newest.label == published[-1].label
    kept = w.find(31)
    assert kept is not None and kept.source == w.path_for(31) and kept.label is None
    assert w.find(1) is None  # pruned
    assert w.find(60) is None  # published, never kept, no longer the newest
    assert w.find(62) is None  # not published yet
    w.publish(frame(62))  # (clock unchanged: not kept)
    before = w.find(61)
    assert before is not None and before.source == w.path_for(61)  # no longer the newest: its file
    unkept = w.find(62)
    assert unkept is not None and isinstance(unkept.source, bytes) and not w.path_for(62).exists()


def test_numbers_go_on_after_a_restart_from_the_current_frame_not_the_last_kept(tmp_path: Path) -> None:
    clock = FakeClock(start=0.0)
    w = OutputWriter(tmp_path, history_size=5, history_interval=0.5, fsync=False, monotonic=clock.monotonic)
    for i in range(1, 21):
        clock.t = i / RATE
        w.publish(frame(i))
    assert history(tmp_path) == [1]  # 20 frames in a third of a second: only the first kept
    again = OutputWriter(tmp_path, history_size=5, history_interval=0.5, fsync=False)
    assert again.last_index == 20
    assert again.publish(frame(21)).index == 21


@pytest.mark.parametrize(
    ("settings", "every_s"),
    [
        ({}, 0.0),  # the default cadence: every frame
        ({"frame_interval": 0}, 0.0),  # as fast as frames come: every frame
        ({"frame_interval": 1 / 60}, AUTO_HISTORY_S),  # a live cadence
        ({"frame_interval": 0.049}, AUTO_HISTORY_S),
        ({"frame_interval": 0.05}, 0.0),  # 20 frames/s and slower: every frame
        ({"frame_interval": 1 / 60, "history_interval": 0}, 0.0),
        ({"history_interval": 2.5}, 2.5),
    ],
)
def test_history_interval_auto_follows_the_cadence(settings: dict[str, Any], every_s: float) -> None:
    assert GenerationConfig(**settings).history_every_s == every_s


def test_frames_are_encoded_with_zlibs_run_length_strategy_and_round_trip() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
    rgb[:32] = 7  # a flat half: run lengths
    data = encode_png(Image.fromarray(rgb), {"prompt": "a cat"})
    with Image.open(io.BytesIO(data)) as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), rgb)
        assert img.text["prompt"] == "a cat"
    # The IDAT stream is the RLE strategy's: it decompresses, and level 6's default strategy
    # (LZ77 matches) makes a different stream for the same rows.
    idat = _idat(data)
    assert zlib.decompress(idat)
    assert idat != _idat(_encode_default(rgb))


def _idat(png: bytes) -> bytes:
    out, pos = b"", 8
    while pos < len(png):
        n = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            out += png[pos + 8 : pos + 8 + n]
        pos += 12 + n
    return out


def _encode_default(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class CountingStatus(StatusWriter):
    """status.json as written, with the frame count of every write."""

    def __init__(self, output_dir: Path) -> None:
        super().__init__(output_dir)
        self.frame_counts: list[int] = []

    def write(self, status: dict[str, Any]) -> None:
        self.frame_counts.append(int(status["frame_count"]))
        super().write(status)


async def live_run(
    tmp_path: Path, frames: int, status_interval: float
) -> tuple[CountingStatus, list[FramePublished]]:
    cfg = fast_config(
        tmp_path,
        generation={
            "width": 64,
            "height": 64,
            "frame_interval": 1 / 60,
            "history_size": 4,
            "status_interval": status_interval,
        },
    )
    c = build_controller(
        cfg, BuiltinEngine(offload=False), max_frames=frames, fsync=False, services=[RainmeterWriter(cfg)]
    )
    counting = CountingStatus(cfg.output_dir)
    c.status_writer = counting
    seen: list[FramePublished] = []
    c.events.subscribe(FramePublished, seen.append)
    await c.run()
    return counting, seen


async def test_a_live_cadence_end_to_end_publishes_every_frame_with_a_bounded_history(tmp_path: Path) -> None:
    counting, seen = await live_run(tmp_path, 90, status_interval=0.0)
    out = tmp_path / "output"
    assert [e.index for e in seen] == list(range(1, 91))
    assert all(e.png.startswith(b"\x89PNG") for e in seen)  # the viewer pushes these bytes
    kept = history(out)
    assert 1 <= len(kept) <= 4 and kept[-1] <= 90
    assert kept == [e.index for e in seen if e.path != out / CURRENT_FRAME][-len(kept) :]
    final = json.loads((out / "status.json").read_text())
    assert final["frame_count"] == 90 and final["frame_index"] == 90
    # status_interval 0: a status.json after every frame.
    assert set(range(1, 91)) <= set(counting.frame_counts)
    # The Rainmeter skin's files name the newest frame, and keep only a few.
    assert "FrameName=frame_000090.png" in (out / STATUS_INI).read_text(encoding="utf-8").splitlines()
    skin_frames = sorted(p.name for p in (out / "rainmeter").glob("frame_*.png"))
    assert skin_frames[-1] == "frame_000090.png" and len(skin_frames) <= KEEP


async def test_status_after_frames_is_rate_limited_and_the_newest_frame_still_lands(tmp_path: Path) -> None:
    # A minute, longer than this run: the frames' statuses wait (only the 5 s heartbeat writes
    # meanwhile), and the stop writes the newest: a frame's status is never lost, only merged
    # with later ones.
    counting, seen = await live_run(tmp_path, 40, status_interval=60.0)
    assert len(seen) == 40
    after_frames = [n for n in counting.frame_counts if n > 0]
    assert after_frames[-1] == 40
    assert len(after_frames) < 20  # with status_interval 0: one for each of the 40 frames
    final = json.loads((tmp_path / "output" / "status.json").read_text())
    assert final["frame_count"] == 40 and final["state"] == "stopped"
