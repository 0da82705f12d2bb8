"""``dream-window pause|resume|skip|prompt|mode|like|dislike`` against a running service on a
loopback port: by its config's address, and found in the registry of running instances from any
folder."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from dream_window.cli import main
from dream_window.config import DreamConfig
from dream_window.dream.controller import State
from dream_window.dream.service import Service
from dream_window.instances import RegistryService
from dream_window.web import ViewerService
from dream_window.web.security import token_path
from tests.conftest import free_port, hang_guard
from tests.web.conftest import DreamFactory
from tests.web.test_api import RecordingFrameCache


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

    # A bracketed word is the user's text, not markup: it reaches the dream and the screen whole.
    r = await cli("prompt", "-c", str(cfg), "a castle [oil painting] by night")
    assert (r.exit_code, r.output.strip()) == (
        0,
        "prompt set: a castle [oil painting] by night (held for 10 min)",
    )
    assert d.controller.prompts.current == "a castle [oil painting] by night"


@pytest.mark.parametrize("text", ["", "   ", "\t"])
async def test_an_empty_prompt_is_a_usage_error_before_any_service_is_asked(
    text: str, tmp_path: Path
) -> None:
    # Nothing listens on the port: the check must come before the service is looked for.
    r = await cli("prompt", "-c", str(write_config(tmp_path / "c.yaml", free_port())), text)
    assert r.exit_code == 2
    assert "must not be empty" in r.output and "not running" not in r.output


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


# --- found in the registry --------------------------------------------------------------------


def registered(cfg: DreamConfig) -> Sequence[Service]:
    """The services ``dream-window run`` has for this: the viewer, then the registration."""
    return [ViewerService(cfg), RegistryService(cfg, token_path=token_path)]


async def test_a_running_dream_is_controlled_from_another_folder_without_a_config(
    dreams: DreamFactory, tmp_path: Path
) -> None:
    d = await dreams(run=True, serve=False, services=registered)
    await d.next_frame()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Another process, as a user would run it: no config.yaml here, nothing but the registry.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dream_window",
        "pause",
        cwd=elsewhere,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await hang_guard(proc.communicate(), 120)
    assert (proc.returncode, out.decode().strip()) == (0, "paused (user)"), err.decode()
    assert d.controller.state is State.PAUSED


async def test_several_running_dreams_are_listed_until_one_is_picked(
    dreams: DreamFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await dreams(run=True, serve=False, services=registered)
    b = await dreams(run=True, serve=False, services=registered)
    await asyncio.gather(a.next_frame(), b.next_frame())
    a_out, b_out = a.controller.config.output_dir.resolve(), b.controller.config.output_dir.resolve()
    monkeypatch.chdir(tmp_path)  # no config.yaml here to name one

    r = await cli("skip")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output.startswith("error: 2 dream-windows are running (pid ")
    assert f"output {a_out}, viewer http://127.0.0.1:" in r.output and f"output {b_out}," in r.output
    assert r.output.rstrip().endswith("pick one with --output DIR or --config FILE")

    r = await cli("pause", "--output", str(b_out))
    assert (r.exit_code, r.output.strip()) == (0, "paused (user)")
    assert (a.controller.state, b.controller.state) == (State.RUNNING, State.PAUSED)

    cfg = tmp_path / "a.yaml"  # names a's folder, and no viewer port: the registry has it
    cfg.write_text(yaml.safe_dump({"system": {"output_dir": str(a_out)}}), encoding="utf-8")
    r = await cli("pause", "-c", str(cfg))
    assert (r.exit_code, a.controller.state) == (0, State.PAUSED)

    r = await cli("like", "-o", str(a_out))
    assert r.exit_code == 1 and "cache disabled" in r.output and "(HTTP 409)" in r.output

    r = await cli("skip", "-o", str(tmp_path / "nothing-here"))
    assert r.exit_code == 1
    assert (
        r.output.strip() == f"error: no dream-window is running on output folder {tmp_path / 'nothing-here'}"
    )


async def test_like_and_dislike(
    dreams: DreamFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = RecordingFrameCache()
    d = await dreams(
        run=True,
        serve=False,
        services=registered,
        frame_cache=memory,
        generation={"cache": {"enabled": True}},
    )
    await d.next_frame()
    monkeypatch.chdir(tmp_path)
    assert (await cli("pause")).exit_code == 0  # the frame on screen stays on screen
    shown = d.controller.output.last_index

    r = await cli("like")
    assert (r.exit_code, r.output.strip()) == (0, f"liked frame {shown}")
    r = await cli("dislike", "--index", str(shown))
    assert (r.exit_code, r.output.strip()) == (0, f"disliked frame {shown}")
    # The frame on screen itself: from memory while it is the newest, else from its history file.
    png = d.controller.output.path_for(shown).read_bytes()
    rated = [(f if isinstance(f, bytes) else f.read_bytes(), score) for f, score, _ in memory.rated]
    assert rated == [(png, 1), (png, -1)]

    r = await cli("like", "--index", "999999")
    assert r.exit_code == 1 and "not in the history" in r.output and "(HTTP 404)" in r.output
    r = await cli("like", "--index", "0")
    assert r.exit_code == 2  # click: not a frame number
