"""The ``dream-window`` command.

Exit codes: 0 success, 1 a runtime failure (backend down with ``--backend comfyui`` ...),
2 a usage or configuration error, 130 / 143 a SIGINT / SIGTERM before the dream runs (once it runs,
a signal stops it cleanly with 0; see ``dream_window.__main__``). Errors are one clear line, never a
traceback.

Module map::

    __init__.py   the ``main`` group: run, init, status, doctor; every other command added here
    common.py     the --config option, finding and loading the config, one-line failures (shared)
    cache.py      ``dream-window cache stats|list|similar|prune|export|rebuild``
    control.py    ``dream-window pause|resume|skip|prompt|mode|like|dislike`` (the running service's control API)
    export.py     ``dream-window export`` (the timelapse itself is :mod:`dream_window.export`)
    autostart.py  ``dream-window autostart enable|disable|status`` (:mod:`dream_window.autostart`)
    rainmeter.py  ``dream-window rainmeter install|package`` (:mod:`dream_window.rainmeter`)
    wallpaper.py  ``dream-window wallpaper lively|wallpaper-engine OUT`` (:mod:`dream_window.wallpaper`)
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dream_window import __version__
from dream_window.app import run_dream
from dream_window.cli.autostart import autostart_group
from dream_window.cli.cache import cache_group
from dream_window.cli.common import (
    config_error,
    config_option,
    fail,
    find_config,
    load,
    output_option,
    running_instance,
)
from dream_window.cli.control import dislike, like, mode_cmd, pause, prompt_cmd, resume, skip
from dream_window.cli.export import export_command
from dream_window.cli.rainmeter import rainmeter_group
from dream_window.cli.wallpaper import wallpaper_group
from dream_window.config import BackendChoice, default_config_text, user_config_text
from dream_window.doctor import run_checks
from dream_window.dream.modes import mode_names
from dream_window.dream.status import STATUS_FILE, read_status
from dream_window.errors import AlreadyRunning, ConfigError, DreamWindowError
from dream_window.instances import status_staleness
from dream_window.logging_setup import setup_logging
from dream_window.malloc_arenas import cap_malloc_arenas
from dream_window.user_dirs import user_dirs
from dream_window.values.check import Check

log = logging.getLogger("dream_window")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dream-window")
def main() -> None:
    """Dream Window: an endless, slowly evolving stream of AI images for your desktop."""


@main.command()
@config_option
@click.option(
    "--mode",
    type=click.Choice(mode_names()),
    help="Generation mode (default from config: hybrid).",
)
@click.option(
    "--backend",
    type=click.Choice([b.value for b in BackendChoice]),
    help="auto: ComfyUI when reachable, else built-in.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder for frames and status.",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after publishing N frames.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging on the console.")
def run(
    config_path: Path | None,
    mode: str | None,
    backend: str | None,
    output: Path | None,
    max_frames: int | None,
    verbose: bool,
) -> None:
    """Dream: generate frames into the output folder until stopped (Ctrl-C)."""
    cfg = load(
        config_path,
        **{
            "generation.mode": mode,
            "system.backend": backend,
            "system.output_dir": output.resolve() if output else None,
        },
    )
    log_file = setup_logging(level=cfg.system.log_level, verbose=verbose, log_dir=cfg.log_dir)
    if log_file:
        log.debug("log file: %s", log_file)
    cap_malloc_arenas()  # before the first worker thread (see malloc_arenas.py)
    try:
        code = asyncio.run(
            run_dream(
                cfg,
                backend_choice=cfg.system.backend,
                max_frames=max_frames,
                # the file found, not only the one named: the registry tells instances apart by it
                config_path=find_config(config_path),
            )
        )
    except AlreadyRunning as exc:  # a usage error, but not one about the config file
        fail(str(exc), 2)
    except ConfigError as exc:
        config_error(exc)
    except DreamWindowError as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        code = 0
    except Exception as exc:  # a bug: the traceback goes to the log file, the user gets one line
        log.debug("unexpected failure", exc_info=True)
        where = f" (details in {log_file})" if log_file else ""
        fail(f"unexpected {type(exc).__name__}: {exc}{where}")
    sys.exit(code)


@main.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path | None, force: bool) -> None:
    """Write a commented default config file.

    With no PATH it is your own config, in your per-user config folder, with frames going to your
    per-user data folder (commands use it when there is no ./config.yaml). With PATH, folders in it
    are relative to PATH's folder.
    """
    if path is None:
        dirs = user_dirs()
        target, text = dirs.config_file, user_config_text(dirs)
        after = f"frames go to {dirs.output}; `dream-window doctor` checks the setup"
    else:
        target, text, after = path, default_config_text(), ""
    if target.exists() and not force:
        fail(f"{target} already exists (use --force to overwrite it)", 2)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")
    click.echo(f"wrote {target}")
    if after:
        click.echo(after)


@main.command()
@config_option
@output_option
@click.option(
    "--json", "as_json", is_flag=True, help='Print the raw JSON (with "stale": true when not running).'
)
def status(config_path: Path | None, output: Path | None, as_json: bool) -> None:
    """Show what the dream is doing (reads status.json). Exit 1 when it is not running.

    From any folder: the running dream-window (or the one --output/--config names), else the
    output folder of ./config.yaml. A status.json left "running" by a process that died or hung
    says "not running (last seen ...)".
    """
    data = _read_status(_status_folder(config_path, output) / STATUS_FILE)
    staleness = status_staleness(data)
    if staleness is not None:
        data["stale"] = True
    if as_json:
        click.echo(json.dumps(data, indent=2))
        sys.exit(1 if staleness else 0)
    if staleness is not None:
        pid = data.get("pid")
        process = f"process {pid}" if pid is not None else "process"
        click.echo(f"not running (last seen {data.get('updated_at') or 'never'}, {process} {staleness})")
        sys.exit(1)
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    state = data.get("state", "?")
    if data.get("pause_reasons"):
        state += f" ({'; '.join(data['pause_reasons'])})"
    health = data.get("backend_health") or {}
    rows = [
        ("state", state),
        ("mode", data.get("mode")),
        ("backend", f"{data.get('backend')}" + ("" if data.get("backend_is_ai", True) else "  [not AI]")),
        ("model", data.get("model")),
        ("backend health", ("ok" if health.get("ok") else "FAILING") + f" — {health.get('detail', '')}"),
        *_gpu_duty_rows(data),
        ("frames", f"{data.get('frame_count')} this run, last #{data.get('frame_index')}"),
        ("frames/min", data.get("frames_per_minute")),
        ("last generation", f"{data.get('last_generation_ms')} ms"),
        ("prompt", data.get("current_prompt")),
        *_next_prompt_rows(data),
        ("cache", ", ".join(f"{k}: {v}" for k, v in (data.get("cache") or {}).items())),
        ("started", data.get("started_at")),
        ("updated", data.get("updated_at")),
    ]
    for note in data.get("notes") or []:
        rows.append(("note", note))
    for k, v in rows:
        # Text, not a str: rich reads "[...]" in a str as markup, and would eat "[oil painting]"
        # from a prompt or "[ml]" from an install hint.
        t.add_row(k, Text("" if v is None else str(v)))
    Console().print(t)


def _status_folder(config_path: Path | None, output: Path | None) -> Path:
    """The output folder whose status.json ``status`` reads: the running instance's (see
    ``running_instance``), else the one named by --output, else the config's."""
    found = running_instance(config_path, output)
    if found is not None:
        return found.output_dir
    return output if output is not None else load(config_path).output_dir


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return read_status(path)
    except DreamWindowError as exc:
        fail(str(exc))


