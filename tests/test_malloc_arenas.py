"""The malloc arena cap, seen in glibc's own accounting: eight threads allocating at once get
eight heaps of their own without it and share two with it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dream_window.malloc_arenas import ARENAS

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# Eight threads hold memory from malloc at the same moment (64 KiB objects: under glibc's mmap
# threshold, so from an arena), then glibc prints its arenas ("Arena N:") on stderr.
SCRIPT = """
import ctypes, ctypes.util, sys, threading
from dream_window.malloc_arenas import cap_malloc_arenas
print(cap_malloc_arenas() if sys.argv[1] == "cap" else None)
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    held = [bytearray(64 * 1024) for _ in range(200)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
"""


def _arenas(how: str, env: dict[str, str]) -> tuple[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    return proc.stdout.strip(), sum(line.startswith("Arena ") for line in proc.stderr.splitlines())


@pytest.mark.skipif(not GLIBC, reason="glibc's arenas (Windows and macOS allocators have no such knob)")
def test_the_cap_keeps_busy_threads_to_two_heaps() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    said, arenas = _arenas("cap", env)
    assert said == "True" and arenas == ARENAS
    said, arenas = _arenas("none", env)
    assert said == "None" and arenas > ARENAS  # without it, threads take heaps of their own


@pytest.mark.skipif(not GLIBC, reason="glibc's arenas")
def test_a_users_own_setting_wins() -> None:
    said, arenas = _arenas("cap", {**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert said == "False" and arenas == 4
