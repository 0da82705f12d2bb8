"""Publishing frames where widgets look: ``current_frame.png`` and a bounded numbered history.

Layout of the output directory (readers: the Rainmeter skin, the web viewer, scripts)::

    output/
      current_frame.png      the frame on screen now, replaced atomically
                             (every PNG carries its FrameLabel as text chunks: values/frame.py)
      frames/frame_000042.png  numbered history, the newest ``history_size`` kept
      status.json            see status.py
      state.json             what a restart needs to continue the dream

Frame numbers keep counting across restarts so history names never collide. Every published frame
gets a number; at a fast cadence only one frame per ``history_interval`` seconds is kept in the
history (60 frames/s would otherwise write and delete 60 files a second, and 300 frames would span
five seconds), so its names have gaps. ``current_frame.png`` is every frame.

Each frame is encoded once (:func:`encode_png`); the same bytes go to the history, the current
frame, and with the ``FramePublished`` event to the viewer, the Rainmeter files and the quality
metrics.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, PngImagePlugin

from dream_window import __version__
from dream_window.errors import ConfigError
from dream_window.file_ops import atomic_write_bytes, clean_stale_temps
from dream_window.values.frame import Frame, FrameLabel

CURRENT_FRAME = "current_frame.png"
FRAMES_DIR = "frames"
OUTPUT_DIR_KEY = "system.output_dir"
_FRAME_RE = re.compile(r"^frame_(\d{6,})\.png$")


@dataclass(frozen=True, slots=True)
class PublishedFrame:
    """A published frame: its number, its file, who it is, and the PNG bytes written there (other
    writers, such as the Rainmeter files, copy them instead of encoding again). ``path`` is its
    history file when ``kept``, else ``current_frame.png`` (until the next frame replaces it)."""

    index: int
    path: Path
    label: FrameLabel
    png: bytes = field(repr=False)
    kept: bool = True


@dataclass(frozen=True)
class FoundFrame:
    """Where a published frame can be read now, and who it is when the writer still knows: the
    newest frame from memory (a live cadence may not have kept it in the history), any other from
    its history file (``label`` None: read it from the file's text chunks if needed)."""

    index: int
    source: Path | bytes = field(repr=False)
    label: FrameLabel | None = None


def frame_name(index: int) -> str:
    return f"frame_{index:06d}.png"


SOFTWARE = f"dream-window {__version__}"


def encode_png(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes, with ``text`` as text chunks (iTXt where a value is not Latin-1)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    # zlib's run-length strategy (bench/footprint.py's notes): on PNG-filtered rows it beat level 3
    # and even level 6, measured on 256x512 frames: built-in flames 6.1 ms and 80 KiB (level 3:
    # 9.2 ms, 97 KiB; level 6: 27 ms, 84 KiB), photo-like 1/f noise 11.6 ms and 213 KiB (level 3:
    # 17 ms, 243 KiB). Decoding costs the same.
    image.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_RLE, pnginfo=info)
    return buf.getvalue()


def read_label(path: Path) -> tuple[Image.Image, FrameLabel | None]:
    """A published PNG and the label it carries (None for a picture without one). Raises OSError
    or PIL's UnidentifiedImageError for a file that is not a readable PNG."""
    with Image.open(path) as img:
        img.load()
        text = dict(getattr(img, "text", {}) or {})
        return img.copy(), FrameLabel.from_png_text(text)


def output_dir_error(output_dir: Path, exc: OSError) -> ConfigError:
    """The config error for an output folder the OS will not let us use: one line naming the key,
    the folder and the OS's reason (and the file it refused, when that is not the folder itself)."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) != output_dir:
        reason += f" ({os.fsdecode(exc.filename)})"
    return ConfigError(f"{OUTPUT_DIR_KEY}: cannot use {output_dir} as the output folder: {reason}")


def check_output_dir(output_dir: Path) -> None:
    """Make the output folder and its history folder, and prove a file can be written there.

    Run before the dream starts, so a file in the folder's place, a read-only filesystem or a path
    under /proc is one :class:`ConfigError` naming ``system.output_dir``, not a failure at the
    first frame. The probe is named like our temp files, so a kill mid-check leaves nothing that
    :func:`clean_stale_temps` does not remove.
    """
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / FRAMES_DIR).mkdir(exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=output_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise output_dir_error(output_dir, exc) from exc


class OutputWriter:
    """Writes published frames atomically and keeps the history bounded: the newest
    ``history_size`` kept frames, one per ``history_interval`` seconds at most (0: every frame),
    by ``monotonic``. Blocking: run in a thread.

    Raises :class:`ConfigError` naming ``system.output_dir`` when the folder cannot be made or read.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        history_size: int,
        history_interval: float = 0.0,
        fsync: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = Path(output_dir)
        self.frames_dir = self.dir / FRAMES_DIR
        self.history_size = history_size
        self.history_interval = history_interval
        self._fsync = fsync
        self._monotonic = monotonic
        self._last_kept_at: float | None = None
        # The newest frame, kept in history or not: a page asking for it by number gets it even
        # at a live cadence, where most frames never reach the history.
        self.newest: PublishedFrame | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.dir)
            clean_stale_temps(self.frames_dir)
            existing = sorted(self.history_indices())
        except OSError as exc:
            raise output_dir_error(self.dir, exc) from exc
        self._history: deque[int] = deque(existing)
        # The newest frame may not be in the history (a fast cadence keeps only some): its own
        # label has its number, so numbers never go back after a restart.
        self.last_index = max(existing[-1] if existing else 0, self._current_index())
        self._prune()

    def _current_index(self) -> int:
        try:
            _image, label = read_label(self.current_path)
        except (OSError, ValueError, Image.DecompressionBombError):  # (not a PNG: OSError)
            return 0
        return label.index if label is not None else 0

    @property
    def current_path(self) -> Path:
        return self.dir / CURRENT_FRAME

    def history_indices(self) -> list[int]:
        out = []
        for p in self.frames_dir.iterdir():
            m = _FRAME_RE.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return out

    def path_for(self, index: int) -> Path:
        return self.frames_dir / frame_name(index)

    @property
    def next_index(self) -> int:
        return self.last_index + 1

    def publish(self, frame: Frame) -> PublishedFrame:
        """Write ``frame`` as the next frame, labelled with who it is."""
        index = self.next_index
        label = frame.label(index)
        data = encode_png(frame.image, label.png_text(SOFTWARE))
        now = self._monotonic()
        keep = self._last_kept_at is None or now - self._last_kept_at >= self.history_interval
        path = self.path_for(index) if keep else self.current_path
        # History first, then current: a reader that sees a new current frame can find it in the
        # history (when it is kept there).
        if keep:
            atomic_write_bytes(path, data, fsync=self._fsync)
        atomic_write_bytes(self.current_path, data, fsync=self._fsync)
        self.last_index = index
        if keep:
            self._last_kept_at = now
            self._history.append(index)
            self._prune()
        self.newest = PublishedFrame(index, path, label, data, kept=keep)
        return self.newest

    def find(self, index: int) -> FoundFrame | None:
        """Frame ``index`` as it can be read now, or None when it was never kept or was pruned.
        Safe from any thread: ``newest`` is read once and replaced whole."""
        newest = self.newest
        if newest is not None and newest.index == index:
            return FoundFrame(index, newest.png, newest.label)
        path = self.path_for(index)
        return FoundFrame(index, path) if path.is_file() else None

    def _prune(self) -> None:
        while len(self._history) > self.history_size:
            old = self._history.popleft()
            with contextlib.suppress(FileNotFoundError):
                self.path_for(old).unlink()
