"""What every ``dream-window`` command shares: the ``--config`` option, loading it, one-line failures.

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

DEFAULT_CONFIG = Path("config.yaml")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def config_error(exc: ConfigError) -> NoReturn:
    for p in exc.problems:
        click.echo(f"config error: {p}", err=True)
    sys.exit(2)


def load(config_path: Path | None, **overrides: Any) -> DreamConfig:
    """Config from ``--config``, else ./config.yaml when present, else the defaults; then overrides."""
    try:
        if config_path is None and DEFAULT_CONFIG.exists():
            config_path = DEFAULT_CONFIG
        cfg = load_config(config_path)
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
    help="Config file (default: ./config.yaml when present, else built-in defaults).",
)
