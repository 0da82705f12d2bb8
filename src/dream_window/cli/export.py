"""``dream-window export``: a timelapse video or animation from the frame history.

    dream-window export [--last 10m | --frames 200] [--fps 12] [--inbetweens 2] [--width 512] OUT.mp4|OUT.gif

Only the command lives here; selecting, crossfading and encoding frames is :mod:`dream_window.export`.

Exit codes: 0 written, 1 nothing to export or encoding failed, 2 bad arguments or mp4 asked
for without the ``export`` extra (the message says what to install).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dream_window.cli.common import fail, load
from dream_window.dream.output import FRAMES_DIR
from dream_window.errors import ConfigError, DreamWindowError
from dream_window.export import FORMATS, export_timelapse, parse_duration


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _out_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in FORMATS:
        raise click.BadParameter(f"must end in .mp4 or .gif, got {value.name!r}")
    return value


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False), callback=_out_path)
@click.option(
    "--last",
    "last",
    callback=_duration,
    metavar="DURATION",
    help="Only frames published in the last DURATION (90s, 10m, 1h30m, 2d).",
)
@click.option("--frames", "count", type=click.IntRange(min=1), metavar="N", help="Only the newest N frames.")
@click.option(
    "--fps",
    type=click.FloatRange(min=0.1, max=120),
    default=12.0,
    show_default=True,
    help="Frames per second of the video.",
)
@click.option(
    "--inbetweens",
    type=click.IntRange(min=0, max=30),
    default=0,
    show_default=True,
    help="Crossfaded frames added between each pair (smoother, longer).",
)
@click.option(
    "--width", type=click.IntRange(min=16, max=8192), help="Scale to this width (keeps the aspect)."
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (its system.output_dir is where frames are read).",
)
@click.option(
    "--output",
    "-o",
    "output_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder to read frames from (overrides the config).",
)
def export_command(
    out: Path,
    last: float | None,
    count: int | None,
    fps: float,
    inbetweens: int,
    width: int | None,
    config_path: Path | None,
    output_dir: Path | None,
) -> None:
    """Make a timelapse video (OUT.mp4) or animation (OUT.gif) from the frame history."""
    if last is not None and count is not None:
        raise click.UsageError("use --last or --frames, not both")
    if output_dir is None:
        output_dir = load(config_path).output_dir
    with Progress(
        TextColumn("[bold]exporting[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        try:
            n = export_timelapse(
                output_dir / FRAMES_DIR,
                out,
                last_seconds=last,
                count=count,
                fps=fps,
                inbetweens=inbetweens,
                width=width,
                on_start=lambda total: progress.update(task, total=total),
                on_frame=lambda: progress.advance(task),
            )
        except ConfigError as exc:  # mp4 without the export extra
            progress.stop()
            fail(str(exc), 2)
        except DreamWindowError as exc:
            progress.stop()
            fail(str(exc))
    click.echo(f"wrote {out} ({n} frames, {n / fps:.1f} s at {fps:g} fps)")
