"""Fakes for the autostart tests: a runner that records argv, and a host per platform."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from dream_window.autostart import CommandResult, Host
from dream_window.errors import AutostartError
from dream_window.user_dirs import UserDirs


class FakeRunner:
    """Answers each command from a table (default: exit 0, no output), records every argv, and
    raises like the real runner for a tool named in ``missing``."""

    def __init__(
        self, answers: dict[tuple[str, ...], CommandResult] | None = None, missing: Sequence[str] = ()
    ) -> None:
        self.answers = answers or {}
        self.missing = set(missing)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[0] in self.missing:
            raise AutostartError(f"{argv[0]} not found: is it installed and on PATH?", command=list(argv))
        return self.answers.get(argv, CommandResult(0, ""))


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def dirs(tmp_path: Path) -> UserDirs:
    root = tmp_path / "dw"
    return UserDirs(
        config=root / "config",
        data=root / "data",
        cache=root / "cache",
        logs=root / "logs",
        runtime=root / "run",
    )


@pytest.fixture
def config(dirs: UserDirs) -> Path:
    dirs.config.mkdir(parents=True)
    dirs.config_file.write_text("{}\n", encoding="utf-8")
    return dirs.config_file


@pytest.fixture
def linux_host(tmp_path: Path) -> Host:
    # The real interpreter: systemd-analyze checks that ExecStart's binary exists.
    return Host(platform="linux", home=tmp_path / "home", env={}, python=Path(sys.executable), uid=1000)


@pytest.fixture
def mac_host(tmp_path: Path) -> Host:
    python = tmp_path / "venv" / "bin" / "python"
    return Host(platform="darwin", home=tmp_path / "home", env={}, python=python, uid=501)


@pytest.fixture
def windows_host(tmp_path: Path) -> Host:
    scripts = tmp_path / "venv" / "Scripts"
    scripts.mkdir(parents=True)
    for exe in ("python.exe", "pythonw.exe"):
        (scripts / exe).write_bytes(b"")
    return Host(
        platform="win32",
        home=tmp_path / "home",
        env={"USERNAME": "ann", "USERDOMAIN": "DESKTOP-1"},
        python=scripts / "python.exe",
    )
