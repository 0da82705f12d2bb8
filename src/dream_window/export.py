"""``dream-window export``: a timelapse (mp4 or gif) from the frame history.

    dream-window export [--last 10m | --frames 200] [--fps 12] [--inbetweens 2] [--width 512] OUT.mp4|OUT.gif

Frames come from ``<output>/frames/frame_NNNNNN.png`` in number order. ``--last`` picks by the
time a frame was published (its file's modification time), ``--frames`` the newest N; without
either, the whole history. ``--inbetweens K`` adds K crossfaded frames between each pair, so a
short history still plays smoothly. Frames of another size (the resolution was changed between
runs) are letterboxed into the first frame's size.

Encoding uses the ffmpeg binary that ``imageio-ffmpeg`` ships: H.264/yuv420p mp4 (plays
everywhere), and gif through palettegen/paletteuse (one palette for the whole clip, no dithering
shimmer between frames). The file is written under a temporary name and moved into place, so a
failed or interrupted export never leaves half a video at OUT.

Exit codes: 0 written, 1 nothing to export or ffmpeg failed, 2 bad arguments.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import click
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dream_window.dream.output import FRAMES_DIR
from dream_window.errors import DreamWindowError

FORMATS = (".mp4", ".gif")
_FRAME_RE = re.compile(r"^frame_(\d{6,})\.png$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``1h30m``, ``2d``, or plain seconds → seconds (> 0)."""
    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    elif t and _DURATION_RE.sub("", t) == "":
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_RE.findall(t))
    else:
        raise ValueError(f"expected a duration like 90s, 10m, 1h30m or 2d, got {text!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be more than 0, got {text!r}")
    return seconds


def history(frames_dir: Path) -> list[tuple[int, Path]]:
    """Every numbered frame in ``frames_dir``, oldest first."""
    if not frames_dir.is_dir():
        return []
    found = []
    for p in frames_dir.iterdir():
        m = _FRAME_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def select_frames(
    frames_dir: Path, *, last_seconds: float | None = None, count: int | None = None, now: float | None = None
) -> list[Path]:
    frames = history(frames_dir)
    if not frames:
        raise DreamWindowError(
            f"no frames to export in {frames_dir} (has `dream-window run` written any there?)"
        )
    if count is not None:
        frames = frames[-count:]
    if last_seconds is not None:
        cutoff = (time.time() if now is None else now) - last_seconds
        recent = []
        for idx, p in frames:
            with contextlib.suppress(FileNotFoundError):  # pruned while we looked
                if p.stat().st_mtime >= cutoff:
                    recent.append((idx, p))
        if not recent:
            newest = frames[-1][1].stat().st_mtime
            ago = (time.time() if now is None else now) - newest
            raise DreamWindowError(
                f"no frames published in the last {_human(last_seconds)} "
                f"(the newest, #{frames[-1][0]}, is {_human(ago)} old)"
            )
        frames = recent
    return [p for _, p in frames]


def _human(seconds: float) -> str:
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def target_size(first: Path, width: int | None, *, even: bool) -> tuple[int, int]:
    try:
        with Image.open(first) as img:
            w, h = img.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DreamWindowError(f"cannot read {first}: {exc}") from exc
    if width is not None:
        new_w = width + (width % 2) if even else width
        w, h = new_w, max(1, round(h * new_w / w))
    if even:  # yuv420p needs even sides
        w, h = w + (w % 2), h + (h % 2)
    return w, h


def frame_sequence(paths: list[Path], size: tuple[int, int], inbetweens: int) -> Iterator[np.ndarray]:
    """RGB frames at ``size``: each history frame, with ``inbetweens`` crossfades between neighbours.

    A frame that cannot be read (deleted mid-export, damaged) is skipped, not fatal.
    """
    prev: Image.Image | None = None
    for p in paths:
        try:
            with Image.open(p) as img:
                cur = ImageOps.pad(img.convert("RGB"), size, color=(0, 0, 0))
        except (OSError, UnidentifiedImageError):
            continue
        if prev is not None:
            for k in range(1, inbetweens + 1):
                yield np.asarray(Image.blend(prev, cur, k / (inbetweens + 1)))
        yield np.asarray(cur)
        prev = cur


def encode(
    out: Path,
    frames: Iterator[np.ndarray],
    size: tuple[int, int],
    fps: float,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """Encode ``frames`` into ``out`` (format from its suffix). Returns how many frames were written."""
    import imageio_ffmpeg

    suffix = out.suffix.lower()
    if suffix == ".gif":
        kwargs: dict[str, object] = dict(
            codec="gif",
            pix_fmt_out="pal8",
            quality=None,
            macro_block_size=1,
            output_params=[
                "-vf",
                "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=sierra2_4a",
                "-loop",
                "0",
            ],
        )
    else:
        kwargs = dict(
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=7,
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
        )
    partial = out.with_name(f".{out.stem}.partial{suffix}")
    n = 0
    try:
        writer = imageio_ffmpeg.write_frames(str(partial), size, fps=fps, ffmpeg_log_level="error", **kwargs)
        writer.send(None)  # start ffmpeg
        try:
            for arr in frames:
                writer.send(np.ascontiguousarray(arr))
                n += 1
                on_frame()
        finally:
            writer.close()
        if n == 0:
            raise DreamWindowError("none of the selected frames could be read")
        os.replace(partial, out)
    except (OSError, RuntimeError, BrokenPipeError) as exc:
        raise DreamWindowError(f"encoding {out} failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return n


def export_timelapse(
    frames_dir: Path,
    out: Path,
    *,
    last_seconds: float | None = None,
    count: int | None = None,
    fps: float = 12.0,
    inbetweens: int = 0,
    width: int | None = None,
    on_start: Callable[[int], None] = lambda total: None,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """The whole export; returns the number of video frames written."""
    paths = select_frames(frames_dir, last_seconds=last_seconds, count=count)
    size = target_size(paths[0], width, even=out.suffix.lower() == ".mp4")
    on_start(len(paths) + (len(paths) - 1) * inbetweens)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DreamWindowError(f"cannot create {out.parent}: {exc.strerror or exc}") from exc
    return encode(out, frame_sequence(paths, size, inbetweens), size, fps, on_frame)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def register_commands(main: click.Group) -> None:
    def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    def out_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
        if value.suffix.lower() not in FORMATS:
            raise click.BadParameter(f"must end in .mp4 or .gif, got {value.name!r}")
        return value

    @main.command()
    @click.argument("out", type=click.Path(path_type=Path, dir_okay=False), callback=out_path)
    @click.option(
        "--last",
        "last",
        callback=duration,
        metavar="DURATION",
        help="Only frames published in the last DURATION (90s, 10m, 1h30m, 2d).",
    )
    @click.option(
        "--frames", "count", type=click.IntRange(min=1), metavar="N", help="Only the newest N frames."
    )
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
    def export(
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
            from dream_window.cli import load

            output_dir = load(config_path).output_dir
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
            except DreamWindowError as exc:
                progress.stop()
                _fail(str(exc))
        click.echo(f"wrote {out} ({n} frames, {n / fps:.1f} s at {fps:g} fps)")
