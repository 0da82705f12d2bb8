"""``dream-window pause|resume|skip|prompt`` against a running service on a loopback port."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from dream_window.cli import main
from dream_window.dream.controller import State
from tests.web.conftest import DreamFactory


def write_config(path: Path, port: int, **viewer: object) -> Path:
    path.write_text(
        yaml.safe_dump({"viewer": {"port": port, **viewer}, "system": {"backend": "builtin"}}),
        encoding="utf-8",
    )
    return path


async def cli(*args: str) -> Result:
    # The CLI is synchronous (urllib); run it off the loop that serves the API.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_commands_drive_the_running_dream(dreams: DreamFactory, tmp_path: Path) -> None:
    d = await dreams(run=True)
    await d.next_frame()
    cfg = write_config(tmp_path / "cli.yaml", d.server.port)

    r = await cli("pause", "-c", str(cfg))
    assert (r.exit_code, r.output.strip()) == (0, "paused (user)")
    assert d.controller.state is State.PAUSED

    r = await cli("pause", "-c", str(cfg))
    assert r.exit_code == 1 and "already paused" in r.output and "HTTP 409" in r.output

    r = await cli("resume", "-c", str(cfg))
    assert (r.exit_code, r.output.strip()) == (0, "resumed")
    assert d.controller.state is State.RUNNING

    before = d.controller.prompts.current
    r = await cli("skip", "-c", str(cfg))
    assert r.exit_code == 0 and r.output.startswith("next prompt: ")
    assert d.controller.prompts.current != before

    r = await cli("prompt", "-c", str(cfg), "a quiet harbour at dawn")
    assert (r.exit_code, r.output.strip()) == (0, "prompt set: a quiet harbour at dawn (held for 10 min)")
    assert d.controller.prompts.current == "a quiet harbour at dawn"

    r = await cli("mode", "-c", str(cfg), "interpolate")
    assert (r.exit_code, r.output.strip()) == (0, "mode: interpolate")
    assert d.controller.mode.name == "interpolate"
    r = await cli("mode", "-c", str(cfg), "slideshow")
    assert r.exit_code == 2 and "slideshow" in r.output  # click names the choices

    r = await cli("prompt", "-c", str(cfg), "   ")
    assert r.exit_code == 1 and "must not be empty" in r.output


async def test_not_running_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await cli("pause", "-c", str(write_config(tmp_path / "c.yaml", port)))
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and r.output.startswith("error: dream-window is not running")


async def test_viewer_disabled_is_explained(tmp_path: Path) -> None:
    r = await cli("skip", "-c", str(write_config(tmp_path / "c.yaml", 8765, enabled=False)))
    assert r.exit_code == 1 and "viewer.enabled: false" in r.output
