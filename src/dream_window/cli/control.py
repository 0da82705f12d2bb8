"""``dream-window pause|resume|skip|prompt "..."|mode NAME|like|dislike``: the control API from the
command line, from any directory.

The dream to talk to is found in the registry of running instances (``dream_window.instances``):
the only one running, or the one ``--output DIR`` or ``--config FILE`` names; its entry says where
its API answers and where its control token is. With none registered (a dream started with
another home directory), the address comes from the config as before (``viewer.host``/
``viewer.port``; a wildcard bind is reached on 127.0.0.1) and the token from the home directory.

Plain urllib: these are single requests from a short-lived process, no event loop needed. No
Origin header is sent, so the service treats this as a non-browser client (see web/security.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dream_window.cli.common import config_option, fail, load, output_option, running_instance
from dream_window.config import DreamConfig
from dream_window.dream.modes import mode_names
from dream_window.instances import control_address
from dream_window.web.security import read_token

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Target:
    """Where the control API of the dream a command is about answers, and the token it wants."""

    base_url: str
    token: str | None
    pid: int | None = None  # known when the dream was found in the registry


def api_base(config: DreamConfig) -> str:
    return control_address(config.viewer.host, config.viewer.port)


def target(config_path: Path | None, output: Path | None) -> Target:
    """The running dream named by ``--config``/``--output`` (or the only one); exits with one line
    when there is none to talk to."""
    found = running_instance(config_path, output)
    if found is not None:
        if found.control_url is None:
            fail(
                f"the dream-window on {found.output_dir} (pid {found.pid}) has no control API: "
                "its viewer is off or did not start (see `dream-window status`)"
            )
        token = _read_token(Path(found.token_path)) if found.token_path else read_token()
        return Target(found.control_url, token, found.pid)
    if output is not None:
        fail(f"no dream-window is running on output folder {output.resolve()}")
    config = load(config_path)
    if not config.viewer.enabled:
        fail("the control API is off (viewer.enabled: false in the config)")
    if config.viewer.port == 0:
        fail("viewer.port is 0 (a random port): set a fixed port to control the service from the CLI")
    return Target(api_base(config), read_token())


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def call(to: Target, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST (or GET when ``body`` is None) to the running service; exits 1 with one clear line on failure."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(to.base_url + path, data=data, method="GET" if body is None else "POST")
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if to.token:
        req.add_header("Authorization", f"Bearer {to.token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return _json(resp.read())
    except urllib.error.HTTPError as exc:
        detail = _json(exc.read()).get("error") or exc.reason
        fail(f"{detail} (HTTP {exc.code})")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if to.pid is not None:
            fail(f"dream-window (pid {to.pid}) is not answering at {to.base_url}: {reason}")
        fail(f"dream-window is not running (no answer at {to.base_url}: {reason})")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@click.command()
@config_option
@output_option
def pause(config_path: Path | None, output: Path | None) -> None:
    """Pause the running dream (it resumes with `dream-window resume`)."""
    r = call(target(config_path, output), "/api/pause", {})
    click.echo(f"paused ({'; '.join(r.get('pause_reasons') or ['user'])})")


@click.command()
@config_option
@output_option
def resume(config_path: Path | None, output: Path | None) -> None:
    """Resume a dream paused with `dream-window pause` (or the viewer)."""
    r = call(target(config_path, output), "/api/resume", {})
    still = r.get("pause_reasons") or []
    click.echo("resumed" if not still else f"resumed for you; still paused for: {'; '.join(still)}")


@click.command()
@config_option
@output_option
def skip(config_path: Path | None, output: Path | None) -> None:
    """Move to another prompt now."""
    r = call(target(config_path, output), "/api/skip", {})
    click.echo(f"next prompt: {r.get('next_prompt')} (on screen with the next frames)")


def _prompt_text(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # Checked here, before the running service is looked for: an empty prompt is a usage error
    # whether or not a dream is running (the API refuses it too, with 400).
    if not value.strip():
        raise click.BadParameter("must not be empty (the words to dream of, in quotes)")
    return value


@click.command("prompt")
@config_option
@output_option
@click.argument("text", callback=_prompt_text)
def prompt_cmd(config_path: Path | None, output: Path | None, text: str) -> None:
    """Dream of TEXT now; it holds for prompts.hold_minutes (or until you skip)."""
    r = call(target(config_path, output), "/api/prompt", {"prompt": text})
    click.echo(f"prompt set: {r.get('next_prompt')}{_held(r.get('prompt_hold'))}")


def _held(hold: object) -> str:
    if not isinstance(hold, dict):
        return ""
    if hold.get("until_skipped"):
        return " (held until you skip)"
    seconds = hold.get("remaining_s")
    return f" (held for {float(seconds) / 60:.0f} min)" if isinstance(seconds, int | float) else ""


@click.command("mode")
@config_option
@output_option
@click.argument("name", type=click.Choice(mode_names()))
def mode_cmd(config_path: Path | None, output: Path | None, name: str) -> None:
    """Switch the running dream to mode NAME, growing on from the picture on screen."""
    r = call(target(config_path, output), "/api/mode", {"mode": name})
    click.echo(f"mode: {r.get('mode')}")


index_option = click.option(
    "--index",
    type=click.IntRange(min=1),
    help="The frame's number (frame_NNNNNN.png); default: the frame on screen.",
)


@click.command()
@config_option
@output_option
@index_option
def like(config_path: Path | None, output: Path | None, index: int | None) -> None:
    """Like the frame on screen (or frame --index N): the frame cache brings it back more often."""
    r = call(target(config_path, output), "/api/like", {} if index is None else {"index": index})
    click.echo(f"liked frame {r.get('index')}")


@click.command()
@config_option
@output_option
@index_option
def dislike(config_path: Path | None, output: Path | None, index: int | None) -> None:
    """Dislike the frame on screen (or frame --index N): the frame cache never brings it back."""
    r = call(target(config_path, output), "/api/dislike", {} if index is None else {"index": index})
    click.echo(f"disliked frame {r.get('index')}")
