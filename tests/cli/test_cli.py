"""The dream-window command as a user runs it: real subprocesses, exit codes, signals."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import dream_window, hang_guard, until, write_config
from tests.monitor.conftest import start_named_process, stop_process

FAST = {
    "system": {"backend": "builtin", "comfyui_url": "http://127.0.0.1:9"},
    "generation": {"frame_interval": 0.05, "keyframe_interval": 3, "cache": {"enabled": False}},
    "viewer": {"enabled": False},
    "game_detection": {"enabled": False},
}


cli = dream_window  # the command as a user runs it (tests/conftest.py)


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


def test_status_prints_brackets_in_prompts_and_notes_as_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    status = {
        "state": "running",
        "current_prompt": "a castle [oil painting] by night",
        "next_prompt": "[bold]not markup[/bold]",
        "notes": ["local VAE: pip install 'dream-window[ml]'"],
    }
    (out / "status.json").write_text(json.dumps(status), encoding="utf-8")
    r = cli("status", "--output", str(out), cwd=tmp_path, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "a castle [oil painting] by night" in r.stdout
    assert "[bold]not markup[/bold]" in r.stdout
    assert "pip install 'dream-window[ml]'" in r.stdout


def test_doctor_prints_brackets_in_paths_as_written(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, {**FAST, "system": {**FAST["system"], "output_dir": str(tmp_path / "[out]")}}
    )
    r = cli("doctor", "--config", str(cfg), cwd=tmp_path, env={"COLUMNS": "400"})
    assert f"output dir: writable: {tmp_path / '[out]'}" in r.stdout, r.stdout


def test_doctor_line_keeps_install_hints_whole() -> None:
    from rich.console import Console

    from dream_window.cli import check_line
    from dream_window.values.check import Check

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(
        check_line(Check("cache embedder", "warn", "not installed (pip install 'dream-window[ml]')"))
    )
    assert console.export_text().strip() == "! cache embedder: not installed (pip install 'dream-window[ml]')"


def test_doctor_reports_each_part(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, FAST)
    r = cli("doctor", "--config", str(cfg), cwd=tmp_path, env={"COLUMNS": "400"})
    # Nothing fails (ComfyUI not answering is a warning with the built-in backend): exit 0.
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        "✓ config: valid (mode hybrid, model flux-schnell)",
        f"✓ output dir: writable: {tmp_path / 'output'}",
        f"✓ cache dir: writable: {tmp_path / 'cache'}",
    ]
    assert not [line for line in lines if "not writable" in line]
    assert "Traceback" not in r.stdout + r.stderr


def test_a_config_error_found_while_running_exits_2_with_one_line(tmp_path: Path) -> None:
    # The config file itself is valid; the workflow it names is read only once the dream starts.
    (tmp_path / "workflow.json").write_text("not json {", encoding="utf-8")
    cfg = write_config(
        tmp_path,
        {
            **FAST,
            "system": {**FAST["system"], "backend": "comfyui"},
            "comfyui": {"workflow": "workflow.json", "workflow_mapping": {"prompt": "6.text"}},
        },
    )
    r = cli("run", "--config", str(cfg), "--max-frames", "1", cwd=tmp_path, env={"COLUMNS": "400"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        f"config error: comfyui.workflow: {tmp_path / 'workflow.json'} is not JSON: Expecting value (line 1)"
    ]
    assert not list(tmp_path.glob("output/frames/frame_*.png"))


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


async def test_a_run_that_made_no_frame_names_no_file(tmp_path: Path) -> None:
    # A "game" runs from the start, so the dream starts paused and is stopped before any frame.
    game = start_named_process(tmp_path / "bin", "dwquietgame")
    cfg = write_config(
        tmp_path,
        {
            **FAST,
            "game_detection": {"enabled": True, "known_games": ["dwquietgame"], "use_default_games": False},
        },
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dream_window",
        "run",
        "--config",
        str(cfg),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"},
    )
    status_path = tmp_path / "output" / "status.json"
    try:
        await until(
            lambda: status_path.exists() and json.loads(status_path.read_text()).get("state") == "paused",
            "the dream paused for the game",
            limit=60,
        )
        proc.send_signal(signal.SIGTERM)
        _, err = await hang_guard(proc.communicate(), 30)  # a hang guard
    finally:
        if proc.returncode is None:
            proc.kill()
        stop_process(game)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert json.loads(status_path.read_text())["frame_count"] == 0
    assert "stopped before the first frame was made" in stderr
    assert "current_frame.png" not in stderr and not (tmp_path / "output" / "current_frame.png").exists()


def test_the_stop_line_counts_frames_in_words() -> None:
    from dream_window.app import stopped_line

    assert (
        stopped_line(1, Path("o/current_frame.png"))
        == "stopped after 1 frame; last frame o/current_frame.png"
    )
    assert stopped_line(3, Path("c.png")).startswith("stopped after 3 frames;")
    assert "c.png" not in stopped_line(0, Path("c.png"))


def test_runs_with_no_console_at_all_as_under_pythonw(tmp_path: Path) -> None:
    # pythonw.exe (the Windows autostart task) gives the process sys.stdout = sys.stderr = None:
    # nothing may print to them unguarded, or the dream dies at logon with no one to see why.
    cfg = write_config(tmp_path, FAST)
    code = (
        "import sys; sys.stdout = sys.stderr = None; "
        f"sys.argv = ['dream-window', 'run', '--config', {str(cfg)!r}, '--max-frames', '2']; "
        "from dream_window.__main__ import main; main()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "output" / "frames").glob("frame_*.png"))) == 2
