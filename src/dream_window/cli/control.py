"""``dream-window pause|resume|skip|prompt "..."|mode NAME``: the control API from the command line.

The address comes from the config (``viewer.host``/``viewer.port``; a wildcard bind is reached on
127.0.0.1), the token from the home directory when there is one. Plain urllib: these are single
requests from a short-lived process, no event loop needed. No Origin header is sent, so the
service treats this as a non-browser client (see web/security.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from dream_window.cli.common import config_option, fail, load
from dream_window.config import DreamConfig
from dream_window.dream.modes import mode_names
from dream_window.web.security import read_token

TIMEOUT_S = 10.0


def api_base(config: DreamConfig) -> str:
    host = config.viewer.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.viewer.port}"


def call(
    config: DreamConfig, path: str, body: dict[str, Any] | None = None, *, token: str | None = None
) -> dict[str, Any]:
    """POST (or GET when ``body`` is None) to the running service; exits 1 with one clear line on failure."""
    if not config.viewer.enabled:
        fail("the control API is off (viewer.enabled: false in the config)")
    if config.viewer.port == 0:
        fail("viewer.port is 0 (a random port): set a fixed port to control the service from the CLI")
    url = api_base(config) + path
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return _json(resp.read())
    except urllib.error.HTTPError as exc:
        detail = _json(exc.read()).get("error") or exc.reason
        fail(f"{detail} (HTTP {exc.code})")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"dream-window is not running (no answer at {api_base(config)}: {reason})")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@click.command()
@config_option
def pause(config_path: Path | None) -> None:
    """Pause the running dream (it resumes with `dream-window resume`)."""
    r = call(load(config_path), "/api/pause", {}, token=read_token())
    click.echo(f"paused ({'; '.join(r.get('pause_reasons') or ['user'])})")


@click.command()
@config_option
def resume(config_path: Path | None) -> None:
    """Resume a dream paused with `dream-window pause` (or the viewer)."""
    r = call(load(config_path), "/api/resume", {}, token=read_token())
    still = r.get("pause_reasons") or []
    click.echo("resumed" if not still else f"resumed for you; still paused for: {'; '.join(still)}")


@click.command()
@config_option
def skip(config_path: Path | None) -> None:
    """Move to another prompt now."""
    r = call(load(config_path), "/api/skip", {}, token=read_token())
    click.echo(f"next prompt: {r.get('next_prompt')} (on screen with the next frames)")


@click.command("prompt")
@config_option
@click.argument("text")
def prompt_cmd(config_path: Path | None, text: str) -> None:
    """Dream of TEXT now; it holds for prompts.hold_minutes (or until you skip)."""
    r = call(load(config_path), "/api/prompt", {"prompt": text}, token=read_token())
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
@click.argument("name", type=click.Choice(mode_names()))
def mode_cmd(config_path: Path | None, name: str) -> None:
    """Switch the running dream to mode NAME, growing on from the picture on screen."""
    r = call(load(config_path), "/api/mode", {"mode": name}, token=read_token())
    click.echo(f"mode: {r.get('mode')}")