def _next_prompt_rows(data: dict[str, Any]) -> list[tuple[str, object]]:
    """The prompt frames are made for next, when it is not the one on screen, and a hold."""
    rows: list[tuple[str, object]] = []
    if data.get("next_prompt") and data.get("next_prompt") != data.get("current_prompt"):
        rows.append(("next prompt", data["next_prompt"]))
    hold = data.get("prompt_hold")
    if isinstance(hold, dict):
        left = hold.get("remaining_s")
        rows.append(("held", "until skipped" if left is None else f"{float(left) / 60:.0f} min more"))
    return rows


def _gpu_duty_rows(data: dict[str, Any]) -> list[tuple[str, object]]:
    """What our prompts cost ComfyUI's GPU over the last minute (status.json's ``comfyui``), one
    line per server when there are several."""
    section = data.get("comfyui")
    if not isinstance(section, dict):
        return []

    def line(duty: object) -> str | None:
        if not isinstance(duty, dict) or not isinstance(duty.get("fraction"), int | float):
            return None
        text = f"{100 * duty['fraction']:.0f}% of the last {float(duty.get('window_s') or 0):.0f} s"
        text += f" ({float(duty.get('busy_s') or 0):.1f} s on our prompts"
        return text + (", one running now)" if duty.get("running") else ")")

    servers = [s for s in section.get("servers") or [] if isinstance(s, dict)]
    if len(servers) > 1:
        rows = [("GPU duty", f"{s.get('url')}: {line(s.get('gpu_duty'))}") for s in servers]
        return [(k, v) for k, v in rows if not v.endswith(": None")]
    text = line(section.get("gpu_duty"))
    return [] if text is None else [("GPU duty", text)]


@main.command()
@config_option
@click.option(
    "--deep", is_flag=True, help="Also load the model on ComfyUI (a one-step 64x64 image) and time it."
)
def doctor(config_path: Path | None, deep: bool) -> None:
    """Check config, folders, backend and every optional capability."""
    cfg = load(config_path)
    checks = asyncio.run(run_checks(cfg, deep=deep))
    c = Console(highlight=False)
    for ch in checks:
        c.print(check_line(ch))
    sys.exit(1 if any(ch.level == "fail" for ch in checks) else 0)


_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "info": ("·", "blue")}


def check_line(check: Check) -> Text:
    """One doctor line. Built as Text so nothing in a name or detail is read as rich markup:
    details carry install hints ("pip install 'dream-window[ml]'") and user paths."""
    mark, colour = _MARKS[check.level]
    return Text.assemble((mark, colour), " ", (check.name, "bold"), ": ", check.detail)


# Commands that live in their own module, added by name.
main.add_command(autostart_group)
main.add_command(cache_group)
main.add_command(export_command)
main.add_command(rainmeter_group)
main.add_command(wallpaper_group)
for command in (pause, resume, skip, prompt_cmd, mode_cmd, like, dislike):
    main.add_command(command)
