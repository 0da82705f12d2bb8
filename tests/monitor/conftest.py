"""Monitor fixtures: a real Xvfb server, real processes with game-like names, hand-written fakes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from dream_window.monitor.detector import CheckContext, Reading


@dataclass
class XServer:
    display: str
    proc: subprocess.Popen[bytes]


def start_xvfb() -> XServer:
    """Start a real X server. Xvfb picks a free display number and tells us (-displayfd)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    # -noreset: the server must not reset (dropping new connections) each time the last client leaves.
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        number = f.readline().strip().decode()
    if not number:
        stop_xvfb(XServer("", proc))
        pytest.skip("Xvfb did not start")
    return XServer(f":{number}", proc)


def stop_xvfb(server: XServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def xvfb() -> Iterator[XServer]:
    server = start_xvfb()
    try:
        yield server
    finally:
        stop_xvfb(server)


def start_named_process(directory: Path, name: str) -> subprocess.Popen[bytes]:
    """Run a copy of ``sleep`` under ``name`` (a real process whose psutil name() is ``name``)."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "60"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # exec has happened once the kernel reports the new name
        try:
            if psutil.Process(proc.pid).name() == name[:15] or psutil.Process(proc.pid).name() == name:
                return proc
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"could not start a process named {name}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def game_process(tmp_path: Path) -> Iterator[Any]:
    """Start processes with game-like names; all are stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, directory: Path | None = None) -> subprocess.Popen[bytes]:
        p = start_named_process(directory or tmp_path / "bin", name)
        procs.append(p)
        return p

    yield start
    for p in procs:
        stop_process(p)


class ScriptedDetector:
    """A detector that answers what the test sets, and counts how often it was asked."""

    def __init__(self, name: str, reading: Reading | None = None) -> None:
        self.name = name
        self.reading = reading or Reading.clear("nothing")
        self.calls: list[CheckContext] = []
        self.closed = False

    def check(self, ctx: CheckContext) -> Reading:
        self.calls.append(ctx)
        if isinstance(self.reading, Exception):
            raise self.reading
        return self.reading

    def describe(self) -> str:
        return "scripted"

    def close(self) -> None:
        self.closed = True


class FakeGpuReader:
    """NVML as the GPU detector sees it, scripted by the test."""

    def __init__(self, *, per_process: bool = True, compute_pids: set[int] | None = None) -> None:
        self.util = 0.0
        self.procs: dict[int, float] | None = {} if per_process else None
        self.on_device = compute_pids
        self.fail: Exception | None = None
        self.closed = False

    def device_count(self) -> int:
        return 1

    def device_name(self, index: int) -> str:
        return "Fake RTX"

    def utilization(self, index: int) -> float:
        if self.fail is not None:
            raise self.fail
        return self.util

    def process_utilization(self, index: int) -> dict[int, float] | None:
        return None if self.procs is None else dict(self.procs)

    def compute_pids(self, index: int) -> set[int] | None:
        return self.on_device

    def close(self) -> None:
        self.closed = True


PYTHON = sys.executable
