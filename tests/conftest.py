"""Shared fakes and fixtures. Area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from comfyui_fake import ComfyTestServer, running_comfy_server
from dream_window.config import DreamConfig, load_config


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Deadlines in tests are hang guards, never the thing tested. Each is stretched by this much, so
# that a CI machine under load (two suites at once, a busy loop on both cores) does not trip one a
# quiet machine meets in a fraction of the time; a failing test only takes longer to say so.
# `make mutation` sets it to 1: there a mutant that hangs a test would wait out the full guard,
# thousands of times over.
SLACK = float(os.environ.get("DREAM_WINDOW_TEST_SLACK", "3.0"))

T = TypeVar("T")


async def until(pred: Callable[[], Any], what: str = "the condition", limit: float = 20.0) -> None:
    """Poll ``pred`` until it is truthy; fail naming ``what`` after ``limit`` (times ``SLACK``)
    seconds (a bound on a hang, not a timing assertion)."""

    async def wait() -> None:
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), limit * SLACK)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what} ({limit * SLACK:g} s)") from None


async def hang_guard(aw: Awaitable[T], limit: float) -> T:
    """``asyncio.wait_for(aw, limit * SLACK)``: a bound on a hang, never the thing tested."""
    return await asyncio.wait_for(aw, limit * SLACK)


def hang_timeout(limit: float) -> asyncio.Timeout:
    """``asyncio.timeout(limit * SLACK)``: a bound on a hang, never the thing tested."""
    return asyncio.timeout(limit * SLACK)


def dream_window(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m dream_window ARGS`` as a user runs it, in ``cwd``, to its end (``env`` is added
    to this process's environment; ``timeout`` is a hang guard)."""
    return subprocess.run(
        [sys.executable, "-m", "dream_window", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def run_cli(*args: str, cwd: Path, limit: float = 60.0) -> tuple[int, str]:
    """``python -m dream_window ARGS`` run to its end in ``cwd``: (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dream_window",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


class FakeClock:
    """A clock tests drive by hand: ``sleep`` advances time instantly (yielding to the loop)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self._wall = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


class ManualClock:
    """A clock that moves only when the test moves it: ``sleep`` waits until :meth:`advance` has
    carried time to its end (status.json's heartbeat held, its rate limit stepped by hand)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=self.t)

    @property
    def sleeping(self) -> int:
        """Sleeps not over yet."""
        return sum(not fut.done() for _end, fut in self._sleepers)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for end, fut in self._sleepers:
            if end <= self.t and not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        entry = (self.t + max(0.0, seconds), fut)
        self._sleepers.append(entry)
        if seconds <= 0:
            fut.set_result(None)
        try:
            await fut
        finally:
            self._sleepers.remove(entry)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def dream_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own DREAM_WINDOW_HOME: no test touches the real home directory."""
    home = tmp_path_factory.mktemp("dw-home")
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(home))
    return home


def write_config(directory: Path, data: dict[str, Any] | str) -> Path:
    import yaml

    path = directory / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def fast_config(tmp_path: Path, **sections: dict[str, Any]) -> DreamConfig:
    """A config for tests: built-in backend, no pauses between frames, small history, no viewer."""
    data: dict[str, Any] = {
        "system": {"backend": "builtin", "output_dir": "output", "cache_dir": "cache"},
        "generation": {
            "frame_interval": 0,
            "keyframe_interval": 3,
            "interpolation_frames": 2,
            "buffer_size": 4,
            "history_size": 50,
            "cache": {"enabled": False},
        },
        "viewer": {"enabled": False},
        "game_detection": {"enabled": False},
    }
    for name, values in sections.items():
        merged = dict(data.get(name, {}))
        for k, v in values.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
        data[name] = merged
    return load_config(write_config(tmp_path, data))


# The ComfyUI test server and the recorded traffic of a real ComfyUI, shared by tests/backends/comfyui
# (our client against the server) and tests/comfyui_fake (the server against the recording).
# The recording lives beside the repository (``../shared/comfyui``, as CI checks it out); tests that
# replay it skip with a reason when it is absent. The test server itself needs nothing from there.


def _recorded_dir() -> Path:
    """``../shared`` beside the repository; one level further up when the tests run from a copy of
    it inside the repository (mutmut runs them from ``mutants/``), so none of them skips there."""
    here = Path(__file__).resolve()
    candidates = [p / "shared" / "comfyui" / "recorded" for p in here.parents[2:4]]
    return next((c for c in candidates if c.is_dir()), candidates[0])


RECORDED = _recorded_dir()


@pytest.fixture
def recorded() -> Path:
    if not (RECORDED / "01_server_info" / "object_info.json").is_file():
        pytest.skip(f"the recorded ComfyUI traffic is not at {RECORDED} (clone shared/ beside the repo)")
    return RECORDED


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
async def comfy_server(tmp_path: Path) -> AsyncIterator[ComfyTestServer]:
    """A ComfyUI test server on a free loopback port (no step delay)."""
    async with running_comfy_server(root=tmp_path / "comfy") as server:
        yield server


def pytest_sessionstart(session: pytest.Session) -> None:
    """The random order's seed on the first line even under ``-q`` (pytest-randomly prints it in
    the header, which ``-q`` hides): a failure that depends on order can then be replayed."""
    seed = getattr(session.config.option, "randomly_seed", None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if seed is not None and reporter is not None and session.config.pluginmanager.has_plugin("randomly"):
        reporter.write_line(f"random test order: replay it with --randomly-seed={seed}")
