"""``dream-window rainmeter install|package``: the Rainmeter skin, installed or packaged.

Both write ``Settings.inc`` from the loaded config (``system.output_dir`` absolute, ``viewer.host``/
``viewer.port``), encoded as Rainmeter reads it (:mod:`dream_window.rainmeter.encoding`).
"""

from __future__ import annotations

from pathlib import Path

import click

from dream_window import __version__
from dream_window.cli.common import config_option, fail, load
from dream_window.errors import DreamWindowError
from dream_window.rainmeter.install import SkinsFolderNotFound, install_skin, windows_skins_dir
from dream_window.rainmeter.rmskin import write_rmskin


@click.group("rainmeter")
def rainmeter_group() -> None:
    """The Rainmeter desktop skin (Windows): install it, or build its .rmskin package."""


@rainmeter_group.command("install")
@click.option(
    "--skins-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Rainmeter's Skins folder (default: read from Rainmeter's settings on Windows).",
)
@config_option
def install(skins_dir: Path | None, config_path: Path | None) -> None:
    """Copy the skin into Rainmeter's Skins folder and point it at this config's output folder."""
    cfg = load(config_path)
    try:
        target_dir = skins_dir if skins_dir is not None else windows_skins_dir()
        report = install_skin(target_dir, cfg)
    except SkinsFolderNotFound as exc:
        fail(f"{exc}", 2)
    except (DreamWindowError, OSError) as exc:
        fail(f"the skin was not installed: {exc}")
    verb = "Updated" if report.replaced else "Installed"
    click.echo(f"{verb} the Dream Window skin in {report.target}")
    for key, value in report.settings.set.items():
        click.echo(f"  Settings.inc {key}={value}")
    if report.settings.kept:
        kept = ", ".join(f"{k}={v}" for k, v in report.settings.kept.items())
        click.echo(f"  kept your settings: {kept}")
    click.echo(
        "Next: in Rainmeter, Manage > DreamWindow > DreamWindow.ini > Load "
        "(or Refresh if it is loaded), and start `dream-window run` with the same config."
    )


@rainmeter_group.command("package")
@click.argument("out", type=click.Path(path_type=Path))
@config_option
def package(out: Path, config_path: Path | None) -> None:
    """Build the skin's .rmskin package (Rainmeter's installer format) at OUT (a file or a folder)."""
    if out.is_dir() or not out.suffix:  # a folder (created when missing)
        out = out / f"DreamWindow-{__version__}.rmskin"
    elif out.suffix.lower() != ".rmskin":
        fail(f"{out}: the package must end in .rmskin (Rainmeter's installer only opens those)", 2)
    cfg = load(config_path)
    try:
        size = write_rmskin(out, cfg)
    except (DreamWindowError, OSError) as exc:
        fail(f"the package was not written: {exc}")
    click.echo(f"Wrote {out} ({size} bytes); double-click it on Windows to install the skin.")
