"""``dream-window wallpaper lively|wallpaper-engine OUT``: a live-wallpaper package in the folder OUT.

The package itself is :mod:`dream_window.wallpaper`; how to add it to each host is docs/wallpaper.md.

Exit codes: 0 written, 1 a file could not be written, 2 a usage error (OUT is a file or a folder
that is not empty without --force, a bad --url, the viewer disabled or on port 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from dream_window.cli.common import config_option, load
from dream_window.errors import ConfigError, DreamWindowError
from dream_window.wallpaper import FITS, WallpaperKind, build_package, viewer_url

HOW_TO_ADD = {
    WallpaperKind.LIVELY: "In Lively: drag the .zip (OUT ending in .zip) onto the library, or Add Wallpaper "
    "(+) and choose it. See docs/wallpaper.md.",
    WallpaperKind.WALLPAPER_ENGINE: "In Wallpaper Engine: copy this folder into "
    "wallpaper_engine/projects/myprojects/ (it then shows under Installed), or in the editor: Create "
    "Wallpaper and choose its index.html. See docs/wallpaper.md.",
}


def _build(
    kind: WallpaperKind, out: Path, config_path: Path | None, url: str | None, fit: str, force: bool
) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        cfg = load(config_path)
        address = url if url is not None else viewer_url(cfg.viewer)
        package = build_package(kind, out, url=address, fit=fit, force=force)
    except ConfigError as exc:
        err.print(f"error: {escape(str(exc))}")
        sys.exit(2)
    except DreamWindowError as exc:
        err.print(f"error: {escape(str(exc))}")
        sys.exit(1)
    c = Console(highlight=False, soft_wrap=True)
    c.print(f"wrote the {kind.value} wallpaper to {escape(str(package.folder))} ({len(package.files)} files)")
    c.print(f"it shows the viewer at {escape(package.viewer_url)} in wallpaper mode (fit: {fit})")
    if url is None and cfg.viewer.host not in ("127.0.0.1", "localhost", "::1"):
        c.print(
            "note: the viewer is not on loopback, so it asks for its token: open the viewer URL "
            "printed by `dream-window run` once in a browser, or bind viewer.host to 127.0.0.1"
        )
    c.print(escape(HOW_TO_ADD[kind]))


def _options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option(
        "--force", is_flag=True, help="Write into OUT even when it holds files (ours are replaced)."
    )(fn)
    fn = click.option(
        "--fit",
        type=click.Choice(FITS),
        default="cover",
        show_default=True,
        help="cover fills the screen (edges cropped); contain shows the whole picture.",
    )(fn)
    fn = click.option(
        "--url",
        metavar="URL",
        help="The viewer's address (default: http://<viewer.host>:<viewer.port>/ from the config).",
    )(fn)
    fn = config_option(fn)
    return click.argument("out", type=click.Path(path_type=Path))(fn)


@click.group("wallpaper")
def wallpaper_group() -> None:
    """Build a live-wallpaper package (Lively Wallpaper or Wallpaper Engine) showing the dream."""


@wallpaper_group.command("lively")
@_options
def lively(out: Path, config_path: Path | None, url: str | None, fit: str, force: bool) -> None:
    """A Lively Wallpaper web wallpaper (LivelyInfo.json) in the folder OUT."""
    _build(WallpaperKind.LIVELY, out, config_path, url, fit, force)


@wallpaper_group.command("wallpaper-engine")
@_options
def wallpaper_engine(out: Path, config_path: Path | None, url: str | None, fit: str, force: bool) -> None:
    """A Wallpaper Engine web wallpaper (project.json) in the folder OUT."""
    _build(WallpaperKind.WALLPAPER_ENGINE, out, config_path, url, fit, force)
