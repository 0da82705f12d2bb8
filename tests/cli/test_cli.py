"""The dream-window command as a user runs it: real subprocesses, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import write_config

FAST = {
    "system": {"backend": "builtin", "comfyui_url": "http://127.0.0.1:9"},
    "generation": {"frame_interval": 0.05, "keyframe_interval": 3, "cache": {"enabled": False}},
    "viewer": {"enabled": False},
    "game_detection": {"enabled": False},
}


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dream_window", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("mode", ["img2img", "interpolate", "hybrid"])
def test_run_max_frames_produces_frames_and_valid_status(tmp_path: Path, mode: str) -> None:
    cfg = write_config(tmp_path, FAST)
    r = cli(
        "run",
        "--config",
        str(cfg),
        "--mode",
        mode,
        "--max-frames",
        "6",
        "--output",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    status = json.loads((tmp_path / "o" / "status.json").read_text())
    assert status["state"] == "stopped" and status["frame_count"] == 6 and status["mode"] == mode
    frames = sorted((tmp_path / "o" / "frames").glob("frame_*.png"))
    assert len(frames) == 6
    with Image.open(tmp_path / "o" / "current_frame.png") as img:
        assert img.size == (256, 512)
    assert "Traceback" not in r.stderr


def test_auto_backend_falls_back_to_builtin_and_says_so_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {**FAST, "system": {"backend": "auto", "comfyui_url": "http://127.0.0.1:9"}})
    r = cli("run", "--config", str(cfg), "--max-frames", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = "ComfyUI at http://127.0.0.1:9 is not answering: connection refused: nothing is listening on 127.0.0.1:9"
    assert r.stderr.count(said) == 1 and "dreaming with the built-in engine (not AI)" in r.stderr
    status = json.loads((tmp_path / "output" / "status.json").read_text())
    assert status["backend"] == "built-in engine (not AI)" and status["backend_is_ai"] is False
    assert said in status["backend_health"]["reason"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--mode", "dreamy"], "Invalid value for '--mode'"),
        (["run", "--max-frames", "0"], "Invalid value for '--max-frames'"),
        (["run", "--config", "missing.yaml"], "does not exist"),
        (["bogus"], "No such command"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_status_command_reads_status_json(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, FAST)
    assert cli("run", "--config", str(cfg), "--max-frames", "2", cwd=tmp_path).returncode == 0
    r = cli("status", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0 and "stopped" in r.stdout and "not AI" in r.stdout
    rj = cli("status", "--config", str(cfg), "--json", cwd=tmp_path)
    assert json.loads(rj.stdout)["frame_count"] == 2
    empty = cli("status", "--output", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert empty.returncode == 1 and "no status file" in empty.stderr


def test_status_says_what_is_on_screen_and_what_comes_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    status = {
        "state": "running",
        "current_prompt": "misty forest",
        "next_prompt": "a lighthouse in fog",
        "prompt_hold": {"prompt": "a lighthouse in fog", "remaining_s": 540.0, "until_skipped": False},
    }
    (out / "status.json").write_text(json.dumps(status), encoding="utf-8")
    r = cli("status", "--output", str(out), cwd=tmp_path)
    rows = {line.split("  ")[0].strip(): line for line in r.stdout.splitlines() if line.strip()}
    assert r.returncode == 0
    assert "misty forest" in rows["prompt"] and "a lighthouse in fog" in rows["next prompt"]
    assert "9 min more" in rows["held"]


def test_doctor_reports_each_part(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, FAST)
    r = cli("doctor", "--config", str(cfg), cwd=tmp_path)
    assert "config" in r.stdout and "output dir" in r.stdout and "writable" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = write_config(tmp_path, FAST)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dream_window", "run", "--config", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    status_path = tmp_path / "output" / "status.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if status_path.exists() and json.loads(status_path.read_text()).get("frame_count", 0) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no frames before the signal")
        proc.send_signal(sig)
        # A hang guard, not a speed assertion: bench/builtin_engine.py measures the stop latency.
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    status = json.loads(status_path.read_text())
    assert status["state"] == "stopped"
    with Image.open(tmp_path / "output" / "current_frame.png") as img:
        img.load()
    state = json.loads((tmp_path / "output" / "state.json").read_text())
    assert state["frame_index"] == status["frame_index"]
