"""What every ``dream-window`` command shares: the ``--config`` and ``--output`` options, loading
the config, finding the running instance a command is about, one-line failures.

Which config a command uses without ``--config``: ./config.yaml when there is one (a checkout,
``make run``), else the user's config file when there is one (``dream-window init`` writes it in
the per-user config folder, see ``dream_window.user_dirs``), else the built-in defaults.

A module of its own so the command modules (``cache``, ``control``, ``export``) can use it without
importing the package that registers them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from dream_window.config import DreamConfig, load_config
from dream_window.errors import ConfigError
from dream_window.instances import Registration, live_instances, same_path
from dream_window.user_dirs import user_dirs

DEFAULT_CONFIG = Path("config.yaml")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def config_error(exc: ConfigError) -> NoReturn:
    for p in exc.problems:
        click.echo(f"config error: {p}", err=True)
    sys.exit(2)


def find_config(config_path: Path | None) -> Path | None:
    """The config file a command uses: ``--config``, else ./config.yaml, else the user's config
    file, each when present; None: the built-in defaults."""
    if config_path is not None:
        return config_path
    for candidate in (DEFAULT_CONFIG, user_dirs().config_file):
        if candidate.is_file():
            return candidate
    return None


def load(config_path: Path | None, **overrides: Any) -> DreamConfig:
    """The config ``find_config`` names (the defaults when none), then ``overrides``."""
    try:
        cfg = load_config(find_config(config_path))
        if any(v is not None for v in overrides.values()):
            cfg = cfg.with_overrides(**overrides)
        return cfg
    except ConfigError as exc:
        config_error(exc)


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./config.yaml when present, else your config from `dream-window init`, "
    "else built-in defaults).",
)

output_option = click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    help="The output folder of the dream-window to talk to (when several are running).",
)


def running_instance(config_path: Path | None, output: Path | None) -> Registration | None:
    """The running dream-window a command is about, from the registry (see ``instances``).

    ``--output`` or ``--config`` given: the one writing into that folder (or started with that
    config file), None when none is. Neither: the only one running; when several are, the one
    config ``find_config`` names, else exit 2 listing them. None when none is registered: the caller falls
    back to the config, as before instances registered themselves.
    """
    live = live_instances()
    if output is not None:
        return _one([r for r in live if same_path(r.output_dir, output)])
    if config_path is not None:
        return _one(_started_with(live, config_path))
    if len(live) <= 1:
        return live[0] if live else None
    found = find_config(None)
    if found is not None:
        here = _started_with(live, found)
        if len(here) == 1:
            return here[0]
    _several(live)


def _started_with(live: list[Registration], config_path: Path) -> list[Registration]:
    out_dir = load(config_path).output_dir
    return [
        r
        for r in live
        if same_path(r.output_dir, out_dir)
        or (r.config_path is not None and same_path(r.config_path, config_path))
    ]


def _one(matches: list[Registration]) -> Registration | None:
    if len(matches) > 1:
        _several(matches)
    return matches[0] if matches else None


def _several(live: list[Registration]) -> NoReturn:
    listed = "; ".join(r.describe() for r in live)
    fail(f"{len(live)} dream-windows are running ({listed}): pick one with --output DIR or --config FILE", 2)
