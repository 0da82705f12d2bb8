"""A timelapse (mp4 or gif) from the frame history: what ``dream-window export`` makes.

Frames come from ``<output>/frames/frame_NNNNNN.png`` in number order. ``--last`` picks by the
time a frame was published (its file's modification time), ``--frames`` the newest N; without
either, the whole history. ``--inbetweens K`` adds K crossfaded frames between each pair, so a
short history still plays smoothly. Frames of another size (the resolution was changed between
runs) are letterboxed into the first frame's size.

mp4 is encoded by the ffmpeg binary that ``imageio-ffmpeg`` ships (the ``export`` extra):
H.264/yuv420p, which plays everywhere; without the extra, asking for mp4 is a usage error that
says what to install. gif needs nothing more: Pillow writes it, every frame on one palette taken
from frames across the clip (a palette per frame would make a slow dream shimmer). The file is written under a temporary name and moved into place, so a
failed or interrupted export never leaves half a video at OUT.

The command itself (options, exit codes) is :mod:`dream_window.cli.export`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dream_window.errors import DreamWindowError, MissingExtra

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


def _ffmpeg() -> ModuleType:
    """imageio-ffmpeg (the ``export`` extra), which mp4 needs; asked before any work is done."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise MissingExtra(
            "mp4 export needs ffmpeg: pip install 'dream-window[export]' "
            "(or export a .gif, which needs nothing more)",
            extra="export",
        ) from exc
    return imageio_ffmpeg


def _partial(out: Path) -> Path:
    return out.with_name(f".{out.stem}.partial{out.suffix.lower()}")


def _counted(
    frames: Iterator[np.ndarray], on_frame: Callable[[], None], counter: list[int]
) -> Iterator[np.ndarray]:
    for arr in frames:
        counter[0] += 1
        on_frame()
        yield arr


def _finish(partial: Path, out: Path, n: int) -> None:
    if n == 0:
        raise DreamWindowError("none of the selected frames could be read")
    os.replace(partial, out)


def encode_mp4(
    out: Path,
    frames: Iterator[np.ndarray],
    size: tuple[int, int],
    fps: float,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """H.264/yuv420p through imageio-ffmpeg's ffmpeg (plays everywhere). Returns the frame count."""
    imageio_ffmpeg = _ffmpeg()
    partial = _partial(out)
    n = [0]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(partial),
            size,
            fps=fps,
            ffmpeg_log_level="error",
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=7,
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
        )
        writer.send(None)  # start ffmpeg
        try:
            for arr in _counted(frames, on_frame, n):
                writer.send(np.ascontiguousarray(arr))
        finally:
            writer.close()
        _finish(partial, out, n[0])
    except (OSError, RuntimeError, BrokenPipeError) as exc:
        raise DreamWindowError(f"encoding {out} failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return n[0]


def gif_palette(paths: list[Path], size: tuple[int, int], samples: int = 16) -> Image.Image:
    """One 256-colour palette for the whole clip, from up to ``samples`` frames spread over it.

    A palette per frame (Pillow's default) shifts colours from frame to frame, and a slow dream
    then shimmers; one shared palette keeps a still area still.
    """
    step = max(1, len(paths) // samples)
    picked = paths[::step][:samples]
    thumb = (max(1, size[0] // 2), max(1, size[1] // 2))
    sheet = Image.new("RGB", (thumb[0], thumb[1] * len(picked)))
    for i, p in enumerate(picked):
        with contextlib.suppress(OSError, UnidentifiedImageError):  # unreadable: sampled from the rest
            with Image.open(p) as img:
                sheet.paste(ImageOps.pad(img.convert("RGB"), thumb, color=(0, 0, 0)), (0, i * thumb[1]))
    return sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def encode_gif(
    out: Path,
    frames: Iterator[np.ndarray],
    palette: Image.Image,
    fps: float,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """An endlessly looping GIF written by Pillow (no extra needed), every frame on ``palette``."""
    n = [0]
    quantized = (
        Image.fromarray(arr).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        for arr in _counted(frames, on_frame, n)
    )
    first = next(quantized, None)
    if first is None:
        raise DreamWindowError("none of the selected frames could be read")
    partial = _partial(out)
    try:
        first.save(
            partial,
            format="GIF",
            save_all=True,
            append_images=quantized,
            duration=round(1000 / fps),
            loop=0,
        )
        _finish(partial, out, n[0])
    except OSError as exc:
        raise DreamWindowError(f"encoding {out} failed: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return n[0]


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
    mp4 = out.suffix.lower() == ".mp4"
    if mp4:
        _ffmpeg()  # a missing extra is said before any frame is read
    paths = select_frames(frames_dir, last_seconds=last_seconds, count=count)
    size = target_size(paths[0], width, even=mp4)
    on_start(len(paths) + (len(paths) - 1) * inbetweens)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DreamWindowError(f"cannot create {out.parent}: {exc.strerror or exc}") from exc
    frames = frame_sequence(paths, size, inbetweens)
    if mp4:
        return encode_mp4(out, frames, size, fps, on_frame)
    return encode_gif(out, frames, gif_palette(paths, size), fps, on_frame)
