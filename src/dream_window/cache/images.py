"""The image store: PNG files under ``<cache_dir>/images/``, named by the hash of their pixels.

A frame's name is the SHA-256 of its RGB pixels and size (first 32 hex digits), so the same
picture is stored once, and a published frame (``current_frame.png``) can be found in the cache
from its pixels alone. Files are sharded by the first two hex digits (``images/ab/abcd….png``)
to keep folders small. Each PNG carries its prompt and parameters in a ``dream_window`` text
chunk, which is what lets ``dream-window cache rebuild`` re-create the index from the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from dream_window.errors import CacheError, FrameWriteError
from dream_window.file_ops import atomic_write_bytes

META_KEY = "dream_window"
_NAME = re.compile(r"^[0-9a-f]{32}\.png$")


def rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def pixel_hash(image: Image.Image) -> str:
    """The content address of ``image``: its RGB pixels and size, hashed."""
    img = rgb(image)
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:32]


def encode(image: Image.Image, meta: dict[str, Any]) -> bytes:
    info = PngImagePlugin.PngInfo()
    # default=str: a frame's params may hold values JSON has no type for (a Path, a numpy int);
    # their text is what a reader wants, and refusing them would lose the frame.
    info.add_text(META_KEY, json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str))
    buf = io.BytesIO()
    rgb(image).save(buf, format="PNG", pnginfo=info, compress_level=1)
    return buf.getvalue()


class ImageStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync

    def path_for(self, cache_id: str) -> Path:
        return self.root / cache_id[:2] / f"{cache_id}.png"

    def write(self, cache_id: str, data: bytes) -> Path:
        """Write atomically (temp + fsync + rename): the file is either whole or absent."""
        path = self.path_for(cache_id)
        try:
            atomic_write_bytes(path, data, fsync=self._fsync)
        except FrameWriteError as exc:
            raise CacheError(f"cannot store cached frame: {exc}", disk_full=exc.disk_full) from exc
        return path

    def exists(self, cache_id: str) -> bool:
        return self.path_for(cache_id).is_file()

    def delete(self, cache_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(cache_id).unlink()

    def load(self, cache_id: str) -> Image.Image:
        path = self.path_for(cache_id)
        try:
            with Image.open(path) as img:
                img.load()
                return rgb(img)
        except FileNotFoundError as exc:
            raise CacheError(f"cached image {path} is missing") from exc
        except (OSError, UnidentifiedImageError) as exc:
            raise CacheError(f"cached image {path} is unreadable: {exc}") from exc

    def read_meta(self, cache_id: str) -> dict[str, Any]:
        """The metadata chunk written with the image ({} when absent or unreadable)."""
        try:
            with Image.open(self.path_for(cache_id)) as img:
                raw = getattr(img, "text", {}).get(META_KEY)
        except (OSError, UnidentifiedImageError):
            return {}
        if not raw:
            return {}
        try:
            meta = json.loads(raw)
        except ValueError:
            return {}
        return meta if isinstance(meta, dict) else {}

    def ids(self) -> Iterator[str]:
        """Every stored image's cache_id (files not named like ours are left alone)."""
        if not self.root.is_dir():
            return
        for shard in self.root.iterdir():
            if not (shard.is_dir() and len(shard.name) == 2):
                continue
            for p in shard.iterdir():
                if _NAME.match(p.name) and p.name.startswith(shard.name):
                    yield p.name[:-4]

    def clean_temps(self) -> int:
        """Remove temp files a killed process left behind mid-write."""
        n = 0
        if not self.root.is_dir():
            return 0
        for shard in self.root.iterdir():
            if shard.is_dir():
                for p in shard.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                        n += 1
        return n

    def total_bytes(self) -> int:
        total = 0
        for cid in self.ids():
            with contextlib.suppress(OSError):
                total += self.path_for(cid).stat().st_size
        return total
