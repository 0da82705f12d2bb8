"""A process killed at any point during add or eviction leaves, after the next open, no row without
its image and no orphan image. Real subprocesses, real SIGKILL / os._exit, real files."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dream_window.cache.images import pixel_hash
from dream_window.cache.manager import CacheManager

MAX = 3

CHILD = r"""
import os, sys
sys.path[:0] = [{src!r}, {root!r}]
from dream_window.cache.manager import CacheManager
from tests.cache.conftest import picture

step, nth, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hits = {{}}
def checkpoint(name):
    hits[name] = hits.get(name, 0) + 1
    if name == step and hits[name] == nth:
        os._exit(9)  # no cleanup, no finally: as abrupt as a kill
m = CacheManager(sys.argv[4], max_size={max}, checkpoint=checkpoint)
print("ready", flush=True)
i = start
while True:
    m.add(picture(i, size=(16, 16)), prompt=f"frame {{i}}")
    if i % 3 == 0:
        m.evict_to({max} - 1)
    i += 1
"""


def _child(tmp_path: Path, step: str, nth: int, start: int) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    code = CHILD.format(src=str(root / "src"), root=str(root), max=MAX)
    return subprocess.Popen(
        [sys.executable, "-c", code, step, str(nth), str(start), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_consistent(cache_dir: Path) -> None:
    m = CacheManager(cache_dir, max_size=MAX)  # the next start: reconcile runs here
    rows = {e.cache_id for e in m.get_all()}
    files = set(m.store.ids())
    assert rows == files, f"rows without image: {rows - files}; orphan images: {files - rows}"
    assert len(rows) <= MAX
    for cid in rows:
        assert pixel_hash(m.load_image(cid)) == cid  # every file whole, holding what its name says
    assert not list(m.store.root.rglob("*.tmp"))
    m.close()


@pytest.mark.parametrize(
    "step", ["image-written", "row-inserted", "rows-evicted", "committed", "image-unlinked-0"]
)
def test_killed_at_each_step(tmp_path: Path, step: str) -> None:
    # The 5th time the step is reached the cache is full, so evictions are in play.
    proc = _child(tmp_path, step, 5, 0)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 9, err
    _assert_consistent(tmp_path)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this platform")
def test_killed_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(1234)
    for round_ in range(4):
        proc = _child(tmp_path, "never", 0, round_ * 1000)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.02, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        _assert_consistent(tmp_path)
