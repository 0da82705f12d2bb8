"""One dream-window per output folder, end to end: real ``dream-window run`` processes, a second
one refused with exit 2, ``kill -9``, and ``status`` telling a dead dream from a running one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

import tests.conftest
from dream_window.instances import live_instances

STARTUP_S = 120.0  # a deadline for a slow machine, not a measurement


def dream_window(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return tests.conftest.dream_window(*args, cwd=cwd, timeout=STARTUP_S)


def start_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:  # a file, not a pipe nobody reads: the child never blocks on it
        return subprocess.Popen(
            [sys.executable, "-m", "dream_window", "run", "--backend", "builtin", "-c", str(config)],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )


def wait_until_running(proc: subprocess.Popen[bytes], status_file: Path, log: Path) -> None:
    """Until ``proc`` is dreaming and registered (or has died, which fails the test)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dream-window run exited {proc.returncode}: {log.read_text()}"
        try:
            status = json.loads(status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            status = {}
        mine = status.get("pid") == proc.pid and status.get("state") == "running"
        if mine and any(r.pid == proc.pid for r in live_instances()):
            return
        time.sleep(0.1)
    raise AssertionError(f"dream-window run did not start within {STARTUP_S} s: {log.read_text()}")


def test_one_dream_per_output_folder_and_a_killed_one_is_not_running(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "system": {"backend": "builtin", "output_dir": "output"},
                "generation": {
                    "width": 128,
                    "height": 192,
                    "frame_interval": 0.2,
                    "cache": {"enabled": False},
                },
                "viewer": {"enabled": True, "port": 0},
                "game_detection": {"enabled": False},
            }
        ),
        encoding="utf-8",
    )
    status_file = tmp_path / "output" / "status.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    first = start_run(config, tmp_path / "first.log")
    try:
        wait_until_running(first, status_file, tmp_path / "first.log")

        second = dream_window("run", "--backend", "builtin", "-c", str(config), cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "already running on output folder" in second.stderr

        shown = dream_window("status", cwd=elsewhere)  # found in the registry, no config here
        assert shown.returncode == 0 and "running" in shown.stdout, shown.stderr
    finally:
        first.kill()  # kill -9: no status "stopped", no unregistering, no unlocking
        first.wait()

    r = dream_window("status", "-c", str(config), cwd=elsewhere)
    assert r.returncode == 1
    assert r.stdout.startswith("not running (last seen ") and f"process {first.pid} gone)" in r.stdout

    again = dream_window("run", "--backend", "builtin", "-c", str(config), "--max-frames", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(status_file.read_text(encoding="utf-8"))["state"] == "stopped"
    assert live_instances() == []
